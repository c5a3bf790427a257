"""Operators, their sessions and API tokens, the audit log and the server's
own keys in the database: the part of db.Store (a mixin on its `engine`)
that issue 26 added. Policy (hashing, the throttle, who may do what) is in
auth.py; these are the reads and writes."""
import secrets
import time

import sqlalchemy as sa

from . import auth
from .protocol import BadInput
from .schema import api_tokens, audit, operators, server_keys, sessions

AUDIT_DETAIL_CHARS = 2000
TOUCH_EVERY_S = 30   # a session's or token's last use is written at most this often


def _now():
    return int(time.time())


def _row(r):
    return dict(r._mapping) if r is not None else None


def _text(v, n):
    """A value for a String(n)/Text column: cut, and without NUL, which
    PostgreSQL refuses in text (a login name or a MAC typed by anyone)."""
    return str(v or "").replace("\x00", "\\x00")[:n]


def _public(row):
    """An operator row without its password hash."""
    return {k: v for k, v in row.items() if k != "password_hash"} if row else None


class AccountQueries:
    """Mixed into db.Store: needs self.engine and self.audit_retention_s."""

    # ---- operators ---------------------------------------------------------

    def has_operators(self):
        with self.engine.connect() as c:
            return c.execute(sa.select(operators.c.id).limit(1)).first() is not None

    def operator_row(self, name):
        """The whole row (password hash included: auth.login needs it) of an
        operator by name, or None."""
        try:
            name = auth.check_name(name)
        except BadInput:
            return None
        with self.engine.connect() as c:
            return _row(c.execute(sa.select(operators).where(operators.c.name == name)).first())

    def operator(self, name):
        """An operator's row without the password hash, or None."""
        return _public(self.operator_row(name))

    def operators(self):
        """Every operator (no hash), by name, with `sessions` (open ones) and
        `tokens` (not revoked) counted."""
        now = _now()
        with self.engine.connect() as c:
            rows = [_public(_row(r)) for r in c.execute(sa.select(operators).order_by(operators.c.name)).all()]
            live = dict(c.execute(sa.select(sessions.c.operator_id, sa.func.count())
                                  .where(sessions.c.expires_at > now).group_by(sessions.c.operator_id)).all())
            toks = dict(c.execute(sa.select(api_tokens.c.operator_id, sa.func.count())
                                  .where(api_tokens.c.revoked_at.is_(None))
                                  .group_by(api_tokens.c.operator_id)).all())
        for r in rows:
            r["sessions"], r["tokens"] = live.get(r["id"], 0), toks.get(r["id"], 0)
        return rows

    def add_operator(self, name, role, password):
        """A new operator. BadInput for a bad name, role or password, or a
        name that is taken. Returns the row (no hash)."""
        name = auth.check_name(name)
        auth.check_role(role)
        auth.check_password(password, name)
        h = auth.hash_password(password)
        now = _now()
        try:
            with self.engine.begin() as c:
                c.execute(sa.insert(operators).values(name=name, role=role, password_hash=h, created_at=now,
                                                      password_changed_at=now))
        except sa.exc.IntegrityError:
            raise BadInput("an operator named %s exists already" % name)
        return self.operator(name)

    def _must_exist(self, c, name):
        row = _row(c.execute(sa.select(operators).where(operators.c.name == auth.check_name(name))).first())
        if row is None:
            raise BadInput("no operator named %s" % str(name)[:64])
        return row

    def _other_admins(self, c, row):
        return c.execute(sa.select(sa.func.count()).select_from(operators)
                         .where(operators.c.role == "admin", operators.c.id != row["id"])).scalar()

    def set_role(self, name, role):
        """Change an operator's role; it applies to their very next request
        (sessions and tokens read it each time). BadInput for the last admin."""
        auth.check_role(role)
        with self.engine.begin() as c:
            row = self._must_exist(c, name)
            if row["role"] == "admin" and role != "admin" and not self._other_admins(c, row):
                raise BadInput("%s is the last admin: make another admin first" % row["name"])
            c.execute(sa.update(operators).where(operators.c.id == row["id"]).values(role=role))

    def set_password(self, name, password, keep_sid=None):
        """A new password; every session of that operator ends except
        keep_sid's (the browser that changed its own password)."""
        with self.engine.begin() as c:
            row = self._must_exist(c, name)
        auth.check_password(password, row["name"])
        h = auth.hash_password(password)
        with self.engine.begin() as c:
            c.execute(sa.update(operators).where(operators.c.id == row["id"])
                      .values(password_hash=h, password_changed_at=_now()))
            q = sa.delete(sessions).where(sessions.c.operator_id == row["id"])
            if keep_sid:
                q = q.where(sessions.c.sid_hash != auth.digest(keep_sid))
            c.execute(q)

    def set_password_hash(self, operator_id, h):
        """Store a rehash of the same password (newer Argon2 parameters)."""
        with self.engine.begin() as c:
            c.execute(sa.update(operators).where(operators.c.id == operator_id).values(password_hash=h))

    def logged_in(self, operator_id):
        with self.engine.begin() as c:
            c.execute(sa.update(operators).where(operators.c.id == operator_id).values(last_login_at=_now()))

    def remove_operator(self, name):
        """Remove an operator with their sessions and tokens (their audit
        records stay). BadInput for an unknown name or the last admin."""
        with self.engine.begin() as c:
            row = self._must_exist(c, name)
            if row["role"] == "admin" and not self._other_admins(c, row):
                raise BadInput("%s is the last admin: make another admin first" % row["name"])
            # Children first: SQLite does not enforce ON DELETE CASCADE by default.
            c.execute(sa.delete(sessions).where(sessions.c.operator_id == row["id"]))
            c.execute(sa.delete(api_tokens).where(api_tokens.c.operator_id == row["id"]))
            c.execute(sa.delete(operators).where(operators.c.id == row["id"]))

    # ---- sessions ----------------------------------------------------------

    def create_session(self, operator_id, lifetime_s, address="", user_agent=""):
        """A new login session; returns its id (the secret the cookie carries:
        only its digest is stored)."""
        sid = secrets.token_urlsafe(32)
        now = _now()
        with self.engine.begin() as c:
            c.execute(sa.insert(sessions).values(sid_hash=auth.digest(sid), operator_id=operator_id, created_at=now,
                                                 last_seen_at=now, expires_at=now + int(lifetime_s),
                                                 address=_text(address, 64), user_agent=_text(user_agent, 200)))
        return sid

    def session_operator(self, sid_hash, idle_s):
        """The Operator of a live session (by digest), or None. A session
        past its end or idle too long is deleted on the way."""
        now = _now()
        with self.engine.connect() as c:
            r = _row(c.execute(sa.select(sessions, operators.c.name, operators.c.role)
                               .join(operators, operators.c.id == sessions.c.operator_id)
                               .where(sessions.c.sid_hash == sid_hash)).first())
        if r is None:
            return None
        if r["expires_at"] <= now or r["last_seen_at"] + idle_s <= now:
            with self.engine.begin() as c:
                c.execute(sa.delete(sessions).where(sessions.c.id == r["id"]))
            return None
        if now - r["last_seen_at"] >= TOUCH_EVERY_S:
            with self.engine.begin() as c:
                c.execute(sa.update(sessions).where(sessions.c.id == r["id"]).values(last_seen_at=now))
        return auth.Operator(r["operator_id"], r["name"], r["role"], "password")

    def end_session(self, sid):
        with self.engine.begin() as c:
            c.execute(sa.delete(sessions).where(sessions.c.sid_hash == auth.digest(sid)))

    def end_sessions(self, name):
        """Log an operator out everywhere. Returns how many sessions ended."""
        with self.engine.begin() as c:
            row = self._must_exist(c, name)
            return c.execute(sa.delete(sessions).where(sessions.c.operator_id == row["id"])).rowcount

    # ---- API tokens --------------------------------------------------------

    def add_token(self, operator_name, name, role=None):
        """A new API token for an operator, with a name (unique among their
        live tokens) and a role no higher than theirs (default: theirs).
        Returns (token, row): the token is shown this once, only its
        digest is kept."""
        name = (name or "").strip()
        if not 1 <= len(name) <= 100 or any(ord(ch) < 32 for ch in name):
            raise BadInput("a token needs a name (1 to 100 characters, no control characters)")
        with self.engine.begin() as c:
            op = self._must_exist(c, operator_name)
            role = auth.check_role(role or op["role"])
            if not auth.has_role(op["role"], role):
                raise BadInput("a token's role cannot be above its operator's (%s)" % op["role"])
            taken = c.execute(sa.select(api_tokens.c.id).where(api_tokens.c.operator_id == op["id"],
                                                               api_tokens.c.name == name,
                                                               api_tokens.c.revoked_at.is_(None))).first()
            if taken:
                raise BadInput("%s has a token named %s already" % (op["name"], name))
            token = auth.new_token()
            tid = c.execute(sa.insert(api_tokens).values(
                operator_id=op["id"], name=name, role=role, token_hash=auth.digest(token),
                prefix=token[:len(auth.TOKEN_PREFIX) + 6], created_at=_now())).inserted_primary_key[0]
        return token, self.token(tid)

    def token(self, token_id):
        rows = self.tokens(token_id=token_id, revoked=True)
        return rows[0] if rows else None

    def tokens(self, operator_name=None, token_id=None, revoked=False):
        """API tokens (no digest), newest first, with the operator's name as
        `operator`; revoked ones only when asked."""
        cols = [c for c in api_tokens.c if c.name != "token_hash"]
        q = sa.select(*cols, operators.c.name.label("operator")).join(
            operators, operators.c.id == api_tokens.c.operator_id).order_by(api_tokens.c.id.desc())
        if operator_name is not None:
            q = q.where(operators.c.name == auth.check_name(operator_name))
        if token_id is not None:
            q = q.where(api_tokens.c.id == int(token_id))
        if not revoked:
            q = q.where(api_tokens.c.revoked_at.is_(None))
        with self.engine.connect() as c:
            return [_row(r) for r in c.execute(q).all()]

    def revoke_token(self, token_id, operator_name=None):
        """Revoke a token (of that operator only, when named): refused from
        the next request on. Returns the token row, or None when there was no
        such live token."""
        t = self.token(token_id)
        if t is None or t["revoked_at"] or (operator_name is not None and t["operator"] != operator_name):
            return None
        with self.engine.begin() as c:
            c.execute(sa.update(api_tokens).where(api_tokens.c.id == t["id"]).values(revoked_at=_now()))
        return t

    def token_operator(self, token_hash, address=""):
        """The Operator a live token (by digest) stands for, or None."""
        now = _now()
        with self.engine.connect() as c:
            r = _row(c.execute(sa.select(api_tokens, operators.c.name.label("operator"),
                                         operators.c.role.label("operator_role"))
                               .join(operators, operators.c.id == api_tokens.c.operator_id)
                               .where(api_tokens.c.token_hash == token_hash)).first())
        if r is None or r["revoked_at"] is not None:
            return None
        address = _text(address, 64)
        if now - (r["last_used_at"] or 0) >= TOUCH_EVERY_S or r["last_used_address"] != address:
            with self.engine.begin() as c:
                c.execute(sa.update(api_tokens).where(api_tokens.c.id == r["id"])
                          .values(last_used_at=now, last_used_address=address))
        role = auth.lower_role(r["role"], r["operator_role"]) if r["operator_role"] in auth.ROLES else "viewer"
        return auth.Operator(r["operator_id"], r["operator"], role, "token " + r["name"])

    # ---- the audit log -----------------------------------------------------

    def audit(self, operator, action, target="", outcome="ok", detail="", address="", via=None):
        """Record one action (issue 26). operator: an auth.Operator, a name,
        or None (nobody logged in: a failed login); action: a short word
        ("login", "job", "fleet-job", "device.admit", "tunnel.open",
        "rollout.start"...); target: what it was done to (a MAC, an operator
        name, "#12"); outcome: "ok", "failed", "denied", "sent", ...; detail:
        free text (cut at 2000 characters; never a password or a token);
        address: the client's IP. Never raises for long values."""
        if isinstance(operator, auth.Operator):
            name, via = operator.name, via or operator.via
        else:
            name = operator or ""
        with self.engine.begin() as c:
            c.execute(sa.insert(audit).values(ts=_now(), operator=_text(name, 64), via=_text(via, 120),
                                              address=_text(address, 64), action=_text(action, 40),
                                              target=_text(target, 200), outcome=_text(outcome, 40),
                                              detail=_text(detail, AUDIT_DETAIL_CHARS)))
        self._audits = getattr(self, "_audits", 0) + 1
        if self._audits % 500 == 0:
            self.prune_accounts()

    def audit_log(self, operator=None, action=None, target=None, outcome=None, since=None, until=None,
                  before_id=None, limit=100):
        """Audit records, newest first. operator, action, outcome: exact;
        target: a part of it; since/until: Unix seconds; before_id: the
        next page starts below this id."""
        q = sa.select(audit).order_by(audit.c.id.desc()).limit(max(1, min(int(limit), 1000)))
        if operator is not None:
            q = q.where(audit.c.operator == _text(operator, 64))
        if action:
            q = q.where(audit.c.action == _text(action, 40))
        if target:
            q = q.where(audit.c.target.contains(_text(target, 200), autoescape=True))
        if outcome:
            q = q.where(audit.c.outcome == _text(outcome, 40))
        if since is not None:
            q = q.where(audit.c.ts >= int(since))
        if until is not None:
            q = q.where(audit.c.ts < int(until))
        if before_id is not None:
            q = q.where(audit.c.id < int(before_id))
        with self.engine.connect() as c:
            return [_row(r) for r in c.execute(q).all()]

    def audit_facets(self):
        """({operator names}, {actions}, {outcomes}) seen in the log: the
        dashboard's filter choices."""
        with self.engine.connect() as c:
            return tuple(sorted(v for (v,) in c.execute(sa.select(col).distinct()).all())
                         for col in (audit.c.operator, audit.c.action, audit.c.outcome))

    def login_failures(self, name, address, since, n_name, n_address):
        """Times (newest first, at most n_*) of failed logins since `since`:
        of this name after its last good login, and from this address."""
        name, address = _text(name, 200), _text(address, 64)
        with self.engine.connect() as c:
            last_ok = c.execute(sa.select(sa.func.max(audit.c.ts)).where(
                audit.c.action == "login", audit.c.target == name, audit.c.outcome == "ok",
                audit.c.ts >= since)).scalar()
            start = max(since, last_ok + 1) if last_ok else since
            acct = c.execute(sa.select(audit.c.ts).where(
                audit.c.action == "login", audit.c.target == name, audit.c.outcome == "failed",
                audit.c.ts >= start).order_by(audit.c.ts.desc()).limit(n_name)).scalars().all()
            addr = []
            if address:
                addr = c.execute(sa.select(audit.c.ts).where(
                    audit.c.action == "login", audit.c.address == address, audit.c.outcome == "failed",
                    audit.c.ts >= since).order_by(audit.c.ts.desc()).limit(n_address)).scalars().all()
        return list(acct), list(addr)

    def prune_accounts(self, now=None):
        """Forget audit records past the audit retention and sessions past
        their end."""
        now = _now() if now is None else now
        with self.engine.begin() as c:
            c.execute(sa.delete(audit).where(audit.c.ts < now - self.audit_retention_s))
            c.execute(sa.delete(sessions).where(sessions.c.expires_at <= now))

    # ---- the server's own keys ---------------------------------------------

    def server_key(self, name):
        """A random key the server made once and keeps (e.g. "session": it
        signs the session cookies), the same for every server process on
        this database."""
        with self.engine.begin() as c:
            row = c.execute(sa.select(server_keys.c.value).where(server_keys.c.name == name)).first()
            if row:
                return row[0]
            try:
                with c.begin_nested():
                    c.execute(sa.insert(server_keys).values(name=name, value=secrets.token_hex(32),
                                                            created_at=_now()))
            except sa.exc.IntegrityError:
                pass  # another process made it at the same moment: use theirs
            return c.execute(sa.select(server_keys.c.value).where(server_keys.c.name == name)).scalar_one()
