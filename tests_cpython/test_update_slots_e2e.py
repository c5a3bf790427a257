"""Which versions an updated device keeps and runs (PROTOCOL 10), on CPython
and the native 1.23 bundle: an older version sent on purpose runs and
stays; the version before is the fallback, older slots go; the trial's
proof without MQTT is a 2xx for a stats upload (the PROCESSED then goes by
REST PATCH); main.py's choice at start (--version, a broken state file,
damaged files, a slot whose files are gone). More in test_update_more_e2e.py."""
import json
import os
import subprocess
import tarfile

import pytest

from helpers import runtimes, updates
from helpers.device import BASE, config
from helpers.updates import connect_after, slots_in, state, wait_until
from socketman import VERSION

RUNTIMES = ("cpython", "mpy1.23-bundle")


@pytest.fixture
def served(http_server):
    return updates.file_server(http_server())


def _archive(runtime, factory, version):
    return updates.archive(factory, version, mpy=runtimes.RUNTIMES[runtime][2])


def _update(ctrl, job_id, url, sha, t0=0.0):
    ctrl.send(updates.job(job_id, url, sha))
    return ctrl.wait_event("PROCESSED", job_id, timeout=120)


def test_older_versions_on_purpose_and_the_slots_kept(runtime, agent_cmd, agents, tmp_path, tmp_path_factory,
                                                     broker, controllers, served, runtime_argv):
    ctrl = controllers(broker, BASE)
    cfg = config(tmp_path, broker)
    a = agents(agent_cmd, cfg, tmp_path)
    connect_after(ctrl, VERSION)
    urls = {}
    for v in ("9.2.0", "0.0.7", "9.3.0"):
        urls[v] = (served(_archive(runtime, tmp_path_factory, v)[0]), _archive(runtime, tmp_path_factory, v)[1])
    p = _update(ctrl, "up-a", *urls["9.2.0"])["meta"]
    assert p["success"] and p["msg"] == "updated %s -> 9.2.0" % VERSION
    first = state(cfg)["current"]["slot"]
    # Older than the running one and than the package: allowed, and it stays.
    p = _update(ctrl, "up-b", *urls["0.0.7"])["meta"]
    assert p["success"] and p["msg"] == "updated 9.2.0 -> 0.0.7", p
    wait_until(lambda: "report" not in state(cfg), what="the report cleared")
    st = state(cfg)
    assert st["current"]["version"] == "0.0.7" and st["fallback"] == {"slot": first, "version": "9.2.0"}
    assert st["package"] == VERSION
    assert slots_in(cfg) == sorted([first, st["current"]["slot"]])
    assert a.stop() == 0
    t0 = ctrl.events()[-1]["_t"]
    a = agents(agent_cmd, cfg, tmp_path)
    connect_after(ctrl, "0.0.7", t0)  # the package (newer, but the same as when it was sent) does not win
    # main.py --version says which version runs (and changes nothing).
    interp = runtime_argv(runtime)
    r = subprocess.run(agent_cmd + ["--version", "--config=" + a.cfg_path], capture_output=True, text=True,
                       timeout=60)
    assert r.stdout == "socketman 0.0.7\n", (interp, r)
    second = st["current"]["slot"]
    p = _update(ctrl, "up-c", *urls["9.3.0"])["meta"]
    assert p["success"] and p["msg"] == "updated 0.0.7 -> 9.3.0"
    wait_until(lambda: "report" not in state(cfg), what="the report cleared")
    st = state(cfg)
    assert st["fallback"] == {"slot": second, "version": "0.0.7"}
    assert slots_in(cfg) == sorted([second, st["current"]["slot"]])  # 9.2.0's slot is gone
    assert a.stop() == 0


def _stage_trial(cfg, runtime, factory, version, job_id):
    """update_dir as an update job leaves it just before the switch: a
    slot holding the new tree, the state naming it on trial."""
    path, _ = _archive(runtime, factory, version)
    slot = os.path.join(cfg["update_dir"], "v%s-test" % version)
    os.makedirs(slot)
    open(os.path.join(slot, ".slot"), "w").close()
    with tarfile.open(path) as t:
        t.extractall(slot, filter="data")
    with open(os.path.join(cfg["update_dir"], "state.json"), "w") as f:
        json.dump({"trial": {"slot": "v%s-test" % version, "version": version, "job": job_id, "from": VERSION,
                             "tries": 0, "at": 0}}, f)


