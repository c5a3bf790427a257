"""The server's reading of docs/PROTOCOL.md: topics, MACs, events, jobs and
their signatures, stats documents. Pure functions, no I/O."""
import hashlib
import hmac
import json
import math
import re

# PROTOCOL 4.1: job ids.
JOB_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_MAC_RE = re.compile(r"^[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}$")
# PROTOCOL 1: topic components must not hold these.
_BAD_TOPIC_CHARS = ("/", "+", "#", "\x00")

# PROTOCOL 7.1: device.status in words.
STATUS_WORDS = {
    0: "no route",
    1: "offline (route only)",
    4: "partly online (health target only)",
    6: "partly online (server only)",
    9: "online",
}


class BadInput(ValueError):
    """Input from a device or an operator that breaks the protocol; the
    message says what is wrong (it goes back in a 4xx answer)."""


def normalize_mac(text):
    """'aa-bb-cc-dd-ee-ff' or 'AA:BB:..' -> 'AA:BB:CC:DD:EE:FF'; BadInput
    otherwise. The server keys devices by this form; the agent keeps the MAC
    as written (PROTOCOL 1), so topics and URLs use what the device sent."""
    if not isinstance(text, str) or not _MAC_RE.match(text.strip()):
        raise BadInput("not a MAC address: %r" % (text,))
    return text.strip().upper().replace("-", ":")


def status_word(status):
    """device.status (PROTOCOL 7.1) -> a short text; None -> 'unknown'."""
    if status is None:
        return "unknown"
    return STATUS_WORDS.get(status, "status %s" % status)


def check_topic_part(name, value):
    """A topic component (PROTOCOL 1: topic, key): non-empty, no / + # NUL."""
    if not isinstance(value, str) or not value or any(c in value for c in _BAD_TOPIC_CHARS):
        raise BadInput("%s must be a non-empty string without / + # or NUL" % name)
    return value


def split_topic(topic):
    """'status/<topic>/<key>/<mac>' -> (kind, base, mac as written) where
    base = '<topic>/<key>/<mac>' (PROTOCOL 4). BadInput for anything else."""
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] not in ("status", "delivery", "pub"):
        raise BadInput("not a device topic: %r" % topic)
    normalize_mac(parts[3])
    return parts[0], "/".join(parts[1:]), parts[3]


def parse_event(payload):
    """An event payload (PROTOCOL 4) -> dict with at least 'event_type'.
    BadInput when it is not a JSON object with a string event_type."""
    try:
        e = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise BadInput("event is not JSON")
    if not isinstance(e, dict) or not isinstance(e.get("event_type"), str):
        raise BadInput("event is not an object with an event_type")
    if not isinstance(e.get("meta", {}), dict):
        raise BadInput("event meta is not an object")
    return e


def job_signature(job_key, job_id, timestamp, msg, job_type="cmd"):
    """PROTOCOL 9: lowercase hex HMAC-SHA256, keyed with the UTF-8 bytes of
    job_key, of '<id>\\n<timestamp>\\n<type>\\n<msg>' in UTF-8."""
    text = "%s\n%d\n%s\n%s" % (job_id, int(timestamp), job_type or "cmd", msg)
    return hmac.new(job_key.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).hexdigest()


def make_job(job_id, msg, job_type, timestamp, job_key=None):
    """The job payload (PROTOCOL 4.1) as bytes; signed (PROTOCOL 9) when a
    job_key is given. BadInput for an id or command the agent would reject."""
    if not isinstance(job_id, str) or not JOB_ID_RE.match(job_id):
        raise BadInput("bad job id")
    if not isinstance(msg, str) or not msg.strip():
        raise BadInput("the command is empty")
    job_type = job_type or "cmd"
    job = {"id": job_id, "timestamp": int(timestamp), "meta": {"msg": msg, "type": job_type}}
    if job_key:
        job["sig"] = job_signature(job_key, job_id, timestamp, msg, job_type)
    data = json.dumps(job, separators=(",", ":")).encode("utf-8")
    if len(data) > 64 * 1024:
        raise BadInput("the job is over 64 KiB")
    return data


def _reject_constant(name):
    raise ValueError("%s is not JSON" % name)


def _num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# Fields the server reads from device{}: what each must be when present.
_DEVICE_NUMBERS = ("uptime", "load_1", "load_5", "load_15", "total_ram", "free_ram", "rx_bytes",
                   "tx_bytes", "procs", "status", "connected", "created_at", "dropped", "rejected")
_DEVICE_STRINGS = ("mac", "firmware", "machine_type", "smv", "wan_name", "wan_ip", "wan_gateway")


def parse_document(line, mac):
    """One stats line (PROTOCOL 7) -> dict. BadInput when it is not a JSON
    object, has no device{}, a field the server reads has the wrong type, or
    device.mac is another device's (mac is the normalized MAC of the URL)."""
    try:
        doc = json.loads(line, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadInput("a line is not JSON: %s" % e)
    if not isinstance(doc, dict):
        raise BadInput("a line is not a JSON object")
    dev = doc.get("device")
    if not isinstance(dev, dict):
        raise BadInput("a line has no device object")
    for k in _DEVICE_NUMBERS:
        if k in dev and not _num(dev[k]):
            raise BadInput("device.%s is not a number" % k)
    for k in _DEVICE_STRINGS:
        if k in dev and not isinstance(dev[k], str):
            raise BadInput("device.%s is not a string" % k)
    if "mac" in dev:
        try:
            same = normalize_mac(dev["mac"]) == mac
        except BadInput:
            same = False
        if not same:
            raise BadInput("device.mac is not the MAC of the URL")
    for k in ("ssids", "stations", "survey", "dhcp"):
        if k in doc and not (isinstance(doc[k], list) and all(isinstance(x, dict) for x in doc[k])):
            raise BadInput("%s is not a list of objects" % k)
    return doc


# Config keys the server decides for every device (api.device_config).
SERVER_KEYS = ("mac", "token", "api_url", "stats_url")


def check_device_overrides(cfg):
    """A device's own config keys (PROTOCOL 1), laid over the fleet template
    when it is provisioned: a JSON object, without the keys the server
    decides (mac, token, api_url, stats_url). The agent checks the values."""
    if isinstance(cfg, str):
        try:
            cfg = json.loads(cfg) if cfg.strip() else {}
        except ValueError as e:
            raise BadInput("the device config is not JSON: %s" % e)
    if not isinstance(cfg, dict):
        raise BadInput("the device config must be a JSON object")
    taken = [k for k in SERVER_KEYS if k in cfg]
    if taken:
        raise BadInput("the server sets %s itself" % ", ".join(taken))
    for k in ("topic", "key"):
        if k in cfg:
            check_topic_part(k, cfg[k])
    return cfg
