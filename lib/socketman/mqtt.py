# An MQTT 3.1.1 client (OASIS spec) with umqtt.simple's constructor and
# publish/subscribe API. Unlike umqtt it never blocks: its connection is a
# conn.Conn (non-blocking TCP, TLS verified by the context it is given),
# and the loop drives it (start/wants/step/service). QoS 0-2 both ways.
# umqtt's blocking connect/wait_msg/check_msg are in blocking.py.
import errno
import struct

from . import mqttpacket as wire
from . import rt
from .conn import Conn
from .mqttpacket import MQTTException, string, u16

CLOSED, CONNECTING, HANDSHAKE, CONNECTED = 0, 1, 2, 3

MAX_SENDS = 2   # times one PUBLISH is sent before it is given up: each try costs a reconnect


class MQTTClient:
    """An MQTT 3.1.1 client. server (an IP address, or a name the owner
    looks up: start(addr=)), port (0: 1883, or 8883 with ssl), user and
    password (None: none), keepalive (s, 0: none), ssl: an SSLContext
    (tls.context) or None, timeout: the deadline for CONNACK (s),
    max_packet: the largest inbound packet kept (bytes; a larger PUBLISH is
    acknowledged and dropped)."""
    def __init__(self, client_id, server, port=0, user=None, password=None, keepalive=0,
                 ssl=None, ssl_params=None, timeout=10, max_packet=131072):
        if port == 0:
            port = 8883 if ssl else 1883
        self.client_id = client_id
        self.server = server
        self.port = port
        self.user = user
        self.pswd = password
        self.keepalive = keepalive
        self.ssl = ssl  # None/False, or an SSLContext (see tls.context)
        self.ssl_params = ssl_params or {}
        self.timeout_ms = int(timeout * 1000)
        self.cb = None
        self.cb_retain = None    # f(topic, msg, retained): called instead of cb when set
        self.on_connect = None   # f(session_present)
        self.on_suback = None    # f(pid, granted_qos_list)
        self.on_close = None     # f(reason)
        self.on_oversize = None  # f(topic, size): a PUBLISH bigger than max_packet, dropped
        self.on_give_up = None   # f(pid, tag): a PUBLISH sent MAX_SENDS times, never acknowledged
        self.hold_resend = False  # True: resend() is the owner's to call after CONNACK
        self.lw = None
        self.conn = Conn()
        self.conn.on_open = self._on_open
        self.conn.on_data = self._on_data
        self.state = CLOSED
        self.pid = 0
        self.unacked = {}        # pid -> [kind, packet, times sent, tag]; kept across reconnects
        self.qos2_in = {}        # pid -> True while waiting for PUBREL
        self.owed = []           # pids to send again on this connection (resend())
        self.inbox = wire.Inbox(max_packet, self._on_packet, self._on_oversize)
        self.started = 0
        self.ping_sent = None    # when the unanswered PINGREQ went out (ms); 0 is a time too
        self.error = None

    @property
    def sock(self):
        """The connection's socket; None while closed."""
        return self.conn.sock

    @property
    def last_rx(self):
        """When the broker last sent a byte (agent ms)."""
        return self.conn.last_rx

    # ---- umqtt.simple API --------------------------------------------

    def set_callback(self, f):
        """f(topic bytes, msg bytes) for each inbound PUBLISH."""
        self.cb = f

    def set_last_will(self, topic, msg, retain=False, qos=0):
        """The will the broker publishes if we vanish; ValueError for a bad one."""
        if not 0 <= qos <= 2 or not topic:
            raise ValueError("bad last will")
        self.lw = (topic, msg, retain, qos)

    def disconnect(self):
        """DISCONNECT (written within 1 s at most), then close."""
        if self.state == CONNECTED:
            self._queue(b"\xe0\x00")
            try:
                self.conn.drain(1000)
            except (OSError, ValueError):
                pass  # closed below all the same
        self._close(None)

    def ping(self):
        """Queue a PINGREQ."""
        self._queue(b"\xc0\x00")
        if self.ping_sent is None:
            self.ping_sent = rt.ms()

    def publish(self, topic, msg, retain=False, qos=0, tag=None):
        """Queue a PUBLISH; the packet id for QoS 1/2 (resent after a
        reconnect until acknowledged, MAX_SENDS times at most; then
        on_give_up(pid, tag)), None for QoS 0."""
        if isinstance(msg, str):
            msg = msg.encode()
        if not 0 <= qos <= 2:
            raise ValueError("qos")
        pid = self._next_pid() if qos else None
        pkt = wire.publish(topic, msg, qos, retain, pid)
        if qos:
            self.unacked[pid] = [wire.PUBLISH, pkt, 1 if self.state == CONNECTED else 0, tag]
        if self.state == CONNECTED:
            self._queue(pkt)
        elif not qos:
            raise OSError(errno.ENOTCONN, "not connected")
        return pid

    def subscribe(self, topic, qos=0):
        """Queue a SUBSCRIBE; its packet id (SUBACK goes to on_suback)."""
        pid = self._next_pid()
        pkt = wire.packet(0x82, struct.pack("!H", pid) + string(topic) + bytes([qos]))  # SUBSCRIBE
        self.unacked[pid] = [wire.SUBSCRIBE, pkt, 1, None]
        if self.state == CONNECTED:
            self._queue(pkt)
        return pid

    # ---- the loop's interface ----------------------------------------

    def start(self, clean_session=True, addr=None):
        """Begin connecting to addr (the server's IP address, or a list of
        its addresses tried in turn, conn.Conn.open; looked up by the owner:
        dns.addresses; None: server is one); progress comes from
        step()/service(). OSError when the connect fails at once."""
        self._close(None)
        self.error = None
        self.clean = clean_session
        self.started = rt.ms()
        c = self.conn
        c.tls = self.ssl or None
        c.host = self.ssl_params.get("server_hostname", self.server)
        c.open(addr or self.server, self.port, self.timeout_ms)
        self.state = CONNECTING

    def wants(self):
        """[(socket, poll mask)] to wait on now; [] when closed."""
        return self.conn.wants()

    def step(self, events=0):
        """Move on as far as possible without waiting (events: the poll
        events of the socket, 0 for none): connect, write, read. An error
        closes the connection (on_close(reason))."""
        try:
            self.conn.step(events)
        except (OSError, MQTTException, ValueError) as e:
            self._close("%s" % (e,))

    def service(self):
        """Timers: connect deadline, keepalive pings, dead-peer detection.
        The ms until it wants to run again."""
        if self.sock is None:
            return 60000
        now = rt.ms()
        if self.state != CONNECTED:
            try:
                nxt = self.conn.service()  # an address that does not answer: the next one
            except OSError as e:
                self._close("%s" % (e,))
                return 60000
            # Each address tried gets the whole deadline for CONNACK.
            since = now - max(self.started, self.conn.started)
            if since > self.timeout_ms:
                self._close("connect timed out")
                return 60000
            return min(nxt, self.timeout_ms - since + 1)  # sockets wake us before that
        if self.conn.pending():
            self.step()
        if self.keepalive:
            ka = self.keepalive * 1000
            if self.ping_sent is not None and now - self.ping_sent > ka // 2:
                self._close("no PINGRESP in %d s" % (ka // 2000))
                return 60000
            if now - self.conn.last_rx > ka * 3 // 2:
                self._close("nothing from the broker for %d s" % (ka * 3 // 2000))
                return 60000
            # Ask for a sign of life when either way has been quiet for half
            # the keepalive: our own sends (QoS 0 PINGs of the agent, say)
            # say nothing about whether the broker is still there, and an
            # idle broker sends nothing unless asked.
            quiet = now - min(self.conn.last_tx, self.conn.last_rx)
            if self.ping_sent is None and quiet >= ka // 2:
                self.ping()
                quiet = 0
            nxt = ka // 2 - quiet
            if self.ping_sent is not None:
                nxt = ka // 2 - (now - self.ping_sent) + 1
            return max(50, nxt)
        return 60000

    def connected(self):
        """True after CONNACK, until the connection closes."""
        return self.state == CONNECTED

    # ---- internals -----------------------------------------------------

    def _next_pid(self):
        while True:
            self.pid = self.pid % 65535 + 1
            if self.pid not in self.unacked:
                return self.pid

    def _on_open(self):
        self.state = HANDSHAKE
        self._queue(wire.connect(self.client_id, self.clean, self.keepalive, self.lw,
                                 self.user, self.pswd))

    def _queue(self, pkt):
        self.conn.queue(pkt)
        self._flush()

    def _flush(self):
        try:
            self.conn.flush()
        except (OSError, ValueError) as e:  # from outside step(): the connection closes here
            self._close("%s" % (e,))

    def _on_data(self, data):
        if not data:
            raise OSError(errno.ECONNRESET, "connection closed by broker")
        self.inbox.feed(data)

    def _on_packet(self, first, buf, start, end, own):
        if first >> 4 == wire.PUBLISH:
            self._on_publish(first, buf, start, end, own)
        else:
            self._handle(first, bytes(buf[start:end]))

    def _on_oversize(self, qos, topic, pid, size):
        if qos:
            self._ack_publish(qos, pid)
        if self.on_oversize:
            self.on_oversize(topic, size)

    def _handle(self, first, body):
        kind = first >> 4
        if self.state == HANDSHAKE:
            if kind != wire.CONNACK or len(body) != 2:
                raise MQTTException("expected CONNACK")
            if body[1]:
                raise MQTTException("broker refused: " + wire.CONNACK_ERRORS.get(body[1], "code %d" % body[1]))
            self.state = CONNECTED
            self.ping_sent = None
            self.conn.last_rx = self.conn.last_tx = rt.ms()
            self.owed = sorted(self.unacked)  # what the last connection left unacknowledged
            if not self.hold_resend:
                self.resend()
            if self.on_connect:
                self.on_connect(bool(body[0] & 1))
            return
        if kind == wire.PUBLISH:
            self._on_publish(first, body, 0, len(body), False)
        elif kind == wire.PINGRESP:
            self.ping_sent = None
        elif kind in (wire.PUBACK, wire.PUBCOMP, wire.UNSUBACK):
            self.unacked.pop(u16(body), None)
        elif kind == wire.PUBREC:
            pid = u16(body)
            pubrel = b"\x62\x02" + body
            # The broker has the message: from here on only PUBREL is resent.
            self.unacked[pid] = [wire.PUBREL, pubrel, 1, None]
            self._queue(pubrel)
        elif kind == wire.PUBREL:
            self.qos2_in.pop(u16(body), None)
            self._queue(b"\x70\x02" + body)
        elif kind == wire.SUBACK:
            pid = u16(body[:2])
            self.unacked.pop(pid, None)
            if self.on_suback:
                self.on_suback(pid, list(body[2:]))
        else:
            raise MQTTException("unexpected packet type %d" % kind)

    def _on_publish(self, first, buf, start, end, own):
        """The PUBLISH in buf[start:end]; own: buf is ours to cut the message
        out of in place. The message goes on as a bytearray."""
        if self.state == HANDSHAKE:
            raise MQTTException("expected CONNACK")
        qos = (first >> 1) & 3
        off = 2 + wire.u16(buf[start:start + 2]) + (2 if qos else 0)
        qos, topic, pid, off = wire.publish_head(first, bytes(buf[start:min(end, start + off)]))
        if own:
            buf[:start + off] = b""
            buf[end - start - off:] = b""
            msg = buf
        else:
            msg = buf[start + off:end]
        if qos == 2 and pid in self.qos2_in:
            self._ack_publish(2, pid)  # a resend of one we already delivered
            return
        if qos == 2:
            self.qos2_in[pid] = True
        if self.cb_retain:
            self.cb_retain(topic, msg, bool(first & 1))
        elif self.cb:
            self.cb(topic, msg)
        if qos:
            self._ack_publish(qos, pid)

    def _ack_publish(self, qos, pid):
        self._queue((b"\x40\x02" if qos == 1 else b"\x50\x02") + struct.pack("!H", pid))

    def resend(self):
        """Send again what the last connection left unacknowledged (at
        CONNACK, or when the owner says, with hold_resend). A PUBLISH sent
        MAX_SENDS times is given up: one the broker closes the connection on
        (over its packet size) would lock us out."""
        owed, self.owed = self.owed, []
        for pid in owed:
            entry = self.unacked.get(pid)
            if entry is None:
                continue  # acknowledged meanwhile
            kind, pkt = entry[0], entry[1]
            if kind == wire.PUBLISH:
                if entry[2] >= MAX_SENDS:
                    del self.unacked[pid]
                    if self.on_give_up:
                        self.on_give_up(pid, entry[3])
                    continue
                entry[2] += 1
                # A clean session is new to the broker; otherwise mark it DUP.
                self.conn.queue(pkt if self.clean else bytes([pkt[0] | 0x08]) + pkt[1:])
            elif not self.clean:
                self.conn.queue(pkt)  # PUBREL
        if self.clean:  # a clean session forgets PUBREL'd messages: the broker has them
            self._drop(wire.PUBREL)
        self._flush()

    def _drop(self, kind):
        for pid in [p for p, v in self.unacked.items() if v[0] == kind]:
            del self.unacked[pid]

    def _close(self, reason):
        was_open = self.conn.sock is not None
        self.conn.close()
        self.inbox.clear()
        self.state = CLOSED
        self.ping_sent = None
        self.qos2_in = {}
        self._drop(wire.SUBSCRIBE)  # subscriptions are the session's to renew after a reconnect
        if reason:
            self.error = reason
        if was_open and self.on_close:
            self.on_close(reason)
