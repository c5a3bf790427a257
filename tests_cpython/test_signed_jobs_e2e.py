"""Signed jobs end to end (PROTOCOL 9): a real Mosquitto, the agent as a
process under CPython, MicroPython and the .mpy bundle with job_key set,
jobs signed by tools/sign_job.py (the operator's tool) and sent by an
independent controller or by mosquitto_pub."""
import json
import os
import subprocess
import sys
import time

from helpers.broker import CTRL_PASSWORD, CTRL_USER
from helpers.device import BASE, config
from helpers.signing import JOB_KEY, TOOL, signed

CONNECT_S = 20
MAX_AGE = 60


def start(agents, agent_cmd, tmp_path, broker, controllers, env=None, **kw):
    ctrl = controllers(broker, BASE)
    cfg = config(tmp_path, broker, job_key=JOB_KEY, job_max_age=MAX_AGE, **kw)
    a = agents(agent_cmd, cfg, tmp_path, env=env)
    ctrl.wait_event("CONNECT", timeout=CONNECT_S, online="1")
    return a, ctrl


def no_key_anywhere(a, ctrl):
    """The key is in no log line (DEBUG is on) and no event."""
    assert JOB_KEY not in a.output()
    assert JOB_KEY.encode() not in b"".join(m[1] for m in ctrl.msgs)
    assert JOB_KEY.encode("unicode_escape").decode() not in a.output()


def tool(*args, key_file):
    r = subprocess.run([sys.executable, TOOL, "--key-file", str(key_file)] + list(args),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_only_well_signed_fresh_jobs_run(agent_cmd, agents, tmp_path, broker, controllers):
    a, ctrl = start(agents, agent_cmd, tmp_path, broker, controllers)
    ran = tmp_path / "ran"
    bad = "echo bad >> %s" % ran
    now = int(time.time())

    # The operator's way: the tool prints the job, mosquitto_pub sends it.
    key_file = tmp_path / "fleet.key"
    key_file.write_text(JOB_KEY + "\n", encoding="utf-8")
    job = tool("--id", "good-1", "--", "echo", "signed \u00e9", key_file=key_file)
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-u", CTRL_USER,
                    "-P", CTRL_PASSWORD, "-q", "1", "-t", "sub/" + BASE, "-m", job], check=True, timeout=10)
    p = ctrl.wait_event("PROCESSED", "good-1")
    assert p["meta"]["msg"] == "signed \u00e9\n" and p["meta"]["success"] is True

    def altered(job_id, **change):
        j = signed(job_id, bad)
        for k, v in change.items():
            if k in ("msg", "type"):
                j["meta"][k] = v
            elif v is None:
                del j[k]
            else:
                j[k] = v
        return j

    cases = [
        ("no-sig", altered("no-sig", sig=None), "signature"),
        ("wrong-sig", altered("wrong-sig", sig="ab" * 32), "signature"),
        ("other-key", signed("other-key", bad, key=JOB_KEY + "x"), "signature"),
        ("alt-msg", dict(signed("alt-msg", "true"), meta={"msg": bad, "type": "cmd"}), "signature"),
        ("alt-type", altered("alt-type", type="network"), "signature"),
        ("alt-ts", altered("alt-ts", timestamp=now + 5), "signature"),
        ("str-ts", altered("str-ts", timestamp=str(now)), "signature"),
        ("no-ts", altered("no-ts", timestamp=None), "signature"),
        ("old", signed("old", bad, timestamp=now - MAX_AGE - 30), "expired"),
        ("future", signed("future", bad, timestamp=now + MAX_AGE + 30), "expired"),
    ]
    for _, payload, _ in cases:
        ctrl.send(payload)
    ctrl.job("unsigned", bad)  # an ordinary job of PROTOCOL 4.1
    ctrl.send(signed("after", "echo after"))
    ctrl.wait_event("PROCESSED", "after")
    rejected = {r["id"]: r["meta"]["reason"] for r in ctrl.events("REJECTED")}
    for job_id, _, word in cases + [("unsigned", None, "signature")]:
        assert word in rejected[job_id], (job_id, rejected.get(job_id))
    assert len(rejected) == len(cases) + 1
    assert [e["id"] for e in ctrl.events("PROCESSED")] == ["good-1", "after"]
    assert not ran.exists()
    no_key_anywhere(a, ctrl)
    assert a.alive()


def test_a_signed_job_runs_once_even_after_an_agent_restart(agent_cmd, agents, tmp_path, broker, controllers):
    a, ctrl = start(agents, agent_cmd, tmp_path, broker, controllers)
    side = tmp_path / "side"
    job = signed("once", "echo x >> %s" % side)
    ctrl.send(job)
    ctrl.wait_event("PROCESSED", "once")
    ctrl.send(job)  # a captured copy, sent again at once
    ctrl.send(signed("mark-1", "true"))
    ctrl.wait_event("PROCESSED", "mark-1")
    assert a.stop() == 0
    t_stop = time.monotonic()
    b = agents(agent_cmd, config(tmp_path, broker, job_key=JOB_KEY, job_max_age=MAX_AGE), tmp_path)
    ctrl.wait(lambda e: e.get("event_type") == "CONNECT" and e["meta"]["online"] == "1" and e["_t"] > t_stop,
              CONNECT_S, "CONNECT after the restart")
    ctrl.send(job)  # and again after the restart, still inside job_max_age
    ctrl.send(signed("mark-2", "true"))
    ctrl.wait_event("PROCESSED", "mark-2")
    assert side.read_text() == "x\n"
    assert len([e for e in ctrl.events("PROCESSED") if e["id"] == "once"]) == 1
    assert len([e for e in ctrl.events("DELIVERED") if e["id"] == "once"]) == 3  # answered, not run
    no_key_anywhere(b, ctrl)


