"""The fleet server with real agents and a real Mosquitto: online and offline
from the retained CONNECT and the last will (PROTOCOL 4), stats, fleet jobs
over MQTT and by REST PATCH, signed jobs (PROTOCOL 9), shared subscriptions,
and MQTT input that must not hurt the server. The agents run under CPython
here (the demo and the browser test run them under MicroPython)."""
import hashlib
import hmac
import json
import os
import sys
import threading
import time

import paho.mqtt.client as paho
import pytest

from helpers import openwrt
from helpers.broker import CTRL_PASSWORD, CTRL_USER
from helpers.device import config
from helpers.fleet import KEY, TOPIC, FleetServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AGENT = [sys.executable, os.path.join(ROOT, "main.py")]
FAST = {"SOCKETMAN_TIME_SCALE": "15"}


def start_agent(agents, srv, tmp_path, mac, cmd=AGENT, **kw):
    """An agent (cmd: the CPython agent, or another runtime's argv) on a
    fake OpenWRT with the config the server hands out."""
    url_mac = mac.upper().replace(":", "-")
    srv.post_form("/provisioning", {"mac": mac})
    served = srv.get("/devices/%s/config.json" % url_mac).json()
    d = tmp_path / mac.replace(":", "")
    d.mkdir()
    env, fcfg = openwrt.make(d)
    env.update(FAST)
    served.update(mac=mac, scan=1)
    cfg = config(d, **dict(fcfg, **served))
    cfg.update(kw)
    return agents(cmd, cfg, d, env=env)


def send_fleet_job(srv, command, macs=None, job_type="cmd"):
    fields = {"command": command, "type": job_type, "target": "selected" if macs else "all"}
    if macs:
        fields["mac"] = [m.upper() for m in macs]
    r = srv.post_form("/fleet-jobs", fields)
    assert r.status == 303, r
    return int(r.headers["Location"].rsplit("/", 1)[1])


def test_agents_online_stats_fleet_job_and_offline(tmp_path, broker, agents):
    srv = FleetServer(tmp_path, broker)
    try:
        macs = ["02:e2:00:00:00:01", "02:e2:00:00:00:02"]
        a1 = start_agent(agents, srv, tmp_path, macs[0])
        a2 = start_agent(agents, srv, tmp_path, macs[1], rest=1)  # results by PATCH
        st = srv.store()
        srv.wait(lambda: all(st.device(m)["online"] for m in macs), 30, "both devices online")
        srv.wait(lambda: all(st.device(m)["last_doc"] for m in macs), 30, "stats from both")
        d = st.device(macs[0])
        assert d["model"] and d["firmware"] and d["stations"] is not None and d["status"] in (0, 1, 4, 6, 9)
        assert d["base"] == "%s/%s/%s" % (TOPIC, KEY, macs[0])
        page = srv.get("/").body.decode()
        assert page.count(">online<") == 2, page

        fid = send_fleet_job(srv, "echo hello from $(uname -s)")

        def done():
            f, rows = st.fleet_job(fid)
            return rows if all(r["state"] == "PROCESSED" for r in rows) else None
        rows = srv.wait(done, 30, "both results")
        assert {r["mac"]: r["via"] for r in rows} == {macs[0].upper(): "mqtt", macs[1].upper(): "rest"}
        assert all(r["output"].strip() == "hello from Linux" and r["exit_code"] == 0 and r["success"] for r in rows)
        assert all(r["delivered_at"] for r in rows)

        fid = send_fleet_job(srv, "exit 3", macs=[macs[0]])
        rows = srv.wait(done, 30, "a failed result")
        assert [(r["success"], r["exit_code"], r["output"]) for r in rows] == [(False, 3, "DNE")]
        live = srv.get("/live/fleet-jobs/%d" % fid).body.decode()
        assert "PROCESSED" in live and ">3<" in live

        a1.kill()  # the connection dies: the broker sends the last will
        srv.wait(lambda: st.device(macs[0])["online"] is False, 20, "the will (offline)")
        assert st.device(macs[1])["online"]
        assert "offline" in [e["kind"] for e in st.events(st.device(macs[0])["id"])]
        fid = send_fleet_job(srv, "uptime")
        f, rows = st.fleet_job(fid)
        assert {r["mac"]: r["state"] for r in rows}[macs[0].upper()] == "NOT SENT"
        assert a2.stop() == 0  # a clean stop publishes the retained online "0" itself
        srv.wait(lambda: st.device(macs[1])["online"] is False, 20, "offline after a clean stop")
        st.close()
    finally:
        srv.stop()


