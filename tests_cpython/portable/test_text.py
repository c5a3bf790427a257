from socketman import text


def test_utf8_valid_passes():
    assert text.utf8("héllo €".encode()) == "héllo €"


def test_utf8_invalid_replaced():
    assert text.utf8(b"a\xffb") == "a\ufffdb"
    assert text.utf8(b"\xc3") == "\ufffd"
    assert text.utf8(b"ok\xe2\x82") == "ok\ufffd\ufffd"
    assert text.utf8(b"\xc0\xaf") == "\ufffd\ufffd"


def test_cut_keeps_whole_characters():
    s = "aé€".encode()  # 1 + 2 + 3 bytes
    assert text.cut(s, 10) == s
    assert text.cut(s, 6) == s
    assert text.cut(s, 5) == "aé".encode()
    assert text.cut(s, 4) == "aé".encode()
    assert text.cut(s, 2) == b"a"
    assert text.cut(s, 0) == b""


def test_utf8_rejects_overlong_and_surrogates():
    assert text.utf8(b"\xe0\x80\xaf") == "\ufffd\ufffd\ufffd"
    assert text.utf8(b"\xed\xa0\x80") == "\ufffd\ufffd\ufffd"
    assert text.utf8(b"\xf4\x90\x80\x80") == "\ufffd" * 4
    assert text.utf8("\U0001F600".encode()) == "\U0001F600"
