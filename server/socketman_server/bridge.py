"""The server's MQTT side (PROTOCOL 4): one paho client that subscribes to
every device's events and publishes jobs on sub/<base>."""
import logging
import os
import socket
import threading
import time

import paho.mqtt.client as paho

from .protocol import BadInput, make_job, parse_event, split_topic

log = logging.getLogger("socketman_server.mqtt")

TOPICS = ("status/#", "delivery/#", "pub/#")


class Bridge:
    """Subscribes to status/#, delivery/# and pub/# (through
    $share/<group>/ when several servers share the stream) and records what
    comes in through the Store; `send` publishes jobs. Reconnects by itself
    (1..30 s backoff). `connected` is true only once the subscriptions are
    acknowledged: before that the server cannot know who is online."""

    def __init__(self, settings, store):
        self.settings = settings
        self.store = store
        self.connected = False
        self.counts = {"messages": 0, "bad": 0, "errors": 0}
        self._subscribed = threading.Event()
        cid = "sm-server-%s-%d" % (socket.gethostname()[:10], os.getpid())
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=cid, clean_session=True,
                                  protocol=paho.MQTTv311)
        if settings.mqtt_username:
            self.client.username_pw_set(settings.mqtt_username, settings.mqtt_password)
        if settings.mqtt_tls:
            self.client.tls_set(ca_certs=settings.mqtt_cafile or None)
        self.client.reconnect_delay_set(1, 30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def start(self):
        self.client.connect_async(self.settings.mqtt_host, self.settings.mqtt_port, keepalive=30)
        self.client.loop_start()

    def stop(self):
        self.client.disconnect()
        self.client.loop_stop()

    def wait_ready(self, timeout):
        return self._subscribed.wait(timeout)

    def _topic(self, t):
        g = self.settings.mqtt_shared_group
        return "$share/%s/%s" % (g, t) if g else t

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.warning("broker refused the connection: %s", reason_code)
            return
        log.info("connected to the broker %s:%d", self.settings.mqtt_host, self.settings.mqtt_port)
        client.subscribe([(self._topic(t), self.settings.qos) for t in TOPICS])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        if any(rc.is_failure for rc in reason_codes):
            log.error("the broker refused a subscription: %s (check its ACL)", reason_codes)
            return
        self.connected = True
        self._subscribed.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        if self.connected:
            log.warning("lost the broker (%s); reconnecting", reason_code)
        self.connected = False
        self._subscribed.clear()

    def _on_message(self, client, userdata, msg):
        # paho stops its network thread on an exception from a callback: no
        # input, however bad, and no database trouble may escape from here.
        self.counts["messages"] += 1
        try:
            if not msg.payload:
                return  # a retained message being cleared
            kind, base, mac = split_topic(msg.topic)
            event = parse_event(msg.payload)
            if kind == "status":
                self.store.status_event(base, mac, event, retained=bool(msg.retain))
            else:
                self.store.job_event(base, mac, event)
        except BadInput as e:
            self.counts["bad"] += 1
            log.info("ignored a message on %s: %s", msg.topic[:200], e)
        except Exception:
            self.counts["errors"] += 1
            log.exception("could not record a message on %s", msg.topic[:200])

    def send(self, job, device):
        """Publish one job row (db.jobs) to its device row. Returns None when
        it went to the broker, else why not (the job is then NOT SENT): a
        job for a device that is offline or never connected, or while the
        server has no broker, would be lost by the broker (clean sessions)
        or run much later; neither is what an operator asked for."""
        if not self.connected:
            return "the server is not connected to the broker"
        if not device.get("base"):
            return "the device never connected to the broker"
        if not device.get("online"):
            return "the device is offline"
        payload = make_job(job["job_id"], job["command"], job["type"], time.time(), self.settings.job_key or None)
        info = self.client.publish("sub/" + device["base"], payload, qos=self.settings.qos)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            return "the broker connection failed (%s)" % paho.error_string(info.rc)
        return None
