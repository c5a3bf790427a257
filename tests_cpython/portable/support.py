# Helpers the portable tests share. Runs on CPython and MicroPython alike:
# no pytest, no os.path, no tempfile.
import os
import sys

_here = __file__.rpartition("/")[0] or "."
TESTS = _here.rpartition("/")[0] or "."
ROOT = TESTS.rpartition("/")[0] or "."
FIXTURES = TESTS + "/fixtures"
OPENWRT = FIXTURES + "/openwrt"

# SOCKETMAN_LIB: another lib/ to test (a .mpy bundle's), as mp_run.py says.
for _p in (os.getenv("SOCKETMAN_LIB") or ROOT + "/lib",):
    if _p not in sys.path:
        sys.path.insert(0, _p)

_count = [0]


def tmpdir(prefix="smt"):
    """A new empty directory under $TMPDIR (or /tmp)."""
    base = os.getenv("TMPDIR") or "/tmp"
    while True:
        _count[0] += 1
        r = os.urandom(4)
        name = "%s/%s-%d-%02x%02x%02x%02x" % (base, prefix, _count[0], r[0], r[1], r[2], r[3])
        try:
            os.mkdir(name)
            return name
        except OSError:
            pass


def write(path, data):
    with open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    return path


def read(path):
    with open(path, "rb") as f:
        return f.read()


def fixture(rel):
    return read(OPENWRT + "/" + rel)


def raises(exc, fn, *args):
    """The exception fn(*args) raised, which must be an exc."""
    try:
        fn(*args)
    except exc as e:
        return e
    raise AssertionError("%s did not raise %s" % (getattr(fn, "__name__", fn), exc.__name__))


class Seeded:
    """Numbers from a seed, the same on every runtime (their `random`
    modules differ): fuzz corpora that fail the same way everywhere."""

    def __init__(self, seed):
        self.s = seed

    def below(self, n):
        self.s = (self.s * 1103515245 + 12345) & 0x7FFFFFFF
        return self.s % n if n else 0
