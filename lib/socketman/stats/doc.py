# The stats document of PROTOCOL 7, from the parts the collectors found.
from .. import VERSION, events


def build(parts, mac, now, status=None, survey=None, dropped=0):
    dev = {"mac": mac, "smv": VERSION, "v": "4", "created_at": now}
    dev.update(parts.get("system", {}))
    dev.update(parts.get("wan", {}))
    if status is not None:
        dev["status"] = status
    doc = {"device": dev, "dhcp": parts.get("dhcp", [])}
    if "ssids" in parts:
        doc["ssids"] = parts["ssids"]
        doc["stations"] = parts["stations"]
        doc["survey"] = survey or []
        dev["connected"] = len(parts["stations"])
    if dropped:
        dev["dropped"] = dropped
    return doc


def line(doc):
    return events.dumps(doc) + b"\n"
