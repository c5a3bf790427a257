# Stats uploads (PROTOCOL 5): batches from the spool, gzipped, POSTed as
# multipart/form-data to stats_url, else backup_stats_url; lines leave the
# spool only after a 2xx, or when the server refused one of them alone.
# With no-cache, each document goes alone as JSON. What each answer does is
# the failure table of PROTOCOL 5 (answers.classify).
from .. import answers, http, log, proc, rt, urls
from ..loop import SLEEP
from . import gz

# A batch gzipped in memory because cache_dir cannot take the gzip's input
# file (full, read-only) is kept this small: a router's heap holds it twice.
MEMORY_BATCH = 32768


def _with_auth(url, cfg):
    return urls.add_query(url, [("access_token", cfg["token"]), ("mac", cfg["mac"])])


class Uploader:
    """Uploads of spool batches (PROTOCOL 5): start() each heartbeat, tick()
    from the loop. start_call(call, on_done) runs an HTTP call; workdir is
    for the system gzip; method forces a gzip method (gz.METHODS);
    on_unauthorized() is told of a 401 (None: the lines are kept and the
    401 logged once)."""
    def __init__(self, cfg, spool, start_call, workdir, method=None, on_unauthorized=None):
        self.cfg = cfg
        self.spool = spool
        self.start_call = start_call  # f(http.Call, on_done)
        self.on_unauthorized = on_unauthorized
        self.targets = [u for u in (cfg["stats_url"], cfg["backup_stats_url"]) if u]
        self.channels = [answers.Channel("stats: upload to " + u) for u in self.targets]
        have = gz.available()
        if method and method not in have:
            log.warn("stats: gzip method %s is not available here, using %s" % (method, have[0]))
        self.method = method if method in have else have[0]
        self.sysgz = gz.SystemGzip(workdir, "gzip-" + cfg["mac"].replace(":", "")) \
            if self.method == "system" else None
        self.state = None        # None, "gzip", "post"
        self.body = None
        self.target = 0
        self.lines = 0           # lines in the batch under way
        # A refused batch is sent again in parts, head first: the line count
        # of each part still to send. Parts are always taken from the head
        # of the spool, so what the server took or refused alone is removed
        # at once and a crash in the middle loses nothing.
        self.parts = []
        self.unauthorized_logged = False
        self.unwritable = False  # the system gzip's input could not be written: batches go from memory
        self.wake = None         # wake(): run tick() soon (the loop's task), set by the pipeline
        self.last_ok = 0         # Unix time of the last 2xx (PROTOCOL 12's last_upload), 0: none yet
        log.debug("stats: gzip by %s" % self.method)

    def busy(self):
        """True while a batch is being gzipped or POSTed."""
        return self.state is not None

    def start(self):
        """Send the next batch (or part of a refused one), if any and none is
        under way."""
        if self.state or not self.targets:
            return
        max_lines = self.parts[0] if self.parts else 0
        if self.sysgz is not None:
            # File to file: the batch never sits whole in a router's heap.
            try:
                with open(self.sysgz.input, "wb") as f:
                    self.lines = self.spool.batch(max_lines=max_lines, into=f)
                if self.lines:
                    self.sysgz.start()
            except OSError as e:
                # cache_dir cannot be written (full, read-only): uploads go
                # on, in smaller batches gzipped in memory.
                self.spool.release()
                if not self.unwritable:
                    log.warn("stats: cannot write the batch to %s (%s): batches of at most %d bytes go from memory"
                             % (self.sysgz.input, e, MEMORY_BATCH))
                self.unwritable = True
                self._from_memory(max_lines, MEMORY_BATCH, "stored")
                return
            self.unwritable = False
            if not self.lines:
                self.parts = []
                self.spool.release()
                return
            self.state = "gzip"
            if self.wake is not None:
                self.wake()  # tick() follows the gzip
            return
        self._from_memory(max_lines, None, self.method)

    def _from_memory(self, max_lines, limit, method):
        """Send the next batch gzipped in memory by method; limit: at most
        that many bytes, a longer line kept for later (None: the spool's
        own limit, a line over it dropped)."""
        if limit is None:
            data = self.spool.batch(max_lines=max_lines)
        else:
            data = self.spool.batch(limit, max_lines, drop=False)
        if not data:
            self.parts = []
            self.spool.release()
            return
        self.lines = data.count(b"\n")
        self._post(gz.compress(data, method))

    def tick(self):
        """The loop's task: drive the system gzip; the ms until it wants to
        look again."""
        if self.state == "gzip":
            out = self.sysgz.poll()
            if out is None:
                return proc.poll_ms(20)
            try:
                if out is False:
                    log.warn("stats: system gzip failed, sending stored blocks")
                    out = self.sysgz.stored()
                part = http.FilePart(out)
            except OSError as e:  # a full /tmp: the lines stay for the next heartbeat
                log.warn("stats: cannot make the gzip file: %s" % e)
                self.spool.release()
                self._done()
                return SLEEP
            self._post(part)
        return SLEEP  # the heartbeat wakes us; the HTTP call drives itself

    def _post(self, gzipped):
        ctype, body = http.multipart("data", "archive.gz", "application/gzip", gzipped)
        self.body = (ctype, body)
        self.target = 0
        self._send()

    def _send(self):
        ctype, body = self.body
        call = http.Call("POST", _with_auth(self.targets[self.target], self.cfg), list(body),
                         {"Content-Type": ctype})
        self.state = "post"
        self.start_call(call, self._posted)

    def _posted(self, call):
        kind = answers.classify(call)
        url = self.targets[self.target]
        if kind == answers.OK:
            self.channels[self.target].ok()
            self.last_ok = rt.now()
            log.debug("stats: %d bytes of documents sent to %s" % (self.spool.sending, url))
            self._done()  # first: a spool error must not leave the uploader stuck
            if self.parts:
                self.parts.pop(0)
            self.spool.commit()
            if self.parts or self.spool.more:
                self.start()  # the rest of a split, or a backlog, goes at once; a new line waits
            return
        if kind == answers.REFUSED:
            self.channels[self.target].ok()  # the server answers; it refuses these lines
            self._done()
            self._refused(url, answers.why(call))
            self.start()  # the parts go out at once
            return
        if kind == answers.UNAUTHORIZED:
            self._unauthorized(url)
            return
        # GONE, RETRY: nothing lost; the backup may take it.
        last = self.target + 1 >= len(self.targets)
        self.channels[self.target].failed(
            answers.why(call), "documents are kept" + ("" if last else ", trying " + self.targets[self.target + 1]))
        if not last:
            self.target += 1
            self._send()
            return
        self.parts = []  # the next heartbeat starts again from a whole batch
        self.spool.release()
        self._done()

    def _refused(self, url, what):
        """400, 413, 422: the batch in halves, each sent at once, until the
        refused lines stand alone; such a line is dropped and counted."""
        if self.lines <= 1:
            self.spool.reject()
            if self.parts:
                self.parts.pop(0)
            log.warn("stats: %s refused one document (%s): dropped, counted in device.rejected" % (url, what))
            return
        self.spool.release()
        half = self.lines // 2
        if not self.parts:
            log.warn("stats: %s refused a batch of %d documents (%s): sending it in parts to find the refused ones"
                     % (url, self.lines, what))
            self.parts = [half, self.lines - half]
        else:
            self.parts[0:1] = [half, self.lines - half]

    def _unauthorized(self, url):
        # Not a server failure: the backup would say the same. The lines
        # stay until the device has a token the API accepts.
        self.parts = []
        self.spool.release()
        self._done()
        if self.on_unauthorized is not None:
            self.on_unauthorized()
            return
        if not self.unauthorized_logged:
            log.error("stats: %s answered 401 unauthorized: the token is not accepted; "
                      "documents are kept" % url)
            self.unauthorized_logged = True

    def _done(self):
        self.state = None
        self.body = None


