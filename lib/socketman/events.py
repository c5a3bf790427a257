# Event payloads of PROTOCOL 4 (and 6), as compact JSON bytes.
from . import rt, text

APP = "socketman"
CUT_NOTE = "[output cut: the result was over max_payload %d bytes]"


def dumps(obj):
    """obj -> compact JSON bytes (UTF-8)."""
    return rt.dumps(obj).encode()


def _event(kind, ts, extra=None):
    e = {"app": APP, "timestamp": ts, "event_type": kind}
    if extra:
        e.update(extra)
    return e


def base(topic, key, mac):
    """The topic base <topic>/<key>/<mac> (PROTOCOL 4)."""
    return "%s/%s/%s" % (topic, key, mac)


def client_id(mac):
    """The MQTT client id: "sm-<mac>", cut to the 23 characters MQTT 3.1.1 allows."""
    return ("sm-" + mac)[:23]


def connect(ts, online, cid):
    """CONNECT event (retained on status/<base>): online "1" or "0" (PROTOCOL 4)."""
    return dumps(_event("CONNECT", ts, {"meta": {"online": "1" if online else "0", "client_id": cid}}))


def ping(ts):
    """PING event (PROTOCOL 4)."""
    return dumps(_event("PING", ts))


def delivered(ts, job_id):
    """DELIVERED event for job_id (PROTOCOL 4.1)."""
    return dumps(_event("DELIVERED", ts, {"id": job_id, "meta": {"delivered": True}}))


def processed(ts, job_id, result, limit=None):
    """PROCESSED event from a result record (jobs.runner.Runner.result). With
    limit (bytes), the output is cut so that the whole payload fits, and
    says so: a broker closes the connection on a packet over its cap."""
    meta = {"msg": result["msg"], "type": result["type"], "success": result["success"],
            "exit_code": result["exit_code"], "duration_ms": result["duration_ms"]}
    e = _event("PROCESSED", ts, {"id": job_id, "meta": meta})
    out = dumps(e)
    if limit is None or len(out) <= limit:
        return out
    note = CUT_NOTE % limit
    raw = result["msg"].encode()
    meta["msg"] = ""
    escaped = len(out) - len(dumps(e))    # the output's size in the JSON
    meta["msg"] = note
    room = limit - len(dumps(e)) - 2      # "\n" before the note is 2 bytes in JSON
    keep = len(raw) * room // max(1, escaped)
    while keep > 0:
        meta["msg"] = text.utf8(text.cut(raw, keep)) + "\n" + note
        out = dumps(e)
        if len(out) <= limit:
            return out
        keep -= len(out) - limit  # each byte cut takes at least one off the JSON
    meta["msg"] = note
    return dumps(e)


def rejected(ts, job_id, reason):
    """REJECTED event; job_id may be None when the payload had no valid id."""
    return dumps(_event("REJECTED", ts, {"id": job_id, "meta": {"reason": reason}}))


def config_changed(ts, files):
    """CONFIG_CHANGED event listing the changed file names (PROTOCOL 6)."""
    return dumps(_event("CONFIG_CHANGED", ts, {"meta": {"files": list(files)}}))


def rest_result(result):
    """The PATCH body for a result record (PROTOCOL 4.1, rest = 1)."""
    return dumps({"success": result["success"], "output": result["msg"], "exit_code": result["exit_code"]})
