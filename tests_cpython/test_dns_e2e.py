"""Name lookups with a name server that never answers (PROTOCOL 5): the
agent runs in a private mount namespace (`unshare -m`, root) whose
/etc/resolv.conf names a loopback address where a UDP socket takes every
question and answers none, as a dead upstream resolver behind a working
route does. Jobs keep their usual round trip and the MQTT keepalive holds
while the stats and API hosts are being looked up."""
import os
import random
import shutil
import socket
import threading
import time

import pytest

from helpers.device import BASE, config

HOST = "stats.example.test"


class SilentNameServer:
    """UDP and TCP port 53 on a loopback address of its own: takes every
    question, answers none."""

    def __init__(self):
        self.addr = "127.53.%d.%d" % (random.randrange(1, 255), random.randrange(1, 255))
        self.questions = []
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((self.addr, 53))
        self.tcp = socket.socket()
        self.tcp.bind((self.addr, 53))
        self.tcp.listen(16)
        self.udp.settimeout(0.2)
        self.running = True
        threading.Thread(target=self._take, daemon=True).start()

    def _take(self):
        while self.running:
            try:
                data, _ = self.udp.recvfrom(4096)
                self.questions.append(data)
            except OSError:
                pass

    def asked(self, name):
        want = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
        return any(want in q for q in self.questions)

    def close(self):
        self.running = False
        self.udp.close()
        self.tcp.close()


@pytest.fixture
def silent_dns(tmp_path):
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.fail("this test needs root and unshare(1) (util-linux) for a private /etc/resolv.conf")
    ns = SilentNameServer()
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver %s\n" % ns.addr)
    yield ns, ["unshare", "-m", "sh", "-c", 'mount --bind "$0" /etc/resolv.conf && exec "$@"', str(conf)]
    ns.close()


def test_jobs_keep_their_round_trip_while_the_name_server_is_silent(agent_cmd, agents, tmp_path, broker,
                                                                    controllers, silent_dns, http_server):
    ns, prefix = silent_dns
    ctrl = controllers(broker, BASE)
    api = http_server()
    # The broker by address (never looked up); the stats, API and boot hosts
    # by a name only the silent name server could answer. keepalive 2: a loop
    # stalled for 3 s loses the broker, which then publishes the will.
    url = "http://%s:%d" % (HOST, api.port)
    cfg = config(tmp_path, broker, keepalive=2, api_url=url + "/api", stats_url=url + "/stats",
                 boot_url=url + "/boot", health_url="127.0.0.1", health_port=broker.port)
    a = agents(prefix + agent_cmd, cfg, tmp_path, env={"SOCKETMAN_TIME_SCALE": "5"})
    ctrl.wait_event("CONNECT", timeout=20, online="1")
    took = []
    end = time.monotonic() + 14  # 70 s of the agent's time: checks, an upload and the boot call look HOST up
    while time.monotonic() < end:
        t0 = time.monotonic()
        ctrl.job("j%d" % len(took), "echo %d" % len(took))
        p = ctrl.wait_event("PROCESSED", "j%d" % len(took), timeout=15)
        took.append(p["_t"] - t0)
        time.sleep(0.2)
    assert ns.asked(HOST)  # the lookups really went to the silent server
    assert len(took) > 20 and max(took) < 1.0, took
    out = a.output()
    assert "cannot resolve %s" % HOST in out
    assert [e for e in ctrl.events("CONNECT") if e["meta"]["online"] == "0"] == []  # the keepalive held
    assert api.got() == []
    assert a.stop() == 0
