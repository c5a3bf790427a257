# gzip for the stats uploads (PROTOCOL 5), the one place that makes it, with
# whatever the runtime has: zlib (CPython), the deflate module when it can
# compress (MicroPython built with compression; OpenWRT's is not), the
# system's gzip (BusyBox on OpenWRT) in the background, else a valid gzip of
# stored blocks, CRC32 by binascii. What a runtime offers is found by trying.
import binascii
import struct

from .. import fs, proc

METHODS = ("zlib", "deflate", "system", "stored")


def _in_process(method, data):
    """gzip bytes of data by "zlib" or "deflate", or None when this runtime
    cannot compress that way."""
    if method == "zlib":
        try:
            import zlib
            c = zlib.compressobj(6, zlib.DEFLATED, 31)
        except (ImportError, AttributeError):
            return None  # MicroPython has no zlib
        return c.compress(data) + c.flush()
    if method == "deflate":
        try:
            import io

            import deflate
            buf = io.BytesIO()
            with deflate.DeflateIO(buf, deflate.GZIP) as d:
                d.write(data)
            return buf.getvalue()
        except (ImportError, AttributeError, OSError):
            return None  # no module, or built without compression
    return None


def available():
    """The methods this runtime and system offer, best first."""
    out = [m for m in ("zlib", "deflate") if _in_process(m, b"") is not None]
    if proc.system("command -v gzip >/dev/null 2>&1") == 0:
        out.append("system")
    out.append("stored")
    return out


def compress(data, method):
    """gzip bytes of data with an in-process method ("zlib", "deflate" or
    "stored"); ValueError when this runtime has not that method."""
    if method == "stored":
        return stored(data)
    out = _in_process(method, data)
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


def stored_file(src, dst):
    """stored() from file to file, in 4 KiB blocks: memory stays small
    whatever the size. OSError when a file cannot be read or written."""
    crc = n = 0
    with open(src, "rb") as f, open(dst, "wb") as out:
        out.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")
        chunk = f.read(4096)
        while True:
            nxt = f.read(4096) if chunk else b""
            crc = binascii.crc32(chunk, crc)
            n += len(chunk)
            out.write(struct.pack("<BHH", 0 if nxt else 1, len(chunk), len(chunk) ^ 0xFFFF))
            out.write(chunk)
            if not nxt:
                break
            chunk = nxt
        out.write(struct.pack("<II", crc & 0xFFFFFFFF, n & 0xFFFFFFFF))


class SystemGzip:
    """`gzip -c` in the background, file to file: write the input to
    .input, start(), then poll() until the gzip file is there."""

    def __init__(self, workdir, tag):
        self.input = workdir + "/in"
        self.batch = proc.Batch(workdir + "/run", tag, 30000)

    def start(self, data=None):
        """Gzip .input in the background; with data (bytes), write it there
        first."""
        if data is not None:
            with open(self.input, "wb") as f:
                f.write(data)
        self.batch.start(["gzip -c %s > in.gz && echo ok > done" % proc.shell_quote(self.input)])

    def poll(self):
        """None while running; the path of the gzip file; or False when gzip
        failed."""
        done = self.batch.poll()
        if done is None:
            return None
        if not done or self.batch.read("done") != b"ok\n":
            return False
        return self.batch.dir + "/in.gz"

    def stored(self):
        """The path of .input made into stored blocks (gzip failed)."""
        dst = self.batch.dir + "/in.gz"
        stored_file(self.input, dst)
        return dst

    def data(self):
        """What was given to start(), for a fallback."""
        return fs.read_file(self.input) or b""
