"""More of the agent's updates (PROTOCOL 10), on the native 1.23 bundle
only: what runs the same on every runtime and is slow to wait for (a
version that hangs, downloads tried again), and signed update jobs."""
import os
import time

import pytest

from helpers import runtimes, updates
from helpers.device import BASE, config
from helpers.updates import connect_after, state
from socketman import VERSION

RUNTIMES = ("mpy1.23-bundle",)


@pytest.fixture
def served(http_server):
    return updates.file_server(http_server())


def test_a_version_that_hangs_is_killed_and_the_next_start_rolls_back(runtime, agent_cmd, agents, tmp_path,
                                                                      tmp_path_factory, broker, controllers,
                                                                      served):
    """A version that blocks its own loop cannot keep its trial time: the
    watchdog the update left kills the process update_trial + 30 s after
    the switch, and the next start (procd's respawn on a router; the test
    here) rolls back. update_trial 30 s on a clock 10 times faster."""
    hang = ("lib/socketman/agent.py", 'cfg, loop = self.cfg, self.loop\n        fs.makedirs(cfg["cache_dir"])',
            'import time\n        time.sleep(3600)')
    path, sha = updates.archive(tmp_path_factory, "9.7.0", mpy=runtimes.RUNTIMES[runtime][2], patches=[hang])
    ctrl = controllers(broker, BASE)
    cfg = config(tmp_path, broker, update_trial=30)
    env = {"SOCKETMAN_TIME_SCALE": "10"}
    a = agents(agent_cmd, cfg, tmp_path, env=env, session=True)
    connect_after(ctrl, VERSION)
    ctrl.send(updates.job("up-hang", served(path), sha))
    off = connect_after(ctrl, VERSION, online="0")
    assert a.proc.wait(30) == -9, a.output()
    assert a.output().endswith("socketman stopped\n")  # the old one; the new one hung before a word
    assert time.monotonic() - off["_t"] >= (30 + 30) / 10 - 0.5  # not before its time
    t0 = ctrl.events()[-1]["_t"]
    b = agents(agent_cmd, cfg, tmp_path, env=env)
    p = ctrl.wait_event("PROCESSED", "up-hang", timeout=30)["meta"]
    assert p["success"] is False and p["msg"].startswith("rolled back: the trial of 9.7.0 was interrupted"), p
    connect_after(ctrl, VERSION, t0)
    assert b.stop() == 0


def test_signed_update_jobs(runtime, agent_cmd, agents, tmp_path, tmp_path_factory, broker, controllers, served):
    """With job_key (PROTOCOL 9) an update job must be signed like any job:
    the hash in meta.msg is inside the signed text, so no one can swap the
    archive; an unsigned one and one whose hash was changed run nothing."""
    from helpers.signing import JOB_KEY, signed
    path, sha = updates.archive(tmp_path_factory, "9.9.1", mpy=runtimes.RUNTIMES[runtime][2])
    url = served(path)
    ctrl = controllers(broker, BASE)
    cfg = config(tmp_path, broker, job_key=JOB_KEY)
    a = agents(agent_cmd, cfg, tmp_path)
    connect_after(ctrl, VERSION)
    ctrl.send(updates.job("up-unsigned", url, sha))
    assert "signature" in ctrl.wait_event("REJECTED", "up-unsigned")["meta"]["reason"]
    swapped = signed("up-swapped", "%s#sha256=%s" % (url, sha), "update")
    swapped["meta"]["msg"] = "%s#sha256=%s" % (url, "f" * 64)
    ctrl.send(swapped)
    assert "signature" in ctrl.wait_event("REJECTED", "up-swapped")["meta"]["reason"]
    ctrl.send(signed("up-signed", "%s#sha256=%s" % (url, sha), "update"))
    p = ctrl.wait_event("PROCESSED", "up-signed", timeout=120)["meta"]
    assert p["success"] and p["msg"] == "updated %s -> 9.9.1" % VERSION
    assert not os.path.exists(os.path.join(cfg["update_dir"], "state.json")) or "trial" not in state(cfg)
    assert a.stop() == 0


