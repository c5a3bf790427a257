# The stats spool (PROTOCOL 5): one JSON document per line in a file under
# cache_dir. Lines are appended, sent from the head in batches, and removed
# only after the server took them. Everything streams in small chunks: a
# router's MicroPython heap is smaller than the spool may be.
from .. import fs, log

CHUNK = 4096
MAX_BATCH = 262144


class Spool:
    """The spool file at path, at most cap bytes (cache_max_bytes). OSError
    from the constructor when a damaged spool cannot be repaired."""
    def __init__(self, path, cap):
        self.path = path
        self.cap = cap
        self.dropped = 0    # lines dropped and not yet reported in a document
        self.rejected = 0   # lines the server refused, not yet reported in a document
        self.sending = 0    # bytes at the head an upload is sending now
        self.more = False   # the last batch() stopped at its limit, not at the end
        self.torn = False   # a write failed: the file may end in a part line
        # Bytes at the head the server took (or that were dropped) but that
        # could not be removed (a read-only cache_dir): never sent again,
        # removed once the file can be written.
        self.taken = 0
        self._resize()
        self.repair()
        self.enforce_cap()

    def _resize(self):
        st = fs.stat(self.path)
        self.size = st[0] if st else 0

    # ---- repair after a crash or power cut -----------------------------

    def repair(self, drop_blank=True):
        """Keep every complete line; a cut or garbled line is discarded. The
        blank lines at the head are kept while an upload may count them."""
        if not self.size:
            return
        kept = bad = blank = 0
        tmp = self.path + ".repair"
        try:
            with open(tmp, "wb") as out:
                for line in self._lines(self.taken):
                    if line.endswith(b"\n") and line.startswith(b"{") and line.rstrip().endswith(b"}") \
                            and b"\0" not in line:
                        out.write(line)
                        kept += len(line)
                    elif line[:1] == b" " and not line.strip() and line.endswith(b"\n"):
                        if drop_blank:
                            blank += len(line)
                        else:
                            out.write(line)
                            kept += len(line)
                    else:
                        bad += 1
        except OSError:
            fs.remove(tmp)  # a full disk: leave the spool as it is
            raise
        if bad or blank or self.taken:
            fs.rename(tmp, self.path)
            self.size = kept
            self.taken = 0
            if bad:
                log.warn("spool: discarded %d damaged line(s) of %s" % (bad, self.path))
        else:
            fs.remove(tmp)

    def _lines(self, start):
        """Lines of the file from byte offset start (the last may lack its \\n)."""
        try:
            f = open(self.path, "rb")
        except OSError:
            return
        with f:
            f.seek(start)
            rest = b""
            while True:
                chunk = f.read(CHUNK)
                if not chunk:
                    break
                rest += chunk
                while True:
                    i = rest.find(b"\n")
                    if i < 0:
                        break
                    yield rest[:i + 1]
                    rest = rest[i + 1:]
            if rest:
                yield rest

    # ---- writing -----------------------------------------------------------

    def append(self, line, reported=0, rejects=0):
        """Add one document line (ending in \\n). reported, rejects: the drop
        and reject counts that line carries, now delivered to the spool."""
        if len(line) > self.cap:
            self.dropped += 1
            log.warn("spool: a %d-byte document is larger than cache_max_bytes, dropped" % len(line))
            return False
        try:
            if self.torn:
                self._resize()
                self.repair(drop_blank=False)  # the part line a failed write left goes first
                self.torn = False
            with open(self.path, "ab") as f:
                f.write(line)
        except OSError as e:
            # A full /tmp must not stop the agent: the document is counted as
            # dropped and reported once a write works again.
            self.torn = True
            self.dropped += 1
            log.error("spool: cannot write %s (%s), a document dropped" % (self.path, e))
            return False
        self.size += len(line)
        self.dropped -= reported
        self.rejected -= rejects
        if self.taken and not self.sending:
            self._remove_head(self.taken)  # it can be written again: the lines sent meanwhile go now
        self.enforce_cap()
        return True

    def enforce_cap(self):
        """Drop the oldest lines until the spool fits cache_max_bytes. Not
        while an upload is sending the head: the spool may then go over the
        cap by what arrives during that one request."""
        if self.sending or self.size - self.taken <= self.cap:
            return
        cut, n = self.taken, 0
        lines = self._lines(cut)
        for line in lines:
            if self.size - cut <= self.cap:
                break
            cut += len(line)
            n += line[:1] != b" "
        lines.close()  # the file now, not whenever MicroPython's GC runs
        self._remove_head(cut)
        self.dropped += n
        if n:
            log.warn("spool: over %d bytes, dropped the %d oldest line(s)" % (self.cap, n))

    def _remove_head(self, nbytes):
        """Remove the first nbytes of the file (sent, refused or dropped
        lines). When neither a copy of the rest nor blanking in place can be
        written (a read-only cache_dir), they are remembered in self.taken
        instead: a failed remove that was ignored sent those lines again
        at every heartbeat (CPython; MicroPython could not upload at all)."""
        if nbytes >= self.size:
            if fs.remove(self.path) or fs.stat(self.path) is None:
                self.size = self.taken = 0
                return
            self._cannot_remove(nbytes, "cannot remove the file")
            return
        tmp = self.path + ".tmp"
        try:
            with open(self.path, "rb") as src, open(tmp, "wb") as dst:
                src.seek(nbytes)
                while True:
                    chunk = src.read(CHUNK)
                    if not chunk:
                        break
                    dst.write(chunk)
            fs.rename(tmp, self.path)  # atomic: a crash leaves the old or the new file
        except OSError as e:
            fs.remove(tmp)
            try:
                self._blank_head(nbytes)
            except OSError as e2:
                self._cannot_remove(nbytes, str(e2))
                return
            log.warn("spool: cannot copy %s (%s); its sent lines are blanked in place" % (self.path, e))
            self.taken = 0
            return
        self.size -= nbytes
        if self.taken:
            log.info("spool: %s can be written again; the lines sent meanwhile are removed" % self.path)
        self.taken = 0

    def _cannot_remove(self, nbytes, why):
        if not self.taken:
            log.error("spool: cannot remove sent lines from %s (%s): they are skipped, not sent again"
                      % (self.path, why))
        self.taken = max(self.taken, nbytes)

    def _blank_head(self, nbytes):
        """Overwrite the head with blank lines, which needs no free space: a
        full disk must not make the server's lines go out twice. Blank lines
        are never sent and go with the next copy."""
        with open(self.path, "r+b") as f:
            while nbytes > 0:
                n = min(nbytes, CHUNK)
                f.write(b" " * (n - 1) + b"\n")
                nbytes -= n

    # ---- uploading -------------------------------------------------------

    def batch(self, limit=MAX_BATCH, max_lines=0, into=None, drop=True):
        """Up to limit bytes (and, when max_lines > 0, that many lines) of
        whole lines from the head; b'' when empty. A single line over the
        limit can never be sent: it is dropped (with drop False, a smaller
        limit than usual: it is kept, and b'' returned). With into (a file open for
        writing), the lines are written there instead, never all held in
        memory (a router's heap is smaller than a batch): then the number of
        lines written."""
        if self.sending:
            raise ValueError("an upload is already under way")
        lead = self._blank_lead(self.taken)
        parts, total, too_big, n = [], lead, 0, 0
        self.more = False
        lines = self._lines(lead)
        for line in lines:
            if not line.endswith(b"\n") or (max_lines and n >= max_lines):
                break
            if total - lead + len(line) > limit:
                too_big = 0 if n else len(line)
                self.more = bool(n)  # the batch was cut: more is waiting
                break
            if into is None:
                parts.append(line)
            else:
                into.write(line)
            n += 1
            total += len(line)
        lines.close()
        if too_big and not drop:
            return b"" if into is None else 0
        if too_big:
            log.warn("spool: a %d-byte line is over the %d-byte batch limit, dropped" % (too_big, limit))
            self._remove_head(total + too_big)
            self.dropped += 1
            return self.batch(limit, max_lines, into)
        self.sending = total  # blank lines at the head go with the batch
        return b"".join(parts) if into is None else n

    def _blank_lead(self, start):
        """The offset after the blank lines _blank_head left at start."""
        n = start
        lines = self._lines(start)
        for line in lines:
            if line[:1] != b" " or not line.endswith(b"\n"):
                break
            n += len(line)
        lines.close()
        return n

    def commit(self):
        """The server took the batch: remove its lines."""
        n, self.sending = self.sending, 0
        self._remove_head(n)
        self.enforce_cap()

    def reject(self):
        """The server refused the batch under way, a single line: remove it
        and count it for the next document (device.rejected, PROTOCOL 5)."""
        self.commit()
        self.rejected += 1

    def release(self):
        """The batch was not taken: keep its lines for the next try."""
        self.sending = 0
        self.enforce_cap()

    def pending_drops(self):
        """Lines dropped and not yet reported in a document (device.dropped)."""
        return self.dropped

    def pending_rejects(self):
        """Lines refused and not yet reported in a document (device.rejected)."""
        return self.rejected
