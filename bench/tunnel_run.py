# The tunnel half of bench/tunnel_bench.py, run under the runtime being
# measured (native MicroPython 1.23, the MIPS build under qemu, CPython):
#   RUNTIME tunnel_run.py LIB mask
#       masking speed: a byte-by-byte XOR loop against wsframe.mask (the
#       big-integer XOR), MB/s for a few payload sizes; one JSON line
#   RUNTIME tunnel_run.py LIB tunnel PORT URL [heap]
#       one tunnel (jobs/tunnel.py, the agent's own code, in its own loop:
#       no MQTT) from 127.0.0.1:PORT to URL, until it closes; then one JSON
#       line: its result and the heap (gc.mem_alloc after a collection)
#       with the modules a running agent always holds, after the tunnel
#       modules were imported, while it was open (with "heap": the largest
#       of samples taken after every loop round, which slows it down) and
#       after.
import gc
import json
import sys
import time

sys.path.insert(0, sys.argv[1])
MPY = sys.implementation.name == "micropython"


def heap():
    gc.collect()
    return gc.mem_alloc() if hasattr(gc, "mem_alloc") else 0


def now_us():
    return time.ticks_us() if MPY else int(time.perf_counter() * 1e6)


def mask_bench():
    import os

    from socketman import wsframe

    def bytewise(p, k):
        out = bytearray(len(p))
        for i in range(len(p)):
            out[i] = p[i] ^ k[i & 3]
        return out

    res = {}
    for n in (100, 1460, 4096):
        data, key = os.urandom(n), os.urandom(4)
        assert bytes(wsframe.mask(data, key)) == bytes(bytewise(data, key))
        for name, fn, reps in (("bytewise", bytewise, 10), ("bigint", wsframe.mask, 200)):
            best = None
            for _ in range(3):  # the best of three: a shared machine's noise only adds
                gc.collect()
                t = now_us()
                for _ in range(reps):
                    fn(data, key)
                us = (now_us() - t) / reps
                best = us if best is None or us < best else best
            res["%s_%d" % (name, n)] = round(n / best, 2)  # bytes per us = MB/s
    print(json.dumps(res))


def tunnel_bench(port, url, sample):
    # What a running agent holds anyway (__init__.py's "always" row) first:
    # the figures are what tunnels add to it.
    from socketman import conn, dns, http, inflight, log, loop, proc, rt, text, urls  # noqa: F401
    h0 = heap()
    from socketman import loop as loop_mod
    from socketman.jobs import tunnel
    h1 = heap()
    lp = loop_mod.Loop()
    got = []
    cfg = {"tunnel_ports": [port], "tunnel_idle": 600, "token": "tok", "mac": "aa:bb:cc:dd:ee:01",
           "cacrt": "", "insecure": 0}
    t = tunnel.Tunnels(cfg, lp, got.append)
    assert t.start({"id": "bench", "msg": "%d %s" % (port, url)}) is None
    peak, rounds = 0, 0
    while not got:
        lp.run_due()
        lp.wait()
        rounds += 1
        if sample:
            peak = max(peak, heap())
    r = got[0]
    h2 = heap()
    print(json.dumps({"result": r["msg"].decode(), "success": r["success"], "heap_before": h0,
                      "heap_code": h1, "heap_open_peak": peak, "heap_after": h2, "rounds": rounds}))


if sys.argv[2] == "mask":
    mask_bench()
else:
    tunnel_bench(int(sys.argv[3]), sys.argv[4], sys.argv[5:] == ["heap"])
