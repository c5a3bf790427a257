# Host names -> addresses without stalling the loop (PROTOCOL 5): one cache
# for the MQTT broker, every HTTP URL and the status check. getaddrinfo
# blocks for the resolver's whole timeout (about 10 s with glibc defaults)
# when a name server is silent, and MicroPython has no threads, so each
# lookup runs in a short-lived child process (the running interpreter doing
# getaddrinfo: the same answers as in-process, /etc/hosts included, on both
# runtimes and on a router) whose output file the loop polls. An IP address
# is never looked up. A name gives every address it has, in the order they
# are to be tried (the clients go on to the next when one does not answer:
# conn.Conn.open), and the one that answered last comes first.
import errno

from . import log, proc, rt, text

TTL_MS = 300000      # a good answer is reused this long, then refreshed in the background
FAILED_MS = 30000    # a name that could not be looked up is not asked again for this long
LOOKUP_MS = 30000    # a lookup still running after this is killed (its name server is silent)
MAX_LOOKUPS = 3      # child processes at once; further names wait their turn
QUICK_MS = 250       # a lookup is looked at every 10 ms this long, then every 100 ms

# What the child runs: sys.argv[1] is the name. One line per address.
# MicroPython's getaddrinfo gives a raw sockaddr, CPython's a tuple.
CHILD = ("import socket,sys\n"
         "for a in socket.getaddrinfo(sys.argv[1],80,0,socket.SOCK_STREAM):\n"
         " s=a[-1]\n"
         " print(s[0] if type(s) is tuple else socket.inet_ntop(a[0],socket.sockaddr(s)[1]))\n")


def is_address(host):
    """True for an IPv4 address (four decimal parts 0..255) or an IPv6 one
    (hex digits and colons, maybe an IPv4 tail or a %zone): those are never
    looked up."""
    if ":" in host:
        addr = host.partition("%")[0]
        return addr.count(":") >= 2 and all(ch in "0123456789abcdefABCDEF:." for ch in addr)
    parts = host.split(".")
    if len(parts) != 4:
        return False
    for p in parts:
        if not p or len(p) > 3 or not all("0" <= ch <= "9" for ch in p) or int(p) > 255:
            return False
    return True


def order(output):
    """The addresses of a lookup's output (bytes, one address a line) in the
    order to try them, or None when there is none: IPv4 first (most OpenWRT
    uplinks are IPv4 first, as rt.resolve prefers), the families taking
    turns after that (v4, v6, v4, v6 ...), so a dead first address is
    followed by the other family at once; each address once."""
    v4, v6 = [], []
    for line in (output or b"").split(b"\n"):
        try:
            a = line.strip().decode()
        except UnicodeError:
            continue
        if a and is_address(a) and a not in v4 and a not in v6:
            (v6 if ":" in a else v4).append(a)
    out = []
    for i in range(max(len(v4), len(v6))):
        out.extend(x[i] for x in (v4, v6) if i < len(x))
    return out or None


