# Config file: load, check and normalise every key of PROTOCOL section 1.
# A known key with a value not understood raises ConfigError naming the key;
# the agent never runs on a half-understood config. Unknown keys are ignored
# (PROTOCOL: a newer server may add some) and listed in "unknown_keys".
import json

from . import fs, strictjson, text, urls

S, N, F, U, P = "str", "int", "flag", "url", "ports"
ANY = -(1 << 30)  # lower bound for keys where low values are clamped, not refused

# key, kind, default, (low, high) for ints: out of range is an error.
# Clamps the protocol asks for are applied afterwards in _normalise().
SCHEMA = (
    ("username", S, ""),
    ("password", S, ""),
    ("topic", S, ""),
    ("key", S, ""),
    ("mac", S, ""),
    ("mac_file", S, "/etc/mac"),
    ("mqtt_host", S, ""),
    ("port", N, 0, (1, 65535)),
    ("tls", F, 0),
    ("cacrt", S, ""),
    ("insecure", F, 0),
    ("qos", N, 1, (0, 2)),
    ("api_url", U, ""),
    ("stats_url", U, ""),
    ("backup_stats_url", U, ""),
    ("token", S, ""),
    ("monitor", N, 15, (ANY, 86400)),
    ("heartbeat", N, 60, (ANY, 86400)),
    ("scan", F, 1),
    ("survey", F, 0),
    ("no-cache", F, 0),
    ("no-ping", F, 0),
    ("ping-interval", N, 180, (ANY, 86400)),
    ("rest", F, 0),
    ("reboot", N, 600, (0, 7 * 86400)),
    ("health_url", S, ""),
    ("health_port", N, 53, (1, 65535)),
    ("boot_url", U, ""),
    ("boot_cmd", S, ""),
    ("debug", F, 0),
    ("cache_dir", S, "/tmp/socketman"),
    ("cache_max_bytes", N, 1048576, (4096, 1 << 30)),
    ("job_timeout", N, 300, (1, 7 * 86400)),
    ("max_output", N, 51200, (1, 1048576)),
    ("config_dir", S, "/etc/config"),
    ("leases_file", S, "/tmp/dhcp.leases"),
    ("restart_cmd", S, "/etc/init.d/network restart"),
    ("job_key", S, ""),
    ("job_max_age", N, 300, (30, 86400)),
    ("client_cert", S, ""),
    ("client_key", S, ""),
    ("reboot_cmd", S, "reboot"),
    ("tunnel_ports", P, []),
    ("tunnel_idle", N, 600, (10, 86400)),
    ("ubus_socket", S, "/var/run/ubus/ubus.sock"),
    ("state_file", S, "/etc/socketman/state.json"),
    ("keepalive", N, 30, (1, 65535)),
    ("max_payload", N, 65536, (1024, 1 << 28)),
    ("sysroot", S, ""),
    ("update_dir", S, "/usr/lib/socketman/updates"),
    ("update_trial", N, 300, (30, 3600)),
    ("update_max_bytes", N, 1048576, (1024, 1 << 30)),
)

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")

# Config strings that go into MQTT packets as UTF-8 strings (MQTT 3.1.1
# section 1.5.3): a broker may close the connection on a control character
# or a non-character in one, and must on a surrogate; Mosquitto does
# ("Malformed UTF-8"), and the agent would try again for ever without
# naming the key. The password is binary data in MQTT (section 3.1.3.5):
# only its length is checked.
MQTT_TEXT = ("topic", "key", "username")
MQTT_MAX = 65535  # bytes in an MQTT string field (a 2-byte length)
_CHAR_NAMES = {0: ", NUL", 9: ", a tab", 10: ", a line feed",
               13: ", a carriage return: a file with CRLF line ends?"}


class ConfigError(Exception):
    """A bad config file or value; the message names the key (PROTOCOL 1)."""
    def __init__(self, key, problem):
        super().__init__("%s: %s" % (key, problem) if key else problem)
        self.key = key
        self.problem = problem


def _int(key, v, rng):
    if type(v) is bool:
        raise ConfigError(key, "must be a number, not true/false")
    if isinstance(v, str):
        v = _int_text(v.strip()) if v.strip() else v
    elif isinstance(v, float) and v - v == 0 and v == int(v):  # finite and whole
        v = int(v)
    if not isinstance(v, int):
        raise ConfigError(key, "must be an integer, got %s" % _kind(v))
    if not rng[0] <= v <= rng[1]:
        # ANY is no bound a person wrote: say only the maximum. A number of
        # hundreds of digits (1e308 in JSON) is cut, keeping one log line.
        n = str(v)
        n = n if len(n) <= 20 else n[:17] + "..."
        within = "at most %d" % rng[1] if rng[0] == ANY else "%d..%d" % rng
        raise ConfigError(key, "%s is out of range %s" % (n, within))
    return v


def _int_text(s):
    """int of ASCII decimal digits with an optional '-', else s unchanged
    (isdigit() also says yes to other scripts' digits)."""
    digits = s[1:] if s[:1] == "-" else s
    if digits and all("0" <= ch <= "9" for ch in digits):
        return int(s)
    return s


