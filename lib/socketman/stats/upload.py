# Stats uploads (PROTOCOL 5): batches from the spool, gzipped, POSTed as
# multipart/form-data to stats_url, else backup_stats_url; lines leave the
# spool only after a 2xx. With no-cache, each document goes alone as JSON.
from .. import http, log, proc, urls
from ..loop import SLEEP
from . import gz


def _with_auth(url, cfg):
    return urls.add_query(url, [("access_token", cfg["token"]), ("mac", cfg["mac"])])


class Uploader:
    """Uploads of spool batches (PROTOCOL 5): start() each heartbeat, poll()
    from the loop. start_call(call, on_done) runs an HTTP call; workdir is
    for the system gzip; method forces a gzip method (gz.METHODS)."""
    def __init__(self, cfg, spool, start_call, workdir, method=None):
        self.cfg = cfg
        self.spool = spool
        self.start_call = start_call  # f(http.Call, on_done)
        self.targets = [u for u in (cfg["stats_url"], cfg["backup_stats_url"]) if u]
        have = gz.available()
        if method and method not in have:
            log.warn("stats: gzip method %s is not available here, using %s" % (method, have[0]))
        self.method = method if method in have else have[0]
        self.sysgz = gz.SystemGzip(workdir, "gzip-" + cfg["mac"].replace(":", "")) \
            if self.method == "system" else None
        self.state = None        # None, "gzip", "post"
        self.body = None
        self.target = 0
        self.more = False
        self.unauthorized_logged = False
        log.debug("stats: gzip by %s" % self.method)

    def busy(self):
        """True while a batch is being gzipped or POSTed."""
        return self.state is not None

    def start(self):
        """Send the next batch, if any and none is under way."""
        if self.state or not self.targets:
            return
        data = self.spool.batch()
        if not data:
            self.spool.release()
            return
        if self.sysgz is not None:
            self.sysgz.start(data)
            self.state = "gzip"
            return
        self._post(gz.compress(data, self.method))

    def poll(self):
        """Drive the system gzip; the ms until it wants to look again."""
        if self.state == "gzip":
            out = self.sysgz.poll()
            if out is None:
                return proc.poll_ms(20)
            if out is False:
                log.warn("stats: system gzip failed, sending stored blocks")
                out = gz.stored(self.sysgz.data())
            self._post(out)
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
        r = call.response
        url = self.targets[self.target]
        if r is not None and 200 <= r.status_code < 300:
            log.debug("stats: %d bytes of documents sent to %s" % (self.spool.inflight, url))
            self._done()  # first: a spool error must not leave the uploader stuck
            self.spool.commit()
            if self.spool.more:
                self.start()  # a backlog goes out at once, batch after batch; a new line waits
            return
        if r is not None and r.status_code == 401:
            # Not a server failure: the backup would say the same. The lines
            # stay until the device has a token the API accepts.
            if not self.unauthorized_logged:
                log.error("stats: %s answered 401 unauthorized: the token is not accepted; "
                          "documents are kept" % url)
                self.unauthorized_logged = True
            self.spool.release()
            self._done()
            return
        log.warn("stats: upload to %s failed: %s" % (url, call.error or "HTTP %d" % r.status_code))
        if self.target + 1 < len(self.targets):
            self.target += 1
            self._send()
            return
        self.spool.release()
        self._done()

    def _done(self):
        self.state = None
        self.body = None


class DirectPoster:
    """no-cache: each document POSTed alone as application/json, once."""

    def __init__(self, cfg, start_call):
        self.cfg = cfg
        self.start_call = start_call

    def send(self, line):
        """POST one document line (bytes) as JSON, once."""
        if not self.cfg["stats_url"]:
            return
        call = http.Call("POST", _with_auth(self.cfg["stats_url"], self.cfg), line.rstrip(b"\n"),
                         {"Content-Type": "application/json"})
        self.start_call(call, self._posted)

    def _posted(self, call):
        r = call.response
        if r is None or not 200 <= r.status_code < 300:
            log.warn("stats: document not sent (%s); no-cache mode does not retry"
                     % (call.error or "HTTP %d" % r.status_code))
