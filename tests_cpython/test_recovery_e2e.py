"""Connectivity monitor, recovery, "network" jobs and the config watch end to
end (PROTOCOL 4.1, 6, 7.1, 8), on loopback: listening ports stand for the
internet, closed ports for its absence; the recovery commands are scripts
that append to files."""
import os
import time

import pytest

from helpers import openwrt
from helpers.device import BASE, config
from helpers.internet import Internet, Silent


@pytest.fixture
def internet(tmp_path):
    i = Internet(tmp_path)
    yield i
    i.close()


def device(tmp_path, internet=None, route=True, restart_fixes=False, **kw):
    """The restart command appends a time stamp to a file; with restart_fixes
    it also brings the fake internet back, as a real restart would after a
    bad config was rolled back."""
    env, fcfg = openwrt.make(tmp_path, route=route)
    restarts = tmp_path / "restarts"
    reboots = tmp_path / "reboots"
    up = "touch %s/up; " % internet.ctrl if restart_fixes else ""
    cfg = dict(fcfg, restart_cmd="%secho $(date +%%s.%%N) >> %s" % (up, restarts),
               reboot_cmd="echo $(date +%%s.%%N) >> %s" % reboots)
    if internet:
        cfg.update(internet.config())
    cfg.update(kw)
    return env, cfg


def stamps(path, at_least=0, timeout=10.0):
    """Time stamps the fake command appended (it runs in the background, so
    give it a moment to write)."""
    end = time.monotonic() + timeout
    while True:
        got = [float(x) for x in path.read_text().split()] if path.exists() else []
        if len(got) >= at_least or time.monotonic() > end:
            return got
        time.sleep(0.05)


def test_online_nothing_happens(agent_cmd, agents, tmp_path, internet):
    env, cfg = device(tmp_path, internet)
    env["SOCKETMAN_TIME_SCALE"] = "20"
    a = agents(agent_cmd, config(tmp_path, **cfg), tmp_path, env=env)
    a.wait_log("monitor: status 9", timeout=20)
    time.sleep(5)  # 100 s of agent time
    assert not (tmp_path / "restarts").exists()
    assert "recovery" not in a.output()


def test_offline_restart_backoff_reboot_and_back_online(agent_cmd, agents, tmp_path, internet):
    internet.set(False)
    env, cfg = device(tmp_path, internet, reboot=300)
    env["SOCKETMAN_TIME_SCALE"] = "20"  # 30 s -> 1.5 s, 300 s -> 15 s
    a = agents(agent_cmd, config(tmp_path, **cfg), tmp_path, env=env)
    # Times count from the agent's start, not its interpreter's (seconds
    # under a loaded machine for MicroPython inside CPython).
    a.wait_log(" starting (mac ", timeout=30)
    t0 = time.time()
    a.wait_log("recovery: offline (status 1)", timeout=20)
    a.wait_log("recovery: reboot", timeout=40)
    r = stamps(tmp_path / "restarts", 3)
    assert len(r) >= 3, r
    first = r[0] - t0
    assert 1.3 <= first <= 4.0, first           # 30 s (+ a 15 s check) into the outage
    gaps = [b - a_ for a_, b in zip(r, r[1:])]
    assert 2.2 <= gaps[0] <= 4.5, gaps          # 60 s
    assert 5.2 <= gaps[1] <= 7.5, gaps          # 120 s
    boots = stamps(tmp_path / "reboots", 1)
    assert len(boots) == 1 and 14.3 <= boots[0] - t0 <= 18, boots[0] - t0
    assert (tmp_path / "state.json").read_text() == '{"reboots": 1}'
    internet.set(True)
    a.wait_log("recovery: back online (status 9)", timeout=20)
    n = len(stamps(tmp_path / "restarts"))
    time.sleep(4)
    assert len(stamps(tmp_path / "restarts")) == n  # reset: no more restarts
    assert len(stamps(tmp_path / "reboots")) == 1


def test_recovery_commands_run_even_when_their_files_cannot_be_written(agent_cmd, agents, tmp_path, internet):
    internet.set(False)
    env, cfg = device(tmp_path, internet, reboot=300)
    env["SOCKETMAN_TIME_SCALE"] = "20"
    # batch.sh cannot be written where a directory stands, as on a full /tmp
    os.makedirs(tmp_path / "cache" / "recovery" / "batch.sh")
    a = agents(agent_cmd, config(tmp_path, **cfg), tmp_path, env=env)
    a.wait_log("running the command without it", timeout=20)
    assert len(stamps(tmp_path / "restarts", 1)) == 1
    a.wait_log("recovery: reboot", timeout=40)
    assert len(stamps(tmp_path / "reboots", 1)) == 1


