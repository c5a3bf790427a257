"""What devices call over HTTP (PROTOCOL 3, 4.1 rest, 5): /api/stats,
/api/ping, /api/boot, /api/operations/<id>, /api/init. Every refusal is a
4xx with a JSON {"error": ...} that says why; nothing a device sends can
stop the server."""
import hmac
import json
import logging
import zlib

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from .protocol import BadInput, normalize_mac, parse_document

log = logging.getLogger("socketman_server.api")
bp = Blueprint("api", __name__, url_prefix="/api")


class Refused(Exception):
    """A request the server answers with `status` and `message`."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


@bp.errorhandler(Refused)
def _refused(e):
    log.info("%s %s -> %d %s", request.method, request.path, e.status, e.message)
    resp = jsonify(error=e.message)
    resp.status_code = e.status
    return resp


@bp.errorhandler(HTTPException)
def _http_error(e):
    # Werkzeug's own refusals (413 too large, 405, a broken multipart body)
    # in the same JSON shape as ours.
    log.info("%s %s -> %d %s", request.method, request.path, e.code, e.description)
    resp = jsonify(error=e.description or e.name)
    resp.status_code = e.code
    return resp


def _store():
    return current_app.config["STORE"]


def _settings():
    return current_app.config["SETTINGS"]


def _device_from_token(need_mac=True):
    """The device named by ?access_token= (and ?mac=, which must be its own).
    401 otherwise: PROTOCOL 5 sends a device with -b back to provisioning."""
    token = request.args.get("access_token", "")
    dev = _store().device_by_token(token)
    if dev is None:
        raise Refused(401, "unknown access_token")
    if need_mac or "mac" in request.args:
        try:
            same = normalize_mac(request.args.get("mac", "")) == dev["mac"]
        except BadInput:
            same = False
        if not same:
            raise Refused(401, "the access_token is not this mac's")
    return dev


def gunzip(data, limit):
    """gzip bytes (one or more members) -> bytes, at most `limit` of them.
    Refused(400) for data that is not gzip or is cut short, Refused(413)
    for more than `limit` once unpacked (a small archive can unpack to
    gigabytes)."""
    out = []
    size = 0
    while True:
        d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            while data:
                chunk = d.decompress(data, limit + 1 - size)
                size += len(chunk)
                out.append(chunk)
                if size > limit:
                    raise Refused(413, "the archive unpacks to more than %d bytes" % limit)
                data = d.unconsumed_tail
            if not d.eof:
                raise Refused(400, "the gzip archive is cut short")
        except zlib.error as e:
            raise Refused(400, "the archive is not gzip: %s" % e)
        data = d.unused_data
        if not data:
            return b"".join(out)


@bp.post("/stats")
def stats():
    """PROTOCOL 5: multipart/form-data with a gzip part "data" of JSON lines,
    or one document as application/json. All lines are stored or none: a
    bad line makes the whole request a 400, so the agent splits the batch
    until the bad line is alone and drops it (nothing is stored twice)."""
    dev = _device_from_token()
    s = _settings()
    mimetype = request.mimetype
    # A body that ends before its Content-Length (the device gave up and
    # closed mid-upload, or a proxy cut it) is not a bad document: 408, a
    # retry for the agent (PROTOCOL 5), rather than the 400 its parse would
    # give, which would make the agent split the batch and drop lines.
    body = request.get_data(cache=True)
    if request.content_length is not None and len(body) < request.content_length:
        raise Refused(408, "the body ended after %d of its %d bytes" % (len(body), request.content_length))
    if mimetype == "multipart/form-data":
        part = request.files.get("data")
        if part is None:
            raise Refused(400, 'no multipart part named "data"')
        text = gunzip(part.read(), s.max_unpacked)
    elif mimetype == "application/json":
        text = body
    else:
        raise Refused(400, "the body must be multipart/form-data (gzip) or application/json")
    try:
        lines = text.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        raise Refused(400, "the documents are not UTF-8")
    docs = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue  # the agent blanks lines it could not remove; they carry nothing
        try:
            docs.append(parse_document(line, dev["mac"]))
        except BadInput as e:
            raise Refused(400, "line %d: %s" % (n, e))
    if not docs:
        raise Refused(400, "no document")
    stored = _store().store_stats(dev["id"], docs, request.args.get("mac"))
    return jsonify(stored=stored)


@bp.post("/ping")
def ping():
    """PROTOCOL 5 REST ping: a sign of life."""
    dev = _device_from_token()
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or body.get("event_type") != "PING":
        raise Refused(400, "the body must be a PING event")
    _store().ping(dev["id"])
    return "", 204


@bp.get("/boot")
def boot():
    """PROTOCOL 5 boot URL: called once after each agent start. The answer
    is never executed by the agent; it is only logged there."""
    dev = _device_from_token()
    _store().boot(dev["id"])
    return jsonify(ok=True)


@bp.patch("/operations/<job_id>")
def operation(job_id):
    """PROTOCOL 4.1 rest = 1: a job result. 401 for a wrong token (the agent
    keeps it and retries), 400 for a malformed body (dropped), 404 for a job
    that is not this device's (given up)."""
    dev = _device_from_token(need_mac=False)
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise Refused(400, "the body must be a JSON object")
    success, output, code = body.get("success"), body.get("output"), body.get("exit_code")
    if not isinstance(success, bool) or not isinstance(output, str) \
            or not isinstance(code, int) or isinstance(code, bool) or not -(1 << 31) <= code < (1 << 31):
        raise Refused(400, "success (bool), output (string) and exit_code (int) are required")
    if not _store().job_result(dev["id"], job_id, success, output, code):
        raise Refused(404, "no such operation for this device")
    return jsonify(ok=True)


