"""A name with several addresses whose first is dead (issue 24, item 7): the
agent (CPython and the native MicroPython 1.23) runs in a private mount
namespace (`unshare -m`, root) whose /etc/hosts gives the broker's name
127.0.0.2 (nothing listens there) and ::1 (a relay to the broker: the other
family), and the stats host's name 127.0.0.2 and 127.0.0.3 (the server).
Both must be reached at once, without a back-off, where only the first
address was ever tried."""
import os
import shutil

import pytest

from helpers import openwrt, rawhttp
from helpers.device import BASE, config
from helpers.proxy import Proxy

RUNTIMES = ("cpython", "mpy1.23")
HOSTS = """127.0.0.1 localhost
::1 localhost
127.0.0.2 mqtt.test
::1 mqtt.test
127.0.0.2 api.test
127.0.0.3 api.test
"""


@pytest.fixture
def hosts(tmp_path):
    """argv prefix that runs a command with HOSTS as its /etc/hosts."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.fail("this test needs root and unshare(1) (util-linux) for a private /etc/hosts")
    path = tmp_path / "hosts"
    path.write_text(HOSTS)
    return ["unshare", "-m", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"', str(path)]


def test_the_next_address_and_the_other_family_are_tried_before_backing_off(
        agent_cmd, agents, tmp_path, broker, controllers, hosts):
    relay = Proxy(broker.port, host="::1", port=broker.port)  # the broker on [::1], same port
    posts = []

    def handle(c, _):
        head, body = rawhttp.read_request(c)
        if head:
            posts.append(head)
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    api = rawhttp.Server(handle, host="127.0.0.3")
    try:
        ctrl = controllers(broker, BASE)
        env, fcfg = openwrt.make(tmp_path)
        env["SOCKETMAN_TIME_SCALE"] = "15"
        cfg = config(tmp_path, broker, **dict(fcfg, mqtt_host="mqtt.test",
                                              stats_url="http://api.test:%d/stats" % api.port))
        a = agents(hosts + agent_cmd, cfg, tmp_path, env=env)
        ctrl.wait_event("CONNECT", timeout=20, online="1")
        a.wait_log("bytes of documents sent to http://api.test", timeout=20)
        out = a.output()
        # The lookups gave the dead address first: what was tried is what this test is about.
        assert "dns: mqtt.test is 127.0.0.2, ::1" in out and "dns: api.test is 127.0.0.2, 127.0.0.3" in out, out
        assert "next try in" not in out, out  # no back-off: the next address went at once
        assert "failing" not in out, out
        assert posts and a.stop() == 0
    finally:
        api.close()
        relay.close()
