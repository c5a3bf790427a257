# Jobs in (PROTOCOL 4.1): checking an inbound payload, and the queue that
# accepts, de-duplicates and bounds them. The first stage of the job flow:
# session -> queue -> dispatch -> runner | netjob -> reporter.
from .. import fs, log, rt, strictjson, text

MAX_PAYLOAD = 65536
MAX_WAITING = 16
RECENT = 64
MAX_SIGNED = 256
_ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-"
TYPES = ("cmd", "network", "update", "tunnel")  # update, tunnel: not queued (PROTOCOL 10, 11; dispatch.py)


def valid_id(v):
    """True for a job id of 1..64 of A-Z a-z 0-9 . _ - (PROTOCOL 4.1)."""
    if not isinstance(v, str) or not 1 <= len(v) <= 64:
        return False
    for ch in v:
        if ch not in _ID_CHARS:
            return False
    return True


def parse(payload):
    """An inbound payload (bytes, or None when it was too large to keep)
    -> (job, None) or (None, (id or None, reason)), reason a text for the
    REJECTED event. Never raises.

    The job record, made here and passed through the whole job flow:
      "id"   str, 1..64 of A-Z a-z 0-9 . _ -
      "msg"  str, the shell command (non-empty, no NUL)
      "type" "cmd", "network", "update" or "tunnel" (PROTOCOL 10, 11: not queued)
      "timestamp", "sig"  the payload's values as they are (any JSON value),
             None when absent: only the signature check (sign.check) reads them
    The runner adds "dir" (str, its directory under cache_dir/jobs) when it
    stores the job."""
    if payload is None or len(payload) > MAX_PAYLOAD:
        return None, (None, "payload over %d bytes" % MAX_PAYLOAD)
    # Checked and parsed from the bytes as they came: a copy of a 64 KiB
    # job, or its text, is more than a router's heap can spare (issue 16).
    if not text.valid(payload):
        return None, (None, "payload is not UTF-8")
    try:
        obj = strictjson.loads(payload)
    except strictjson.TooDeep as e:
        return None, (None, "payload is %s" % (e,))
    except Exception:  # ValueError, or RecursionError/MemoryError on deep nesting
        return None, (None, "payload is not JSON")
    if not isinstance(obj, dict):
        return None, (None, "payload is not a JSON object")
    jid = obj.get("id")
    if not valid_id(jid):
        if "id" not in obj:
            why = "id is missing"
        elif not isinstance(jid, str):
            why = "id must be a string"
        else:
            why = "id must be 1..64 of A-Z a-z 0-9 . _ -"
        return None, (None, why)
    meta = obj.get("meta")
    if not isinstance(meta, dict):
        return None, (jid, "meta must be an object")
    msg = meta.get("msg")
    if not isinstance(msg, str) or not msg.strip():
        return None, (jid, "meta.msg must be a non-empty string")
    if "\0" in msg:
        return None, (jid, "meta.msg must not contain NUL")
    kind = meta.get("type", "cmd")
    if not isinstance(kind, str) or kind not in TYPES:
        return None, (jid, "meta.type must be one of %s" % ", ".join('"%s"' % t for t in TYPES))
    return {"id": jid, "msg": msg, "type": kind, "timestamp": obj.get("timestamp"),
            "sig": obj.get("sig")}, None


