"""Tunnels (issue 22, PROTOCOL 11): what masking costs, a tunnel's
throughput each way and the round trip it adds, and the heap a tunnel
costs, on the native MicroPython 1.23 (the .mpy bundle), the same bundle
on 32-bit big-endian MIPS under qemu (a relative figure: the emulator's
speed, not a router's; its heap is a router's) and CPython.

The tunnel is the agent's own relay (jobs/tunnel.py, ws.py) run by
bench/tunnel_run.py in its own loop under the runtime measured; the fleet
server's endpoint is played by the `websockets` library
(tests_cpython/helpers/ws_server.py), and the device's service by a TCP
server here. Everything is on loopback, on this machine's shared cores.

    .venv/bin/python bench/tunnel_bench.py [--mib N] [--mips-mib N] [--json FILE]
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests_cpython"))

from helpers import runtimes  # noqa: E402
from helpers.ws_server import FleetEnd  # noqa: E402

RUN = os.path.join(ROOT, "bench", "tunnel_run.py")
CHUNK = 65536


class Service:
    """The device's service for one scenario: "sink" keeps count of what
    comes, "source" sends n bytes and closes, "echo" sends back what comes."""

    def __init__(self, mode, n=0):
        self.mode, self.n = mode, n
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.done_at = None
        self.got = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        c, _ = self.sock.accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.mode == "source":
            block = os.urandom(CHUNK)
            left = self.n
            while left > 0:
                c.sendall(block[:min(left, CHUNK)])
                left -= CHUNK
            c.close()
            return
        while True:
            d = c.recv(CHUNK)
            if not d:
                break
            self.got += len(d)
            if self.mode == "echo":
                c.sendall(d)
            elif self.got >= self.n and self.done_at is None:
                self.done_at = time.perf_counter()
        c.close()


def one(interp, lib, fleet, mode, n, sample=False):
    """Run one tunnel under interp; the operator's side does mode. -> dict."""
    svc = Service({"in": "sink", "out": "source", "slow": "source", "rtt": "echo"}[mode], n)
    p = fleet.tunnel()
    op = socket.create_connection(("127.0.0.1", p.op_port))
    op.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    proc = subprocess.Popen(interp + [RUN, lib, "tunnel", str(svc.port), p.url] + (["heap"] if sample else []),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.device_seen.wait(60), proc.stderr.read() if proc.poll() is not None else "no device"
    out = {}
    if mode == "in":
        block = os.urandom(CHUNK)
        t0 = time.perf_counter()
        left = n
        while left > 0:
            op.sendall(block[:min(left, CHUNK)])
            left -= CHUNK
        while svc.done_at is None:
            time.sleep(0.01)
        out["mb_s"] = n / (svc.done_at - t0) / 1e6
    elif mode in ("out", "slow"):
        if mode == "slow":
            time.sleep(3)  # a reader that takes nothing for a while: the agent's buffers fill to their bound
        t0 = time.perf_counter()
        got = 0
        while got < n:
            d = op.recv(CHUNK)
            assert d, "closed after %d bytes" % got
            got += len(d)
        out["mb_s"] = n / (time.perf_counter() - t0) / 1e6
    else:
        out["rtt_ms"] = rtt(op, n)
    op.close()
    stdout, stderr = proc.communicate(timeout=120)
    lines = [x for x in stdout.splitlines() if x.startswith("{")]
    assert lines, stderr[-2000:]
    out.update(json.loads(lines[-1]))
    return out


def rtt(sock, rounds):
    msg = b"x" * 64
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        sock.sendall(msg)
        got = 0
        while got < len(msg):
            got += len(sock.recv(64))
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {"p50": round(statistics.median(times), 3), "p90": round(times[int(len(times) * 0.9)], 3)}


def reference_device_rtt(fleet, rounds):
    """The round trip through the same server with a device played by the
    websockets library in CPython (threads): the floor the agent's share
    is measured against."""
    from websockets.sync.client import connect
    svc = Service("echo")
    p = fleet.tunnel()
    op = socket.create_connection(("127.0.0.1", p.op_port))
    op.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    tcp = socket.create_connection(("127.0.0.1", svc.port))
    tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    ws = connect(p.url + "?access_token=tok&mac=aa:bb:cc:dd:ee:01", subprotocols=["socketman-tunnel"],
                 compression=None)

    def up():
        try:
            for msg in ws:
                tcp.sendall(msg)
        except Exception:  # noqa: BLE001 - closed at the end
            pass

    def down():
        while True:
            d = tcp.recv(CHUNK)
            if not d:
                return
            ws.send(d)
    threading.Thread(target=up, daemon=True).start()
    threading.Thread(target=down, daemon=True).start()
    r = rtt(op, rounds)
    op.close()
    ws.close()
    tcp.close()
    return r


def direct_rtt(rounds):
    svc = Service("echo")
    s = socket.create_connection(("127.0.0.1", svc.port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    r = rtt(s, rounds)
    s.close()
    return r


def bundle_lib():
    out = os.path.join(tempfile.mkdtemp(prefix="tunnel-bench-"), "socketman")
    subprocess.run(["sh", os.path.join(ROOT, "tools", "build_mpy.sh"), "--micropython", "1.23", "--out", out],
                   check=True, capture_output=True, timeout=300)
    return os.path.join(out, "lib")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=32, help="MiB each way on the native runtimes")
    ap.add_argument("--mips-mib", type=int, default=4, help="MiB each way under qemu")
    ap.add_argument("--rounds", type=int, default=300, help="round trips of 64 bytes")
    ap.add_argument("--json", help="write the figures here too")
    args = ap.parse_args()
    lib = bundle_lib()
    rows = [("native 1.23, .mpy bundle", [runtimes.native("1.23")], lib, args.mib),
            ("1.23 MIPS 32-bit (qemu), .mpy bundle", [runtimes.qemu_mips(), runtimes.native("1.23-mips")], lib,
             args.mips_mib),
            ("CPython %d.%d, sources" % sys.version_info[:2], [sys.executable], os.path.join(ROOT, "lib"), args.mib)]
    report = {"direct_rtt_ms": direct_rtt(args.rounds), "rows": []}
    fleet = FleetEnd("tok", "aa:bb:cc:dd:ee:01")
    try:
        report["reference_rtt_ms"] = reference_device_rtt(fleet, args.rounds)
        for name, interp, libdir, mib in rows:
            n = mib * 1024 * 1024
            mask = json.loads(subprocess.run(interp + [RUN, libdir, "mask"], capture_output=True, text=True,
                                             timeout=600).stdout.strip().splitlines()[-1])
            row = {"runtime": name, "mib": mib, "mask_mb_s": mask,
                   "in": one(interp, libdir, fleet, "in", n), "out": one(interp, libdir, fleet, "out", n),
                   "rtt": one(interp, libdir, fleet, "rtt", args.rounds),
                   "heap": one(interp, libdir, fleet, "slow", 8 << 20, sample=True)}
            report["rows"].append(row)
            print(json.dumps(row), flush=True)
    finally:
        fleet.close()
    print("direct TCP round trip (no tunnel): p50 %(p50).3f ms, p90 %(p90).3f ms" % report["direct_rtt_ms"])
    print("through the server with the websockets library as the device (CPython): p50 %(p50).3f ms, "
          "p90 %(p90).3f ms" % report["reference_rtt_ms"])
    for r in report["rows"]:
        m = r["mask_mb_s"]
        h = r["heap"]
        print("%s: masking 4096 B %.1f MB/s (byte loop %.2f), 1460 B %.1f (%.2f), 100 B %.1f (%.2f); "
              "in %.1f MB/s, out %.1f MB/s; round trip p50 %.3f ms p90 %.3f ms; heap before %d, code +%d, "
              "open, a reader stalled (peak) +%d, after +%d bytes"
              % (r["runtime"], m["bigint_4096"], m["bytewise_4096"], m["bigint_1460"], m["bytewise_1460"],
                 m["bigint_100"], m["bytewise_100"], r["in"]["mb_s"], r["out"]["mb_s"],
                 r["rtt"]["rtt_ms"]["p50"], r["rtt"]["rtt_ms"]["p90"], h["heap_before"],
                 h["heap_code"] - h["heap_before"], h["heap_open_peak"] - h["heap_code"],
                 h["heap_after"] - h["heap_code"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