def device_config(settings, dev, mac_written):
    """The config a device gets (PROTOCOL 1): the operator's template, the
    device's own keys (admitted with it), then what this server decides: the
    device's MAC and token, its URLs and the job key when jobs are signed."""
    base = settings.base_url()
    cfg = dict(settings.device_config)
    if dev.get("config_json"):
        cfg.update(json.loads(dev["config_json"]))
    cfg.update(mac=mac_written, token=dev["token"], api_url=base + "/api", stats_url=base + "/api/stats")
    cfg.setdefault("boot_url", base + "/api/boot")
    if settings.job_key:
        cfg["job_key"] = settings.job_key
    return cfg


@bp.get("/init")
def init():
    """PROTOCOL 3: GET ?mac=&machine=&firmware= with `Authorization: Bearer
    <secret>`. 200 with the device's config for a device that is admitted
    (or any device, with auto-admit); 403 for a wrong or missing secret
    and for a device that is not admitted; 400 for a bad MAC."""
    s = _settings()
    auth = request.headers.get("Authorization", "")
    given = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    if not s.init_secret or not hmac.compare_digest(given.encode(), s.init_secret.encode()):
        raise Refused(403, "wrong or missing provisioning secret")
    mac_written = request.args.get("mac", "")
    try:
        normalize_mac(mac_written)
    except BadInput as e:
        raise Refused(400, str(e))
    store = _store()
    dev = store.device(mac_written)
    if dev is None or not dev["token"]:
        if not s.auto_admit:
            raise Refused(403, "this device is not admitted")
        dev = store.admit(mac_written)
        # An admission like any other in the audit log; nobody logged in did it.
        store.audit("(auto-admit)", "device.admit", dev["mac"], "ok",
                    "admitted on its first call to /api/init (--auto-admit)", request.remote_addr)
    store.mark_provisioned(dev["id"], mac_written)
    log.info("handed a config to %s (%s, %s)", mac_written, request.args.get("machine", "?")[:100],
             request.args.get("firmware", "?")[:100])
    return jsonify(device_config(s, dev, mac_written))
