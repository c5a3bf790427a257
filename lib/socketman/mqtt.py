# An MQTT 3.1.1 client (OASIS spec) with umqtt.simple's constructor and
# publish/subscribe API. Unlike umqtt it never blocks: the socket is
# non-blocking, partial reads and writes wait in buffers, and the loop drives
# it (start/wants/ready/service). QoS 0-2 both ways, TLS verified (rt).
# umqtt's blocking connect/wait_msg/check_msg are in blocking.py.
import errno
import struct

from . import dns, rt
from . import mqttpacket as wire
from .mqttpacket import MQTTException, string, u16

CLOSED, CONNECTING, HANDSHAKE, CONNECTED = 0, 1, 2, 3

READ_SIZE = 4096
JOIN_MAX = 1024  # bytes: packets up to this size are joined into one write
MAX_SENDS = 2   # times one PUBLISH is sent before it is given up: each try costs a reconnect


class MQTTClient:
    """An MQTT 3.1.1 client. server, port (0: 1883, or 8883 with ssl), user and
    password (None: none), keepalive (s, 0: none), ssl: an SSLContext or
    None, timeout: the connect deadline (s), max_packet: the largest inbound
    packet kept (bytes; a larger PUBLISH is acknowledged and dropped)."""
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
        self.ssl = ssl  # None/False, or an SSLContext (see rt.tls_context)
        self.ssl_params = ssl_params or {}
        self.timeout_ms = int(timeout * 1000)
        self.max_packet = max_packet
        self.cb = None
        self.cb_retain = None    # f(topic, msg, retained): called instead of cb when set
        self.on_connect = None   # f(session_present)
        self.on_suback = None    # f(pid, granted_qos_list)
        self.on_close = None     # f(reason)
        self.on_oversize = None  # f(topic, size): a PUBLISH bigger than max_packet, dropped
        self.on_give_up = None   # f(pid, tag): a PUBLISH sent MAX_SENDS times, never acknowledged
        self.hold_resend = False  # True: resend() is the owner's to call after CONNACK
        self.lw = None
        self.sock = self.raw = None  # raw: the TCP socket under TLS
        self.state = CLOSED
        self.pid = 0
        self.inflight = {}       # pid -> [kind, packet, times sent, tag]; kept across reconnects
        self.qos2_in = {}        # pid -> True while waiting for PUBREL
        self.owed = []           # pids to send again on this connection (resend())
        self._reset_io()
        self.last_tx = self.last_rx = self.started = 0
        self.ping_sent = None    # when the unanswered PINGREQ went out (ms); 0 is a time too
        self.error = None

    def _reset_io(self):
        self.inbuf = bytearray()
        self.fill = 0            # bytes of inbuf that hold data; the rest is room
        self.skip = 0            # bytes left of an oversize packet being dropped
        self.outq = []
        self.cur = b""           # the chunk being written: retried unchanged (TLS needs that)

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
            end = rt.ms() + 1000
            while (self.cur or self.outq) and rt.ms() < end and self.sock:
                self._flush()
                if self.cur or self.outq:
                    rt.wait_io(self.sock, rt.POLLOUT, 50)
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
            self.inflight[pid] = [wire.PUBLISH, pkt, 1 if self.state == CONNECTED else 0, tag]
        if self.state == CONNECTED:
            self._queue(pkt)
        elif not qos:
            raise OSError(errno.ENOTCONN, "not connected")
        return pid

    def subscribe(self, topic, qos=0):
        """Queue a SUBSCRIBE; its packet id (SUBACK goes to on_suback)."""
        pid = self._next_pid()
        pkt = wire.packet(0x82, struct.pack("!H", pid) + string(topic) + bytes([qos]))  # SUBSCRIBE
        self.inflight[pid] = [wire.SUBSCRIBE, pkt, 1, None]
        if self.state == CONNECTED:
            self._queue(pkt)
        return pid

    # ---- the loop's interface ----------------------------------------

    def start(self, clean_session=True, addr=None):
        """Begin connecting to addr (the server's address; None: look the
        server's name up now, which may block); progress comes from
        ready()/step()/service()."""
        self._close(None)
        self._reset_io()
        self.error = None
        self.clean = clean_session
        self.started = rt.ms()
        self.sock = self.raw = rt.tcp_start(addr or dns.resolve_now(self.server), self.port)
        self.state = CONNECTING

    def wants(self):
        """[(socket, poll mask)] to wait on now; [] when closed."""
        if self.sock is None:
            return []
        if self.state == CONNECTING:
            return [(self.sock, rt.POLLOUT)]
        if self.state == HANDSHAKE and self.ssl:
            return [(self.sock, rt.POLLIN)]  # the handshake moves when the broker answers; POLLOUT would spin
        return [(self.sock, rt.POLLIN | (rt.POLLOUT if self.cur or self.outq else 0))]

    def ready(self, sock, events):
        """The loop saw events on sock."""
        self.step(events)

    def step(self, events=0):
        """Move on as far as possible without waiting: connect, write, read. An
        error closes the connection (on_close(reason))."""
        try:
            if self.state == CONNECTING:
                if not rt.connected(self.sock, events):
                    return
                self._on_tcp()
            if self.sock is not None:
                self._flush()
                self._read()
            # A TLS handshake can end inside that read (a slow CPU finishes
            # it there, a fast one in the write before): what waited for it,
            # the CONNECT, goes now. Nothing else would wake us for it.
            if self.sock is not None and (self.cur or self.outq):
                self._flush()
        except (OSError, MQTTException, ValueError) as e:
            self._close("%s" % (e,))

    def service(self):
        """Timers: connect deadline, keepalive pings, dead-peer detection.
        The ms until it wants to run again."""
        if self.sock is None:
            return 60000
        now = rt.ms()
        if self.state != CONNECTED:
            if now - self.started > self.timeout_ms:
                self._close("connect timed out")
                return 60000
            return self.timeout_ms - (now - self.started) + 1  # sockets wake us before that
        if self.cur or self.outq:
            self.step()
        if self.keepalive:
            ka = self.keepalive * 1000
            if self.ping_sent is not None and now - self.ping_sent > ka // 2:
                self._close("no PINGRESP in %d s" % (ka // 2000))
                return 60000
            if now - self.last_rx > ka * 3 // 2:
                self._close("nothing from the broker for %d s" % (ka * 3 // 2000))
                return 60000
            # Ask for a sign of life when either way has been quiet for half
            # the keepalive: our own sends (QoS 0 PINGs of the agent, say)
            # say nothing about whether the broker is still there, and an
            # idle broker sends nothing unless asked.
            quiet = now - min(self.last_tx, self.last_rx)
            if self.ping_sent is None and quiet >= ka // 2:
                self.ping()
                self._flush_safe()
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
            if self.pid not in self.inflight:
                return self.pid

    def _on_tcp(self):
        if self.ssl:
            self.sock = rt.tls_wrap(self.ssl, self.sock, self.ssl_params.get("server_hostname", self.server))
        self.state = HANDSHAKE
        self._queue(wire.connect(self.client_id, self.clean, self.keepalive, self.lw,
                                        self.user, self.pswd))

    def _queue(self, pkt):
        self.outq.append(pkt)
        self._flush_safe()

    def _flush_safe(self):  # from outside step(): errors close the connection here
        if self.sock is None or self.state == CONNECTING:
            return
        try:
            self._flush()
        except (OSError, ValueError) as e:
            self._close("%s" % (e,))

    def _flush(self):
        while True:
            if not self.cur:
                if not self.outq:
                    return
                # Small packets go out in one write (no Nagle stalls); a big
                # one alone and through a view, never copied on a router's heap.
                q = self.outq
                if len(q) == 1 or max(len(p) for p in q) > JOIN_MAX:
                    self.cur = memoryview(q.pop(0))
                else:
                    self.cur, self.outq = b"".join(q), []
            n = rt.send(self.sock, self.cur)
            if not n:
                return
            self.last_tx = rt.ms()
            self.cur = self.cur[n:]

    def _read(self):
        while self.sock is not None:
            data = rt.recv(self.sock, READ_SIZE)
            if data is None:
                return
            if not data:
                raise OSError(errno.ECONNRESET, "connection closed by broker")
            rt.quickack(self.raw)
            self.last_rx = rt.ms()
            if self.skip:  # the rest of an oversize packet being dropped
                n = min(self.skip, len(data))
                self.skip -= n
                data = data[n:]
            self._take(data)
            self._parse()

    def _take(self, data):
        end = self.fill + len(data)
        if end > len(self.inbuf):
            self._grow(end)
        self.inbuf[self.fill:end] = data
        self.fill = end

    def _grow(self, size):
        buf = bytearray(size)
        buf[:self.fill] = memoryview(self.inbuf)[:self.fill]
        self.inbuf = buf

    def _parse(self):
        buf = self.inbuf
        pos, end = 0, self.fill
        while pos < end and self.sock is not None:
            hl = wire.decode_len(buf, pos, end)
            if hl is None:
                break
            rl, hsize = hl
            if rl > self.max_packet:
                if not self._oversize(buf, pos, end, rl, hsize):
                    break
                pos = end
                break
            size = hsize + rl
            if end - pos < size:
                if not pos and size > len(buf):
                    # Room for the whole packet at once: growing by each read
                    # copied a big PUBLISH over and over on a router's heap.
                    self._grow(size)
                break
            if buf[pos] >> 4 == wire.PUBLISH:
                last = pos + size == end
                if last:  # the buffer becomes the message: not copied
                    self.inbuf, self.fill = bytearray(), 0
                self._on_publish(buf[pos], buf, pos + hsize, pos + size, last)
            else:
                self._handle(buf[pos], bytes(buf[pos + hsize:pos + size]))
            pos += size
        if pos and self.inbuf is buf and self.sock is not None:
            self.inbuf, self.fill = buf[pos:end], end - pos

    def _oversize(self, buf, pos, end, rl, hsize):
        """Drop a PUBLISH too big to keep, acknowledging it; False while its
        topic and packet id have not arrived yet."""
        first = buf[pos]
        if first >> 4 != wire.PUBLISH:
            raise MQTTException("packet of %d bytes" % rl)
        head = bytes(buf[pos + hsize:min(end, pos + hsize + 1024)])
        h = wire.publish_head(first, head, partial=True)
        if h is None:
            if len(head) >= 2 and u16(head[:2]) > 1000:
                raise MQTTException("topic too long")
            return False
        qos, topic, pid, _ = h
        if qos:
            self._ack_publish(qos, pid)
        self.skip = rl - (end - pos - hsize)
        if self.on_oversize:
            self.on_oversize(topic, rl)
        return True

    def _handle(self, first, body):
        kind = first >> 4
        if self.state == HANDSHAKE:
            if kind != wire.CONNACK or len(body) != 2:
                raise MQTTException("expected CONNACK")
            if body[1]:
                raise MQTTException("broker refused: " + wire.CONNACK_ERRORS.get(body[1], "code %d" % body[1]))
            self.state = CONNECTED
            self.ping_sent = None
            self.last_rx = self.last_tx = rt.ms()
            self.owed = sorted(self.inflight)  # what the last connection left unacknowledged
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
            self.inflight.pop(u16(body), None)
        elif kind == wire.PUBREC:
            pid = u16(body)
            pubrel = b"\x62\x02" + body
            # The broker has the message: from here on only PUBREL is resent.
            self.inflight[pid] = [wire.PUBREL, pubrel, 1, None]
            self._queue(pubrel)
        elif kind == wire.PUBREL:
            self.qos2_in.pop(u16(body), None)
            self._queue(b"\x70\x02" + body)
        elif kind == wire.SUBACK:
            pid = u16(body[:2])
            self.inflight.pop(pid, None)
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
            entry = self.inflight.get(pid)
            if entry is None:
                continue  # acknowledged meanwhile
            kind, pkt = entry[0], entry[1]
            if kind == wire.PUBLISH:
                if entry[2] >= MAX_SENDS:
                    del self.inflight[pid]
                    if self.on_give_up:
                        self.on_give_up(pid, entry[3])
                    continue
                entry[2] += 1
                # A clean session is new to the broker; otherwise mark it DUP.
                self.outq.append(pkt if self.clean else bytes([pkt[0] | 0x08]) + pkt[1:])
            elif not self.clean:
                self.outq.append(pkt)  # PUBREL
        if self.clean:  # a clean session forgets PUBREL'd messages: the broker has them
            self._drop(wire.PUBREL)
        self._flush_safe()

    def _drop(self, kind):
        for pid in [p for p, v in self.inflight.items() if v[0] == kind]:
            del self.inflight[pid]

    def _close(self, reason):
        was_open = self.sock is not None
        rt.close(self.sock)
        self.sock = None
        self.state = CLOSED
        self.ping_sent = None
        self.qos2_in = {}
        self._drop(wire.SUBSCRIBE)  # subscriptions are the session's to renew after a reconnect
        if reason:
            self.error = reason
        if was_open and self.on_close:
            self.on_close(reason)
