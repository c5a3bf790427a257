# The agent's ubus client (PROTOCOL 12) as a small program, for the tests
# under every runtime (CPython and MicroPython, sources or a bundle:
# SOCKETMAN_LIB=DIR as in mp_run.py):
#
#   ubus_client_run.py SOCKET NAME SECONDS CALLS.json
#
# serves the object NAME ("-": none) with the methods echo (answers its
# arguments and a value of every kind and width the encoder makes) and
# broken (raises), makes the calls in CALLS.json ([[path, method, args,
# timeout ms], ...]) one after the other, each once the client is connected
# (at most 10 s), printing {"status": .., "data": ..} a line each, then
# "ready", and serves on until SECONDS have passed. Exit 0 unless the
# client raised.
import json
import os
import sys

tests_dir = __file__.rpartition("/")[0] or "."
sys.path.insert(0, os.getenv("SOCKETMAN_LIB") or (tests_dir.rpartition("/")[0] or ".") + "/lib")
from socketman import rt, ubus  # noqa: E402
from socketman.loop import Loop  # noqa: E402

SAMPLE = {"i32": -55, "i64": 1 << 40, "neg64": -(1 << 40), "d": 2.25, "t": True, "f": False, "n": None,
          "s": "r\u00e9seau", "l": [1, [2, {}]], "tbl": {"a": {"b": []}}}


def say(obj):
    sys.stdout.write((obj if isinstance(obj, str) else json.dumps(obj)) + "\n")
    flush = getattr(sys.stdout, "flush", None)
    if flush:
        flush()


def echo(args):
    return 0, {"args": args, "sample": SAMPLE}


def broken(args):
    raise RuntimeError("a handler's bug")


def main(argv):
    path, name, seconds = argv[1], argv[2], float(argv[3])
    with open(argv[4]) as f:
        calls = json.loads(f.read())
    c = ubus.Client(path)
    loop = Loop()
    loop.add_source(c)
    task = loop.every(1000, c.tick, name="ubus")
    c.wake = lambda in_ms: loop.wake(task, in_ms)
    if name != "-":
        c.add_object(name, {"echo": echo, "broken": broken})
    real = rt.SCALE  # agent ms per real ms
    end = rt.ms() + int(seconds * 1000) * real
    state = {"i": 0, "busy": False, "since": rt.ms()}

    def done(status, data):
        say({"status": status, "data": data})
        state["busy"] = False
        state["since"] = rt.ms()

    def drive():  # every 10 real ms
        if rt.ms() > end:
            loop.stop()
            return 1000
        if state["busy"] or state["i"] > len(calls):
            return 10 * real
        registered = name == "-" or c.objects[0][2] is not None
        if state["i"] == len(calls):
            if registered:
                say("ready")
                state["i"] += 1
            return 10 * real
        if (not c.up() or not registered) and rt.ms() - state["since"] < 10000 * real:
            return 10 * real
        p, m, a, t = calls[state["i"]]
        state["i"] += 1
        state["busy"] = True
        c.call(p, m, a, done, t)
        return 10 * real

    loop.every(10 * real, drive, name="drive")
    loop.run()
    c.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
