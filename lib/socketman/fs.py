# Files, the same on both runtimes: bounded reads (MicroPython's read(n)
# reserves all n bytes up front), directories, atomic replacement. None of
# these raise for a file that is simply not there; writers raise OSError.
import errno
import os

_CHUNK = 4096


def read_file(path, limit=-1):
    """Bytes of the file at path, at most limit bytes (-1: all of it); None
    when it cannot be read (missing, a directory, no permission, not a
    regular file: a FIFO given as the config would block the agent for
    good, a device file could be endless)."""
    st = stat(path)
    if st is None or not st[4]:
        return None
    try:
        with open(path, "rb") as f:
            parts = []
            left = limit
            while left:
                piece = f.read(_CHUNK if left < 0 else min(_CHUNK, left))
                if not piece:
                    break
                parts.append(piece)
                left -= len(piece) if left > 0 else 0
            return b"".join(parts)
    except (OSError, ValueError):
        return None


def stat(path):
    """(size bytes, mtime s, is_dir, inode, is_file) of path, or None."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):  # ValueError: a NUL in the path (CPython)
        return None
    kind = st[0] & 0o170000
    return st[6], st[8], kind == 0o040000, st[1], kind == 0o100000


def listdir(path, raw=False):
    """Sorted names (str) in the directory path; [] when it cannot be
    listed. Names are listed as bytes and made valid text: a name that is
    not UTF-8 made MicroPython's str listing raise UnicodeError. raw: the
    bytes names, to open files whatever their names are."""
    try:
        names = os.listdir(path.encode() if isinstance(path, str) else path)
    except OSError:
        return []
    if raw:
        return sorted(names)
    from .text import utf8
    return sorted(utf8(n) for n in names)


def makedirs(path):
    """mkdir -p; OSError when a part cannot be made."""
    cur = ""
    for part in path.split("/"):
        cur = cur + part + "/" if cur or part else "/"
        if part:
            try:
                os.mkdir(cur)
            except OSError as e:
                if e.errno != errno.EEXIST:
                    raise


def remove(path):
    """Remove a file; True if it was removed."""
    try:
        os.remove(path)
        return True
    except OSError:
        return False


def remove_dir(path):
    """Remove a directory and the files in it (one level), as far as possible."""
    for name in listdir(path):
        remove(path + "/" + name)
    try:
        os.rmdir(path)
    except OSError:
        pass


def rename(src, dst):
    """os.rename: atomic on one file system; OSError on failure."""
    os.rename(src, dst)


def write_atomic(path, data, sync=False):
    """Replace path with data (bytes, or str written as UTF-8): a crash or
    power cut leaves the old file or the new one, never half of one. sync: the data reaches the disk
    before the rename where the runtime can say so (CPython's os.fsync;
    MicroPython has none). OSError on failure."""
    tmp = path + ".tmp"
    try:
        with open(tmp, "w" if isinstance(data, str) else "wb") as f:
            f.write(data)
            if sync and hasattr(os, "fsync"):
                f.flush()
                os.fsync(f.fileno())
        os.rename(tmp, path)
    except OSError:
        remove(tmp)  # a part written to a full disk would keep it full
        raise