class Spy:
    """An independent MQTT client (paho) of the test: publishes what a device
    would, and records the jobs the server sends."""

    def __init__(self, broker, topics=("sub/#",)):
        self.msgs = []
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="spy-%d" % id(self))
        self.c.username_pw_set(CTRL_USER, CTRL_PASSWORD)
        self.c.on_message = lambda c, u, m: self.msgs.append((m.topic, m.payload))
        ok = threading.Event()
        self.c.on_subscribe = lambda *a: ok.set()
        self.c.connect("127.0.0.1", broker.port, 30)
        self.c.loop_start()
        if topics:
            self.c.subscribe([(t, 1) for t in topics])
            assert ok.wait(10)

    def publish(self, topic, payload, retain=False):
        if isinstance(payload, dict):
            payload = json.dumps(payload)
        self.c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def connect_event(online="1", ts=None):
    return {"app": "socketman", "timestamp": ts or int(time.time()), "event_type": "CONNECT",
            "meta": {"online": online, "client_id": "sm-x"}}


def test_jobs_are_signed_as_protocol_9_says(tmp_path, broker):
    key = "fleet-job-key-\u00e9"  # the key is used as UTF-8 bytes
    srv = FleetServer(tmp_path, broker, job_key=key)
    spy = Spy(broker)
    try:
        mac = "02:e2:00:00:00:09"
        base = "%s/%s/%s" % (TOPIC, KEY, mac)
        spy.publish("status/" + base, connect_event(), retain=True)
        st = srv.store()
        srv.wait(lambda: (st.device(mac) or {}).get("online"), 10, "online")
        command = "echo 'caf\u00e9' && uptime"
        send_fleet_job(srv, command, macs=[mac], job_type="network")
        srv.wait(lambda: spy.msgs, 10, "the job on sub/<base>")
        topic, payload = spy.msgs[0]
        assert topic == "sub/" + base
        job = json.loads(payload)
        assert abs(job["timestamp"] - time.time()) < 30
        text = "%s\n%d\n%s\n%s" % (job["id"], job["timestamp"], "network", command)
        want = hmac.new(key.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).hexdigest()
        assert job["sig"] == want
        assert job["meta"] == {"msg": command, "type": "network"}
        # The key reaches devices only in their config, never on the wire.
        assert key.encode() not in payload
        st.admit(mac)
        assert srv.get("/devices/%s/config.json" % mac.replace(":", "-")).json()["job_key"] == key
        st.close()
    finally:
        spy.close()
        srv.stop()


def test_unsigned_jobs_without_a_key(tmp_path, broker):
    srv = FleetServer(tmp_path, broker)
    spy = Spy(broker)
    try:
        mac = "02:e2:00:00:00:0a"
        spy.publish("status/%s/%s/%s" % (TOPIC, KEY, mac), connect_event())
        st = srv.store()
        srv.wait(lambda: (st.device(mac) or {}).get("online"), 10, "online")
        send_fleet_job(srv, "uptime", macs=[mac])
        srv.wait(lambda: spy.msgs, 10, "the job")
        job = json.loads(spy.msgs[0][1])
        assert "sig" not in job and job["meta"] == {"msg": "uptime", "type": "cmd"}
        st.close()
    finally:
        spy.close()
        srv.stop()


