import os

from portable.support import tmpdir, write
from socketman.watch import Watch


def test_nothing_at_start_then_each_change_once():
    d = tmpdir()
    write(d + "/network", "config interface 'lan'\n")
    write(d + "/wireless", "x\n")
    w = Watch(d)
    assert w.changes() == []
    write(d + "/network", "config interface 'wan'\n")
    assert w.changes() == ["network"]
    assert w.changes() == []
    write(d + "/firewall", "new\n")
    os.remove(d + "/wireless")
    assert w.changes() == ["firewall", "wireless"]
    assert w.changes() == []


def test_same_size_same_second_replace_is_seen():
    d = tmpdir()
    write(d + "/network", "aaaa\n")
    w = Watch(d)
    write(d + "/network.tmp", "bbbb\n")
    os.rename(d + "/network.tmp", d + "/network")  # what uci commit does
    assert w.changes() == ["network"]


def test_missing_directory():
    w = Watch("/nonexistent/socketman-config")
    assert w.changes() == []



def test_a_file_name_that_is_not_utf8_is_watched_and_reported_as_text():
    # MicroPython's os.listdir(str) raised UnicodeError on such a name: the
    # watch, built at start, took the monitor cycle down with it.
    d = tmpdir()
    write(d + "/network", "x\n")
    w = Watch(d)
    with open(d.encode() + b"/bad\xffname", "wb") as f:
        f.write(b"y\n")
    assert w.changes() == ["bad\ufffdname"]
    with open(d.encode() + b"/bad\xffname", "wb") as f:
        f.write(b"changed\n")
    assert w.changes() == ["bad\ufffdname"]
