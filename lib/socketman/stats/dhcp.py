# DHCP leases from the dnsmasq lease file: `expiry mac ip name client-id`.
from .values import text_of


def leases(data):
    """[{'mac', 'ip', 'name'?}]: duid and IPv6 lines skipped, '*' = no name."""
    out = []
    for line in text_of(data).split("\n"):
        f = line.split()
        if len(f) < 4 or f[0] == "duid" or not f[0].isdigit():
            continue
        mac, ip, name = f[1], f[2], f[3]
        if ":" in ip or ip.count(".") != 3:
            continue  # a DHCPv6 lease: iaid, address, name, duid
        e = {"mac": mac, "ip": ip}
        if name != "*":
            e["name"] = name
        out.append(e)
    return out


def by_mac(entries):
    """Lease entries keyed by upper-case MAC, for station enrichment."""
    return {e["mac"].upper(): e for e in entries}
