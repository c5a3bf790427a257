# A gzip'd tar unpacked into a new directory in bounded memory, a step at a
# time (PROTOCOL 10: the update archive). ustar, GNU (long names) and pax
# (per-file path and size) headers are read; what could reach outside the
# directory or is not a plain file or directory refuses the whole archive:
# a path that is absolute or climbs with "..", a hard or symbolic link, a
# device file or FIFO, an entry type this reader does not know. Memory: one
# 512-byte header, one data chunk and the decompressor's 32 KiB window,
# whatever the archive holds. Decompression with whatever the runtime has:
# MicroPython's deflate module (1.23 and later can decompress), else
# CPython's gzip. Loaded only by an update.
from . import fs, text

BLOCK = 512
CHUNK = 4096
MAX_NAME = 1024      # bytes of a path, long names included
MAX_EXT = 8192       # bytes of a pax header or a GNU long name entry
MAX_MEMBERS = 4096


class Refused(Exception):
    """The archive is refused whole; str() says why (a member's name in it
    when one is to blame)."""


def _gunzip(f):
    """A reader of the decompressed bytes of the open gzip file f, with
    read(n). The runtime's own decompressor, found by trying."""
    try:
        import deflate
        return deflate.DeflateIO(f, deflate.GZIP)
    except ImportError:
        import gzip  # CPython
        return gzip.GzipFile(fileobj=f, mode="rb")


def _octal(field, what):
    """A number field of a header: octal digits (NUL or space ended), or
    GNU's base-256 (first byte 0x80)."""
    if field and field[0] & 0x80:
        n = field[0] & 0x7F
        for b in field[1:]:
            n = (n << 8) | b
        return n
    digits = field.split(b"\0")[0].strip()
    if not digits:
        return 0
    for b in digits:
        if not 0x30 <= b <= 0x37:
            raise Refused("bad %s field in a tar header" % what)
    return int(digits.decode(), 8)


def _checksum_ok(h):
    want = _octal(h[148:156], "checksum")
    # The checksum field counts as eight spaces. Old tars summed signed bytes.
    total = sum(h[:148]) + 256 + sum(h[156:])
    if total == want:
        return True
    signed = total
    for b in h:
        if b > 127:
            signed -= 256
    for b in h[148:156]:  # the field itself was counted as spaces, not as its bytes
        if b > 127:
            signed += 256
    return signed == want


def safe_path(raw):
    """The relative path "a/b/c" (str) of a member's name (bytes), "" for
    the top directory itself; Refused for a name that would leave the
    directory (absolute, or a ".." part), that is not UTF-8 or is too long."""
    if len(raw) > MAX_NAME:
        raise Refused("a member's name is over %d bytes" % MAX_NAME)
    if not text.valid(raw):
        raise Refused("a member's name is not UTF-8: %s" % text.utf8(raw))
    name = raw.decode()
    if name.startswith("/"):
        raise Refused("an absolute path: %s" % name)
    parts = []
    for p in name.split("/"):
        if p == "..":
            raise Refused("a path that leaves the directory: %s" % name)
        if p and p != ".":
            parts.append(p)
    return "/".join(parts)


