"""Our MQTT client against a real Mosquitto through hostile proxies, under
CPython and MicroPython (tests_cpython/scenarios/mqtt_client.py)."""
import json
import os
import socket
import subprocess
import threading
import time

import pytest

from helpers import net
from helpers.broker import PASSWORD, USER
from helpers.proxy import Proxy

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "scenarios", "mqtt_client.py")


@pytest.fixture(params=["cpython", "micropython", "mpy1.23"])
def interp(request, runtime_argv):
    """argv prefix of the runtime: CPython, the PyPI MicroPython, the native 1.23."""
    return runtime_argv(request.param)


def run(interp, scenario, port, on_marker=None, timeout=60, broker_port=0):
    p = subprocess.Popen(interp + [SCRIPT, scenario, str(port), USER, PASSWORD, str(broker_port)],
                         stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        last = None
        for line in p.stdout:
            line = line.strip()
            if line.startswith("@"):
                if on_marker:
                    on_marker(line[1:])
                p.stdin.write("\n")
                p.stdin.flush()
            elif line:
                last = line
        p.wait(timeout)
        assert p.returncode == 0, p.stderr.read()
        return json.loads(last)
    finally:
        if p.poll() is None:
            p.kill()


@pytest.mark.parametrize("mode", ["pass", "split"])
def test_qos_0_1_2_round_trip(interp, broker, mode):
    proxy = Proxy(broker.port, mode)
    try:
        r = run(interp, "roundtrip", proxy.port)
    finally:
        proxy.close()
    assert r["ok"], r
    got = sorted(tuple(map(str, g)) for g in r["got"])
    assert got == [("scen/t", "5000"), ("scen/t", "q0"), ("scen/t", "q1"), ("scen/t", "q2")]
    assert r["unacked"] == 0
    if mode == "split":
        assert proxy.sends > 10000  # it really went one byte at a time


def test_silent_peer_is_detected_and_nothing_is_lost(interp, broker):
    proxy = Proxy(broker.port)

    def on_marker(name):
        if name == "connected":
            proxy.mode = "stall"
        else:
            proxy.cut()

    try:
        r = run(interp, "stall", proxy.port, on_marker, broker_port=broker.port)
    finally:
        proxy.close()
    assert r["closed"], r
    assert "PINGRESP" in r["reason"] or "nothing from the broker" in r["reason"], r
    assert r["took_ms"] < 6000, r
    assert r["ok"], r


# After CONNACK, one broken packet per connection; the reason the client gives.
HOSTILE = [
    (b"\x40\x00", "malformed packet"),                      # PUBACK without a packet id
    (b"\x50\x03\x00\x01\x00", "malformed packet"),          # PUBREC one byte too long
    (b"\x90\x01\x00", "malformed packet"),                  # SUBACK cut short
    (b"\x30\x01\x00", "malformed packet"),                  # PUBLISH without a topic length
    (b"\x30\x04\x00\x09ab", "malformed PUBLISH"),          # topic longer than the packet
    (b"\x32\x04\x00\x01t\x00", "malformed packet"),         # QoS 1 PUBLISH, packet id cut
    (b"\x36\x03\x00\x01t", "QoS 3"),
    (b"\x20\x02\x00\x00", "unexpected packet type 2"),     # a second CONNACK
    (b"\x00\x00", "unexpected packet type 0"),
    (b"\xf0\x00", "unexpected packet type 15"),
    (b"\x30\xff\xff\xff\xff\x01", "malformed remaining length"),
    (b"\x90\xff\xff\x7f", "packet of"),                    # a 2 MiB SUBACK is not buffered
]


class HostileBroker:
    """Accepts a connection, reads CONNECT, sends CONNACK and then the next
    broken packet of HOSTILE, and keeps the connection open."""

    def __init__(self):
        self.port = net.free_port()
        self.ls = socket.create_server(("127.0.0.1", self.port))
        self.conns = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        for bad, _ in HOSTILE:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            self.conns.append(c)
            c.settimeout(5)
            c.recv(1024)  # CONNECT comes in one write
            c.sendall(b"\x20\x02\x00\x00")
            time.sleep(0.05)
            c.sendall(bad)

    def close(self):
        self.ls.close()
        for c in self.conns:
            c.close()


def test_broken_packets_from_the_broker_close_the_connection(interp):
    fake = HostileBroker()
    try:
        r = run(interp, "hostile", fake.port, broker_port=len(HOSTILE))
    finally:
        fake.close()
    assert len(r) == len(HOSTILE)
    for (bad, reason), got in zip(HOSTILE, r):
        assert got["closed"], (bad, got)
        assert reason in got["reason"], (bad, got)
        assert got["took_ms"] < 1500, (bad, got)
    assert r[-1]["got"] == 0  # nothing broken reached the callback
