from portable.support import Seeded
from socketman import conn, mqtt, mqttpacket


def test_remaining_length_round_trip():
    for n in (0, 1, 127, 128, 16383, 16384, 2097151, 2097152, 268435455):
        enc = mqttpacket.varlen(n)
        assert len(enc) == (1 if n < 128 else 2 if n < 16384 else 3 if n < 2097152 else 4)
        buf = b"\x30" + enc
        assert mqttpacket.decode_len(buf, 0, len(buf)) == (n, 1 + len(enc))
        assert mqttpacket.decode_len(buf, 0, len(buf) - 1) is None or len(enc) == 1


def test_malformed_remaining_length():
    buf = b"\x30\xff\xff\xff\xff\x01"
    try:
        mqttpacket.decode_len(buf, 0, len(buf))
        raise AssertionError("accepted a 5-byte length")
    except mqtt.MQTTException:
        pass


def test_connect_packet():
    c = mqtt.MQTTClient("cid", "127.0.0.1", 1883, "u", "p", 30)
    c.set_last_will("st", b"gone", retain=True, qos=1)
    pkt = mqttpacket.connect(c.client_id, True, c.keepalive, c.lw, c.user, c.pswd)
    assert pkt[0] == 0x10
    body = pkt[2:]
    assert body[:6] == b"\x00\x04MQTT" and body[6] == 4
    assert body[7] == 0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02
    assert body[8:10] == b"\x00\x1e"
    assert body[10:] == b"\x00\x03cid\x00\x02st\x00\x04gone\x00\x01u\x00\x01p"


class _Sock:
    def __init__(self):
        self.sent = []

    def send(self, data):
        import errno
        raise OSError(errno.EAGAIN, "full")  # keeps what is queued in view

    write = send


def test_inbound_qos2_is_delivered_once():
    c = mqtt.MQTTClient("cid", "127.0.0.1")
    got = []
    c.set_callback(lambda t, m: got.append((t, m)))
    c.state = mqtt.CONNECTED  # its connection stays closed: queued packets are checked
    pub = b"\x00\x01t\x00\x07hi"
    c._handle(0x34, pub)
    c._handle(0x3C, pub)  # DUP resend before PUBREL
    assert got == [(b"t", b"hi")]
    assert c.conn.outq == [b"\x50\x02\x00\x07", b"\x50\x02\x00\x07"]
    c._handle(0x62, b"\x00\x07")
    assert c.conn.outq[-1] == b"\x70\x02\x00\x07"
    c._handle(0x34, pub)  # a new message that reuses the id
    assert len(got) == 2


def test_outbound_qos_flows_and_resend():
    c = mqtt.MQTTClient("cid", "127.0.0.1")
    c.state = mqtt.CONNECTED
    p1 = c.publish("t", b"a", qos=1)
    p2 = c.publish("t", b"b", qos=2)
    assert set(c.unacked) == {p1, p2}
    c._handle(0x40, bytes([0, p1]))
    assert set(c.unacked) == {p2}
    c._handle(0x50, bytes([0, p2]))
    assert c.unacked[p2][0] == mqttpacket.PUBREL
    c._handle(0x70, bytes([0, p2]))
    assert c.unacked == {}
    p3 = c.publish("t", b"c", qos=1)
    c.conn.outq = []
    c.clean = True
    c.state = mqtt.HANDSHAKE
    c._handle(0x20, b"\x00\x00")  # CONNACK of the next connection: what is owed goes again
    assert c.conn.outq == [c.unacked[p3][1]]
    c.conn.outq = []
    c.resend()
    assert c.conn.outq == []  # once per connection, not again


def test_parse_splits_and_joins_packets():
    c = mqtt.MQTTClient("cid", "127.0.0.1")
    c.state = mqtt.CONNECTED
    got = []
    c.set_callback(lambda t, m: got.append(m))
    stream = b"\x30\x05\x00\x01tab" + b"\xd0\x00" + b"\x30\x04\x00\x01tc"
    for i in range(len(stream)):
        c.inbox.feed(stream[i:i + 1])
    assert got == [b"ab", b"c"]
    assert c.inbox.fill == 0


class _Sink:
    """Takes whatever the client writes (send on CPython, write on MicroPython)."""

    def send(self, data):
        return len(data)

    write = send

    def close(self):
        pass


