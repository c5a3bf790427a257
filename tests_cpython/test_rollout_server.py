"""Releases and rollouts in the fleet server (issue 23, PROTOCOL 10), as a
real server process with a real Mosquitto, its devices played by paho
clients (helpers/rollout.py) that download the release from the server
and answer the update job as PROTOCOL 10 says: releases added on the
command line and uploaded on the dashboard, refused archives, a rollout of
10 devices where all pass, one whose canary rolls back (it stops there),
one with a silent device and a failure in a later wave within the
threshold, pause, resume and abort, and a server restart mid-rollout."""
import hashlib
import os
import threading
import time

import pytest

from helpers.broker import Broker
from helpers.fleet import FleetServer, multipart
from helpers.rollout import FakeFleet, add_release, archive

JOB_KEY = "rollout-job-key"
FAST = {"trial": "6", "margin": "2", "offline_wait": "4"}


@pytest.fixture(scope="module")
def broker_m(tmp_path_factory, certs):
    b = Broker(tmp_path_factory.mktemp("broker"), certs)
    yield b
    b.stop()


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    """Update archives of this tree as versions 0.2.0 and 0.3.0 (.py)."""
    tmp = tmp_path_factory.mktemp("releases")
    return {v: archive(tmp, v) for v in ("0.2.0", "0.3.0")}


@pytest.fixture
def srv(tmp_path, broker_m, releases):
    """A server that signs jobs, with release 0.2.0 added from the command line."""
    s = FleetServer(tmp_path, broker_m, job_key=JOB_KEY)
    add_release(s, releases["0.2.0"])
    yield s
    assert s.alive(), "the server died:\n" + s.output()
    s.stop()


@pytest.fixture
def store(srv):
    st = srv.store()
    yield st
    st.close()


@pytest.fixture
def fleet(broker_m, request):
    made = []

    def make(n, **kw):
        f = FakeFleet(broker_m, n, job_key=JOB_KEY, prefix="02:f0:00:%02x:%02x" % (len(made), id(request) % 256),
                      **kw)
        made.append(f)
        return f
    yield make
    for f in made:
        f.stop()


def start(srv, fields, expect=303):
    r = srv.post_form("/rollouts", fields)
    assert r.status == expect, (r, srv.output()[-3000:])
    return int(r.headers["Location"].rsplit("/", 1)[1]) if expect == 303 else r


def wait_rollout(srv, store, rid, states, timeout=60):
    return srv.wait(lambda: store.rollout(rid)["state"] in states and store.rollout(rid), timeout,
                    "rollout #%d %s" % (rid, "/".join(states)))


def device_states(store, rid):
    return {d["mac"]: d["state"] for d in store.rollout_devices(rid)}


def test_release_on_the_command_line_is_served_to_devices(srv, store, releases):
    """`release add` checked and kept it: listed with version, size, hash,
    who and when; the device URL serves exactly those bytes (with its
    .sha256), and the audit log has it."""
    data = open(releases["0.2.0"], "rb").read()
    r = store.release("0.2.0")
    assert (r["sha256"], r["size"], r["form"]) == (hashlib.sha256(data).hexdigest(), len(data), "py")
    assert r["uploaded_by"].startswith("cli:") and r["uploaded_at"] > time.time() - 60
    got = srv.raw("GET", "/api/releases/socketman-0.2.0.tar.gz")
    assert got.status == 200 and got.body == data and got.headers["Content-Type"] == "application/gzip"
    assert srv.raw("GET", "/api/releases/socketman-0.2.0.tar.gz.sha256").text() == \
        "%s  socketman-0.2.0.tar.gz\n" % r["sha256"]
    for bad in ("socketman-9.9.9.tar.gz", "x.tar.gz", "..%2Ffleet.db"):
        assert srv.raw("GET", "/api/releases/" + bad).status == 404
    listed = srv.get("/releases.json").json()["releases"]
    assert [(x["version"], x["sha256"], x["url"]) for x in listed] == [
        ("0.2.0", r["sha256"], srv.url("/api/releases/socketman-0.2.0.tar.gz"))]
    page = srv.get("/releases", auth="viewer").text()
    assert r["sha256"] in page and 'id="release-form"' not in page  # a viewer sees, uploads nothing
    rec = store.audit_log(action="release.add")[0]
    assert (rec["target"], rec["outcome"]) == ("0.2.0", "ok") and r["sha256"] in rec["detail"]


