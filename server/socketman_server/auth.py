"""Who is asking, without Flask: roles, password hashing (Argon2id through
argon2-cffi), API tokens, the login throttle, and the functions that turn a
Bearer token, a session cookie or the headers of any request (a WebSocket
handshake on an ASGI server too) into an Operator. The Flask side (the
before-request guard, CSRF, the role decorator) is guard.py.

Roles, each one able to do what the one before it can:
    viewer    sees every page, sends nothing
    operator  jobs, fleet jobs, device names, tunnels
    admin     provisioning (admit, forget, device configs), releases and
              rollouts, operators and everyone's API tokens
"""
import dataclasses
import hashlib
import re
import secrets
import threading
import time
from urllib.parse import urlsplit

import argon2

from .protocol import BadInput

ROLES = ("viewer", "operator", "admin")
TOKEN_PREFIX = "smt_"                # an API token: smt_ + 43 URL-safe characters (256 random bits)
PASSWORD_MIN, PASSWORD_MAX = 10, 1024
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,63}$")

# The login throttle (CHOICES.md): failed logins counted over a sliding
# window from the audit log, which every server process shares.
LOGIN_WINDOW_S = 15 * 60
ACCOUNT_FAILURES = 5                 # per account name (known or not), reset by a good login
ADDRESS_FAILURES = 20                # per client address, whatever the names tried

_hasher = argon2.PasswordHasher()    # argon2-cffi's defaults: Argon2id, RFC 9106 "low memory" profile
_dummy = []
_dummy_lock = threading.Lock()


@dataclasses.dataclass(frozen=True)
class Operator:
    """An authenticated operator. id: operators.id (None for the command
    line, which has the database itself); via: how they proved it
    ("password", "token NAME", "cli"); role: what they may do now (for a
    token: the lower of the token's role and its operator's)."""
    id: object
    name: str
    role: str
    via: str = "password"

    def can(self, role):
        return has_role(self.role, role)


def has_role(have, need):
    """True when role `have` may do what role `need` may."""
    return have in ROLES and need in ROLES and ROLES.index(have) >= ROLES.index(need)


def check_role(role):
    if role not in ROLES:
        raise BadInput("a role is one of %s, not %r" % (", ".join(ROLES), str(role)[:40]))
    return role


def lower_role(a, b):
    return a if ROLES.index(a) <= ROLES.index(b) else b


def check_name(name):
    """An operator name, normalized (lowercase). BadInput otherwise."""
    n = (name or "").strip().lower()
    if not NAME_RE.match(n):
        raise BadInput("an operator name is 1 to 64 of a-z 0-9 . _ @ - (starting with a letter or digit)")
    return n


def check_password(password, name=""):
    """BadInput for a password that is too short, too long or the name."""
    if not isinstance(password, str) or len(password) < PASSWORD_MIN:
        raise BadInput("a password has at least %d characters" % PASSWORD_MIN)
    if len(password) > PASSWORD_MAX:
        raise BadInput("a password has at most %d characters" % PASSWORD_MAX)
    if name and password.strip().lower() == name.lower():
        raise BadInput("the password must not be the operator's name")
    return password


def hash_password(password):
    """An Argon2id PHC string (salt and parameters inside). ~50 ms, 64 MiB."""
    return _hasher.hash(password)


def verify_password(stored_hash, password):
    """True when `password` matches. With stored_hash None it still spends
    the time of a real check, so a wrong name answers as slowly as a wrong
    password (nothing tells which names exist)."""
    if stored_hash is None:
        with _dummy_lock:
            if not _dummy:
                _dummy.append(_hasher.hash(secrets.token_hex(16)))
        stored_hash = _dummy[0]
        password = "\0" + password  # never matches
    try:
        return _hasher.verify(stored_hash, password)
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        return False


def needs_rehash(stored_hash):
    """True when the hash was made with older parameters than today's."""
    try:
        return _hasher.check_needs_rehash(stored_hash)
    except argon2.exceptions.InvalidHashError:
        return False


def new_password():
    """A generated password (for --generate-password and the demo): 20
    URL-safe characters, 120 random bits."""
    return secrets.token_urlsafe(15)


