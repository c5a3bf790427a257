# The MQTT session of PROTOCOL 4: topics, CONNECT/last will, subscription,
# reconnect with capped exponential backoff and full jitter, and a queue for
# what is published while the broker is away.
import random

from . import dns, events, log, mqtt, reach, rt
from .mqtt import MQTTClient

BACKOFF_MAX_S = 120
BACKOFF_BASE_S = 10
STABLE_MS = 60000
MAX_QUEUED = 200


class Session:
    """The device's MQTT session, driven by the loop (wants/ready/tick).
    tls_ctx: an SSLContext (tls.context) for `tls`, else None. Set
    on_message(payload bytes or None when it was too large, retained bool)
    to receive the jobs that arrive on sub/<base>."""

    def __init__(self, cfg, tls_ctx=None):
        self.base = events.base(cfg["topic"], cfg["key"], cfg["mac"])
        self.qos = cfg["qos"]
        self.cid = events.client_id(cfg["mac"])
        self.on_message = None
        self.wake = None   # wake(in_ms): run tick() then (the loop's task), set by the wiring
        self.on_online = None  # f(): subscribed and announced
        self.status_topic = "status/" + self.base
        self.sub_topic = "sub/" + self.base
        c = MQTTClient(self.cid, cfg["mqtt_host"], cfg["port"], cfg["username"] or None,
                       cfg["password"] or None, cfg["keepalive"], ssl=tls_ctx,
                       max_packet=2 * 65536)
        c.cb_retain = self._on_publish  # umqtt's cb, plus the RETAIN flag
        c.on_connect = self._on_connect
        c.on_suback = self._on_suback
        c.on_close = self._on_close
        c.on_oversize = self._on_oversize
        c.on_give_up = self._on_give_up
        c.hold_resend = True  # subscribed and announced first, then what is owed
        self.client = c
        self.where = "%s:%d" % (cfg["mqtt_host"], cfg["port"])
        self.online = False      # subscribed and announced
        self.failures = 0
        self.next_try = rt.ms()
        self.connected_at = None
        self.sub_pid = None
        self.queue = []          # (kind, payload, qos, retain) waiting for a connection
        self.stopping = False

    # ---- what the agent calls --------------------------------------------

    def publish(self, kind, payload, qos, retain=False, keep=True, on_give_up=None):
        """Publish payload (bytes) on <kind>/<base> (kind: "status",
        "delivery" or "pub"). While offline, keep it for later (MAX_QUEUED
        at most) unless keep is False (pings: a late ping says nothing).
        on_give_up() is called if the broker never takes it (the connection
        died each time it was sent: mqtt.MAX_SENDS). True when it was handed
        to the client now."""
        if self.online:
            try:
                self.client.publish(kind + "/" + self.base, payload, retain, qos, on_give_up)
                return True
            except OSError:
                pass
        if keep:
            if len(self.queue) >= MAX_QUEUED:
                log.warn("mqtt: offline queue full, dropping the oldest message")
                self.queue.pop(0)
            self.queue.append((kind, payload, qos, retain, on_give_up))
        return False

    def stop(self):
        """Clean stop: retained online "0" ourselves, then DISCONNECT."""
        self.stopping = True
        if self.client.connected():
            try:
                self.client.publish(self.status_topic, events.connect(rt.now(), False, self.cid), True, 1)
            except OSError:
                pass
            self.client.disconnect()

    # ---- loop interface --------------------------------------------------

    def wants(self):
        """[(socket, poll mask)] of the MQTT connection."""
        return self.client.wants()

    def ready(self, sock, ev):
        """The loop saw events on the connection."""
        self.client.step(ev)

    def tick(self):
        """Reconnect when due, keepalive; the ms until the next look."""
        if self.client.sock is None:
            now = rt.ms()
            if now < self.next_try:
                return self.next_try - now
            return self._connect()
        return self.client.service()

    # ---- internals -------------------------------------------------------

    def _connect(self):
        try:
            addrs = dns.addresses(self.client.server)  # never waits: None while it is looked up
        except OSError as e:
            self._retry("connect to %s: %s" % (self.where, e))
            return 100
        if addrs is None:
            return dns.poll_ms(self.client.server)
        log.debug("mqtt: connecting to " + self.where)
        self.client.set_last_will(self.status_topic, events.connect(rt.now(), False, self.cid),
                                  retain=True, qos=1)
        try:
            self.client.start(clean_session=True, addr=addrs)  # each in turn before backing off
        except OSError as e:
            self._retry("connect to %s: %s" % (self.where, e))
            return 100
        self.client.step()  # on a near broker the TCP connect is already done: CONNECT now
        return 100

    def _retry(self, why):
        self.online = False
        if self.connected_at is not None and rt.ms() - self.connected_at >= STABLE_MS:
            self.failures = 0
        self.connected_at = None
        # A quarter to all of the cap: a fleet that lost its broker together
        # comes back spread over seconds, not in one (the first try is 2.5
        # to 10 s after the loss, then 5-20, 10-40 ... at most 120 s).
        cap = min(BACKOFF_MAX_S, BACKOFF_BASE_S << min(self.failures, 10))
        delay = cap * (0.25 + 0.75 * random.random())
        self.failures += 1
        self.next_try = rt.ms() + int(delay * 1000)
        if self.wake is not None:
            self.wake(self.next_try - rt.ms())
        log.warn("mqtt: %s; next try in %.1f s" % (why, delay))

    def _on_connect(self, session_present):
        self.connected_at = rt.ms()
        dns.prefer(self.client.server, self.client.conn.addr)  # it answered: first next time
        reach.up(self.client.server, self.client.port, True)  # the status check needs no connection to it
        log.info("mqtt: connected to " + self.where)
        self.sub_pid = self.client.subscribe(self.sub_topic, self.qos)

    def _on_suback(self, pid, granted):
        if pid != self.sub_pid:
            return
        if not granted or granted[0] == 0x80:
            log.error("mqtt: broker refused the subscription to " + self.sub_topic)
            self.client.disconnect()
            return
        # Subscribed first, then online: a controller that sees the device
        # online can send it jobs at once.
        self.online = True
        self.client.publish(self.status_topic, events.connect(rt.now(), True, self.cid), True, 1)
        # What the last connection left unacknowledged goes after that: a
        # message the broker closes the connection on must not keep the
        # device from being subscribed and seen online.
        self.client.resend()
        queued, self.queue = self.queue, []
        for kind, payload, qos, retain, on_give_up in queued:
            self.publish(kind, payload, qos, retain, True, on_give_up)
        if self.on_online:
            self.on_online()

    def _on_close(self, reason):
        reach.up(self.client.server, self.client.port, False)
        if self.stopping:
            return
        what = "connection to %s lost" if self.connected_at is not None else "connect to %s failed"
        if self.connected_at is None and self.client.ssl:
            from .tls import tls_note
            reason = tls_note(reason or "closed")  # say so when it was our certificate
        self._retry("%s: %s" % (what % self.where, reason or "closed"))

    def _on_publish(self, topic, msg, retained):
        if topic == self.sub_topic.encode() and self.on_message:
            self.on_message(msg, retained)

    def _on_give_up(self, pid, on_give_up):
        log.error("mqtt: a message was sent %d times and the connection died each time: given up "
                  "(is it over the broker's packet size? see max_payload)" % mqtt.MAX_SENDS)
        if on_give_up is not None:
            on_give_up()

    def _on_oversize(self, topic, size):
        if topic == self.sub_topic.encode():
            log.warn("mqtt: dropped a %d-byte message on %s" % (size, self.sub_topic))
            if self.on_message:
                self.on_message(None, False)
