"""Releases and rollouts on the dashboard (issue 23): /releases (list,
upload), /rollouts (list, start), /rollouts/<n> (the per-device table,
live; pause, resume, abort), their .json for scripts, and the download
devices use: /api/releases/socketman-<version>.tar.gz (no login: the
archive is the agent's code, and its SHA-256 is in the signed job). Seeing
is for viewers; uploading and everything a rollout does is for admins,
and goes to the audit log."""
import os
import time

from flask import Blueprint, abort, current_app, jsonify, render_template, request, send_file, url_for

from . import releases as rel
from . import rollouts as ro
from .fleet_queries import active, describe, filter_args, parse_filter
from .guard import audit, current_operator, public, requires, wants_json
from .protocol import BadInput
from .ui import _counts, _done, _views

LISTED_MAX = 200   # devices listed with a box to tick on the rollout form; past that, a fleet page filter
PAGE = 100         # devices of a rollout on its page at a time

bp = Blueprint("rollouts", __name__)
UPLOAD_SLACK = 64 * 1024   # a multipart body is a little more than the file it carries


def _store():
    return current_app.config["STORE"]


def _settings():
    return current_app.config["SETTINGS"]


def release_files(settings):
    return rel.ReleaseFiles(settings.data_folder())


@bp.url_value_preprocessor
def _upload_limit(endpoint, values):
    # Runs before the guard reads the form (CSRF): an upload may be bigger
    # than the other requests' --max-body.
    if endpoint == "rollouts.release_add":
        request.max_content_length = _settings().release_max_bytes + UPLOAD_SLACK


# ---- what devices download ------------------------------------------------------------

@bp.get("/api/releases/<name>")
@public
def download(name):
    """The archive of a release (`socketman-<version>.tar.gz`), or its
    `.sha256` in sha256sum's format. 404 (JSON) for anything else."""
    sha_file = name.endswith(".sha256")
    m = rel.FILE_NAME_RE.match(name[:-7] if sha_file else name)
    r = _store().release(m.group(1)) if m else None
    if r is None:
        return jsonify(error="no such release"), 404
    if sha_file:
        return current_app.response_class("%s  socketman-%s.tar.gz\n" % (r["sha256"], r["version"]),
                                          mimetype="text/plain")
    try:
        path = release_files(_settings()).path(r["sha256"])
    except BadInput as e:
        return jsonify(error=str(e)), 404
    if not os.path.isfile(path):
        current_app.logger.error("release %s: its archive %s is missing", r["version"], path)
        return jsonify(error="the archive of release %s is missing on this server" % r["version"]), 404
    resp = send_file(path, mimetype="application/gzip", as_attachment=True,
                     download_name="socketman-%s.tar.gz" % r["version"], etag=r["sha256"], conditional=True)
    return resp


# ---- releases ----------------------------------------------------------------------------

def release_view(r, base_url):
    keys = ("version", "sha256", "size", "form", "files", "filename", "uploaded_by", "uploaded_at")
    v = {k: r[k] for k in keys}
    v["url"] = "%s/api/releases/socketman-%s.tar.gz" % (base_url, r["version"])
    v["rollouts"] = r.get("rollouts", 0)
    return v


@bp.get("/releases")
@requires("viewer")
def releases_page(error=None, status=200):
    s = _settings()
    rows = [release_view(r, s.base_url()) for r in _store().releases()]
    return render_template("releases.html", releases=rows, error=error, data_dir=s.data_folder(),
                           max_bytes=s.release_max_bytes), status


@bp.get("/releases.json")
@requires("viewer")
def releases_json():
    s = _settings()
    return {"releases": [release_view(r, s.base_url()) for r in _store().releases()]}


