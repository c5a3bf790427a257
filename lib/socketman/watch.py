# Config-directory watch (PROTOCOL 6): which files of config_dir were added,
# removed or changed since the last look. Size, mtime (whole seconds) and
# inode, plus a CRC32 of the content: an edit in place within one second
# that keeps the size changes nothing else. UCI files are small.
import binascii

from . import rt

CRC_LIMIT = 262144


class Watch:
    def __init__(self, path):
        self.path = path
        self.snap = self._snapshot()  # the baseline: nothing is reported at start-up

    def _snapshot(self):
        out = {}
        for name in rt.listdir(self.path):
            path = self.path + "/" + name
            st = rt.stat(path)
            if st is not None:
                # Only regular files are read: opening a FIFO would block.
                data = rt.read_file(path, CRC_LIMIT + 1) if st[4] and st[0] <= CRC_LIMIT else None
                out[name] = st + (binascii.crc32(data) if data is not None else None,)
        return out

    def changes(self):
        """Sorted names that changed since the last call."""
        new = self._snapshot()
        old, self.snap = self.snap, new
        return sorted(n for n in set(old) | set(new) if old.get(n) != new.get(n))
