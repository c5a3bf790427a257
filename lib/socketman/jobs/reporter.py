# Job events out (PROTOCOL 4.1): DELIVERED and REJECTED over MQTT; PROCESSED
# over MQTT, or with rest = 1 as a PATCH to the API, retried until it lands.
# The last stage of the job flow.
from .. import events, http, log, rt, urls

RETRY_MS = 30000
MAX_TRIES = 20
GAVE_UP = ("[result not delivered: the broker closed the connection each time the %d-byte PROCESSED "
           "was sent; lower max_payload or raise the broker's packet size]")
NO_MEMORY = "[result not sent: not enough memory to build it]"


def short_result(result, note):
    """A result record that says only note, in place of one that cannot go."""
    return {"id": result["id"], "type": result["type"], "msg": note, "success": False,
            "exit_code": result["exit_code"], "duration_ms": result["duration_ms"]}


class Reporter:
    """publish(kind, payload bytes, qos) sends an event on <kind>/<base>
    (session.Session.publish); start_call(http.Call, on_done) runs an HTTP
    call; on_reported(result) is told once a result record is handed over
    for good (or given up)."""

    def __init__(self, cfg, publish, start_call, on_reported):
        self.publish = publish
        self.start_call = start_call
        self.on_reported = on_reported  # f(result) once it is handed over for good
        self.qos = cfg["qos"]
        self.max_payload = cfg["max_payload"]
        self.rest = bool(cfg["rest"])
        self.api_url = cfg["api_url"].rstrip("/")
        self.token = cfg["token"]
        self.pending = []   # results waiting for their PATCH
        self.busy = False
        self.tries = 0
        self.next_try = 0

    def delivered(self, job_id):
        """DELIVERED for job_id (str), on delivery/<base>."""
        self._mqtt("delivery", events.delivered(rt.now(), job_id))

    def rejected(self, job_id, reason):
        """REJECTED for job_id (str or None) with reason (str), on pub/<base>."""
        log.warn("job %s rejected: %s" % (job_id, reason))
        self._mqtt("pub", events.rejected(rt.now(), job_id, reason))

    def processed(self, result):
        """Report a result record (jobs.runner.Runner.result)."""
        if self.rest:
            self.pending.append(result)
            self.tick()
            return
        try:
            payload = events.processed(rt.now(), result["id"], result, self.max_payload)
        except MemoryError:
            payload = events.processed(rt.now(), result["id"], short_result(result, NO_MEMORY))
        short = short_result(result, GAVE_UP % len(payload))
        self.publish("pub", payload, self.qos,
                     on_give_up=lambda: self._mqtt("pub", events.processed(rt.now(), short["id"], short)))
        self.on_reported(result)

    def _mqtt(self, kind, payload):
        self.publish(kind, payload, self.qos)

    def tick(self):
        """The loop's task: send the next pending PATCH when due; ms until then."""
        if not self.pending or self.busy:
            return RETRY_MS
        now = rt.ms()
        if now < self.next_try:
            return self.next_try - now
        result = self.pending[0]
        url = urls.add_query(self.api_url + "/operations/" + result["id"], [("access_token", self.token)])
        call = http.Call("PATCH", url, events.rest_result(result),
                         {"Content-Type": "application/json"})
        self.busy = True
        self.start_call(call, self._patched)
        return RETRY_MS

    def _patched(self, call):
        self.busy = False
        result = self.pending[0]
        r = call.response
        if r is not None and 200 <= r.status_code < 300:
            log.info("job %s: result sent (HTTP %d)" % (result["id"], r.status_code))
            self.pending.pop(0)
            self.tries = 0
            self.on_reported(result)
            self.next_try = 0
            self.tick()
            return
        self.tries += 1
        why = call.error or "HTTP %d" % r.status_code
        if self.tries >= MAX_TRIES:
            log.error("job %s: result not sent after %d tries (%s), dropped" % (result["id"], self.tries, why))
            self.pending.pop(0)
            self.tries = 0
            self.on_reported(result)
        else:
            log.warn("job %s: result not sent (%s), try %d again later" % (result["id"], why, self.tries))
        self.next_try = rt.ms() + min(RETRY_MS * self.tries, 300000)