def test_random_bytes_from_the_broker_only_ever_close_the_connection():
    below = Seeded(20261127).below
    heads = [0x20, 0x30, 0x32, 0x34, 0x36, 0x40, 0x50, 0x62, 0x70, 0x90, 0xB0, 0xD0, 0x00, 0xF0]
    for _ in range(3000):
        c = mqtt.MQTTClient("cid", "127.0.0.1", max_packet=64)
        c.state = mqtt.CONNECTED
        c.conn.sock = c.conn.raw = _Sink()
        c.conn.state = conn.OPEN
        c.set_callback(lambda t, m: None)
        stream = bytearray()
        for _ in range(1 + below(4)):
            body = bytes(below(256) for _ in range(below(8)))
            stream.append(heads[below(len(heads))] if below(4) else below(256))
            stream.extend(mqttpacket.varlen(len(body) + below(3) - 1 if body else below(200)))
            stream.extend(body)
        try:
            c.inbox.feed(stream)
        except mqtt.MQTTException:
            pass  # step() closes the connection with this reason


class _TLSInHandshake:
    """A TLS socket whose handshake ends inside a read, as on a slow CPU:
    writes would block until then, the read that ends it has no data."""

    def __init__(self):
        self.done = False
        self.sent = b""

    def send(self, data):
        import errno
        if not self.done:
            raise OSError(errno.EAGAIN, "handshake")
        self.sent += bytes(data)
        return len(data)

    def recv(self, n):
        import errno
        self.done = True  # the server's Finished is in: no application data yet
        raise OSError(errno.EAGAIN, "no data")

    write, read = send, recv

    def close(self):
        pass


def test_connect_goes_out_when_the_tls_handshake_ends_inside_a_read():
    # issue 15, item 6: on the MIPS build the CONNECT queued before the
    # handshake was never written and the broker waited for it for ever.
    # The rule lives in conn.py now (test_conn.py); this is the MQTT client on it.
    c = mqtt.MQTTClient("cid", "127.0.0.1", 8883, ssl=True)
    c.conn.sock = c.conn.raw = _TLSInHandshake()
    c.conn.state = conn.HANDSHAKE
    c.state = mqtt.HANDSHAKE
    c.clean = True
    c._queue(mqttpacket.connect("cid", True, 30))
    assert c.sock.sent == b""
    assert c.wants() == [(c.sock, 1)]  # POLLIN only: POLLOUT would spin
    c.step(1)  # the broker's last handshake flight arrived (POLLIN)
    assert c.sock.sent[:1] == b"\x10"  # the CONNECT
    assert not c.conn.pending()


def test_a_pingreq_goes_out_when_nothing_came_in_whatever_we_sent():
    # issue 15, item 4: with keepalive 70 and ping-interval 30 the agent's
    # PING events counted as traffic, no PINGREQ ever went out, nothing came
    # back, and the agent dropped a healthy connection every 105 s.
    from socketman import rt
    c = mqtt.MQTTClient("cid", "127.0.0.1", keepalive=70)
    c.conn.sock = c.conn.raw = _Sock()
    c.conn.state = conn.OPEN
    c.state = mqtt.CONNECTED
    now = rt.ms()
    c.conn.last_tx = now            # we just published a PING event
    c.conn.last_rx = now - 36000    # the broker has said nothing for 36 s
    c.service()
    assert c.ping_sent is not None
    assert b"\xc0\x00" in bytes(c.conn.cur) + b"".join(c.conn.outq)


def test_no_pingreq_while_both_ways_are_busy():
    from socketman import rt
    c = mqtt.MQTTClient("cid", "127.0.0.1", keepalive=70)
    c.conn.sock = c.conn.raw = _Sock()
    c.conn.state = conn.OPEN
    c.state = mqtt.CONNECTED
    c.conn.last_tx = c.conn.last_rx = rt.ms() - 1000
    nxt = c.service()
    assert c.ping_sent is None and 30000 <= nxt <= 35000


def test_a_big_publish_in_reads_is_held_once_and_becomes_the_message():
    # issue 16: the buffer grew by each read (a copy each time) and the
    # message was copied out of it twice more; a router's heap ran out.
    c = mqtt.MQTTClient("cid", "127.0.0.1", max_packet=1 << 20)
    c.state = mqtt.CONNECTED
    got = []
    c.set_callback(lambda t, m: got.append((t, m)))
    big = bytes(range(256)) * 300
    body = b"\x00\x03t/b" + big
    stream = b"\x30" + mqttpacket.varlen(len(body)) + body + b"\x30\x04\x00\x01tc"
    bufs, sizes = [], []  # every buffer the inbox held while the packet came in
    for i in range(0, len(stream) - 6, 4096):
        c.inbox.feed(stream[i:min(i + 4096, len(stream) - 6)])
        if not got and not any(b is c.inbox.buf for b in bufs):
            bufs.append(c.inbox.buf)
            sizes.append(len(c.inbox.buf))
    assert got == [(b"t/b", big)]
    assert sizes == [len(stream) - 6]  # grown once, to the whole packet
    assert got[0][1] is bufs[0]  # and that buffer became the message
    c.inbox.feed(stream[-6:] * 2)  # two in one read: the first is copied out, the last is the buffer
    assert got[1:] == [(b"t", b"c"), (b"t", b"c")] and c.inbox.fill == 0