def test_a_download_that_fails_for_a_while_is_tried_again(runtime, agent_cmd, agents, tmp_path, tmp_path_factory,
                                                         broker, controllers, http_server):
    """503 and no answer can change (PROTOCOL 5): the download is tried 3
    times, 10 s then 20 s apart (a clock 10 times faster here); a 404 is
    final at once."""
    path, sha = updates.archive(tmp_path_factory, "9.9.2", mpy=runtimes.RUNTIMES[runtime][2])
    with open(path, "rb") as f:
        data = f.read()
    srv = http_server()
    script = {"/twice.tar.gz": [(503, b"busy"), (200, b"", "close"), (200, data)],
              "/always.tar.gz": [(503, b"busy")] * 3}
    srv.decide = lambda rec: script[rec.path].pop(0) if script.get(rec.path) else (404, b"no")
    ctrl = controllers(broker, BASE)
    cfg = config(tmp_path, broker)
    a = agents(agent_cmd, cfg, tmp_path, env={"SOCKETMAN_TIME_SCALE": "10"})
    connect_after(ctrl, VERSION)
    ctrl.send(updates.job("up-always", srv.url("/always.tar.gz"), sha))
    p = ctrl.wait_event("PROCESSED", "up-always", timeout=60)["meta"]
    assert p["success"] is False and p["msg"] == "download failed: HTTP 503 Service Unavailable", p
    gets = srv.got("GET", "/always.tar.gz")
    assert len(gets) == 3 and gets[1].t - gets[0].t >= 0.7 and gets[2].t - gets[1].t >= 1.5
    ctrl.send(updates.job("up-404", srv.url("/gone.tar.gz"), sha))
    assert ctrl.wait_event("PROCESSED", "up-404", timeout=30)["meta"]["msg"] == "download failed: HTTP 404 Not Found"
    assert len(srv.got("GET", "/gone.tar.gz")) == 1
    ctrl.send(updates.job("up-twice", srv.url("/twice.tar.gz"), sha))
    p = ctrl.wait_event("PROCESSED", "up-twice", timeout=90)["meta"]
    assert p["success"] and p["msg"] == "updated %s -> 9.9.2" % VERSION, p
    assert len(srv.got("GET", "/twice.tar.gz")) == 3
    assert a.stop() == 0


def test_the_ubus_object_says_which_version_runs_and_the_update_state(runtime, agent_cmd, agents, tmp_path,
                                                                     tmp_path_factory, broker, controllers,
                                                                     served, shared_bus):
    """`ubus call socketman status` (PROTOCOL 12) through the real ubusd
    and CLI: "under way" while the update job downloads (the archive held
    back), the new version and "on trial" while it tries (one that cannot
    reach the broker: update_trial 30 s on a clock 5 times faster), then the
    version before, by itself, with no update state."""
    from helpers import openwrt
    from helpers import ubus as hubus
    lost = ("lib/socketman/session.py", 'cfg["mqtt_host"], cfg["port"]', 'cfg["mqtt_host"], 1')
    path, sha = updates.archive(tmp_path_factory, "9.9.3", mpy=runtimes.RUNTIMES[runtime][2], patches=[lost])
    url = served(path)
    served.server.hold = lambda rec: rec.path.endswith(".tar.gz")
    ctrl = controllers(broker, BASE)
    env, fcfg = openwrt.make(tmp_path, hubus.command_profile())
    env.pop("PATH")
    env["SOCKETMAN_TIME_SCALE"] = "5"
    cfg = config(tmp_path, broker, scan=1, ubus_socket=shared_bus.sock, update_trial=30, **fcfg)
    a = agents(agent_cmd, cfg, tmp_path, env=env)
    connect_after(ctrl, VERSION)
    st = hubus.wait_for(lambda: hubus.status(shared_bus, lambda d: d["mqtt"] == "connected"), 20, "connected")
    assert (st["version"], st["update"]) == (VERSION, "")
    ctrl.send(updates.job("up-ubus", url, sha))
    hubus.wait_for(lambda: served.server.got("GET", "/" + os.path.basename(path)), 20, "the download asked")
    st = hubus.status(shared_bus)
    assert (st["version"], st["update"]) == (VERSION, "under way"), st
    served.server.released.set()
    try:
        st = hubus.wait_for(lambda: hubus.status(shared_bus, lambda d: d["version"] == "9.9.3"), 30, "9.9.3")
    except AssertionError:
        raise AssertionError("no status from 9.9.3; the agent said:\n" + a.output()[-6000:]) from None
    assert st["update"] == "on trial" and st["mqtt"] == "disconnected", st
    p = ctrl.wait_event("PROCESSED", "up-ubus", timeout=60)["meta"]
    assert p["msg"] == "rolled back: 9.9.3 did not reach the broker within 30 s", p
    st = hubus.wait_for(lambda: hubus.status(shared_bus, lambda d: d["version"] == VERSION), 20, "back on " + VERSION)
    assert st["update"] == "", st
    assert a.stop() == 0
