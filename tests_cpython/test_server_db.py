"""The fleet server's database layer (server/socketman_server/db.py) against
SQLite and against a real PostgreSQL started by the test (Debian's
`postgresql`, in a temporary directory on a free loopback port)."""
import itertools
import threading
import time

import pytest

from helpers import fleet  # noqa: F401  (puts server/ on sys.path)
from helpers.fleet import document
from helpers.postgres import Postgres, bindir

_dbs = itertools.count()


@pytest.fixture(scope="session")
def postgres():
    if bindir() is None:
        pytest.skip("PostgreSQL is not installed and could not be installed here (Debian package postgresql; "
                    "tools/need_system.sh installs it when run as root)")
    pg = Postgres()
    yield pg
    pg.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return "sqlite:///" + str(tmp_path / "fleet.db")
    return request.getfixturevalue("postgres").createdb("t%d" % next(_dbs))


def head_revision():
    """The newest migration (the revision a started server is at)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from socketman_server import db
    cfg = Config()
    cfg.set_main_option("script_location", db.MIGRATIONS)
    return ScriptDirectory.from_config(cfg).get_current_head()


@pytest.fixture
def store(db_url):
    from socketman_server.db import Store
    s = Store(db_url)
    yield s
    s.close()


def test_the_migrated_schema_is_the_model(store, db_url):
    """Alembic's migrations make exactly the tables db.py queries."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from socketman_server.db import Store, metadata
    with store.engine.connect() as c:
        assert compare_metadata(MigrationContext.configure(c), metadata) == []
        assert MigrationContext.configure(c).get_current_revision() == head_revision()
    Store(db_url).close()  # a second start (or a second server) migrates nothing and breaks nothing


def test_an_old_database_is_migrated_with_its_data(db_url):
    """A database made by the first release (revision 0001) is brought up to
    date on start, keeping its devices."""
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    from socketman_server import db
    eng = db.engine_for(db_url)
    cfg = Config()
    cfg.set_main_option("script_location", db.MIGRATIONS)
    with eng.begin() as c:
        cfg.attributes["connection"] = c
        command.upgrade(cfg, "0001")
        c.execute(sa.insert(sa.table("devices", sa.column("mac"), sa.column("name"), sa.column("token")))
                  .values(mac="AA:BB:CC:00:00:99", name="old", token="t-old"))
    eng.dispose()
    s = db.Store(db_url)
    try:
        d = s.device("aa:bb:cc:00:00:99")
        assert (d["name"], d["token"], d["config_json"]) == ("old", "t-old", None)
        s.admit("aa:bb:cc:00:00:99", config={"heartbeat": 120})
        assert s.device("aa:bb:cc:00:00:99")["config_json"] == '{"heartbeat": 120}'
    finally:
        s.close()


