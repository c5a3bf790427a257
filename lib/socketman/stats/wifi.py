# WiFi interfaces and stations: `ubus call iwinfo devices|info|assoclist`,
# else the text of `iwinfo <dev> info|assoclist` and `iw dev <dev> station dump`.
from .values import (
    dbm,
    decimal,
    integer,
    load_json,
    mac_upper,
    num,
    put,
    put_quality,
    quality_text,
    results,
    string,
    text_of,
)


def devices(data):
    """Interface names from `ubus call iwinfo devices`."""
    d = load_json(data)
    devs = d.get("devices") if d else None
    if not isinstance(devs, list):
        return []
    return [x for x in devs if isinstance(x, str) and _safe_name(x)]


def devices_text(data):
    """Interface names from plain `iwinfo` (each block starts at column 0)."""
    out = []
    for line in text_of(data).split("\n"):
        if line and line[0] not in " \t" and "ESSID:" in line:
            name = line.split()[0]
            if _safe_name(name):
                out.append(name)
    return out


def _safe_name(name):
    # Interface names go into shell commands: only what Linux allows sensibly.
    if not 0 < len(name) <= 32:
        return False
    for ch in name:
        if not (ch.isalpha() or ch.isdigit() or ch in "._-@"):
            return False
    return True


_WPA = {1: "WPA", 2: "WPA2", 3: "WPA3"}


def encryption(enc):
    """iwinfo's encryption object -> text like 'WPA2 PSK (CCMP)'."""
    if not isinstance(enc, dict):
        return None
    if enc.get("enabled") is False:
        return "none"
    if enc.get("enabled") is not True:
        return None
    wpa = enc.get("wpa")
    ver = "/".join(_WPA[v] for v in wpa if v in _WPA) if isinstance(wpa, list) else ""
    auth = enc.get("authentication")
    auth = "/".join(a.upper() for a in auth if isinstance(a, str)) if isinstance(auth, list) else ""
    ciphers = enc.get("ciphers")
    ciphers = ", ".join(c.upper() for c in ciphers if isinstance(c, str)) if isinstance(ciphers, list) else ""
    if not ver and enc.get("wep"):
        ver = "WEP"
    words = " ".join(w for w in (ver, auth) if w)
    if ciphers:
        words = (words + " (%s)" % ciphers) if words else ciphers
    return words or None


def info_json(iface, data):
    """One ssids[] entry from `ubus call iwinfo info`, or None."""
    d = load_json(data)
    if d is None:
        return None
    e = {"interface": iface}
    put(e, "ssid", string(d.get("ssid")))
    put(e, "bssid", _bssid(d.get("bssid")))
    for key, src in (("channel", "channel"), ("frequency", "frequency"), ("bitrate", "bitrate"),
                     ("tx_power", "txpower")):
        v = num(d.get(src))
        put(e, key, v if v is not None and v > 0 else None)
    put(e, "noise", dbm(d.get("noise")))
    put(e, "signal", dbm(d.get("signal")))
    put_quality(e, num(d.get("quality")), num(d.get("quality_max")))
    put(e, "encryption", encryption(d.get("encryption")))
    return e


def info_text(data):
    """ssids[] entries from `iwinfo` or `iwinfo <dev> info` text."""
    out = []
    cur = None
    for line in text_of(data).split("\n"):
        if line and line[0] not in " \t":
            name, _, rest = line.partition(" ")
            cur = {"interface": name}
            out.append(cur)
            line = rest
        if cur is None:
            continue
        _info_line(cur, line.strip())
    return out


def _bssid(v):
    m = mac_upper(v) if isinstance(v, str) else None
    return m if m != "00:00:00:00:00:00" else None  # zero: none, or masked


def _after(line, label):
    i = line.find(label)
    return None if i < 0 else line[i + len(label):].strip()