def test_a_device_whose_clock_is_in_1970_takes_fresh_signed_jobs(agent_cmd, agents, tmp_path, broker, controllers):
    # The device's clock says 1000 s after 1970, as a router without RTC
    # does until NTP answers: the age check is skipped, the ids still count.
    offset = 1000 - int(time.time())
    a, ctrl = start(agents, agent_cmd, tmp_path, broker, controllers,
                    env={"SOCKETMAN_CLOCK_OFFSET": str(offset)})
    side = tmp_path / "side"
    job = signed("fresh", "echo y >> %s" % side)
    ctrl.send(job)
    p = ctrl.wait_event("PROCESSED", "fresh")
    assert p["timestamp"] < 1704067200  # the device's own clock is in 1970
    ctrl.send(job)
    ctrl.send(signed("hour-old", "echo old", timestamp=int(time.time()) - 3600))
    ctrl.wait_event("PROCESSED", "hour-old")  # no clock to compare with
    bad = signed("tampered", "true")
    bad["meta"]["msg"] = "echo z >> %s" % side
    ctrl.send(bad)
    assert "signature" in ctrl.wait_event("REJECTED", "tampered")["meta"]["reason"]
    assert side.read_text() == "y\n"
    assert len([e for e in ctrl.events("PROCESSED") if e["id"] == "fresh"]) == 1
    no_key_anywhere(a, ctrl)


def test_sign_job_tool(tmp_path):
    key_file = tmp_path / "k"
    key_file.write_text(" " + JOB_KEY + "\r\nthe second line is not the key\n", encoding="utf-8")
    out = tool("--id", "t-1", "--type", "network", "--timestamp", "1760000000", "--", "wifi", "up",
               key_file=key_file)
    job = json.loads(out)
    assert job == signed("t-1", "wifi up", "network", 1760000000)
    assert job["meta"] == {"msg": "wifi up", "type": "network"} and len(job["sig"]) == 64
    assert "\n" not in out and JOB_KEY not in out
    for args, word in ((["--id", "a/b", "x"], "--id"), (["--id", "ok", "--type", "reboot", "x"], "--type"),
                       (["--id", "ok", " "], "command")):
        r = subprocess.run([sys.executable, TOOL, "--key-file", str(key_file)] + args,
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 2 and word in r.stderr, (args, r.stderr)
    for content, word in ((b"", "first line"), (b" \nkey on line 2\n", "first line"), (b"\xff\xfe", "UTF-8"),
                          (None, "cannot read")):
        path = tmp_path / "bad.key"
        if content is None:
            path = tmp_path / "missing.key"
        else:
            path.write_bytes(content)
        r = subprocess.run([sys.executable, TOOL, "--key-file", str(path), "--id", "x", "true"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 2 and word in r.stderr and r.stdout == "", (content, r.stderr)
    assert os.path.exists(TOOL)


def test_the_reference_server_signs_what_the_agent_runs(agent_cmd, agents, tmp_path, broker, controllers):
    # The fleet server (server/, another implementation of PROTOCOL 9) with
    # the key: the device gets it in its config and runs the jobs it sends;
    # a job from anyone else on the broker is refused.
    from helpers.fleet import FleetServer
    srv = FleetServer(tmp_path, broker, job_key=JOB_KEY)
    try:
        mac = "02:e2:00:00:00:51"
        srv.post_form("/provisioning", {"mac": mac})
        served = srv.get("/devices/%s/config.json" % mac.upper().replace(":", "-")).json()
        assert served["job_key"] == JOB_KEY
        d = tmp_path / "device"
        d.mkdir()
        a = agents(agent_cmd, config(d, **dict(served, mac=mac)), d)
        st = srv.store()
        srv.wait(lambda: (st.device(mac) or {}).get("online"), CONNECT_S, "the device online")
        r = srv.post_form("/fleet-jobs", {"command": "echo signed by the server", "type": "cmd",
                                          "target": "selected", "mac": [mac.upper()]})
        fid = int(r.headers["Location"].rsplit("/", 1)[1])

        def done():
            rows = st.fleet_job(fid)[1]
            return rows if rows and rows[0]["state"] == "PROCESSED" else None
        row = srv.wait(done, 30, "the signed job's result")[0]
        assert row["output"] == "signed by the server\n" and row["success"]
        ctrl = controllers(broker, "%s/%s/%s" % (served["topic"], served["key"], mac))
        ctrl.job("not-from-the-server", "echo nope")
        assert "signature" in ctrl.wait_event("REJECTED", "not-from-the-server")["meta"]["reason"]
        assert JOB_KEY not in a.output()
        st.close()
    finally:
        srv.stop()
