# A small MQTT 3.1.1 client with umqtt.simple's public API, written from the
# OASIS MQTT 3.1.1 specification. Unlike umqtt it never blocks without a
# deadline: the socket is non-blocking, partial reads and writes are kept in
# buffers, and the agent's loop drives it through wants()/ready()/service().
# The blocking calls (connect, wait_msg) are thin loops over the same steps.
import struct

from . import rt

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14

CLOSED, CONNECTING, HANDSHAKE, CONNECTED = 0, 1, 2, 3

_CONNACK_ERRORS = {1: "unacceptable protocol version", 2: "client id rejected",
                   3: "server unavailable", 4: "bad user name or password", 5: "not authorized"}

READ_SIZE = 4096


class MQTTException(Exception):
    pass


def _str(s):
    b = s.encode() if isinstance(s, str) else bytes(s)
    return struct.pack("!H", len(b)) + b


def _varlen(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _packet(first, body):
    return bytes([first]) + _varlen(len(body)) + body


def _decode_len(buf, start, end):
    """(remaining length, header size) of the packet at buf[start], or None
    while incomplete; MQTTException if the length field is malformed."""
    n = shift = 0
    i = start + 1
    while i < end:
        b = buf[i]
        n |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return n, i - start
        shift += 7
        if shift > 21:
            raise MQTTException("malformed remaining length")
    return None


def _pid(two):
    """A 16-bit field; a broker that sends a short packet is cut off, not
    trusted (CPython's struct.error is no ValueError)."""
    if len(two) != 2:
        raise MQTTException("malformed packet")
    return two[0] << 8 | two[1]


class MQTTClient:
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
        self.lw = None
        self.sock = self.raw = None  # raw: the TCP socket under TLS
        self.state = CLOSED
        self.pid = 0
        self.inflight = {}       # pid -> [kind, packet]; kept across reconnects
        self.qos2_in = {}        # pid -> True while waiting for PUBREL
        self._reset_io()
        self.last_tx = self.last_rx = self.ping_sent = self.started = 0
        self.error = None

    def _reset_io(self):
        self.inbuf = bytearray()
        self.skip = 0            # bytes left of an oversize packet being dropped
        self.outq = []
        self.cur = b""           # the chunk being written: retried unchanged (TLS needs that)

    # ---- umqtt.simple API --------------------------------------------

    def set_callback(self, f):
        self.cb = f

    def set_last_will(self, topic, msg, retain=False, qos=0):
        if not 0 <= qos <= 2 or not topic:
            raise ValueError("bad last will")
        self.lw = (topic, msg, retain, qos)

    def connect(self, clean_session=True, timeout=None):
        """Blocking connect with a deadline; True if the broker kept a session."""
        self.start(clean_session)
        present = []
        hook = self.on_connect

        def done(sp):
            present.append(sp)
            if hook:
                hook(sp)
        self.on_connect = done
        try:
            self._pump_until(lambda: present or self.state == CLOSED, timeout)
        finally:
            self.on_connect = hook
        if not present:
            raise MQTTException(self.error or "connect timed out")
        return present[0]

    def disconnect(self):
        if self.state == CONNECTED:
            self._queue(b"\xe0\x00")
            end = rt.ms() + 1000
            while (self.cur or self.outq) and rt.ms() < end and self.sock:
                self._flush()
                if self.cur or self.outq:
                    rt.wait_io(self.sock, rt.POLLOUT, 50)
        self._close(None)

    def ping(self):
        self._queue(b"\xc0\x00")
        self.ping_sent = self.ping_sent or rt.ms()

    def publish(self, topic, msg, retain=False, qos=0):
        """Queue a PUBLISH; the packet id for QoS 1/2 (resent after a
        reconnect until acknowledged), None for QoS 0."""
        if isinstance(msg, str):
            msg = msg.encode()
        if not 0 <= qos <= 2:
            raise ValueError("qos")
        pid = None
        body = _str(topic)
        if qos:
            pid = self._next_pid()
            body += struct.pack("!H", pid)
        pkt = _packet(0x30 | qos << 1 | (1 if retain else 0), body + msg)
        if qos:
            self.inflight[pid] = [PUBLISH, pkt]
        if self.state == CONNECTED:
            self._queue(pkt)
        elif not qos:
            raise OSError(107, "not connected")
        return pid

    def subscribe(self, topic, qos=0):
        pid = self._next_pid()
        pkt = _packet(0x82, struct.pack("!H", pid) + _str(topic) + bytes([qos]))
        self.inflight[pid] = [SUBSCRIBE, pkt]
        if self.state == CONNECTED:
            self._queue(pkt)
        return pid

    def check_msg(self):
        """Handle whatever has arrived, without waiting."""
        if self.sock is None:
            raise OSError(107, "not connected")
        self.step()
        self.service()

    def wait_msg(self, timeout=None):
        """Wait (with a deadline: timeout, else the keepalive) for input and
        handle it."""
        if self.sock is None:
            raise OSError(107, "not connected")
        seen = self.last_rx
        self._pump_until(lambda: self.last_rx != seen or self.state == CLOSED,
                         timeout or (self.keepalive or 30))
        if self.state == CLOSED:
            raise OSError(104, self.error or "connection closed")

    # ---- the loop's interface ----------------------------------------

    def start(self, clean_session=True):
        """Begin connecting; progress comes from ready()/step()/service()."""
        self._close(None)
        self._reset_io()
        self.error = None
        self.clean = clean_session
        self.started = rt.ms()
        self.sock = self.raw = rt.tcp_start(self.server, self.port)
        self.state = CONNECTING

    def wants(self):
        if self.sock is None:
            return []
        if self.state == CONNECTING:
            return [(self.sock, rt.POLLOUT)]
        if self.state == HANDSHAKE and self.ssl:
            # The TLS handshake moves when the broker answers; waiting for
            # POLLOUT here would spin.
            return [(self.sock, rt.POLLIN)]
        return [(self.sock, rt.POLLIN | (rt.POLLOUT if self.cur or self.outq else 0))]

    def ready(self, sock, events):
        self.step(events)

    def step(self, events=0):
        try:
            if self.state == CONNECTING:
                if not rt.connected(self.sock, events):
                    return
                self._on_tcp()
            if self.sock is not None:
                self._flush()
                self._read()
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
            return 100
        if self.cur or self.outq:
            self.step()
        if self.keepalive:
            ka = self.keepalive * 1000
            if self.ping_sent and now - self.ping_sent > ka // 2:
                self._close("no PINGRESP in %d s" % (ka // 2000))
                return 60000
            if now - self.last_rx > ka * 3 // 2:
                self._close("nothing from the broker for %d s" % (ka * 3 // 2000))
                return 60000
            if not self.ping_sent and now - self.last_tx >= ka // 2:
                self.ping()
                self._flush_safe()
            nxt = ka // 2 - (now - self.last_tx)
            if self.ping_sent:
                nxt = ka // 2 - (now - self.ping_sent) + 1
            return max(50, min(nxt, 10000))
        return 10000

    def connected(self):
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
        self._queue(self._connect_packet())

    def _connect_packet(self):
        flags = 0x02 if self.clean else 0
        payload = _str(self.client_id)
        if self.lw:
            topic, msg, retain, qos = self.lw
            flags |= 0x04 | qos << 3 | (0x20 if retain else 0)
            payload += _str(topic) + _str(msg)
        if self.user:
            flags |= 0x80
            payload += _str(self.user)
            if self.pswd:
                flags |= 0x40
                payload += _str(self.pswd)
        var = _str("MQTT") + bytes([4, flags]) + struct.pack("!H", self.keepalive)
        return _packet(0x10, var + payload)

    def _queue(self, pkt):
        self.outq.append(pkt)
        self._flush_safe()

    def _flush_safe(self):
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
                # Whole packets go out in one write each time: no Nagle stalls.
                self.cur = self.outq[0] if len(self.outq) == 1 else b"".join(self.outq)
                self.outq = []
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
                raise OSError(104, "connection closed by broker")
            rt.quickack(self.raw)
            self.last_rx = rt.ms()
            if self.skip:
                data = self._skip(data)
            self.inbuf.extend(data)
            self._parse()

    def _skip(self, data):
        n = min(self.skip, len(data))
        self.skip -= n
        return data[n:]

    def _parse(self):
        buf = self.inbuf
        pos, end = 0, len(buf)
        while pos < end and self.sock is not None:
            hl = _decode_len(buf, pos, end)
            if hl is None:
                break
            rl, hsize = hl
            if rl > self.max_packet:
                if not self._oversize(buf, pos, end, rl, hsize):
                    break
                pos = end
                break
            if end - pos < hsize + rl:
                break
            self._handle(buf[pos], bytes(buf[pos + hsize:pos + hsize + rl]))
            pos += hsize + rl
        if pos:
            self.inbuf = buf[pos:]

    def _oversize(self, buf, pos, end, rl, hsize):
        """Drop a PUBLISH too big to keep, acknowledging it; False while its
        topic and packet id have not arrived yet."""
        first = buf[pos]
        if first >> 4 != PUBLISH:
            raise MQTTException("packet of %d bytes" % rl)
        head = bytes(buf[pos + hsize:min(end, pos + hsize + 1024)])
        if len(head) < 2:
            return False
        tlen = _pid(head[:2])
        qos = (first >> 1) & 3
        need = 2 + tlen + (2 if qos else 0)
        if len(head) < need:
            if need > 1024:
                raise MQTTException("topic too long")
            return False
        topic = head[2:2 + tlen]
        if qos:
            self._ack_publish(qos, _pid(head[2 + tlen:need]))
        self.skip = rl - (end - pos - hsize)
        if self.on_oversize:
            self.on_oversize(topic, rl)
        return True

    def _handle(self, first, body):
        kind = first >> 4
        if self.state == HANDSHAKE:
            if kind != CONNACK or len(body) != 2:
                raise MQTTException("expected CONNACK")
            if body[1]:
                raise MQTTException("broker refused: " + _CONNACK_ERRORS.get(body[1], "code %d" % body[1]))
            self.state = CONNECTED
            self.ping_sent = 0
            self.last_rx = self.last_tx = rt.ms()
            self._resend()
            if self.on_connect:
                self.on_connect(bool(body[0] & 1))
            return
        if kind == PUBLISH:
            self._on_publish(first, body)
        elif kind == PINGRESP:
            self.ping_sent = 0
        elif kind in (PUBACK, PUBCOMP, UNSUBACK):
            self.inflight.pop(_pid(body), None)
        elif kind == PUBREC:
            pid = _pid(body)
            pubrel = b"\x62\x02" + body
            # The broker has the message: from here on only PUBREL is resent.
            self.inflight[pid] = [PUBREL, pubrel]
            self._queue(pubrel)
        elif kind == PUBREL:
            self.qos2_in.pop(_pid(body), None)
            self._queue(b"\x70\x02" + body)
        elif kind == SUBACK:
            pid = _pid(body[:2])
            self.inflight.pop(pid, None)
            if self.on_suback:
                self.on_suback(pid, list(body[2:]))
        else:
            raise MQTTException("unexpected packet type %d" % kind)

    def _on_publish(self, first, body):
        qos = (first >> 1) & 3
        if qos == 3:
            raise MQTTException("PUBLISH with QoS 3")
        tlen = _pid(body[:2])
        pos = 2 + tlen
        topic = body[2:pos]
        pid = 0
        if qos:
            pid = _pid(body[pos:pos + 2])
            pos += 2
        if pos > len(body):
            raise MQTTException("malformed PUBLISH")
        msg = body[pos:]
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

    def _resend(self):
        for pid in sorted(self.inflight):
            kind, pkt = self.inflight[pid]
            if kind == PUBLISH:
                # A clean session is new to the broker; otherwise mark it DUP.
                self.outq.append(pkt if self.clean else bytes([pkt[0] | 0x08]) + pkt[1:])
            elif not self.clean:
                self.outq.append(pkt)  # PUBREL
        if self.clean:
            # A clean session forgets PUBREL'd messages: the broker has them.
            for pid in [p for p, v in self.inflight.items() if v[0] == PUBREL]:
                del self.inflight[pid]
        self._flush_safe()

    def _close(self, reason):
        was_open = self.sock is not None
        rt.close(self.sock)
        self.sock = None
        self.state = CLOSED
        self.ping_sent = 0
        self.qos2_in = {}
        # Subscriptions are the session's to renew after a reconnect.
        for pid in [p for p, v in self.inflight.items() if v[0] == SUBSCRIBE]:
            del self.inflight[pid]
        if reason:
            self.error = reason
        if was_open and self.on_close:
            self.on_close(reason)

    def _pump_until(self, cond, timeout):
        end = rt.ms() + int((timeout or self.timeout_ms / 1000) * 1000)
        while not cond() and rt.ms() < end and self.sock is not None:
            w = self.wants()
            ev = rt.wait_io(w[0][0], w[0][1], min(100, max(0, end - rt.ms()))) if w else 0
            self.step(ev)
            self.service()
