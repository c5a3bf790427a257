"""Memory bounds that hold under any input (issue 16): the .mpy bundle on
the 32-bit big-endian MIPS build of MicroPython 1.23 (a router's pointers),
with the heap the installed launcher gives it (openwrt/socketman, HEAP), fed
the largest inputs the agent accepts: the largest job output, the largest
accepted job, a full spool to upload, a 64-station assoclist. Each must do
its work, and the agent must still be there and answer the next job. (A
tunnel with a slow reader at each end, at this heap: test_tunnel_e2e.py.)"""
import json
import os
import re
import time

import pytest

from helpers import openwrt
from helpers.device import BASE, config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def published_heap():
    """The -X heapsize the launcher runs the agent with: the size published."""
    with open(os.path.join(ROOT, "openwrt", "socketman")) as f:
        m = re.search(r"SOCKETMAN_HEAP:-(\d+[KM]?)\}", f.read())
    assert m, "openwrt/socketman sets no heap size"
    return os.environ.get("SOCKETMAN_TEST_HEAP") or m.group(1)


# conftest: the runtime parameter, and tmp_path on tmpfs for qemu.
RUNTIMES = ("mips1.23-bundle",)


@pytest.fixture
def mips_agent(runtime, agent_cmd, agents, tmp_path, broker, controllers):
    """Start the bundle on the MIPS build with the published heap; the
    operator's controller."""
    def start(profile=None, heap=None, **kw):
        cmd = agent_cmd[:-1] + ["-X", "heapsize=" + (heap or published_heap()), agent_cmd[-1]]
        fenv, fcfg = openwrt.make(tmp_path, profile)
        fenv["SOCKETMAN_TIME_SCALE"] = "15"
        ctrl = controllers(broker, BASE)
        a = agents(cmd, config(tmp_path, broker, **dict(fcfg, keepalive=600, **kw)), tmp_path, env=fenv)
        ctrl.wait_event("CONNECT", timeout=60, online="1")
        return a, ctrl
    return start


def event(a, ctrl, kind, jid, timeout=90):
    """The operator's event, or a failure that shows the agent's last words."""
    try:
        return ctrl.wait_event(kind, jid, timeout=timeout)
    except AssertionError as e:
        raise AssertionError("%s\nagent log:\n%s" % (str(e)[:500], last_words(a))) from None


def last_words(a):
    """The agent's log without its every-second lines."""
    keep = [x for x in a.output().splitlines() if "monitor: status" not in x and "document of" not in x]
    return "\n".join(keep[-40:])


def still_there(a, ctrl):
    ctrl.job("after", "echo after")
    assert event(a, ctrl, "PROCESSED", "after", 60)["meta"]["msg"] == "after\n"
    assert a.alive()
    out = a.output()
    assert "out of memory" not in out and "MemoryError" not in out, out[-3000:]


def test_the_largest_job_output(mips_agent):
    a, ctrl = mips_agent(scan=0)
    ctrl.job("big-out", "head -c 51200 /dev/urandom")  # max_output's default, not text at all
    m = event(a, ctrl, "PROCESSED", "big-out")["meta"]
    assert m["success"] is True and "\ufffd" in m["msg"], (m, a.output()[-3000:])
    still_there(a, ctrl)


def test_the_largest_accepted_job(mips_agent):
    a, ctrl = mips_agent(scan=0)
    msg = ": '" + "x" * 65400 + "'\necho big"
    payload = json.dumps({"id": "big-in", "meta": {"msg": msg}})
    assert 65000 < len(payload) <= 65536
    ctrl.send(payload)
    assert event(a, ctrl, "PROCESSED", "big-in")["meta"]["msg"] == "big\n"
    still_there(a, ctrl)


def test_a_full_spool_upload(mips_agent, tmp_path, http_server):
    api = http_server()
    spool = tmp_path / "cache" / "spool.jsonl"
    spool.parent.mkdir(parents=True, exist_ok=True)
    doc = {"device": {"mac": "aa:bb:cc:dd:ee:01", "seq": 0, "pad": "p" * 1900}, "dhcp": []}
    lines = []
    n = 0
    while sum(len(x) for x in lines) < 1000 * 1024:  # cache_max_bytes' default, 1 MiB
        doc["device"]["seq"] = n = n + 1
        lines.append(json.dumps(doc, separators=(",", ":")) + "\n")
    spool.write_text("".join(lines))
    a, ctrl = mips_agent(scan=0, stats_url=api.url("/stats"), heartbeat=60)
    deadline = time.monotonic() + 180
    got = set()
    while time.monotonic() < deadline and len(got) < n:
        got = {d["device"]["seq"] for r in api.got("POST", "/stats") if r.answered == 200
               for d in r.documents() if "pad" in d["device"]}
        time.sleep(0.5)
    assert got == set(range(1, n + 1)), (len(got), n)
    still_there(a, ctrl)


def _stations(n):
    """`ubus call iwinfo assoclist` with n stations, as rpcd-mod-iwinfo prints it."""
    res = []
    for i in range(n):
        res.append({"mac": "02:00:00:AA:%02X:%02X" % (i // 256, i % 256), "signal": -40 - i % 40,
                    "signal_avg": -41 - i % 40, "noise": -95, "inactive": 10 * i, "connected_time": 100 + i,
                    "thr": 30000 + i, "authorized": True, "authenticated": True, "preamble": "short",
                    "wme": True, "mfp": False, "tdls": False,
                    "rx": {"rate": 72200, "mcs": 7, "40mhz": False, "short_gi": True, "ht": True,
                           "packets": 4211 + i, "bytes": 301234 + i},
                    "tx": {"rate": 65000, "mcs": 6, "40mhz": False, "short_gi": True, "ht": True,
                           "packets": 1177 + i, "bytes": 99811 + i, "retries": i, "failed": 0}})
    return json.dumps({"results": res}, indent="\t")


def test_a_64_station_assoclist(mips_agent, http_server):
    api = http_server()
    profile = dict(openwrt.ROUTER)
    profile["ubus_text"] = dict(profile["ubus_text"], **{"iwinfo.assoclist.wlan0": _stations(64)})
    a, ctrl = mips_agent(profile, scan=1, stats_url=api.url("/stats"))
    deadline = time.monotonic() + 120
    docs = []
    while time.monotonic() < deadline:
        docs = [d for r in api.got("POST", "/stats") if r.answered == 200 for d in r.documents()
                if d["device"].get("connected", 0) >= 64]
        if docs:
            break
        time.sleep(0.5)
    assert docs, "no document with the 64 stations; agent log:\n" + last_words(a)
    st = [s for s in docs[0]["stations"] if s["interface"] == "wlan0"]
    assert len(st) == 64 and st[63]["tx_bitrate"] == 65.0
    still_there(a, ctrl)


def test_running_out_of_memory_is_survived(mips_agent):
    # 192 KiB: the agent's code takes some 104 KiB of it, so a 51200-byte
    # output and its 64 KiB payload cannot both be held. The result says so,
    # the line that reports it needs no memory, and the agent goes on.
    a, ctrl = mips_agent(scan=0, heap="192K")
    ctrl.job("big-out", "head -c 51200 /dev/urandom")
    m = event(a, ctrl, "PROCESSED", "big-out")["meta"]
    assert m["success"] is False and "not enough memory" in m["msg"], m
    ctrl.job("after", "echo after")
    assert event(a, ctrl, "PROCESSED", "after", 60)["meta"]["msg"] == "after\n"
    assert a.alive()
    said = a.output()
    assert "out of memory" in said or "not enough memory" in said, last_words(a)
