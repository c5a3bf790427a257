"""Background commands and their processes (issue 24, items 1-3): a job
runs in a process group of its own, a timed-out job is killed with its
whole group, and a job whose exit status cannot be written is reported as
soon as it ends. The agent as a process on CPython and the native
MicroPython 1.23, a real Mosquitto."""
import os
import shutil
import subprocess
import time

import pytest

from helpers import mounts
from helpers.device import BASE, config

RUNTIMES = ("cpython", "mpy1.23")
CONNECT_S = 20


def busybox_path(tmp_path, without=()):
    """A PATH of BusyBox applets only, as on an OpenWRT router, leaving out
    the applets named in without (stock OpenWRT builds BusyBox without
    setsid)."""
    bb = shutil.which("busybox")
    if bb is None:
        pytest.fail("busybox is needed (tools/need_system.sh installs it)", pytrace=False)
    d = tmp_path / "bb-bin"
    d.mkdir()
    names = subprocess.run([bb, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for name in names:
        if name not in without:
            os.symlink(bb, d / name)
    return str(d)


def start(agents, agent_cmd, tmp_path, broker, controllers, env=None, **kw):
    ctrl = controllers(broker, BASE)
    # In a session of its own, as under procd: a job that kills the agent's
    # process group must not take the test run with it.
    a = agents([shutil.which("setsid")] + agent_cmd, config(tmp_path, broker, **kw), tmp_path, env=env)
    ctrl.wait_event("CONNECT", timeout=CONNECT_S, online="1")
    return a, ctrl


# How the agent finds its tools: "setsid", the system's PATH (util-linux
# setsid, dash); "busybox", BusyBox applets only (its setsid, ash);
# "no-setsid", BusyBox applets without setsid, as on a stock OpenWRT router
# (the agent falls back to start-stop-daemon).
TOOLS = ("setsid", "busybox", "no-setsid")


def tools_env(tmp_path, tools):
    if tools == "setsid":
        return None
    return {"PATH": busybox_path(tmp_path, without=("setsid",) if tools == "no-setsid" else ())}


@pytest.mark.parametrize("tools", TOOLS)
def test_a_job_that_kills_its_process_group_leaves_the_agent_running(agent_cmd, agents, tmp_path, broker,
                                                                     controllers, tools):
    # issue 24, item 1: `trap 'kill 0' EXIT` (common in scripts) sent SIGTERM
    # to the agent's own process group: MicroPython died of it (the broker
    # published the will), CPython stopped; no PROCESSED, no next job.
    a, ctrl = start(agents, agent_cmd, tmp_path, broker, controllers, env=tools_env(tmp_path, tools))
    ctrl.job("group-killer", "echo before; trap 'kill 0' EXIT; sleep 0.2; echo after")
    m = ctrl.wait_event("PROCESSED", "group-killer", timeout=20)["meta"]
    assert m["msg"].startswith("before\nafter\n"), m
    assert m["success"] is False and m["exit_code"] == 143, m  # the job's own end: SIGTERM
    ctrl.job("next", "echo next")
    assert ctrl.wait_event("PROCESSED", "next", timeout=20)["meta"]["msg"] == "next\n"
    assert a.alive(), a.output()
    assert [e for e in ctrl.events("CONNECT") if e["meta"]["online"] == "0"] == []
    # It says how it starts commands.
    assert "session of their own (%s)" % ("start-stop-daemon" if tools == "no-setsid" else "setsid") in a.output()
    assert a.stop() == 0


@pytest.mark.parametrize("tools", ("setsid", "no-setsid"))
def test_a_timed_out_job_is_killed_with_children_that_cleared_their_environment(
        agent_cmd, agents, tmp_path, broker, controllers, tools):
    # issue 24, item 2: the kill found a job's processes by a tag in their
    # environment; `env -i` (or `su -`) drops it, and that child lived on.
    late = tmp_path / "late"
    a, ctrl = start(agents, agent_cmd, tmp_path, broker, controllers, env=tools_env(tmp_path, tools), job_timeout=2)
    ctrl.job("t1", "echo started; env -i /bin/sh -c 'sleep 4; echo late > %s' & sleep 60" % late)
    m = ctrl.wait_event("PROCESSED", "t1", timeout=15)["meta"]
    assert m["exit_code"] == 124 and m["msg"] == "started\n[timed out]", m
    time.sleep(4.5)
    assert not late.exists(), "a child of the timed-out job without its tag lived on"
    assert a.alive()


def test_without_setsid_or_start_stop_daemon_jobs_still_run_and_the_log_says_why(
        agent_cmd, agents, tmp_path, broker, controllers):
    env = {"PATH": busybox_path(tmp_path, without=("setsid", "start-stop-daemon"))}
    a, ctrl = start(agents, agent_cmd, tmp_path, broker, controllers, env=env)
    ctrl.job("plain", "echo plain")
    assert ctrl.wait_event("PROCESSED", "plain", timeout=20)["meta"]["msg"] == "plain\n"
    assert "neither setsid nor start-stop-daemon" in a.output()


def test_a_job_that_fills_cache_dir_is_reported_when_it_ends(agent_cmd, agents, tmp_path, broker, controllers):
    # issue 24, item 3: a job that filled cache_dir (a download into /tmp)
    # ended at once, but its exit status could not be written: the agent
    # waited the whole job_timeout and said "[timed out]", exit 124.
    cache = tmp_path / "cache"
    ctrl = controllers(broker, BASE)
    a = agents(mounts.tmpfs_prefix(cache, 512 * 1024) + agent_cmd,
               config(tmp_path, broker, job_timeout=120), tmp_path)
    ctrl.wait_event("CONNECT", timeout=CONNECT_S, online="1")
    t0 = time.monotonic()
    ctrl.job("filler", "head -c 2000000 /dev/zero > %s/download; exit 3" % cache)
    m = ctrl.wait_event("PROCESSED", "filler", timeout=30)["meta"]
    assert time.monotonic() - t0 < 15, "reported at job_timeout, not when the job ended"
    assert m["success"] is False and m["exit_code"] == 255, m
    assert m["msg"].endswith("[exit status lost: cache_dir full]"), m
    # Room again: jobs run as before.
    os.remove(mounts.seen_by(a.proc.pid, cache / "download"))
    ctrl.job("after", "echo after")
    m = ctrl.wait_event("PROCESSED", "after", timeout=20)["meta"]
    assert m["msg"] == "after\n" and m["exit_code"] == 0, m
    assert a.alive()