class Resolver:
    """The name cache. With a workdir, lookups run in the background and
    resolve() never waits; without one (tools, tests, the blocking clients)
    they run in-process and block."""

    def __init__(self, workdir=None):
        self.workdir = workdir
        self.cache = {}      # name -> ([address, ...] or None, rt.ms() when stored)
        self.running = {}    # name -> proc.Batch of its lookup
        self.waiting = []    # names waiting for a free lookup slot
        self.free = list(range(MAX_LOOKUPS))
        self.slot = {}       # name -> slot number of its running lookup
        self.tag = "dns-" + rt.random_hex(4)  # only this agent's lookups are ever killed

    def addresses(self, host):
        """host -> its addresses ([str, ...], in the order to try them: a
        new list) to connect to, or None while its lookup runs (ask again
        in a few ms). An address is its own answer. A cached answer older
        than TTL_MS is still given while a new lookup runs. OSError when
        the name could not be looked up in the last FAILED_MS."""
        if is_address(host):
            return [host]
        self.poll()
        hit = self.cache.get(host)
        now = rt.ms()
        if hit is not None:
            addrs, when = hit
            if addrs is not None:
                if now - when >= TTL_MS:
                    self._want(host)
                return list(addrs)
            if now - when < FAILED_MS:
                raise OSError(errno.EHOSTUNREACH, "cannot resolve " + host)
        self._want(host)
        if self.workdir is None:
            return self.addresses(host)  # it was looked up in-process just now
        return None

    def resolve(self, host):
        """host -> the first of its addresses (str), None while it is looked
        up; OSError as addresses() says."""
        addrs = self.addresses(host)
        return addrs[0] if addrs else None

    def addresses_now(self, host):
        """host -> its addresses, waiting for them (blocking clients only)."""
        addrs = self.addresses(host)
        while addrs is None:
            rt.sleep_ms(10)
            addrs = self.addresses(host)
        return addrs

    def resolve_now(self, host):
        """host -> its first address, waiting for it (blocking clients only)."""
        return self.addresses_now(host)[0]

    def prefer(self, host, addr):
        """addr (one of host's addresses) answered: it is tried first from
        now on, also after the name is looked up again while it has it (a
        dead address is not waited for at every call)."""
        hit = self.cache.get(host)
        if hit is not None and hit[0] and addr in hit[0] and hit[0][0] != addr:
            hit[0].remove(addr)
            hit[0].insert(0, addr)

    def busy(self):
        """True while any lookup runs or waits."""
        return bool(self.running or self.waiting)

    def poll_ms(self, host):
        """When to ask again about host, whose lookup runs (ms): soon while
        an answer is likely (a lookup takes milliseconds), then less often
        (a silent name server takes seconds). With the bell, the lookup's end
        wakes the waiting tasks: then a second (proc.poll_ms)."""
        b = self.running.get(host)
        if b is not None and b.started is not None and rt.ms() - b.started > QUICK_MS:
            return proc.poll_ms(100)
        return proc.poll_ms(10)

    def _want(self, host):
        if host in self.running or host in self.waiting:
            return
        if self.workdir is None:
            try:
                self._store(host, order("\n".join(rt.addresses(host)).encode()), "")
            except OSError as e:
                self._store(host, None, str(e))
            return
        self.waiting.append(host)
        self._start_waiting()

    def _start_waiting(self):
        while self.waiting and self.free:
            host = self.waiting.pop(0)
            n = self.free.pop(0)
            argv = rt.interpreter() + ["-c", CHILD, host]
            try:
                b = proc.Batch("%s/%d" % (self.workdir, n), "%s-%d" % (self.tag, n), LOOKUP_MS)
                b.start([" ".join(proc.shell_quote(a) for a in argv) + " > addr 2> err"])
            except OSError as e:  # cache_dir full or gone
                self.free.append(n)
                self._store(host, None, "cannot start a lookup: %s" % e)
                continue
            self.running[host] = b
            self.slot[host] = n

    def poll(self):
        """Collect the lookups that ended and start waiting ones."""
        for host in list(self.running):
            b = self.running[host]
            done = b.poll()
            if done is None:
                continue
            del self.running[host]
            self.free.append(self.slot.pop(host))
            addr = order(b.read("addr", 4096)) if done else None
            why = "no answer in %d s" % (LOOKUP_MS // 1000) if done is False else \
                _last_line(b.read("err", 4096)) or "no address"
            self._store(host, addr, why)
        self._start_waiting()

    def _store(self, host, addrs, why):
        old = self.cache.get(host)
        now = rt.ms()
        if addrs is not None:
            if old is not None and old[0] is None:
                log.info("dns: %s resolves again, to %s" % (host, ", ".join(addrs)))
            elif old is None or sorted(old[0]) != sorted(addrs):
                log.debug("dns: %s is %s" % (host, ", ".join(addrs)))
            if old is not None and old[0] and old[0][0] in addrs:
                addrs.remove(old[0][0])  # the one that answered last stays first
                addrs.insert(0, old[0][0])
            self.cache[host] = (addrs, now)
        elif old is not None and old[0] is not None:
            # Keep using the last good answer; look again in FAILED_MS.
            log.debug("dns: %s: %s; still using %s" % (host, why, ", ".join(old[0])))
            self.cache[host] = (old[0], now - TTL_MS + FAILED_MS)
        else:
            if old is None:  # the first failure of this name; repeats are not logged
                log.warn("dns: cannot resolve %s: %s" % (host, why))
            self.cache[host] = (None, now)


def _last_line(data):
    lines = [x for x in (data or b"").split(b"\n") if x.strip()]
    return text.utf8(lines[-1]).strip() if lines else ""


# The one cache the agent shares: setup() gives it a directory for the
# background lookups.
shared = Resolver()


def setup(workdir):
    """Background lookups from now on, their files under workdir."""
    shared.workdir = workdir


def resolve(host):
    """shared.resolve(host): an address, None while looking it up, OSError."""
    return shared.resolve(host)


def addresses(host):
    """shared.addresses(host): [address, ...], None while looking it up, OSError."""
    return shared.addresses(host)


def prefer(host, addr):
    """shared.prefer(host, addr): addr answered, it goes first."""
    shared.prefer(host, addr)


def poll_ms(host):
    """shared.poll_ms(host): when to ask again about a host being looked up."""
    return shared.poll_ms(host)


def resolve_now(host):
    """shared.resolve_now(host): an address, waiting for it; OSError."""
    return shared.resolve_now(host)