def test_the_previous_release_is_migrated_keeping_devices_and_history(db_url):
    """A database of the release before operators (revision 0002) with a
    device, its samples, events, a fleet job and its job is upgraded on
    start (0003 and later): all of it is still there, and operators, tokens,
    the audit log and tunnels work on it."""
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config
    from alembic.migration import MigrationContext

    from socketman_server import auth, db
    eng = db.engine_for(db_url)
    cfg = Config()
    cfg.set_main_option("script_location", db.MIGRATIONS)
    now = int(time.time())
    with eng.begin() as c:
        cfg.attributes["connection"] = c
        command.upgrade(cfg, "0002")
        # Written as that release wrote them: plain SQL on its tables.
        c.execute(sa.text("INSERT INTO devices (id, mac, name, token, base, admitted_at, online, model, config_json) "
                          "VALUES (7, 'AA:BB:CC:00:00:77', 'old-lobby', 't-old-77', 'f/k/aa:bb:cc:00:00:77', :t, "
                          ":on, 'Archer C7', '{\"heartbeat\": 120}')"), {"t": now - 86400, "on": True})
        c.execute(sa.text("INSERT INTO samples (device_id, ts, load_1, rx_bytes) VALUES (7, :t, 0.5, 1000), "
                          "(7, :t2, 0.75, 2000)"), {"t": now - 60, "t2": now - 30})
        c.execute(sa.text("INSERT INTO events (device_id, ts, kind, detail) VALUES (7, :t, 'online', '')"),
                  {"t": now - 50})
        c.execute(sa.text("INSERT INTO fleet_jobs (id, created_at, command, type, target) "
                          "VALUES (3, :t, 'uptime', 'cmd', 'all')"), {"t": now - 40})
        c.execute(sa.text("INSERT INTO jobs (job_id, fleet_job_id, device_id, command, type, created_at, state, "
                          "success, exit_code, output, via) VALUES ('j-old', 3, 7, 'uptime', 'cmd', :t, "
                          "'PROCESSED', :ok, 0, 'up 1 day', 'mqtt')"), {"t": now - 40, "ok": True})
    eng.dispose()
    s = db.Store(db_url)
    try:
        with s.engine.connect() as c:
            assert MigrationContext.configure(c).get_current_revision() == head_revision()
        d = s.device("aa:bb:cc:00:00:77")
        assert (d["name"], d["token"], d["online"], d["model"], d["config_json"]) == \
            ("old-lobby", "t-old-77", True, "Archer C7", '{"heartbeat": 120}')
        assert s.device_by_token("t-old-77")["id"] == 7
        assert [(x[0], x[1]) for x in s.samples(7, 0)] == [(now - 60, 0.5), (now - 30, 0.75)]
        assert [e["kind"] for e in s.events(7)] == ["online"]
        f, rows = s.fleet_job(3)
        assert f["command"] == "uptime" and f["created_by"] is None
        assert [(r["job_id"], r["state"], r["output"]) for r in rows] == [("j-old", "PROCESSED", "up 1 day")]
        assert s.fleet_jobs()[0]["counts"] == {"PROCESSED": 1}
        # The new tables, on the migrated database.
        assert not s.has_operators()
        s.add_operator("first", "admin", "first-password")
        token, _ = s.add_token("first", "ci")
        assert s.token_operator(auth.digest(token)).name == "first"
        fid, _ = s.create_jobs([7], "date", "cmd", "one", created_by="first")
        assert s.fleet_job(fid)[0]["created_by"] == "first"
        s.audit("first", "job", "AA:BB:CC:00:00:77", "sent", "date")
        assert s.audit_log(operator="first")[0]["detail"] == "date"
        s.tunnel_add("t-old", d, 22, "j-old", "first", "password", "127.0.0.1", "here")
        assert [t["tunnel_id"] for t in s.device_tunnels(7)[0]] == ["t-old"]
    finally:
        s.close()


