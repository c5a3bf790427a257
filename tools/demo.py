"""`make demo`: SocketMan under MicroPython on a fake OpenWRT router (real
captures from tests_cpython/fixtures/openwrt), talking to a local Mosquitto
and a local stats API. It sends a few jobs the way an operator would and
prints what comes back. Everything stays on loopback.

    .venv/bin/python tools/demo.py [--seconds 40] [--runtime micropython|cpython]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests_cpython"))

import paho.mqtt.client as paho  # noqa: E402

from helpers import net, openwrt  # noqa: E402
from helpers.broker import mosquitto_bin  # noqa: E402
from helpers.httpserver import Server  # noqa: E402

MAC = "02:de:00:00:00:01"
BASE = "demo/fleet-key/" + MAC
SCALE = 15  # the demo's clock: a 15 s stats cycle takes 1 s


def say(who, text):
    print("%8.1fs  %-10s %s" % (time.monotonic() - T0, who, text), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=40)
    ap.add_argument("--runtime", default="micropython", choices=["micropython", "cpython"])
    ap.add_argument("--keep", action="store_true", help="keep the demo's directory (agent log, spool, config)")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="socketman-demo-")
    procs = []
    try:
        run(args, tmp, procs)
    except KeyboardInterrupt:
        pass
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(2)
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
        if args.keep:
            print("kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def run(args, tmp, procs):
    port = net.free_port()
    conf = os.path.join(tmp, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write("listener %d 127.0.0.1\nallow_anonymous true\n" % port)
    procs.append(subprocess.Popen([mosquitto_bin(), "-c", conf], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL))
    net.wait_listening(port)
    say("broker", "Mosquitto on 127.0.0.1:%d" % port)

    api = Server()
    say("api", "stats API on %s" % api.url("/stats"))

    env, dev = openwrt.make(tmp)
    cfg = dict(dev, mac=MAC, mqtt_host="127.0.0.1", port=port, topic="demo", key="fleet-key",
               stats_url=api.url("/stats"), token="demo-token", cache_dir=os.path.join(tmp, "cache"),
               config_dir=os.path.join(tmp, "etc-config"), state_file=os.path.join(tmp, "state.json"),
               health_url="127.0.0.1", health_port=port, survey=1, scan=1, reboot=0,
               restart_cmd="echo would restart the network")
    os.makedirs(cfg["config_dir"])
    path = os.path.join(tmp, "config.json")
    with open(path, "w") as f:
        json.dump(cfg, f)

    ctrl = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="demo-operator")
    ctrl.on_message = lambda c, u, m: show(m)
    ctrl.connect("127.0.0.1", port, 30)
    ctrl.loop_start()
    ctrl.subscribe([("status/" + BASE, 1), ("delivery/" + BASE, 1), ("pub/" + BASE, 1)])

    if args.runtime == "micropython":
        cmd = [shutil.which("micropython", path=os.path.join(ROOT, ".venv", "bin")), os.path.join(ROOT, "main.py")]
    else:
        cmd = [sys.executable, os.path.join(ROOT, "main.py")]
    log = open(os.path.join(tmp, "agent.log"), "wb")
    e = dict(os.environ, **env, SOCKETMAN_TIME_SCALE=str(SCALE), DEBUG="1")
    procs.append(subprocess.Popen(cmd + ["--config=" + path], env=e, stdout=log, stderr=subprocess.STDOUT))
    say("agent", "%s main.py --config=%s  (clock x%d: a document a second)" % (args.runtime, path, SCALE))

    jobs = [(2, "j-uname", "uname -sm", None), (3, "j-uptime", "cat /proc/uptime", None),
            (4, "j-fail", "ls /nonexistent", None), (5, "j-bad", None, None),
            (6, "j-net", "echo 'network change, checked and kept'", "network")]
    seen = 0
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        t = time.monotonic() - T0
        while jobs and jobs[0][0] <= t:
            _, jid, msg, kind = jobs.pop(0)
            payload = {"id": jid, "meta": {"msg": msg}} if msg else {"id": jid, "meta": {}}
            if kind:
                payload["meta"]["type"] = kind
            say("operator", "job %s: %s" % (jid, json.dumps(payload["meta"])))
            ctrl.publish("sub/" + BASE, json.dumps(payload), qos=1)
        for r in api.got("POST", "/stats")[seen:]:
            docs = r.documents()
            d = docs[-1]
            dev = d["device"]
            say("api", "upload: %d documents, gzip multipart; last: %s, fw %s, status %s, %d stations, %d leases"
                % (len(docs), dev.get("machine_type"), dev.get("firmware"), dev.get("status"),
                   len(d.get("stations", [])), len(d.get("dhcp", []))))
            seen += 1
        time.sleep(0.1)
    ctrl.loop_stop()
    say("demo", "done (--keep keeps the agent log, spool and config)")


def show(m):
    try:
        e = json.loads(m.payload)
    except ValueError:
        return
    kind = e.get("event_type")
    meta = e.get("meta", {})
    if kind == "PROCESSED":
        text = "%s %s exit %s: %s" % (e["id"], "ok" if meta.get("success") else "FAILED", meta.get("exit_code"),
                                     meta.get("msg", "").strip().replace("\n", " | ")[:100])
    elif kind == "CONNECT":
        text = "online %s" % meta.get("online")
    elif kind == "REJECTED":
        text = "%s: %s" % (e.get("id"), meta.get("reason"))
    else:
        text = e.get("id") or ""
    say("device", "%s %s" % (kind, text))


T0 = time.monotonic()

if __name__ == "__main__":
    threading.current_thread().name = "demo"
    main()