def test_all_pass(srv, store, fleet):
    """10 devices, waves 1, 30 %, rest: every device downloads the release,
    the job is signed, each answers updated; the rollout is done; the fleet
    page and the devices' pages show the new version."""
    f = fleet(10)
    srv.wait(lambda: all((store.device(m) or {}).get("version") == "0.1.0" for m in f.macs()), 20, "10 online")
    assert srv.get("/devices.json").json()["devices"][0]["version"] == "0.1.0"
    rid = start(srv, dict(FAST, release="0.2.0", target="all", waves="1,30%,rest"))
    r = wait_rollout(srv, store, rid, ("done",))
    assert r["waves"] == [1, 3, 6] and r["reason"] == "10 updated"
    rows = store.rollout_devices(rid)
    assert [d["state"] for d in rows] == ["updated"] * 10
    assert all((d["old_version"], d["new_version"]) == ("0.1.0", "0.2.0") for d in rows)
    # Waves in order: nobody of a later wave was sent before the wave before it was over.
    for w in (2, 3):
        assert min(d["sent_at"] for d in rows if d["wave"] == w) >= \
            max(d["finished_at"] for d in rows if d["wave"] == w - 1)
    assert all(d.downloads and not d.errors for d in f.devices)
    job = f[0].jobs[0]
    assert job["meta"]["type"] == "update" and job["meta"]["msg"] == "%s#sha256=%s" % (
        srv.url("/api/releases/socketman-0.2.0.tar.gz"), r["sha256"]) and job["sig"]
    page = srv.get("/").text()
    assert page.count('<td class="version">0.2.0</td>') == 10
    assert 'id="device-version">0.2.0 ' in srv.get("/devices/%s" % f.macs()[0].replace(":", "-")).text()
    acts = [(a["action"], a["outcome"]) for a in store.audit_log(action="rollout.start")] + \
        [(a["action"], a["outcome"]) for a in store.audit_log(action="rollout.done")]
    assert acts == [("rollout.start", "ok"), ("rollout.done", "done")]
    live = srv.get("/live/rollouts/%d" % rid).text()
    assert live.count('data-state="updated"') == 10
    assert srv.get("/rollouts/%d.json" % rid).json()["summary"] == {"updated": 10}


def test_a_canary_that_rolls_back_stops_the_rollout(srv, store, fleet):
    """10 devices; the first one (the canary, wave 1 of 1 device) rolls
    back: the rollout stops there, with why, and nobody else got the job."""
    f = fleet(10, modes={0: "rollback"})
    srv.wait(lambda: all((store.device(m) or {}).get("online") for m in f.macs()), 20, "10 online")
    rid = start(srv, dict(FAST, release="0.2.0", target="selected", mac=f.macs()))
    r = wait_rollout(srv, store, rid, ("stopped",))
    assert r["waves"] == [1, 1, 8] and r["wave"] == 1
    assert "wave 1 of 3: 1 of its 1 devices failed, more than the 0 allowed" in r["reason"]
    assert "rolled back: the new version did not reach the broker" in r["reason"]
    states = device_states(store, rid)
    assert states.pop(f.macs()[0]) == "rolled back" and set(states.values()) == {"waiting"}
    time.sleep(3)  # a tick or two later: still nobody else
    assert [len(d.jobs) for d in f.devices] == [1] + [0] * 9
    rec = store.audit_log(action="rollout.stop")[0]
    assert (rec["operator"], rec["target"], rec["outcome"]) == ("(rollout)", "#%d" % rid, "stopped")
    assert "rolled back" in srv.get("/rollouts/%d" % rid).text()


def gate(devices):
    for d in devices:
        d.gate = threading.Event()


