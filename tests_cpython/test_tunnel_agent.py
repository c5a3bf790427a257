"""Tunnels end to end, the agent's side (PROTOCOL 11): the agent as a real
process (CPython, the native MicroPython 1.23 from sources and as the .mpy
bundle, and that bundle on 32-bit big-endian MIPS under qemu), a real
Mosquitto for the job, Debian's dropbear on a loopback port as the device's
SSH server, the fleet server's tunnel endpoint played by the `websockets`
library (helpers/ws_server.py), and OpenSSH's ssh and scp on the operator's
side, connecting to the port where the server hands the tunnel out."""
import hashlib
import os
import re

import pytest

from helpers import sshd as sshd_helpers
from helpers.device import BASE, MAC, config
from helpers.ws_server import FleetEnd

RUNTIMES = ("cpython", "mpy1.23", "mpy1.23-bundle", "mips1.23-bundle")
TOKEN = "device-token"
CLOSED = re.compile(r"closed: (\d+) bytes in, (\d+) bytes out, (\d+) s$")

pytestmark = pytest.mark.skipif(sshd_helpers.missing() is not None, reason=sshd_helpers.missing() or "")


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    d = sshd_helpers.Dropbear(tmp_path_factory.mktemp("sshd"))
    yield d
    d.stop()


@pytest.fixture
def fleet():
    f = FleetEnd(TOKEN, MAC)
    yield f
    f.close()


def start(runtime, agents, agent_cmd, tmp_path, broker, controllers, **kw):
    ctrl = controllers(broker, BASE)
    a = agents(agent_cmd, config(tmp_path, broker, token=TOKEN, **kw), tmp_path)
    ctrl.wait_event("CONNECT", timeout=60 if runtime.startswith("mips") else 20, online="1")
    return a, ctrl


def processed(a, ctrl, jid, timeout=60):
    try:
        return ctrl.wait_event("PROCESSED", jid, timeout=timeout)["meta"]
    except AssertionError as e:
        raise AssertionError("%s\nagent log:\n%s" % (str(e)[:600], a.output()[-4000:])) from None


def test_ssh_and_scp_through_tunnels(runtime, agent_cmd, agents, tmp_path, broker, controllers, sshd, fleet):
    a, ctrl = start(runtime, agents, agent_cmd, tmp_path, broker, controllers, tunnel_ports=[sshd.port])
    p = fleet.tunnel()
    ctrl.job("tun-ssh", "%d %s" % (sshd.port, p.url), type_="tunnel")
    ctrl.wait_event("DELIVERED", "tun-ssh")
    r = sshd.ssh(p.op_port, "echo hello")
    assert (r.returncode, r.stdout) == (0, b"hello\n"), (r, a.output()[-3000:])
    m = processed(a, ctrl, "tun-ssh")
    assert m["type"] == "tunnel" and m["success"] is True and m["exit_code"] == 0, m
    got = CLOSED.match(m["msg"])
    assert got, m["msg"]
    p.wait_done()
    assert (int(got.group(1)), int(got.group(2))) == (p.to_device, p.from_device) and p.to_device > 1000
    assert p.device_close and p.device_close[0] == 1000, p.device_close  # the device's own close frame
    # The handshake of PROTOCOL 11.
    assert p.query["access_token"] == [TOKEN] and p.query["mac"] == [MAC]
    assert p.headers["User-Agent"].startswith("socketman/")
    assert p.headers["Sec-WebSocket-Protocol"] == "socketman-tunnel"

    # scp of 5 MB to the device, intact.
    src = tmp_path / "five.bin"
    data = os.urandom(5 * 1024 * 1024)
    src.write_bytes(data)
    dst = tmp_path / "five.copy"
    p2 = fleet.tunnel()
    ctrl.job("tun-scp", "%d %s" % (sshd.port, p2.url), type_="tunnel")
    r = sshd.scp(p2.op_port, str(src), str(dst))
    assert r.returncode == 0, (r, a.output()[-3000:])
    assert hashlib.sha256(dst.read_bytes()).digest() == hashlib.sha256(data).digest()
    m = processed(a, ctrl, "tun-scp")
    assert m["success"] is True and int(CLOSED.match(m["msg"]).group(1)) > 5 * 1024 * 1024
    assert a.alive() and "MemoryError" not in a.output()
