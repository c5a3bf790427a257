# Event payloads of PROTOCOL 4 (and 6), as compact JSON bytes.
from . import VERSION, rt, text

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
    """CONNECT event (retained on status/<base>): online "1" or "0", and the
    running version (PROTOCOL 4, 10)."""
    return dumps(_event("CONNECT", ts, {"meta": {"online": "1" if online else "0", "client_id": cid,
                                                 "version": VERSION}}))


def ping(ts):
    """PING event (PROTOCOL 4)."""
    return dumps(_event("PING", ts))


def delivered(ts, job_id):
    """DELIVERED event for job_id (PROTOCOL 4.1)."""
    return dumps(_event("DELIVERED", ts, {"id": job_id, "meta": {"delivered": True}}))


def processed(ts, job_id, result, limit=None):
    """PROCESSED event from a result record (jobs.runner.Runner.result;
    its "msg" bytes or str). With limit (bytes), the output is cut so that
    the whole payload fits, and says so: a broker closes the connection on
    a packet over its cap. -> bytearray."""
    meta = {"type": result["type"], "success": result["success"],
            "exit_code": result["exit_code"], "duration_ms": result["duration_ms"]}
    skel = dumps(_event("PROCESSED", ts, {"id": job_id, "meta": meta}))
    return _with_text(skel, skel.find(b'"meta":{') + 8, b'"msg":"', result["msg"], limit)


def rejected(ts, job_id, reason):
    """REJECTED event; job_id may be None when the payload had no valid id."""
    return dumps(_event("REJECTED", ts, {"id": job_id, "meta": {"reason": reason}}))


def config_changed(ts, files):
    """CONFIG_CHANGED event listing the changed file names (PROTOCOL 6)."""
    return dumps(_event("CONFIG_CHANGED", ts, {"meta": {"files": list(files)}}))


def rest_result(result, limit=None):
    """The PATCH body for a result record (PROTOCOL 4.1, rest = 1), cut to
    limit bytes as processed() is. -> bytearray."""
    skel = dumps({"success": result["success"], "exit_code": result["exit_code"]})
    return _with_text(skel, 1, b'"output":"', result["msg"], limit)


def _with_text(skel, at, key, msg, limit):
    """The JSON bytes skel with key (b'"name":"') and msg (bytes, any, or
    str) as a JSON string put in at byte at, followed by a comma. msg is
    written straight from its bytes into the one buffer returned, so the
    memory is the output plus at most limit bytes, whatever the output is
    (text.json_into); cut to fit limit, the text ends with CUT_NOTE."""
    if isinstance(msg, str):
        msg = msg.encode()
    tail = len(skel) - at
    whole = len(skel) + len(key) + 2 + 6 * len(msg)  # 6: the longest escape of a byte
    size = whole if limit is None or whole <= limit else limit
    buf = bytearray(size)
    buf[:at] = skel[:at]
    pos = at + len(key)
    buf[at:pos] = key
    end = size - tail - 2
    note = b"\n" + (CUT_NOTE % limit).encode() if size < whole else b""
    pos, used = text.json_into(buf, pos, max(pos, end - len(note) - 1), msg)
    if used < len(msg):
        pos = text.json_into(buf, pos, end, note)[0]
    buf[pos:pos + 2] = b'",'
    buf[pos + 2:pos + 2 + tail] = skel[at:]
    buf[pos + 2 + tail:] = b""
    return buf
