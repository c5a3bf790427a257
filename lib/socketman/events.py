# Event payloads of PROTOCOL 4 (and 6), as compact JSON bytes.
import json

APP = "socketman"


def dumps(obj):
    """obj -> compact JSON bytes."""
    return json.dumps(obj, separators=(",", ":")).encode()


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


def processed(ts, job_id, result):
    """PROCESSED event from a result record (jobs.runner.Runner.result)."""
    meta = {"msg": result["msg"], "type": result["type"], "success": result["success"],
            "exit_code": result["exit_code"], "duration_ms": result["duration_ms"]}
    return dumps(_event("PROCESSED", ts, {"id": job_id, "meta": meta}))


def rejected(ts, job_id, reason):
    """REJECTED event; job_id may be None when the payload had no valid id."""
    return dumps(_event("REJECTED", ts, {"id": job_id, "meta": {"reason": reason}}))


def config_changed(ts, files):
    """CONFIG_CHANGED event listing the changed file names (PROTOCOL 6)."""
    return dumps(_event("CONFIG_CHANGED", ts, {"meta": {"files": list(files)}}))


def rest_result(result):
    """The PATCH body for a result record (PROTOCOL 4.1, rest = 1)."""
    return dumps({"success": result["success"], "output": result["msg"], "exit_code": result["exit_code"]})
