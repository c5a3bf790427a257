# Jobs in (PROTOCOL 4.1): checking an inbound payload, and the queue that
# accepts, de-duplicates and bounds them. The first stage of the job flow:
# session -> queue -> dispatch -> runner | netjob -> reporter.
from .. import strictjson, text

MAX_PAYLOAD = 65536
MAX_WAITING = 16
RECENT = 64
_ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-"


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
      "type" "cmd" or "network"
    The runner adds "dir" (str, its directory under cache_dir/jobs) when it
    stores the job."""
    if payload is None or len(payload) > MAX_PAYLOAD:
        return None, (None, "payload over %d bytes" % MAX_PAYLOAD)
    try:
        s = bytes(payload).decode()
    except UnicodeError:
        return None, (None, "payload is not UTF-8")
    if text.utf8(bytes(payload)) != s:
        return None, (None, "payload is not UTF-8")
    try:
        obj = strictjson.loads(s)
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
    if not isinstance(kind, str) or kind not in ("cmd", "network"):
        return None, (jid, "meta.type must be \"cmd\" or \"network\"")
    return {"id": jid, "msg": msg, "type": kind}, None


class Queue:
    """Accepted jobs in arrival order, at most MAX_WAITING waiting, and the
    last RECENT accepted ids so a redelivery is not run twice."""

    def __init__(self):
        self.waiting = []
        self.recent = []

    def offer(self, job):
        """Offer a job record: 'accepted', 'duplicate' (its id was accepted
        lately) or 'busy' (MAX_WAITING are waiting)."""
        if self.seen(job["id"]):
            return "duplicate"
        if len(self.waiting) >= MAX_WAITING:
            return "busy"
        self.waiting.append(job)
        self.recent.append(job["id"])
        if len(self.recent) > RECENT:
            self.recent.pop(0)
        return "accepted"

    def seen(self, job_id):
        """True when job_id was accepted lately (one of the last RECENT)."""
        return job_id in self.recent

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

    def peek(self):
        """The next job record to run, left in the queue; None when empty."""
        return self.waiting[0] if self.waiting else None

    def take(self):
        """The next job record to run, out of the queue; None when empty."""
        return self.waiting.pop(0) if self.waiting else None

    def __len__(self):
        return len(self.waiting)
