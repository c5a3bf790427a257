"""Tunnels (PROTOCOL 11), the agent's side against a server of the test's
own, on CPython and the native MicroPython 1.23 from sources: the fleet
server's endpoint played by the `websockets` library (helpers/ws_server.py
FleetEnd: it records the handshake, the bytes each way and the agent's own
close frame, answers 403, vanishes) and a raw peer that sends what RFC 6455
forbids. Idle and either side closing, refusals (ports, format, busy, a
duplicate id, nothing listening, a 403), a server that vanishes, a clean
stop. The device's services are small TCP servers of the test's own
(Service), where the bytes must be counted exactly.

With the real fleet server, dropbear and OpenSSH, on every runtime:
test_tunnel_e2e.py."""
import os
import re
import socket
import threading
import time

import pytest

from helpers import net
from helpers.device import BASE, MAC, config
from helpers.ws_server import FleetEnd, RawPeer, accept_value, server_frame

RUNTIMES = ("cpython", "mpy1.23")
TOKEN = "device-token"
CLOSED = re.compile(r"closed: (\d+) bytes in, (\d+) bytes out, (\d+) s$")


class Service:
    """A TCP service on the device: each connection gets `banner`, then
    (send: bytes) that much and a close, and everything it receives is kept
    (conns[i]["got"]) until the peer closes (conns[i]["eof"] set)."""

    def __init__(self, banner=b"hi\n", send=b"", read_after=0.0):
        self.banner, self.send, self.read_after = banner, send, read_after
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.port = net.free_port()
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(16)
        self.conns = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            rec = {"got": bytearray(), "eof": threading.Event()}
            self.conns.append(rec)
            threading.Thread(target=self._one, args=(c, rec), daemon=True).start()

    def _one(self, c, rec):
        try:
            c.sendall(self.banner)
            if self.send:
                c.sendall(self.send)
                c.shutdown(socket.SHUT_WR)
            time.sleep(self.read_after)
            while True:
                d = c.recv(65536)
                if not d:
                    break
                rec["got"] += d
        except OSError:
            pass
        rec["eof"].set()
        c.close()

    def close(self):
        self.sock.close()


@pytest.fixture
def fleet():
    f = FleetEnd(TOKEN, MAC)
    yield f
    f.close()


@pytest.fixture
def services():
    made = []

    def make(**kw):
        s = Service(**kw)
        made.append(s)
        return s
    yield make
    for s in made:
        s.close()


def start(runtime, agents, agent_cmd, tmp_path, broker, controllers, env=None, **kw):
    ctrl = controllers(broker, BASE)
    a = agents(agent_cmd, config(tmp_path, broker, token=TOKEN, **kw), tmp_path, env=env)
    ctrl.wait_event("CONNECT", timeout=20, online="1")
    return a, ctrl


def processed(a, ctrl, jid, timeout=60):
    try:
        return ctrl.wait_event("PROCESSED", jid, timeout=timeout)["meta"]
    except AssertionError as e:
        raise AssertionError("%s\nagent log:\n%s" % (str(e)[:600], a.output()[-4000:])) from None


def operator(p, timeout=30):
    s = socket.create_connection(("127.0.0.1", p.op_port), 5)
    s.settimeout(timeout)
    return s


def recv_exactly(s, n):
    buf = bytearray()
    while len(buf) < n:
        d = s.recv(min(65536, n - len(buf)))
        assert d, "closed after %d of %d bytes" % (len(buf), n)
        buf += d
    return bytes(buf)


def recv_all(s):
    buf = bytearray()
    while True:
        d = s.recv(65536)
        if not d:
            return bytes(buf)
        buf += d


