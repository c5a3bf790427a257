# Connectivity status (PROTOCOL 7.1): a default route, then TCP connects to
# the health target and to the API host, each with a 3 s deadline, made
# non-blocking and driven by the loop (conn.Conn: each address of a name in
# turn). No byte is sent on them. Names are looked up through the agent's
# one cache (dns.py), never waiting for one.
from . import dns, fs, reach, rt, text, urls
from .conn import Conn
from .inflight import InFlight
from .stats import wan

CONNECT_MS = 3000

# The status values (PROTOCOL 7.1): 1 for a default route, +3 when the
# health target answers, +5 when the API host does.
NO_ROUTE = 0      # no default route
ROUTE_ONLY = 1    # a route, but neither target answers: offline
HEALTH_ONLY = 4   # the health target answers, the API host does not
API_ONLY = 6      # the API host answers, the health target does not
ONLINE = 9        # both answer


def online(status):
    """True for a status that counts as online (PROTOCOL 8: offline is 0 or 1)."""
    return status > ROUTE_ONLY


def targets(cfg):
    """(health host:port or None, API host:port or None) from the config."""
    health = None
    h = cfg["health_url"]
    if h != "none":
        if not h:
            h = nameserver(fs.read_file(cfg["sysroot"] + "/tmp/resolv.conf.d/resolv.conf.auto", 16384))
        if h:
            health = (h, cfg["health_port"])
    api = None
    for key in ("stats_url", "api_url"):
        if cfg[key]:
            _, host, port, _ = urls.split(cfg[key])
            api = (host, port)
            break
    if api is None and cfg["mqtt_host"]:
        api = (cfg["mqtt_host"], cfg["port"])
    return health, api


def nameserver(data):
    """The first non-loopback nameserver of a resolv.conf."""
    for line in text.utf8(data or b"").split("\n"):
        f = line.split()
        if len(f) >= 2 and f[0] == "nameserver" and not _loopback(f[1]):
            return f[1]
    return None


def _loopback(addr):
    return addr.startswith("127.") or addr in ("::1", "localhost")


def has_default_route(root):
    """True when /proc/net/route or /proc/net/ipv6_route under root has a
    default route not on lo."""
    if wan.default_route(fs.read_file(root + "/proc/net/route", 65536)):
        return True
    # ::/0 in /proc/net/ipv6_route: destination all zeros, prefix length 00.
    for line in (fs.read_file(root + "/proc/net/ipv6_route", 65536) or b"").split(b"\n"):
        f = line.split()
        if len(f) >= 10 and f[0] == b"0" * 32 and f[1] == b"00" and f[9] != b"lo":
            return True
    return False


class Check:
    """One status check in flight. start(), then the loop polls its sockets;
    done() when every probe has answered or timed out. addresses(host) ->
    its addresses, None while they are looked up, or OSError
    (dns.addresses): a target answers when any of them does (conn.Conn
    tries each in turn)."""

    def __init__(self, root, health, api, addresses=None, fresh_ms=0):
        self.root = root
        self.fresh_ms = fresh_ms  # a target that answered this lately is reachable (reach.py)
        self.probes = []   # [name, target, conn.Conn or None, result or None]
        self.result = None
        self.addresses = addresses or dns.addresses
        self.health, self.api = health, api

    def start(self):
        """Start the probes (no route: the result is NO_ROUTE at once); self."""
        self.started = rt.ms()
        if not has_default_route(self.root):
            self.result = NO_ROUTE
            return self
        for name, target in (("health", self.health), ("api", self.api)):
            if target is not None:
                self.probes.append([name, target, None, None])
        self._connect()
        self._finish_if_done()
        return self

    def _connect(self):
        """Connect the probes whose addresses are known by now."""
        for p in self.probes:
            if p[2] is not None or p[3] is not None:
                continue
            if self.fresh_ms and reach.recent(p[1][0], p[1][1], self.fresh_ms):
                p[3] = True  # in use: no empty connection to it (PROTOCOL 7.1)
                continue
            try:
                addrs = self.addresses(p[1][0])
                if addrs is not None:
                    c = p[2] = Conn()
                    c.on_open = lambda p=p: self._ended(p, True)  # connected: no byte is sent
                    c.on_data = lambda data: None
                    c.open(addrs, p[1][1], CONNECT_MS)
            except OSError:
                self._ended(p, False)

    def _ended(self, p, ok):
        p[3] = ok
        if p[2] is not None:
            p[2].close()

    def done(self):
        """True once the status (.result) is known."""
        return self.result is not None

    def wants(self):
        """[(socket, POLLOUT)] of the probes still waiting."""
        out = []
        for p in self.probes:
            if p[2] is not None and p[3] is None:
                out.extend(p[2].wants())
        return out

    def step(self, ev, sock):
        """A probe's connect finished (or failed): the poll events ev of
        its socket sock."""
        for p in self.probes:
            if p[3] is None and p[2] is not None and p[2].polled is sock:
                try:
                    p[2].step(ev)  # refused: the next address, or over
                except OSError:
                    self._ended(p, False)
        self._finish_if_done()

    def service(self):
        """The 3 s deadline; ms until the next look (sockets wake us sooner;
        a name still being looked up is asked about again)."""
        if self.result is not None:
            return 60000
        self._connect()
        left = CONNECT_MS - (rt.ms() - self.started)
        for p in self.probes:
            if p[3] is None and p[2] is not None:
                try:
                    left = min(left, p[2].service())  # an address that does not answer: the next
                except OSError:
                    self._ended(p, False)
        if left <= 0:
            for p in self.probes:
                if p[3] is None:
                    self._ended(p, False)
        self._finish_if_done()
        for p in self.probes:
            if p[2] is None and p[3] is None:
                left = min(left, dns.poll_ms(p[1][0]))
        return max(1, left)

    def _finish_if_done(self):
        if self.result is not None or any(p[3] is None for p in self.probes):
            return
        status = ROUTE_ONLY
        for name, _, _, ok in self.probes:
            if ok:
                status += HEALTH_ONLY - ROUTE_ONLY if name == "health" else API_ONLY - ROUTE_ONLY
        self.result = status

    def close(self):
        """Close every probe socket."""
        for p in self.probes:
            if p[2] is not None:
                p[2].close()


class Monitor(InFlight):
    """Runs status checks for whoever asks (the monitor cycle, network jobs)
    and remembers the last answer for the stats document."""

    def __init__(self, cfg, loop=None):
        super().__init__(loop, "checks")
        self.cfg = cfg
        self.last = None   # the last status (int, see NO_ROUTE ...), None before the first

    def check(self, on_done):
        """Start a status check now; on_done(status) when it is over."""
        health, api = targets(self.cfg)

        def done(c):
            self.last = c.result
            on_done(c.result)
        self.add(Check(self.cfg["sysroot"], health, api, fresh_ms=self.cfg["heartbeat"] * 1000).start(), done)
