# The config watch next to a FIFO: it needs a shell to make one (mkfifo),
# so this file runs under CPython and the unix MicroPython only.
import os

from portable.support import tmpdir, write
from socketman import proc
from socketman.watch import Watch


def test_a_fifo_or_a_directory_is_watched_without_being_read():
    d = tmpdir()
    write(d + "/network", "x\n")
    assert proc.system("mkfifo %s/pipe" % d) == 0  # opening it to read would wait for a writer
    os.mkdir(d + "/sub")
    w = Watch(d)
    assert w.changes() == []
    os.rmdir(d + "/sub")
    assert w.changes() == ["sub"]
