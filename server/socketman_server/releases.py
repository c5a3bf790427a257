"""Releases of the agent (issue 23, PROTOCOL 10): what the server checks in
an update archive before it keeps it, and where it keeps it.

An update archive is a gzip'd tar of the tree tools/build_mpy.sh makes:
`main.py` at its top, the `socketman` package below `lib/`, as .mpy or .py
files (`make package` writes one as dist/socketman-<version>.tar.gz). The
server refuses, with the reason, anything a device would refuse or could
not run: not gzip, not tar, a member whose path leaves the tree, a link, a
device file or anything but regular files and directories, a name twice,
no main.py, no lib/socketman/__init__, more than the size limits, .mpy
files of different formats. The version is the archive's own: `VERSION =
"..."` in lib/socketman/__init__.py, or, when only the .mpy is there, the
string that lib/socketman/__init__.mpy stores into VERSION (read from the
.mpy's tables and bytecode, no MicroPython needed). A file named
socketman-<version>.tar.gz must name that same version.

Archives are kept as <data dir>/releases/<sha256>.tar.gz, written to a
temporary file in the same folder and renamed into place."""
import gzip
import hashlib
import os
import re
import shutil
import tarfile
import tempfile
import zlib

from .protocol import BadInput

MAX_BYTES = 1024 * 1024           # an archive, as PROTOCOL 1's default update_max_bytes
MAX_UNPACKED = 32 * 1024 * 1024   # its files together, unpacked (a gzip bomb is not unpacked whole)
MAX_MEMBERS = 4096
MAX_INIT = 64 * 1024              # lib/socketman/__init__.py or .mpy
VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_~-]{0,49}$")  # goes into a URL path and a file name
_PY_VERSION_RE = re.compile(rb'^VERSION\s*=\s*["\']([^"\'\r\n]*)["\']', re.M)
_NAME_PART_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
FILE_NAME_RE = re.compile(r"^socketman-(.+)\.tar\.gz$")
INIT_PY, INIT_MPY = "lib/socketman/__init__.py", "lib/socketman/__init__.mpy"


class _Bounded:
    """A read-only file over the gunzipped stream that refuses (BadInput) to
    give more than `limit` bytes: the tar reader never unpacks past it."""

    def __init__(self, f, limit):
        self.f, self.left = f, limit

    def read(self, n=-1):
        data = self.f.read(n if n is not None and n >= 0 else self.left + 1)
        self.left -= len(data)
        if self.left < 0:
            raise BadInput("the archive unpacks to more than %d bytes" % MAX_UNPACKED)
        return data


def _member_name(m, files):
    """The member's path relative to the tree's top ("./" taken off), or
    BadInput for a path that would leave the tree or a name a device could
    not write."""
    name = m.name
    while name.startswith("./"):
        name = name[2:]
    name = name.rstrip("/")
    if name in ("", "."):
        return None
    if m.name.startswith("/") or "\\" in name or "\x00" in name:
        raise BadInput("the path %r in the archive leaves its folder" % m.name[:200])
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise BadInput("the path %r in the archive leaves its folder" % m.name[:200])
    if not all(_NAME_PART_RE.match(p) for p in parts):
        raise BadInput("the path %r in the archive has a name a device cannot take (letters, digits, . _ -)"
                       % m.name[:200])
    for i in range(1, len(parts)):
        if "/".join(parts[:i]) in files:
            raise BadInput("the path %r in the archive goes below a file" % m.name[:200])
    return name


def _kind_refused(m):
    if m.issym() or m.islnk():
        return "a link"
    if m.ischr() or m.isblk() or m.isfifo():
        return "a device file"
    return "neither a file nor a folder"


