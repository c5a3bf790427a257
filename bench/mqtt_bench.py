"""MQTT benchmarks (not tests): start to CONNECT, publish -> PROCESSED round
trip of `true` jobs, idle CPU and idle memory (VmRSS and RssAnon) with MQTT
connected, for each runtime, against a local Mosquitto with Debian's default
settings. Runtimes: CPython, the PyPI MicroPython (sources and .mpy bundle)
and the native MicroPython 1.23 that OpenWRT ships (sources and bundle;
tests_cpython/helpers/runtimes.py finds it).

    .venv/bin/python bench/mqtt_bench.py [--jobs 200] [--idle 60] [--runtime mpy1.23-bundle]
"""
import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests_cpython"))

import paho.mqtt.client as paho  # noqa: E402
from measure import pct  # noqa: E402

from helpers import net, runtimes  # noqa: E402
from helpers.broker import mosquitto_bin  # noqa: E402

MAC = "02:00:00:00:be:01"
BASE = "bench/k/" + MAC


def commands(build_dir):
    mp = shutil.which("micropython", path=os.path.join(ROOT, ".venv", "bin"))
    out = {
        "cpython": [sys.executable, os.path.join(ROOT, "main.py")],
        "micropython": [mp, os.path.join(ROOT, "main.py")],
        "bundle": [mp, os.path.join(build_dir, "main.py")],
    }
    try:
        native = runtimes.native("1.23")
        out["mpy1.23"] = [native, os.path.join(ROOT, "main.py")]
        out["mpy1.23-bundle"] = [native, os.path.join(build_dir, "main.py")]
    except runtimes.Missing as e:
        print("skipping the native 1.23: %s" % e, file=sys.stderr)
    return out


