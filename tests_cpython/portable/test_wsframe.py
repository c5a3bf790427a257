# The WebSocket wire format (wsframe.py, RFC 6455) on every runtime: the
# big-integer masking against a byte-by-byte reference, client frames,
# and the parser of server frames fed every way a TCP stream can cut them,
# with each frame RFC 6455 refuses ending it with the right close status.
from portable.support import Seeded, raises
from socketman import wsframe
from socketman.wsframe import (
    BINARY,
    CLOSE,
    CONT,
    ERROR,
    PING,
    PONG,
    PROTOCOL_ERROR,
    TEXT,
    TOO_BIG,
    Parser,
    ProtocolError,
)


def _reference(data, key):
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


def _server(op, payload=b"", fin=True, rsv=0, masked=False, size=None):
    """A server frame as bytes (unmasked unless asked: servers do not mask)."""
    n = len(payload) if size is None else size
    b0 = (0x80 if fin else 0) | rsv | op
    m = 0x80 if masked else 0
    if n < 126:
        head = bytes((b0, m | n))
    elif n < 65536:
        head = bytes((b0, m | 126, n >> 8, n & 0xFF))
    else:
        head = bytes((b0, m | 127)) + n.to_bytes(8, "big")
    return head + (b"\x01\x02\x03\x04" if masked else b"") + payload


def _feed(parser, data, step):
    """The events of data fed step bytes at a time, adjacent BINARY pieces
    joined (how the pieces came must not matter)."""
    out = []
    for i in range(0, len(data), step):
        for op, v in parser.feed(data[i:i + step]):
            if op == BINARY and out and out[-1][0] == BINARY:
                out[-1][1].extend(v)
            else:
                out.append((op, bytearray(v) if op == BINARY else v))
    return [(op, bytes(v) if op == BINARY else v) for op, v in out]


