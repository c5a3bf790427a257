# WAN: `ubus call network.interface.wan status`, else the default route in
# /proc/net/route; counters from /proc/net/dev.
from .values import integer, load_json, put, string, text_of


def status(data):
    """wan_name, wan_ip, wan_gateway from the netifd interface status."""
    d = load_json(data)
    out = {}
    if d is None or d.get("up") is False:
        return out
    put(out, "wan_name", string(d.get("l3_device")) or string(d.get("device")))
    addrs = d.get("ipv4-address")
    if isinstance(addrs, list):
        for a in addrs:
            if isinstance(a, dict) and string(a.get("address")):
                out["wan_ip"] = a["address"]
                break
    routes = d.get("route")
    if isinstance(routes, list):
        for r in routes:
            if isinstance(r, dict) and r.get("target") == "0.0.0.0" and r.get("mask") == 0:
                put(out, "wan_gateway", string(r.get("nexthop")))
                break
    return out


def _hex_ip(h):
    """'0102A8C0' (little-endian hex, as /proc/net/route prints it) -> '192.168.2.1'."""
    if len(h) != 8:
        return None
    try:
        b = [int(h[i:i + 2], 16) for i in (6, 4, 2, 0)]
    except ValueError:
        return None
    return "%d.%d.%d.%d" % tuple(b)


def default_route(data):
    """(interface, gateway) of the default route with the lowest metric, or None."""
    best = None
    for line in text_of(data).split("\n")[1:]:
        f = line.split()
        if len(f) < 8 or f[1] != "00000000" or f[7] != "00000000":
            continue
        try:
            flags = int(f[3], 16)
        except ValueError:
            continue
        if not flags & 1:  # RTF_UP
            continue
        metric = integer(f[6]) or 0
        if best is None or metric < best[0]:
            best = (metric, f[0], _hex_ip(f[2]))
    return (best[1], best[2]) if best else None


def route(data):
    """/proc/net/route (bytes) -> {"wan_name", "wan_gateway"} of the default route."""
    r = default_route(data)
    out = {}
    if r:
        out["wan_name"] = r[0]
        if r[1] and r[1] != "0.0.0.0":
            out["wan_gateway"] = r[1]
    return out


def net_dev(data):
    """{iface: (rx_bytes, tx_bytes)} from /proc/net/dev. A long name can run
    into the first number ('ip6tnl0:0'), so split on the colon."""
    out = {}
    for line in text_of(data).split("\n")[2:]:
        name, sep, rest = line.partition(":")
        f = rest.split()
        if not sep or len(f) < 9:
            continue
        rx, tx = integer(f[0]), integer(f[8])
        if rx is not None and tx is not None:
            out[name.strip()] = (rx, tx)
    return out


def counters(dev_data, iface):
    """/proc/net/dev (bytes) and the WAN interface -> {"rx_bytes", "tx_bytes"}
    or {}: what net_dev() has for iface, parsing only iface's line (a router
    lists dozens of interfaces, and this runs every cycle)."""
    out = {}
    if not iface or not dev_data:
        return out
    for line in text_of(dev_data).split("\n")[2:]:
        name, sep, rest = line.partition(":")
        if not sep or name.strip() != iface:
            continue
        f = rest.split()
        rx, tx = (integer(f[0]), integer(f[8])) if len(f) >= 9 else (None, None)
        if rx is not None and tx is not None:
            out = {"rx_bytes": rx, "tx_bytes": tx}
    return out