def test_tunnels(store):
    """The tunnels' rows (tunnel_records.py): added waiting, written by the
    relaying process's tick (bytes, close requests, forgotten devices, the
    answers to waiting jobs), closed; lost when their process stopped
    writing them; counted per device; gone with a forgotten device."""
    from socketman_server.tunnel_records import LOST_AFTER_S
    dev = store.admit("aa:bb:cc:00:00:31", "Lobby AP")
    other = store.admit("aa:bb:cc:00:00:32", "lobby ap")
    assert [d["mac"] for d in store.devices_named("LOBBY ap")] == ["AA:BB:CC:00:00:31", "AA:BB:CC:00:00:32"]
    assert store.devices_named("") == [] and store.devices_named("cellar") == []
    _, (job,) = store.create_jobs([dev["id"]], "22 ws://x/tunnel/a1", "tunnel", "one", "oper")
    store.tunnel_add("a1", dev, 22, job["job_id"], "oper", "token laptop", "10.0.0.9", "h:1:x")
    store.tunnel_add("a2", dev, 80, None, "oper", "password", "", "h:1:x")
    store.tunnel_add("b1", other, 22, None, "oper", "password", "", "h:1:x")
    assert store.tunnels_open_count(dev["id"]) == 2
    # Nothing asked yet; the job not answered.
    assert store.tunnel_tick(["a1", "a2"], {"a1": (10, 20)}, [job["job_id"]]) == ({}, [], {})
    assert store.tunnel("a1")["bytes_from_device"] == 20
    store.job_event("fleet/k/aa:bb:cc:00:00:31", "aa:bb:cc:00:00:31",
                    {"event_type": "REJECTED", "id": job["job_id"], "meta": {"reason": "port 22 not in tunnel_ports"}})
    store.tunnel_connected("a2")
    assert store.tunnel_request_close("a2", other["id"], "admin") is None  # not that device's
    assert store.tunnel_request_close("a2", dev["id"], "admin")["close_requested_by"] == "admin"
    asked, gone, answered = store.tunnel_tick(["a1", "a2", "zz"], {}, [job["job_id"]])
    assert asked == {"a2": "admin"} and gone == ["zz"]
    assert answered[job["job_id"]]["state"] == "REJECTED"
    store.tunnel_closed("a2", "closed", "closed on the dashboard by admin", 5 * 1024 ** 3, 7)
    assert store.tunnel_request_close("a2", dev["id"], "admin") is None  # closed already
    live, done = store.device_tunnels(dev["id"])
    assert [t["tunnel_id"] for t in live] == ["a1"] and live[0]["state"] == "waiting"
    assert [(t["tunnel_id"], t["outcome"], t["bytes_to_device"]) for t in done] == [("a2", "closed", 5 * 1024 ** 3)]
    assert done[0]["connected_at"] and done[0]["closed_at"]
    # A process that stopped writing its tunnels: they end as "lost".
    assert store.tunnels_lost() == 0
    assert store.tunnels_open_count(dev["id"], now=int(time.time()) + LOST_AFTER_S + 5) == 0
    assert store.tunnels_lost(now=int(time.time()) + LOST_AFTER_S + 5) == 2
    assert store.tunnel("a1")["outcome"] == "lost" and store.tunnel("b1")["state"] == "closed"
    assert store.forget(dev["mac"])
    assert store.tunnel("a1") is None and store.tunnel("b1") is not None


def test_a_closed_tunnel_holds_its_slot_until_the_device_answers(store):
    """PROTOCOL 11's 4 at once as the agent counts them: a tunnel closed here
    whose job the device has not answered yet still holds a slot (the agent
    frees it after its closing handshake, then answers), for SLOT_HELD_S at
    most; an answered one (PROCESSED) frees it at once."""
    from socketman_server.tunnel_records import SLOT_HELD_S
    dev = store.admit("aa:bb:cc:00:00:41", "attic")
    base = "fleet/k/aa:bb:cc:00:00:41"
    _, jobs = store.create_jobs([dev["id"]] * 2, "22 ws://x/tunnel/t", "tunnel", "one", "oper")
    for i, job in enumerate(jobs):
        store.tunnel_add("c%d" % i, dev, 22, job["job_id"], "oper", "password", "", "h:1:x")
        store.tunnel_connected("c%d" % i)
        store.tunnel_closed("c%d" % i, "closed", "the device closed the tunnel", 1, 1)
    assert store.tunnels_open_count(dev["id"]) == 2
    store.job_event(base, "aa:bb:cc:00:00:41", {"event_type": "PROCESSED", "id": jobs[0]["job_id"],
                                                "meta": {"success": True, "msg": "closed: 1 bytes in"}})
    assert store.tunnels_open_count(dev["id"]) == 1
    assert store.tunnels_open_count(dev["id"], now=int(time.time()) + SLOT_HELD_S + 2) == 0


