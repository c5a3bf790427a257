"""Updating the agent (PROTOCOL 10) end to end: the agent as a real process
under each runtime, a real Mosquitto, a real HTTP server serving update
archives built from these sources (helpers/updates.py): an update that
switches, commits and reports; a version that raises at start, one that
cannot reach the broker, one built for another MicroPython: each rolled
back or refused; archives refused whole (wrong hash, over the cap, a path
that leaves the slot, a link, no tree); busy; older versions on purpose
and which slots are kept."""
import os
import tarfile

import pytest

from helpers import runtimes, updates
from helpers.device import BASE, config
from helpers.updates import connect_after, slots_in, state, wait_until
from socketman import VERSION

RUNTIMES = ("cpython", "mpy1.23", "mpy1.23-bundle", "mpy1.28-bundle", "mips1.23-bundle")
NEW = "9.1.0"


@pytest.fixture
def served(http_server):
    return updates.file_server(http_server())


def archive_for(runtime, factory, version, patches=()):
    """The update archive this runtime runs: .py sources, or .mpy of its bundle's version."""
    return updates.archive(factory, version, mpy=runtimes.RUNTIMES[runtime][2], patches=patches)


def test_an_update_switches_commits_and_reports(runtime, agent_cmd, agents, tmp_path, tmp_path_factory,
                                               broker, controllers, served):
    path, sha = archive_for(runtime, tmp_path_factory, NEW)
    url = served(path)
    ctrl = controllers(broker, BASE)
    cfg = config(tmp_path, broker)
    a = agents(agent_cmd, cfg, tmp_path)
    connect_after(ctrl, VERSION)
    ctrl.send(updates.job("up-1", url, sha))
    ctrl.wait_event("DELIVERED", "up-1", timeout=30)
    ctrl.job("after-1", "echo queued behind the update")  # run by the new version
    p = ctrl.wait_event("PROCESSED", "up-1", timeout=120)
    assert p["meta"]["success"] is True and p["meta"]["exit_code"] == 0, p
    assert p["meta"]["msg"] == "updated %s -> %s" % (VERSION, NEW) and p["meta"]["type"] == "update"
    # The old one stopped cleanly (online "0", its version), the new one came.
    old_off = connect_after(ctrl, VERSION, online="0")
    new_on = connect_after(ctrl, NEW)
    assert old_off["_t"] < new_on["_t"] < p["_t"]
    after = ctrl.wait_event("PROCESSED", "after-1", timeout=60)
    assert after["meta"]["msg"] == "queued behind the update\n" and after["_t"] > new_on["_t"]
    assert len([e for e in ctrl.events("PROCESSED") if e["id"] == "up-1"]) == 1
    wait_until(lambda: "report" not in state(cfg), what="the report cleared")
    st = state(cfg)
    assert st["current"]["version"] == NEW and st["package"] == VERSION and set(st) == {"current", "package"}
    assert slots_in(cfg) == [st["current"]["slot"]]
    assert st["current"]["slot"] in ("s1", "s2", "s3")
    # Committed: the next start runs it again, and says nothing more about up-1.
    assert a.stop() == 0
    t0 = ctrl.events()[-1]["_t"]
    a = agents(agent_cmd, cfg, tmp_path)
    connect_after(ctrl, NEW, t0)
    assert len([e for e in ctrl.events("PROCESSED") if e["id"] == "up-1"]) == 1
    assert a.stop() == 0


def test_a_version_that_raises_at_start_rolls_back(runtime, agent_cmd, agents, tmp_path, tmp_path_factory,
                                                   broker, controllers, served):
    broken = ("lib/socketman/agent.py", 'cfg, loop = self.cfg, self.loop\n        fs.makedirs(cfg["cache_dir"])',
              'raise RuntimeError("broken on purpose")')
    path, sha = archive_for(runtime, tmp_path_factory, "9.1.1", [broken])
    ctrl = controllers(broker, BASE)
    cfg = config(tmp_path, broker)
    agents(agent_cmd, cfg, tmp_path)
    connect_after(ctrl, VERSION)
    ctrl.send(updates.job("up-bad", served(path), sha))
    p = ctrl.wait_event("PROCESSED", "up-bad", timeout=120)["meta"]
    assert p["success"] is False and p["exit_code"] == 1, p
    assert p["msg"] == "rolled back: 9.1.1 raised RuntimeError: broken on purpose", p
    connect_after(ctrl, VERSION, ctrl.events("DELIVERED")[0]["_t"])  # the version before, by itself
    wait_until(lambda: not os.path.exists(os.path.join(cfg["update_dir"], "state.json")), what="state gone")
    assert slots_in(cfg) == []  # the slot of the version that failed is removed
    ctrl.job("still-1", "echo still here")
    assert ctrl.wait_event("PROCESSED", "still-1", timeout=30)["meta"]["exit_code"] == 0