def new_token():
    """A new API token (the string the client sends)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def digest(secret):
    """SHA-256 hex of a session id or an API token: what the database keeps.
    They are 256 random bits, so a fast hash is enough (a password is not)."""
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


def bearer(authorization):
    """The token of an `Authorization: Bearer <token>` value, else None."""
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    return None


def same_origin(origin, host):
    """The Origin check (second net behind CSRF tokens): True when a
    browser's Origin header names this host. A missing Origin is left to the
    CSRF token; "null" (a sandboxed frame, a data: URL, some redirects) is
    another site."""
    if origin is None:
        return True
    if origin == "null":
        return False
    try:
        return urlsplit(origin).netloc.lower() == (host or "").lower()
    except ValueError:
        return False


# ---- the login throttle and the login itself -------------------------------

def login_wait(store, name, address, now=None):
    """Seconds before `name` may try a password again from `address` (0:
    now). ACCOUNT_FAILURES failures of a name since its last good login, or
    ADDRESS_FAILURES from one address, within LOGIN_WINDOW_S, close the door
    until the oldest of them leaves the window."""
    now = int(time.time()) if now is None else now
    acct, addr = store.login_failures(name, address, now - LOGIN_WINDOW_S, ACCOUNT_FAILURES, ADDRESS_FAILURES)
    waits = [0]
    if len(acct) >= ACCOUNT_FAILURES:
        waits.append(acct[ACCOUNT_FAILURES - 1] + LOGIN_WINDOW_S - now)
    if address and len(addr) >= ADDRESS_FAILURES:
        waits.append(addr[ADDRESS_FAILURES - 1] + LOGIN_WINDOW_S - now)
    return max(waits)


def login(store, name, password, address=""):
    """Check a name and password, with the throttle, and write the audit
    record (action "login", outcome ok / failed / throttled; the password is
    never written anywhere). Returns (Operator or None, outcome, seconds to
    wait when throttled)."""
    try:
        name = check_name(name)
    except BadInput:
        name = (name or "").strip().lower()[:64]
    wait = login_wait(store, name, address)
    if wait:
        store.audit(None, "login", name, "throttled", "too many failed logins; %d s to wait" % wait, address)
        return None, "throttled", wait
    row = store.operator_row(name)
    if not verify_password(row["password_hash"] if row else None, password or ""):
        store.audit(None, "login", name, "failed", "wrong password" if row else "no such operator", address)
        return None, "failed", 0
    if needs_rehash(row["password_hash"]):
        store.set_password_hash(row["id"], hash_password(password))
    op = Operator(row["id"], row["name"], row["role"], "password")
    store.logged_in(row["id"])
    store.audit(op, "login", name, "ok", "", address)
    return op, "ok", 0


# ---- who is asking (usable outside a Flask request) -------------------------

def operator_for_token(store, token, address=""):
    """The Operator an API token (as sent after `Bearer `) stands for, or
    None for an unknown or revoked token or a removed operator. Its role is
    the lower of the token's and the operator's. Records its last use."""
    if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    return store.token_operator(digest(token), address)


def operator_for_session(store, sid, idle_s):
    """The Operator of a session id (the value the session cookie carries,
    once its signature is checked), or None when it is unknown, past its
    end, or idle for more than idle_s seconds."""
    if not sid or not isinstance(sid, str) or len(sid) > 200:
        return None
    return store.session_operator(digest(sid), idle_s)


def session_id_from_cookie(app, cookie_value):
    """The session id inside the dashboard's session cookie (Flask's signed
    cookie, signed with the key the server keeps in its database), or None
    for a cookie that is missing, forged or older than the longest session."""
    if not cookie_value:
        return None
    s = app.session_interface.get_signing_serializer(app)
    try:
        data = s.loads(cookie_value, max_age=app.config["SETTINGS"].session_s)
    except Exception:  # noqa: BLE001 - itsdangerous raises BadData subclasses, the JSON tagger others
        return None
    return data.get("sid") if isinstance(data, dict) else None


def operator_for_cookie(app, cookie_value):
    """The Operator of a session cookie value (what the browser sends as
    the cookie named app.config["SESSION_COOKIE_NAME"]), or None. `app` is
    the Flask app of app.create_app (it holds the store and the settings).
    The caller must also check the request's Origin (operator_for_headers
    does): a cookie alone does not prove the request is the operator's."""
    sid = session_id_from_cookie(app, cookie_value)
    return operator_for_session(app.config["STORE"], sid, app.config["SETTINGS"].session_idle_s)


def operator_for_headers(app, headers, address=""):
    """The Operator of a request, from its headers alone: for an ASGI route
    (a WebSocket handshake) beside the Flask app. headers: a mapping or a
    list of (name, value) pairs, str or bytes. An Authorization header is
    the only proof looked at when present (Bearer API token); otherwise the
    session cookie, and then the Origin must be this Host (a page of
    another site can open a WebSocket with the operator's cookies)."""
    from werkzeug.datastructures import Headers
    from werkzeug.http import parse_cookie

    items = headers.items() if hasattr(headers, "items") else headers
    h = Headers([(k.decode("latin-1") if isinstance(k, bytes) else k,
                  v.decode("latin-1") if isinstance(v, bytes) else v) for k, v in items])
    if "Authorization" in h:
        return operator_for_token(app.config["STORE"], bearer(h.get("Authorization")), address)
    if not same_origin(h.get("Origin"), h.get("Host")):
        return None
    cookie = parse_cookie(h.get("Cookie", "")).get(app.config["SESSION_COOKIE_NAME"])
    return operator_for_cookie(app, cookie)