def test_accounts(store, db_url):
    """Operators, sessions, API tokens, the audit log and the server's key on
    SQLite and PostgreSQL."""
    from socketman_server import auth
    from socketman_server.db import Store
    from socketman_server.protocol import BadInput
    op = store.add_operator("Alice", "operator", "alice-password")
    assert op["name"] == "alice" and "password_hash" not in op
    assert store.operator_row("ALICE")["password_hash"].startswith("$argon2id$")
    with pytest.raises(BadInput, match="exists already"):
        store.add_operator("alice", "viewer", "another-password")
    for bad in (("x y", "viewer", "long-enough-pw"), ("bob", "root", "long-enough-pw"), ("bob", "viewer", "short"),
                ("bob", "viewer", "bob"), ("b" * 65, "viewer", "long-enough-pw")):
        with pytest.raises(BadInput):
            store.add_operator(*bad)
    sid = store.create_session(op["id"], 3600, "192.0.2.1", "test")
    assert auth.operator_for_session(store, sid, 600) == auth.Operator(op["id"], "alice", "operator", "password")
    assert auth.operator_for_session(store, sid + "x", 600) is None
    token, row = store.add_token("alice", "laptop", "viewer")
    assert row["prefix"] == token[:10] and row["last_used_at"] is None
    assert auth.operator_for_token(store, token, "192.0.2.2").role == "viewer"
    assert store.tokens("alice")[0]["last_used_address"] == "192.0.2.2"
    with pytest.raises(BadInput, match="above"):
        store.add_token("alice", "admin-one", "admin")
    with pytest.raises(BadInput, match="already"):
        store.add_token("alice", "laptop")
    assert store.revoke_token(row["id"])["name"] == "laptop" and store.revoke_token(row["id"]) is None
    assert auth.operator_for_token(store, token) is None
    store.set_password("alice", "a-new-password")
    assert auth.operator_for_session(store, sid, 600) is None  # a new password ends the sessions
    assert auth.login(store, "alice", "alice-password", "192.0.2.3")[1] == "failed"
    assert auth.login(store, "alice", "a-new-password", "192.0.2.3")[0].name == "alice"
    assert [r["outcome"] for r in store.audit_log(action="login")] == ["ok", "failed"]
    store.audit(None, "x" * 100, "t" * 500, "o" * 100, "d" * 5000, "a" * 100)  # cut, never refused
    r = store.audit_log(action="x" * 40)[0]
    assert (len(r["target"]), len(r["detail"]), r["operator"]) == (200, 2000, "")
    assert store.audit_log(target="t" * 10, limit=1)[0]["id"] == r["id"]
    assert store.audit_log(target="%") == []  # a LIKE wildcard is a plain character here
    # A NUL typed into a login name or a filter (PostgreSQL refuses it in text).
    assert auth.login(store, "ev\x00il", "pw\x00", "192.0.2.9")[1] == "failed"
    assert store.audit_log(target="ev\x00il")[0]["target"] == "ev\\x00il"
    assert store.audit_log(operator="\x00", action="\x00", outcome="\x00") == []
    with pytest.raises(BadInput, match="control"):
        store.add_token("alice", "bad\x00name")
    d = store.admit("aa:bb:cc:00:00:0d", "nul\x00name")
    store.rename(d["mac"], "nul\x00again")
    assert store.device(d["mac"])["name"] == "nulagain"
    other = Store(db_url)
    try:
        assert other.server_key("session") == store.server_key("session") != other.server_key("other")
    finally:
        other.close()
    store.remove_operator("alice")
    assert store.operators() == [] and store.tokens(revoked=True) == []


def test_device_config_keys(store):
    from socketman_server.protocol import BadInput
    d = store.admit("aa:bb:cc:00:00:0b", config='{"heartbeat": 120, "sysroot": "/x"}')
    assert d["config_json"] == '{"heartbeat": 120, "sysroot": "/x"}'
    assert store.admit("aa:bb:cc:00:00:0b")["config_json"] == d["config_json"]  # None keeps it
    for bad in ("[1]", "{nope", '{"token": "mine"}', '{"mac": "aa:bb:cc:00:00:01"}', '{"topic": "a/b"}'):
        with pytest.raises(BadInput):
            store.admit("aa:bb:cc:00:00:0c", config=bad)
    assert store.device("aa:bb:cc:00:00:0c") is None


