"""Provisioning end to end (PROTOCOL 3): the agent as a process with `-b`,
a real local init server, a real Mosquitto. The clock runs 15 times faster:
the first request comes within a second, the back-off is 1 s, then 2 s."""
import json
import os
import signal
import sys
import time

from helpers import openwrt
from helpers.device import BASE, config

FAST = {"SOCKETMAN_TIME_SCALE": "15"}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET = "fleet-secret-7f3a9"
WAN_MAC = "a0:f3:c1:4e:22:10"


def device(tmp_path):
    """(env, a fake router's sysroot) with a WAN device eth0.1 (the ubus
    capture names it) whose MAC is in /sys/class/net."""
    env, fcfg = openwrt.make(tmp_path)
    env.update(FAST)
    root = fcfg["sysroot"]
    os.makedirs(os.path.join(root, "sys/class/net/eth0.1"))
    with open(os.path.join(root, "sys/class/net/eth0.1/address"), "w") as f:
        f.write(WAN_MAC + "\n")
    return env, root


def args(init, tmp_path, secret=True):
    a = ["-b", init.url("/init?fleet=eu")]
    if secret:
        path = tmp_path / "secret"
        path.write_text(SECRET + "\n")
        a += ["--secret-file", str(path)]
    return a


def test_bad_answers_then_a_good_config_in_the_same_process(agent_cmd, agents, tmp_path, broker, controllers,
                                                             http_server):
    init = http_server()
    env, root = device(tmp_path)
    good = config(tmp_path, broker, token="tok-provisioned", sysroot=root)
    # The good answer waits 0.3 s (the agent's 10 s timeout is 0.67 s at 15x).
    init.script = [(404, b"unknown device"),
                   (200, json.dumps(dict(good, port=0)).encode()),  # fails the checks: not written
                   (200, json.dumps(good).encode(), "sleep:0.3")]
    init.default = (404, b"asked once too often")
    before = {k: v for k, v in config(tmp_path).items() if k != "mac"}  # no token, no mac: mac_file
    (tmp_path / "mac").write_text("AA-BB-CC-DD-EE-01\n")
    before["mac_file"] = str(tmp_path / "mac")
    ctrl = controllers(broker, BASE)
    a = agents(agent_cmd, before, tmp_path, env=env, args=args(init, tmp_path))
    reqs = init.wait("GET", "/init", count=3, timeout=30)
    # The third answer is on its way: the config is still the one we wrote.
    assert json.loads((tmp_path / "config.json").read_text()) == before
    ctrl.wait_event("CONNECT", timeout=30, online="1")  # same process, no restart
    ctrl.job("after-provisioning", "echo provisioned")
    assert ctrl.wait_event("PROCESSED", "after-provisioning")["meta"]["msg"] == "provisioned\n"
    assert a.alive()
    assert json.loads((tmp_path / "config.json").read_text()) == good
    for r in reqs:
        assert r.query == {"fleet": ["eu"], "mac": ["AA-BB-CC-DD-EE-01"],
                           "machine": ["TP-Link TL-WR1043N/ND v4"], "firmware": ["18.06.5"]}
        assert r.headers["Authorization"] == "Bearer " + SECRET
    assert reqs[1].t - reqs[0].t >= 0.6 and reqs[2].t - reqs[1].t >= 1.4  # 15 s, then 30 s, at 15x
    out = a.output()
    assert "HTTP 404" in out and "not a usable config" in out and "port" in out
    assert out.count("starting (mac") == 1
    assert SECRET not in out and "tok-provisioned" not in out
    assert not (tmp_path / "config.json.tmp").exists()


def test_a_router_with_only_b_and_a_secret_file(agent_cmd, agents, tmp_path, broker, controllers, http_server):
    init = http_server()
    env, root = device(tmp_path)
    env["SOCKETMAN_SYSROOT"] = root  # the device's / is there: no /etc/mac, a WAN device
    served = config(tmp_path, broker, token="tok-router")
    del served["mac"]
    init.default = (201, json.dumps(served).encode())
    ctrl = controllers(broker, "%s/%s/%s" % (served["topic"], served["key"], WAN_MAC))
    a = agents(agent_cmd, None, tmp_path, env=env, args=args(init, tmp_path))
    r = init.wait("GET", "/init", timeout=20)[0]
    assert r.query["mac"] == [WAN_MAC] and r.query["machine"] == ["TP-Link TL-WR1043N/ND v4"]
    ctrl.wait_event("CONNECT", timeout=30, online="1")
    ctrl.job("first-job", "echo hello from a new router")
    assert ctrl.wait_event("PROCESSED", "first-job")["meta"]["msg"] == "hello from a new router\n"
    written = json.loads((tmp_path / "config.json").read_text())
    assert written == dict(served, mac=WAN_MAC)  # the MAC it asked with
    assert len(init.got()) == 1 and a.alive()


