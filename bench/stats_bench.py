"""Stats benchmarks (not tests): gzip ratio and bytes on the wire per
document for each gzip path, collection time per cycle, and the smallest
MicroPython heap that runs a full collect + upload cycle (-X heapsize
bisection). The fake device is made of the real captures in
tests_cpython/fixtures/openwrt, behind stand-in ubus/iwinfo/iw scripts.

    .venv/bin/python bench/stats_bench.py [--docs 16] [--cycles 10]
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

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests_cpython"))

from helpers import openwrt  # noqa: E402
from helpers.httpserver import Server  # noqa: E402

MP = shutil.which("micropython", path=os.path.join(ROOT, ".venv", "bin"))


def cycle(interp, tmp, env, cfg, url, method, docs, heap=None, lib=None):
    work = tempfile.mkdtemp(dir=tmp)
    argv = [interp] + (["-X", "heapsize=%d" % heap] if heap else []) + [
        os.path.join(HERE, "stats_cycle.py"), work, cfg["sysroot"], cfg["leases_file"], url, method, str(docs)]
    if lib:
        argv.append(lib)
    r = subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ, **env), timeout=120)
    if r.returncode != 0:
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=16, help="documents per upload (4 minutes of 15 s documents)")
    ap.add_argument("--cycles", type=int, default=10)
    args = ap.parse_args()
    server = Server()
    with tempfile.TemporaryDirectory() as tmp:
        env, cfg = openwrt.make(tmp)
        print("machine: %s, %s, %d cores" % (platform.node(), platform.machine(), os.cpu_count()))
        print("\ngzip per path, %d documents per upload" % args.docs)
        print("%-12s %-8s %9s %9s %9s %7s %10s" % ("runtime", "method", "doc B", "batch B", "gzip B", "ratio",
                                                  "wire B/doc"))
        for name, interp, methods in (("cpython", sys.executable, ("zlib", "system", "stored")),
                                      ("micropython", MP, ("system", "stored"))):
            for m in methods:
                r = cycle(interp, tmp, env, cfg, server.url("/s"), m, args.docs)
                print("%-12s %-8s %9d %9d %9d %6.1fx %10.0f" % (
                    name, m, r["doc_bytes"], r["batch_bytes"], r["gzip_bytes"],
                    r["batch_bytes"] / r["gzip_bytes"], r["wire_bytes"] / r["docs"]))
        print("\ncollection time per cycle (stand-in scripts for ubus/iwinfo/iw), %d cycles" % args.cycles)
        for name, interp in (("cpython", sys.executable), ("micropython", MP)):
            ms = [cycle(interp, tmp, env, cfg, server.url("/s"), "stored", 1)["collect_ms"]
                  for _ in range(args.cycles)]
            print("%-12s median %5.0f ms  min %5.0f  max %5.0f" % (name, statistics.median(ms), min(ms), max(ms)))
        print("\nMicroPython heap for one full collect + upload cycle (%d documents), -X heapsize bisection"
              % args.docs)
        bundle = os.path.join(tmp, "bundle")
        subprocess.run(["bash", os.path.join(ROOT, "tools", "build_mpy.sh"), "--out", bundle], check=True,
                       stdout=subprocess.DEVNULL)
        for code, lib in (("source", None), (".mpy", os.path.join(bundle, "lib"))):
            for m in ("system", "stored"):
                lo, hi = 8 * 1024, 4 * 1024 * 1024
                if not cycle(MP, tmp, env, cfg, server.url("/s"), m, args.docs, heap=hi, lib=lib):
                    print("%-7s %-8s fails even with %d bytes of heap" % (code, m, hi))
                    continue
                while hi - lo > 2048:
                    mid = (lo + hi) // 2
                    if cycle(MP, tmp, env, cfg, server.url("/s"), m, args.docs, heap=mid, lib=lib):
                        hi = mid
                    else:
                        lo = mid
                print("%-7s %-8s smallest heap that works: %d KiB" % (code, m, hi // 1024))
    server.close()


if __name__ == "__main__":
    main()
