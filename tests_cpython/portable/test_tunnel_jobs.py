# Tunnel jobs before any socket (PROTOCOL 11): meta.msg against
# tunnel_ports, the job type, a tunnel's id remembered without queueing it,
# and a first tunnel whose service is not there: its failure comes from the
# loop, after DELIVERED, never from inside start().
from portable.support import raises
from socketman import loop as loop_mod
from socketman import rt
from socketman.jobs import queue, tunnel

URL = "wss://fleet.example.com/tunnel/8f3c1e9a0b7d4c2e"


def test_meta_msg_against_tunnel_ports():
    assert tunnel.parse("22 " + URL, [22, 80]) == (22, URL)
    assert tunnel.parse("80 ws://127.0.0.1:8080/t?x=1", [22, 80]) == (80, "ws://127.0.0.1:8080/t?x=1")
    for msg, ports, word in (("22 " + URL, [], "tunnel_ports is empty"), ("23 " + URL, [22], "not in tunnel_ports"),
                             ("22", [22], "meta.msg"), ("22 ", [22], "meta.msg"), (URL, [22], "meta.msg"),
                             ("x22 " + URL, [22], "port"), ("-22 " + URL, [22], "port"),
                             ("123456 " + URL, [22], "port"), ("22 " + URL + " extra", [22], "meta.msg"),
                             ("22 https://fleet.example.com/t", [22], "ws"), ("22 wss:///t", [22], "URL"),
                             ("22  " + URL, [22], "one space"), ("22 " + URL + " ", [22], "one space"),
                             ("22 " + URL + "\n", [22], "one space"), ("022 " + URL, [22], "port '022'"),
                             ("0 " + URL, [22], "port '0'"), ("22\t" + URL, [22], "meta.msg"),
                             ("\u0662\u0662 " + URL, [22], "port"), ("\uff12\uff12 " + URL, [22], "port"),
                             ("\u00b22 " + URL, [22], "not a TCP port number"), ("+22 " + URL, [22], "port")):
        e = raises(ValueError, tunnel.parse, msg, ports)
        assert word in str(e), (msg, str(e))
    # A refused port says "port" (PROTOCOL 11).
    assert "port" in str(raises(ValueError, tunnel.parse, "23 " + URL, [22]))
    assert "port" in str(raises(ValueError, tunnel.parse, "22 " + URL, []))


def test_the_tunnel_type_and_its_id_without_the_queue():
    job, bad = queue.parse(b'{"id":"tun-1","meta":{"type":"tunnel","msg":"22 ' + URL.encode() + b'"}}')
    assert bad is None and job["type"] == "tunnel"
    q = queue.Queue()
    for i in range(queue.MAX_WAITING):
        assert q.offer({"id": "c%d" % i, "timestamp": None}) == "accepted"
    assert q.offer({"id": "more", "timestamp": None}) == "busy"
    assert q.offer(job, wait=False) == "accepted"  # not behind the commands
    assert len(q) == queue.MAX_WAITING and q.seen("tun-1")
    assert q.offer(job, wait=False) == "duplicate"


def test_a_service_that_is_not_there_fails_from_the_loop():
    import socket
    s = socket.socket()
    s.bind(rt.resolve("127.0.0.1", 0)[1])
    port = _port_of(s)
    s.close()  # nothing listens there now
    cfg = {"tunnel_ports": [port], "tunnel_idle": 600, "token": "t", "mac": "aa:bb:cc:dd:ee:ff",
           "cacrt": "", "insecure": 0}
    lp = loop_mod.Loop()
    got = []
    t = tunnel.Tunnels(cfg, lp, got.append)
    assert t.start({"id": "tun-2", "msg": "%d ws://127.0.0.1:1/t" % port}) is None
    assert got == [] and t.count() == 1
    end = rt.ms() + 5000
    while not got and rt.ms() < end:
        lp.run_due()
        lp.wait_cap = 20
        lp.wait()
    assert len(got) == 1 and t.count() == 0, got
    r = got[0]
    assert r["id"] == "tun-2" and r["type"] == "tunnel" and r["success"] is False and r["exit_code"] == 1
    assert b"127.0.0.1:%d" % port in r["msg"], r["msg"]
    for i in range(tunnel.MAX_TUNNELS):
        assert t.start({"id": "b%d" % i, "msg": "%d ws://127.0.0.1:1/t" % port}) is None
    assert t.start({"id": "b9", "msg": "%d ws://127.0.0.1:1/t" % port}).startswith("busy")


def _port_of(s):
    try:
        return s.getsockname()[1]
    except AttributeError:  # MicroPython sockets have no getsockname(): take a free one another way
        from portable.test_loop import _free_port
        return _free_port()
