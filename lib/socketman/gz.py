# gzip with whatever the runtime has (PROTOCOL 5): zlib (CPython), the deflate
# module when it can compress (MicroPython built with compression), the
# system's gzip (BusyBox on OpenWRT) in the background, else a valid gzip of
# stored blocks, CRC32 by binascii.
import binascii
import struct

from . import rt

METHODS = ("zlib", "deflate", "system", "stored")


def available():
    """The methods this runtime and system offer, best first."""
    out = [m for m in ("zlib", "deflate") if rt.in_process_gzip(m, b"") is not None]
    if rt.system("command -v gzip >/dev/null 2>&1") == 0:
        out.append("system")
    out.append("stored")
    return out


def compress(data, method):
    """gzip bytes of data with an in-process method (not "system")."""
    if method == "stored":
        return stored(data)
    out = rt.in_process_gzip(method, data)
    if out is None:
        raise ValueError("gzip method %s is not available here" % method)
    return out


def stored(data):
    """A gzip member of uncompressed deflate blocks: bigger, never wrong."""
    out = [b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"]
    n = len(data)
    pos = 0
    while True:
        chunk = data[pos:pos + 65535]
        pos += len(chunk)
        final = 1 if pos >= n else 0
        out.append(struct.pack("<BHH", final, len(chunk), len(chunk) ^ 0xFFFF))
        out.append(chunk)
        if final:
            break
    out.append(struct.pack("<II", binascii.crc32(data) & 0xFFFFFFFF, n & 0xFFFFFFFF))
    return b"".join(out)


class SystemGzip:
    """`gzip -c` in the background: start(), then poll() until the bytes come."""

    def __init__(self, workdir, tag):
        self.dir = workdir
        self.tag = tag
        rt.makedirs(workdir)

    def start(self, data):
        for name in rt.listdir(self.dir):
            rt.remove(self.dir + "/" + name)
        with open(self.dir + "/in", "wb") as f:
            f.write(data)
        with open(self.dir + "/gz.sh", "w") as f:
            f.write("gzip -c %s/in > %s/in.gz\n" % ((rt.shell_quote(self.dir),) * 2))
        self.started = rt.ms()
        rt.spawn(self.dir + "/gz.sh", self.dir, self.tag)

    def poll(self):
        """None while running; the gzip bytes; or False when it failed."""
        code = rt.exit_status(self.dir)
        if code is None:
            if rt.ms() - self.started < 30000:
                return None
            rt.kill_tree(self.tag)
            return False
        if code != 0:
            return False
        return rt.read_file(self.dir + "/in.gz") or False
