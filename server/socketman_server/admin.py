"""Operators' pages: log in and out (/login, /logout), one's own account
(/account: password, API tokens), the admins' page of operators and every
API token (/operators), and the audit log (/audit, /audit.json), which no
route can change."""
import time
from urllib.parse import urlsplit

from flask import Blueprint, current_app, redirect, render_template, request, session, url_for

from . import auth
from .guard import audit, client_address, current_operator, public, requires, wants_json
from .protocol import BadInput

bp = Blueprint("admin", __name__)
AUDIT_PAGE = 100
NOBODY = "(nobody)"


def _store():
    return current_app.config["STORE"]


def _settings():
    return current_app.config["SETTINGS"]


def _safe_next(target):
    """Only a path of this server after login: never another site (an open
    redirect would make our login page a phishing relay)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("ui.fleet")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return url_for("ui.fleet")
    return target


# ---- login, logout ------------------------------------------------------------

@bp.route("/login", methods=["GET", "POST"])
@public
def login():
    store = _store()
    next_url = _safe_next(request.values.get("next"))
    if request.method == "GET":
        if current_operator():
            return redirect(next_url, 303)
        return render_template("login.html", next=next_url, error=None, name="",
                               no_operator=not store.has_operators())
    name = (request.form.get("name") or "").strip()
    op, outcome, wait = auth.login(store, name, request.form.get("password") or "", client_address())
    if op is None:
        if outcome == "throttled":
            msg = "Too many failed logins: try again in %d s." % wait
            status, headers = 429, {"Retry-After": str(wait)}
        else:
            msg, status, headers = "Wrong name or password.", 401, {}
        if wants_json():
            return {"error": msg}, status, headers
        return render_template("login.html", next=next_url, error=msg, name=name[:64],
                               no_operator=False), status, headers
    # A new session, and a new cookie (with a new CSRF token) for it.
    old = session.get("sid")
    if old:
        store.end_session(old)
    session.clear()
    session["sid"] = store.create_session(op.id, _settings().session_s, client_address(),
                                          request.headers.get("User-Agent", ""))
    return redirect(next_url, 303)


@bp.post("/logout")
@requires("viewer")
def logout():
    sid = session.get("sid")
    if sid:
        _store().end_session(sid)
    audit("logout", current_operator().name, "ok")
    session.clear()
    return redirect(url_for("admin.login"), 303)


# ---- one's own account --------------------------------------------------------

@bp.get("/account")
@requires("viewer")
def account():
    return _account_page()


def _account_page(error=None, new_token=None, status=200):
    me = current_operator()
    return render_template("account.html", op=_store().operator(me.name), tokens=_store().tokens(me.name),
                           roles=[r for r in auth.ROLES if me.can(r)], error=error, new_token=new_token), status


@bp.post("/account/password")
@requires("viewer")
def account_password():
    me = current_operator()
    store = _store()
    if me.via != "password":
        return _account_page("A password is changed after logging in with it, not with an API token.", status=403)
    row = store.operator_row(me.name)
    if not auth.verify_password(row["password_hash"], request.form.get("current") or ""):
        audit("operator.password", me.name, "failed", "the current password was wrong")
        return _account_page("The current password is wrong.", status=400)
    new = request.form.get("new") or ""
    if new != (request.form.get("again") or ""):
        return _account_page("The two new passwords differ.", status=400)
    try:
        store.set_password(me.name, new, keep_sid=session.get("sid"))
    except BadInput as e:
        return _account_page(str(e), status=400)
    audit("operator.password", me.name, "ok", "changed their own password; their other sessions ended")
    return redirect(url_for("admin.account"), 303)


@bp.post("/account/tokens")
@requires("viewer")
def token_new():
    me = current_operator()
    try:
        token, row = _store().add_token(me.name, request.form.get("name"), request.form.get("role") or me.role)
    except BadInput as e:
        if wants_json():
            return {"error": str(e)}, 400
        return _account_page(str(e), status=400)
    audit("token.add", "%s/%s" % (me.name, row["name"]), "ok", "role %s, id %d" % (row["role"], row["id"]))
    if wants_json():
        return {"token": token, "id": row["id"], "name": row["name"], "role": row["role"]}, 201
    return _account_page(new_token=(row, token))


@bp.post("/account/tokens/<int:tid>/revoke")
@requires("viewer")
def token_revoke(tid):
    me = current_operator()
    return _revoke(tid, me.name, url_for("admin.account"))


def _revoke(tid, owner, back):
    t = _store().revoke_token(tid, owner)
    if t is None:
        return ({"error": "no such live token"}, 404) if wants_json() else (
            render_template("error.html", status=404, message="No such live token."), 404)
    audit("token.revoke", "%s/%s" % (t["operator"], t["name"]), "ok", "id %d" % t["id"])
    return ({"revoked": tid}, 200) if wants_json() else redirect(back, 303)


# ---- operators (admins) -------------------------------------------------------

@bp.get("/operators")
@requires("admin")
def operators():
    return _operators_page()


def _operators_page(error=None, generated=None, status=200):
    return render_template("operators.html", operators=_store().operators(), tokens=_store().tokens(),
                           roles=auth.ROLES, error=error, generated=generated), status


@bp.post("/operators")
@requires("admin")
def operator_new():
    name, role = (request.form.get("name") or "").strip(), request.form.get("role") or ""
    password = request.form.get("password") or ""
    generated = None
    if not password:
        password = generated = auth.new_password()
    try:
        op = _store().add_operator(name, role, password)
    except BadInput as e:
        audit("operator.add", name[:64], "failed", str(e))
        return _operators_page(str(e), status=400)
    audit("operator.add", op["name"], "ok", "role %s" % op["role"])
    if generated:
        # Shown once, on this page only; never logged or stored in clear.
        return _operators_page(generated=(op["name"], generated))
    return redirect(url_for("admin.operators"), 303)


@bp.post("/operators/<name>")
@requires("admin")
def operator_change(name):
    """One of: role=ROLE, password=new (a generated one is shown once),
    end_sessions, remove."""
    store = _store()
    what = request.form.get("do")
    generated = None
    try:
        if what == "role":
            role = request.form.get("role") or ""
            store.set_role(name, role)
            audit("operator.role", name, "ok", "now %s" % role)
        elif what == "password":
            generated = auth.new_password()
            store.set_password(name, generated)
            audit("operator.password", name, "ok", "a new password was generated; their sessions ended")
        elif what == "end-sessions":
            n = store.end_sessions(name)
            audit("operator.logout", name, "ok", "%d sessions ended" % n)
        elif what == "remove":
            store.remove_operator(name)
            audit("operator.remove", name, "ok", "with their sessions and API tokens")
        else:
            return _operators_page("Nothing to do.", status=400)
    except BadInput as e:
        audit("operator." + (what or "change")[:20], name[:64], "failed", str(e))
        return _operators_page(str(e), status=400)
    if generated:
        return _operators_page(generated=(name, generated))
    return redirect(url_for("admin.operators"), 303)


@bp.post("/operators/tokens/<int:tid>/revoke")
@requires("admin")
def any_token_revoke(tid):
    return _revoke(tid, None, url_for("admin.operators"))


# ---- the audit log (read only) ------------------------------------------------

def _audit_filters():
    a = request.args
    f = {k: (a.get(k) or "").strip() or None for k in ("operator", "action", "target", "outcome")}
    if f["operator"] == NOBODY:
        f["operator"] = ""  # records of nobody logged in: failed logins
    try:
        hours = float(a.get("hours") or 0)
    except ValueError:
        hours = 0
    f["since"] = int(time.time() - hours * 3600) if hours > 0 else None
    try:
        f["before_id"] = int(a["before"]) if a.get("before") else None
    except ValueError:
        f["before_id"] = None
    return f, hours


@bp.get("/audit")
@requires("viewer")
def audit_page():
    f, hours = _audit_filters()
    rows = _store().audit_log(limit=AUDIT_PAGE, **f)
    ops, actions, outcomes = _store().audit_facets()
    args = {k: v for k, v in request.args.items() if k != "before"}
    older = url_for("admin.audit_page", before=rows[-1]["id"], **args) if len(rows) == AUDIT_PAGE else None
    return render_template("audit.html", rows=rows, f=f, hours=hours, ops=ops, actions=actions, outcomes=outcomes,
                           older=older, nobody=NOBODY, keep_days=_store().audit_retention_s // 86400)


@bp.get("/audit.json")
@requires("viewer")
def audit_json():
    """The audit log for scripts: the page's filters, ?limit= (at most 1000)
    and ?before=ID for the next page."""
    f, _ = _audit_filters()
    try:
        limit = int(request.args.get("limit") or AUDIT_PAGE)
    except ValueError:
        limit = AUDIT_PAGE
    return {"audit": _store().audit_log(limit=limit, **f)}


@bp.get("/whoami.json")
@requires("viewer")
def whoami():
    """Who the request's credentials stand for: {"name", "role", "via"}."""
    me = current_operator()
    return {"name": me.name, "role": me.role, "via": me.via}
