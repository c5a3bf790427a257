"""The operator's dashboard: server-rendered pages; /live/... returns the
part of a page that changes, which static/live.js swaps in every 2 s."""
import hmac
import json
import time
from urllib.parse import urlsplit

from flask import Blueprint, Response, abort, current_app, redirect, render_template, request, url_for

from .api import device_config
from .charts import line_chart, series_from_samples
from .protocol import BadInput, status_word

bp = Blueprint("ui", __name__)
JOB_TYPES = ("cmd", "network")


def _store():
    return current_app.config["STORE"]


def _settings():
    return current_app.config["SETTINGS"]


def _bridge():
    return current_app.config["BRIDGE"]


@bp.before_request
def _guard():
    s = _settings()
    if s.ui_password:
        auth = request.authorization
        ok = auth is not None and auth.type == "basic" and auth.username == "admin" and \
            hmac.compare_digest((auth.password or "").encode(), s.ui_password.encode())
        if not ok:
            return Response("login needed\n", 401, {"WWW-Authenticate": 'Basic realm="socketman"'})
    if request.method == "POST":
        # A page elsewhere must not make an operator's browser send jobs:
        # browsers name the page a POST comes from in Origin.
        origin = request.headers.get("Origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.host:
            abort(403)


def device_view(dev, now, broker_up, stale_after):
    """A device row -> what the pages show. `state` is online / silent
    (online on the broker, nothing heard for stale_after s) / offline /
    never connected / unknown (this server has no broker connection, so
    it cannot know)."""
    v = dict(dev)
    if not broker_up:
        v["state"] = "unknown"
    elif dev["online"]:
        v["state"] = "online" if now - (dev["last_seen"] or 0) <= stale_after else "silent"
    elif dev["online"] is None:
        v["state"] = "never connected"
    else:
        v["state"] = "offline"
    v["status_word"] = status_word(dev["status"])
    v["url_mac"] = dev["mac"].replace(":", "-")
    v["admitted"] = bool(dev["token"])
    return v


def _views():
    s = _settings()
    now = int(time.time())
    up = _bridge().connected
    return [device_view(d, now, up, s.stale_after) for d in _store().devices()], now


def _device_or_404(url_mac):
    try:
        dev = _store().device(url_mac)
    except BadInput:
        dev = None
    if dev is None:
        abort(404)
    return dev


@bp.app_template_filter("ago")
def _ago(ts):
    if not ts:
        return "never"
    d = int(time.time()) - int(ts)
    if d < 0:
        d = 0
    if d < 90:
        return "%d s ago" % d
    if d < 5400:
        return "%d min ago" % (d // 60)
    if d < 172800:
        return "%.1f h ago" % (d / 3600)
    return "%d days ago" % (d // 86400)


@bp.app_template_filter("clock")
def _clock(ts):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else ""


@bp.app_context_processor
def _common():
    b = current_app.config["BRIDGE"]
    return {"broker_up": b.connected, "STATUS_HELP": "0 no route, 1 route only, 4/6 partly online, 9 online"}


# ---- fleet ---------------------------------------------------------------

@bp.get("/")
def fleet():
    views, now = _views()
    return render_template("fleet.html", devices=views, now=now, job_types=JOB_TYPES,
                           recent=_store().fleet_jobs(limit=5))


@bp.get("/devices.json")
def devices_json():
    """The fleet page as JSON, for scripts: one object per device."""
    views, now = _views()
    keys = ("mac", "name", "state", "last_seen", "model", "firmware", "wan_ip", "stations", "status",
            "status_word", "admitted", "provisioned_at", "first_seen")
    return {"broker": _bridge().connected, "devices": [{k: v[k] for k in keys} for v in views]}


@bp.get("/live/fleet")
def live_fleet():
    views, now = _views()
    return render_template("_fleet_rows.html", devices=views, now=now)


@bp.post("/fleet-jobs")
def fleet_job_new():
    command = (request.form.get("command") or "").strip()
    job_type = request.form.get("type", "cmd")
    target = request.form.get("target", "all")
    if not command or job_type not in JOB_TYPES or target not in ("all", "selected"):
        abort(400, "a command, a type and a target are needed")
    devs = _store().devices()
    if target == "selected":
        chosen = set(request.form.getlist("mac"))
        devs = [d for d in devs if d["mac"] in chosen]
    if not devs:
        abort(400, "no device selected")
    fid = _send(devs, command, job_type, target)
    return redirect(url_for("ui.fleet_job", fid=fid), 303)


def _send(devs, command, job_type, target):
    store, bridge = _store(), _bridge()
    fid, made = store.create_jobs([d["id"] for d in devs], command, job_type, target)
    by_id = {d["id"]: d for d in devs}
    for job in made:
        try:
            why = bridge.send(job, by_id[job["device_id"]])
        except BadInput as e:
            why = str(e)
        if why:
            store.job_not_sent(job["id"], why)
    return fid


@bp.get("/fleet-jobs")
def fleet_jobs():
    return render_template("fleet_jobs.html", fleet_jobs=_store().fleet_jobs(limit=100))


@bp.get("/fleet-jobs/<int:fid>")
def fleet_job(fid):
    f, rows = _store().fleet_job(fid)
    if f is None:
        abort(404)
    return render_template("fleet_job.html", f=f, rows=rows, summary=_summary(rows))


@bp.get("/live/fleet-jobs/<int:fid>")
def live_fleet_job(fid):
    f, rows = _store().fleet_job(fid)
    if f is None:
        abort(404)
    return render_template("_fleet_job_rows.html", f=f, rows=rows, summary=_summary(rows))


def _summary(rows):
    out = {}
    for r in rows:
        out[r["state"]] = out.get(r["state"], 0) + 1
    return out


# ---- one device ----------------------------------------------------------

@bp.get("/devices/<url_mac>")
def device(url_mac):
    return render_template("device.html", **_device_context(url_mac))


@bp.get("/live/devices/<url_mac>")
def live_device(url_mac):
    return render_template("_device_live.html", **_device_context(url_mac))


def _device_context(url_mac):
    s = _settings()
    dev = _device_or_404(url_mac)
    now = int(time.time())
    v = device_view(dev, now, _bridge().connected, s.stale_after)
    try:
        hours = min(48.0, max(0.1, float(request.args["hours"])))
    except (KeyError, ValueError):
        # By default the charts span the device's history: 10 min to 3 h.
        age = now - (dev["first_seen"] or now)
        hours = round(min(3.0, max(1 / 30, age * 1.2 / 3600)), 2)
    since = now - int(hours * 3600)
    ser = series_from_samples(_store().samples(dev["id"], since), min_dt=max(5, int(hours * 3600 / 150)))
    charts = [
        line_chart("Load", "1 min", [("load", ser["load"])], since, now),
        line_chart("Memory used", "MiB", [("used", ser["mem_used"])], since, now),
        line_chart("WAN traffic", "kbit/s", [("rx", ser["rx"]), ("tx", ser["tx"])], since, now),
        line_chart("Stations", "", [("stations", ser["stations"])], since, now),
    ]
    doc = json.loads(dev["last_doc"]) if dev["last_doc"] else {}
    return dict(d=v, doc=doc, charts=charts, hours=hours, jobs=_store().device_jobs(dev["id"]),
                events=_store().events(dev["id"]), job_types=JOB_TYPES)


@bp.post("/devices/<url_mac>/jobs")
def device_job(url_mac):
    dev = _device_or_404(url_mac)
    command = (request.form.get("command") or "").strip()
    job_type = request.form.get("type", "cmd")
    if not command or job_type not in JOB_TYPES:
        abort(400, "a command and a type are needed")
    _send([dev], command, job_type, "one")
    return redirect(url_for("ui.device", url_mac=dev["mac"].replace(":", "-")), 303)


@bp.get("/devices/<url_mac>/config.json")
def device_config_file(url_mac):
    """The config this device gets from the init URL, for a device set up by
    hand (admits the device if needed)."""
    dev = _device_or_404(url_mac)
    if not dev["token"]:
        dev = _store().admit(dev["mac"])
    cfg = device_config(_settings(), dev, dev["mac_written"] or dev["mac"])
    return Response(json.dumps(cfg, indent=2) + "\n", mimetype="application/json",
                    headers={"Content-Disposition": 'attachment; filename="config.json"'})


# ---- provisioning --------------------------------------------------------

@bp.get("/provisioning")
def provisioning():
    views, now = _views()
    s = _settings()
    return render_template("provisioning.html", devices=views, init_url=s.base_url() + "/api/init",
                           auto_admit=s.auto_admit, has_secret=bool(s.init_secret), error=None)


@bp.post("/provisioning")
def admit():
    mac = (request.form.get("mac") or "").strip()
    name = (request.form.get("name") or "").strip()
    try:
        _store().admit(mac, name, request.form.get("config") or None)
    except BadInput as e:
        views, now = _views()
        s = _settings()
        return render_template("provisioning.html", devices=views, init_url=s.base_url() + "/api/init",
                               auto_admit=s.auto_admit, has_secret=bool(s.init_secret), error=str(e)), 400
    return redirect(url_for("ui.provisioning"), 303)


@bp.post("/devices/<url_mac>/forget")
def forget(url_mac):
    dev = _device_or_404(url_mac)
    _store().forget(dev["mac"])
    return redirect(url_for("ui.provisioning"), 303)


@bp.post("/devices/<url_mac>/name")
def rename(url_mac):
    dev = _device_or_404(url_mac)
    _store().rename(dev["mac"], (request.form.get("name") or "").strip())
    return redirect(url_for("ui.device", url_mac=dev["mac"].replace(":", "-")), 303)
