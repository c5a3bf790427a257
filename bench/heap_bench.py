"""The smallest MicroPython heap (-X heapsize) in which the agent does a full
cycle (not a test): the .mpy bundle as a process on the fake OpenWRT router,
connected to a local Mosquitto, collects stats (a document a second: the
clock runs 15 times faster), spools them, uploads them gzipped to a local
server and runs a job. By default on the 32-bit big-endian MIPS build of
MicroPython 1.23 under qemu-mips-static: a router's pointers are 32-bit, so
its heap figures are a router's. Bisection over heapsize, 4 KiB steps.

    .venv/bin/python bench/heap_bench.py [--runtime mips1.23-bundle|mpy1.23-bundle] [--seconds 30]

A run passes when, within --seconds of the start, the job came back
PROCESSED, an upload of at least 3 documents was answered 200, the agent is
still running and its log holds no MemoryError.
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests_cpython"))
sys.path.insert(0, HERE)

from mqtt_bench import BASE, MAC, Broker, Watcher  # noqa: E402

from helpers import openwrt, runtimes  # noqa: E402
from helpers.httpserver import Server  # noqa: E402

# Under qemu the agent's directories must be on tmpfs (see tests_cpython/conftest.py).
TMPFS = "/dev/shm"


def trial(argv, heap, broker, api, seconds):
    """One agent run with -X heapsize=heap; True when the full cycle worked."""
    work = tempfile.mkdtemp(prefix="socketman-heap-", dir=TMPFS)
    try:
        fenv, fcfg = openwrt.make(work)
        cfg = dict(fcfg, mac=MAC, topic="bench", key="k", mqtt_host="127.0.0.1", port=broker.port,
                   stats_url=api.url("/stats"), scan=1, health_url="none", reboot=0, restart_cmd="true",
                   cache_dir=os.path.join(work, "cache"), config_dir=os.path.join(work, "etc"),
                   state_file=os.path.join(work, "state.json"))
        os.makedirs(cfg["config_dir"])
        path = os.path.join(work, "config.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        env = dict(os.environ, **fenv)
        env.update({"SOCKETMAN_TIME_SCALE": "15", "DEBUG": "1"})
        w = Watcher(broker.port)
        n0 = len(api.got("POST", "/stats"))
        log = open(os.path.join(work, "log"), "wb")
        p = subprocess.Popen(argv[:-1] + ["-X", "heapsize=%d" % heap, argv[-1], "--config=" + path],
                             stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work)
        ok = False
        try:
            end = time.monotonic() + seconds
            w.wait(lambda r, e: not r and e["event_type"] == "CONNECT" and e["meta"]["online"] == "1",
                   timeout=seconds)
            jid = "heap-%d" % heap
            w.pub.publish("sub/" + BASE, json.dumps({"id": jid, "meta": {"msg": "echo ok"}}), qos=1)
            w.wait(lambda r, e: e.get("id") == jid and e["event_type"] == "PROCESSED" and e["meta"]["success"],
                   timeout=max(1, end - time.monotonic()))
            while time.monotonic() < end:
                ups = [r for r in api.got("POST", "/stats")[n0:] if r.answered == 200 and len(r.documents()) >= 3]
                if ups:
                    ok = True
                    break
                if p.poll() is not None:
                    break
                time.sleep(0.2)
            ok = ok and p.poll() is None
        except TimeoutError:
            ok = False
        finally:
            w.close()
            p.kill()
            p.wait()
            log.close()
        with open(os.path.join(work, "log"), "rb") as f:
            out = f.read()
        return ok and b"MemoryError" not in out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runtime", default="mips1.23-bundle", choices=["mips1.23-bundle", "mpy1.23-bundle"])
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--low", type=int, default=64 * 1024)
    ap.add_argument("--high", type=int, default=2 * 1024 * 1024)
    args = ap.parse_args()
    key = runtimes.RUNTIMES[args.runtime][1]
    with tempfile.TemporaryDirectory() as tmp:
        bundle = os.path.join(tmp, "bundle")
        subprocess.run(["sh", os.path.join(ROOT, "tools", "build_mpy.sh"), "--out", bundle], check=True,
                       stdout=subprocess.DEVNULL)
        argv = runtimes.interpreter(key) + [os.path.join(bundle, "main.py")]
        print("machine: %s, %s, %d cores; runtime %s (%s)" % (platform.node(), platform.machine(),
                                                             os.cpu_count(), args.runtime, " ".join(argv[:-1])))
        broker = Broker(tmp)
        api = Server()
        try:
            lo, hi = args.low, args.high
            if not trial(argv, hi, broker, api, args.seconds):
                print("a full cycle fails even with %d KiB of heap" % (hi // 1024))
                return 1
            while hi - lo > 4096:
                mid = (lo + hi) // 2 // 1024 * 1024
                good = trial(argv, mid, broker, api, args.seconds)
                print("  heapsize %5d KiB: %s" % (mid // 1024, "full cycle" if good else "fails"))
                sys.stdout.flush()
                if good:
                    hi = mid
                else:
                    lo = mid
            print("smallest heap for a full cycle (collect, spool, upload, a job): %d KiB" % (hi // 1024))
        finally:
            api.close()
            broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
