# System facts: `ubus call system board|info`, /proc/loadavg, /proc/meminfo,
# /proc/uptime, /etc/openwrt_release; the model also from /tmp/sysinfo/model,
# /etc/board.json or /proc/cpuinfo when ubus has none.
from .values import decimal, integer, load_json, num, put, string, text_of


def board(data):
    """{'firmware', 'machine_type'} from `ubus call system board`."""
    d = load_json(data)
    out = {}
    if d is None:
        return out
    put(out, "machine_type", _clean(string(d.get("model"))))
    rel = d.get("release")
    if isinstance(rel, dict):
        put(out, "firmware", _clean(string(rel.get("version"))))
    return out


def info(data):
    """uptime, load_1/5/15, total_ram, free_ram from `ubus call system info`."""
    d = load_json(data)
    out = {}
    if d is None:
        return out
    up = num(d.get("uptime"))
    put(out, "uptime", int(up) if up is not None and up >= 0 else None)
    load = d.get("load")
    if isinstance(load, list) and len(load) == 3 and all(num(x) is not None for x in load):
        # rpcd reports the kernel's fixed-point loads (x 65536).
        for key, v in zip(("load_1", "load_5", "load_15"), load):
            out[key] = round(v / 65536.0, 2)
    mem = d.get("memory")
    if isinstance(mem, dict):
        for key, src in (("total_ram", "total"), ("free_ram", "free")):
            v = num(mem.get(src))
            put(out, key, int(v) if v is not None and v >= 0 else None)
    return out


def loadavg(data):
    """load_1/5/15 and procs from /proc/loadavg ('2.79 1.23 0.85 3/119 1351')."""
    parts = text_of(data).split()
    out = {}
    if len(parts) >= 3:
        try:
            vals = [float(p) for p in parts[:3]]
            out["load_1"], out["load_5"], out["load_15"] = vals
        except ValueError:
            pass
    if len(parts) >= 4 and "/" in parts[3]:
        put(out, "procs", integer(parts[3].partition("/")[2]))
    return out


_MEM = {"MemTotal": "total_ram", "MemFree": "free_ram"}


def meminfo(data):
    """total_ram and free_ram in bytes from /proc/meminfo (kB)."""
    out = {}
    for line in text_of(data).split("\n"):
        key, _, rest = line.partition(":")
        name = _MEM.get(key)
        if name:
            f = rest.split()
            if f and f[-1] == "kB" and integer(f[0]) is not None:
                out[name] = integer(f[0]) * 1024
    return out


def uptime(data):
    """/proc/uptime (bytes) -> {"uptime": s} or {}."""
    parts = text_of(data).split()
    up = decimal(parts[0]) if parts else None
    return {"uptime": int(up)} if up is not None and up >= 0 else {}


def release(data):
    """firmware from /etc/openwrt_release (DISTRIB_RELEASE)."""
    for line in text_of(data).split("\n"):
        key, eq, value = line.partition("=")
        if eq and key.strip() == "DISTRIB_RELEASE":
            v = value.strip().strip("'\"")
            return {"firmware": v} if v else {}
    return {}


def model(data):
    """machine_type from /tmp/sysinfo/model (one line)."""
    v = _clean(text_of(data))
    return {"machine_type": v} if v else {}


def board_json(data):
    """machine_type from /etc/board.json (model.name)."""
    d = load_json(data)
    m = d.get("model") if d else None
    v = _clean(string(m.get("name"))) if isinstance(m, dict) else None
    return {"machine_type": v} if v else {}


def cpuinfo(data):
    """machine_type from the 'machine' line of a MIPS /proc/cpuinfo."""
    for line in text_of(data).split("\n"):
        key, sep, value = line.partition(":")
        if sep and key.strip() == "machine" and value.strip():
            return {"machine_type": value.strip()}
    return {}


def identity(read, board_data=None):
    """{'machine_type', 'firmware'} as the stats report them, from every
    source, weakest first (later ones overwrite): /etc/openwrt_release,
    /proc/cpuinfo, /etc/board.json, /tmp/sysinfo/model, then board_data
    (a parsed `ubus call system board`, board()). read(path, limit) gives
    a file's bytes or None. Also what provisioning sends (PROTOCOL 3)."""
    out = {}
    out.update(release(read("/etc/openwrt_release", 16384)))
    out.update(cpuinfo(read("/proc/cpuinfo", 16384)))
    out.update(board_json(read("/etc/board.json", 65536)))
    out.update(model(read("/tmp/sysinfo/model", 256)))
    out.update(board_data or {})
    return out


def _clean(s):
    return s.strip() if s and s.strip() else None
