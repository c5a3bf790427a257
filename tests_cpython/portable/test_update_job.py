# meta.msg of an update job (PROTOCOL 10) and the request it makes, under
# every runtime.
from portable.support import raises
from socketman import http
from socketman.jobs.update import target

HEX = "0123456789abcdef" * 4


def test_meta_msg_is_a_url_and_its_sha256():
    assert target("https://fleet.example.com/b/s-1.5.0.tar.gz#sha256=" + HEX) == (
        "https://fleet.example.com/b/s-1.5.0.tar.gz", HEX)
    assert target(" http://10.0.0.1:8080/x?t=1#sha256=" + HEX.upper() + "\n") == (
        "http://10.0.0.1:8080/x?t=1", HEX)  # either case; kept as lowercase
    for bad in ("https://h/x.tar.gz", "https://h/x.tar.gz#" + HEX, "https://h/x#sha256=" + HEX[:63],
                "https://h/x#sha256=" + HEX + "0", "https://h/x#sha256=" + HEX[:63] + "g",
                "https://h/x#md5=" + HEX, "ftp://h/x#sha256=" + HEX, "/x.tar.gz#sha256=" + HEX,
                "https://#sha256=" + HEX, "https://h/x y#sha256=" + HEX, "#sha256=" + HEX):
        why = str(raises(ValueError, target, bad))
        assert why.startswith("meta.msg must be an http(s) URL ending in #sha256=<64 hex digits>"), bad


def test_the_fragment_is_not_sent():
    url, _ = target("http://127.0.0.1:9/b/s.tar.gz?k=v#sha256=" + HEX)
    c = http.Call("GET", url)
    head = c.parts[0]
    assert head.startswith(b"GET /b/s.tar.gz?k=v HTTP/1.1\r\n") and b"sha256" not in head
