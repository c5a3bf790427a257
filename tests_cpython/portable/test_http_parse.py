# The HTTP client's response parser fed seeded damaged responses in random
# pieces: it ends with a response or a ValueError (which step() turns into
# call.error), never another exception.
from portable.support import Seeded
from socketman import http

GOOD = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;x=1\r\nabc\r\n0\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 500 Oops\r\nX: y\r\n\r\nbody to the end",
]


def receiving():
    return http.Call("GET", "http://127.0.0.1:9/x", max_body=4096)  # _feed: as read


def damage(data, rnd):
    b = data
    for _ in range(rnd.below(4)):
        op = rnd.below(3)
        i = rnd.below(len(b) + 1)
        if op == 0:
            b = b[:i] + bytes([rnd.below(256)]) + b[i + 1:]
        elif op == 1:
            b = b[:i] + bytes([rnd.below(256)]) * rnd.below(6) + b[i:]
        else:
            b = b[:i] + b[i + rnd.below(8):]
    return b


def test_good_responses_parse():
    for data in GOOD:
        c = receiving()
        c._feed(data)
        if not c.done():
            c._eof()
        assert c.response is not None, (data, c.error)
    assert c.response.status_code == 500 and c.response.text == "body to the end"


def test_damaged_responses_in_pieces_never_raise_anything_else():
    rnd = Seeded(7)
    for n in range(4000):
        data = damage(GOOD[n % len(GOOD)], rnd)
        c = receiving()
        try:
            pos = 0
            while pos < len(data) and not c.done():
                step = 1 + rnd.below(12)
                c._feed(data[pos:pos + step])
                pos += step
            if not c.done():
                c._eof()
        except ValueError:
            continue
        assert c.response is not None or c.error, data


def feed_all(data, piece=None):
    c = receiving()
    pos = 0
    while pos < len(data) and not c.done():
        n = piece or len(data)
        c._feed(data[pos:pos + n])
        pos += n
    if not c.done():
        c._eof()
    return c