def test_admit_rename_forget(store):
    from socketman_server.protocol import BadInput
    a = store.admit("aa-bb-cc-00-00-01", "lobby")
    assert a["mac"] == "AA:BB:CC:00:00:01" and a["name"] == "lobby" and len(a["token"]) == 32
    again = store.admit("AA:BB:CC:00:00:01")
    assert again["token"] == a["token"] and again["name"] == "lobby"
    b = store.admit("aa:bb:cc:00:00:02", "x" * 500)
    assert b["token"] != a["token"] and len(b["name"]) == 200
    assert store.device_by_token(a["token"])["id"] == a["id"]
    assert store.device_by_token("") is None and store.device_by_token("nope") is None
    store.rename("AA:BB:CC:00:00:01", "hall")
    assert store.device("aa:bb:cc:00:00:01")["name"] == "hall"
    with pytest.raises(BadInput):
        store.admit("aa:bb:cc:00:00")
    assert store.device("garbage") is None
    store.store_stats(a["id"], [document("aa:bb:cc:00:00:01")], "aa:bb:cc:00:00:01")
    store.create_jobs([a["id"]], "uptime", "cmd", "one")
    assert store.forget("aa:bb:cc:00:00:01") and not store.forget("aa:bb:cc:00:00:01")
    assert store.device("aa:bb:cc:00:00:01") is None and store.samples(a["id"], 0) == []
    assert [d["mac"] for d in store.devices()] == ["AA:BB:CC:00:00:02"]


def test_stats_summary_samples_and_late_batches(store):
    d = store.admit("aa:bb:cc:00:00:03")
    now = int(time.time())
    docs = [document("aa:bb:cc:00:00:03", created_at=now - 60 + 15 * i, load_1=float(i), connected=i,
                     machine_type="model %d" % i) for i in range(4)]
    assert store.store_stats(d["id"], docs, "aa:bb:cc:00:00:03") == 4
    row = store.device("aa:bb:cc:00:00:03")
    assert (row["model"], row["stations"], row["last_doc_at"]) == ("model 3", 3, now - 15)
    # An older batch arriving late (a spool catching up) adds samples but
    # keeps the newest summary.
    store.store_stats(d["id"], [document("aa:bb:cc:00:00:03", created_at=now - 600, machine_type="old")], "x")
    row = store.device("aa:bb:cc:00:00:03")
    assert row["model"] == "model 3"
    assert [s[0] for s in store.samples(d["id"], 0)] == [now - 600, now - 60, now - 45, now - 30, now - 15]
    assert [s[0] for s in store.samples(d["id"], now - 50)] == [now - 45, now - 30, now - 15]


def test_stats_times_and_values_a_database_would_refuse(store):
    """A device clock that is not set, or is ahead, gives "now"; values too
    big for a column, or strings too long for one, do not fail the batch."""
    d = store.admit("aa:bb:cc:00:00:04")
    docs = [document("aa:bb:cc:00:00:04", created_at=12, rx_bytes=2 ** 62, tx_bytes=2 ** 70,
                     connected=2 ** 40, machine_type="m" * 1000, firmware="f" * 300, wan_ip="1" * 100)]
    before = int(time.time())
    assert store.store_stats(d["id"], docs, "aa:bb:cc:00:00:04") == 1
    row = store.device("aa:bb:cc:00:00:04")
    assert (row["model"], row["firmware"], row["wan_ip"], row["stations"]) == ("m" * 200, "f" * 200, "1" * 64, None)
    assert store.store_stats(d["id"], [document("x", created_at=int(time.time()) + 86400)], "x") == 1
    rows = store.samples(d["id"], 0)
    assert len(rows) == 2 and all(before <= r[0] <= int(time.time()) for r in rows)
    assert (rows[0][4], rows[0][5], rows[0][6]) == (2 ** 62, None, None)


