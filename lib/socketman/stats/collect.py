# One collection cycle, in background steps: phase 1 runs the system, WAN and
# device-list commands, and the per-interface WiFi commands for the devices
# the last cycle found; phase 2 (only when the device list changed) the WiFi
# commands for the new list; then the outputs and the /proc files are parsed
# into the parts of a document. One round of commands a cycle, not two: each
# is a shell started and waited for, the largest part of an idle agent's CPU.
from .. import fs, log, proc, rt
from . import dhcp, survey, system, wan, wifi

UBUS = "ubus -t 5 call"


def _ubus(path, method, arg, out):
    a = " '{\"device\":\"%s\"}'" % arg if arg else ""
    return "%s %s %s%s > %s 2>/dev/null" % (UBUS, path, method, a, out)


class Collector:
    """One collection at a time, in the background (proc.Batch under workdir)."""
    def __init__(self, cfg, workdir):
        self.root = cfg["sysroot"]
        self.scan = bool(cfg["scan"])
        self.leases_file = cfg["leases_file"]
        self.batch = proc.Batch(workdir, "collect-" + cfg["mac"].replace(":", ""), 20000)
        self.phase = 0
        self.board = None     # static: asked until it answers
        self.ident = None     # system.identity, made again only when board changes
        self.ident_board = None
        self.devs = []        # the WiFi devices the last cycle found
        self.ran = []         # the devices whose commands the running batch has

    def running(self):
        """True from start() until poll() gives the parts."""
        return self.phase != 0

    def start(self):
        """Start a collection; False when one is still running."""
        if self.phase:
            return False
        cmds = [_ubus("system", "info", None, "info"), _ubus("network.interface.wan", "status", None, "wan")]
        if self.board is None:
            cmds.append(_ubus("system", "board", None, "board"))
        if self.scan:
            cmds.append(_ubus("iwinfo", "devices", None, "iwdev"))
            cmds.append("[ -s iwdev ] || iwinfo > iwinfo_all 2>/dev/null")
            self.ran = list(self.devs)
            cmds.extend(self._wifi_commands())
        self.batch.start(cmds)
        self.phase = 1
        return True

    def poll(self):
        """None while collecting; the parts of a document when done, made by
        _parts() and passed to doc.build:
          "system"   dict: board, release, uptime, memory, load (PROTOCOL 7
                     device fields; bytes, seconds, load as a float)
          "wan"      dict: wan_name, wan_ip, wan_gateway, rx_bytes, tx_bytes
          "dhcp"     list of lease dicts (dhcp.leases)
          "ssids", "stations"  lists of dicts (wifi.*), only with `scan`"""
        done = self.batch.poll()
        if done is None:
            return None
        if done is False:
            log.warn("stats: collection commands timed out")
        if self.phase == 1:
            self.first = {n: self.batch.read(n) for n in ("info", "wan", "board", "iwdev", "iwinfo_all")}
            if self.board is None and self.first["board"]:
                self.board = system.board(self.first["board"]) or None
            if self.scan:
                self.devs = wifi.devices(self.first["iwdev"]) or wifi.devices_text(self.first["iwinfo_all"])
                if self.devs and self.devs != self.ran:  # new or changed devices: their commands now
                    self.ran = list(self.devs)
                    try:
                        self.batch.start(self._wifi_commands())
                        self.phase = 2
                        return None
                    except OSError as e:  # cache_dir full or read-only: this document without them
                        log.warn("stats: cannot start the WiFi commands: %s" % e)
            self.phase = 0
            return self._parts(self._wifi_outputs())
        self.phase = 0
        return self._parts(self._wifi_outputs())

    def _wifi_commands(self):
        cmds = []
        for i, d in enumerate(self.devs):
            q = proc.shell_quote(d)
            cmds.append(_ubus("iwinfo", "info", d, "i%d" % i) + " && [ -s i%d ] || iwinfo %s info > it%d 2>/dev/null"
                        % (i, q, i))
            cmds.append(_ubus("iwinfo", "assoclist", d, "a%d" % i)
                        + " && [ -s a%d ] || iw dev %s station dump > s%d 2>/dev/null" % (i, q, i))
            cmds.append("[ -s a%d ] || [ -s s%d ] || iwinfo %s assoclist > at%d 2>/dev/null" % (i, i, q, i))
        return cmds

    def _wifi_outputs(self):
        out = {}
        for i, d in enumerate(self.devs):
            out[d] = {k: self.batch.read(k + str(i)) for k in ("i", "it", "a", "s", "at")}
        return out

    def _file(self, path, limit=262144):
        return fs.read_file(self.root + path, limit)

    def _parts(self, wifi_out):
        f = self.first
        p = {"system": {}, "wan": {}}
        sysd = p["system"]
        if self.ident is None or self.ident_board is not self.board:
            # Release, model and board files do not change while the agent runs.
            self.ident = system.identity(self._file, self.board)
            self.ident_board = self.board
        sysd.update(self.ident)
        sysd.update(system.uptime(self._file("/proc/uptime", 256)))
        sysd.update(system.meminfo(self._file("/proc/meminfo", 8192)))
        sysd.update(system.loadavg(self._file("/proc/loadavg", 256)))
        sysd.update(system.info(f["info"]))
        w = p["wan"]
        w.update(wan.route(self._file("/proc/net/route")))
        w.update(wan.status(f["wan"]))
        w.update(wan.counters(self._file("/proc/net/dev"), w.get("wan_name")))
        p["dhcp"] = dhcp.leases(fs.read_file(self.leases_file, 1 << 20))
        if self.scan:
            p["ssids"], p["stations"] = self._wifi(wifi_out, dhcp.by_mac(p["dhcp"]))
        return p

    def _wifi(self, outs, leases):
        ssids, stations = [], []
        if not outs and self.first.get("iwinfo_all"):
            ssids = wifi.info_text(self.first["iwinfo_all"])
        for dev, o in outs.items():
            e = wifi.info_json(dev, o["i"])
            if e is None:
                for x in wifi.info_text(o["it"]):
                    if x["interface"] == dev:
                        e = x
            if e is not None:
                ssids.append(e)
            st = wifi.assoclist_json(o["a"]) or wifi.station_dump(o["s"]) or wifi.assoclist_text(o["at"])
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
