"""Operators on the fleet server (issue 26), over real HTTP: login and its
cookie, logout, expiry, the login throttle, CSRF tokens and the Origin
check, roles, API tokens, the audit log, security headers, passwords kept
out of logs and pages, safe defaults of `serve`, the command line, and the
functions that authenticate a request outside Flask (for the tunnel
service). One server for the module (SQLite, --behind-proxy 1 so each test
can speak from its own client address through X-Forwarded-For); the
browser-side attacks are in test_server_browser.py."""
import itertools
import json
import os
import re
import subprocess
import sys
import time

import pytest

from helpers.broker import Broker
from helpers.fleet import SERVER_MAIN, FleetServer, Session, password_of

_n = itertools.count(1)


@pytest.fixture(scope="module")
def broker_m(tmp_path_factory, certs):
    b = Broker(tmp_path_factory.mktemp("broker"), certs)
    yield b
    b.stop()


@pytest.fixture(scope="module")
def srv(tmp_path_factory, broker_m):
    s = FleetServer(tmp_path_factory.mktemp("server"), broker_m, args=["--behind-proxy", "1"])
    yield s
    assert s.alive(), "the server died:\n" + s.output()
    s.stop()


@pytest.fixture(scope="module")
def store(srv):
    st = srv.store()
    st.admit("02:5e:c1:00:00:01", "always-there")  # a fleet job needs a device
    yield st
    st.close()


