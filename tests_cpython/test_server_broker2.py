"""The reference server and real agents on a second broker kind: RabbitMQ
3.10's MQTT plugin (Debian's rabbitmq-server), to show that nothing the
server and the agent need is Mosquitto-only (issue 25, point 4). One
CPython agent and one native MicroPython 1.23 agent running the .mpy bundle
come online, send stats, run a fleet job sent from the server's API and go
offline (the last will, a clean stop). The server runs with
--mqtt-retained-per-device, RabbitMQ's fallback for retained messages: a
new server and a restarted one learn from the broker who is online and who
died while they were away. What RabbitMQ lacks and the server
could use (shared subscriptions, retained messages for wildcard
subscriptions, QoS 2) is pinned at the end: docs/CHOICES.md ("A second
broker kind") says what an operator gives up with it.

One RabbitMQ node serves the whole module, and the module is one test: a
node boots in 10-30 s, and pytest-xdist would start a second node for a
second test that lands on the other worker."""
import json
import os
import threading
import time

import paho.mqtt.client as paho
import pytest
from test_server_fleet_e2e import send_fleet_job, start_agent

from helpers import rabbitmq, runtimes
from helpers.broker import CTRL_PASSWORD, CTRL_USER
from helpers.fleet import KEY, TOPIC, FleetServer


@pytest.fixture(scope="module")
def rabbit(tmp_path_factory):
    try:
        node = rabbitmq.RabbitMQ(tmp_path_factory.mktemp("rabbitmq"))
    except rabbitmq.Missing as e:
        pytest.fail(str(e), pytrace=False)
    yield node
    node.stop()


class Client:
    """A paho MQTT 3.1.1 client of the test (the controller user): what it
    subscribed to, the codes the broker granted, what it received."""

    def __init__(self, broker, name, topics=()):
        self.msgs, self.granted = [], []
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=name, protocol=paho.MQTTv311)
        self.c.username_pw_set(CTRL_USER, CTRL_PASSWORD)
        self.c.on_message = lambda c, u, m: self.msgs.append((m.topic, m.payload, m.qos, m.retain))
        ok = threading.Event()

        def subscribed(c, u, mid, codes, props):
            self.granted += [rc.value for rc in codes]
            ok.set()
        self.c.on_subscribe = subscribed
        self.c.connect("127.0.0.1", broker.port, 30)
        self.c.loop_start()
        if topics:
            self.c.subscribe([(t, q) for t, q in topics])
            assert ok.wait(10), "no SUBACK from the broker"

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def what_rabbitmq_lacks(broker):
    """The three MQTT features RabbitMQ 3.10 does not give, each as the
    server would meet it; docs/CHOICES.md relies on these answers."""
    base = "%s/%s/02:e3:00:00:00:99" % (TOPIC, KEY)
    pub = Client(broker, "t-pub")
    pub.c.publish("status/" + base, b'{"retained": 1}', qos=1, retain=True).wait_for_publish(10)
    shared = Client(broker, "t-shared", [("$share/fleet/pub/#", 1)])
    plain = Client(broker, "t-plain", [("pub/#", 2), ("status/#", 1), ("status/" + base, 1)])
    try:
        pub.c.publish("pub/" + base, b"to the group", qos=1).wait_for_publish(10)
        pub.c.publish("pub/" + base, b"at QoS 2", qos=2).wait_for_publish(10)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(plain.msgs) < 3:
            time.sleep(0.05)
        time.sleep(0.5)
        # A $share/<group>/ subscription is granted, and receives nothing:
        # RabbitMQ takes it for a topic named "$share/fleet/pub/#".
        assert shared.granted == [1] and shared.msgs == []
        # QoS 2 is granted as QoS 1 and delivered at QoS 1.
        assert plain.granted == [1, 1, 1]
        got = {(t, p, q) for t, p, q, r in plain.msgs if t.startswith("pub/")}
        assert got == {("pub/" + base, b"to the group", 1), ("pub/" + base, b"at QoS 2", 1)}
        # The retained message reaches the subscription to its own topic,
        # not the one to status/#: retained messages are only delivered to
        # subscriptions without wildcards.
        retained = [(t, r) for t, p, q, r in plain.msgs if t.startswith("status/")]
        assert retained == [("status/" + base, True)], plain.msgs
    finally:
        pub.c.publish("status/" + base, b"", qos=1, retain=True).wait_for_publish(10)
        for c in (pub, shared, plain):
            c.close()