def inspect(path, filename="", max_bytes=MAX_BYTES):
    """Check an update archive (a file on disk). Returns {"version", "sha256",
    "size", "form" ("mpy v6" | "py"), "files"}. BadInput saying what is
    wrong otherwise. filename: the name it came with; a name of the form
    socketman-<version>.tar.gz must name the archive's own version."""
    size = os.path.getsize(path)
    if size > max_bytes:
        raise BadInput("the archive is %d bytes, over the %d the server takes (a device's update_max_bytes "
                       "is 1 MiB unless its config says otherwise)" % (size, max_bytes))
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        head = f.read(2)
        f.seek(0)
        for chunk in iter(lambda: f.read(65536), b""):
            digest.update(chunk)
    if head != b"\x1f\x8b":
        raise BadInput("not a gzip file (an update archive is a .tar.gz)")
    files, dirs, inits, mpy_forms = set(), set(), {}, set()
    try:
        with open(path, "rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as gz, \
                tarfile.open(fileobj=_Bounded(gz, MAX_UNPACKED), mode="r|") as tar:
            for n, m in enumerate(tar):
                if n >= MAX_MEMBERS:
                    raise BadInput("the archive holds more than %d members" % MAX_MEMBERS)
                name = _member_name(m, files)
                if name is None:
                    continue
                if name in files or name in dirs:
                    raise BadInput("%s is in the archive twice" % name)
                if m.isdir():
                    dirs.add(name)
                    continue
                if not m.isfile():
                    raise BadInput("%s in the archive is %s: refused" % (name, _kind_refused(m)))
                files.add(name)
                if name in (INIT_PY, INIT_MPY):
                    if m.size > MAX_INIT:
                        raise BadInput("%s is over %d bytes" % (name, MAX_INIT))
                    inits[name] = tar.extractfile(m).read()
                elif name.endswith(".mpy"):
                    mpy_forms.add(_mpy_form(tar.extractfile(m).read(4), name))
                if name == INIT_MPY:
                    mpy_forms.add(_mpy_form(inits[name][:4], name))
    except BadInput:
        raise
    except (gzip.BadGzipFile, zlib.error, EOFError) as e:
        raise BadInput("not a gzip file, or cut short (%s)" % e)
    except tarfile.TarError as e:
        raise BadInput("not a tar archive inside the gzip (%s)" % e)
    if "main.py" not in files:
        raise BadInput("no main.py at the top of the archive (it holds the tree tools/build_mpy.sh makes)")
    if not inits:
        raise BadInput("no lib/socketman/__init__.py or __init__.mpy in the archive")
    if len(mpy_forms) > 1:
        raise BadInput("the .mpy files are of different formats (%s): built by different mpy-cross versions"
                       % ", ".join(sorted(mpy_forms)))
    version = version_of(inits)
    m = FILE_NAME_RE.match(os.path.basename(filename or ""))
    if m and m.group(1) != version:
        raise BadInput("the file name says version %s, but the archive's lib/socketman/__init__ says %s"
                       % (m.group(1)[:60], version))
    return {"version": version, "sha256": digest.hexdigest(), "size": size,
            "form": mpy_forms.pop() if mpy_forms else "py", "files": len(files)}


def version_of(inits):
    """The agent's VERSION from {path: bytes} of lib/socketman/__init__.py
    and/or __init__.mpy (the .py when both are there). BadInput when it
    cannot be read or is not a version (digits, letters, . + _ ~ -)."""
    if INIT_PY in inits:
        m = _PY_VERSION_RE.search(inits[INIT_PY])
        if not m:
            raise BadInput('lib/socketman/__init__.py has no VERSION = "..." line')
        version = m.group(1).decode("utf-8", "replace")
    else:
        version = mpy_version(inits[INIT_MPY])
    if not VERSION_RE.match(version):
        raise BadInput("the archive's VERSION %r is not a version (1 to 50 of letters, digits, . + _ ~ -)"
                       % version[:60])
    return version


# ---- reading VERSION from an .mpy (MicroPython's .mpy format version 6) ----
# Layout (py/persistentcode.c, MicroPython 1.19 and later): "M", 6, flags,
# small-int bits; the number of qstrs and of constant objects (varuints);
# the qstrs (varuint length << 1, or index << 1 | 1 for one of the
# firmware's static qstrs; then the bytes and a NUL); the constants (a type
# byte, then for a str or bytes the length, the bytes and a NUL); then the
# module's code: varuint (length << 3 | flags), bytecode. `VERSION = "x"` is
# LOAD_CONST_STRING <qstr> (0x10) or LOAD_CONST_OBJ <const> (0x23), then
# STORE_NAME <qstr VERSION> (0x16).

_MPY_STR, _MPY_BYTES, _MPY_TUPLE = 5, 6, 10
_MPY_NUMBERS = (7, 8, 9)   # int, float, complex: their text, no NUL
_MPY_BARE = (0, 1, 2, 3, 4)  # function table, None, False, True, Ellipsis
_LOAD_CONST_STRING, _LOAD_CONST_OBJ, _STORE_NAME = 0x10, 0x23, 0x16


def _mpy_form(head, name):
    if len(head) < 4 or head[0:1] != b"M":
        raise BadInput("%s is not an .mpy file" % name)
    return "mpy v%d" % head[1]


class _Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def byte(self):
        if self.pos >= len(self.data):
            raise BadInput("lib/socketman/__init__.mpy is cut short")
        self.pos += 1
        return self.data[self.pos - 1]

    def uint(self):
        v = 0
        while True:
            b = self.byte()
            v = (v << 7) | (b & 0x7F)
            if not b & 0x80:
                return v

    def take(self, n):
        if self.pos + n > len(self.data):
            raise BadInput("lib/socketman/__init__.mpy is cut short")
        self.pos += n
        return self.data[self.pos - n:self.pos]


def _mpy_obj(r):
    """One constant of the .mpy's table: a str, or None for anything else."""
    kind = r.byte()
    if kind in _MPY_BARE:
        return None
    if kind == _MPY_TUPLE:
        for _ in range(r.uint()):
            _mpy_obj(r)
        return None
    if kind not in (_MPY_STR, _MPY_BYTES) + _MPY_NUMBERS:
        raise BadInput("lib/socketman/__init__.mpy has a constant of an unknown kind (%d)" % kind)
    data = r.take(r.uint())
    if kind in _MPY_NUMBERS:
        return None
    r.take(1)  # the NUL after a str or bytes
    return data.decode("utf-8", "replace") if kind == _MPY_STR else None


def mpy_version(data):
    """The string lib/socketman/__init__.mpy stores into VERSION at module
    level. BadInput when the file is not an .mpy of format 6 or does not
    store one string there."""
    r = _Reader(data)
    if r.take(2) != b"M\x06":
        raise BadInput("lib/socketman/__init__.mpy is not an .mpy of format 6 (MicroPython 1.19 or later)")
    r.take(2)
    n_qstr, n_obj = r.uint(), r.uint()
    qstrs = []
    for _ in range(n_qstr):
        v = r.uint()
        if v & 1:
            qstrs.append(None)  # one of the firmware's static qstrs: never our names
        else:
            qstrs.append(r.take(v >> 1).decode("utf-8", "replace"))
            r.take(1)
    objs = [_mpy_obj(r) for _ in range(n_obj)]
    code_len = r.uint() >> 3
    code = r.take(min(code_len, len(data) - r.pos))
    if "VERSION" not in qstrs:
        raise BadInput("lib/socketman/__init__.mpy has no VERSION")
    found = set()
    for i in range(len(code)):
        op = code[i]
        if op not in (_LOAD_CONST_STRING, _LOAD_CONST_OBJ):
            continue
        c = _Reader(code)
        c.pos = i + 1
        try:
            idx = c.uint()
            if c.byte() != _STORE_NAME or qstrs[c.uint()] != "VERSION":
                continue
            value = qstrs[idx] if op == _LOAD_CONST_STRING else objs[idx]
        except (BadInput, IndexError):
            continue
        if isinstance(value, str):
            found.add(value)
    if len(found) != 1:
        raise BadInput("cannot read VERSION from lib/socketman/__init__.mpy%s"
                       % (" (it is set to %s)" % ", ".join(sorted(found)) if found else ""))
    return found.pop()


# ---- adding one ----------------------------------------------------------------

def add(store, files, src, filename, uploaded_by, max_bytes):
    """Check an archive (releases.inspect) read from the binary file object
    src, keep it and record it. Returns the release row. BadInput, with
    nothing kept, for a refused archive or a version that exists."""
    tmp = files.copy_in(src, max_bytes)
    try:
        info = inspect(tmp, filename, max_bytes)
        old = store.release(info["version"])
        if old is not None:
            raise BadInput("release %s exists already (uploaded by %s)%s" % (
                info["version"], old["uploaded_by"] or "?", ": the same archive" if old["sha256"] == info["sha256"]
                else ": a version is uploaded once; build the new one with a new VERSION"))
        files.keep(tmp, info["sha256"])
        return store.add_release(info, filename, uploaded_by)
    finally:
        discard(tmp)


# ---- where archives are kept --------------------------------------------------

class ReleaseFiles:
    """The archives, as <data_dir>/releases/<sha256>.tar.gz. data_dir None:
    releases are off (a PostgreSQL server started without --data-dir)."""

    def __init__(self, data_dir):
        self.dir = os.path.join(data_dir, "releases") if data_dir else None

    def check(self):
        if self.dir is None:
            raise BadInput("releases need a folder to keep their archives: start the server (and run `release "
                           "add`) with --data-dir DIR (with SQLite it defaults to the database file's folder)")

    def path(self, sha256):
        self.check()
        if not re.fullmatch(r"[0-9a-f]{64}", sha256 or ""):
            raise BadInput("not a SHA-256")
        return os.path.join(self.dir, sha256 + ".tar.gz")

    def temp(self):
        """A new temporary file in the folder (same file system: the rename
        that keeps it is atomic): (open binary file, path)."""
        self.check()
        os.makedirs(self.dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".upload-", suffix=".part", dir=self.dir)
        return os.fdopen(fd, "wb"), tmp

    def copy_in(self, src, limit):
        """A copy of the file object `src` in a temporary file of the folder,
        refused (BadInput, nothing left behind) past `limit` bytes. Returns
        its path."""
        f, tmp = self.temp()
        try:
            with f:
                n = 0
                for chunk in iter(lambda: src.read(65536), b""):
                    n += len(chunk)
                    if n > limit:
                        raise BadInput("the archive is over the %d bytes the server takes" % limit)
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            _remove(tmp)
            raise
        return tmp

    def keep(self, tmp, sha256):
        """Rename a checked temporary file into place; returns its path."""
        path = self.path(sha256)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        return path

    def exists(self, sha256):
        return os.path.isfile(self.path(sha256))


def discard(path):
    _remove(path)


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        shutil.copyfileobj(f, _Hasher(h))
    return h.hexdigest()


class _Hasher:
    def __init__(self, h):
        self.h = h

    def write(self, b):
        self.h.update(b)