def _info_line(e, line):
    v = _after(line, "ESSID:")
    if v is not None:
        if v.startswith('"') and v.endswith('"') and len(v) >= 2:
            put(e, "ssid", v[1:-1] or None)
        return
    v = _after(line, "Access Point:")
    if v is not None:
        put(e, "bssid", _bssid(v))
        return
    if line.startswith("Mode:"):
        ch = _after(line, "Channel:")
        if ch:
            put(e, "channel", integer(ch.split()[0]))
            if "(" in ch and "GHz" in ch:
                ghz = decimal(ch.split("(")[1].split()[0])
                put(e, "frequency", int(round(ghz * 1000)) if ghz else None)
        return
    if line.startswith("Tx-Power:"):
        f = line.split()
        put(e, "tx_power", integer(f[1]) if len(f) > 2 and f[2] == "dBm" else None)
        lq = _after(line, "Link Quality:")
        if lq:
            put_quality(e, *quality_text(lq.split()[0]))
        return
    if line.startswith("Signal:"):
        put(e, "signal", dbm(_dbm_after(line, "Signal:")))
        put(e, "noise", dbm(_dbm_after(line, "Noise:")))
        return
    v = _after(line, "Bit Rate:")
    if v is not None:
        f = v.split()
        if len(f) >= 2 and f[1] == "MBit/s" and decimal(f[0]) is not None:
            e["bitrate"] = int(round(decimal(f[0]) * 1000))
        return
    v = _after(line, "Encryption:")
    if v is not None and v != "unknown":
        e["encryption"] = v


def _dbm_after(line, label):
    v = _after(line, label)
    if not v:
        return None
    f = v.split()
    return integer(f[0]) if len(f) >= 2 and f[1] == "dBm" else None


# ---- stations ------------------------------------------------------------

def assoclist_json(data):
    """stations[] (without interface/ssid) from `ubus call iwinfo assoclist`."""
    out = []
    for r in results(data):
        if not isinstance(r, dict) or not isinstance(r.get("mac"), str):
            continue
        mac = mac_upper(r["mac"])
        if not mac:
            continue
        s = {"mac": mac}
        put(s, "signal", dbm(r.get("signal")))
        put(s, "signal_avg", dbm(r.get("signal_avg")))
        for key, src in (("inactive_time", "inactive"), ("conn_time", "connected_time"),
                         ("expected_tput", "thr")):
            v = num(r.get(src))
            put(s, key, v if v is not None and v >= 0 else None)
        if s.get("expected_tput"):
            s["expected_tput"] = round(s["expected_tput"] / 1000.0, 3)  # kbit/s -> Mbit/s
        else:
            s.pop("expected_tput", None)  # 0: not known (iwinfo prints "unknown")
        for key, src in (("authorized", "authorized"), ("authenticated", "authenticated"),
                         ("associated", "associated"), ("wmm", "wme"), ("mfp", "mfp"), ("tdls", "tdls")):
            v = r.get(src)
            if type(v) is bool:
                s[key] = v
        put(s, "preamble", string(r.get("preamble")))
        for way in ("rx", "tx"):
            t = r.get(way)
            if not isinstance(t, dict):
                continue
            for key in ("packets", "bytes"):
                v = num(t.get(key))
                put(s, way + "_" + key, v if v is not None and v >= 0 else None)
            rate = num(t.get("rate"))
            if rate is not None and rate > 0:
                s[way + "_bitrate"] = rate / 1000.0  # kbit/s -> Mbit/s
            if way == "tx":
                for key in ("retries", "failed"):
                    v = num(t.get(key))
                    put(s, "tx_" + key, v if v is not None and v >= 0 else None)
                v = num(t.get("mcs"))
                put(s, "mcs", v if v is not None and v >= 0 and (t.get("ht") or t.get("vht") or t.get("he"))
                    else None)
        out.append(s)
    return out


def clients_json(data):
    """stations[] (without interface/ssid) from `ubus call hostapd.<dev>
    get_clients`: {"clients": {mac: {...}}}, rates in kbit/s."""
    d = load_json(data)
    clients = d.get("clients") if d else None
    out = []
    for mac, c in clients.items() if isinstance(clients, dict) else ():
        mac = mac_upper(mac) if isinstance(c, dict) else None
        if not mac:
            continue
        s = {"mac": mac}
        put(s, "signal", dbm(c.get("signal")))
        for key, src in (("authorized", "authorized"), ("authenticated", "auth"), ("associated", "assoc"),
                         ("wmm", "wmm"), ("mfp", "mfp")):
            v = c.get(src)
            if type(v) is bool:
                s[key] = v
        for way in ("rx", "tx"):
            for key in ("packets", "bytes"):
                t = c.get(key)
                v = num(t.get(way)) if isinstance(t, dict) else None
                put(s, way + "_" + key, v if v is not None and v >= 0 else None)
            r = c.get("rate")
            rate = num(r.get(way)) if isinstance(r, dict) else None
            if rate is not None and rate > 0:
                s[way + "_bitrate"] = rate / 1000.0  # kbit/s -> Mbit/s
        out.append(s)
    return out