def test_server_and_agents_on_rabbitmq(tmp_path, rabbit, agents, bundle):
    per_device = ["--mqtt-retained-per-device"]
    srv = FleetServer(tmp_path, rabbit, args=per_device)
    st = srv.store()
    try:
        mpy = runtimes.native("1.23")
    except runtimes.Missing as e:
        pytest.fail(str(e), pytrace=False)
    fresh = None
    try:
        macs = ["02:e3:00:00:00:01", "02:e3:00:00:00:02"]
        a_cpy = start_agent(agents, srv, tmp_path, macs[0])
        a_mpy = start_agent(agents, srv, tmp_path, macs[1], cmd=[mpy, os.path.join(bundle, "main.py")])
        srv.wait(lambda: all((st.device(m) or {}).get("online") for m in macs), 60, "both devices online")
        srv.wait(lambda: all(st.device(m)["last_doc"] for m in macs), 60, "stats from both")
        for m in macs:
            d = st.device(m)
            assert d["model"] and d["firmware"] and d["base"] == "%s/%s/%s" % (TOPIC, KEY, m)
        assert srv.get("/").body.decode().count(">online<") == 2
        health = srv.get("/healthz").json()
        assert health["broker"] and health["mqtt"]["errors"] == 0, health

        # A fleet job from the server's API (an operator's token), over MQTT
        # to both, each result over MQTT.
        token = srv.token()
        r = srv.post_form("/fleet-jobs", {"command": "echo hi from $(uname -s)", "type": "cmd", "target": "all"},
                          headers={"Authorization": "Bearer " + token}, auth=None)
        assert r.status == 201, r
        fid = r.json()["fleet_job"]

        def done():
            f, rows = st.fleet_job(fid)
            return rows if len(rows) == 2 and all(x["state"] == "PROCESSED" for x in rows) else None
        rows = srv.wait(done, 60, "both results")
        assert all(x["via"] == "mqtt" and x["success"] and x["exit_code"] == 0
                   and x["output"].strip() == "hi from Linux" and x["delivered_at"] for x in rows), rows

        # A message on status/<base> matches status/# and the device's own
        # subscription: RabbitMQ hands it over once.
        spy = Client(rabbit, "t-config")
        spy.c.publish("status/%s/%s/%s" % (TOPIC, KEY, macs[0]), json.dumps(
            {"app": "socketman", "timestamp": int(time.time()), "event_type": "CONFIG_CHANGED",
             "meta": {"files": ["once"]}}), qos=1).wait_for_publish(10)
        spy.close()

        def config_events():
            return [e for e in st.events(st.device(macs[0])["id"], 100) if e["kind"] == "config changed"]
        srv.wait(config_events, 15, "the config event")
        time.sleep(1)
        assert len(config_events()) == 1

        # A server with a new database, started after the devices: RabbitMQ
        # gives it no retained CONNECT for status/#; a device's PING makes
        # it subscribe to that device's own topic, whose retained CONNECT
        # says online.
        fresh = FleetServer(tmp_path / "fresh", rabbit, args=per_device)
        fst = fresh.store()
        fresh.wait(lambda: all((fst.device(m) or {}).get("online") for m in macs), 60,
                   "both devices online on a new server")
        fst.close()
        fresh.stop()

        # The broker publishes the will of a connection that dies, here while
        # the server is away: back, it finds it in the retained message of
        # the device's own topic.
        srv.stop()
        a_mpy.kill()
        time.sleep(1)
        srv.start()
        srv.wait(lambda: st.device(macs[1])["online"] is False, 60, "the will (offline)")
        assert st.device(macs[0])["online"]
        # A clean stop publishes offline itself.
        assert a_cpy.stop() == 0
        srv.wait(lambda: st.device(macs[0])["online"] is False, 30, "offline after a clean stop")
        fid = send_fleet_job(srv, "uptime")
        assert {x["state"] for x in st.fleet_job(fid)[1]} == {"NOT SENT"}
        assert srv.alive() and srv.get("/healthz").json()["mqtt"]["errors"] == 0

        what_rabbitmq_lacks(rabbit)
    finally:
        st.close()
        srv.stop()
        if fresh:
            fresh.stop()
