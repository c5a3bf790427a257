"""The dashboard's side of tunnels (issue 22): on a device's page, "Open
tunnel" (the command an operator runs to open one: `socketman-server ssh`
as OpenSSH's ProxyCommand, or `socketman-server forward` for a web
interface), the live list of its tunnels with their bytes, and "Close".
The tunnels themselves are opened and relayed by tunnels.py; this reads
and writes their rows (tunnel_records.py), so it works whichever server
process relays them.

    GET  /live/devices/<mac>/tunnels            viewer: the list (HTML, polled by live.js)
    GET  /devices/<mac>/tunnels.json            viewer: the same for scripts (a device name works too)
    POST /devices/<mac>/tunnels/<id>/close      operator: both sides are closed within ~1 s
"""
import json
import time

from flask import Blueprint, abort, current_app, jsonify, redirect, render_template, request, url_for

from .guard import audit, current_operator, requires, wants_json
from .protocol import BadInput
from .tunnel_wire import find_device, parse_port

bp = Blueprint("tunnels", __name__)
FIELDS = ("tunnel_id", "port", "operator", "via", "state", "opened_at", "connected_at", "closed_at",
          "bytes_to_device", "bytes_from_device", "outcome", "detail", "job_id")


def _store():
    return current_app.config["STORE"]


def _device_or_404(ref):
    """The device a URL names by MAC (any form) or name; 404 (none) or 409
    (a name several devices have) otherwise, as the tunnel's handshake
    answers (`socketman-server forward` asks tunnels.json before it listens)."""
    dev, status, why = find_device(_store(), ref)
    if dev is None:
        abort(status, why)
    return dev


@bp.app_template_filter("size")
def _size(n):
    """Bytes in words: 980 B, 12.3 KiB, 4.5 MiB."""
    n = int(n or 0)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return ("%d %s" % (n, unit)) if unit == "B" else ("%.1f %s" % (n, unit))
        n /= 1024.0


@bp.app_template_global()
def device_tunnels(device_id):
    """(open tunnels, recently closed ones) of a device, for its page."""
    return _store().device_tunnels(device_id)


@bp.app_template_global()
def tunnel_command(d, args):
    """What an operator runs for a tunnel to device view `d` on the port the
    "Open tunnel" form asked for (args: the request's query), or None when
    it asked for none. A dict: port, lines (shell lines to copy), open (a
    local URL to open after `forward`), allowed (the device's tunnel_ports
    as this server configures it, None when it does not say), error."""
    raw = (args.get("tunnel_other") or "").strip() or (args.get("tunnel_port") or "").strip()
    if not raw:
        return None
    try:
        port = parse_port(raw)
    except BadInput as e:
        return {"error": str(e)}
    name = d["mac"].lower().replace(":", "-")   # scp reads a ':' as the start of a path
    server = request.host_url.rstrip("/")
    lines = ["export SOCKETMAN_SERVER=%s" % server]
    opened = None
    if port == 22:
        lines += ["ssh -o ProxyCommand='socketman-server ssh %%h' root@%s" % name,
                  "scp -O -o ProxyCommand='socketman-server ssh %%h' FILE root@%s:/tmp/" % name]
    else:
        local = {80: 8080, 443: 8443}.get(port, port + 10000 if port < 55536 else 18080)
        lines.append("socketman-server forward %s %d --listen 127.0.0.1:%d" % (name, port, local))
        opened = "%s://127.0.0.1:%d/" % ("https" if port == 443 else "http", local)
    return {"port": port, "lines": lines, "open": opened, "allowed": _allowed_ports(d), "error": None}


def _allowed_ports(d):
    """tunnel_ports in the config this server hands the device (its own
    keys over the fleet template), or None when neither sets it."""
    cfg = dict(current_app.config["SETTINGS"].device_config)
    try:
        cfg.update(json.loads(d.get("config_json") or "{}"))
    except ValueError:
        pass
    ports = cfg.get("tunnel_ports")
    return ports if isinstance(ports, list) else None


@bp.get("/live/devices/<url_mac>/tunnels")
@requires("viewer")
def live_tunnels(url_mac):
    dev = _device_or_404(url_mac)
    return render_template("_device_tunnels.html", d={"id": dev["id"], "url_mac": dev["mac"].replace(":", "-")},
                           now=int(time.time()))


@bp.get("/devices/<path:url_mac>/tunnels.json")  # path: a device name may hold "/"
@requires("viewer")
def tunnels_json(url_mac):
    """A device's open tunnels and the last closed ones, for scripts, and
    whether the caller may open one (its role)."""
    dev = _device_or_404(url_mac)
    live, done = _store().device_tunnels(dev["id"], closed_limit=20)
    return {"mac": dev["mac"], "can_open": current_operator().can("operator"),
            "open": [{k: t[k] for k in FIELDS} for t in live],
            "closed": [{k: t[k] for k in FIELDS} for t in done]}


@bp.post("/devices/<url_mac>/tunnels/<tunnel_id>/close")
@requires("operator")
def close(url_mac, tunnel_id):
    """Close a tunnel, both sides: the process relaying it sees the request
    at its next tick (about a second) and records tunnel.close."""
    dev = _device_or_404(url_mac)
    t = _store().tunnel_request_close(tunnel_id[:64], dev["id"], current_operator().name)
    if t is None:
        abort(404, "no open tunnel %s on this device" % tunnel_id[:64])
    audit("tunnel.close", dev["mac"], "requested", "tunnel %s, port %d, opened by %s" % (
        t["tunnel_id"], t["port"], t["operator"]))
    back = url_for("ui.device", url_mac=dev["mac"].replace(":", "-")) + "#tunnels"
    if wants_json():
        return jsonify(tunnel=t["tunnel_id"], close_requested=True)
    return redirect(back, 303)