def test_status_events(store):
    base = "fleet/k/aa:bb:cc:00:00:05"
    now = int(time.time())
    connect = {"event_type": "CONNECT", "timestamp": now, "meta": {"online": "1"}}
    store.status_event(base, "aa:bb:cc:00:00:05", connect)
    d = store.device("AA:BB:CC:00:00:05")
    assert d["online"] is True and d["base"] == base and d["mac_written"] == "aa:bb:cc:00:00:05"
    assert d["token"] is None  # seen on the broker, not admitted
    store.status_event(base, "aa:bb:cc:00:00:05", dict(connect, meta={"online": "0"}))
    assert store.device("AA:BB:CC:00:00:05")["online"] is False
    store.status_event(base, "aa:bb:cc:00:00:05", {"event_type": "CONFIG_CHANGED", "meta": {"files": ["network"]}})
    kinds = [(e["kind"], e["detail"]) for e in store.events(d["id"])]
    assert kinds == [("config changed", "network"), ("offline", ""), ("online", "")]
    # A retained CONNECT from an hour ago: last seen an hour ago, not now.
    store.status_event("fleet/k/aa:bb:cc:00:00:06", "aa:bb:cc:00:00:06",
                       dict(connect, timestamp=now - 3600), retained=True)
    assert store.device("aa:bb:cc:00:00:06")["last_seen"] == now - 3600
    store.status_event("fleet/k/aa:bb:cc:00:00:07", "aa:bb:cc:00:00:07", dict(connect, timestamp=5), retained=True)
    assert store.device("aa:bb:cc:00:00:07")["last_seen"] is None


def test_connects_by_the_devices_clock_and_in_order_within_a_second(store):
    mac, base = "aa:bb:cc:00:00:08", "fleet/k/aa:bb:cc:00:00:08"
    now = int(time.time())

    def connect(online, ts, version="1.0"):
        store.status_event(base, mac, {"event_type": "CONNECT", "timestamp": ts,
                                       "meta": {"online": online, "version": version}})
        d = store.device(mac)
        return d["online"], d["version"]

    assert connect("1", now - 10) == (True, "1.0")
    # The will of an older session, published late: not applied.
    assert connect("0", now - 20) == (True, "1.0")
    # An update's switch in one second: the old version's clean "0", then
    # the new version's "1" (it was left offline on 1.0 before).
    assert connect("0", now - 5) == (False, "1.0")
    assert connect("1", now - 5, "1.1") == (True, "1.1")
    # A session's will after its own "1", both stamped when it connected.
    assert connect("1", now, "1.1") == (True, "1.1")
    assert connect("0", now) == (False, "1.1")
    # Its will stamped at the connect, its "1" after a slow CONNACK.
    assert connect("1", now + 3, "1.1") == (True, "1.1")
    assert connect("0", now + 1) == (False, "1.1")


def test_jobs_over_mqtt_and_rest(store):
    a = store.admit("aa:bb:cc:00:00:08")
    b = store.admit("aa:bb:cc:00:00:09")
    fid, made = store.create_jobs([a["id"], b["id"]], "uptime", "cmd", "all")
    assert len({j["job_id"] for j in made}) == 2 and all(j["state"] == "SENT" for j in made)
    ja, jb = made
    base_a = "fleet/k/aa:bb:cc:00:00:08"
    store.job_event(base_a, "aa:bb:cc:00:00:08", {"event_type": "DELIVERED", "id": ja["job_id"]})
    assert store.job(ja["job_id"])["state"] == "DELIVERED"
    store.job_event(base_a, "aa:bb:cc:00:00:08", {"event_type": "PROCESSED", "id": ja["job_id"], "meta": {
        "msg": "up 1 day", "success": True, "exit_code": 0, "duration_ms": 12, "type": "cmd"}})
    # A late DELIVERED (broker redelivery) does not undo the result.
    store.job_event(base_a, "aa:bb:cc:00:00:08", {"event_type": "DELIVERED", "id": ja["job_id"]})
    got = store.job(ja["job_id"])
    assert (got["state"], got["output"], got["exit_code"], got["duration_ms"], got["via"]) == \
        ("PROCESSED", "up 1 day", 0, 12, "mqtt")
    # Device a cannot answer for b's job.
    assert store.job_event(base_a, "aa:bb:cc:00:00:08", {"event_type": "PROCESSED", "id": jb["job_id"]}) is None
    assert not store.job_result(a["id"], jb["job_id"], True, "x", 0)
    assert store.job_result(b["id"], jb["job_id"], False, "boom", 2)
    f, rows = store.fleet_job(fid)
    assert f["command"] == "uptime" and [(r["state"], r["exit_code"]) for r in rows] == [("PROCESSED", 0),
                                                                                       ("PROCESSED", 2)]
    fid2, (jc,) = store.create_jobs([a["id"]], "bad", "cmd", "one")
    store.job_event(base_a, "aa:bb:cc:00:00:08", {"event_type": "REJECTED", "id": jc["job_id"],
                                                  "meta": {"reason": "busy"}})
    assert (store.job(jc["job_id"])["state"], store.job(jc["job_id"])["reason"]) == ("REJECTED", "busy")
    assert [f["counts"] for f in store.fleet_jobs()] == [{"REJECTED": 1}, {"PROCESSED": 2}]
    assert [j["job_id"] for j in store.device_jobs(a["id"])] == [jc["job_id"], ja["job_id"]]
    store.job_not_sent(jc["id"], "offline")
    assert store.job(jc["job_id"])["state"] == "NOT SENT"