@bp.post("/releases")
@requires("admin")
def release_add():
    """Upload an update archive: multipart part `archive`."""
    f = request.files.get("archive")
    if f is None or not f.filename:
        return _refused("release.add", "", "no archive in the upload (a multipart part named archive)")
    s = _settings()
    name = os.path.basename(f.filename)[:200]
    try:
        r = rel.add(_store(), release_files(s), f.stream, name, current_operator().name, s.release_max_bytes)
    except BadInput as e:
        return _refused("release.add", name, str(e))
    audit("release.add", r["version"], "ok", "%s: %d bytes, %s, sha256 %s" % (name, r["size"], r["form"],
                                                                              r["sha256"]))
    return _done(url_for("rollouts.releases_page"), 201, release=release_view(r, s.base_url()))


def _refused(action, target, why):
    audit(action, target, "failed", why)
    if wants_json():
        return jsonify(error=why), 400
    if action == "release.add":
        return releases_page(error=why, status=400)
    return rollouts_page(error=why, status=400)


# ---- rollouts ----------------------------------------------------------------------------

@bp.get("/rollouts")
@requires("viewer")
def rollouts_page(error=None, status=200):
    """The rollouts, and the form. `?target=filter` with the fleet page's
    filter arguments preselects "the devices of this filter". At most
    LISTED_MAX devices are listed to tick (a thousand boxes are no way to
    choose; the fleet page's filters are)."""
    form = request.form if request.method == "POST" else request.args
    f = parse_filter(form)
    counts = _counts()
    views = []
    if counts["total"] <= LISTED_MAX:
        views, now = _views()
    picked = None
    if active(f):
        s = _settings()
        picked = len(_store().fleet_devices(f, int(time.time()), s.stale_after))
    return render_template("rollouts.html", rollouts=_store().rollouts(), releases=_store().releases(),
                           devices=views, listed_max=LISTED_MAX, versions=[v for v, _ in counts["versions"]],
                           fleet_total=counts["total"], defaults=ro.DEFAULTS, error=error, form=form,
                           target=form.get("target") or ("filter" if active(f) else "all"),
                           fargs=filter_args(f), filter_text=describe(f), picked=picked), status


@bp.get("/rollouts.json")
@requires("viewer")
def rollouts_json():
    return {"rollouts": [_rollout_json(r) for r in _store().rollouts()]}


def _rollout_json(r):
    keys = ("id", "version", "sha256", "state", "reason", "target", "created_by", "created_at", "wave", "waves",
            "allowed", "wave_spec", "threshold_spec", "trial_s", "margin_s", "offline_wait_s", "finished_at",
            "counts")
    return {k: r[k] for k in keys if k in r}


@bp.post("/rollouts")
@requires("admin")
def rollout_start():
    """Start a rollout: release (a version), target all|selected|version|
    filter, mac (repeated, for selected), version (for version), the fleet
    page's filter arguments (for filter: the devices it picks now), waves,
    threshold, trial, margin, offline_wait."""
    f = request.form
    store = _store()
    release = store.release((f.get("release") or "").strip())
    if release is None:
        return _refused("rollout.start", "", "no such release: %r" % (f.get("release") or "")[:60])
    try:
        if not release_files(_settings()).exists(release["sha256"]):
            raise BadInput("the archive of release %s is missing from %s: devices could not download it" % (
                release["version"], release_files(_settings()).dir))
        settings = ro.settings_from(f)
        target = f.get("target", "all")
        if target == "filter":
            # The fleet page's filter, as it picks devices now: a list of MACs.
            fl = parse_filter(f)
            if not active(fl):
                raise BadInput("target filter: no filter given (use target all)")
            macs = [d["mac"] for d in store.fleet_devices(fl, int(time.time()), _settings().stale_after)]
            devs = ro.select_devices(store, "selected", macs)
            text = "filter: %s (%d devices)" % (describe(fl), len(devs))
        else:
            devs = ro.select_devices(store, target, f.getlist("mac"), f.get("version"))
            text = _target_text(target, f)
        rid, left_out = ro.start(store, release, devs, settings, text, current_operator().name)
    except BadInput as e:
        return _refused("rollout.start", release["version"], str(e))
    r = store.rollout(rid)
    audit("rollout.start", "#%d" % rid, "ok", "%s to %s: %d devices in waves %s (threshold %s, trial %d s + %d s, "
          "offline wait %d s)%s" % (release["version"], r["target"], sum(r["waves"]), r["waves"], r["allowed"],
                                   r["trial_s"], r["margin_s"], r["offline_wait_s"],
                                   "; %d already on it left out" % left_out if left_out else ""))
    url = url_for("rollouts.rollout_page", rid=rid)
    return _done(url, 201, rollout=_rollout_json(r), url=url, left_out=left_out)