def test_threshold_silent_device_and_restart_mid_rollout(srv, store, fleet):
    """Waves 3, rest; one failure allowed in wave 1, two in wave 2. Wave 2
    holds a device that never answers and one that rolls back. The server
    stops while wave 2's devices run their trial; one of them answers
    meanwhile (its PROCESSED is lost: the broker keeps only its retained
    CONNECT with the new version). The server starts again: the rollout
    goes on where it was, that device counts as updated (its CONNECT), the
    silent one fails after trial + margin, and the rollout is done."""
    f = fleet(10, modes={4: "silent", 6: "rollback"})
    gate(f.devices[3:])
    srv.wait(lambda: all((store.device(m) or {}).get("online") for m in f.macs()), 20, "10 online")
    rid = start(srv, dict(release="0.2.0", target="selected", mac=f.macs(), waves="3,rest", threshold="1,2",
                          trial="15", margin="2"))
    srv.wait(lambda: all(d.downloads for d in f.devices[3:]), 30, "wave 2 downloading")
    # (what the server received before it stops: a message still in flight then is lost, clean sessions)
    srv.wait(lambda: [d["job_state"] for d in store.rollout_devices(rid)[3:]] == ["DELIVERED"] * 7, 30,
             "wave 2's DELIVERED recorded")
    assert store.rollout(rid)["allowed"] == [1, 2]
    srv.stop()
    f[3].gate.set()
    assert f[3].done.wait(10) and f[3].version == "0.2.0"
    srv.start()
    for d in f.devices[4:]:
        d.gate.set()
    r = wait_rollout(srv, store, rid, ("done",), 60)
    assert r["wave"] == 2 and r["reason"] == "1 failed, 1 rolled back, 8 updated", r
    rows = {d["mac"]: d for d in store.rollout_devices(rid)}
    assert rows[f.macs()[3]]["reason"] == "no PROCESSED seen; its CONNECT says it runs 0.2.0"
    assert rows[f.macs()[4]]["reason"] == "no answer within 17 s (delivered)"
    assert rows[f.macs()[6]]["state"] == "rolled back"
    assert all(len(d.jobs) == 1 for d in f.devices)  # nobody was sent it twice across the restart


def test_pause_resume_abort(srv, store, fleet, releases):
    """Pause holds the next wave back (answers are still recorded), resume
    goes on, abort skips the devices not sent yet (a device sent before
    still reports); each in the audit log; a second release is uploaded on
    the dashboard for it; viewers and operators cannot act."""
    r = upload(srv, "socketman-0.3.0.tar.gz", open(releases["0.3.0"], "rb").read())
    assert r.status == 303, r
    assert store.release("0.3.0")["uploaded_by"] == "admin"
    f = fleet(6)
    gate(f.devices[:2])
    srv.wait(lambda: all((store.device(m) or {}).get("online") for m in f.macs()), 20, "6 online")
    rid = start(srv, dict(FAST, release="0.3.0", target="selected", mac=f.macs(), waves="1,1,rest"))
    srv.wait(lambda: f[0].downloads, 20, "the canary's download")
    assert srv.post_form("/rollouts/%d/pause" % rid, {}).status == 303
    f[0].gate.set()
    srv.wait(lambda: device_states(store, rid)[f.macs()[0]] == "updated", 20, "the canary's answer")
    time.sleep(2.5)  # a tick later: wave 2 does not start
    assert store.rollout(rid)["wave"] == 1 and f[1].jobs == []
    assert srv.post_form("/rollouts/%d/pause" % rid, {}).status == 409  # paused already
    assert srv.post_form("/rollouts/%d/resume" % rid, {}).status == 303
    srv.wait(lambda: f[1].downloads, 20, "wave 2")
    assert srv.post_form("/rollouts/%d/abort" % rid, {}).status == 303
    assert store.rollout(rid)["state"] == "aborted"
    f[1].gate.set()
    srv.wait(lambda: device_states(store, rid)[f.macs()[1]] == "updated", 20, "wave 2's answer after the abort")
    states = device_states(store, rid)
    assert [states[m] for m in f.macs()] == ["updated"] * 2 + ["skipped"] * 4
    assert all(d.jobs == [] for d in f.devices[2:])
    assert srv.post_form("/rollouts/%d/resume" % rid, {}).status == 409  # aborted is final
    acts = [a["action"] for a in reversed(store.audit_log(target="#%d" % rid))]
    assert acts == ["rollout.start", "rollout.pause", "rollout.pause", "rollout.resume", "rollout.abort",
                    "rollout.resume"]
    assert [a["outcome"] for a in store.audit_log(target="#%d" % rid)][:2] == ["failed", "ok"]
    assert srv.post_form("/rollouts/%d/resume" % rid, {}, auth="viewer").status == 403
    assert srv.post_form("/rollouts", dict(release="0.3.0", target="all"), auth="oper").status == 403
    assert srv.get("/rollouts.json", auth="viewer").json()["rollouts"][0]["id"] == rid