class Queue:
    """Accepted jobs in arrival order, at most MAX_WAITING waiting, and the
    last RECENT accepted ids so a redelivery is not run twice. With replay
    (a Replay, when jobs are signed) the ids of signed jobs are also kept
    for their whole age window (PROTOCOL 9)."""

    def __init__(self, replay=None):
        self.waiting = []
        self.recent = []
        self.replay = replay

    def offer(self, job, wait=True):
        """Offer a job record: 'accepted', 'duplicate' (its id was accepted
        lately), 'busy' (MAX_WAITING are waiting) or 'full' (the replay
        memory holds MAX_SIGNED ids still inside their window). wait=False:
        a job run beside the queue (an update, a tunnel): its id is
        remembered, the job does not wait here."""
        if self.seen(job["id"]):
            return "duplicate"
        if wait and len(self.waiting) >= MAX_WAITING:
            return "busy"
        if self.replay is not None and not self.replay.add(job["id"], job["timestamp"]):
            return "full"
        if wait:
            self.waiting.append(job)
        self.recent.append(job["id"])
        if len(self.recent) > RECENT:
            self.recent.pop(0)
        return "accepted"

    def seen(self, job_id):
        """True when job_id was accepted lately (one of the last RECENT, or
        a signed job still inside its window)."""
        return job_id in self.recent or (self.replay is not None and self.replay.seen(job_id))

    def restore(self, job):
        """A job accepted by an earlier run of the agent."""
        self.waiting.append(job)
        self.recent.append(job["id"])

    def cancel(self, job):
        """Take back an accepted job that could not be kept."""
        if job in self.waiting:
            self.waiting.remove(job)
        if job["id"] in self.recent:
            self.recent.remove(job["id"])
        if self.replay is not None:
            self.replay.forget(job["id"])

    def peek(self):
        """The next job record to run, left in the queue; None when empty."""
        return self.waiting[0] if self.waiting else None

    def take(self):
        """The next job record to run, out of the queue; None when empty."""
        return self.waiting.pop(0) if self.waiting else None

    def __len__(self):
        return len(self.waiting)


class Replay:
    """The ids of accepted signed jobs (PROTOCOL 9), so a captured job sent
    again is not run again. An id is kept at least max_age seconds (the
    agent's clock) after it was accepted, and until its own timestamp is more
    than max_age seconds behind a set device clock (a replay of it is then
    "expired" anyway): while the clock is not set, ids are kept until
    MAX_SIGNED of them crowd out one older than max_age seconds.
    path (a file under cache_dir, "" for none) keeps them across agent
    restarts as lines "<id> <timestamp>". ms and now are the clocks
    (rt.ms, rt.now; tests pass their own)."""

    def __init__(self, max_age, path="", ms=rt.ms, now=rt.now):
        self.max_age = max_age
        self.path = path
        self.ms = ms
        self.now = now
        self.ids = {}   # id -> [timestamp (int), kept at least until this ms]
        self.write_failed = False
        if path:
            self._load()

    def seen(self, job_id):
        """True when job_id is remembered."""
        return job_id in self.ids

    def add(self, job_id, timestamp):
        """Remember an accepted signed job; False when MAX_SIGNED ids are
        remembered and none may be forgotten yet."""
        self._expire()
        if len(self.ids) >= MAX_SIGNED:
            old = [(v[1], k) for k, v in self.ids.items() if v[1] <= self.ms()]
            if not old:
                return False
            del self.ids[min(old)[1]]
        self.ids[job_id] = [timestamp, self.ms() + self.max_age * 1000]
        self._save()
        return True

    def forget(self, job_id):
        """Take back an id whose job could not be kept."""
        if self.ids.pop(job_id, None) is not None:
            self._save()

    def _expire(self):
        from .sign import CLOCK_SET
        ms, now = self.ms(), self.now()
        if now < CLOCK_SET:
            return
        for k in [k for k, v in self.ids.items() if v[1] <= ms and now - v[0] > self.max_age]:
            del self.ids[k]

    def _load(self):
        data = fs.read_file(self.path)
        until = self.ms() + self.max_age * 1000  # a fresh window from this start
        for line in text.utf8(data or b"").split("\n"):
            parts = line.split(" ")
            if len(parts) == 2 and valid_id(parts[0]) and _digits(parts[1]) and len(self.ids) < MAX_SIGNED:
                self.ids[parts[0]] = [int(parts[1]), until]

    def _save(self):
        if not self.path:
            return
        body = "".join("%s %d\n" % (k, v[0]) for k, v in self.ids.items())
        try:
            fs.write_atomic(self.path, body.encode())
            self.write_failed = False
        except OSError as e:
            # Still remembered while the agent runs; only a restart forgets.
            if not self.write_failed:
                log.warn("jobs: cannot keep the signed job ids in %s: %s" % (self.path, e))
            self.write_failed = True


def _digits(s):
    n = s[1:] if s[:1] == "-" else s
    return bool(n) and all("0" <= ch <= "9" for ch in n)
