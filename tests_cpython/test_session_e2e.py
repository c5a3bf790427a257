"""The MQTT session end to end (PROTOCOL 4): CONNECT and last will, clean
stop, TLS, reconnect after a broker restart, pings."""
import json
import time

import pytest

from helpers.device import BASE, MAC, config
from socketman import VERSION

# Also on the OpenWRT snapshot's MicroPython and on a router's CPU (MIPS, qemu).
EXTRA_RUNTIMES = ("mpy1.28-bundle", "mips1.23-bundle")


def test_connect_online_and_will_on_kill(agent_cmd, agents, tmp_path, broker, controllers):
    ctrl = controllers(broker, BASE)
    a = agents(agent_cmd, config(tmp_path, broker, keepalive=2), tmp_path)
    c = ctrl.wait_event("CONNECT", online="1", timeout=20)
    assert c["_topic"] == "status/" + BASE and c["_retain"] is False  # live, not the stored copy
    assert c["meta"]["client_id"] == ("sm-" + MAC)[:23]
    assert c["meta"]["version"] == VERSION  # PROTOCOL 4, 10: the running version
    assert c["app"] == "socketman" and isinstance(c["timestamp"], int)
    # A late subscriber gets the retained online "1".
    late = controllers(broker, BASE)
    r = late.wait_event("CONNECT", online="1")
    assert r["_retain"] is True
    a.proc.kill()
    w = ctrl.wait_event("CONNECT", online="0", timeout=15)
    assert w["_topic"] == "status/" + BASE
    assert w["meta"]["client_id"] == c["meta"]["client_id"]
    assert w["meta"]["version"] == VERSION  # the last will says it too
    late2 = controllers(broker, BASE)
    assert late2.wait_event("CONNECT")["meta"]["online"] == "0"  # the will is retained


def test_clean_stop_publishes_offline_itself(agent_cmd, agents, tmp_path, broker, controllers):
    ctrl = controllers(broker, BASE)
    a = agents(agent_cmd, config(tmp_path, broker), tmp_path)
    ctrl.wait_event("CONNECT", online="1", timeout=20)
    assert a.stop(sigint=True) == 0  # Ctrl-C
    ctrl.wait_event("CONNECT", online="0", timeout=5)
    late = controllers(broker, BASE)
    assert late.wait_event("CONNECT")["meta"]["online"] == "0"
    deadline = time.monotonic() + 5  # mosquitto writes its log a moment later
    while "Client sm-%s disconnected." % MAC not in broker.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "Client sm-%s disconnected." % MAC in broker.output()  # DISCONNECT, not a dead socket


def test_subscribes_before_announcing_online(agent_cmd, agents, tmp_path, broker, controllers):
    ctrl = controllers(broker, BASE)
    agents(agent_cmd, config(tmp_path, broker), tmp_path)
    ctrl.wait_event("CONNECT", online="1", timeout=20)
    ctrl.job("right-away", "echo ok")  # sent the instant the device is seen online
    assert ctrl.wait_event("PROCESSED", "right-away")["meta"]["msg"] == "ok\n"
    log = broker.output()
    sub = log.index("sm-%s 1 sub/%s" % (MAC, BASE))
    pub = log.index("Received PUBLISH from sm-%s" % MAC)
    assert sub < pub


def test_bad_password_is_retried_not_fatal(agent_cmd, agents, tmp_path, broker):
    a = agents(agent_cmd, config(tmp_path, broker, password="wrong-pw-123"), tmp_path)
    out = a.wait_log("connect to 127.0.0.1:%d failed: broker refused" % broker.port, timeout=20)
    assert "next try in" in out
    assert "wrong-pw-123" not in out
    assert a.alive()


@pytest.mark.parametrize("case", ["right-ca", "bundle", "wrong-ca", "wrong-host", "insecure"])
def test_tls(agent_cmd, agents, tmp_path, broker, controllers, case):
    host, ca, insecure = {
        "right-ca": ("localhost", broker.certs["ca"], 0),
        "bundle": ("localhost", broker.certs["bundle"], 0),
        "wrong-ca": ("localhost", broker.certs["other_ca"], 0),
        "wrong-host": ("127.0.0.1", broker.certs["ca"], 0),
        "insecure": ("127.0.0.1", broker.certs["other_ca"], 1),
    }[case]
    ctrl = controllers(broker, BASE)
    cfg = config(tmp_path, broker, tls=1, port=broker.tls_port, mqtt_host=host, cacrt=ca, insecure=insecure)
    a = agents(agent_cmd, cfg, tmp_path)
    if case in ("right-ca", "bundle", "insecure"):
        ctrl.wait_event("CONNECT", online="1", timeout=20)
        ctrl.job("over-tls", "echo secure")
        assert ctrl.wait_event("PROCESSED", "over-tls")["meta"]["msg"] == "secure\n"
    else:
        out = a.wait_log("next try in", timeout=20)
        assert "connected to" not in out
        time.sleep(1)
        assert ctrl.events("CONNECT") == []
        assert a.alive()


def test_reconnects_and_resubscribes_after_broker_restart(agent_cmd, agents, tmp_path, broker, controllers):
    ctrl = controllers(broker, BASE)
    a = agents(agent_cmd, config(tmp_path, broker), tmp_path)
    ctrl.wait_event("CONNECT", online="1", timeout=20)
    ctrl.close()
    broker.restart(down_s=1.0)
    ctrl2 = controllers(broker, BASE)
    ctrl2.wait_event("CONNECT", online="1", timeout=30)  # backoff: 1 s, then at most 2, 4 ...
    ctrl2.job("after-restart", "echo back")
    assert ctrl2.wait_event("PROCESSED", "after-restart")["meta"]["msg"] == "back\n"
    assert "connection to 127.0.0.1:%d lost" % broker.port in a.output()


