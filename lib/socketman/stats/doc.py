# The stats document of PROTOCOL 7, from the parts the collectors found.
from .. import VERSION, events


def build(parts, mac, now, status=None, survey=None, dropped=0, seq=None, rejected=0):
    """The stats document of PROTOCOL 7 as a dict: parts from
    collect.Collector.poll, mac (str), now (unix s), status (monitor.NO_ROUTE
    ..., None: left out), survey (list of neighbour dicts), dropped (lines
    the spool dropped since the last report), seq (documents since start),
    rejected (lines the server refused since the last report, PROTOCOL 5)."""
    dev = {"mac": mac, "smv": VERSION, "v": "4", "created_at": now}
    if seq is not None:
        dev["seq"] = seq  # not in the original format: lets a server see gaps and repeats
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
    if rejected:
        dev["rejected"] = rejected
    return doc


def line(doc):
    """The document as one spool line: compact JSON bytes ending in "\n"."""
    return events.dumps(doc) + b"\n"
