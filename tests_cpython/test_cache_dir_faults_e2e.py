"""cache_dir turning read-only under a running agent (issue 24, item 4), as
flash or a USB stick does after errors: every part of the monitor cycle
goes on (status check, recovery, config watch, uploads), and lines the
server took are never sent again. The agent as a process on CPython and
the native MicroPython 1.23, its cache_dir a tmpfs of its own (a private
mount namespace) that the test remounts read-only and back; a real
Mosquitto and a real HTTP server."""
import json
import time

from helpers import mounts, openwrt
from helpers.device import BASE, config

RUNTIMES = ("cpython", "mpy1.23")


def start(agents, agent_cmd, tmp_path, broker, controllers, api, **kw):
    env, fcfg = openwrt.make(tmp_path)
    env["SOCKETMAN_TIME_SCALE"] = "20"  # a cycle every 0.75 s, an upload every 3 s, a restart after 1.5 s
    cfg = config(tmp_path, broker, **dict(fcfg, stats_url=api.url("/stats"), scan=0, reboot=0,
                                          restart_cmd="date +%%s >> %s" % (tmp_path / "restarts"), **kw))
    ctrl = controllers(broker, BASE)
    a = agents(mounts.tmpfs_prefix(cfg["cache_dir"], 4 << 20) + agent_cmd, cfg, tmp_path, env=env)
    ctrl.wait_event("CONNECT", timeout=20, online="1")
    return a, ctrl, fcfg["sysroot"]


def documents(api, whole=False):
    """The seq of every document the server took with a 2xx, in order
    (whole: the documents)."""
    out = []
    for r in api.got("POST", "/stats"):
        if r.answered and r.answered // 100 == 2:
            out.extend(d if whole else d["device"]["seq"] for d in r.documents())
    return out


def wait_for(cond, timeout, what):
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, what
        time.sleep(0.1)


def test_a_read_only_cache_dir_stops_no_part_of_the_monitor_cycle(agent_cmd, agents, tmp_path, broker,
                                                                  controllers, http_server):
    api = http_server()
    a, ctrl, sysroot = start(agents, agent_cmd, tmp_path, broker, controllers, api)
    wait_for(lambda: len(documents(api)) >= 2, 30, "no upload")
    mounts.remount(a.proc.pid, tmp_path / "cache", "ro")
    before = max(documents(api))
    # The config watch: a change is still published.
    (tmp_path / "etc-config" / "network").write_text("config interface 'wan'\n")
    assert ctrl.wait_event("CONFIG_CHANGED", timeout=20)["meta"] == {"files": ["network"]}
    # The status check and recovery: losing the default route restarts the
    # network (its command runs without files).
    openwrt.set_route(sysroot, False)
    a.wait_log("recovery: offline (status 0)", timeout=20)
    wait_for(lambda: (tmp_path / "restarts").exists(), 20, "no network restart")
    openwrt.set_route(sysroot, True)
    a.wait_log("back online", timeout=20)
    out = a.output()
    assert "cannot start the collection" in out and "Traceback" not in out, out[-3000:]
    # Writable again: documents are collected and go again.
    mounts.remount(a.proc.pid, tmp_path / "cache", "rw")
    wait_for(lambda: max(documents(api)) > before + 2, 30, "no new documents after the remount")
    seqs = documents(api)
    assert len(seqs) == len(set(seqs)), seqs  # none twice
    assert a.alive()


def test_lines_the_server_took_are_not_sent_again_while_cache_dir_is_read_only(agent_cmd, agents, tmp_path, broker,
                                                                             controllers, http_server):
    # issue 24, item 4: on CPython a failed remove of the sent lines was
    # ignored, and they went again at every heartbeat; on MicroPython the
    # system gzip's input could not be written and nothing went at all.
    api = http_server()
    api.script = [(503, b"busy")] * 2  # a backlog builds up first
    a, ctrl, _ = start(agents, agent_cmd, tmp_path, broker, controllers, api)
    a.wait_log("stats: document of", count=6, timeout=30)
    mounts.remount(a.proc.pid, tmp_path / "cache", "ro")
    n_posts = len(api.got("POST", "/stats"))
    wait_for(lambda: len(api.got("POST", "/stats")) > n_posts and documents(api), 30, "no upload while read-only")
    time.sleep(10)  # three more heartbeats
    seqs = documents(api)
    assert seqs and len(seqs) == len(set(seqs)), seqs  # sent, and none twice
    assert seqs == sorted(seqs), seqs
    mounts.remount(a.proc.pid, tmp_path / "cache", "rw")
    wait_for(lambda: max(documents(api)) > max(seqs) + 2, 30, "no new documents after the remount")
    again = documents(api)
    assert len(again) == len(set(again)) and again == sorted(again), again
    # A document made while cache_dir was read-only could not be spooled:
    # each missing one is counted in a later document's "dropped".
    missing = set(range(1, max(again) + 1)) - set(again)
    assert sum(d["device"].get("dropped", 0) for d in documents(api, whole=True)) == len(missing), again
    assert a.alive()


def test_provisioning_and_boot_cmd_go_on_when_their_commands_cannot_be_written(agent_cmd, agents, tmp_path,
                                                                                http_server):
    # The same kind at start: the identify commands' file could not be
    # written (a full /tmp), the provisioning task raised and was tried
    # again only in an hour; boot_cmd's raised out of the agent's start.
    init = http_server()
    env, fcfg = openwrt.make(tmp_path)
    env["SOCKETMAN_TIME_SCALE"] = "15"
    for part in ("provision", "boot"):  # batch.sh cannot be written where a directory stands
        (tmp_path / "cache" / part / "batch.sh").mkdir(parents=True)
    good = config(tmp_path, token="tok-1", boot_cmd="echo booted", **fcfg)
    init.default = (200, json.dumps(good).encode())
    before = {k: v for k, v in good.items() if k not in ("token", "mac", "boot_cmd")}
    (tmp_path / "mac").write_text(good["mac"] + "\n")
    before["mac_file"] = str(tmp_path / "mac")
    a = agents(agent_cmd, before, tmp_path, env=env, args=["-b", init.url("/init")])
    assert init.wait("GET", "/init", count=1, timeout=20)[0].query["mac"] == [good["mac"]]
    a.wait_log("boot: cannot run boot_cmd", timeout=20)
    a.wait_log("monitor: status", timeout=20)  # and the agent runs on
    assert a.alive() and "Traceback" not in a.output()
