# What differs between CPython and MicroPython, and nothing else: the clock,
# the heap and sockets. Every other module calls these helpers and behaves
# the same on both runtimes (files: fs.py; processes: proc.py; TLS:
# tls.py). It imports nothing of the package: every module may import it.
import errno
import json
import os
import select
import socket
import sys
import time

MPY = sys.implementation.name == "micropython"
# What a non-blocking socket says when it cannot go on yet (EWOULDBLOCK is
# EAGAIN on Linux; MicroPython has no name for it).
BUSY = (errno.EAGAIN, getattr(errno, "EWOULDBLOCK", errno.EAGAIN), errno.EINPROGRESS)

# A clock the tests can drive: SOCKETMAN_TIME_SCALE=N makes every interval
# and deadline of the agent pass N times faster. 1 (the default) is real time.
try:
    SCALE = max(1, int(os.getenv("SOCKETMAN_TIME_SCALE") or 1))
except ValueError:
    SCALE = 1
# A wall clock the tests can set wrong: SOCKETMAN_CLOCK_OFFSET=S adds S
# seconds (negative: back in time) to now(), e.g. a router whose clock is
# still in 1970 (PROTOCOL 9). 0 (the default) is the machine's clock.
try:
    CLOCK_OFFSET = int(os.getenv("SOCKETMAN_CLOCK_OFFSET") or 0)
except ValueError:
    CLOCK_OFFSET = 0

if MPY:
    _ticks = time.ticks_ms
    _tdiff = time.ticks_diff
    def _sleep_ms(ms):
        # time.sleep_ms of the unix port wakes every half millisecond to
        # run its event hook (800 system calls for 0.5 s); time.sleep is one.
        time.sleep(ms / 1000)
else:
    def _ticks():
        return int(time.monotonic() * 1000)

    def _tdiff(a, b):
        return a - b

    def _sleep_ms(ms):
        time.sleep(ms / 1000)

# MicroPython's ticks wrap after days; fold them into a counter that does not,
# so callers can subtract plain ints. ms() must run at least every few days,
# which the loop does.
_last = _ticks()
_mono = 0


def ms():
    """The agent's clock: milliseconds (int) since some start, never wrapping,
    SOCKETMAN_TIME_SCALE times faster than real time."""
    global _last, _mono
    t = _ticks()
    _mono += _tdiff(t, _last)
    _last = t
    return _mono * SCALE


if MPY:
    def dumps(obj):
        """obj as compact JSON text. Non-ASCII stays as it is: MicroPython's
        json never escapes it."""
        return json.dumps(obj, separators=(",", ":"))
else:
    def dumps(obj):
        """obj as compact JSON text, non-ASCII unescaped as MicroPython
        writes it: one size on both runtimes (escaped, U+FFFD took 6 bytes)."""
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def now():
    """Unix time in whole seconds (real time, also under a test clock; plus
    SOCKETMAN_CLOCK_OFFSET)."""
    return int(time.time()) + CLOCK_OFFSET