def test_masking_matches_the_byte_by_byte_xor():
    rnd = Seeded(7)
    for n in (0, 1, 2, 3, 4, 5, 7, 8, 125, 126, 4095, 4096, 4097, 8192, 10001):
        data = bytes(rnd.below(256) for _ in range(n))
        key = bytes(rnd.below(256) for _ in range(4))
        got = wsframe.mask(data, key)
        assert len(got) == n and bytes(got) == _reference(data, key), n
        assert bytes(wsframe.mask(got, key)) == data  # masking twice gives it back
    # keys whose bytes are 0 or 0xFF at either end (no carry, no lost byte)
    for key in (b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x00\xff\x00\xff", b"\xff\x00\x00\x01"):
        data = b"\x00\xff" * 2051
        assert bytes(wsframe.mask(data, key)) == _reference(data, key), key


def test_client_frames_are_masked_with_the_right_length_field():
    for n, head_len in ((0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)):
        payload = bytes(i & 0xFF for i in range(n))
        f = wsframe.frame(BINARY, payload, b"\x11\x22\x33\x44")
        assert f[0] == 0x82 and f[1] & 0x80, n  # FIN, binary; masked
        assert len(f) == head_len + 4 + n, n
        size = f[1] & 0x7F
        if head_len == 4:
            assert size == 126 and (f[2] << 8 | f[3]) == n
        elif head_len == 10:
            assert size == 127 and int.from_bytes(f[2:10], "big") == n
        else:
            assert size == n
        assert f[head_len:head_len + 4] == b"\x11\x22\x33\x44"
        assert bytes(wsframe.mask(f[head_len + 4:], b"\x11\x22\x33\x44")) == payload
    a, b = wsframe.frame(PING, b"x"), wsframe.frame(PING, b"x")
    assert a[0] == 0x89 and a[2:6] != b[2:6]  # a fresh key per frame


def test_close_payload_is_cut_to_a_control_frame():
    p = wsframe.close_payload(1000, "\u00e9" * 200)
    assert len(p) <= 125 and p[:2] == b"\x03\xe8"
    p[2:].decode()  # not cut inside a character
    assert wsframe.close_payload(1001) == b"\x03\xe9"


def test_frames_come_out_however_the_stream_is_cut():
    body = bytes(i & 0xFF for i in range(70000))
    stream = (_server(BINARY, body[:5]) + _server(PING, b"are you there") +
              _server(BINARY, body[5:300], fin=False) + _server(PING, b"") +   # a ping inside a message
              _server(CONT, body[300:300], fin=False) +                      # an empty fragment
              _server(CONT, body[300:65836]) +
              _server(TEXT, b"dropped") + _server(TEXT, b"also", fin=False) + _server(CONT, b" dropped") +
              _server(PONG, b"p") + _server(BINARY, b"") + _server(BINARY, body[65836:]) +
              _server(CLOSE, b"\x03\xe8bye"))
    want = [(BINARY, body[:5]), (PING, b"are you there"), (BINARY, body[5:300]), (PING, b""),
            (BINARY, body[300:65836]), (PONG, b"p"), (BINARY, body[65836:]), (CLOSE, (1000, "bye"))]
    for step in (1, 3, 7, 125, 4096, len(stream)):
        got = _feed(Parser(), stream, step)
        assert got == want, (step, [(op, len(v) if op == BINARY else v) for op, v in got])


def test_a_close_without_status_and_with_a_bad_status():
    assert Parser().feed(_server(CLOSE)) == [(CLOSE, (1005, ""))]
    for payload, code in ((b"\x03", PROTOCOL_ERROR), (b"\x03\xe7", PROTOCOL_ERROR), (b"\x03\xed", PROTOCOL_ERROR),
                          (b"\x07\xd0", PROTOCOL_ERROR), (b"\x13\x88", PROTOCOL_ERROR),
                          (b"\x03\xe8\xff\xfe", wsframe.BAD_TEXT)):
        got = Parser().feed(_server(CLOSE, payload))
        assert len(got) == 1 and got[0][0] == ERROR and got[0][1].code == code, (payload, got)
    assert Parser().feed(_server(CLOSE, b"\x0f\xa0app"))[0] == (CLOSE, (4000, "app"))


BAD = (
    ("reserved bits", _server(BINARY, b"x", rsv=0x40), PROTOCOL_ERROR),
    ("reserved bit 3", _server(BINARY, b"x", rsv=0x10), PROTOCOL_ERROR),
    ("opcode 3", _server(3, b"x"), PROTOCOL_ERROR),
    ("opcode 11", _server(11, b""), PROTOCOL_ERROR),
    ("masked", _server(BINARY, b"abcd", masked=True), PROTOCOL_ERROR),
    ("control over 125", _server(PING, b"p" * 126), PROTOCOL_ERROR),
    ("fragmented control", _server(PING, b"p", fin=False), PROTOCOL_ERROR),
    ("lone continuation", _server(CONT, b"x"), PROTOCOL_ERROR),
    ("new message inside one", _server(BINARY, b"a", fin=False) + _server(BINARY, b"b"), PROTOCOL_ERROR),
    ("over the cap", _server(BINARY, size=65537), TOO_BIG),
    ("64-bit size", _server(BINARY, size=1 << 40), TOO_BIG),
)


def test_every_refused_frame_ends_the_stream_with_its_status():
    for what, data, code in BAD:
        for step in (1, len(data)):
            p = Parser()
            got = _feed(p, _server(BINARY, b"before") + data + _server(BINARY, b"after"), step)
            first = got[0]
            assert first[0] == BINARY and first[1][:6] == b"before", what  # what came before is handed on
            assert got[-1][0] == ERROR and isinstance(got[-1][1], ProtocolError), (what, got)
            assert got[-1][1].code == code, (what, got[-1][1].code)
            assert not [e for e in got if e == (BINARY, b"after")], what
            assert p.feed(_server(BINARY, b"later")) == [], what  # nothing after it is read


def test_the_cap_is_the_parsers_own():
    p = Parser(max_frame=10)
    assert p.feed(_server(BINARY, b"x" * 10)) == [(BINARY, b"x" * 10)]
    assert p.feed(_server(BINARY, b"x" * 11))[-1][1].code == TOO_BIG


def test_handshake_accept_and_urls():
    # The example of RFC 6455 section 1.3 (None where a runtime has no SHA-1).
    got = wsframe.accept_for("dGhlIHNhbXBsZSBub25jZQ==")
    assert got in ("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", None)
    assert wsframe.split("wss://fleet.example.com/tunnel/8f3c?x=1") == (True, "fleet.example.com", 443,
                                                                        "/tunnel/8f3c?x=1")
    assert wsframe.split("ws://127.0.0.1:8080/t") == (False, "127.0.0.1", 8080, "/t")
    assert wsframe.split("WS://[::1]/t#frag") == (False, "::1", 80, "/t")
    for bad in ("http://x/t", "wss//x", "wss://", "ws://a b/", "ws://h:0/", "ftp://x"):
        raises(ValueError, wsframe.split, bad)