def _ports(key, v):
    """A list of TCP ports (PROTOCOL 11 tunnel_ports): each 1..65535, as
    an int or its digits; a new list (the default is shared)."""
    if not isinstance(v, list):
        raise ConfigError(key, "must be a list of TCP ports like [22, 80], got %s" % _kind(v))
    out = []
    for p in v:
        try:
            out.append(_int(key, p, (1, 65535)))
        except ConfigError as e:
            raise ConfigError(key, "each port %s" % e.problem)
    return out


def _flag(key, v):
    if type(v) is bool:
        return int(v)
    if isinstance(v, int) and v in (0, 1):
        return v
    if isinstance(v, str) and v.strip().lower() in _TRUE + _FALSE:
        return 1 if v.strip().lower() in _TRUE else 0
    raise ConfigError(key, "must be 0/1 or true/false, got %s" % _short(v))


def _kind(v):
    if v is None:
        return "null"
    if isinstance(v, (list, tuple)):
        return "a list"
    if isinstance(v, dict):
        return "an object"
    return "%s %s" % (type(v).__name__, _short(v))


def _short(v):
    s = json.dumps(v) if not isinstance(v, str) else '"%s"' % v
    return s if len(s) <= 40 else s[:37] + "..."


def _check_value(key, kind, v, rng):
    if kind == F:
        return _flag(key, v)
    if kind == N:
        return _int(key, v, rng)
    if kind == P:
        return _ports(key, v)
    if not isinstance(v, str):
        raise ConfigError(key, "must be a string, got %s" % _kind(v))
    if kind == U and v:
        try:
            urls.split(v)
        except ValueError as e:
            raise ConfigError(key, str(e))
    return v


def check(obj, need_mac=True):
    """A checked, normalised config dict from a parsed JSON value. With
    need_mac False a MAC that is neither set nor in mac_file leaves "mac"
    empty (provisioning finds it, PROTOCOL 3)."""
    if not isinstance(obj, dict):
        raise ConfigError("", "config must be a JSON object, got %s" % _kind(obj))
    obj = dict(obj)
    if "heartbeat" not in obj and "sleep" in obj:
        obj["heartbeat"] = obj["sleep"]  # the original's name for it
    cfg = {}
    for row in SCHEMA:
        key, kind, default = row[0], row[1], row[2]
        if key in obj:
            cfg[key] = _check_value(key, kind, obj[key], row[3] if len(row) > 3 else None)
        else:
            cfg[key] = list(default) if kind == P else default
    # Unknown keys are ignored (PROTOCOL: a newer server may add some), but
    # a misspelt one would silently leave its default: the agent says which.
    cfg["unknown_keys"] = sorted(k for k in obj if k not in cfg and k != "sleep")
    _normalise(cfg, obj, need_mac)
    return cfg


def _normalise(cfg, given, need_mac=True):
    if "port" not in given:
        cfg["port"] = 8883 if cfg["tls"] else 1883
    cfg["monitor"] = max(15, cfg["monitor"])
    cfg["heartbeat"] = min(300, max(cfg["monitor"], cfg["heartbeat"]))
    cfg["ping-interval"] = max(30, cfg["ping-interval"])
    if 0 < cfg["reboot"] < 300:
        cfg["reboot"] = 300
    for key in ("topic", "key"):
        v = cfg[key]
        for bad in ("/", "+", "#", "\0"):
            if bad in v:
                raise ConfigError(key, "must not contain %s" % ("NUL" if bad == "\0" else "'" + bad + "'"))
        if cfg["mqtt_host"] and not v:
            raise ConfigError(key, "required when mqtt_host is set")
    if not cfg["mac"]:
        line = fs.read_file(cfg["mac_file"], 256)
        if line is None and need_mac:
            raise ConfigError("mac", "not set, and mac_file %s cannot be read" % cfg["mac_file"])
        cfg["mac"] = text.utf8((line or b"").split(b"\n")[0].strip())
        where = " (from mac_file %s)" % cfg["mac_file"]
        if not need_mac and not is_mac(cfg["mac"]):
            cfg["mac"] = ""
    else:
        where = ""
    if (cfg["mac"] or need_mac) and not is_mac(cfg["mac"]):
        raise ConfigError("mac", "%s is not a MAC address like aa:bb:cc:dd:ee:ff or AA-BB-CC-DD-EE-FF%s"
                          % (_short(cfg["mac"]), where))
    _mqtt_strings(cfg)
    if cfg["cacrt"] and fs.read_file(cfg["cacrt"], 1) is None:
        raise ConfigError("cacrt", "cannot read %s" % cfg["cacrt"])
    _client_cert(cfg)
    for key in ("cache_dir", "config_dir", "leases_file", "mac_file", "state_file", "sysroot", "update_dir"):
        if not cfg[key].startswith("/") and (cfg[key] or key != "sysroot"):
            raise ConfigError(key, "must be an absolute path")
    cfg["sysroot"] = cfg["sysroot"].rstrip("/")
    cfg["update_dir"] = cfg["update_dir"].rstrip("/") or "/"  # slot paths are update_dir + "/" + name
    ub = cfg["ubus_socket"]
    if ub and (not ub.startswith("/") or len(ub.encode()) > 107 or "\0" in ub):
        # sun_path holds 108 bytes with the NUL (PROTOCOL 12)
        raise ConfigError("ubus_socket", "must be empty or an absolute path of at most 107 bytes")
    if cfg["rest"] and not cfg["api_url"]:
        raise ConfigError("api_url", "required when rest is 1")
    hu = cfg["health_url"]
    if "://" in hu:
        try:
            cfg["health_url"] = urls.split(hu)[1]
        except ValueError as e:
            raise ConfigError("health_url", str(e))
    elif "/" in hu or " " in hu:
        raise ConfigError("health_url", "must be a host name or address")


