"""OpenWRT's own ubus for the tests (PROTOCOL 12): ubusd on a socket of the
test's own, a Lua 5.1 publisher (tests_cpython/ubus_publisher.lua) that
serves real captures of ../shared/fixtures/openwrt on it, and the `ubus` CLI.
The binaries come from $SOCKETMAN_UBUS, else ../shared/bin/openwrt-ubus;
a missing one fails the test naming the folder (Missing).

ROUTER is one fake router made of captures for both of the agent's paths:
objects() is what the publisher serves on the bus, command_profile() the
same data as files for the fake `ubus`/`iwinfo`/`iw` commands
(helpers/openwrt.py). What had to be converted, and why:
- `network.interface dump`: no complete real dump was found (SOURCES.md),
  so it is the real `network.interface.wan status` capture as the one
  interface of a dump, with "interface": "wan" added, as netifd lists it.
- the `hostapd.wlan1 get_clients` capture's station MAC was masked by its
  poster ("xx:xx:..."), which no parser takes for a MAC: it becomes the MAC
  of the first lease in the router's lease capture, so the station is also
  matched with its lease.
- `iwinfo devices` has no capture: the list names the two interfaces whose
  captures the router has (as helpers/openwrt.ROUTER does).
"""
import json
import os
import shutil
import subprocess
import time

from helpers import openwrt
from helpers.runtimes import ROOT, SHARED_BIN, Missing

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PUBLISHER = os.path.join(HERE, "ubus_publisher.lua")
FIX = openwrt.FIX

BOARD = "openwrt-18.06.5_tplink-tl-wr1043nd-v4/system_board.json"
INFO = "openwrt-19.07-snapshot-r10675_x86-64-swap/system_info.json"
WAN = "unknown-device_dhcp-wan-eth0.1/network_interface_wan_status.json"
MESH0_INFO = "openwisp-pr26_mesh-mt7603e/iwinfo_info_mesh0.json"
CLIENTS = "openwrt-2021_hass-openwrt-user/hostapd_wlan1_get_clients.json"
LEASES = openwrt.ROUTER["leases"]
DEVICES = ["mesh0", "wlan1"]


def folder():
    """The openwrt-ubus folder (ubusd, ubus, lib/lua/ubus.so) and lua5.1;
    Missing names what is not there and where it was looked for."""
    var = os.environ.get("SOCKETMAN_UBUS")
    d = var or os.path.join(SHARED_BIN, "openwrt-ubus")
    for name in ("ubusd", "ubus", "lib/lua/ubus.so", "lib/lua/uloop.so"):
        if not os.path.exists(os.path.join(d, name)):
            raise Missing("OpenWRT's ubus not found: %s has no %s (%s); set SOCKETMAN_UBUS to the folder, or put it "
                          "in %s; ../shared/bin/openwrt-ubus/README.md says how it is built"
                          % (d, name, "$SOCKETMAN_UBUS" if var else "no $SOCKETMAN_UBUS",
                             os.path.join(SHARED_BIN, "openwrt-ubus")))
    if not shutil.which("lua5.1"):
        raise Missing("lua5.1 not found: the ubus tests publish captures with OpenWRT's Lua 5.1 bindings; "
                      "`make test` installs it (tools/need_system.sh), or: sudo apt-get install lua5.1")
    return d


def _fixture(rel):
    with open(os.path.join(FIX, rel), "rb") as f:
        return json.loads(f.read())


def _lease_mac():
    with open(os.path.join(FIX, LEASES)) as f:
        return f.readline().split()[1]


def clients():
    """The get_clients capture, its masked MAC replaced (see the top)."""
    c = _fixture(CLIENTS)
    c["clients"] = {_lease_mac(): v for v in c["clients"].values()}
    return c


def objects():
    """{object: {method: answer}} the publisher serves for ROUTER."""
    return {
        "system": {"board": _fixture(BOARD), "info": _fixture(INFO)},
        "network.interface": {"dump": {"interface": [dict(_fixture(WAN), interface="wan")]}},
        "iwinfo": {"devices": {"devices": DEVICES},
                   "info": {"__by_device": {"mesh0": _fixture(MESH0_INFO)}},
                   "assoclist": {"__by_device": {}}},
        "hostapd.wlan1": {"get_clients": clients()},
    }


def command_profile():
    """The same router for the command path (helpers/openwrt.make)."""
    return {
        "ubus": {"system.board": BOARD, "system.info": INFO, "network.interface.wan.status": WAN,
                 "iwinfo.info.mesh0": MESH0_INFO},
        "ubus_text": {"iwinfo.devices": json.dumps({"devices": DEVICES}),
                      "hostapd.wlan1.get_clients": json.dumps(clients())},
        "root": dict(openwrt.ROUTER["root"]),
        "leases": LEASES,
    }


def lua(v):
    """v (JSON data) as a Lua 5.1 expression."""
    if v is None:
        return "nil"
    if v is True or v is False:
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else
                             "".join("\\%03d" % b for b in c.encode()) for c in v) + '"'
    if isinstance(v, list):
        return "{" + ", ".join(lua(x) for x in v) + "}"
    return "{" + ", ".join("[%s] = %s" % (lua(k), lua(x)) for k, x in v.items()) + "}"