class Unpacker:
    """Unpacks the gzip'd tar at path into dest, a directory it makes (it
    must not exist yet: a leftover is removed first by the caller). step()
    until it says True. At most max_bytes of file data in all (a small
    archive must not fill the flash). Refused when the archive is refused;
    OSError when dest cannot be written. Either way the caller removes
    dest: a half-unpacked tree is never used."""

    def __init__(self, path, dest, max_bytes):
        self.dest = dest
        self.max_bytes = max_bytes
        self.total = 0        # bytes of file data written
        self.members = 0
        self.files = 0
        self.out = None       # the member being written, open
        self.left = 0         # bytes of its data still to come
        self.pad = 0          # padding after them
        self.long_name = None  # GNU 'L' or pax path for the next header
        self.pax_size = None
        self.done = False
        fs.makedirs(dest)
        self.raw = open(path, "rb")
        try:
            self.gz = _gunzip(self.raw)
        except (OSError, ValueError) as e:
            self.close()
            raise Refused("not a gzip file (%s)" % e)

    def close(self):
        """Let the files go (also after a refusal)."""
        if self.out is not None:
            self.out.close()
            self.out = None
        for f in ("gz", "raw"):
            obj = getattr(self, f, None)
            if obj is not None:
                try:
                    obj.close()
                except (OSError, ValueError):
                    pass
                setattr(self, f, None)

    def _read(self, n):
        """Exactly n decompressed bytes; Refused at a cut or broken stream."""
        parts = []
        got = 0
        while got < n:
            try:
                piece = self.gz.read(n - got)
            except (OSError, ValueError, EOFError) as e:  # zlib.error is not among them: see step()
                raise Refused("not a valid gzip'd tar (%s)" % e)
            if not piece:
                raise Refused("the archive is cut short")
            parts.append(piece)
            got += len(piece)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def step(self, budget=32768):
        """Unpack about budget bytes more: True once the whole archive is
        in dest, False while there is more."""
        try:
            return self._step(budget)
        except Refused:
            self.close()
            raise
        except (OSError, MemoryError):  # the caller says so; not the archive's fault
            self.close()
            raise
        except Exception as e:  # CPython's zlib.error, a corrupt stream
            self.close()
            raise Refused("not a valid gzip'd tar (%s)" % e)

    def _step(self, budget):
        while budget > 0 and not self.done:
            if self.out is not None or self.left or self.pad:
                budget -= self._data(budget)
            else:
                self._header()
                budget -= BLOCK
        if self.done:
            self.close()
        return self.done

    def _data(self, budget):
        n = min(self.left, CHUNK, budget)
        if n:
            data = self._read(n)
            if self.out is not None:
                self.out.write(data)
            self.left -= n
            return n
        if self.out is not None:
            self.out.close()
            self.out = None
        if self.pad:
            self._read(self.pad)
            n, self.pad = self.pad, 0
        return n or 1

    def _header(self):
        h = self._read(BLOCK)
        if h == bytes(BLOCK):  # the end: one zero block is enough, what follows is not read
            self.done = True
            return
        if not _checksum_ok(h):
            raise Refused("not a tar archive (a header's checksum is wrong)")
        self.members += 1
        if self.members > MAX_MEMBERS:
            raise Refused("more than %d members" % MAX_MEMBERS)
        kind = h[156:157]
        size = _octal(h[124:136], "size")
        if kind in (b"L", b"x", b"g"):
            self._extended(kind, size)
            return
        if self.pax_size is not None:
            size, self.pax_size = self.pax_size, None
        raw = h[0:100].split(b"\0")[0]
        if h[257:265] == b"ustar\x0000":  # POSIX: a prefix; GNU uses those bytes otherwise
            prefix = h[345:500].split(b"\0")[0]
            if prefix:
                raw = prefix + b"/" + raw
        if self.long_name is not None:
            raw, self.long_name = self.long_name, None
        name = safe_path(raw)
        shown = name or "."
        if kind in (b"1", b"2", b"K"):
            raise Refused("a link: %s" % shown)
        if kind in (b"3", b"4"):
            raise Refused("a device file: %s" % shown)
        if kind == b"6":
            raise Refused("a FIFO: %s" % shown)
        if kind == b"5":
            if name:
                fs.makedirs(self.dest + "/" + name)
            self._skip(size)
            return
        if kind not in (b"0", b"\0", b"7"):
            raise Refused("an entry of type %r, not a file or directory: %s" % (kind.decode(), shown))
        if not name:
            raise Refused("a file with no name")
        self.total += size
        if self.total > self.max_bytes:
            raise Refused("more than %d bytes unpacked" % self.max_bytes)
        cut = name.rfind("/")
        if cut > 0:
            fs.makedirs(self.dest + "/" + name[:cut])
        self.out = open(self.dest + "/" + name, "wb")
        self.files += 1
        self._skip(size)

    def _skip(self, size):
        """The next size bytes are the member's data (written when a file is
        open), then padding to the block."""
        self.left = size
        self.pad = (BLOCK - size % BLOCK) % BLOCK

    def _extended(self, kind, size):
        """A GNU long name (L) or a pax header (x: for the next member, g:
        global) : read whole, it is small."""
        if size > MAX_EXT:
            raise Refused("an extended header of %d bytes" % size)
        data = self._read(size)
        pad = (BLOCK - size % BLOCK) % BLOCK
        if pad:
            self._read(pad)
        if kind == b"L":
            self.long_name = data.split(b"\0")[0]
            return
        if kind == b"g":
            return  # global defaults (a comment, times): nothing this reader uses
        for key, value in _pax_records(data):
            if key == b"path":
                self.long_name = value
            elif key == b"size":
                if not value.isdigit():
                    raise Refused("a bad size in a pax header")
                self.pax_size = int(value)
            elif key == b"linkpath":
                raise Refused("a link: %s" % text.utf8(value))


def _pax_records(data):
    """(key, value) bytes of the "<len> <key>=<value>\\n" records."""
    out = []
    i = 0
    while i < len(data):
        sp = data.find(b" ", i)
        if sp < 0 or not data[i:sp].isdigit():
            raise Refused("a bad pax header")
        n = int(data[i:sp])
        rec = data[sp + 1:i + n]
        if n <= sp - i or i + n > len(data) or not rec.endswith(b"\n") or b"=" not in rec:
            raise Refused("a bad pax header")
        key, _, value = rec[:-1].partition(b"=")
        out.append((key, value))
        i += n
    return out
