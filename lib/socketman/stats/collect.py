# One collection cycle, in background steps. Each part of the document
# (system info and board, the WAN status, the WiFi device list, and per
# device its info and stations) is asked of ubus over its socket (PROTOCOL
# 12) when the agent has a connection; a part the bus cannot give (no
# connection, no such object or method, no answer within a second, a
# malformed answer) comes from the commands of PROTOCOL 7 as before, all
# such commands of a round in one background batch. An object that answers
# with an error status has spoken for its part: the commands would ask the
# same daemon or library. Round one asks the system, WAN and device-list
# parts and, per device, the devices the last cycle found; round two (only
# when the device list changed) the new devices. Then the answers and the
# /proc files are parsed into the parts of a document: the same parsers
# whatever the source, so the document is the same.
from .. import fs, log, proc, rt
from . import dhcp, survey, system, wan, wifi

UBUS = "ubus -t 5 call"
_OK, _NO_METHOD = 0, 3  # ubus status codes (libubus ubusmsg.h)
_DEVICE_OUTS = ("i", "it", "a", "h", "s", "at")


def _ubus(path, method, arg, out):
    a = " '{\"device\":\"%s\"}'" % arg if arg else ""
    return "%s %s %s%s > %s 2>/dev/null" % (UBUS, proc.shell_quote(path), method, a, out)


def _wan(dump):
    """The "wan" interface of `network.interface dump`: what `ubus call
    network.interface.wan status` answers (plus its name); None without one."""
    ifs = dump.get("interface") if isinstance(dump, dict) else None
    for x in ifs if isinstance(ifs, list) else ():
        if isinstance(x, dict) and x.get("interface") == "wan":
            return x
    return None


class _Part:
    """One part of a collection: calls, tried on the bus in turn until one
    answers OK; cmds, the shell lines that give it otherwise (writing the
    files outs)."""

    def __init__(self, owner, calls, cmds, outs):
        self.owner = owner
        self.calls = calls    # [(path, method, args, output name, pick(data) or None)]
        self.cmds = cmds
        self.outs = outs
        self.i = 0
        self.spoken = False   # an object answered with an error status

    def ask(self):
        path, method, args, _, _ = self.calls[self.i]
        self.owner.asking += 1
        self.owner.bus.call(path, method, args, self.answered)

    def answered(self, status, data):
        c = self.owner
        c.asking -= 1
        _, _, _, out, pick = self.calls[self.i]
        if status == _OK:
            c.got[out] = pick(data) if pick else data
        else:
            self.spoken = self.spoken or (status > 0 and status != _NO_METHOD)
            self.i += 1
            if self.i < len(self.calls):
                self.ask()
                return
            if not self.spoken:
                c.fallback(self.cmds, self.outs)
        if not c.asking and c.wake is not None:
            c.wake()