def test_idle_and_either_side_closing(runtime, agent_cmd, agents, tmp_path, broker, controllers, fleet, services):
    big = os.urandom(1024 * 1024)
    talker = services(send=big)          # sends 1 MiB and closes its side
    listener = services()                # keeps whatever comes
    a, ctrl = start(runtime, agents, agent_cmd, tmp_path, broker, controllers, env={"SOCKETMAN_TIME_SCALE": "15"},
                    tunnel_ports=[talker.port, listener.port], tunnel_idle=10)
    # Idle: 10 s of the agent's clock without a byte either way.
    p = fleet.tunnel()
    s = operator(p)
    ctrl.job("idle", "%d %s" % (listener.port, p.url), type_="tunnel")
    assert recv_exactly(s, 3) == b"hi\n"
    m = processed(a, ctrl, "idle", 30)
    assert m["type"] == "tunnel" and m["success"] is True and m["exit_code"] == 0, m
    assert CLOSED.match(m["msg"]).groups()[:2] == ("0", "3"), m
    p.wait_done()
    assert p.device_close == (1000, "idle") and recv_all(s) == b""
    # The handshake of PROTOCOL 11.
    assert p.query["access_token"] == [TOKEN] and p.query["mac"] == [MAC]
    assert p.headers["User-Agent"].startswith("socketman/")
    assert p.headers["Sec-WebSocket-Protocol"] == "socketman-tunnel"
    assert listener.conns[-1]["eof"].wait(10)  # the service's connection is closed too
    # The device's service closes first: all it sent arrives, then the close frame.
    p = fleet.tunnel()
    s = operator(p)
    ctrl.job("svc-closes", "%d %s" % (talker.port, p.url), type_="tunnel")
    got = recv_all(s)
    assert got == b"hi\n" + big, (len(got), a.output()[-2000:])
    m = processed(a, ctrl, "svc-closes")
    assert m["success"] is True and CLOSED.match(m["msg"]).group(2) == str(len(big) + 3)
    p.wait_done()
    assert p.device_close[0] == 1000
    # The operator closes first (the server's close frame): all it sent arrives at the service.
    p = fleet.tunnel()
    s = operator(p)
    ctrl.job("op-closes", "%d %s" % (listener.port, p.url), type_="tunnel")
    assert recv_exactly(s, 3) == b"hi\n"
    s.sendall(big)
    s.close()
    m = processed(a, ctrl, "op-closes")
    assert m["success"] is True and CLOSED.match(m["msg"]).group(1) == str(len(big)), m
    assert listener.conns[-1]["eof"].wait(10) and bytes(listener.conns[-1]["got"]) == big


def test_refusals(runtime, agent_cmd, agents, tmp_path, broker, controllers, fleet, services):
    svc = services()
    dead = net.free_port()  # allowed, but nothing listens there
    a, ctrl = start(runtime, agents, agent_cmd, tmp_path, broker, controllers, tunnel_ports=[svc.port, dead])
    url = fleet.tunnel().url
    for jid, msg, word in (("r-port", "%d %s" % (svc.port + 1, url), "port"),
                           ("r-port22", "22 " + url, "tunnel_ports"),
                           ("r-noport", url, "meta.msg"),
                           ("r-text", "ssh " + url, "port"),
                           ("r-scheme", "%d http://127.0.0.1:1/t" % svc.port, "ws"),
                           ("r-nourl", "%d " % svc.port, "meta.msg")):
        ctrl.job(jid, msg, type_="tunnel")
        r = ctrl.wait_event("REJECTED", jid)
        assert word in r["meta"]["reason"], (jid, r)
    ctrl.job("r-dead", "%d %s" % (dead, url), type_="tunnel")
    ctrl.wait_event("DELIVERED", "r-dead")
    m = processed(a, ctrl, "r-dead")
    assert m["success"] is False and "127.0.0.1:%d" % dead in m["msg"], m
    # The server says no: 403, the status in the output; the service's connection is closed.
    p = fleet.tunnel(refuse=403)
    ctrl.job("r-403", "%d %s" % (svc.port, p.url), type_="tunnel")
    m = processed(a, ctrl, "r-403")
    assert m["success"] is False and "403" in m["msg"], m
    assert svc.conns[-1]["eof"].wait(10)
    # Four at once, a fifth is busy; a redelivered id is answered, not opened again.
    ps = [fleet.tunnel() for _ in range(4)]
    socks = [operator(p) for p in ps]
    for i, p in enumerate(ps):
        ctrl.job("t%d" % i, "%d %s" % (svc.port, p.url), type_="tunnel")
    for s in socks:
        assert recv_exactly(s, 3) == b"hi\n"
    ctrl.job("t-fifth", "%d %s" % (svc.port, fleet.tunnel().url), type_="tunnel")
    assert ctrl.wait_event("REJECTED", "t-fifth")["meta"]["reason"].startswith("busy")
    n = len(svc.conns)
    ctrl.job("t0", "%d %s" % (svc.port, ps[0].url), type_="tunnel")
    ctrl.job("after", "true")
    ctrl.wait_event("PROCESSED", "after")
    assert len([e for e in ctrl.events("DELIVERED") if e["id"] == "t0"]) == 2 and len(svc.conns) == n
    for s in socks:
        s.close()
    for i in range(4):
        assert processed(a, ctrl, "t%d" % i)["success"] is True


def test_server_vanishes_then_a_clean_stop_closes_the_tunnel(runtime, agent_cmd, agents, tmp_path, broker,
                                                             controllers, fleet, services):
    svc = services()
    a, ctrl = start(runtime, agents, agent_cmd, tmp_path, broker, controllers, tunnel_ports=[svc.port])
    p = fleet.tunnel()
    s = operator(p)
    ctrl.job("gone", "%d %s" % (svc.port, p.url), type_="tunnel")
    assert recv_exactly(s, 3) == b"hi\n"
    s.sendall(b"some bytes")
    p.drop()  # no close frame: the TCP connection is cut
    m = processed(a, ctrl, "gone")
    assert m["success"] is False and m["msg"].startswith("closed: ") and "without a close frame" in m["msg"], m
    assert svc.conns[-1]["eof"].wait(10)
    ctrl.job("still", "echo here")
    assert processed(a, ctrl, "still")["msg"] == "here\n"
    # A clean stop with a tunnel open: close 1001, its result before the agent goes offline.
    p = fleet.tunnel()
    s = operator(p)
    ctrl.job("at-stop", "%d %s" % (svc.port, p.url), type_="tunnel")
    assert recv_exactly(s, 3) == b"hi\n"
    assert a.stop() == 0
    p.wait_done()
    assert p.device_close[0] == 1001, p.device_close
    m = ctrl.wait_event("PROCESSED", "at-stop")
    off = ctrl.wait_event("CONNECT", online="0")
    assert m["meta"]["success"] is True and m["_t"] <= off["_t"]


