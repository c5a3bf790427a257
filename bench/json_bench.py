# The cost of strictjson's check against json.loads itself, per payload.
# Runs under both runtimes:
#   python3 bench/json_bench.py ; .venv/bin/micropython bench/json_bench.py
import json
import sys
import time

sys.path.insert(0, (__file__.rpartition("/")[0].rpartition("/")[0] or ".") + "/lib")

from socketman import strictjson  # noqa: E402

CASES = (
    ("usual job", '{"id": "job-42", "timestamp": 1484484398, "meta": {"msg": "uptime", "type": "cmd"}}'),
    ("64 KiB command, escapes", json.dumps({"id": "j1", "meta": {"msg": "echo " + "abc def\\n" * 7000}})),
    ("6000 numbers", json.dumps({"id": "j1", "meta": {"msg": "x", "l": list(range(6000))}})),
)


def ms_per(fn, arg, n=10):
    t0 = time.ticks_ms() if hasattr(time, "ticks_ms") else time.monotonic() * 1000
    for _ in range(n):
        fn(arg)
    t1 = time.ticks_ms() if hasattr(time, "ticks_ms") else time.monotonic() * 1000
    return (t1 - t0) / n


print("%s %s" % (sys.implementation.name, ".".join(str(v) for v in sys.implementation.version[:3])))
for name, s in CASES:
    b = s.encode()
    print("%-26s %6d B  check %7.2f ms  json.loads %6.2f ms"
          % (name, len(b), ms_per(strictjson.check, b), ms_per(json.loads, s)))