class Collector:
    """One collection at a time, in the background: the bus (a ubus.Client,
    or None) first, commands (proc.Batch under workdir) for the rest.
    wake(), set by the wiring, is called when the bus has answered."""

    def __init__(self, cfg, workdir, bus=None):
        self.root = cfg["sysroot"]
        self.scan = bool(cfg["scan"])
        self.leases_file = cfg["leases_file"]
        self.batch = proc.Batch(workdir, "collect-" + cfg["mac"].replace(":", ""), 20000)
        self.bus = bus
        self.wake = None
        self.stage = 0        # 0 idle, 1 asking the bus, 2 commands running
        self.asking = 0       # bus calls under way
        self.got = {}         # output name -> a dict (bus) or bytes (command output)
        self.cmds = []        # this round's commands, for the parts the bus did not give
        self.outs = []        # the files they write
        self.listed = False   # this cycle's device list is known
        self.batches = 0      # command batches started (bench and tests)
        self.board = None     # static: asked until it answers
        self.ident = None     # system.identity, made again only when board changes
        self.ident_board = None
        self.devs = []        # the WiFi devices the last cycle found
        self.ran = []         # the devices this cycle asked about

    def running(self):
        """True from start() until poll() gives the parts."""
        return self.stage != 0

    def start(self):
        """Start a collection; False when one is still running."""
        if self.stage:
            return False
        self.got, self.cmds, self.outs = {}, [], []
        self.stage = 1
        self.listed = not self.scan
        self._ask([("system", "info", None, "info", None)], [_ubus("system", "info", None, "info")], ["info"])
        self._ask([("network.interface", "dump", None, "wan", _wan)],
                  [_ubus("network.interface.wan", "status", None, "wan")], ["wan"])
        if self.board is None:
            self._ask([("system", "board", None, "board", None)], [_ubus("system", "board", None, "board")],
                      ["board"])
        if self.scan:
            self._ask([("iwinfo", "devices", None, "iwdev", None)],
                      [_ubus("iwinfo", "devices", None, "iwdev"), "[ -s iwdev ] || iwinfo > iwinfo_all 2>/dev/null"],
                      ["iwdev", "iwinfo_all"])
            self._ask_devices(self.devs)
        return True

    def fallback(self, cmds, outs):
        """A part the bus did not give: its commands run in this round's batch."""
        self.cmds.extend(cmds)
        self.outs.extend(outs)

    def _ask(self, calls, cmds, outs):
        if self.bus is None or not self.bus.up():
            self.fallback(cmds, outs)  # no connection: not a call each to learn that
            return
        _Part(self, calls, cmds, outs).ask()

    def _ask_devices(self, devs):
        self.ran = list(devs)
        for i, d in enumerate(devs):
            dev, n = {"device": d}, str(i)
            q = proc.shell_quote(d)
            self._ask([("iwinfo", "info", dev, "i" + n, None)],
                      [_ubus("iwinfo", "info", d, "i" + n) + " && [ -s i%s ] || iwinfo %s info > it%s 2>/dev/null"
                       % (n, q, n)], ["i" + n, "it" + n])
            # Stations: iwinfo's list has the most of PROTOCOL 7's fields,
            # hostapd's serves a router without rpcd-mod-iwinfo; then iw.
            hostapd = _ubus("hostapd." + d, "get_clients", None, "h" + n)
            self._ask([("iwinfo", "assoclist", dev, "a" + n, None),
                       ("hostapd." + d, "get_clients", None, "h" + n, None)],
                      [_ubus("iwinfo", "assoclist", d, "a" + n) + " && [ -s a%s ] || { %s && [ -s h%s ]; }"
                       " || iw dev %s station dump > s%s 2>/dev/null" % (n, hostapd, n, q, n),
                       "[ -s a%s ] || [ -s h%s ] || [ -s s%s ] || iwinfo %s assoclist > at%s 2>/dev/null"
                       % (n, n, n, q, n)],
                      [k + n for k in ("a", "h", "s", "at")])

    def poll(self):
        """None while collecting; the parts of a document when done, made by
        _parts() and passed to doc.build:
          "system"   dict: board, release, uptime, memory, load (PROTOCOL 7
                     device fields; bytes, seconds, load as a float)
          "wan"      dict: wan_name, wan_ip, wan_gateway, rx_bytes, tx_bytes
          "dhcp"     list of lease dicts (dhcp.leases)
          "ssids", "stations"  lists of dicts (wifi.*), only with `scan`"""
        if not self.stage:
            return None  # no collection under way
        while True:
            if self.stage == 1:
                if self.asking:
                    return None
                if self.cmds:
                    log.debug("stats: %d collection commands in the background" % len(self.cmds))
                    try:
                        self.batch.start(self.cmds)
                        self.batches += 1
                        self.stage = 2
                        return None
                    except OSError as e:
                        # cache_dir full or read-only: the commands cannot be
                        # written. With nothing from the bus either, no
                        # document this cycle (the caller says why, once);
                        # else this document without those parts.
                        self.cmds, self.outs = [], []
                        if not self.got:
                            self.stage = 0
                            raise
                        log.warn("stats: cannot start the collection commands: %s" % e)
            if self.stage == 2:
                done = self.batch.poll()
                if done is None:
                    return None
                if done is False:
                    log.warn("stats: collection commands timed out")
                for n in self.outs:
                    self.got[n] = self.batch.read(n)
                self.cmds, self.outs = [], []
            if self.listed:
                break
            self.listed = True
            g = self.got
            self.devs = wifi.devices(g.get("iwdev")) or wifi.devices_text(g.get("iwinfo_all"))
            if not self.devs or self.devs == self.ran:
                break
            for i in range(len(self.ran)):  # the last list's answers are not the new list's
                for k in _DEVICE_OUTS:
                    g.pop(k + str(i), None)
            self.stage = 1
            self._ask_devices(self.devs)  # new or changed devices: a second round
        self.stage = 0
        if self.board is None and self.got.get("board"):
            self.board = system.board(self.got["board"]) or None
        parts = self._parts(self._wifi_outputs())
        self.got = {}  # the answers are in the parts now: their memory goes back to the heap
        return parts

    def _wifi_outputs(self):
        out = {}
        for i, d in enumerate(self.devs):
            out[d] = {k: self.got.get(k + str(i)) for k in _DEVICE_OUTS}
        return out

    def _file(self, path, limit=262144):
        return fs.read_file(self.root + path, limit)

    def _parts(self, wifi_out):
        f = self.got
        p = {"system": {}, "wan": {}}
        sysd = p["system"]
        if self.ident is None or self.ident_board is not self.board:
            # Release, model and board files do not change while the agent runs.
            self.ident = system.identity(self._file, self.board)
            self.ident_board = self.board
        sysd.update(self.ident)
        info = system.info(f.get("info"))
        # What `system info` gives wins over /proc: a file it makes moot is not read.
        if "uptime" not in info:
            sysd.update(system.uptime(self._file("/proc/uptime", 256)))
        if "total_ram" not in info or "free_ram" not in info:
            sysd.update(system.meminfo(self._file("/proc/meminfo", 8192)))
        sysd.update(system.loadavg(self._file("/proc/loadavg", 256)))
        sysd.update(info)
        w = p["wan"]
        w.update(wan.route(self._file("/proc/net/route")))
        w.update(wan.status(f.get("wan")))
        w.update(wan.counters(self._file("/proc/net/dev"), w.get("wan_name")))
        p["dhcp"] = dhcp.leases(fs.read_file(self.leases_file, 1 << 20))
        if self.scan:
            p["ssids"], p["stations"] = self._wifi(wifi_out, dhcp.by_mac(p["dhcp"]))
        return p

    def _wifi(self, outs, leases):
        ssids, stations = [], []
        if not outs and self.got.get("iwinfo_all"):
            ssids = wifi.info_text(self.got["iwinfo_all"])
        for dev, o in outs.items():
            e = wifi.info_json(dev, o["i"])
            if e is None:
                for x in wifi.info_text(o["it"]):
                    if x["interface"] == dev:
                        e = x
            if e is not None:
                ssids.append(e)
            st = (wifi.assoclist_json(o["a"]) or wifi.clients_json(o["h"]) or wifi.station_dump(o["s"])
                  or wifi.assoclist_text(o["at"]))
            stations.extend(wifi.enrich(st, dev, e.get("ssid") if e else None, leases))
        return ssids, stations


