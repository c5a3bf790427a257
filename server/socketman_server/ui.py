"""The operator's dashboard: server-rendered pages; /live/... returns the
part of a page that changes, which static/live.js swaps in every 2 s. Each
route names the role it needs (guard.requires); each action goes to the
audit log. A form POST answers with a redirect, or with JSON for API token
clients (guard.wants_json)."""
import json
import time

from flask import Blueprint, Response, abort, current_app, jsonify, redirect, render_template, request, url_for

from .api import device_config
from .charts import line_chart, series_from_samples
from .fleet_queries import PAGE_SIZES, SORTS, STATES, active, describe, filter_args, parse_filter
from .guard import audit, current_operator, requires, wants_json
from .protocol import BadInput, normalize_mac, status_word

bp = Blueprint("ui", __name__)
JOB_TYPES = ("cmd", "network")


def _store():
    return current_app.config["STORE"]


def _settings():
    return current_app.config["SETTINGS"]


def _bridge():
    return current_app.config["BRIDGE"]


def _done(back, status=200, **data):
    """After a form POST: back to a page (303), or JSON for scripts."""
    if wants_json():
        resp = jsonify(data)
        resp.status_code = status
        return resp
    return redirect(back, 303)


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
    v["version"] = dev.get("version") or dev.get("agent_version")  # CONNECT's (PROTOCOL 10), else the stats'
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