def real_ms(agent_ms):
    """Agent milliseconds -> real milliseconds to wait."""
    return max(0, int(agent_ms) // SCALE)


def sleep_ms(agent_ms):
    """Sleep agent_ms of the agent's clock. The loop never sleeps but
    after running out of memory (a pause before it tries again)."""
    _sleep_ms(real_ms(agent_ms))


def seed_random():
    """Seed random from os.urandom: MicroPython starts every process with the
    same sequence, and jitter must differ between devices."""
    import random
    b = os.urandom(4)
    random.seed(b[0] | b[1] << 8 | b[2] << 16 | b[3] << 24)


def random_hex(nbytes):
    """nbytes random bytes from os.urandom, as lowercase hex."""
    import binascii
    return binascii.hexlify(os.urandom(nbytes)).decode()


def after_interrupt():
    """MicroPython can raise KeyboardInterrupt from inside a garbage
    collection, which then leaves the heap locked: every allocation after it
    fails. Unlock it, so the clean stop can run."""
    if MPY:
        import micropython
        micropython.heap_lock()
        depth = micropython.heap_unlock()
        while depth > 0:
            depth = micropython.heap_unlock()


def on_sigterm():
    """SIGTERM (what procd and most supervisors send) is the clean stop, as
    Ctrl-C is (PROTOCOL 2): CPython raises KeyboardInterrupt for it.
    MicroPython has no signal module: its launcher turns SIGTERM into
    SIGINT."""
    if not MPY:
        import signal

        def _stop(signum, frame):
            raise KeyboardInterrupt
        signal.signal(signal.SIGTERM, _stop)
        # Started with & from a script, a process inherits SIGINT ignored:
        # Ctrl-C (or kill -INT) must still stop it cleanly.
        signal.signal(signal.SIGINT, signal.default_int_handler)


def tune_heap():
    """MicroPython: collect early (every 32 KiB allocated) to keep pauses short."""
    import gc
    if MPY:
        # Collect before the heap fills up: keeps pauses short on a router.
        gc.threshold(32 * 1024)
    gc.collect()


def heap_used():
    """MicroPython: bytes of the heap in use after a collection (what a
    version switch in the process must give back); None on CPython."""
    if not MPY:
        return None
    import gc
    gc.collect()
    return gc.mem_alloc()


def format_exc(e):
    """The traceback of e as text."""
    import io
    buf = io.StringIO()
    if MPY:
        sys.print_exception(e, buf)
    else:
        import traceback
        traceback.print_exception(type(e), e, e.__traceback__, file=buf)
    return buf.getvalue()


# ---- sockets -----------------------------------------------------------

AI_NUMERICHOST = 4  # the same on glibc and musl; MicroPython has no name for it


def resolve(host, port, kind=None, flags=0):
    """First address of host:port as (family, sockaddr); raises OSError. A
    blocking getaddrinfo: the agent passes only addresses here (dns.py looks
    names up); with flags=AI_NUMERICHOST a name is refused, never looked up."""
    ai = socket.getaddrinfo(host, port, 0, kind or socket.SOCK_STREAM, 0, flags)
    if not ai:
        raise OSError(errno.EHOSTUNREACH, "cannot resolve " + host)
    # Prefer IPv4 the way most OpenWRT uplinks are set up.
    ai.sort(key=lambda a: a[0] != socket.AF_INET)
    return ai[0][0], ai[0][-1]


def addresses(host):
    """Every address of host as text ('192.0.2.1', '::1'), in getaddrinfo's
    order. Blocks for as long as the name servers take: dns.py runs this in
    the loop only where blocking is fine (tools, tests), else in a child
    process (dns.CHILD does the same)."""
    out = []
    try:
        ai = socket.getaddrinfo(host, 80, 0, socket.SOCK_STREAM)
    except UnicodeError as e:  # CPython: a label too long for IDNA
        raise OSError(errno.EINVAL, str(e))
    for a in ai:
        s = a[-1]
        out.append(socket.inet_ntop(a[0], socket.sockaddr(s)[1]) if MPY else s[0])
    return out


def interpreter():
    """argv prefix that starts this runtime again (dns.py's lookups): the
    running executable, isolated and without site on CPython (faster).
    SOCKETMAN_INTERPRETER (words) replaces it: a test hook for a program run
    under qemu-user, whose own executable the kernel cannot start."""
    given = os.getenv("SOCKETMAN_INTERPRETER")
    if given:
        return given.split()
    exe = sys.executable or ("micropython" if MPY else "python3")
    return [exe] if MPY else [exe, "-I", "-S"]


def tcp_start(addr, port):
    """A non-blocking TCP socket whose connect to addr:port is under way.
    addr is an IP address (dns.resolve gives one for a name); OSError for a
    name, which is never looked up here."""
    fam, sa = resolve(addr, port, flags=AI_NUMERICHOST)
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        s.setsockopt(6, 1, 1)  # IPPROTO_TCP, TCP_NODELAY: one packet, one segment
    except (OSError, AttributeError):
        pass
    try:
        s.connect(sa)
    except OSError as e:
        if e.errno not in BUSY:
            s.close()
            raise
    return s


def quickack(sock):
    """Ack what was just read at once (Linux TCP_QUICKACK, which the kernel
    clears again by itself). Without it a broker that leaves Nagle on holds
    its next packet until our delayed ACK, 40 ms later."""
    try:
        sock.setsockopt(6, 12, 1)
    except (OSError, AttributeError):
        pass


_EINTR = getattr(errno, "EINTR", 4)  # MicroPython 1.23's errno has no EINTR
POLLIN = select.POLLIN
POLLOUT = select.POLLOUT
POLLERR = select.POLLERR | select.POLLHUP


class Poller:
    """select.poll that answers with the registered objects on both
    runtimes, kept from one wait to the next and changed in place."""

    def __init__(self):
        self.p = select.poll()
        self.fds = {}  # CPython: fd -> object (a closed socket forgets its fd)

    def register(self, obj, mask):
        """Watch obj (a socket or file) for the events in mask (POLLIN,
        POLLOUT); again for a registered obj: the new mask."""
        self.p.register(obj, mask)
        if not MPY:
            self.fds[obj.fileno()] = obj

    def modify(self, obj, mask):
        """Watch the registered obj for mask instead."""
        if MPY:
            self.p.modify(obj, mask)
        else:
            self.p.modify(self._fd(obj), mask)

    def unregister(self, obj):
        """Stop watching obj, even when it was closed meanwhile."""
        if MPY:
            self.p.unregister(obj)
            return
        fd = self._fd(obj)
        if fd is not None:
            del self.fds[fd]
            self.p.unregister(fd)

    def _fd(self, obj):
        for fd, o in self.fds.items():
            if o is obj:
                return fd
        return None

    def poll(self, agent_ms):
        """Wait up to agent_ms: [(registered object, events)]; [] on EINTR."""
        try:
            evs = self.p.poll(real_ms(agent_ms))
        except OSError as e:
            if e.errno == _EINTR:  # a signal, e.g. the Ctrl-C being handled
                return []
            raise
        if MPY:
            return [(e[0], e[1]) for e in evs]
        return [(self.fds[e[0]], e[1]) for e in evs]


def wait_io(sock, mask, agent_ms):
    """Block up to agent_ms for sock to become ready: the events, 0 if none."""
    p = Poller()
    p.register(sock, mask)
    evs = p.poll(agent_ms)
    return evs[0][1] if evs else 0


def connected(sock, events=0):
    """For a socket from tcp_start, given the poll events seen for it: True
    when connected, None while pending; raises OSError when it failed."""
    ev = events or wait_io(sock, POLLOUT, 0)
    if ev & POLLERR:
        raise OSError(errno.ECONNREFUSED, "connect failed")
    return True if ev & POLLOUT else None


if MPY:
    def recv(sock, n):
        """Up to n bytes; b'' at EOF; None when nothing is there yet. One
        read where the socket has recv(): MicroPython's read(n) reads again
        until it has n bytes, and when that second read fails (the peer's
        reset) it raises and drops what the first one got, the answer a
        server sent before resetting. Its 1.23 TLS sockets have only
        read(): under them tlsstream.TLSStream holds such an error back."""
        try:
            one = getattr(sock, "recv", None)  # sockets; TLS sockets from 1.28 on
            return sock.read(n) if one is None else one(n)
        except OSError as e:
            if e.errno in BUSY:
                return None
            raise
        except ValueError as e:  # mbedtls reports TLS failures this way
            raise OSError(errno.EIO, str(e).strip())

    def send(sock, data):
        """Bytes written (0 when the socket cannot take any now)."""
        try:
            n = sock.write(data)
        except OSError as e:
            if e.errno in BUSY:
                return 0
            raise
        except ValueError as e:
            raise OSError(errno.EIO, str(e).strip())
        return n or 0

    def unix_addr(path):
        import struct
        return struct.pack("H", socket.AF_UNIX) + path.encode() + b"\0"
else:
    import ssl as _ssl
    _WANT = (BlockingIOError, InterruptedError, _ssl.SSLWantReadError,
             _ssl.SSLWantWriteError)

    def recv(sock, n):
        try:
            return sock.recv(n)
        except _WANT:
            return None

    def send(sock, data):
        try:
            return sock.send(data)
        except _WANT:
            return 0

    def unix_addr(path):
        return path


def close(sock):
    """Close sock if it is not None, ignoring errors."""
    if sock is not None:
        try:
            sock.close()
        except OSError:
            pass
