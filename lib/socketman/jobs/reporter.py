# Job events out (PROTOCOL 4.1): DELIVERED and REJECTED over MQTT; PROCESSED
# over MQTT, or with rest = 1 as a PATCH to the API. Each PATCH has its own
# retry schedule (PROTOCOL 5, failure table), so a result the API will not
# take yet never holds back the results after it. The last stage of the
# job flow.
from .. import answers, events, fs, http, log, rt, urls

FIRST_RETRY_MS = 15000
MAX_RETRY_MS = 300000
MAX_CALLS = 4       # PATCHes under way at once
MAX_PENDING = 64    # results waiting for the API; past this the oldest is given up
IDLE_MS = 60000
GAVE_UP = ("[result not delivered: the broker closed the connection each time the %d-byte PROCESSED "
           "was sent; lower max_payload or raise the broker's packet size]")
NO_MEMORY = "[result not sent: not enough memory to build it]"


def short_result(result, note):
    """A result record that says only note, in place of one that cannot go."""
    return {"id": result["id"], "type": result["type"], "msg": note.encode(), "success": False,
            "exit_code": result["exit_code"], "duration_ms": result["duration_ms"]}


class Pending:
    """A result waiting for its PATCH: the result record, where its body is
    (a file in the job's directory, so a router's heap does not hold the
    output of every result the API is not taking), its tries and when the
    next one is due (agent ms)."""

    def __init__(self, result, body):
        self.result = result
        self.path = result["job"]["dir"] + "/patch.json" if result["job"].get("dir") else None
        self.body = body
        if self.path:
            try:
                fs.write_atomic(self.path, body)
                self.body = None
            except OSError:
                self.path = None  # a full cache_dir: keep it in memory
        result["msg"] = None  # the body has it; the record is kept for on_reported
        self.tries = 0
        self.due = 0
        self.busy = False

    def data(self):
        """The PATCH body (bytes); None when its file is gone."""
        return self.body if self.path is None else fs.read_file(self.path)


class Reporter:
    """publish(kind, payload bytes, qos) sends an event on <kind>/<base>
    (session.Session.publish); start_call(http.Call, on_done) runs an HTTP
    call; on_reported(result) is told once a result record is handed over
    for good (or given up). Set wake(in_ms) to have the loop run tick()
    within in_ms (the agent wires it to the "report" task)."""

    def __init__(self, cfg, publish, start_call, on_reported):
        self.publish = publish
        self.start_call = start_call
        self.on_reported = on_reported  # f(result) once it is handed over for good
        self.wake = None
        self.qos = cfg["qos"]
        self.max_payload = cfg["max_payload"]
        self.rest = bool(cfg["rest"])
        self.api_url = cfg["api_url"].rstrip("/")
        self.token = cfg["token"]
        self.pending = []   # Pending results, in the order they ended
        self.calls = 0      # PATCHes under way

    def delivered(self, job_id):
        """DELIVERED for job_id (str), on delivery/<base>."""
        self._mqtt("delivery", events.delivered(rt.now(), job_id))

    def rejected(self, job_id, reason):
        """REJECTED for job_id (str or None) with reason (str), on pub/<base>."""
        log.warn("job %s rejected: %s" % (job_id or "(no valid id)", reason))
        self._mqtt("pub", events.rejected(rt.now(), job_id, reason))

    def processed(self, result):
        """Report a result record (jobs.runner.Runner.result)."""
        if self.rest:
            if len(self.pending) >= MAX_PENDING:
                old = self.pending[0]
                if not old.busy:
                    log.error("job %s: %d results wait for the API; the oldest is given up"
                              % (old.result["id"], len(self.pending)))
                    self._finish(old)
            self.pending.append(Pending(result, events.rest_result(result, self.max_payload)))
            self.tick()
            return
        try:
            payload = events.processed(rt.now(), result["id"], result, self.max_payload)
        except MemoryError:
            log.oom()  # said and counted without memory; the short result says why
            payload = events.processed(rt.now(), result["id"], short_result(result, NO_MEMORY))
        result["msg"] = None  # the payload has it: one copy of a big output on the heap, not two
        short = short_result(result, GAVE_UP % len(payload))
        self.publish("pub", payload, self.qos,
                     on_give_up=lambda: self._mqtt("pub", events.processed(rt.now(), short["id"], short)))
        self.on_reported(result)

    def _mqtt(self, kind, payload):
        self.publish(kind, payload, self.qos)

    def busy(self):
        """True while results wait for their PATCH."""
        return bool(self.pending)

    def tick(self):
        """The loop's task: send every PATCH that is due (MAX_CALLS at
        once); the ms until the next one is due."""
        now = rt.ms()
        nxt = IDLE_MS
        for p in list(self.pending):
            if p.busy:
                continue
            if p.due > now:
                nxt = min(nxt, p.due - now)
            elif self.calls < MAX_CALLS:
                self._send(p)
        return nxt

    def _send(self, p):
        body = p.data()
        rid = p.result["id"]
        if body is None:
            log.error("job %s: the stored result is gone, not sent" % rid)
            self._finish(p)
            return
        url = urls.add_query(self.api_url + "/operations/" + rid, [("access_token", self.token)])
        p.busy = True
        self.calls += 1
        self.start_call(http.Call("PATCH", url, body, {"Content-Type": "application/json"}),
                        lambda call: self._patched(p, call))

    def _patched(self, p, call):
        p.busy = False
        self.calls -= 1
        kind = answers.classify(call)
        rid = p.result["id"]
        what = answers.why(call)
        if kind == answers.OK:
            log.info("job %s: result sent (HTTP %d)%s" % (
                rid, call.response.status_code,
                " after %d failed tries" % p.tries if p.tries else ""))
            self._finish(p)
        elif kind == answers.REFUSED:
            log.error("job %s: the API refused the result (%s), dropped" % (rid, what))
            self._finish(p)
        elif kind == answers.GONE:
            log.error("job %s: the API does not know this operation (%s), result given up" % (rid, what))
            self._finish(p)
        else:  # RETRY, UNAUTHORIZED: an answer that can change
            p.tries += 1
            wait = answers.backoff_ms(p.tries, FIRST_RETRY_MS, MAX_RETRY_MS)
            p.due = rt.ms() + wait
            if p.tries == 1:
                log.warn("job %s: result not sent (%s); retrying, at most %d s apart, later results go first"
                         % (rid, what, MAX_RETRY_MS // 1000))
            else:
                log.debug("job %s: result not sent (%s), try %d; next in %d s"
                          % (rid, what, p.tries, wait // 1000))
        self._wake()

    def _finish(self, p):
        self.pending.remove(p)
        if p.path:
            fs.remove(p.path)
        self.on_reported(p.result)

    def _wake(self):
        if self.wake is not None:
            nxt = self.tick()
            self.wake(nxt)
        else:
            self.tick()