def test_a_bare_lf_ends_lines_of_the_head_and_of_chunks():
    # issue 15, item 3: a server answering "HTTP/1.1 200 OK\n..." was taken
    # for no answer, and every stats line went out again at each heartbeat.
    for piece in (None, 1, 3):
        c = feed_all(b"HTTP/1.1 200 OK\nContent-Type: text/plain\nContent-Length: 2\n\nok", piece)
        assert c.response is not None and c.response.status_code == 200, c.error
        assert c.response.content == b"ok" and c.response.headers["content-type"] == "text/plain"
        c = feed_all(b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n2\nok\n1\r\n!\r\n0\n\n", piece)
        assert c.response is not None and c.response.content == b"ok!", c.error
        c = feed_all(b"HTTP/1.1 204 No Content\r\nX: y\n\r\n", piece)
        assert c.response is not None and c.response.status_code == 204, c.error


def test_once_a_status_line_came_the_call_is_judged_by_it():
    c = feed_all(b"HTTP/1.1 200 OK\n")  # then the server closed
    assert c.response is not None and c.response.status_code == 200
    c = feed_all(b"HTTP/1.1 201 Created\r\nContent-Length: 10\r\n\r\nabc")
    assert c.response is not None and c.response.status_code == 201 and c.response.content == b"abc"
    c = feed_all(b"HTTP/1.1 50")  # no status line yet: no answer
    assert c.response is None and c.error


def test_a_sink_takes_a_2xx_body_as_it_arrives():
    # For a download streamed to a file (PROTOCOL 10): nothing of it is kept.
    for data in (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789trailing junk",
                 b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n0123\r\n6\r\n456789\r\n0\r\n\r\n"):
        pieces = []
        c = http.Call("GET", "http://127.0.0.1:9/x", max_body=4096, sink=pieces.append)
        for i in range(0, len(data), 7):
            c._feed(data[i:i + 7])
        assert c.done() and c.response.status_code == 200
        assert b"".join(pieces) == b"0123456789" and len(pieces) > 1
        assert c.response.content == b""
    kept = []
    c = http.Call("GET", "http://127.0.0.1:9/x", sink=kept.append)
    c._feed(b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope")
    assert c.response.status_code == 404 and c.response.content == b"nope" and kept == []
    c = http.Call("GET", "http://127.0.0.1:9/x", max_body=8, sink=kept.append)
    try:
        c._feed(b"HTTP/1.1 200 OK\r\n\r\n0123456789")
        raise AssertionError("max_body not applied")
    except ValueError:
        pass


# gzip, zlib and raw deflate of b'{"token": "t", "x": "' + b"y" * 300 + b'"}', made once by
# CPython's zlib: the runtimes under test may have no compressor.
CONFIG = b'{"token": "t", "x": "' + b"y" * 300 + b'"}'
GZIP = bytes.fromhex("1f8b0800000000000203ab562ac9cf4ecd53b252502a51d25150aa00b12a4701d140a916001d"
                     "c2007c43010000")
ZLIB = bytes.fromhex("789cab562ac9cf4ecd53b252502a51d25150aa00b12a4701d140a91600361393e2")
RAW = ZLIB[2:-4]


def coded(coding, body, sink=None, max_body=4096):
    c = http.Call("GET", "http://127.0.0.1:9/x", max_body=max_body, sink=sink)
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n" % (coding, len(body))
    try:
        c._feed(head + body)
    except ValueError as e:
        c._end(str(e))
    assert c.done()
    return c


def test_a_coded_answer_is_decoded_or_refused_clearly():
    # issue 24, item 8: the agent asks for identity; a server that codes all
    # the same (a pre-compressed config) is decoded when it is gzip or
    # deflate, and refused as such otherwise, never taken as the body.
    assert http.Call("GET", "http://127.0.0.1:9/x").parts[0].find(b"\r\nAccept-Encoding: identity\r\n") > 0
    for coding, body in ((b"gzip", GZIP), (b"x-gzip", GZIP), (b"deflate", ZLIB), (b"deflate", RAW),
                         (b"GZIP, identity", GZIP)):
        c = coded(coding, body)
        assert c.response.status_code == 200 and c.response.content == CONFIG, (coding, c.error)
        assert c.response.body_error is None and c.error is None
    for coding, body, why in ((b"br", b"\x8b\x02\x80", "br, which the agent cannot decode"),
                              (b"gzip, br", GZIP, "cannot decode"),
                              (b"gzip", GZIP[:20], "damaged or cut short"),
                              (b"gzip", b"not gzip at all", "damaged or cut short"),
                              (b"deflate", GZIP, "damaged or cut short")):
        c = coded(coding, body)
        assert c.response.status_code == 200 and why in c.response.body_error, (coding, c.response.body_error)
        assert why in c.error  # a caller that needs the body sees a failed call
    c = coded(b"gzip", GZIP, max_body=100)  # 46 bytes coded, 323 decoded
    assert "over 100 bytes" in c.response.body_error
    got = []
    c = coded(b"gzip", GZIP, sink=got.append)  # a download: never coded bytes into the file
    assert got == [] and "not taken for a download" in c.error and c.response.status_code == 200


def test_a_sink_that_fails_ends_the_call_judged_by_its_status_line():
    # issue 24, item 6: the sink's error (a download into a full cache_dir)
    # goes through the call's real path (step): the answer was a 200, and
    # its body is not whole for that reason.
    from portable.test_conn import _listener
    from socketman import rt
    srv, port = _listener()

    def full(data):
        raise OSError(28, "no space left on device")  # ENOSPC (MicroPython's errno may lack the name)
    c = http.Call("GET", "http://127.0.0.1:%d/update.tar.gz" % port, timeout=3, sink=full).start()
    s, _ = srv.accept()
    s.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789")
    end = rt.ms() + 3000
    while not c.done() and rt.ms() < end:
        w = c.wants()
        c.step(rt.wait_io(w[0][0], w[0][1], 20) if w else 0)
        c.service()
    s.close()
    srv.close()
    assert c.done() and c.response is not None and c.response.status_code == 200, c.error
    assert "28" in c.response.body_error and c.response.body_error in c.error, c.error
