"""Power cuts during an update (PROTOCOL 10; issue 23 point 2): the agent is
stopped dead at each step of an update (the test hook
SOCKETMAN_UPDATE_STOP=<step>, slots.hook), its process group killed with
SIGKILL, and started again: each time it comes back online with the old
version or the new one, never neither, and the update job gets its
PROCESSED (but for a cut before the job was recorded, which is then never
DELIVERED: lost as any job not yet accepted). Every step on CPython, one a
phase on the native 1.23 bundle, one cut on 32-bit MIPS."""
import time

import pytest

from helpers import runtimes, updates
from helpers.device import BASE, config
from helpers.updates import connect_after, slots_in, state, wait_until
from socketman import VERSION

RUNTIMES = ("cpython", "mpy1.23-bundle", "mips1.23-bundle")
NEW = "9.6.0"
LATER = "the agent stopped during the update; nothing changed"
INTERRUPTED = "rolled back: the trial of %s was interrupted (the agent stopped before it reached the broker)" % NEW
UPDATED = "updated %s -> %s" % (VERSION, NEW)
# step -> what the start after the cut shows: (version online, PROCESSED success, its text), or None: the
# job never was DELIVERED.
CASES = {
    "accept": None,
    "download": (VERSION, False, "not updated: " + LATER),
    "unpack": (VERSION, False, "not updated: " + LATER),
    "check": (VERSION, False, "not updated: " + LATER),
    "staged": (VERSION, False, "not updated: " + LATER),
    "switch": (NEW, True, UPDATED),
    "start": (NEW, True, UPDATED),
    "trial": (VERSION, False, INTERRUPTED),
    "commit": (VERSION, False, INTERRUPTED),
    "committed": (NEW, True, UPDATED),
    "reported": (NEW, True, UPDATED),
}
MIPS_STEPS = ("trial",)
# The native bundle: a cut in each phase (before the trial, in the switch, in the trial, after the
# commit); every step on CPython (the suite's time is bounded).
BUNDLE_STEPS = ("download", "staged", "switch", "trial", "committed")


@pytest.fixture
def served(http_server):
    return updates.file_server(http_server())


def _cut_at(step, agent_cmd, agents, cfg, tmp_path, ctrl, url, sha, job_id="up-cut", t0=0.0, send=True):
    """Run the agent with the hook at step, send the update, wait for the
    hook, cut the power."""
    a = agents(agent_cmd, cfg, tmp_path, env={"SOCKETMAN_UPDATE_STOP": step}, session=True)
    if send:
        connect_after(ctrl, VERSION, t0)
        ctrl.send(updates.job(job_id, url, sha))
    a.wait_log("test hook: stopped at " + step, timeout=90)
    a.power_cut()
    return time.monotonic()


@pytest.mark.parametrize("step", list(CASES))
def test_a_power_cut_at_each_step(step, runtime, agent_cmd, agents, tmp_path, tmp_path_factory, broker,
                                  controllers, served):
    if runtime.startswith("mips") and step not in MIPS_STEPS:
        pytest.skip("under qemu only a cut in the trial: the other steps run on CPython and the native bundle")
    if runtime == "mpy1.23-bundle" and step not in BUNDLE_STEPS:
        pytest.skip("on the native bundle one cut a phase: every step runs on CPython")
    path, sha = updates.archive(tmp_path_factory, NEW, mpy=runtimes.RUNTIMES[runtime][2])
    ctrl = controllers(broker, BASE)
    cfg = config(tmp_path, broker)
    t0 = _cut_at(step, agent_cmd, agents, cfg, tmp_path, ctrl, served(path), sha)
    b = agents(agent_cmd, cfg, tmp_path)
    want = CASES[step]
    if want is None:
        connect_after(ctrl, VERSION, t0)
        time.sleep(1.0)
        assert not [e for e in ctrl.events() if e.get("id") == "up-cut"]
        assert slots_in(cfg) == []
    else:
        version, ok, text = want
        p = ctrl.wait(lambda e: e.get("event_type") == "PROCESSED" and e.get("id") == "up-cut" and e["_t"] > t0,
                      60, "PROCESSED after the cut")["meta"]
        assert (p["success"], p["exit_code"], p["msg"]) == (ok, 0 if ok else 1, text), p
        on = connect_after(ctrl, version, t0)
        # Never neither: the only version that came online after the cut is that one.
        assert {e["meta"]["version"] for e in ctrl.events("CONNECT")
                if e["_t"] > t0 and e["meta"]["online"] == "1"} == {version}, on
        wait_until(lambda: "report" not in state(cfg) if version == NEW else not slots_in(cfg), what="settled")
        if version == NEW:
            assert state(cfg)["current"]["version"] == NEW and slots_in(cfg) == [state(cfg)["current"]["slot"]]
    # And it still runs jobs.
    ctrl.job("after-cut", "echo alive")
    assert ctrl.wait_event("PROCESSED", "after-cut", timeout=30)["meta"]["msg"] == "alive\n"
    assert b.stop() == 0


def test_a_trial_interrupted_twice_rolls_back(runtime, agent_cmd, agents, tmp_path, tmp_path_factory, broker,
                                              controllers, served):
    """Once before the new version ran (the switch), once while it ran: the
    third start runs the version before, which reports the rollback."""
    if runtime.startswith("mips"):
        pytest.skip("on CPython and the native bundle")
    path, sha = updates.archive(tmp_path_factory, NEW, mpy=runtimes.RUNTIMES[runtime][2])
    ctrl = controllers(broker, BASE)
    cfg = config(tmp_path, broker)
    _cut_at("switch", agent_cmd, agents, cfg, tmp_path, ctrl, served(path), sha)
    assert state(cfg)["trial"]["tries"] == 0
    _cut_at("trial", agent_cmd, agents, cfg, tmp_path, ctrl, None, None, send=False)
    assert state(cfg)["trial"]["tries"] == 1
    t0 = time.monotonic()
    c = agents(agent_cmd, cfg, tmp_path)
    p = ctrl.wait_event("PROCESSED", "up-cut", timeout=60)["meta"]
    assert (p["success"], p["exit_code"], p["msg"]) == (False, 1, INTERRUPTED)
    connect_after(ctrl, VERSION, t0)
    assert not [e for e in ctrl.events("CONNECT") if e["meta"].get("version") == NEW and e["meta"]["online"] == "1"
                and e["_t"] > t0]
    wait_until(lambda: not slots_in(cfg), what="the slot removed")
    assert c.stop() == 0
