# Status checks on loopback: a listening port stands for a reachable host, a
# closed port for an unreachable one; /proc/net/route under a sysroot.
import socket

from portable.support import tmpdir, write
from socketman import fs, monitor, rt

ROUTE = ("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
         "eth0\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n")


def sysroot(route=True, v6=False):
    d = tmpdir()
    fs.makedirs(d + "/proc/net")
    write(d + "/proc/net/route", ROUTE if route else ROUTE.split("\n")[0] + "\n")
    six = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 " \
          "fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth0\n"
    write(d + "/proc/net/ipv6_route", six if v6 else "")
    return d


def listener():
    for port in range(41000 + rt.ms() % 1000 * 3, 60000, 17):
        s = socket.socket()
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(rt.resolve("127.0.0.1", port)[1])
            s.listen(4)
            return s, port
        except OSError:
            s.close()
    raise AssertionError("no port")


def closed_port():
    s, port = listener()
    s.close()
    return port


def run_check(root, health, api, addresses=None):
    c = monitor.Check(root, health, api, addresses).start()
    end = rt.ms() + 10000
    while not c.done() and rt.ms() < end:
        p = rt.Poller()
        for sock, mask in c.wants():
            p.register(sock, mask)
        for sock, ev in p.poll(20):
            c.step(ev, sock)
        c.service()
    c.close()
    return c.result


def test_status_values():
    root = sysroot()
    up, up_port = listener()
    up2, up2_port = listener()
    down = closed_port()
    try:
        assert run_check(root, ("127.0.0.1", up_port), ("127.0.0.1", up2_port)) == 9
        assert run_check(root, ("127.0.0.1", up_port), ("127.0.0.1", down)) == 4
        assert run_check(root, ("127.0.0.1", down), ("127.0.0.1", up2_port)) == 6
        assert run_check(root, ("127.0.0.1", down), ("127.0.0.1", down)) == 1
        assert run_check(root, None, ("127.0.0.1", up2_port)) == 6
        assert run_check(root, None, None) == 1
        assert run_check(sysroot(route=False), ("127.0.0.1", up_port), ("127.0.0.1", up2_port)) == 0
        assert run_check(sysroot(route=False, v6=True), ("127.0.0.1", up_port), None) == 4
    finally:
        up.close()
        up2.close()


def test_a_silent_host_times_out_in_3s():
    # A listener whose accept queue is full drops new SYNs: the connect hangs.
    full, port = listener()
    full.close()
    full = socket.socket()
    full.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    full.bind(rt.resolve("127.0.0.1", port)[1])
    full.listen(0)
    fillers = []
    for _ in range(3):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(rt.resolve("127.0.0.1", port)[1])
        except OSError:
            pass
        fillers.append(s)
    rt.sleep_ms(100)
    try:
        t0 = rt.ms()
        assert run_check(sysroot(), ("127.0.0.1", port), None) == 1
        took = rt.ms() - t0
        assert 2900 <= took < 4500, took
    finally:
        for s in fillers + [full]:
            s.close()


def test_targets_and_nameserver():
    root = tmpdir()
    fs.makedirs(root + "/tmp/resolv.conf.d")
    write(root + "/tmp/resolv.conf.d/resolv.conf.auto",
          "# Interface wan\nnameserver 127.0.0.1\nnameserver 127.0.0.53\nnameserver 10.0.0.1\n")
    base = {"health_url": "", "health_port": 53, "sysroot": root, "stats_url": "", "api_url": "",
            "mqtt_host": "", "port": 1883}
    assert monitor.targets(base) == (("10.0.0.1", 53), None)
    assert monitor.targets(dict(base, health_url="none")) == (None, None)
    assert monitor.targets(dict(base, health_url="127.0.0.9", stats_url="https://127.0.0.2/s",
                                api_url="http://127.0.0.3:81")) == (("127.0.0.9", 53), ("127.0.0.2", 443))
    assert monitor.targets(dict(base, api_url="http://127.0.0.3:81"))[1] == ("127.0.0.3", 81)
    assert monitor.targets(dict(base, mqtt_host="127.0.0.4", port=8883))[1] == ("127.0.0.4", 8883)
    assert monitor.targets(dict(base, sysroot="/nonexistent"))[0] is None


def test_a_target_in_use_counts_as_reachable_without_a_connection():
    # PROTOCOL 7.1 (issue 13): a fleet must not open one empty connection
    # per device and cycle to its own broker or API. A closed port stands
    # for a target whose last answer came through the connection in use.
    from socketman import reach
    root = sysroot()
    down = closed_port()
    reach.seen("127.0.0.1", down)
    c = monitor.Check(root, None, ("127.0.0.1", down), fresh_ms=60000).start()
    assert c.done() and c.result == 6 and c.wants() == []  # no socket at all
    assert run_check(root, None, ("127.0.0.1", down)) == 1  # without fresh_ms: a real connect, refused
    c = monitor.Check(root, None, ("127.0.0.1", down), fresh_ms=1).start()
    rt.sleep_ms(5)
    c.service()
    assert c.wants() or c.done()  # too old: connected again
    c.close()


def test_a_name_answers_when_any_of_its_addresses_does():
    # issue 24, item 7: the first address refuses (nothing listens on
    # 127.0.0.2), the second answers: the target is reachable, at once.
    root = sysroot()
    up, port = listener()  # on 127.0.0.1 only
    asked = []

    def addresses(host):
        asked.append(host)
        return ["127.0.0.2", "127.0.0.1"]
    try:
        t0 = rt.ms()
        assert run_check(root, None, ("api.test", port), addresses) == 6
        assert asked and asked[0] == "api.test" and rt.ms() - t0 < 2500
        assert run_check(root, None, ("api.test", closed_port()), addresses) == 1  # none answers
    finally:
        up.close()
