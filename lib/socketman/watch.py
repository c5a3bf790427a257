# Config-directory watch (PROTOCOL 6): which files of config_dir were added,
# removed or changed since the last look. Size, mtime (whole seconds) and
# inode, plus a CRC32 of the content: an edit in place within one second
# that keeps the size changes nothing else. UCI files are small.
import binascii

from . import events, fs, log, rt, text

CRC_LIMIT = 262144


class Watch:
    """publish(kind, payload bytes, qos) sends the CONFIG_CHANGED event
    (session.Session.publish); None: changes() only."""

    def __init__(self, path, publish=None):
        self.path = path
        self.publish = publish
        self.snap = self._snapshot()  # the baseline: nothing is reported at start-up

    def _snapshot(self):
        out = {}
        base = self.path.encode() + b"/"
        for raw in fs.listdir(self.path, raw=True):
            # Bytes paths: a file whose name is not UTF-8 is still watched,
            # and reported under its name made valid text.
            path = base + raw
            st = fs.stat(path)
            if st is not None:
                # Only regular files are read: opening a FIFO would block.
                data = fs.read_file(path, CRC_LIMIT + 1) if st[4] and st[0] <= CRC_LIMIT else None
                out[text.utf8(raw)] = st + (binascii.crc32(data) if data is not None else None,)
        return out

    def changes(self):
        """Sorted names that changed since the last call."""
        new = self._snapshot()
        old, self.snap = self.snap, new
        return sorted(n for n in set(old) | set(new) if old.get(n) != new.get(n))

    def check(self):
        """Once per monitor cycle: log and publish what changed."""
        changed = self.changes()
        if changed:
            log.info("config: changed in %s: %s" % (self.path, " ".join(changed)))
            self.publish("status", events.config_changed(rt.now(), changed), 1)
