"""Our MQTT client against a real Mosquitto through hostile proxies, under
CPython and MicroPython (tests_cpython/scenarios/mqtt_client.py)."""
import json
import os
import subprocess
import sys

import pytest

from helpers.broker import PASSWORD, USER
from helpers.proxy import Proxy

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "scenarios", "mqtt_client.py")


@pytest.fixture(params=["cpython", "micropython"])
def interp(request):
    return sys.executable if request.param == "cpython" else request.getfixturevalue("micropython")


def run(interp, scenario, port, on_marker=None, timeout=60, broker_port=0):
    p = subprocess.Popen([interp, SCRIPT, scenario, str(port), USER, PASSWORD, str(broker_port)],
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
    assert r["inflight"] == 0
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