def test_a_refused_device_asks_again_only_in_an_hour_and_stops_cleanly(agent_cmd, agents, tmp_path, http_server):
    init = http_server()
    init.default = (403, b"not one of ours")
    env, root = device(tmp_path)
    a = agents(agent_cmd, config(tmp_path, sysroot=root), tmp_path, env=env, args=args(init, tmp_path))
    init.wait("GET", "/init", timeout=20)
    a.wait_log("refuses this device")
    stat = "/proc/%d/stat" % a.proc.pid

    def cpu():
        f = open(stat).read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    c0 = cpu()
    time.sleep(4)  # a minute of the agent's time: no new request, no busy loop
    assert cpu() - c0 < 0.5
    assert len(init.got()) == 1
    assert a.output().count("refuses this device") == 1
    assert a.stop() == 0  # Ctrl-C while it waits
    assert not (tmp_path / "config.json").read_text().count("token")


def test_401_from_the_stats_api_provisions_again_and_keeps_the_documents(agent_cmd, agents, tmp_path,
                                                                        http_server):
    init, api = http_server(), http_server()
    env, root = device(tmp_path)
    api.decide = lambda r: (200, b"{}") if r.query.get("access_token") == ["tok-new"] else (401, b"no")
    old = config(tmp_path, stats_url=api.url("/stats"), token="tok-old", sysroot=root, scan=0)
    init.default = (200, json.dumps(dict(old, token="tok-new")).encode())
    a = agents(agent_cmd, old, tmp_path, env=env, args=args(init, tmp_path))
    init.wait("GET", "/init", timeout=30)
    api.wait("POST", "/stats", count=2, timeout=30)
    refused = api.got()[0]
    assert refused.query["access_token"] == ["tok-old"] and refused.answered == 401
    key = [(d["device"]["created_at"], d["device"]["seq"]) for d in refused.documents()]
    delivered = [(d["device"]["created_at"], d["device"]["seq"]) for r in api.got()[1:]
                 if r.query["access_token"] == ["tok-new"] for d in r.documents()]
    assert delivered[:len(key)] == key  # the documents of before were kept, and go first
    assert a.alive() and "asking the init server for a new config" in a.output()
    assert json.loads((tmp_path / "config.json").read_text())["token"] == "tok-new"
    assert a.stop() == 0
    out = a.output()
    assert "tok-old" not in out and "tok-new" not in out


def test_bad_secret_file_and_bad_command_line(agent_cmd, agents, tmp_path, http_server):
    init = http_server()
    for extra, word in ((["--secret-file", str(tmp_path / "missing")], "cannot read"),
                        (["--secret-file", str(tmp_path)], "cannot read")):
        a = agents(agent_cmd, config(tmp_path), tmp_path, args=["-b", init.url("/i")] + extra)
        assert a.proc.wait(20) == 2
        assert word in a.output()
    a = agents(agent_cmd, config(tmp_path), tmp_path, args=["--secret-file", str(tmp_path / "s")])
    assert a.proc.wait(20) == 2 and "only used with -b" in a.output()
    # A provisioned device does not need the secret now: it runs, and says so.
    a = agents(agent_cmd, config(tmp_path, token="tok-have"), tmp_path,
               args=["-b", init.url("/i"), "--secret-file", str(tmp_path / "missing")])
    a.wait_log("asked without it")
    assert a.alive() and a.stop() == 0
    # Without -b a missing config is an error, with -b it is provisioned.
    os.remove(tmp_path / "config.json")
    a = agents(agent_cmd, None, tmp_path)
    assert a.proc.wait(20) == 2
    assert init.got() == []


def test_sigterm_is_a_clean_stop_under_cpython(agents, tmp_path, broker, controllers):
    # MicroPython has no signal module: its launcher turns SIGTERM into SIGINT.
    ctrl = controllers(broker, BASE)
    a = agents([sys.executable, os.path.join(ROOT, "main.py")], config(tmp_path, broker), tmp_path)
    ctrl.wait_event("CONNECT", online="1", timeout=20)
    time.sleep(1)
    a.proc.send_signal(signal.SIGTERM)
    assert a.proc.wait(10) == 0
    assert "socketman stopped" in a.output()
    ctrl.wait_event("CONNECT", online="0", timeout=5)
    assert "Received DISCONNECT from sm-" in broker.output()  # its own online "0", not the will


def test_a_device_without_a_mac_yet_looks_again(agent_cmd, agents, tmp_path, http_server):
    init = http_server()
    init.default = (404, b"not yet")
    env, root = device(tmp_path)
    env["SOCKETMAN_SYSROOT"] = root
    os.remove(os.path.join(root, "sys/class/net/eth0.1/address"))  # the WAN device has no MAC yet
    a = agents(agent_cmd, None, tmp_path, env=env, args=args(init, tmp_path))
    a.wait_log("no MAC address", timeout=20)
    with open(os.path.join(root, "sys/class/net/eth0.1/address"), "w") as f:
        f.write(WAN_MAC + "\n")
    r = init.wait("GET", "/init", timeout=10)[0]  # the back-off, not an hour
    assert r.query["mac"] == [WAN_MAC]
    assert a.output().count("no MAC address") == 1
    assert a.stop() == 0