_IW_NUM = {"inactive time": "inactive_time", "rx bytes": "rx_bytes", "rx packets": "rx_packets",
           "tx bytes": "tx_bytes", "tx packets": "tx_packets", "tx retries": "tx_retries",
           "tx failed": "tx_failed", "connected time": "conn_time"}
_IW_BOOL = {"authorized": "authorized", "authenticated": "authenticated", "associated": "associated",
            "WMM/WME": "wmm", "MFP": "mfp", "TDLS peer": "tdls"}


def station_dump(data):
    """stations[] from `iw dev <dev> station dump` (field order varies by iw version)."""
    out = []
    cur = None
    for line in text_of(data).split("\n"):
        if line.startswith("Station "):
            mac = mac_upper(line.split()[1]) if len(line.split()) > 1 else None
            cur = {"mac": mac} if mac else None
            if cur:
                out.append(cur)
            continue
        if cur is None or ":" not in line:
            continue
        key, _, value = line.strip().partition(":")
        value = value.strip()
        f = value.split()
        if key in _IW_NUM and f:
            v = integer(f[0])
            put(cur, _IW_NUM[key], v if v is not None and v >= 0 else None)
        elif key in _IW_BOOL and f:
            if f[0] in ("yes", "no"):
                cur[_IW_BOOL[key]] = f[0] == "yes"
        elif key in ("signal", "signal avg") and f:
            put(cur, "signal" if key == "signal" else "signal_avg", dbm(integer(f[0])))
        elif key in ("tx bitrate", "rx bitrate"):
            _put_rate(cur, key[:2], f)
        elif key == "preamble" and f:
            cur["preamble"] = f[0]
        elif key == "expected throughput" and f:
            v = f[0]
            if v.endswith("Mbps"):
                put(cur, "expected_tput", decimal(v[:-4]))
    return out


_MCS = ("MCS", "VHT-MCS", "HE-MCS", "EHT-MCS")


def _put_rate(st, way, words):
    """A rate as iw or iwinfo prints it, split in words: "72.2 MBit/s MCS 7
    short GI" (iw) or "72.2 MBit/s, MCS 7, 20MHz, short GI" (iwinfo; HT/VHT
    rates carry commas) -> st["rx_bitrate"|"tx_bitrate"] in Mbit/s, and for
    "tx" st["mcs"], the TX MCS as the ubus source gives it."""
    w = [x.rstrip(",") for x in words]
    if len(w) >= 2 and w[1] == "MBit/s":
        put(st, way + "_bitrate", decimal(w[0]))
    if way == "tx":
        for i in range(len(w) - 1):
            if w[i] in _MCS:
                put(st, "mcs", integer(w[i + 1]))
                break


def assoclist_text(data):
    """stations[] from `iwinfo <dev> assoclist` text (fewer fields)."""
    out = []
    cur = None
    for line in text_of(data).split("\n"):
        if line and line[0] not in " \t":
            f = line.split()
            mac = mac_upper(f[0]) if f else None
            cur = {"mac": mac} if mac else None
            if cur is None:
                continue
            out.append(cur)
            if len(f) >= 3 and f[2] == "dBm":
                put(cur, "signal", dbm(integer(f[1])))
            if "ago" in f and f.index("ago") >= 2 and f[f.index("ago") - 1] == "ms":
                put(cur, "inactive_time", integer(f[f.index("ago") - 2]))
            continue
        if cur is None:
            continue
        f = line.split()
        if len(f) >= 3 and f[0] in ("RX:", "TX:"):
            way = f[0][:2].lower()
            _put_rate(cur, way, f[1:])
            if "Pkts." in f and f.index("Pkts.") >= 1:
                put(cur, way + "_packets", integer(f[f.index("Pkts.") - 1]))
        elif line.strip().startswith("expected throughput:") and len(f) >= 4 and f[3] == "MBit/s":
            put(cur, "expected_tput", decimal(f[2]))
    return out


def enrich(stations, iface, ssid, leases):
    """Add interface, ssid and the DHCP lease's ip/name to each station."""
    for s in stations:
        s["interface"] = iface
        if ssid:
            s["ssid"] = ssid
        lease = leases.get(s["mac"])
        if lease:
            s["ip"] = lease["ip"]
            if "name" in lease:
                s["name"] = lease["name"]
    return stations
