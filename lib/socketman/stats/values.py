# Small helpers the parsers share: tolerant JSON and number handling. A value
# that is missing, null or of the wrong kind becomes None, never a guess.
import json

from .. import text


def load_json(data):
    """A dict from command output (bytes), or None; a dict (an answer that
    came over the ubus socket, already decoded) as it is."""
    if isinstance(data, dict):
        return data
    if not data:
        return None
    try:
        v = json.loads(text.utf8(data))
    except Exception:
        return None
    return v if isinstance(v, dict) else None


def num(v):
    """An int or a finite float from JSON (not a bool), else None: NaN and
    Infinity would make the document invalid JSON."""
    if type(v) is bool or not isinstance(v, (int, float)):
        return None
    return v if isinstance(v, int) or v - v == 0 else None


def integer(s):
    """int from text like '123', '-7', else None."""
    s = s.strip()
    if s[:1] == "-":
        return -int(s[1:]) if s[1:].isdigit() else None
    return int(s) if s.isdigit() else None


def decimal(s):
    """A number from text ("12.5"), or None when it is not one or not finite."""
    s = s.strip()
    try:
        return num(float(s)) if s and s[0] in "-0123456789." else None
    except ValueError:
        return None


def string(v):
    """v when it is a non-empty str, else None."""
    return v if isinstance(v, str) and v else None


def dbm(v):
    """A received power in dBm: drivers report 0, positive values or -256
    when they do not know, and those are left out."""
    v = num(v)
    if v is None or v >= 0 or v <= -150:
        return None
    return v


def put(d, key, value):
    """d[key] = value unless value is None."""
    if value is not None:
        d[key] = value


def results(data):
    """The "results" list of an iwinfo ubus answer, or []."""
    d = load_json(data)
    res = d.get("results") if d else None
    return res if isinstance(res, list) else []


def put_quality(d, q, qm):
    """quality and quality_max, when they make sense together."""
    if qm is not None and qm > 0:
        d["quality_max"] = qm
        if q is not None and 0 <= q <= qm:
            d["quality"] = q


def quality_text(s):
    """(quality, quality_max) from '49/70' or 'unknown/70'."""
    q, sep, qm = s.partition("/")
    return (integer(q), integer(qm)) if sep else (None, None)


def mac_upper(s):
    """A MAC in "AA:BB:CC:DD:EE:FF" form, or None when s is not a MAC."""
    s = s.strip().upper().replace("-", ":")
    if len(s) != 17:
        return None
    for i, ch in enumerate(s):
        if (ch != ":") if i % 3 == 2 else (ch not in "0123456789ABCDEF"):
            return None
    return s


def text_of(data):
    """Command output bytes (or None) -> valid UTF-8 text ("" for None)."""
    return text.utf8(data) if data else ""
