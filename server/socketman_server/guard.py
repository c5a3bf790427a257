"""The dashboard's door, on the Flask side: who is asking (an API token in
`Authorization: Bearer`, else the session cookie; auth.py does the checks),
whether their role may use the route (@requires), CSRF tokens on every
state-changing request made with the cookie (Flask-WTF's CSRFProtect) with
the Origin check as a second net, security headers on every response, and
audit() for the request's operator. The device API (/api, PROTOCOL 3-5) is
not behind this door: devices have their own tokens.

Every dashboard route says which role it needs, with @requires("viewer"),
@requires("operator") or @requires("admin"), or @public; a route that says
nothing is refused to everyone (and logged), so a new page cannot be
forgotten open."""
import datetime
import functools
import logging

from flask import (
    abort,
    current_app,
    g,
    has_request_context,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError, CSRFProtect
from itsdangerous import BadData
from werkzeug.middleware.proxy_fix import ProxyFix

from . import auth

log = logging.getLogger("socketman_server.auth")
PUBLIC = "public"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
COOKIE = "socketman_session"       # a logged-in operator's: the session id and its CSRF token
LOGIN_COOKIE = "socketman_login"   # before login: only the login form's CSRF token
# No inline script or style anywhere (static/ holds them); SVG charts are
# inline markup, which CSP does not restrict.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
csrf = CSRFProtect()


def requires(role):
    """Decorator: the view needs an operator of at least `role` ("viewer",
    "operator" or "admin"). The guard enforces it before the view runs (and
    audits a refusal); the wrapper checks again, so the view is never
    reached without it."""
    auth.check_role(role)

    def deco(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            op = g.get("operator")
            if op is None or not op.can(role):
                abort(403)
            return view(*args, **kwargs)
        wrapper.socketman_role = role
        return wrapper
    return deco


def public(view):
    """Decorator: anyone may use this route (the login page, /healthz)."""
    view.socketman_role = PUBLIC
    return view


def current_operator():
    """The auth.Operator of this request, or None."""
    return g.get("operator")


def client_address():
    """The client's IP (the proxy's X-Forwarded-For with --behind-proxy)."""
    return (request.remote_addr or "")[:64]


def audit(action, target="", outcome="ok", detail=""):
    """Store.audit for the operator and address of the current request."""
    current_app.config["STORE"].audit(current_operator(), action, target, outcome, detail, client_address())


def wants_json():
    """Answer with JSON (not a page or a redirect): API token clients,
    .json and /live/ URLs, and whoever asks for JSON first."""
    return bool("Authorization" in request.headers or request.path.endswith(".json")
                or request.path.startswith("/live/") or request.accept_mimetypes.best == "application/json")


def refuse(status, message):
    """A refusal in the shape the client reads: JSON {"error": ...} or a
    page saying it."""
    if wants_json():
        resp = jsonify(error=message)
        resp.status_code = status
        return resp
    return render_template("error.html", status=status, message=message), status


class _Sessions(SecureCookieSessionInterface):
    """Flask's signed cookie, in two cookies: socketman_session once logged
    in, socketman_login before. A request from another site arrives without
    the SameSite=Strict session cookie; whatever is answered to it (a
    refusal, the login page) then writes only socketman_login, so a hostile
    page cannot replace, and so end, the operator's session. The session
    cookie is deleted only by a request that carried it (logout, expiry).
    Both are HttpOnly, SameSite=Strict, and Secure whenever the request came
    over https (directly, or through --behind-proxy's X-Forwarded-Proto)."""

    def get_cookie_secure(self, app):
        return bool(app.config["SESSION_COOKIE_SECURE"] or (has_request_context() and request.is_secure))

    def open_session(self, app, req):
        s = self.get_signing_serializer(app)
        max_age = int(app.permanent_session_lifetime.total_seconds())
        for name in (COOKIE, LOGIN_COOKIE):
            val = req.cookies.get(name)
            if not val:
                continue
            try:
                data = s.loads(val, max_age=max_age)
            except BadData:
                continue
            if isinstance(data, dict) and (name == LOGIN_COOKIE or data.get("sid")):
                return self.session_class(data)
        return self.session_class()

    def save_session(self, app, sess, response):
        if sess.accessed:
            response.vary.add("Cookie")
        if not sess.modified:
            return
        kw = dict(domain=self.get_cookie_domain(app), path=self.get_cookie_path(app),
                  secure=self.get_cookie_secure(app), samesite=self.get_cookie_samesite(app),
                  httponly=self.get_cookie_httponly(app))
        name, other = (COOKIE, LOGIN_COOKIE) if sess.get("sid") else (LOGIN_COOKIE, COOKIE)
        if other in request.cookies:
            response.delete_cookie(other, **kw)
        if sess:
            response.set_cookie(name, self.get_signing_serializer(app).dumps(dict(sess)), **kw)
        elif name in request.cookies:
            response.delete_cookie(name, **kw)


def init_app(app, settings, store):
    """Put the door on the app: session cookie settings, CSRFProtect (checked
    by the guard, not by default), ProxyFix when behind proxies, the guard,
    the headers and the template helpers `me` and `csrf_token()`."""
    app.secret_key = store.server_key("session")
    app.config.update(SESSION_COOKIE_NAME=COOKIE, SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict",
                      PERMANENT_SESSION_LIFETIME=datetime.timedelta(seconds=settings.session_s),
                      WTF_CSRF_CHECK_DEFAULT=False, WTF_CSRF_TIME_LIMIT=None)
    app.session_interface = _Sessions()
    csrf.init_app(app)
    if settings.behind_proxy:
        n = settings.behind_proxy
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n)
    app.before_request(_guard)
    app.after_request(_headers)
    app.register_error_handler(CSRFError, _csrf_refused)
    app.context_processor(lambda: {"me": current_operator()})


def _session_operator():
    sid = session.get("sid")
    if not sid:
        return None
    op = auth.operator_for_session(current_app.config["STORE"], sid, current_app.config["SETTINGS"].session_idle_s)
    if op is None:
        session.pop("sid", None)  # ended, expired or idle: the browser forgets it too
    return op


def _guard():
    g.operator = None
    if request.blueprint == "api":
        return None
    if request.endpoint is None:
        return None  # no such route or method: Flask answers 404/405, nothing runs
    if request.endpoint == "static":
        need = PUBLIC
    else:
        need = getattr(current_app.view_functions.get(request.endpoint), "socketman_role", None)
    what = "%s %s" % (request.method, request.path)
    if "Authorization" in request.headers and need != PUBLIC:
        # A token is the only proof looked at when one is sent: no fallback
        # to the cookie, and no CSRF check (a browser never adds this header
        # by itself, and another site cannot make it add one).
        op = auth.operator_for_token(current_app.config["STORE"], auth.bearer(request.headers["Authorization"]),
                                     client_address())
        if op is None:
            log.info("refused %s from %s: unknown, revoked or malformed API token", what, client_address())
            return refuse(401, "unknown, revoked or malformed API token (send Authorization: Bearer TOKEN)")
        g.operator = op
    else:
        g.operator = _session_operator()
        if request.method not in SAFE_METHODS:
            origin = request.headers.get("Origin")
            if not auth.same_origin(origin, request.host):
                log.warning("refused %s from %s: Origin %s is another site", what, client_address(), origin[:100])
                if g.operator:
                    audit("request", what, "refused", "cross-site (Origin %s)" % origin[:100])
                return refuse(403, "refused: this request comes from another site (Origin %s)" % origin[:100])
            csrf.protect()  # CSRFError -> _csrf_refused
    if need == PUBLIC:
        return None
    if need is None:
        log.error("refused %s: the route %s says no role (@requires or @public)", what, request.endpoint)
        return refuse(403, "this page says no role: refused to everyone")
    if g.operator is None:
        if wants_json() or request.method not in SAFE_METHODS:
            return refuse(401, "log in first (or send Authorization: Bearer TOKEN)")
        return redirect(url_for("admin.login", next=request.full_path.rstrip("?")))
    if not g.operator.can(need):
        audit("request", what, "denied", "needs the role %s; %s has %s" % (need, g.operator.name, g.operator.role))
        log.info("refused %s to %s (%s): needs %s", what, g.operator.name, g.operator.role, need)
        return refuse(403, "your role (%s) cannot do this: it needs %s" % (g.operator.role, need))
    return None


def _csrf_refused(e):
    what = "%s %s" % (request.method, request.path)
    log.warning("refused %s from %s: %s", what, client_address(), e.description)
    if current_operator():
        audit("request", what, "refused", "CSRF: %s" % e.description)
    return refuse(403, "refused: the form's security token is missing or wrong (%s) Reload the page and try again."
                  % e.description)


def _headers(resp):
    h = resp.headers
    h["Content-Security-Policy"] = CSP
    h["X-Frame-Options"] = "DENY"
    h["X-Content-Type-Options"] = "nosniff"
    h["Referrer-Policy"] = "same-origin"
    h["Cross-Origin-Opener-Policy"] = "same-origin"
    if request.is_secure:
        h["Strict-Transport-Security"] = "max-age=31536000"
    if request.endpoint != "static":
        h["Cache-Control"] = "no-store"  # pages show secrets (tokens once, device configs)
    return resp
