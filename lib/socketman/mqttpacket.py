# MQTT 3.1.1 packets (OASIS MQTT 3.1.1): packet types, the fields and
# packets the client sends, decoding of the fixed header, and the inbound
# byte stream cut into whole packets (Inbox). No sockets: the client
# (mqtt.py) has the connection (conn.py).
import struct

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14

CONNACK_ERRORS = {1: "unacceptable protocol version", 2: "client id rejected",
                  3: "server unavailable", 4: "bad user name or password", 5: "not authorized"}


class MQTTException(Exception):
    """A broker that refused us or broke the protocol."""


def string(s):
    """A UTF-8 string field: 2-byte length, then the bytes (str or bytes)."""
    b = s.encode() if isinstance(s, str) else bytes(s)
    return struct.pack("!H", len(b)) + b


def varlen(n):
    """The Remaining Length encoding of n (0..268435455) as bytes."""
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def packet(first, body):
    """A whole packet: the first byte (type and flags), length, body bytes."""
    return bytes([first]) + varlen(len(body)) + body


def decode_len(buf, start, end):
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


def u16(two):
    """A 16-bit field; a broker that sends a short packet is cut off, not
    trusted (CPython's struct.error is no ValueError)."""
    if len(two) != 2:
        raise MQTTException("malformed packet")
    return two[0] << 8 | two[1]


def publish(topic, msg, qos, retain, pid):
    """A PUBLISH packet: topic (str), msg (bytes), qos 0..2, retain (bool),
    pid (int, None for QoS 0)."""
    t = string(topic) + (struct.pack("!H", pid) if qos else b"")
    head = bytes([0x30 | qos << 1 | (1 if retain else 0)]) + varlen(len(t) + len(msg))
    # One buffer, filled in place: msg may be most of a router's free heap
    # (a 64 KiB result), and body + msg, then header + body, copied it twice.
    pkt = bytearray(len(head) + len(t) + len(msg))
    pkt[:len(head)] = head
    pkt[len(head):len(head) + len(t)] = t
    pkt[len(head) + len(t):] = msg
    return pkt


def connect(client_id, clean, keepalive, will=None, user=None, password=None):
    """A CONNECT packet (MQTT 3.1.1 section 3.1): client_id (str), clean
    (bool), keepalive (s), will (topic, msg, retain, qos) or None, user and
    password (str or None; a password only goes with a user)."""
    flags = 0x02 if clean else 0
    payload = string(client_id)
    if will:
        topic, msg, retain, qos = will
        flags |= 0x04 | qos << 3 | (0x20 if retain else 0)
        payload += string(topic) + string(msg)
    if user:
        flags |= 0x80
        payload += string(user)
        if password:
            flags |= 0x40
            payload += string(password)
    var = string("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive)
    return packet(0x10, var + payload)


def publish_head(first, body, partial=False):
    """The variable header of a PUBLISH whose first byte is first: (qos,
    topic bytes, packet id (0 for QoS 0), offset of the message in body).
    MQTTException for QoS 3 or a body too short; with partial (the start of
    a packet still arriving), None while it is too short."""
    qos = (first >> 1) & 3
    if qos == 3:
        raise MQTTException("PUBLISH with QoS 3")
    if partial and len(body) < 2:
        return None
    tlen = u16(body[:2])
    pos = 2 + tlen + (2 if qos else 0)
    if partial and len(body) < pos:
        return None
    pid = u16(body[2 + tlen:pos]) if qos else 0
    if pos > len(body):
        raise MQTTException("malformed PUBLISH")
    return qos, bytes(body[2:2 + tlen]), pid, pos


class Inbox:
    """The bytes from the broker, cut into whole packets (section 2.2) in
    one buffer. on_packet(first byte, buf, start, end, own): a whole
    packet, its body buf[start:end]; own: buf is the receiver's from now on
    (the last PUBLISH of the buffer becomes the message, never copied). A
    PUBLISH over max_packet bytes is dropped as it arrives, after
    on_oversize(qos, topic bytes, packet id, size). feed() raises
    MQTTException for a malformed stream, and whatever the callbacks raise."""

    def __init__(self, max_packet, on_packet, on_oversize):
        self.max_packet = max_packet
        self.on_packet = on_packet
        self.on_oversize = on_oversize
        self.clear()

    def clear(self):
        """Forget what is buffered (the connection closed); a feed() under
        way stops."""
        self.buf = bytearray()
        self.fill = 0  # bytes of buf that hold data; the rest is room
        self.skip = 0  # bytes left of an oversize packet being dropped

    def feed(self, data):
        """Bytes read from the broker, in order."""
        if self.skip:
            n = min(self.skip, len(data))
            self.skip -= n
            data = data[n:]
        end = self.fill + len(data)
        if end > len(self.buf):
            self._grow(end)
        self.buf[self.fill:end] = data
        self.fill = end
        self._cut()

    def _grow(self, size):
        buf = bytearray(size)
        buf[:self.fill] = memoryview(self.buf)[:self.fill]
        self.buf = buf

    def _cut(self):
        buf = self.buf
        pos, end = 0, self.fill
        while pos < end and self.buf is buf:  # a callback may clear() us
            hl = decode_len(buf, pos, end)
            if hl is None:
                break
            rl, hsize = hl
            if rl > self.max_packet:
                if self._oversize(buf, pos, end, rl, hsize):
                    pos = end
                break
            size = hsize + rl
            if end - pos < size:
                if not pos and size > len(buf):
                    # Room for the whole packet at once: growing by each read
                    # copied a big PUBLISH over and over on a router's heap.
                    self._grow(size)
                break
            own = buf[pos] >> 4 == PUBLISH and pos + size == end
            if own:  # the buffer becomes the message: not copied
                self.buf, self.fill = bytearray(), 0
            self.on_packet(buf[pos], buf, pos + hsize, pos + size, own)
            pos += size
        if pos and self.buf is buf:
            self.buf, self.fill = buf[pos:end], end - pos

    def _oversize(self, buf, pos, end, rl, hsize):
        """Drop a PUBLISH too big to keep; False while its topic and packet
        id have not arrived yet."""
        first = buf[pos]
        if first >> 4 != PUBLISH:
            raise MQTTException("packet of %d bytes" % rl)
        head = bytes(buf[pos + hsize:min(end, pos + hsize + 1024)])
        h = publish_head(first, head, partial=True)
        if h is None:
            if len(head) >= 2 and u16(head[:2]) > 1000:
                raise MQTTException("topic too long")
            return False
        self.skip = rl - (end - pos - hsize)
        self.on_oversize(h[0], h[1], h[2], rl)
        return True
