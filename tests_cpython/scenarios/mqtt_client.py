# MQTT client scenarios that run under CPython and MicroPython alike.
#   python3|micropython mqtt_client.py SCENARIO PORT USER PASSWORD [BROKER_PORT]
# Lines starting with "@" are progress markers the test waits for; the last
# line is the result as JSON.
import json
import sys

_here = __file__.rpartition("/")[0] or "."
sys.path.insert(0, (_here.rpartition("/")[0].rpartition("/")[0] or ".") + "/lib")

from socketman import rt  # noqa: E402
from socketman.blocking import MQTTClient  # noqa: E402

scenario, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
got = []


def cb(topic, msg):
    got.append([topic.decode(), msg.decode()])


def client(keepalive=30):
    c = MQTTClient("scen-" + rt.random_hex(4), "127.0.0.1", port, user, password, keepalive, timeout=10)
    c.set_callback(cb)
    return c


def pump(c, until, ms):
    end = rt.ms() + ms
    while not until() and rt.ms() < end and c.sock is not None:
        w = c.wants()
        ev = rt.wait_io(w[0][0], w[0][1], 20) if w else 0
        c.step(ev)
        c.service()
    return until()


def marker(name):
    print("@" + name)
    sys.stdout.flush() if hasattr(sys.stdout, "flush") else None
    sys.stdin.readline()  # the test says when to go on


def roundtrip():
    """Subscribe and publish to ourselves at QoS 0, 1, 2, with a payload
    large enough to arrive in many reads."""
    c = client()
    c.connect()
    c.subscribe("scen/t", 2)
    big = "x" * 5000
    for qos in (0, 1, 2):
        c.publish("scen/t", "q%d" % qos, qos=qos)
    c.publish("scen/t", big, qos=1)
    ok = pump(c, lambda: len(got) >= 4 and not c.unacked, 20000)
    c.disconnect()
    return {"ok": ok, "got": [g if len(g[1]) < 100 else [g[0], len(g[1])] for g in got],
            "unacked": len(c.unacked)}


def stall():
    """The peer goes silent: the client must notice (no PINGRESP) without
    hanging, then after reconnecting resend what was not acknowledged. A
    watcher connected straight to the broker (argv[5]) must get it."""
    watcher = MQTTClient("watch-" + rt.random_hex(4), "127.0.0.1", int(sys.argv[5]), user, password, 30)
    seen = []
    watcher.set_callback(lambda t, m: seen.append(m.decode()))
    watcher.connect()
    watcher.subscribe("scen/s", 1)
    pump(watcher, lambda: not watcher.unacked, 3000)
    c = client(keepalive=2)
    c.connect()
    pump(c, lambda: False, 300)
    marker("connected")
    t0 = rt.ms()
    c.publish("scen/s", "during-stall", qos=1)
    closed = pump(c, lambda: c.sock is None, 15000)
    took = rt.ms() - t0
    reason = c.error
    marker("closed")  # the proxy drops the stalled connection and what it held
    c.connect()
    pump(c, lambda: not c.unacked, 10000)
    ok = pump(watcher, lambda: "during-stall" in seen, 5000) and not c.unacked
    c.disconnect()
    watcher.disconnect()
    return {"closed": closed, "reason": reason, "took_ms": took, "ok": ok, "got": seen}


def hostile():
    """A fake broker answers each connection with one broken packet after
    CONNACK (argv[5] of them): each must close the connection with a
    reason, promptly, and the next connect must work."""
    out = []
    for _ in range(int(sys.argv[5])):
        c = client(keepalive=5)
        c.connect()
        t0 = rt.ms()
        closed = pump(c, lambda c=c: c.sock is None, 3000)
        out.append({"closed": closed, "reason": c.error, "took_ms": rt.ms() - t0, "got": len(got)})
    return out


result = {"roundtrip": roundtrip, "stall": stall, "hostile": hostile}[scenario]()
print(json.dumps(result))
