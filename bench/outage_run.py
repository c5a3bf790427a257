"""A real-time run (not a test; about 2.5 minutes): `micropython main.py` on
the fake router uploads to a local API that is down for 45 s in the middle
of a 2-minute run (500s, then dropped connections, then no answer), then
comes back. Every document made must arrive exactly once, in order.

    .venv/bin/python bench/outage_run.py [--minutes 2] [--outage 45] [--runtime micropython]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests_cpython"))

from helpers import openwrt  # noqa: E402
from helpers.httpserver import Server  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=2)
    ap.add_argument("--outage", type=float, default=45)
    ap.add_argument("--runtime", default="micropython", choices=["micropython", "cpython"])
    args = ap.parse_args()
    api = Server()
    tmp = tempfile.mkdtemp(prefix="socketman-outage-")
    env, dev = openwrt.make(tmp)
    cfg = dict(dev, mac="02:00:00:00:0a:01", stats_url=api.url("/stats"), cache_dir=os.path.join(tmp, "cache"),
               config_dir=os.path.join(tmp, "etc"), state_file=os.path.join(tmp, "state.json"),
               update_dir=os.path.join(tmp, "updates"),
               health_url="none", scan=1, reboot=0, heartbeat=15)  # an upload try in every phase
    os.makedirs(cfg["config_dir"])
    path = os.path.join(tmp, "config.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    if args.runtime == "micropython":
        cmd = [shutil.which("micropython", path=os.path.join(ROOT, ".venv", "bin"))]
    else:
        cmd = [sys.executable]
    log = open(os.path.join(tmp, "agent.log"), "wb")
    p = subprocess.Popen(cmd + [os.path.join(ROOT, "main.py"), "--config=" + path], env=dict(os.environ, **env,
                         DEBUG="1"), stdout=log, stderr=subprocess.STDOUT)
    t0 = time.monotonic()
    run_s = args.minutes * 60
    down_from, down_to = (run_s - args.outage) / 2, (run_s + args.outage) / 2
    print("run %.0f s, API down from %.0f s to %.0f s" % (run_s, down_from, down_to), flush=True)
    state = "up"
    while time.monotonic() - t0 < run_s:
        t = time.monotonic() - t0
        if down_from <= t < down_to:
            third = (down_to - down_from) / 3
            want = "500" if t < down_from + third else "close" if t < down_from + 2 * third else "slow"
        else:
            want = "up"
        if want != state:
            api.default = {"500": (500, b"down"), "close": (0, b"", "close"), "slow": (200, b"", "sleep:12"),
                           "up": (200, b"{}")}[want]
            print("%6.1f s  API %s" % (t, want), flush=True)
            state = want
        time.sleep(0.2)
    api.default = (200, b"{}")
    made_in_run = open(os.path.join(tmp, "agent.log")).read().count("stats: document of")
    time.sleep(20)  # the next heartbeat after the run sends what is left
    p.send_signal(2)
    p.wait(15)
    out = open(os.path.join(tmp, "agent.log")).read()
    made = out.count("stats: document of")
    got = []
    for r in api.got("POST", "/stats"):
        if r.answered == 200:
            got.extend(r.documents())
    seqs = [d["device"]["seq"] for d in got]
    spool = os.path.join(tmp, "cache", "spool.jsonl")
    left = open(spool, "rb").read().count(b"\n") if os.path.exists(spool) else 0
    print("documents made %d (%d during the run), delivered %d, still spooled %d; requests %d, %d answered 2xx"
          % (made, made_in_run, len(got), left, len(api.got()), sum(1 for r in api.got() if r.answered == 200)))
    # Every document of the run delivered once, in order; the few made while
    # waiting for the last upload are delivered too or still in the spool.
    ok = seqs == list(range(1, len(got) + 1)) and len(got) >= made_in_run and len(got) + left == made
    print("every document exactly once, in order: %s" % ("YES" if ok else "NO"))
    api.close()
    shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