def addr():
    """A client address of its own (198.18.0.0/15, for benchmarks: only a
    header here, no packet goes there)."""
    n = next(_n)
    return "198.18.%d.%d" % (n // 250, n % 250 + 1)


def fresh(srv, name, password=None, **kw):
    """A new logged-in session from a new address."""
    return Session(srv, name, password or password_of(name), headers={"X-Forwarded-For": addr()}, **kw)


def new_operator(store, role, password=None):
    name = "op%d-%s" % (next(_n), role)
    store.add_operator(name, role, password or password_of(name))
    return name


def audit_rows(store, **kw):
    return store.audit_log(limit=1000, **kw)


# ---- login, cookie, logout, expiry -------------------------------------------

def test_pages_need_a_login(srv):
    r = srv.get("/", auth=None)
    assert r.status == 302 and r.headers["Location"].startswith("/login?next=/"), r
    for path in ("/devices.json", "/live/fleet", "/audit.json", "/fleet-jobs/1.json", "/whoami.json"):
        r = srv.get(path, auth=None)
        assert r.status == 401 and "log in" in r.json()["error"], (path, r)
    assert srv.get("/login", auth=None).status == 200
    assert srv.get("/static/style.css", auth=None).status == 200
    assert srv.get("/healthz", auth=None).status == 200
    # The device API is unchanged: its own tokens, no login.
    assert srv.get("/api/boot", query={"access_token": "x", "mac": "02:00:00:00:00:01"}).status == 401
    # A POST with nothing: no session, no CSRF token.
    r = srv.post_form("/fleet-jobs", {"command": "reboot", "target": "all"}, auth=None)
    assert r.status == 403 and b"security token" in r.body


def test_login_cookie_and_logout(srv, store):
    s = Session(srv, "oper", password_of("oper"), login=False)
    r = s.login("oper", password_of("oper"))
    assert r.status == 303 and r.headers["Location"] == "/"
    cookie = [v for k, v in r.header_list if k.lower() == "set-cookie" and v.startswith("socketman_session=")][0]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie, cookie
    assert "socketman_login" not in s.cookies  # the login form's cookie is gone once logged in
    assert "sid" in s.cookie_data() and "csrf_token" not in s.cookie_data()  # a new session, a new token
    assert s.get("/").status == 200
    assert "csrf_token" in s.cookie_data()
    assert s.get("/whoami.json").json() == {"name": "oper", "role": "operator", "via": "password"}
    stolen = dict(s.cookies)
    r = s.post_form("/logout", {})
    assert r.status == 303 and r.headers["Location"] == "/login"
    assert "sid" not in s.cookie_data()
    # The cookie from before the logout is worth nothing now: the session
    # ended on the server, not only in this browser.
    replay = Session(srv, "x", "x", login=False)
    replay.cookies = stolen
    assert replay.get("/whoami.json").status == 401
    assert [r["outcome"] for r in audit_rows(store, operator="oper", action="logout")][:1] == ["ok"]


def test_the_cookie_is_secure_behind_https(srv):
    """Behind a TLS proxy (--behind-proxy, X-Forwarded-Proto: https) the
    cookie carries Secure and pages carry HSTS."""
    s = Session(srv, "oper", password_of("oper"), login=False,
                headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": addr()})
    r = s.request("GET", "/login")
    cookie = [v for k, v in r.header_list if k.lower() == "set-cookie"][0]
    assert "Secure" in cookie and "SameSite=Strict" in cookie
    assert r.headers["Strict-Transport-Security"].startswith("max-age=")
    # Over https Flask-WTF also wants a same-origin Referer on a POST.
    r = s.login("oper", password_of("oper"), headers={"Referer": "https://127.0.0.1:%d/login" % srv.port,
                                                       "Host": "127.0.0.1:%d" % srv.port})
    assert r.status == 303, r
    assert s.get("/whoami.json").status == 200


def test_sessions_expire(srv, store):
    import sqlalchemy as sa

    from socketman_server.schema import sessions
    s = fresh(srv, "viewer")
    assert s.get("/whoami.json").status == 200
    now = int(time.time())
    # Idle for longer than --session-idle-minutes (60): ended.
    with store.engine.begin() as c:
        c.execute(sa.update(sessions).where(sessions.c.operator_id == store.operator("viewer")["id"])
                  .values(last_seen_at=now - 3601))
    assert s.get("/whoami.json").status == 401
    assert s.get("/").status == 302
    # Active, but past its absolute end (--session-hours): ended too.
    s = fresh(srv, "viewer")
    with store.engine.begin() as c:
        c.execute(sa.update(sessions).where(sessions.c.operator_id == store.operator("viewer")["id"])
                  .values(expires_at=now - 1))
    assert s.get("/whoami.json").status == 401


def test_login_next_is_never_another_site(srv):
    for nxt, where in (("/fleet-jobs", "/fleet-jobs"), ("//evil.example/x", "/"), ("https://evil.example/", "/"),
                       ("/\\evil.example", "/"), ("javascript:alert(1)", "/")):
        s = Session(srv, "viewer", "", login=False, headers={"X-Forwarded-For": addr()})
        s.get("/login")
        r = s.post_form("/login?next=" + nxt, {"name": "viewer", "password": password_of("viewer")})
        assert r.status == 303 and r.headers["Location"] == where, (nxt, r.headers.get("Location"))


# ---- the throttle ------------------------------------------------------------------

def test_wrong_password_and_unknown_name_answer_the_same(srv, store):
    a = Session(srv, "", "", login=False, headers={"X-Forwarded-For": addr()})
    r1 = a.login("oper", "not-the-password")
    r2 = a.login("nobody-%d" % next(_n), "not-the-password")
    assert r1.status == r2.status == 401
    assert re.search(rb'id="login-error">([^<]*)<', r1.body).group(1) == \
        re.search(rb'id="login-error">([^<]*)<', r2.body).group(1) == b"Wrong name or password."
    details = {r["detail"] for r in audit_rows(store, action="login", outcome="failed")}
    assert {"wrong password", "no such operator"} <= details
    # Names no account can have, and huge inputs, are plain failures.
    for name, pw in (("x" * 5000, "p"), ("", ""), ("a b/c\x00", "p" * 5000), ("oper", "")):
        r = a.login(name, pw)
        assert r.status in (400, 401), (name[:10], r)
    assert srv.alive()


def test_failed_logins_are_throttled_per_account(srv, store):
    import sqlalchemy as sa

    from socketman_server.schema import audit
    name = new_operator(store, "operator")
    for _ in range(5):  # from five addresses: it is the account that is counted
        r = Session(srv, "", "", login=False, headers={"X-Forwarded-For": addr()}).login(name, "wrong-password!")
        assert r.status == 401
    s = Session(srv, "", "", login=False, headers={"X-Forwarded-For": addr()})
    r = s.login(name, password_of(name))  # the right password, now refused without being checked
    assert r.status == 429, r
    assert 800 < int(r.headers["Retry-After"]) <= 900
    assert b"Too many failed logins" in r.body
    assert "sid" not in s.cookie_data()
    assert fresh(srv, "oper").get("/whoami.json").status == 200  # another account from anywhere: fine
    outcomes = [x["outcome"] for x in audit_rows(store, action="login", target=name)]
    assert outcomes == ["throttled"] + ["failed"] * 5
    # A quarter of an hour later the account may try again; a good login
    # starts its count again.
    with store.engine.begin() as c:
        c.execute(sa.update(audit).where(audit.c.action == "login", audit.c.target == name)
                  .values(ts=audit.c.ts - 901))
    assert s.login(name, password_of(name)).status == 303


def test_failed_logins_are_throttled_per_address(srv, store):
    bad = addr()
    for i in range(20):  # twenty names, one address
        r = Session(srv, "", "", login=False, headers={"X-Forwarded-For": bad}).login("guess%d" % i, "password-x")
        assert r.status == 401, (i, r)
    r = Session(srv, "", "", login=False, headers={"X-Forwarded-For": bad}).login("oper", password_of("oper"))
    assert r.status == 429
    assert audit_rows(store, action="login", target="oper", outcome="throttled")[0]["address"] == bad
    fresh(srv, "oper")  # the same account from another address logs in


# ---- CSRF and Origin -----------------------------------------------------------------

@pytest.mark.parametrize("how", ["no token", "wrong token", "another session's token", "Origin null",
                                 "Origin of another site", "Origin of another port"])
def test_a_state_change_needs_the_csrf_token_and_this_origin(srv, store, how):
    """Each net alone refuses: the CSRF token (Flask-WTF), and the Origin
    check even with a good token (a sandboxed frame sends Origin: null)."""
    s = fresh(srv, "oper")
    s.get("/")
    fields = {"command": "echo %s" % how, "target": "all"}
    headers = {}
    if how == "no token":
        fields["csrf_token"] = ""
    elif how == "wrong token":
        fields["csrf_token"] = s.csrf[:-4] + "AAAA"
    elif how == "another session's token":
        other = fresh(srv, "oper")
        other.get("/")
        fields["csrf_token"] = other.csrf
    else:
        headers["Origin"] = {"Origin null": "null", "Origin of another site": "http://evil.example",
                             "Origin of another port": "http://127.0.0.1:1"}[how]
    r = s.post_form("/fleet-jobs", fields, headers=headers)
    assert r.status == 403, r
    assert not [f for f in store.fleet_jobs(limit=50) if f["command"] == fields["command"]]
    rec = audit_rows(store, operator="oper", action="request", outcome="refused")[0]
    assert rec["target"] == "POST /fleet-jobs"
    assert ("Origin" in rec["detail"]) == how.startswith("Origin"), rec
    # The same form with its token and this origin goes through.
    r = s.post_form("/fleet-jobs", {"command": fields["command"], "target": "all"},
                    headers={"Origin": srv.url("")})
    assert r.status == 303, r


def test_login_itself_needs_the_csrf_token(srv):
    s = Session(srv, "", "", login=False, headers={"X-Forwarded-For": addr()})
    s.get("/login")
    r = s.post_form("/login", {"name": "oper", "password": password_of("oper")}, csrf=False)
    assert r.status == 403 and "sid" not in s.cookie_data()
    r = s.post_form("/login", {"name": "oper", "password": password_of("oper")}, headers={"Origin": "null"})
    assert r.status == 403 and "sid" not in s.cookie_data()


# ---- roles ---------------------------------------------------------------------------

def test_roles(srv, store):
    dev = store.admit("02:5e:ce:00:00:%02x" % next(_n), "roles")
    url_mac = dev["mac"].replace(":", "-")
    viewer, oper, admin = fresh(srv, "viewer"), fresh(srv, "oper"), fresh(srv, "admin")
    posts = [("/fleet-jobs", {"command": "uptime", "target": "all"}, "operator"),
             ("/devices/%s/jobs" % url_mac, {"command": "uptime"}, "operator"),
             ("/devices/%s/name" % url_mac, {"name": "renamed"}, "operator"),
             ("/provisioning", {"mac": "02:5e:cf:00:00:01"}, "admin"),
             ("/operators", {"name": "sneaky", "role": "admin", "password": "sneaky-password"}, "admin"),
             ("/devices/%s/forget" % url_mac, {}, "admin")]
    gets = [("/", "viewer"), ("/devices/" + url_mac, "viewer"), ("/provisioning", "viewer"), ("/audit", "viewer"),
            ("/fleet-jobs", "viewer"), ("/account", "viewer"), ("/devices/%s/config.json" % url_mac, "admin"),
            ("/operators", "admin")]
    for who, s in (("viewer", viewer), ("operator", oper)):
        for path, need in gets:
            r = s.get(path)
            assert r.status == (200 if need in ("viewer", who) else 403), (who, path, r)
        for path, fields, need in posts:
            if need == "operator" and who == "operator":
                continue
            r = s.post_form(path, fields)
            assert r.status == 403, (who, path, r)
            assert b"your role (%s) cannot do this" % who.encode() in r.body
    assert store.device(dev["mac"])["name"] == "roles" and store.operator("sneaky") is None
    assert store.device("02:5e:cf:00:00:01") is None
    page = viewer.get("/").text()
    assert 'id="fleet-send"' not in page and 'id="read-only"' in page
    assert "/forget" not in viewer.get("/provisioning").text()
    assert 'id="fleet-send"' in oper.get("/").text()
    denied = audit_rows(store, operator="viewer", action="request", outcome="denied")
    assert {r["target"] for r in denied} >= {"POST /fleet-jobs", "POST /provisioning", "GET /operators"}
    assert admin.post_form("/devices/%s/forget" % url_mac, {}).status == 303
    # A role change applies to the very next request of a live session.
    name = new_operator(store, "operator")
    s = fresh(srv, name)
    assert s.post_form("/devices/%s/name" % url_mac, {"name": "x"}).status == 404  # allowed (device forgotten)
    assert admin.post_form("/operators/" + name, {"do": "role", "role": "viewer"}).status == 303
    assert s.post_form("/devices/%s/name" % url_mac, {"name": "x"}).status == 403


def test_admin_page(srv, store):
    admin = fresh(srv, "admin")
    r = admin.post_form("/operators", {"name": "Carol-%d" % next(_n), "role": "viewer"})
    assert r.status == 200
    pw = re.search(r'id="generated-password">([^<]+)<', r.text()).group(1)
    name = re.search(r"The new password of <b>([^<]+)</b>", r.text()).group(1)
    assert name == name.lower() and store.operator(name)["role"] == "viewer"
    carol = fresh(srv, name, pw)
    assert carol.get("/whoami.json").json()["role"] == "viewer"
    assert pw not in admin.get("/operators").text()  # shown once
    r = admin.post_form("/operators", {"name": name, "role": "viewer", "password": "whatever-long"})
    assert r.status == 400 and b"exists already" in r.body
    r = admin.post_form("/operators", {"name": "bad name!", "role": "viewer", "password": "whatever-long"})
    assert r.status == 400
    r = admin.post_form("/operators", {"name": "short-%d" % next(_n), "role": "viewer", "password": "short"})
    assert r.status == 400 and b"at least 10" in r.body
    assert admin.post_form("/operators/" + name, {"do": "end-sessions"}).status == 303
    assert carol.get("/whoami.json").status == 401
    carol = fresh(srv, name, pw)
    r = admin.post_form("/operators/" + name, {"do": "password"})
    new_pw = re.search(r'id="generated-password">([^<]+)<', r.text()).group(1)
    assert carol.get("/whoami.json").status == 401  # a new password ends their sessions
    fresh(srv, name, new_pw)
    assert admin.post_form("/operators/" + name, {"do": "remove"}).status == 303
    assert store.operator(name) is None
    r = admin.post_form("/operators/" + name, {"do": "remove"})
    assert r.status == 400 and b"no operator named" in r.body
    acts = [(r["action"], r["target"], r["outcome"]) for r in audit_rows(store, operator="admin")]
    for want in (("operator.add", name, "ok"), ("operator.logout", name, "ok"), ("operator.password", name, "ok"),
                 ("operator.remove", name, "ok"), ("operator.remove", name, "failed")):
        assert want in acts, want


def test_the_last_admin_stays(tmp_path):
    """The last admin cannot be removed or demoted: nobody could add one
    back but on the server itself."""
    from socketman_server.db import Store
    from socketman_server.protocol import BadInput
    st = Store("sqlite:///" + str(tmp_path / "a.db"))
    try:
        st.add_operator("root", "admin", "root-password")
        for change in (lambda: st.set_role("root", "operator"), lambda: st.remove_operator("root")):
            with pytest.raises(BadInput, match="last admin"):
                change()
        st.add_operator("second", "admin", "second-password")
        st.set_role("root", "viewer")
        with pytest.raises(BadInput, match="last admin"):
            st.remove_operator("second")
        st.remove_operator("root")
        assert [o["name"] for o in st.operators()] == ["second"]
    finally:
        st.close()


def test_own_password_change(srv, store):
    name = new_operator(store, "viewer")
    a, b = fresh(srv, name), fresh(srv, name)
    r = a.post_form("/account/password", {"current": "wrong-one-1", "new": "a-new-password", "again": "a-new-password"})
    assert r.status == 400 and b"current password is wrong" in r.body
    r = a.post_form("/account/password", {"current": password_of(name), "new": "a-new-password",
                                          "again": "a-new-passwordX"})
    assert r.status == 400
    r = a.post_form("/account/password", {"current": password_of(name), "new": "a-new-password",
                                          "again": "a-new-password"})
    assert r.status == 303
    assert a.get("/whoami.json").status == 200 and b.get("/whoami.json").status == 401
    fresh(srv, name, "a-new-password")


# ---- API tokens ----------------------------------------------------------------------

def bearer(token):
    return {"Authorization": "Bearer " + token}


def test_api_tokens(srv, store):
    name = new_operator(store, "operator")
    s = fresh(srv, name)
    r = s.post_form("/account/tokens", {"name": "ci", "role": "operator"})
    assert r.status == 200
    token = re.search(r'id="new-token-value">([^<]+)<', r.text()).group(1)
    assert token.startswith("smt_") and len(token) > 40
    assert token not in s.get("/account").text()  # shown once
    # Every REST call an operator makes takes it, without cookie or CSRF token.
    r = srv.get("/whoami.json", headers=bearer(token), auth=None)
    assert r.json() == {"name": name, "role": "operator", "via": "token ci"}
    assert "devices" in srv.get("/devices.json", headers=bearer(token), auth=None).json()
    r = srv.post_form("/fleet-jobs", {"command": "echo by token", "target": "all"}, headers=bearer(token), auth=None)
    assert r.status == 201, r
    fid = r.json()["fleet_job"]
    assert srv.get("/fleet-jobs/%d.json" % fid, headers=bearer(token), auth=None).json()["fleet_job"]["created_by"] \
        == name
    rec = audit_rows(store, operator=name, action="fleet-job")[0]
    assert (rec["target"], rec["via"]) == ("#%d" % fid, "token ci")
    # Its last use is shown (on the account page and to admins).
    page = s.get("/account").text()
    assert "never" not in re.search(r'<tr class="token".*?</tr>', page, re.S).group(0)
    # The role of a token is capped by its operator's.
    r = s.post_form("/account/tokens", {"name": "too-high", "role": "admin"})
    assert r.status == 400 and b"cannot be above" in r.body
    ro = srv.token(name, "read-only", "viewer")
    r = srv.post_form("/fleet-jobs", {"command": "x", "target": "all"}, headers=bearer(ro), auth=None)
    assert r.status == 403 and "needs operator" in r.json()["error"]
    # A bad token is refused, and never falls back to a session cookie.
    for h in ("Bearer nope", "Bearer " + token[:-1], "Basic " + token, "Bearer "):
        r = s.request("GET", "/whoami.json", headers={"Authorization": h})
        assert r.status == 401, (h, r)
    # Revoked: refused at once, at the very next request.
    tid = [t for t in store.tokens(name) if t["name"] == "ci"][0]["id"]
    assert fresh(srv, "admin").post_form("/operators/tokens/%d/revoke" % tid, {}).status == 303
    r = srv.get("/devices.json", headers=bearer(token), auth=None)
    assert r.status == 401 and "revoked" in r.json()["error"]
    assert [x["target"] for x in audit_rows(store, action="token.revoke")][0] == name + "/ci"
    # Demoted, the operator's tokens are worth only a viewer's now; removed, nothing.
    op_token = srv.token(name, "second")
    store.set_role(name, "viewer")
    assert srv.get("/whoami.json", headers=bearer(op_token), auth=None).json()["role"] == "viewer"
    store.remove_operator(name)
    assert srv.get("/whoami.json", headers=bearer(op_token), auth=None).status == 401


def test_token_json_answers(srv, store):
    """A script with a token gets JSON, not redirects, from the forms."""
    t = srv.token("admin")
    mac = "02:5e:cd:00:00:%02x" % next(_n)
    r = srv.post_form("/provisioning", {"mac": mac, "name": "scripted"}, headers=bearer(t), auth=None)
    assert r.status == 200 and r.json() == {"admitted": True, "mac": mac.upper()}
    r = srv.post_form("/provisioning", {"mac": "nonsense"}, headers=bearer(t), auth=None)
    assert r.status == 400 and "MAC" in r.json()["error"]
    r = srv.post_form("/fleet-jobs", {"command": "", "target": "all"}, headers=bearer(t), auth=None)
    assert r.status == 400 and r.json()["error"]
    r = srv.post_form("/account/tokens", {"name": "made-by-script"}, headers=bearer(t), auth=None)
    assert r.status == 201 and r.json()["token"].startswith("smt_")


# ---- the audit log -------------------------------------------------------------------

def test_the_audit_log_records_each_action_with_its_operator(srv, store):
    name = new_operator(store, "admin")
    s = fresh(srv, name)
    mac = "02:5e:ca:00:00:%02x" % next(_n)
    url_mac = mac.upper().replace(":", "-")
    steps = [("/provisioning", {"mac": mac, "name": "audited", "config": '{"heartbeat": 120, "password": "s3cr3t"}'}),
             ("/devices/%s/name" % url_mac, {"name": "audited-2"}),
             ("/devices/%s/jobs" % url_mac, {"command": "uptime"}),
             ("/fleet-jobs", {"command": "echo all", "target": "selected", "mac": mac.upper()})]
    for path, fields in steps:
        assert s.post_form(path, fields).status == 303, path
    assert s.get("/devices/%s/config.json" % url_mac).status == 200
    assert s.post_form("/devices/%s/forget" % url_mac, {}).status == 303
    assert s.post_form("/logout", {}).status == 303
    rows = audit_rows(store, operator=name)
    got = [(r["action"], r["target"], r["outcome"]) for r in reversed(rows)]
    fid = store.fleet_jobs(limit=1)[0]["id"]
    assert got == [("login", name, "ok"), ("device.admit", mac.upper(), "ok"), ("device.config", mac.upper(), "ok"),
                   ("device.rename", mac.upper(), "ok"),
                   ("job", mac.upper(), "not sent"), ("fleet-job", "#%d" % fid, "not sent"),
                   ("device.config-file", mac.upper(), "ok"), ("device.forget", mac.upper(), "ok"),
                   ("logout", name, "ok")], got
    by_action = {r["action"]: r for r in rows}
    assert "heartbeat, password" in by_action["device.config"]["detail"]
    assert "s3cr3t" not in json.dumps(rows)  # config values may be secrets: only key names
    assert "uptime" in by_action["job"]["detail"] and "never connected" in by_action["job"]["detail"]
    assert all(r["via"] == "password" and r["address"] for r in rows)
    assert all(abs(r["ts"] - time.time()) < 120 for r in rows)


def test_the_audit_page_filters_and_cannot_be_changed(srv, store):
    name = new_operator(store, "viewer")
    Session(srv, "", "", login=False, headers={"X-Forwarded-For": addr()}).login(name, "not-it-at-all")
    v = fresh(srv, name)
    v.post_form("/fleet-jobs", {"command": "x", "target": "all"})  # denied, and recorded
    page = v.get("/audit?operator=%s&action=request" % name).text()
    rows = re.findall(r'<tr class="audit" data-action="([^"]+)" data-operator="([^"]*)" data-outcome="([^"]+)"', page)
    assert rows == [("request", name, "denied")], rows
    page = v.get("/audit?action=login&outcome=ok&hours=1&target=" + name).text()
    rows = re.findall(r'<tr class="audit" data-action="([^"]+)" data-operator="([^"]*)"', page)
    assert rows == [("login", name)]
    assert v.get("/audit?operator=(nobody)&action=login").text().count('data-operator=""') >= 1
    for junk in ("/audit?hours=soon&before=x&operator=%00", "/audit.json?limit=many&hours=-3&before=",
                 "/audit?target=%25_%5C"):
        assert v.get(junk).status == 200, junk
    data = v.get("/audit.json?limit=3").json()["audit"]
    assert len(data) == 3 and data[0]["id"] > data[1]["id"] > data[2]["id"]
    older = v.get("/audit.json?limit=2&before=%d" % data[1]["id"]).json()["audit"]
    assert older[0]["id"] == data[2]["id"]
    # No route writes it: not the viewer, not an admin, not with a token.
    admin = fresh(srv, "admin")
    admin.get("/audit")  # its CSRF token: these requests are refused for what they ask, not for lacking it
    n = len(audit_rows(store))
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        for path in ("/audit", "/audit.json", "/audit/1"):
            r = admin.request(method, path, body="csrf_token=%s" % admin.csrf,
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
            assert r.status in (404, 405), (method, path, r)
            assert srv.request(method, path, headers=bearer(srv.token("admin")), auth=None).status in (404, 405)
    assert len(audit_rows(store)) >= n  # nothing removed


def test_the_audit_log_is_kept_for_its_retention(srv, store):
    import sqlalchemy as sa

    from socketman_server.schema import audit
    store.audit("someone", "test.old", "x", "ok", "")
    store.audit("someone", "test.new", "x", "ok", "")
    with store.engine.begin() as c:
        c.execute(sa.update(audit).where(audit.c.action == "test.old").values(ts=audit.c.ts - 366 * 86400))
    store.prune_accounts()
    assert audit_rows(store, action="test.old") == [] and len(audit_rows(store, action="test.new")) == 1


# ---- headers, inline code, secrets -----------------------------------------------------

PAGES = ("/", "/live/fleet", "/devices.json", "/fleet-jobs", "/provisioning", "/audit", "/audit.json", "/account",
         "/operators", "/login", "/no-such-page", "/healthz", "/api/boot", "/static/live.js")


def test_security_headers_on_every_response(srv, store):
    dev = store.admit("02:5e:cb:00:00:%02x" % next(_n))
    for path in PAGES + ("/devices/" + dev["mac"].replace(":", "-"),):
        r = srv.get(path)
        h = r.headers
        assert "frame-ancestors 'none'" in h["Content-Security-Policy"], path
        assert "script-src 'self'" in h["Content-Security-Policy"] and "unsafe-inline" not in \
            h["Content-Security-Policy"]
        assert h["X-Frame-Options"] == "DENY" and h["X-Content-Type-Options"] == "nosniff", path
        if not path.startswith("/static/"):
            assert h["Cache-Control"] == "no-store", path
        if h.get("Content-Type", "").startswith("text/html"):
            html = r.text()
            # Nothing inline for the CSP to refuse: scripts are files, no
            # style attributes or elements, no on...= handlers.
            assert not re.search(r"<script(?![^>]*\bsrc=)", html), path
            assert not re.search(r"<style|\sstyle=|\son[a-z]+=", html, re.I), path


def test_passwords_never_appear_in_logs_or_pages(srv, store, tmp_path):
    secret = "Sw0rdfish-%d-zz" % next(_n)
    typo = secret + "!"
    name = new_operator(store, "admin", secret)
    a = Session(srv, "", "", login=False, headers={"X-Forwarded-For": addr()})
    assert a.login(name, typo).status == 401
    assert secret.encode() not in a.login(name, typo).body  # the form is not refilled with it
    assert a.login(name, secret).status == 303
    newer = secret + "-2"
    assert a.post_form("/account/password", {"current": secret, "new": newer, "again": newer}).status == 303
    other = "0ther-Secret-%d" % next(_n)
    assert a.post_form("/operators", {"name": "pw-%d" % next(_n), "role": "viewer", "password": other}).status == 303
    pw_file = tmp_path / "pw"
    cli_secret = "Cl1-secret-%d" % next(_n)
    pw_file.write_text(cli_secret + "\n")
    r = subprocess.run([sys.executable, SERVER_MAIN, "operator", "add", "cli-%d" % next(_n), "--role", "viewer",
                        "--password-file", str(pw_file), "--db", srv.db_url], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    words = [secret, typo, newer, other, cli_secret]
    seen = srv.output() + r.stdout + r.stderr
    for path in PAGES + ("/audit?target=" + name, "/audit.json?limit=1000", "/operators"):
        seen += a.get(path).text()
    import sqlalchemy as sa
    with store.engine.connect() as c:
        for table in ("audit", "operators", "sessions", "api_tokens"):
            seen += json.dumps([list(map(str, row)) for row in c.execute(sa.text("SELECT * FROM " + table))])
    for w in words:
        assert w not in seen, w
    assert "$argon2id$" in seen  # the hashes are what the database keeps


# ---- command line, safe defaults ------------------------------------------------------

def run_cli(*argv, env=None, db=None):
    return subprocess.run([sys.executable, SERVER_MAIN] + list(argv) + (["--db", db] if db else []),
                          capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("listen", ["0.0.0.0:18080", "[::]:18080", "192.0.2.7:18080"])
def test_serve_refuses_the_network_without_an_operator(tmp_path, listen):
    r = run_cli("serve", "--listen", listen, db="sqlite:///" + str(tmp_path / "x.db"))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "operator add NAME --role admin" in lines[0], r.stderr


def test_serve_on_loopback_without_an_operator_says_how_to_add_one(tmp_path):
    s = FleetServer(tmp_path, None, operators=None)
    try:
        s.wait(lambda: "no operator exists yet" in s.output(), 10, "the hint")
        assert "operator add NAME --role admin" in s.output()
        page = s.get("/login", auth=None).text()
        assert 'id="no-operator"' in page
    finally:
        s.stop()


def test_the_ui_password_option_is_gone(tmp_path):
    (tmp_path / "pw").write_text("x\n")
    r = run_cli("serve", "--ui-password-file", str(tmp_path / "pw"), db="sqlite:///" + str(tmp_path / "x.db"))
    assert r.returncode == 2 and "operator add" in r.stderr


@pytest.mark.parametrize("option, words", [(["--session-hours", "0"], "a session lasts"),
                                           (["--session-idle-minutes", "0.01"], "idle time"),
                                           (["--session-hours", "1", "--session-idle-minutes", "120"], "idle time"),
                                           (["--audit-retention-days", "0.5"], "at least a day"),
                                           (["--behind-proxy", "9"], "--behind-proxy"),
                                           (["--listen", "127.0.0.1:99999"], "--listen wants HOST:PORT"),
                                           (["--listen", "nonsense"], "--listen wants HOST:PORT")])
def test_bad_operator_settings_exit_2(tmp_path, option, words):
    r = run_cli("serve", *option, db="sqlite:///" + str(tmp_path / "x.db"))
    assert r.returncode == 2 and words in r.stderr, r.stderr


@pytest.mark.parametrize("db, code, words", [
    ("nonsense://x", 2, "not a database URL"),
    ("sqlite", 2, "not a database URL"),
    # Nothing listens on port 1: the database cannot be reached (and the
    # password in the URL is not repeated).
    ("postgresql://u:hunter2@127.0.0.1:1/x", 1, "cannot open the database postgresql://u:***@127.0.0.1:1/x")])
def test_a_bad_or_unreachable_database_is_one_line(db, code, words):
    r = run_cli("operator", "list", db=db)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == code and len(lines) == 1 and words in lines[0], r.stderr
    assert "hunter2" not in r.stderr and "Traceback" not in r.stderr


def test_cli_operators_tokens_and_whoami(srv, store, tmp_path):
    db = srv.db_url
    name = "cli-op-%d" % next(_n)
    pw = tmp_path / "pw"
    pw.write_text("a-cli-password-1\n")
    r = run_cli("operator", "add", name, "--role", "operator", "--password-file", str(pw), db=db)
    assert r.returncode == 0 and "added operator %s (operator)" % name in r.stdout, r.stderr
    assert run_cli("operator", "add", name, "--role", "viewer", "--generate-password", db=db).returncode == 2
    r = run_cli("operator", "add", "Bad Name", "--role", "viewer", "--generate-password", db=db)
    assert r.returncode == 2 and "operator name" in r.stderr
    r = run_cli("operator", "add", "nopw-%d" % next(_n), "--role", "viewer", db=db)  # no terminal here
    assert r.returncode == 2 and "--password-file" in r.stderr
    r = run_cli("operator", "list", db=db)
    assert re.search(r"^%s\s+operator\s" % name, r.stdout, re.M), r.stdout
    fresh(srv, name, "a-cli-password-1")
    r = run_cli("operator", "password", name, "--generate-password", db=db)
    new = re.search(r"^password: (\S+)$", r.stdout, re.M).group(1)
    fresh(srv, name, new)
    assert run_cli("operator", "role", name, "viewer", db=db).returncode == 0
    assert store.operator(name)["role"] == "viewer"
    assert run_cli("operator", "role", name, "operator", db=db).returncode == 0
    # A token into a file (mode 600), then the three places whoami looks.
    home = tmp_path / "home"
    tfile = home / ".config" / "socketman" / "token"
    r = run_cli("token", "add", name, "laptop", "--out", str(tfile), db=db)
    assert r.returncode == 0 and oct(os.stat(tfile).st_mode & 0o777) == "0o600", r.stderr
    token = tfile.read_text().strip()
    env = dict(os.environ, HOME=str(home), SOCKETMAN_SERVER=srv.url(""))
    env.pop("SOCKETMAN_TOKEN", None)
    r = run_cli("whoami", env=env)
    assert r.returncode == 0 and r.stdout.strip() == "%s operator (token laptop)" % name, r.stderr
    r = run_cli("token", "add", name, "ci", "--role", "viewer", db=db)
    ci = r.stdout.strip()
    assert ci.startswith("smt_") and "not shown again" in r.stderr
    r = run_cli("whoami", env=dict(env, SOCKETMAN_TOKEN=ci))
    assert r.stdout.strip() == "%s viewer (token ci)" % name
    other = tmp_path / "other-token"
    other.write_text(ci + "\n")
    other.chmod(0o644)
    r = run_cli("whoami", "--token-file", str(other), "--server", srv.url(""), env=dict(env, SOCKETMAN_TOKEN=token))
    assert r.stdout.strip() == "%s viewer (token ci)" % name and "read by others" in r.stderr
    r = run_cli("token", "list", "--operator", name, db=db)
    assert "laptop" in r.stdout and "ci" in r.stdout and token not in r.stdout
    tid = [t for t in store.tokens(name) if t["name"] == "laptop"][0]["id"]
    assert run_cli("token", "revoke", str(tid), db=db).returncode == 0
    r = run_cli("whoami", env=env)
    assert r.returncode == 1 and "401" in r.stderr
    assert run_cli("token", "revoke", str(tid), db=db).returncode == 2
    r = run_cli("whoami", env=dict(env, HOME=str(tmp_path / "nohome")))
    assert r.returncode == 2 and "SOCKETMAN_TOKEN" in r.stderr
    (tmp_path / "empty").write_text("\n")
    for bad, words in ((tmp_path / "empty", "is empty"), (tmp_path / "missing", "cannot read")):
        r = run_cli("whoami", "--token-file", str(bad), env=env)
        assert r.returncode == 2 and words in r.stderr, r.stderr
    r = run_cli("whoami", "--server", "ftp://x", env=dict(env, SOCKETMAN_TOKEN=ci))
    assert r.returncode == 2 and "http" in r.stderr
    assert run_cli("operator", "logout", name, db=db).returncode == 0
    assert run_cli("operator", "remove", name, db=db).returncode == 0
    r = run_cli("audit", "--target", name, "--json", db=db)
    got = [json.loads(x) for x in r.stdout.splitlines()]
    assert {g["action"] for g in got} >= {"operator.add", "operator.password", "operator.role", "operator.logout",
                                         "operator.remove", "login"}
    assert all(g["operator"].startswith("cli:") for g in got if g["action"].startswith("operator."))
    r = run_cli("admit", "02:5e:c0:00:00:01", "--name", "by-cli", db=db)
    assert r.returncode == 0
    assert audit_rows(store, action="device.admit", target="02:5E:C0:00:00:01")[0]["operator"].startswith("cli:")


# ---- authentication outside a Flask request (for the tunnel service) -------------------

def test_operator_from_headers_outside_flask(srv, store):
    """auth.operator_for_headers: what an ASGI WebSocket route will call with
    a handshake's headers. The app made here shares the server's database,
    so it reads the real server's cookies (its key is in the database)."""
    from socketman_server import auth
    from socketman_server.app import create_app
    from socketman_server.settings import Settings

    class NoBroker:
        connected = False

    app = create_app(Settings(), store, NoBroker())
    s = fresh(srv, "oper")
    cookie = "socketman_session=" + s.cookies["socketman_session"]
    host = "127.0.0.1:%d" % srv.port
    op = auth.operator_for_headers(app, [(b"host", host.encode()), (b"cookie", cookie.encode()),
                                         (b"origin", ("http://" + host).encode())])
    assert (op.name, op.role, op.via) == ("oper", "operator", "password") and op.can("operator")
    assert not op.can("admin")
    assert auth.operator_for_headers(app, {"Host": host, "Cookie": cookie}).name == "oper"  # no Origin: not a browser
    for origin in ("null", "http://evil.example", "http://127.0.0.1:1"):
        assert auth.operator_for_headers(app, {"Host": host, "Cookie": cookie, "Origin": origin}) is None, origin
    assert auth.operator_for_cookie(app, s.cookies["socketman_session"]).name == "oper"
    assert auth.operator_for_cookie(app, s.cookies["socketman_session"][:-2] + "xx") is None
    assert auth.operator_for_cookie(app, "") is None
    t = srv.token("viewer", "ws")
    assert auth.operator_for_headers(app, {"Authorization": "Bearer " + t}).role == "viewer"
    assert auth.operator_for_token(store, t).name == "viewer"
    # A token header is the only proof looked at when present.
    assert auth.operator_for_headers(app, {"Authorization": "Bearer smt_nope", "Host": host, "Cookie": cookie}) is None
    store.revoke_token(store.tokens("viewer")[0]["id"])
    assert auth.operator_for_token(store, t) is None
    s.post_form("/logout", {})
    assert auth.operator_for_cookie(app, cookie.split("=", 1)[1]) is None