def test_no_default_route_is_offline(agent_cmd, agents, tmp_path, internet, http_server):
    api = http_server()
    env, cfg = device(tmp_path, internet, route=False, stats_url=api.url("/stats"), scan=0)
    env["SOCKETMAN_TIME_SCALE"] = "20"
    a = agents(agent_cmd, config(tmp_path, **cfg), tmp_path, env=env)
    a.wait_log("recovery: offline (status 0)", timeout=20)
    a.wait_log("recovery: restart", timeout=20)
    openwrt.set_route(cfg["sysroot"], True)
    a.wait_log("recovery: back online (status 9)", timeout=20)
    docs = [d for r in api.wait("POST", "/stats", timeout=30) for d in r.documents()]
    assert docs[0]["device"]["status"] == 0
    assert 9 in [d["device"]["status"] for d in api.wait("POST", "/stats", count=2, timeout=30)[-1].documents()]


def test_reboot_guard_doubles_the_wait_after_a_recovery_reboot(agent_cmd, agents, tmp_path, internet):
    internet.set(False)
    (tmp_path / "state.json").write_text('{"reboots": 1}')
    env, cfg = device(tmp_path, internet, reboot=300)
    env["SOCKETMAN_TIME_SCALE"] = "40"
    t0 = time.time()
    a = agents(agent_cmd, config(tmp_path, **cfg), tmp_path, env=env)
    a.wait_log("reboot wait 600 s", timeout=20)
    a.wait_log("recovery: reboot", timeout=40)
    assert 14.5 <= stamps(tmp_path / "reboots", 1)[0] - t0 <= 19  # 600 s / 40
    assert (tmp_path / "state.json").read_text() == '{"reboots": 2}'


def test_damaged_state_file_is_ignored(agent_cmd, agents, tmp_path, internet):
    internet.set(False)
    (tmp_path / "state.json").write_bytes(b"\x00\x00{not json")
    env, cfg = device(tmp_path, internet, reboot=300)
    env["SOCKETMAN_TIME_SCALE"] = "40"
    a = agents(agent_cmd, config(tmp_path, **cfg), tmp_path, env=env)
    out = a.wait_log("recovery: reboot", timeout=40)
    assert "is not JSON, starting afresh" in out
    assert "reboot wait 300 s" in out
    assert (tmp_path / "state.json").read_text() == '{"reboots": 1}'


def test_real_time_restart_after_30_s(micropython, agents, tmp_path, internet):
    """The one run on the real clock: the first restart 30 s into the outage."""
    internet.set(False)
    env, cfg = device(tmp_path, internet)
    t0 = time.time()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    a = agents([micropython, os.path.join(root, "main.py")], config(tmp_path, **cfg), tmp_path, env=env)
    a.wait_log("recovery: offline (status 1)", timeout=20)
    offline_at = time.time()
    a.wait_log("recovery: restart", timeout=60)
    r = stamps(tmp_path / "restarts", 1)
    assert len(r) == 1
    assert 29.5 <= r[0] - offline_at <= 46, r[0] - offline_at  # next 15 s check after 30 s
    assert r[0] - t0 < 50


def start_mqtt(agents, agent_cmd, tmp_path, broker, controllers, internet, scale="20", **kw):
    env, cfg = device(tmp_path, internet, **kw)
    if scale:
        env["SOCKETMAN_TIME_SCALE"] = scale
    ctrl = controllers(broker, BASE)
    a = agents(agent_cmd, config(tmp_path, broker, **cfg), tmp_path, env=env)
    ctrl.wait_event("CONNECT", online="1", timeout=20)
    return a, ctrl


def make_config_dir(tmp_path):
    conf = tmp_path / "etc-config"
    conf.mkdir(exist_ok=True)
    files = {"network": b"config interface 'wan'\n\toption proto 'dhcp'\n",
             "wireless": b"config wifi-iface\n\toption ssid 'Home'\n",
             "dhcp": bytes(range(256))}
    for name, data in files.items():
        (conf / name).write_bytes(data)
    return conf, files