def fleet_view(args):
    """The fleet page for a request's arguments (a filter of
    fleet_queries.parse_filter, `sort` of SORTS, `desc` 1, `page`, `size`
    of PAGE_SIZES): one page of devices, queried, sorted and cut by the
    database, and `link(**changes)`, the URL of this view with some
    arguments changed (page, sort...)."""
    s = _settings()
    f = parse_filter(args)
    sort = args.get("sort") if args.get("sort") in SORTS else "name"
    desc = args.get("desc") == "1"
    try:
        size = int(args.get("size") or 50)
    except ValueError:
        size = 50
    size = size if size in PAGE_SIZES else 50
    try:
        page = int(args.get("page") or 1)
    except ValueError:
        page = 1
    now = int(time.time())
    rows, total, page = _store().fleet_page(f, now, s.stale_after, sort, desc, page, size)
    up = _bridge().connected
    fargs = filter_args(f)
    here = dict(fargs, sort=sort, size=size, page=page)
    if desc:
        here["desc"] = "1"

    def link(endpoint="ui.fleet", **changes):
        a = dict(here, **changes)
        if not a.get("desc"):
            a.pop("desc", None)
        return url_for(endpoint, **a)
    pages = max(1, -(-total // size))
    return dict(devices=[device_view(d, now, up, s.stale_after) for d in rows], total=total, page=page, pages=pages,
                size=size, sort=sort, desc=desc, f=f, fargs=fargs, filtered=active(f), filter_text=describe(f),
                first=(page - 1) * size + 1 if total else 0, last=min(total, page * size), link=link, now=now,
                sizes=PAGE_SIZES, states=STATES)


def _counts():
    s = _settings()
    return _store().fleet_counts(int(time.time()), s.stale_after)


@bp.get("/")
@requires("viewer")
def fleet():
    return render_template("fleet.html", counts=_counts(), job_types=JOB_TYPES, recent=_store().fleet_jobs(limit=5),
                           **fleet_view(request.args))


@bp.get("/devices.json")
@requires("viewer")
def devices_json():
    """The fleet as JSON, for scripts: one object per device; the fleet
    page's filter arguments pick some (all by default), `sort`/`desc` order
    them, `limit` (at most 10000) and `page` cut them."""
    s = _settings()
    now = int(time.time())
    f = parse_filter(request.args)
    keys = ("mac", "name", "state", "last_seen", "model", "firmware", "version", "wan_ip", "stations", "status",
            "status_word", "admitted", "provisioned_at", "first_seen")
    up = _bridge().connected
    sort = request.args.get("sort") if request.args.get("sort") in SORTS else "name"
    try:
        limit = min(10000, max(1, int(request.args["limit"])))
        page = max(1, int(request.args.get("page") or 1))
    except (KeyError, ValueError):
        limit, page = None, 1
    if limit:
        rows, total, page = _store().fleet_page(f, now, s.stale_after, sort, request.args.get("desc") == "1", page,
                                                limit)
    else:
        rows = _store().fleet_devices(f, now, s.stale_after)
        total = len(rows)
    views = [device_view(d, now, up, s.stale_after) for d in rows]
    return {"broker": up, "total": total, "page": page, "filter": describe(f),
            "devices": [{k: v[k] for k in keys} for v in views]}


@bp.get("/live/fleet")
@requires("viewer")
def live_fleet():
    """The fleet page's list (its page of devices, the pager) for live.js."""
    return render_template("_fleet_list.html", **fleet_view(request.args))


@bp.get("/live/fleet/counts")
@requires("viewer")
def live_fleet_counts():
    return render_template("_fleet_counts.html", counts=_counts())


@bp.post("/fleet-jobs")
@requires("operator")
def fleet_job_new():
    """A fleet job: `command`, `type` (cmd | network), `target` all |
    selected (with `mac` repeated) | filter (with the fleet page's filter
    arguments: the devices it picks now)."""
    command = (request.form.get("command") or "").strip()
    job_type = request.form.get("type", "cmd")
    target = request.form.get("target", "all")
    if not command or job_type not in JOB_TYPES or target not in ("all", "selected", "filter"):
        abort(400, "a command, a type and a target are needed")
    what = target
    if target == "selected":
        chosen = set()
        for m in request.form.getlist("mac"):
            try:
                chosen.add(normalize_mac(m))
            except BadInput:
                pass
        devs = list(_store().devices_by_mac(chosen).values())
    elif target == "filter":
        f = parse_filter(request.form)
        devs = _store().fleet_devices(f, int(time.time()), _settings().stale_after)
        what = "filter (%s)" % describe(f)
    else:
        devs = _store().devices()
    if not devs:
        abort(400, "no device selected")
    fid, results = _send(devs, command, job_type, target)
    sent = sum(1 for r in results if r["state"] == "SENT")
    audit("fleet-job", "#%d" % fid, _outcome(sent, len(results)),
          "%s to %s (%d devices: %d sent): %s" % (job_type, what, len(results), sent, command))
    url = url_for("ui.fleet_job", fid=fid)
    return _done(url, 201, fleet_job=fid, url=url, jobs=results)


def _outcome(sent, total):
    return "sent" if sent == total else "not sent" if not sent else "partly sent"


def _send(devs, command, job_type, target):
    """One job per device, published now or NOT SENT with the reason.
    Returns (fleet job id, [{"mac", "job_id", "state", "reason"}])."""
    store, bridge = _store(), _bridge()
    op = current_operator()
    fid, made = store.create_jobs([d["id"] for d in devs], command, job_type, target, op.name if op else None)
    by_id = {d["id"]: d for d in devs}
    results, not_sent = [], []
    for job in made:
        try:
            why = bridge.send(job, by_id[job["device_id"]])
        except BadInput as e:
            why = str(e)
        if why:
            not_sent.append((job["id"], why))
        results.append({"mac": by_id[job["device_id"]]["mac"], "job_id": job["job_id"],
                        "state": "NOT SENT" if why else "SENT", "reason": why})
    if not_sent:
        store.jobs_not_sent(not_sent)
    return fid, results


@bp.get("/fleet-jobs")
@requires("viewer")
def fleet_jobs():
    return render_template("fleet_jobs.html", fleet_jobs=_store().fleet_jobs(limit=100))


def _fleet_job_context(fid):
    """A fleet job's page: the counts by state over all its devices, and
    one page of results (?state= only those, ?page=)."""
    state = request.args.get("state") or None
    try:
        page = int(request.args.get("page") or 1)
    except ValueError:
        page = 1
    f, summary, rows, page, pages = _store().fleet_job_page(fid, state, page)
    if f is None:
        abort(404)
    return dict(f=f, rows=rows, summary=summary, state=state, page=page, pages=pages,
                total=sum(summary.values()))


@bp.get("/fleet-jobs/<int:fid>")
@requires("viewer")
def fleet_job(fid):
    return render_template("fleet_job.html", **_fleet_job_context(fid))


@bp.get("/live/fleet-jobs/<int:fid>")
@requires("viewer")
def live_fleet_job(fid):
    return render_template("_fleet_job_rows.html", **_fleet_job_context(fid))


@bp.get("/fleet-jobs/<int:fid>.json")
@requires("viewer")
def fleet_job_json(fid):
    """A fleet job and each device's result, for scripts."""
    f, rows = _store().fleet_job(fid)
    if f is None:
        abort(404)
    keys = ("mac", "name", "job_id", "state", "reason", "success", "exit_code", "output", "delivered_at",
            "finished_at", "duration_ms", "via")
    return {"fleet_job": f, "summary": _summary(rows), "results": [{k: r[k] for k in keys} for r in rows]}


def _summary(rows):
    out = {}
    for r in rows:
        out[r["state"]] = out.get(r["state"], 0) + 1
    return out


# ---- one device ----------------------------------------------------------

@bp.get("/devices/<url_mac>")
@requires("viewer")
def device(url_mac):
    return render_template("device.html", **_device_context(url_mac))


@bp.get("/live/devices/<url_mac>")
@requires("viewer")
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
@requires("operator")
def device_job(url_mac):
    dev = _device_or_404(url_mac)
    command = (request.form.get("command") or "").strip()
    job_type = request.form.get("type", "cmd")
    if not command or job_type not in JOB_TYPES:
        abort(400, "a command and a type are needed")
    fid, (result,) = _send([dev], command, job_type, "one")
    audit("job", dev["mac"], _outcome(result["state"] == "SENT", 1),
          "%s: %s%s" % (job_type, command, "; " + result["reason"] if result["reason"] else ""))
    return _done(url_for("ui.device", url_mac=dev["mac"].replace(":", "-")), 201, fleet_job=fid, **result)


@bp.get("/devices/<url_mac>/config.json")
@requires("admin")
def device_config_file(url_mac):
    """The config this device gets from the init URL, for a device set up by
    hand. Admins only: it holds the device's token, the MQTT password and
    the job key. A GET changes nothing: a device that is not admitted yet is
    a 409 (admit it on Provisioning, a POST, first)."""
    dev = _device_or_404(url_mac)
    if not dev["token"]:
        abort(409, "this device is not admitted: admit it on the Provisioning page first")
    audit("device.config-file", dev["mac"], "ok", "its config.json (with its token and secrets) was downloaded")
    cfg = device_config(_settings(), dev, dev["mac_written"] or dev["mac"])
    return Response(json.dumps(cfg, indent=2) + "\n", mimetype="application/json",
                    headers={"Content-Disposition": 'attachment; filename="config.json"'})


# ---- provisioning --------------------------------------------------------

@bp.get("/provisioning")
@requires("viewer")
def provisioning():
    views, now = _views()
    s = _settings()
    return render_template("provisioning.html", devices=views, init_url=s.base_url() + "/api/init",
                           auto_admit=s.auto_admit, has_secret=bool(s.init_secret), error=None)


@bp.post("/provisioning")
@requires("admin")
def admit():
    mac = (request.form.get("mac") or "").strip()
    name = (request.form.get("name") or "").strip()
    config = request.form.get("config") or None
    try:
        was = _store().device(mac)
        dev = _store().admit(mac, name, config)
    except BadInput as e:
        audit("device.admit", mac[:40], "failed", str(e))
        if wants_json():
            abort(400, str(e))
        views, now = _views()
        s = _settings()
        return render_template("provisioning.html", devices=views, init_url=s.base_url() + "/api/init",
                               auto_admit=s.auto_admit, has_secret=bool(s.init_secret), error=str(e)), 400
    audit_admission(audit, was, dev, name, config)
    return _done(url_for("ui.provisioning"), 200, mac=dev["mac"], admitted=True)


def audit_admission(record, was, dev, name, config):
    """The audit records of an admission (Provisioning page or the command
    line): device.admit for a device that had no token, device.config when
    its own config keys were set (their names only: values may be secrets),
    device.rename for a new name. record: guard.audit or a wrapper of
    Store.audit with the same (action, target, outcome, detail)."""
    if was is None or not was["token"]:
        record("device.admit", dev["mac"], "ok", "name %r" % dev["name"] if dev["name"] else "")
    if config is not None:
        keys = sorted(json.loads(dev["config_json"] or "{}"))
        record("device.config", dev["mac"], "ok", "its own config keys: %s" % (", ".join(keys) or "none"))
    if was is not None and name and was["name"] != dev["name"]:
        record("device.rename", dev["mac"], "ok", "%r -> %r" % (was["name"], dev["name"]))


@bp.post("/devices/<url_mac>/forget")
@requires("admin")
def forget(url_mac):
    dev = _device_or_404(url_mac)
    _store().forget(dev["mac"])
    audit("device.forget", dev["mac"], "ok", "name %r; its token, stats, jobs and events are gone" % dev["name"])
    return _done(url_for("ui.provisioning"), 200, mac=dev["mac"], forgotten=True)


@bp.post("/devices/<url_mac>/name")
@requires("operator")
def rename(url_mac):
    dev = _device_or_404(url_mac)
    name = (request.form.get("name") or "").strip()
    _store().rename(dev["mac"], name)
    audit("device.rename", dev["mac"], "ok", "%r -> %r" % (dev["name"], name[:200]))
    return _done(url_for("ui.device", url_mac=dev["mac"].replace(":", "-")), 200, mac=dev["mac"], name=name[:200])