class Surveyor:
    """Neighbour scans in the background, at most every 10 minutes."""

    EVERY_MS = 600000

    def __init__(self, cfg, workdir):
        self.batch = proc.Batch(workdir, "survey-" + cfg["mac"].replace(":", ""), 60000)
        self.last = None
        self.devs = []
        self.results = None

    def running(self):
        """True while a scan runs."""
        return self.batch.running()

    def due(self):
        """True when no scan runs and the last is 10 minutes old (or none ran)."""
        return not self.batch.running() and (self.last is None or rt.ms() - self.last >= self.EVERY_MS)

    def start(self, devs):
        """Scan on the WiFi devices devs (names) in the background."""
        if not devs:
            return
        self.devs = list(devs)
        self.last = rt.ms()
        cmds = []
        for i, d in enumerate(self.devs):
            cmds.append(_ubus("iwinfo", "scan", d, "j%d" % i)
                        + " && [ -s j%d ] || iwinfo %s scan > t%d 2>/dev/null" % (i, proc.shell_quote(d), i))
        self.batch.start(cmds)

    def poll(self):
        """The loop's step: when the scan has ended, its results are kept for take()."""
        if self.batch.poll() is None:
            return
        seen = {}
        for i, _ in enumerate(self.devs):
            for e in survey.scan_json(self.batch.read("j%d" % i)) or survey.scan_text(self.batch.read("t%d" % i)):
                seen.setdefault(e["mac"], e)
        self.results = list(seen.values())

    def take(self):
        """The newest scan's results, once; [] when there is nothing new."""
        r, self.results = self.results, None
        return r or []
