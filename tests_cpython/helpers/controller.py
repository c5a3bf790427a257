"""The operator's side: an independent MQTT client (paho) that sends jobs and
records everything the device publishes."""
import json
import threading
import time

import paho.mqtt.client as paho

from helpers.broker import CTRL_PASSWORD, CTRL_USER


class Controller:
    def __init__(self, broker, base, qos=1):
        self.base = base
        self.qos = qos
        self.msgs = []  # (topic, payload bytes, retain, time)
        self.lock = threading.Lock()
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="ctrl-%d" % id(self), clean_session=True)
        self.c.username_pw_set(CTRL_USER, CTRL_PASSWORD)
        self.c.on_message = self._on_message
        subscribed = threading.Event()
        self.c.on_subscribe = lambda *a: subscribed.set()
        self.c.connect("127.0.0.1", broker.port, keepalive=30)
        self.c.loop_start()
        self.c.subscribe([("status/" + base, 2), ("delivery/" + base, 2), ("pub/" + base, 2)])
        assert subscribed.wait(10), "controller did not subscribe"

    def _on_message(self, client, userdata, m):
        with self.lock:
            self.msgs.append((m.topic, m.payload, m.retain, time.monotonic()))

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()

    def send(self, payload, qos=None, retain=False):
        if isinstance(payload, dict):
            payload = json.dumps(payload)
        info = self.c.publish("sub/" + self.base, payload, qos=self.qos if qos is None else qos, retain=retain)
        info.wait_for_publish(10)

    def job(self, job_id, cmd, type_=None, qos=None):
        meta = {"msg": cmd}
        if type_:
            meta["type"] = type_
        self.send({"id": job_id, "timestamp": int(time.time()), "meta": meta}, qos=qos)

    def events(self, kind=None, topic_prefix=None):
        out = []
        with self.lock:
            msgs = list(self.msgs)
        for topic, payload, retain, t in msgs:
            if topic_prefix and not topic.startswith(topic_prefix):
                continue
            try:
                e = json.loads(payload)
            except ValueError:
                continue
            if kind is None or e.get("event_type") == kind:
                e["_topic"], e["_retain"], e["_t"] = topic, retain, t
                out.append(e)
        return out

    def wait(self, pred, timeout=20.0, what="event"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hits = [e for e in self.events() if pred(e)]
            if hits:
                return hits[0]
            time.sleep(0.02)
        raise AssertionError("no %s within %ss; got %s" % (what, timeout, self.events()))

    def wait_event(self, kind, job_id=None, timeout=20.0, **meta):
        def pred(e):
            if e.get("event_type") != kind:
                return False
            if job_id is not None and e.get("id") != job_id:
                return False
            return all(e.get("meta", {}).get(k) == v for k, v in meta.items())
        return self.wait(pred, timeout, "%s %s %s" % (kind, job_id, meta))