def _answer_without_subprotocol(head, key):
    return ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Accept: %s\r\n\r\n" % accept_value(key)).encode()


def _answer_with_a_wrong_accept(head, key):
    return ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: socketman-tunnel\r\n\r\n"
            % accept_value(key + "x")).encode()


BAD_FRAMES = (
    ("big", server_frame(2, size=65537) + b"x" * 100, 1009, "65537"),
    ("opcode", server_frame(3, b"x"), 1002, "opcode"),
    ("masked", server_frame(2, b"abcd", masked=True), 1002, "masked"),
    ("control", server_frame(9, b"p" * 126), 1002, "125"),
    ("fragctl", server_frame(9, b"p", fin=False), 1002, "fragmented"),
    ("rsv", server_frame(2, b"x", rsv=0x20), 1002, "reserved"),
)


def test_a_peer_that_breaks_the_rules(runtime, agent_cmd, agents, tmp_path, broker, controllers, services):
    svc = services()
    raw = RawPeer()
    try:
        a, ctrl = start(runtime, agents, agent_cmd, tmp_path, broker, controllers, tunnel_ports=[svc.port],
                        env={"SOCKETMAN_TIME_SCALE": "15"})  # keepalive: a ping after 2 s, given up 4 s later
        # Good but unusual: a fragmented binary message around a ping, then a close.
        ctrl.job("frag", "%d %s" % (svc.port, raw.url("frag")), type_="tunnel")
        raw.accept()
        raw.send(server_frame(2, b"ab", fin=False) + server_frame(9, b"ping!") + server_frame(0, b"cd", fin=False) +
                 server_frame(0, b"ef") + server_frame(1, b"text is ignored") + server_frame(10, b"pong"))
        frames = raw.frames(3, until_close=False)
        assert (9, b"ping!") not in frames and (10, b"ping!") in frames, frames
        deadline = time.monotonic() + 10
        while bytes(svc.conns[-1]["got"]) != b"abcdef" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert bytes(svc.conns[-1]["got"]) == b"abcdef"
        raw.send(server_frame(8, b"\x03\xe8done"))
        assert raw.frames(10)[-1] == (8, b"\x03\xe8")  # the close answered with the same status
        assert processed(a, ctrl, "frag")["success"] is True
        # Frames RFC 6455 forbids: the close status that says why, the tunnel failed.
        for name, data, code, word in BAD_FRAMES:
            ctrl.job("bad-" + name, "%d %s" % (svc.port, raw.url(name)), type_="tunnel")
            raw.accept()
            raw.send(data)
            frames = raw.frames(10)
            assert frames and frames[-1][0] == 8 and int.from_bytes(frames[-1][1][:2], "big") == code, (name, frames)
            m = processed(a, ctrl, "bad-" + name)
            assert m["success"] is False and word in m["msg"], (name, m)
            assert svc.conns[-1]["eof"].wait(10)
        # Handshake answers the agent must refuse.
        for name, answer, word in (("noproto", _answer_without_subprotocol, "subprotocol"),
                                   ("accept", _answer_with_a_wrong_accept, "Sec-WebSocket-Accept"),
                                   ("500", lambda h, k: b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n", "500"),
                                   # A head that never ends: its status line still says what the
                                   # server did (issue 24, item 6), not "no answer".
                                   ("403cut", lambda h, k: b"HTTP/1.1 403 Forbidden\r\nContent-Le", "403")):
            ctrl.job("hs-" + name, "%d %s" % (svc.port, raw.url(name)), type_="tunnel")
            head = raw.accept(answer)
            assert "Sec-WebSocket-Key:" in head and "Sec-WebSocket-Version: 13" in head
            m = processed(a, ctrl, "hs-" + name)
            assert m["success"] is False and word in m["msg"], (name, m)
        # A server that says nothing: pinged, then given up.
        ctrl.job("silent", "%d %s" % (svc.port, raw.url("silent")), type_="tunnel")
        raw.accept()
        frames = raw.frames(20, until_close=False)
        assert frames[0] == (2, b"hi\n") and (9, b"socketman") in frames, frames
        m = processed(a, ctrl, "silent")
        assert m["success"] is False and "no frame from the server" in m["msg"], m
        assert a.alive()
    finally:
        raw.close()