def _target_text(target, f):
    if target == "version":
        return "devices on %s" % (f.get("version") or "").strip()[:60]
    if target == "selected":
        return "%d selected devices" % len(set(f.getlist("mac")))
    return "all devices"


def _rollout_or_404(rid):
    r = _store().rollout(rid)
    if r is None:
        abort(404)
    return r


def _context(rid, paged=True):
    """A rollout's page: its counts by state and by wave over all its
    devices, and (paged) one page of PAGE devices (?state= only those,
    ?page=), so the live refresh of a rollout to a thousand devices stays
    small."""
    r = _rollout_or_404(rid)
    rows = _store().rollout_devices(rid)
    summary = {}
    for d in rows:
        summary[d["state"]] = summary.get(d["state"], 0) + 1
    per_wave = []
    for w, size in enumerate(r["waves"], 1):
        ds = [d for d in rows if d["wave"] == w]
        per_wave.append({"wave": w, "size": size, "allowed": r["allowed"][w - 1],
                         "failed": sum(1 for d in ds if d["state"] in ro.FAILED),
                         "updated": sum(1 for d in ds if d["state"] == "updated")})
    state = request.args.get("state") or None
    try:
        page = int(request.args.get("page") or 1)
    except ValueError:
        page = 1
    shown = [d for d in rows if d["state"] == state] if state else rows
    pages = max(1, -(-len(shown) // PAGE))
    page = min(max(1, page), pages)
    if paged:
        shown = shown[(page - 1) * PAGE:page * PAGE]
    return dict(r=r, rows=shown, all_rows=rows, summary=summary, per_wave=per_wave, state=state, page=page,
                pages=pages)


@bp.get("/rollouts/<int:rid>")
@requires("viewer")
def rollout_page(rid):
    return render_template("rollout.html", **_context(rid))


@bp.get("/live/rollouts/<int:rid>")
@requires("viewer")
def live_rollout(rid):
    return render_template("_rollout_live.html", **_context(rid))


@bp.get("/rollouts/<int:rid>.json")
@requires("viewer")
def rollout_json(rid):
    c = _context(rid, paged=False)
    keys = ("mac", "name", "wave", "state", "reason", "old_version", "new_version", "job_id", "job_state",
            "sent_at", "finished_at")
    return {"rollout": _rollout_json(c["r"]), "summary": c["summary"], "waves": c["per_wave"],
            "devices": [{k: d[k] for k in keys} for d in c["rows"]]}


@bp.post("/rollouts/<int:rid>/<any(pause, resume, abort):action>")
@requires("admin")
def rollout_action(rid, action):
    r = _rollout_or_404(rid)
    who = current_operator().name
    if action == "pause":
        ok = ro.pause(_store(), rid)
    elif action == "resume":
        ok = ro.resume(_store(), rid)
    else:
        ok = ro.abort(_store(), rid, "aborted by %s" % who)
    if not ok:
        audit("rollout." + action, "#%d" % rid, "failed", "it is %s" % r["state"])
        msg = "rollout #%d is %s: it cannot be %s" % (rid, r["state"], {"pause": "paused", "resume": "resumed",
                                                                         "abort": "aborted"}[action])
        if wants_json():
            return jsonify(error=msg), 409
        return render_template("error.html", status=409, message=msg), 409
    audit("rollout." + action, "#%d" % rid, "ok", "%s at wave %d of %d (%s)" % (r["version"], r["wave"],
                                                                                len(r["waves"]), r["state"]))
    return _done(url_for("rollouts.rollout_page", rid=rid), 200, rollout=_rollout_json(_store().rollout(rid)))