class DirectPoster:
    """no-cache: each document POSTed alone as application/json, once.
    on_unauthorized() is told of a 401 (None: nothing more happens)."""

    def __init__(self, cfg, start_call, on_unauthorized=None):
        self.cfg = cfg
        self.start_call = start_call
        self.on_unauthorized = on_unauthorized
        self.channel = answers.Channel("stats: post to " + cfg["stats_url"])
        self.rejected = 0   # documents the server refused, not yet reported
        self.last_ok = 0    # Unix time of the last 2xx, 0: none yet

    def send(self, line):
        """POST one document line (bytes) as JSON, once."""
        if not self.cfg["stats_url"]:
            return
        call = http.Call("POST", _with_auth(self.cfg["stats_url"], self.cfg), line.rstrip(b"\n"),
                         {"Content-Type": "application/json"})
        self.start_call(call, self._posted)

    def pending_rejects(self):
        """Documents refused and not yet reported (device.rejected)."""
        return self.rejected

    def reported(self, rejects):
        """A document carrying rejects was handed to send()."""
        self.rejected -= rejects

    def _posted(self, call):
        kind = answers.classify(call)
        if kind == answers.OK:
            self.channel.ok()
            self.last_ok = rt.now()
        elif kind == answers.REFUSED:
            self.channel.ok()
            self.rejected += 1
            log.warn("stats: the server refused a document (%s): counted in device.rejected" % answers.why(call))
        elif kind == answers.UNAUTHORIZED and self.on_unauthorized is not None:
            self.on_unauthorized()
        else:
            self.channel.failed(answers.why(call), "no-cache mode does not retry")
