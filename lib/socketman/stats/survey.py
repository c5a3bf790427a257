# Neighbouring networks: `ubus call iwinfo scan`, else `iwinfo <dev> scan` text.
from .values import dbm, decimal, integer, mac_upper, num, put, put_quality, quality_text, results, string, text_of
from .wifi import encryption


def scan_json(data):
    """`ubus call iwinfo scan` output (bytes) -> [neighbour dict] (PROTOCOL 7)."""
    out = []
    for r in results(data):
        if not isinstance(r, dict):
            continue
        mac = mac_upper(r["bssid"]) if isinstance(r.get("bssid"), str) else None
        if not mac:
            continue
        e = {"mac": mac}
        put(e, "ssid", string(r.get("ssid")))
        for key in ("channel", "frequency"):
            v = num(r.get(key))
            put(e, key, v if v is not None and v > 0 else None)
        put(e, "signal", dbm(r.get("signal")))
        put_quality(e, num(r.get("quality")), num(r.get("quality_max")))
        put(e, "encryption", encryption(r.get("encryption")))
        put(e, "last_seen", num(r.get("last_seen")))
        out.append(e)
    return out


def scan_text(data):
    """Cells of `iwinfo <dev> scan`, old ('Mode: Master  Channel: 6') and new
    ('Frequency: 5.260 GHz  Band: 5 GHz  Channel: 52') formats."""
    out = []
    cur = None
    for line in text_of(data).split("\n"):
        s = line.strip()
        if s.startswith("Cell ") and "Address:" in s:
            mac = mac_upper(s.split("Address:")[1])
            cur = {"mac": mac} if mac else None
            if cur:
                out.append(cur)
            continue
        if cur is None:
            continue
        if s.startswith("ESSID:"):
            v = s[6:].strip()
            if len(v) >= 2 and v[0] == '"' and v[-1] == '"' and v[1:-1]:
                cur["ssid"] = v[1:-1]
        elif s.startswith("Mode:"):
            f = s.split()
            for i, w in enumerate(f):
                if w == "Channel:" and i + 1 < len(f):
                    put(cur, "channel", integer(f[i + 1]))
                elif w == "Frequency:" and i + 2 < len(f) and f[i + 2] == "GHz":
                    ghz = decimal(f[i + 1])
                    put(cur, "frequency", int(round(ghz * 1000)) if ghz else None)
        elif s.startswith("Signal:"):
            f = s.split()
            if len(f) >= 3 and f[2] == "dBm":
                put(cur, "signal", dbm(integer(f[1])))
            if "Quality:" in f and f.index("Quality:") + 1 < len(f):
                put_quality(cur, *quality_text(f[f.index("Quality:") + 1]))
        elif s.startswith("Encryption:"):
            v = s[11:].strip()
            if v and v != "unknown":
                cur["encryption"] = v
    return out