def test_network_job_that_breaks_connectivity_is_rolled_back(agent_cmd, agents, tmp_path, broker, controllers,
                                                             internet):
    conf, files = make_config_dir(tmp_path)
    a, ctrl = start_mqtt(agents, agent_cmd, tmp_path, broker, controllers, internet, restart_fixes=True)
    a.wait_log("monitor: status 9", timeout=20)
    job = ("echo 'option proto static' >> %s/network; rm %s/wireless; echo new > %s/extra; "
           "touch %s/down; while [ -e %s/down ]; do sleep 0.01; done; echo changed"
           % (conf, conf, conf, internet.ctrl, internet.ctrl))
    ctrl.job("net-1", job, type_="network")
    p = ctrl.wait_event("PROCESSED", "net-1", timeout=60)
    m = p["meta"]
    assert m["type"] == "network" and m["success"] is False and m["exit_code"] == 0, m
    assert m["msg"].startswith("changed\n[network: the job took the device offline (status 1, was 9)")
    assert "restored, network restarted, status now 9" in m["msg"]
    assert sorted(os.listdir(conf)) == sorted(files)
    for name, data in files.items():
        assert (conf / name).read_bytes() == data, name
    assert len(stamps(tmp_path / "restarts", 1)) >= 1


def test_network_job_that_keeps_connectivity(agent_cmd, agents, tmp_path, broker, controllers, internet):
    conf, _ = make_config_dir(tmp_path)
    a, ctrl = start_mqtt(agents, agent_cmd, tmp_path, broker, controllers, internet)
    a.wait_log("monitor: status 9", timeout=20)
    ctrl.job("net-ok", "echo 'option mtu 1400' >> %s/network; echo fine" % conf, type_="network")
    m = ctrl.wait_event("PROCESSED", "net-ok", timeout=30)["meta"]
    assert m == {"msg": "fine\n", "type": "network", "success": True, "exit_code": 0,
                 "duration_ms": m["duration_ms"]}
    assert (conf / "network").read_bytes().endswith(b"option mtu 1400\n")
    assert not (tmp_path / "restarts").exists()


def test_network_job_when_already_offline(agent_cmd, agents, tmp_path, broker, controllers, internet):
    make_config_dir(tmp_path)
    internet.set(False)
    a, ctrl = start_mqtt(agents, agent_cmd, tmp_path, broker, controllers, internet, reboot=0)
    a.wait_log("monitor: status 1", timeout=20)
    ctrl.job("net-off", "echo ran", type_="network")
    m = ctrl.wait_event("PROCESSED", "net-off", timeout=60)["meta"]
    assert m["success"] is True and m["exit_code"] == 0
    assert m["msg"] == "ran\n[network: offline before the job (status 1) and after it (status 1): nothing to roll back]"


def test_config_change_is_published_once(agent_cmd, agents, tmp_path, broker, controllers, internet):
    conf, _ = make_config_dir(tmp_path)
    a, ctrl = start_mqtt(agents, agent_cmd, tmp_path, broker, controllers, internet)
    a.wait_log("monitor: status 9", count=3, timeout=20)
    assert ctrl.events("CONFIG_CHANGED") == []  # nothing at start-up
    ctrl.job("edit", "echo \"option ttl '1'\" >> %s/network" % conf)
    ctrl.wait_event("PROCESSED", "edit")
    e = ctrl.wait_event("CONFIG_CHANGED", timeout=20)
    assert e["meta"] == {"files": ["network"]} and e["_topic"] == "status/" + BASE
    time.sleep(3)  # several more monitor cycles
    assert len(ctrl.events("CONFIG_CHANGED")) == 1


def test_a_silent_health_host_never_blocks_jobs(agent_cmd, agents, tmp_path, broker, controllers, internet):
    silent = Silent()
    try:
        a, ctrl = start_mqtt(agents, agent_cmd, tmp_path, broker, controllers, internet, scale=None,
                             health_port=silent.port, monitor=15)
        # Real time: a check starts at 1 s and waits its full 3 s on the silent port, then the agent logs
        # status 6. A warm-up job first: a fresh MicroPython agent's first job can wait for its first stats
        # cycle on a loaded machine, which is not what this test is about.
        ctrl.job("warm", "true")
        ctrl.wait_event("DELIVERED", "warm", timeout=10)
        sent = []  # (time sent, latency s)
        seen = None
        end = time.monotonic() + 12
        i = 0
        while seen is None and time.monotonic() < end:
            i += 1
            t = time.monotonic()
            ctrl.job("q%d" % i, "true")
            d = ctrl.wait_event("DELIVERED", "q%d" % i, timeout=5)
            sent.append((t, d["_t"] - t))
            out = a.output()
            if "monitor: status 6" in out:  # api up, health silent: the check has just ended
                seen = time.monotonic()
            time.sleep(0.1)
        assert seen is not None, a.output()
        # Jobs sent well inside the 3 s the check waited. Had the check blocked the loop, the first of
        # them would have waited about 2 s for it.
        during = [lat for t, lat in sent if seen - 2.5 <= t <= seen - 0.6]
        assert len(during) >= 4, sent
        assert max(during) < 1.0, sent
        assert "recovery" not in out
    finally:
        silent.close()