def test_bad_mqtt_input_does_not_hurt_the_server(tmp_path, broker):
    srv = FleetServer(tmp_path, broker)
    spy = Spy(broker, topics=())
    try:
        mac = "02:e2:00:00:00:0b"
        base = "%s/%s/%s" % (TOPIC, KEY, mac)
        for topic, payload in [("status/" + base, b"not json"), ("status/" + base, b"[1,2]"),
                               ("status/" + base, b'{"event_type": 5}'), ("status/" + base, b"\xff\xfe"),
                               ("status/" + base, b'{"event_type": "CONNECT", "meta": "x"}'),
                               ("status/a/b/not-a-mac", json.dumps(connect_event())),
                               ("status/too/short", json.dumps(connect_event())),
                               ("status/a/b/c/d/e", json.dumps(connect_event())),
                               ("pub/" + base, b'{"event_type": "PROCESSED", "id": "j-nobody", "meta": {}}'),
                               ("pub/" + base, b'{"event_type": "PROCESSED", "id": {"x": 1}}'),
                               ("pub/" + base, b'{"event_type": "REJECTED", "id": null, "meta": {"reason": "bad"}}'),
                               ("delivery/" + base, b'{"event_type": "DELIVERED", "id": "j-1", "meta": null}'),
                               ("status/" + base, json.dumps(connect_event(online="1", ts="soon"))),
                               ("status/" + base, b"{}" * 40000)]:
            spy.publish(topic, payload)
        spy.publish("status/" + base, connect_event(), retain=False)
        st = srv.store()
        srv.wait(lambda: (st.device(mac) or {}).get("online"), 10, "the good CONNECT after the bad ones")
        health = srv.get("/healthz").json()
        assert srv.alive() and health["broker"]
        assert health["mqtt"]["bad"] >= 9 and health["mqtt"]["errors"] == 0, health
        assert st.device("02:00:00:00:00:00") is None
        assert "rejected" in [e["kind"] for e in st.events(st.device(mac)["id"])]
        st.close()
    finally:
        spy.close()
        srv.stop()


def test_a_retained_online_that_is_old_shows_silent(tmp_path, broker):
    """A broker that kept a retained online "1" (persistence, a restart) for
    a device that died since must not make it look online for ever."""
    spy = Spy(broker, topics=())
    old = int(time.time()) - 3600
    spy.publish("status/%s/%s/02:e2:00:00:00:0c" % (TOPIC, KEY), connect_event(ts=old), retain=True)
    srv = FleetServer(tmp_path, broker, args=["--stale-after", "600"])
    try:
        st = srv.store()
        srv.wait(lambda: (st.device("02:e2:00:00:00:0c") or {}).get("online"), 10, "the retained CONNECT")
        assert st.device("02:e2:00:00:00:0c")["last_seen"] == old
        row = srv.get("/live/fleet").body.decode()
        assert ">silent<" in row and ">online<" not in row
        st.close()
    finally:
        spy.publish("status/%s/%s/02:e2:00:00:00:0c" % (TOPIC, KEY), b"", retain=True)
        spy.close()
        srv.stop()


def test_without_its_broker_the_server_says_unknown_and_sends_nothing(tmp_path, broker):
    srv = FleetServer(tmp_path, broker)
    spy = Spy(broker, topics=())
    try:
        mac = "02:e2:00:00:00:0d"
        spy.publish("status/%s/%s/%s" % (TOPIC, KEY, mac), connect_event())
        st = srv.store()
        srv.wait(lambda: (st.device(mac) or {}).get("online"), 10, "online")
        spy.close()
        broker.stop()
        srv.wait(lambda: not srv.get("/healthz").json()["broker"], 20, "the server to notice")
        assert ">unknown<" in srv.get("/live/fleet").body.decode()
        assert "NOT connected" in srv.get("/").body.decode()
        fid = send_fleet_job(srv, "uptime")
        f, rows = st.fleet_job(fid)
        assert [(r["state"], r["reason"]) for r in rows] == [("NOT SENT", "the server is not connected to the broker")]
        broker.start()
        srv.wait(lambda: srv.get("/healthz").json()["broker"], 40, "the server to reconnect")
        st.close()
    finally:
        srv.stop()


@pytest.mark.parametrize("group", ["", "fleet"])
def test_shared_subscription_splits_the_stream(tmp_path, broker, group):
    """Two servers on one database: with --mqtt-shared-group each event is
    recorded once; without it, twice (one per server)."""
    a = FleetServer(tmp_path / "a", broker, args=["--mqtt-shared-group", group] if group else [])
    b = FleetServer(tmp_path / "b", broker, db_url=a.db_url, args=["--mqtt-shared-group", group] if group else [])
    spy = Spy(broker, topics=())
    try:
        mac = "02:e2:00:00:00:0e"
        base = "%s/%s/%s" % (TOPIC, KEY, mac)
        spy.publish("status/" + base, connect_event())
        for i in range(6):
            spy.publish("status/" + base, {"app": "socketman", "timestamp": int(time.time()),
                                           "event_type": "CONFIG_CHANGED", "meta": {"files": ["f%d" % i]}})
        st = a.store()
        want = 6 if group else 12
        a.wait(lambda: len([e for e in st.events(st.device(mac)["id"], 100) if e["kind"] == "config changed"])
               >= want, 15, "%d config events" % want)
        time.sleep(1)
        got = [e for e in st.events(st.device(mac)["id"], 100) if e["kind"] == "config changed"]
        assert len(got) == want
        st.close()
    finally:
        spy.close()
        a.stop()
        b.stop()