def test_without_mqtt_a_2xx_upload_is_the_proof(runtime, agent_cmd, agents, tmp_path, tmp_path_factory,
                                               http_server):
    api = http_server()
    api.decide = lambda rec: (500, b"down") if rec.path == "/stats" and api.failing else None
    api.failing = False
    base = dict(stats_url=api.url("/stats"), api_url=api.url("/api"), rest=1, token="tok", heartbeat=15)
    env = {"SOCKETMAN_TIME_SCALE": "15"}  # an upload every second; update_trial 30 s: 2 s
    cfg = config(tmp_path, **base, update_trial=30)
    _stage_trial(cfg, runtime, tmp_path_factory, "9.4.0", "up-rest")
    a = agents(agent_cmd, cfg, tmp_path, env=env)
    patch = api.wait("PATCH", "/api/operations/up-rest", timeout=60)[0]
    assert patch.json() == {"success": True, "exit_code": 0, "output": "updated %s -> 9.4.0" % VERSION}
    assert state(cfg)["current"]["version"] == "9.4.0"
    assert "9.4.0 on trial" in a.output() and "socketman 9.4.0 starting" in a.output()
    assert a.stop() == 0
    # The same with an API that answers 500: no proof, rolled back when the trial runs out.
    tmp2 = tmp_path / "second"
    tmp2.mkdir()
    cfg = config(tmp2, **base, update_trial=30)
    _stage_trial(cfg, runtime, tmp_path_factory, "9.4.1", "up-rest-2")
    api.failing = True
    a = agents(agent_cmd, cfg, tmp2, env=env)
    patch = api.wait("PATCH", "/api/operations/up-rest-2", timeout=60)[0]
    assert patch.json() == {"success": False, "exit_code": 1,
                            "output": "rolled back: 9.4.1 did not get a 2xx for a stats upload within 30 s"}
    out = a.output()
    assert out.index("socketman 9.4.1 starting") < out.index("socketman %s starting" % VERSION)
    wait_until(lambda: not os.path.exists(os.path.join(cfg["update_dir"], "state.json")), what="state gone")
    assert slots_in(cfg) == []
    assert a.stop() == 0


def test_main_py_runs_its_own_tree_when_the_state_is_of_no_use(runtime, agent_cmd, agents, tmp_path,
                                                               tmp_path_factory, broker, controllers):
    ctrl = controllers(broker, BASE)
    cfg = config(tmp_path, broker)
    os.makedirs(cfg["update_dir"])
    for junk in (b"{not json", json.dumps({"current": {"slot": "../../etc", "version": "9"}}).encode()):
        with open(os.path.join(cfg["update_dir"], "state.json"), "wb") as f:
            f.write(junk)
        t0 = ctrl.events()[-1]["_t"] if ctrl.events() else 0.0
        a = agents(agent_cmd, cfg, tmp_path)
        connect_after(ctrl, VERSION, t0)
        assert a.stop() == 0, junk
    # A committed update whose files are damaged: main.py runs its own tree.
    broken = os.path.join(cfg["update_dir"], "broken")
    os.makedirs(os.path.join(broken, "lib", "socketman"))
    for name, text in ((".slot", ""), ("main.py", ""), ("lib/socketman/__init__.py", "raise ValueError('damaged')\n")):
        with open(os.path.join(broken, name), "w") as f:
            f.write(text)
    with open(os.path.join(cfg["update_dir"], "state.json"), "w") as f:
        json.dump({"current": {"slot": "broken", "version": "99.1"}, "package": VERSION}, f)
    t0 = ctrl.events()[-1]["_t"]
    a = agents(agent_cmd, cfg, tmp_path)
    connect_after(ctrl, VERSION, t0)
    assert "broken/lib raised ValueError('damaged'" in a.output()  # MicroPython's repr adds a comma
    assert a.stop() == 0
    # A trial whose files are gone: rolled back at start, and said so.
    with open(os.path.join(cfg["update_dir"], "state.json"), "w") as f:
        json.dump({"trial": {"slot": "vanished", "version": "9.5.0", "job": "up-gone", "from": VERSION,
                             "tries": 0}}, f)
    a = agents(agent_cmd, cfg, tmp_path)
    p = ctrl.wait_event("PROCESSED", "up-gone", timeout=30)["meta"]
    assert p["success"] is False and p["msg"] == "rolled back: the files of 9.5.0 are gone"
    assert a.stop() == 0