def memory_kib(pid):
    """VmRSS and RssAnon of the process, KiB (/proc/PID/status)."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon"):
                out[key] = int(value.split()[0])
    return out


class Broker:
    """Mosquitto with its defaults: only a loopback listener and anonymous access."""

    def __init__(self, tmp):
        self.port = net.free_port()
        conf = os.path.join(tmp, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write("listener %d 127.0.0.1\nallow_anonymous true\n" % self.port)
        self.proc = subprocess.Popen([mosquitto_bin(), "-c", conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        net.wait_listening(self.port)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def _client(name, port):
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-%s-%d" % (name, os.getpid()))
    c.connect("127.0.0.1", port, 30)
    # The measuring clients must not add Nagle stalls of their own.
    c.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.loop_start()
    return c


class Watcher:
    """Jobs go out on one connection, results come back on another, as an
    operator's controller would do: the broker's PUBACKs to the sender then
    never sit in front of a result on the same socket."""

    def __init__(self, port):
        self.events = []
        self.cond = threading.Condition()
        self.pub = _client("pub", port)
        self.c = _client("sub", port)
        self.c.on_message = self._msg
        done = threading.Event()
        self.c.on_subscribe = lambda *a: done.set()
        self.c.subscribe([("status/" + BASE, 1), ("pub/" + BASE, 1)])
        done.wait(10)

    def _msg(self, client, userdata, m):
        t = time.perf_counter()
        with self.cond:
            self.events.append((t, m.retain, json.loads(m.payload)))
            self.cond.notify_all()

    def wait(self, pred, timeout=20):
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                for t, retain, e in self.events:
                    if pred(retain, e):
                        return t
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                self.cond.wait(left)

    def close(self):
        for c in (self.c, self.pub):
            c.loop_stop()
            c.disconnect()


def cpu_seconds(pid):
    """CPU time of the process so far, from /proc/PID/schedstat (ns), finer
    than the 10 ms ticks of /proc/PID/stat."""
    with open("/proc/%d/schedstat" % pid) as f:
        return int(f.read().split()[0]) / 1e9


def start_agent(cmd, tmp, port):
    cfg = {"mac": MAC, "mqtt_host": "127.0.0.1", "port": port, "topic": "bench", "key": "k",
           "cache_dir": os.path.join(tmp, "cache"), "config_dir": os.path.join(tmp, "etc"),
           "update_dir": os.path.join(tmp, "updates"),
           "health_url": "none", "scan": 0, "no-ping": 1, "qos": int(os.getenv("AGENT_QOS", "1"))}
    os.makedirs(cfg["config_dir"], exist_ok=True)
    path = os.path.join(tmp, "config.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    env = dict(os.environ, DEBUG="", SOCKETMAN_SYSLOG=os.path.join(tmp, "nolog"))
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd + ["--config=" + path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env=env, cwd=tmp)
    return p, t0




def bench_runtime(name, cmd, args, tmp):
    broker = Broker(tmp)
    w = Watcher(broker.port)
    out = {"runtime": name}
    try:
        starts = []
        for i in range(args.starts):
            w.events.clear()
            p, t0 = start_agent(cmd, tmp, broker.port)
            t = w.wait(lambda r, e: not r and e["event_type"] == "CONNECT" and e["meta"]["online"] == "1")
            starts.append((t - t0) * 1000)
            if i < args.starts - 1:
                p.kill()
                p.wait()
        out["start_to_connect_ms_p50"] = pct(starts, 50)
        rtts = []
        for i in range(args.jobs):
            jid = "b%d" % i
            t0 = time.perf_counter()
            w.pub.publish("sub/" + BASE, json.dumps({"id": jid, "meta": {"msg": "true"}}), qos=args.qos)
            t = w.wait(lambda r, e, jid=jid: e.get("id") == jid and e["event_type"] == "PROCESSED")
            rtts.append((t - t0) * 1000)
        out.update({"rtt_ms_p50": pct(rtts, 50), "rtt_ms_p90": pct(rtts, 90), "rtt_ms_p99": pct(rtts, 99)})
        time.sleep(2)
        c0, t0 = cpu_seconds(p.pid), time.monotonic()
        time.sleep(args.idle)
        c1, t1 = cpu_seconds(p.pid), time.monotonic()
        out["idle_cpu_s_per_min"] = (c1 - c0) * 60.0 / (t1 - t0)
        out["idle_cpu_pct"] = out["idle_cpu_s_per_min"] / 60.0 * 100
        out.update(memory_kib(p.pid))
        p.send_signal(2)
        p.wait(10)
    finally:
        w.close()
        broker.stop()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--idle", type=float, default=60)
    ap.add_argument("--starts", type=int, default=10)
    ap.add_argument("--runtime", action="append")
    ap.add_argument("--qos", type=int, default=1, help="QoS of the jobs the bench sends")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        build = os.path.join(tmp, "build")
        subprocess.run(["bash", os.path.join(ROOT, "tools", "build_mpy.sh"), "--out", build], check=True,
                       stdout=subprocess.DEVNULL)
        rts = commands(build)
        print("machine: %s, %s, %d cores; %s" % (platform.node(), platform.processor() or platform.machine(),
                                                os.cpu_count(), subprocess.run(
                                                    [mosquitto_bin(), "-h"], capture_output=True, text=True
                                                ).stdout.splitlines()[0]))
        print("%-15s %10s %8s %8s %8s %22s %9s %9s" % ("runtime", "start->CON", "p50", "p90", "p99", "idle CPU",
                                                       "VmRSS", "RssAnon"))
        for name in args.runtime or list(rts):
            d = os.path.join(tmp, name)
            os.makedirs(d)
            r = bench_runtime(name, rts[name], args, d)
            print("%-15s %8.1fms %6.2fms %6.2fms %6.2fms %7.4f s/min (%.4f%%) %6d KiB %6d KiB" % (
                name, r["start_to_connect_ms_p50"], r["rtt_ms_p50"], r["rtt_ms_p90"], r["rtt_ms_p99"],
                r["idle_cpu_s_per_min"], r["idle_cpu_pct"], r["VmRSS"], r["RssAnon"]))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