def mqtt_text_problem(v):
    """Why the str v cannot be an MQTT UTF-8 string (MQTT 3.1.1 section
    1.5.3), or None: a control character (U+0000..U+001F, U+007F..U+009F),
    a lone surrogate, a non-character (U+FDD0..U+FDEF, U+xFFFE, U+xFFFF)."""
    for ch in v:
        c = ord(ch)
        if c < 0x20 or 0x7F <= c <= 0x9F:
            what = "a control character"
        elif 0xD800 <= c <= 0xDFFF:
            what = "a lone surrogate"
        elif 0xFDD0 <= c <= 0xFDEF or c & 0xFFFE == 0xFFFE:
            what = "a non-character"
        else:
            continue
        return "must not contain %s (U+%04X%s): an MQTT broker refuses it" % (what, c, _CHAR_NAMES.get(c, ""))
    return None


def _mqtt_strings(cfg):
    """The strings of section 1 that MQTT carries (topics, user name,
    password) as MQTT can carry them, whether or not mqtt_host is set."""
    for key in MQTT_TEXT:
        why = mqtt_text_problem(cfg[key])
        if why:
            raise ConfigError(key, why)
    for key in ("username", "password"):
        if len(cfg[key].encode()) > MQTT_MAX:
            raise ConfigError(key, "longer than the %d bytes MQTT allows" % MQTT_MAX)
    # The longest topic is delivery/<topic>/<key>/<mac>.
    n = len(("delivery/%s/%s/%s" % (cfg["topic"], cfg["key"], cfg["mac"])).encode())
    if n > MQTT_MAX:
        key = "topic" if len(cfg["topic"]) >= len(cfg["key"]) else "key"
        raise ConfigError(key, "makes MQTT topics of %d bytes, over the %d MQTT allows" % (n, MQTT_MAX))


def _client_cert(cfg):
    """client_cert and client_key (PROTOCOL 9) come together and name
    readable files; what is in them is checked when they are loaded at
    start (tls.use), which reads them once."""
    cert, key = cfg["client_cert"], cfg["client_key"]
    if bool(cert) != bool(key):
        given, other = ("client_cert", "client_key") if cert else ("client_key", "client_cert")
        raise ConfigError(given, "set without %s: the two go together" % other)
    for name in ("client_cert", "client_key"):
        st = fs.stat(cfg[name]) if cfg[name] else None
        if cfg[name] and (st is None or not st[4] or fs.read_file(cfg[name], 1) is None):
            raise ConfigError(name, "cannot read %s" % cfg[name])


def is_mac(s):
    """True for six pairs of hex digits separated by all ":" or all "-"."""
    if len(s) != 17:
        return False
    sep = s[2]
    if sep not in ":-":
        return False
    for i, ch in enumerate(s):
        if i % 3 == 2:
            if ch != sep:
                return False
        elif ch not in "0123456789abcdefABCDEF":
            return False
    return True


def parse(data, need_mac=True):
    """Config from the bytes of a file (need_mac: see check)."""
    if data is None:
        raise ConfigError("", "cannot read the config file")
    # Checked on the bytes: MicroPython's decode() lets overlong forms and
    # surrogates through (C0 AF became a "/" inside a topic).
    if data[:3] == b"\xef\xbb\xbf":
        raise ConfigError("", "config file starts with a UTF-8 byte order mark (a Windows editor's): save it without")
    if not text.valid(data):
        raise ConfigError("", "config file is not UTF-8 (or holds an overlong form or a surrogate)")
    s = data.decode("utf-8")
    if not s.strip():
        raise ConfigError("", "config file is empty")
    try:
        obj = strictjson.loads(s)
    except strictjson.TooDeep as e:
        raise ConfigError("", "config file is %s" % (e,))
    except ValueError as e:
        raise ConfigError("", "config file is not valid JSON (%s)" % (e,))
    return check(obj, need_mac)


def load(path):
    """Read, check and normalise the config file at path (PROTOCOL 1): the
    config dict with every key. ConfigError when it is missing, not JSON or
    a value is wrong."""
    return parse(fs.read_file(path))