def test_a_version_that_cannot_reach_the_broker_rolls_back(runtime, agent_cmd, agents, tmp_path, tmp_path_factory,
                                                           broker, controllers, served):
    """update_trial 30 s on a clock 15 times faster: 2 s."""
    if runtime in ("mpy1.23", "mpy1.28-bundle"):
        pytest.skip("the trial's clock is the same code on every MicroPython: the 1.23 bundle and MIPS run it")
    lost = ("lib/socketman/session.py", 'cfg["mqtt_host"], cfg["port"]', 'cfg["mqtt_host"], 1')
    path, sha = archive_for(runtime, tmp_path_factory, "9.1.2", [lost])
    ctrl = controllers(broker, BASE)
    cfg = config(tmp_path, broker, update_trial=30)
    agents(agent_cmd, cfg, tmp_path, env={"SOCKETMAN_TIME_SCALE": "15"})
    connect_after(ctrl, VERSION)
    ctrl.send(updates.job("up-lost", served(path), sha))
    off = connect_after(ctrl, VERSION, online="0", timeout=60)
    p = ctrl.wait_event("PROCESSED", "up-lost", timeout=120)
    assert p["meta"]["success"] is False and p["meta"]["exit_code"] == 1
    assert p["meta"]["msg"] == "rolled back: 9.1.2 did not reach the broker within 30 s", p
    assert p["_t"] - off["_t"] >= 30 / 15 - 0.3  # it had its trial time
    connect_after(ctrl, VERSION, off["_t"])
    assert not [e for e in ctrl.events("CONNECT") if e["meta"].get("version") == "9.1.2"]
    wait_until(lambda: not os.path.exists(os.path.join(cfg["update_dir"], "state.json")), what="state gone")
    assert slots_in(cfg) == []


def _tiny_tree(d, version="9.9.9"):
    os.makedirs(os.path.join(d, "lib", "socketman"))
    with open(os.path.join(d, "main.py"), "w") as f:
        f.write("print('socketman %s')\n" % version)
    with open(os.path.join(d, "lib", "socketman", "__init__.py"), "w") as f:
        f.write('VERSION = "%s"\n' % version)
    return d