def test_prune(store):
    d = store.admit("aa:bb:cc:00:00:0a")
    now = int(time.time())
    store.store_stats(d["id"], [document("x", created_at=now - 7200), document("x", created_at=now - 10)], "x")
    store.prune(now - 3600)
    assert [s[0] for s in store.samples(d["id"], 0)] == [now - 10]


def test_two_stores_write_at_once(store, db_url):
    """Several server threads and processes write the same database."""
    from socketman_server.db import Store
    other = Store(db_url)
    devs = [store.admit("aa:bb:cc:00:01:%02x" % i) for i in range(4)]
    errors = []

    def work(s, dev):
        try:
            for i in range(10):
                s.store_stats(dev["id"], [document("x", load_1=float(i))], "x")
                s.status_event("f/k/" + dev["mac"], dev["mac"], {"event_type": "PING"})
        except Exception as e:  # noqa: BLE001 - the test reports any failure
            errors.append(e)
    threads = [threading.Thread(target=work, args=(store if i % 2 else other, d)) for i, d in enumerate(devs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    other.close()
    assert errors == []
    assert all(len(store.samples(d["id"], 0)) == 10 for d in devs)


def test_the_server_runs_on_postgresql(tmp_path, broker, postgres):
    """The whole server on PostgreSQL by changing one URL."""
    from helpers.fleet import FleetServer, stats_body
    srv = FleetServer(tmp_path, broker, db_url=postgres.createdb("srv%d" % next(_dbs)))
    try:
        st = srv.store()
        d = st.admit("aa:bb:cc:00:02:01")
        ctype, body = stats_body([document("aa:bb:cc:00:02:01")])
        r = srv.request("POST", "/api/stats", body=body, headers={"Content-Type": ctype},
                        query={"access_token": d["token"], "mac": "aa:bb:cc:00:02:01"})
        assert r.status == 200, r
        assert st.device("aa:bb:cc:00:02:01")["model"] == "TP-Link Archer C7"
        assert srv.get("/devices/AA-BB-CC-00-02-01").status == 200
        st.close()
    finally:
        srv.stop()


def test_two_servers_meet_a_new_device_at_once(store, db_url):
    """Two server processes that get the first events of a new device at the
    same moment (shared subscriptions) both record them: one inserts the
    device, the other uses that row."""
    from socketman_server.db import Store
    other = Store(db_url)
    errors = []
    macs = ["aa:bb:cc:00:03:%02x" % i for i in range(15)]
    go = threading.Barrier(2)

    def work(s):
        try:
            for mac in macs:
                go.wait(10)
                s.status_event("f/k/" + mac, mac, {"event_type": "CONFIG_CHANGED", "meta": {"files": ["x"]}})
        except Exception as e:  # noqa: BLE001 - the test reports any failure
            errors.append(repr(e))
    threads = [threading.Thread(target=work, args=(s,)) for s in (store, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    other.close()
    assert errors == []
    for mac in macs:
        d = store.device(mac)
        assert d["base"] == "f/k/" + mac
        assert [e["kind"] for e in store.events(d["id"])] == ["config changed"] * 2