def test_a_broker_restart_loses_nothing_after_it(tmp_path, broker):
    """The broker restarts (no persistence: every session and subscription
    gone): the server connects again, subscribes again, records what devices
    say after it (through its batched writer, acknowledged on the new
    connection) and sends jobs again (issue 25)."""
    srv = FleetServer(tmp_path, broker)
    spy = Spy(broker)
    st = srv.store()
    try:
        mac = "02:e2:00:00:00:1b"
        base = "%s/%s/%s" % (TOPIC, KEY, mac)
        spy.publish("status/" + base, connect_event())
        srv.wait(lambda: (st.device(mac) or {}).get("online"), 10, "online")
        spy.close()
        broker.restart(down_s=0.5)
        srv.wait(lambda: srv.get("/healthz").json().get("broker"), 30, "the server back on the broker")
        spy = Spy(broker)
        for i in range(5):
            spy.publish("status/" + base, {"app": "socketman", "timestamp": int(time.time()),
                                           "event_type": "CONFIG_CHANGED", "meta": {"files": ["g%d" % i]}})
        send_fleet_job(srv, "uptime", macs=[mac])  # still online: the job goes out
        srv.wait(lambda: any(t == "sub/" + base for t, _ in spy.msgs), 10, "a job on sub/<base> after the restart")
        spy.publish("status/" + base, connect_event(online="0", ts=int(time.time()) + 1))
        srv.wait(lambda: (st.device(mac) or {}).get("online") is False, 15, "offline after the restart")
        got = [e["detail"] for e in st.events(st.device(mac)["id"], 100) if e["kind"] == "config changed"]
        assert sorted(got) == ["g%d" % i for i in range(5)]
    finally:
        st.close()
        spy.close()
        srv.stop()


def test_events_wait_for_the_database_and_are_acknowledged_after():
    """The database away (record_events raises): the writer keeps the batch,
    tries again with back-off and acknowledges it only once written; a
    message that fails on its own (bad data) is acknowledged anyway; a stop
    while the database is away acknowledges nothing (in-process, no broker)."""
    from socketman_server import bridge as bridge_mod
    from socketman_server.settings import Settings

    class Store:
        def __init__(self, outage):
            self.outage, self.calls = outage, []

        def record_events(self, items):
            self.calls.append(list(items))
            if len(self.calls) <= self.outage:
                raise OSError("connection refused")
            return [(items[0], "bad")] if items[0][3].get("bad") else []

    def run(store, items, stop_after=None):
        b = bridge_mod.Bridge(Settings(), store)
        acked = []
        b._ack = lambda mid, qos, gen: acked.append(mid)
        for mid, item in enumerate(items):
            b._queue.put((item, mid, 1, 0))
        b._writer.start()
        if stop_after is not None:
            time.sleep(stop_after)
            b._stopping.set()
        else:
            b._queue.put(None)
        b._writer.join(15)
        assert not b._writer.is_alive()
        return b, acked

    item = ("status", "f/k/m", "02:00:00:00:00:01", {"event_type": "PING"}, False)
    store = Store(outage=2)  # 1 s, then 2 s of back-off
    b, acked = run(store, [item] * 3)
    assert len(store.calls) == 3 and all(len(c) == 3 for c in store.calls)  # the same batch each time
    assert acked == [0, 1, 2] and b.counts["recorded"] == 3 and b.counts["errors"] == 2

    bad = ("status", "f/k/m", "02:00:00:00:00:01", {"event_type": "PING", "bad": 1}, False)
    b, acked = run(Store(outage=0), [bad, item])
    assert acked == [0, 1] and b.counts["recorded"] == 1 and b.counts["errors"] == 1

    store = Store(outage=100)
    b, acked = run(store, [item] * 2, stop_after=0.3)
    assert acked == [] and len(store.calls) == 1