def upload(srv, name, data, auth="admin"):
    s = srv.session(auth)
    s.get("/releases")
    ctype, body = multipart({"csrf_token": s.csrf}, {"archive": (name, data, "application/gzip")})
    return s.request("POST", "/releases", body=body, headers={"Content-Type": ctype})


def test_bad_uploads_are_refused_and_scripts_get_json(srv, store, releases):
    """On the dashboard and on the command line, a refused archive says why
    (400 on the page, exit 2, the audit log) and keeps nothing: a few of
    the bad archives of test_rollout_plan.py (which checks them all), one
    too big, a version that is there already, an operator who is not an
    admin."""
    from helpers.rollout import bad_archives
    bad = {why: (name, data) for name, data, why in bad_archives(open(releases["0.3.0"], "rb").read())}
    for why in ("not a gzip file", "leaves its folder", "is a link", "no main.py"):
        name, data = bad[why]
        r = upload(srv, name, data)
        assert r.status == 400 and why in r.text(), (why, r)
    r = upload(srv, "socketman-0.2.0.tar.gz", open(releases["0.2.0"], "rb").read())
    assert r.status == 400 and "release 0.2.0 exists already" in r.text() and "the same archive" in r.text()
    r = upload(srv, "big.tar.gz", b"\x1f\x8b" + os.urandom(1024 * 1024 + 1000))
    assert r.status == 400 and "over the 1048576 bytes" in r.text()
    try:
        r = upload(srv, "huge.tar.gz", b"\x1f\x8b" + os.urandom(2 * 1024 * 1024))
        assert r.status == 413  # refused before it is read
    except (BrokenPipeError, ConnectionResetError):
        pass  # refused (and the connection closed) before the body was all sent
    assert srv.alive()
    r = upload(srv, "socketman-0.3.0.tar.gz", open(releases["0.3.0"], "rb").read(), auth="oper")
    assert r.status == 403
    name, data = bad["is a device file"]
    path = os.path.join(srv.dir, name)
    with open(path, "wb") as f:
        f.write(data)
    r = add_release(srv, path, expect_ok=False)
    assert r.returncode == 2 and "is a device file" in r.stderr, r
    assert add_release(srv, releases["0.2.0"], expect_ok=False).returncode == 2
    assert [x["version"] for x in store.releases()] == ["0.2.0"]
    assert os.listdir(os.path.join(srv.dir, "releases")) == [store.release("0.2.0")["sha256"] + ".tar.gz"]
    fails = store.audit_log(action="release.add", outcome="failed")
    assert len(fails) == 8 and any("is a device file" in a["detail"] for a in fails)
    # The same calls for a script with an API token: JSON answers.
    auth = {"Authorization": "Bearer " + srv.token("admin")}
    ctype, body = multipart({}, {"archive": ("socketman-0.3.0.tar.gz", open(releases["0.3.0"], "rb").read(),
                                             "application/gzip")})
    r = srv.raw("POST", "/releases", body=body, headers=dict(auth, **{"Content-Type": ctype}))
    assert r.status == 201 and r.json()["release"]["url"] == srv.url("/api/releases/socketman-0.3.0.tar.gz")
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    r = srv.raw("POST", "/rollouts", body="release=0.3.0&target=version&version=7.7", headers=dict(auth, **form))
    assert (r.status, r.json()) == (400, {"error": "no device to update: none selected"})
    r = srv.raw("POST", "/rollouts", body="release=0.3.0&waves=x", headers=dict(auth, **form))
    assert r.status == 400 and "waves" in r.json()["error"]
    r = srv.raw("POST", "/rollouts/99/abort", headers=auth)
    assert r.status == 404
    kept = os.path.join(srv.dir, "releases", store.release("0.3.0")["sha256"] + ".tar.gz")
    os.rename(kept, kept + ".away")
    r = srv.raw("POST", "/rollouts", body="release=0.3.0", headers=dict(auth, **form))
    assert r.status == 400 and "the archive of release 0.3.0 is missing" in r.json()["error"]
    assert srv.raw("GET", "/api/releases/socketman-0.3.0.tar.gz").status == 404