def test_results_made_while_offline_are_sent_after_reconnect(agent_cmd, agents, tmp_path, broker, controllers):
    ctrl = controllers(broker, BASE)
    a = agents(agent_cmd, config(tmp_path, broker), tmp_path)
    ctrl.wait_event("CONNECT", online="1", timeout=20)
    ctrl.job("offline-result", "sleep 2; echo finished")
    ctrl.wait_event("DELIVERED", "offline-result")
    ctrl.close()
    broker.stop()
    a.wait_log("job offline-result: exit 0", timeout=15)
    broker.start()
    ctrl2 = controllers(broker, BASE)
    p = ctrl2.wait_event("PROCESSED", "offline-result", timeout=30)
    assert p["meta"]["msg"] == "finished\n"


def test_pings(agent_cmd, agents, tmp_path, broker, controllers, http_server):
    api = http_server()
    ctrl = controllers(broker, BASE)
    # 30 s ping-interval, 30 times faster: a ping a second.
    # keepalive 600: 30 times faster, 30 s would give the broker 0.5 s to
    # answer a PINGREQ, too tight for a loaded test machine.
    agents(agent_cmd, config(tmp_path, broker, rest=1, api_url=api.url("/v1"), token="tk-ping", keepalive=600),
           tmp_path, env={"SOCKETMAN_TIME_SCALE": "30"})
    ctrl.wait_event("CONNECT", online="1", timeout=20)
    deadline = time.monotonic() + 15
    while len(ctrl.events("PING")) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    pings = ctrl.events("PING")
    assert len(pings) >= 2
    assert pings[0]["_topic"] == "status/" + BASE and pings[0]["_retain"] is False
    assert set(pings[0]) >= {"app", "timestamp", "event_type"}
    r = api.wait("POST", "/v1/ping", count=2)[0]
    assert r.query == {"access_token": ["tk-ping"], "mac": [MAC]}
    body = r.json()
    assert body["event_type"] == "PING" and body["app"] == "socketman"
    assert r.headers["Content-Type"] == "application/json"


def test_an_idle_session_stays_up_when_pings_go_out_more_often_than_the_keepalive(
        agent_cmd, agents, tmp_path, broker, controllers):
    # issue 15, item 4: keepalive 70, ping-interval 30. The QoS 0 PINGs were
    # counted as traffic, so no PINGREQ went out, the broker sent nothing,
    # and after 1.5 x 70 s the agent dropped the connection (will: online
    # "0") and reconnected, over and over. 15 times faster: 105 s is 7 s.
    ctrl = controllers(broker, BASE)
    a = agents(agent_cmd, config(tmp_path, broker, keepalive=70, **{"ping-interval": 30}), tmp_path,
               env={"SOCKETMAN_TIME_SCALE": "15"})
    ctrl.wait_event("CONNECT", online="1", timeout=20)
    time.sleep(12)  # 180 s of agent time: past 1.5 x the keepalive
    assert len(ctrl.events("PING")) >= 4
    online = [e["meta"]["online"] for e in ctrl.events("CONNECT")]
    assert online == ["1"], online
    assert "lost" not in a.output()
    assert a.alive()


def test_no_ping(agent_cmd, agents, tmp_path, broker, controllers, http_server):
    api = http_server()
    ctrl = controllers(broker, BASE)
    agents(agent_cmd, config(tmp_path, broker, rest=1, api_url=api.url("/v1"), **{"no-ping": 1}),
           tmp_path, env={"SOCKETMAN_TIME_SCALE": "30"})
    ctrl.wait_event("CONNECT", online="1", timeout=20)
    time.sleep(3)
    assert ctrl.events("PING") == []
    assert api.got("POST", "/v1/ping") == []


def test_event_json_is_compact_and_valid(agent_cmd, agents, tmp_path, broker, controllers):
    ctrl = controllers(broker, BASE)
    agents(agent_cmd, config(tmp_path, broker), tmp_path)
    ctrl.wait_event("CONNECT", online="1", timeout=20)
    ctrl.job("utf", "printf 'caf\\303\\251 \\377\\n'")
    p = ctrl.wait_event("PROCESSED", "utf")
    assert p["meta"]["msg"] == "café \ufffd\n"
    raw = [m for m in ctrl.msgs if m[0] == "pub/" + BASE][0][1]
    json.loads(raw.decode("utf-8"))  # strict UTF-8


def test_the_status_check_opens_no_connection_to_the_broker_it_is_connected_to(
        agent_cmd, agents, tmp_path, broker, controllers):
    # PROTOCOL 7.1 (issue 13): with no stats_url the check's API target is
    # the broker; the session up on it is proof enough. Before, every agent
    # opened an empty connection to it every cycle (670 a second for 10,000
    # devices). 15 times faster: 5 s are 5 cycles.
    ctrl = controllers(broker, BASE)
    a = agents(agent_cmd, config(tmp_path, broker, keepalive=600), tmp_path, env={"SOCKETMAN_TIME_SCALE": "15"})
    ctrl.wait_event("CONNECT", online="1", timeout=20)
    time.sleep(5)
    out = a.output()
    assert out.count("monitor: status 6") >= 3, out  # the broker counted as reachable
    log = broker.output()
    after = log[log.index("as sm-%s" % MAC):]  # once the agent's session is up
    probes = [x for x in after.splitlines() if "New connection from" in x]
    assert probes == [], probes
