# Event payloads of PROTOCOL 4 (and 6), as compact JSON bytes.
import json

APP = "socketman"


def dumps(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def _event(kind, ts, extra=None):
    e = {"app": APP, "timestamp": ts, "event_type": kind}
    if extra:
        e.update(extra)
    return e


def base(topic, key, mac):
    return "%s/%s/%s" % (topic, key, mac)


def client_id(mac):
    return ("sm-" + mac)[:23]


def connect(ts, online, cid):
    return dumps(_event("CONNECT", ts, {"meta": {"online": "1" if online else "0", "client_id": cid}}))


def ping(ts):
    return dumps(_event("PING", ts))


def delivered(ts, job_id):
    return dumps(_event("DELIVERED", ts, {"id": job_id, "meta": {"delivered": True}}))


def processed(ts, job_id, result):
    meta = {"msg": result["msg"], "type": result["type"], "success": result["success"],
            "exit_code": result["exit_code"], "duration_ms": result["duration_ms"]}
    return dumps(_event("PROCESSED", ts, {"id": job_id, "meta": meta}))


def rejected(ts, job_id, reason):
    return dumps(_event("REJECTED", ts, {"id": job_id, "meta": {"reason": reason}}))


def config_changed(ts, files):
    return dumps(_event("CONFIG_CHANGED", ts, {"meta": {"files": list(files)}}))


def rest_result(result):
    return dumps({"success": result["success"], "output": result["msg"], "exit_code": result["exit_code"]})