class Bus:
    """ubusd on tmp/ubus.sock and the publisher serving objects (a dict as
    objects() gives; None: no publisher). stop() ends both; restart() stops
    and starts both (the publisher goes with ubusd: libubus ends its loop)."""

    def __init__(self, tmp, objs=None):
        self.dir = folder()
        self.tmp = str(tmp)
        os.makedirs(self.tmp, exist_ok=True)
        self.sock = os.path.join(self.tmp, "ubus.sock")
        self.objs = objs
        self.data = os.path.join(self.tmp, "ubus-objects.lua")
        with open(self.data, "w") as f:
            f.write("return " + lua(objs or {}) + "\n")
        self.procs = []
        self.start()

    def start(self):
        self.log = open(os.path.join(self.tmp, "ubusd.log"), "ab")
        self.procs = [subprocess.Popen([os.path.join(self.dir, "ubusd"), "-s", self.sock],
                                       stdout=self.log, stderr=subprocess.STDOUT)]
        end = time.monotonic() + 10
        while self.cli("list").returncode != 0:
            assert time.monotonic() < end, "ubusd did not start on " + self.sock
            time.sleep(0.02)
        if self.objs is not None:
            p = subprocess.Popen(["lua5.1", PUBLISHER, self.sock, self.data, self.dir],
                                 stdout=subprocess.PIPE, stderr=self.log, cwd=ROOT)
            self.procs.append(p)
            line = p.stdout.readline()
            assert line.strip() == b"ready", "the Lua publisher did not start: %r" % line

    def cli(self, *args, timeout=10):
        """The ubus CLI on this bus: CompletedProcess (text)."""
        return subprocess.run([os.path.join(self.dir, "ubus"), "-s", self.sock] + list(args),
                              capture_output=True, text=True, timeout=timeout)

    def call(self, obj, method, args=None, timeout=5):
        """`ubus call` through the real CLI: the parsed JSON answer;
        AssertionError with the CLI's words when it fails."""
        argv = ["-t", str(timeout), "call", obj, method] + ([json.dumps(args)] if args is not None else [])
        r = self.cli(*argv, timeout=timeout + 5)
        assert r.returncode == 0, "ubus call %s %s: exit %d: %s" % (obj, method, r.returncode, r.stderr)
        return json.loads(r.stdout) if r.stdout.strip() else None

    def stop(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.kill()
            p.wait(5)
            if p.stdout:
                p.stdout.close()
        self.procs = []
        self.log.close()

    def restart(self):
        self.stop()
        self.start()


# ---- the agent on ROUTER ---------------------------------------------------

FAST = {"SOCKETMAN_TIME_SCALE": "15"}
COMMANDS = "collection commands in the background"  # the agent's debug line for each batch it starts
STATUS_KEYS = ("version", "mac", "mqtt", "status", "spool_bytes", "jobs_queued", "tunnels", "last_upload")
_expected = []


def comparable(d):
    """A document without what differs from one document to the next."""
    d = json.loads(json.dumps(d))
    for k in ("created_at", "seq", "status"):
        d["device"].pop(k, None)
    return d


def expected_document(tmp):
    """The document the command path makes of ROUTER's captures (the fake
    `ubus`, `iwinfo`, `iw` first in PATH), made once in this process."""
    if _expected:
        return _expected[0]
    from helpers.device import MAC
    from socketman.stats import doc
    from socketman.stats.collect import Collector
    env, cfg = openwrt.make(tmp, command_profile())
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        c = Collector(dict(cfg, scan=1, mac=MAC), os.path.join(str(tmp), "work"))
        for _ in range(2):  # the second cycle knows the devices: the steady answer
            assert c.start()
            end = time.monotonic() + 20
            parts = None
            while parts is None and time.monotonic() < end:
                parts = c.poll()
                time.sleep(0.01)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    d = comparable(doc.build(parts, MAC, 0, 1, []))
    # What the captures must give, so that equal documents mean something.
    assert d["device"]["machine_type"] == "TP-Link TL-WR1043N/ND v4" and d["device"]["wan_ip"] == "192.168.2.162"
    assert d["device"]["uptime"] == 161 and [s["interface"] for s in d["ssids"]] == ["mesh0"]
    assert [(s["interface"], s["mac"], s.get("name")) for s in d["stations"]] == [
        ("wlan1", "C8:21:58:9E:BF:1F", "Alisa")]
    _expected.append(d)
    return d


def start_agent(agents, agent_cmd, tmp, sock, commands=False, **kw):
    """The agent on ROUTER's sysroot and leases with ubus_socket sock, the
    test clock 15 times faster; commands: the fake `ubus`, `iwinfo`, `iw`
    first in PATH (they write what ran to FAKE_OPENWRT/calls.log), else
    none. (agent, its environment additions)."""
    from helpers.device import config
    env, cfg = openwrt.make(tmp, command_profile())
    if not commands:
        env.pop("PATH")
    env.update(FAST)
    cfg.update(kw)
    return agents(agent_cmd, config(tmp, scan=1, ubus_socket=sock, **cfg), tmp, env=env), env


def spooled(tmp):
    """The documents in the agent's spool."""
    p = os.path.join(str(tmp), "cache", "spool.jsonl")
    if not os.path.exists(p):
        return []
    with open(p, "rb") as f:
        return [json.loads(x) for x in f.read().split(b"\n") if x]


def status(bus, cond=None):
    """`ubus call socketman status` through the CLI: the answer (checked for
    PROTOCOL 12's keys) when it answers and cond(answer) holds, else None."""
    r = bus.cli("-t", "5", "call", "socketman", "status", timeout=15)
    if r.returncode != 0:
        return None
    d = json.loads(r.stdout)
    for k in STATUS_KEYS:
        assert k in d, (k, d)
    return d if cond is None or cond(d) else None


def wait_for(cond, timeout=30.0, what="the condition"):
    """cond()'s first true value within timeout s; AssertionError naming what."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("no %s in %s s" % (what, timeout))
