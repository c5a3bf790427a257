from portable.support import raises
from socketman import urls


def test_split():
    assert urls.split("http://127.0.0.1/x") == ("http", "127.0.0.1", 80, "/x")
    assert urls.split("https://h:8443") == ("https", "h", 8443, "/")
    assert urls.split("HTTP://h?a=1#frag") == ("http", "h", 80, "/?a=1")
    assert urls.split("http://[::1]:9/p") == ("http", "::1", 9, "/p")


def test_split_rejects():
    for u in ("", "h/x", "ftp://h/", "http://", "http://h:0/", "http://h:x/", "http://u:p@h/",
              "http://h/a b", "http://[::1/", 5):
        raises(ValueError, urls.split, u)


def test_add_query():
    assert urls.add_query("http://h/s", [("access_token", "t"), ("mac", "aa:bb")]) == \
        "http://h/s?access_token=t&mac=aa%3Abb"
    assert urls.add_query("http://h/s?x=1", [("a", "b c")]) == "http://h/s?x=1&a=b%20c"
    assert urls.add_query("http://h/s", []) == "http://h/s"


def test_quote_utf8():
    assert urls.quote("é/") == "%C3%A9%2F"