def _member(name, kind=tarfile.REGTYPE, data=b"x", link=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    if kind == tarfile.REGTYPE:
        info.size = len(data)
        return info, data
    return info, None


def test_refused_archives_change_nothing(runtime, agent_cmd, agents, tmp_path, tmp_path_factory, broker,
                                         controllers, served):
    """One agent, one refusal after the other: each a PROCESSED false with
    its reason, nothing left in update_dir, the agent still the same."""
    if runtime == "mpy1.23":
        pytest.skip("the 1.23 sources unpack as the 1.23 bundle does, which runs it")
    d = str(tmp_path_factory.mktemp("refused"))
    cases = []

    def add(name, reason, make, mode=None):
        path = os.path.join(d, name + ".tar.gz")
        sha = make(path)
        cases.append((name, served(path, mode=mode), sha, reason))

    good_path, good_sha = archive_for(runtime, tmp_path_factory, NEW)
    cases.append(("wrong-hash", served(good_path), "0" * 64, "SHA-256 mismatch: the archive's is %s, the job "
                                                              "says %s" % (good_sha, "0" * 64)))
    big = os.urandom(300000)
    add("over-cap", "the archive is over update_max_bytes (200000 bytes)",
        lambda p: updates.pack(_tiny_tree(os.path.join(d, "t1")), p, [_member("pad.bin", data=big)]))
    add("over-cap-chunked", "the archive is over update_max_bytes (200000 bytes)",
        lambda p: updates.pack(_tiny_tree(os.path.join(d, "t2")), p, [_member("pad.bin", data=big)]),
        mode="chunked")
    add("escape", "refused the archive: a path that leaves the directory: lib/../../../escaped",
        lambda p: updates.pack(_tiny_tree(os.path.join(d, "t3")), p, [_member("lib/../../../escaped")]))
    add("absolute", "refused the archive: an absolute path: /tmp/escaped",
        lambda p: updates.pack(_tiny_tree(os.path.join(d, "t4")), p, [_member("/tmp/escaped")]))
    add("symlink", "refused the archive: a link: lib/evil",
        lambda p: updates.pack(_tiny_tree(os.path.join(d, "t5")), p,
                               [_member("lib/evil", tarfile.SYMTYPE, link="/etc/passwd")]))
    add("device", "refused the archive: a device file: dev/null",
        lambda p: updates.pack(_tiny_tree(os.path.join(d, "t6")), p, [_member("dev/null", tarfile.CHRTYPE)]))
    add("no-tree", "refused the archive: no main.py and lib/socketman/ at its top",
        lambda p: updates.pack(os.path.join(_tiny_tree(os.path.join(d, "t7")), "lib"), p))
    add("not-gzip", "refused the archive: not a",
        lambda p: open(p, "wb").write(b"plain text, not an archive\n" * 40) and updates.sha_of(p))
    cases.append(("missing", served.server.url("/nowhere.tar.gz"), "1" * 64, "download failed: HTTP 404"))
    # .mpy files of MicroPython 1.12-1.18 (format 5): no runtime here loads them (1.23 to 1.29 write
    # format 6; a tree of .mpy does not start under CPython at all).
    v5_path, v5_sha = updates.archive(tmp_path_factory, "9.1.3", mpy="1.18")
    cases.append(("mpy-v5", served(v5_path), v5_sha, "the new version does not start on this runtime (exit 1: "))
    ctrl = controllers(broker, BASE)
    cfg = config(tmp_path, broker, update_max_bytes=200000)
    a = agents(agent_cmd, cfg, tmp_path)
    connect_after(ctrl, VERSION)
    # Not update jobs at all: REJECTED, nothing run.
    for i, msg in enumerate(("http://127.0.0.1/x.tar.gz", "ftp://127.0.0.1/x.tar.gz#sha256=" + "a" * 64,
                             "http://127.0.0.1/x.tar.gz#sha256=" + "a" * 63, "http://127.0.0.1/x#md5=abc")):
        ctrl.send({"id": "bad-%d" % i, "meta": {"type": "update", "msg": msg}})
        r = ctrl.wait_event("REJECTED", "bad-%d" % i)["meta"]["reason"]
        assert r.startswith("meta.msg must be an http(s) URL ending in #sha256=<64 hex digits>"), r
    # One update at a time: a second one while the first downloads is busy;
    # the same job again (a redelivery) is not run twice.
    slow = served(good_path, "slow.tar.gz", mode="sleep:2")
    ctrl.send(updates.job("up-slow", slow, "2" * 64))
    ctrl.wait_event("DELIVERED", "up-slow")
    ctrl.send(updates.job("up-second", slow, good_sha))
    assert ctrl.wait_event("REJECTED", "up-second")["meta"]["reason"] == "busy: an update is under way"
    ctrl.send(updates.job("up-slow", slow, "2" * 64))
    ctrl.wait(lambda e: e.get("event_type") == "DELIVERED" and e["id"] == "up-slow" and
              len(ctrl.events("DELIVERED")) >= 2, what="DELIVERED again")
    p = ctrl.wait_event("PROCESSED", "up-slow", timeout=60)["meta"]
    assert p["msg"].startswith("SHA-256 mismatch") and p["exit_code"] == 1
    for name, url, sha, reason in cases:
        ctrl.send(updates.job("up-" + name, url, sha))
        p = ctrl.wait_event("PROCESSED", "up-" + name, timeout=60)["meta"]
        assert p["success"] is False and p["exit_code"] == 1, (name, p)
        assert p["msg"].startswith(reason), (name, p["msg"])
    assert not os.path.exists(os.path.join(d, "..", "escaped"))
    wait_until(lambda: not os.path.exists(os.path.join(cfg["update_dir"], "state.json")), what="state gone")
    assert slots_in(cfg) == []
    assert not [e for e in ctrl.events("CONNECT") if e["meta"].get("version") != VERSION]
    assert len([e for e in ctrl.events("PROCESSED") if e["id"] == "up-slow"]) == 1
    ctrl.job("still-1", "echo same agent")
    assert ctrl.wait_event("PROCESSED", "still-1", timeout=30)["meta"]["msg"] == "same agent\n"
    assert a.alive()
