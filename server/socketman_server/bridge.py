"""The server's MQTT side (PROTOCOL 4): one paho client that subscribes to
every device's events and publishes jobs on sub/<base>. Its network thread
only parses what comes in; a writer thread records it in batches (one
transaction for whatever has queued up meanwhile) and acknowledges each
QoS 1 message only once it is committed."""
import logging
import os
import queue
import socket
import threading
import time

import paho.mqtt.client as paho

from .protocol import BadInput, make_job, parse_event, split_topic

log = logging.getLogger("socketman_server.mqtt")

TOPICS = ("status/#", "delivery/#", "pub/#")
BATCH_MAX = 500   # messages in one transaction at most


class Bridge:
    """Subscribes to status/#, delivery/# and pub/# (through
    $share/<group>/ when several servers share the stream) and records what
    comes in through the Store; `send` publishes jobs. Reconnects by itself
    (1..30 s backoff). `connected` is true only once the subscriptions are
    acknowledged: before that the server cannot know who is online.

    A message is acknowledged (PUBACK) after its batch is committed, not
    on arrival: a server that dies with messages in its queue has not
    acknowledged them, so the broker does not count them delivered (with
    --mqtt-shared-group it hands them to another server of the group;
    what was committed but not yet acknowledged may then be recorded again,
    which the writes are built to bear: they set states, and add an event
    only when a state changes)."""

    def __init__(self, settings, store):
        self.settings = settings
        self.store = store
        self.connected = False
        self.counts = {"messages": 0, "bad": 0, "errors": 0, "recorded": 0, "batches": 0}
        self._subscribed = threading.Event()
        self._queue = queue.Queue()
        self._stopping = threading.Event()
        self._generation = 0  # of the connection: a mid is acknowledged only on the one it came on
        self._writer = threading.Thread(target=self._write, name="mqtt-writer", daemon=True)
        self._wild_mid = None  # the SUBSCRIBE of TOPICS on this connection
        self._followed = set()  # bases whose status/<base> is subscribed on its own (per_device)
        self._follow_lock = threading.Lock()
        cid = "sm-server-%s-%d" % (socket.gethostname()[:10], os.getpid())
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=cid, clean_session=True,
                                  protocol=paho.MQTTv311, manual_ack=True)
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
        self._writer.start()
        self.client.connect_async(self.settings.mqtt_host, self.settings.mqtt_port, keepalive=30)
        self.client.loop_start()

    def stop(self):
        self._stopping.set()
        self.client.disconnect()
        self.client.loop_stop()
        self._queue.put(None)
        self._writer.join(10)

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
        self._generation += 1
        with self._follow_lock:
            self._followed.clear()  # a clean session: the broker forgot them
        self._wild_mid = client.subscribe([(self._topic(t), self.settings.qos) for t in TOPICS])[1]

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        if any(rc.is_failure for rc in reason_codes):
            log.error("the broker refused a subscription: %s (check its ACL)", reason_codes)
            return
        if mid != self._wild_mid:
            return  # a device's own status topic (per_device)
        self.connected = True
        self._subscribed.set()
        if self.settings.mqtt_retained_per_device:
            # The database read stays off paho's network thread.
            threading.Thread(target=self._follow_known, args=(self._generation,), name="mqtt-follow",
                             daemon=True).start()

    def _follow_known(self, generation):
        """Subscribe to status/<base> of every device the database knows,
        so that a broker which gives retained messages only to
        subscriptions without wildcards (RabbitMQ) hands over each one's
        last CONNECT or will: who went offline or came online while this
        server was away."""
        try:
            bases = self.store.device_bases()
        except Exception:
            log.exception("could not read the devices to follow their retained status")
            return
        for i in range(0, len(bases), 100):
            if generation != self._generation:
                return  # reconnected meanwhile: that connection follows them
            self._follow(bases[i:i + 100])

    def _follow(self, bases):
        """Subscribe to status/<base> of those of `bases` not followed yet on
        this connection (mqtt_retained_per_device). Also for a device first
        heard of now (a PING): its retained CONNECT says whether it is
        online. RabbitMQ delivers a message that matches both this and
        status/# once (one queue per client); Mosquitto would send it twice,
        which is why the option is off by default."""
        with self._follow_lock:
            new = [b for b in bases if b not in self._followed]
            self._followed.update(new)
        if new:
            self.client.subscribe([(self._topic("status/" + b), self.settings.qos) for b in new])

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        if self.connected:
            log.warning("lost the broker (%s); reconnecting", reason_code)
        self.connected = False
        self._subscribed.clear()

    def _on_message(self, client, userdata, msg):
        # paho stops its network thread on an exception from a callback: no
        # input, however bad, may escape from here.
        self.counts["messages"] += 1
        try:
            if not msg.payload:
                self._ack(msg.mid, msg.qos, self._generation)
                return  # a retained message being cleared
            kind, base, mac = split_topic(msg.topic)
            event = parse_event(msg.payload)
        except BadInput as e:
            self.counts["bad"] += 1
            log.info("ignored a message on %s: %s", msg.topic[:200], e)
            self._ack(msg.mid, msg.qos, self._generation)
            return
        except Exception:
            self.counts["errors"] += 1
            log.exception("could not read a message on %s", msg.topic[:200])
            return
        self._queue.put(((kind, base, mac, event, bool(msg.retain)), msg.mid, msg.qos, self._generation))
        if self.settings.mqtt_retained_per_device and kind == "status" and base not in self._followed:
            self._follow([base])

    def _ack(self, mid, qos, generation):
        if qos and generation == self._generation:
            self.client.ack(mid, qos)

    def _record(self, batch):
        """store.record_events(batch), tried again while it raises (the
        database away: a transient failure; the broker sends no more than
        its in-flight window meanwhile, so the wait costs no memory) after
        1, 2, 4 .. 30 s. Returns its list of (message, error) that failed
        one by one (bad data: permanent), or None when stopped first."""
        delay = 1.0
        while True:
            try:
                return self.store.record_events([b[0] for b in batch])
            except Exception:  # noqa: BLE001 - any database error: log it, wait, try again
                self.counts["errors"] += 1
                log.exception("could not record %d MQTT messages; again in %.0f s", len(batch), delay)
            if self._stopping.wait(delay):
                return None
            delay = min(30.0, delay * 2)

    def _write(self):
        """The writer thread: records what has queued up in one transaction
        (at most BATCH_MAX), then acknowledges it. A message that fails on
        its own (bad data) is logged and acknowledged anyway: the broker
        giving it again would fail the same way. A batch that cannot be
        written at all (the database away) is tried again (_record)."""
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < BATCH_MAX:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(nxt)
            failed = self._record(batch)
            if failed is None:
                return  # stopped while the database was away: not acknowledged (a shared group hands them on)
            for item, e in failed:
                self.counts["errors"] += 1
                log.error("could not record a %s message of %s: %s", item[0], str(item[2])[:40], e)
            self.counts["recorded"] += len(batch) - len(failed)
            self.counts["batches"] += 1
            for _, mid, qos, generation in batch:
                self._ack(mid, qos, generation)

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
