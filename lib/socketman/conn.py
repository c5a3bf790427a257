# The transport under every client (MQTT, HTTP, tunnels): one TCP
# connection to an address, TLS optional, that the loop drives without
# ever blocking. It owns what a non-blocking TLS socket asks of its user:
# - the handshake runs inside reads and writes, and may end inside a read
#   (a slow CPU finishes it there, a fast one in the write before): what
#   waited for it is written at once, as nothing else would wake us for it;
# - while the handshake waits for the server only POLLIN is asked for: the
#   TCP socket is writable all along, and POLLOUT would spin the loop;
# - a write that could not go on is retried with the very same chunk (TLS
#   requires it; CPython's ssl lets the buffer move, not change);
# - reads are bounded (read_size bytes each, none while paused), and the
#   times of the last byte each way are kept for keepalives and deadlines;
# - what the server said comes before a write that may fail on its reset:
#   a server that answers early (a 413 or 401 to an upload) and resets
#   makes the next write fail, and its answer is in the receive buffer.
#   So a step that sees input reads before it writes, and a failed write
#   is followed by a read of what is there before its error goes on (on
#   MicroPython's TLS through tlsstream.py, as that TLS reads nothing more
#   once a write failed);
# - MicroPython's TLS socket has no file descriptor, and poll() looks at
#   such an object every half millisecond: the TCP socket under it is
#   polled instead (what TLS decrypted is always read to the end, or read
#   at resume(), so no poll is needed for it);
# - a name has addresses: each is tried in turn until one connects, the
#   next one after a refusal at once, or after ATTEMPT_MS while more wait
#   (Happy Eyeballs made sequential: one socket at a time, a short wait
#   for an address that does not answer; the last one gets the whole
#   deadline). A failure after the connect says something of the server
#   and is not retried elsewhere.
# The protocol on top (mqtt.py, http.py) says what to write and what a
# byte read means; this module knows nothing of either. TLS contexts come
# from tls.py; this module never imports it, so plain TCP loads no TLS.
import errno

from . import rt

CLOSED, CONNECTING, HANDSHAKE, OPEN = 0, 1, 2, 3
READ_SIZE = 4096
JOIN_MAX = 1024  # bytes: queued chunks up to this size go out in one write
ATTEMPT_MS = 3000  # an address of several gets this long (at most half the deadline) to connect


class Conn:
    """One TCP connection, TLS when tls is an SSLContext (tls.context);
    host: the name the server's certificate must carry (SNI and
    verification), unused for plain TCP. The owner sets the callbacks:

    on_open()       TCP is connected (and TLS wrapped): write the first
                    bytes now. Runs again after each open().
    on_data(data)   bytes read (at most read_size), in order; b"" once, when
                    the peer closed its side (nothing is read after that).
    on_drain()      everything queued has been written (after a write):
                    queue more, or stop waiting for the peer to take it.

    state: CLOSED, CONNECTING (TCP), HANDSHAKE (TLS: until the first byte
    goes either way), OPEN. last_rx, last_tx: agent ms (rt.ms) of the last
    byte read, written; last_io: of the last progress of any kind (connect,
    read, write). addr: the address being tried or connected. Errors:
    step(), flush(), write(), resume() and service() raise OSError (or
    ValueError from a TLS library) when the connection failed (at every
    address open() was given), and pass on whatever a callback raises; the
    owner then close()s it, or open()s it again."""

    def __init__(self, tls=None, host=None, read_size=READ_SIZE):
        self.tls = tls
        self.host = host
        self.read_size = read_size
        self.on_open = self.on_data = self.on_drain = None
        self.sock = self.raw = None  # raw: the TCP socket under TLS
        self.stream = None  # MicroPython TLS: the tlsstream.TLSStream between TLS and raw
        self.state = CLOSED
        self.started = self.timeout_ms = self.port = 0
        self.addr = None
        self.addrs = []    # addresses still to try
        self.tried = []    # "address: why" of those that failed
        self.last_rx = self.last_tx = self.last_io = 0
        self._clear()

    def _clear(self):
        self.outq = []       # chunks waiting to be written, as given (not copied)
        self.cur = b""       # the chunk being written: retried unchanged
        self.paused = False  # the owner's buffer is full: no reads
        self.eof = False     # the peer closed its side
        self.flushing = False

    # ---- opening and closing ------------------------------------------

    def open(self, addr, port, timeout_ms=10000):
        """Start connecting to addr on port: an IP address (str), or a list
        of them (a name's, dns.addresses: names are looked up by the owner)
        tried in turn, each until it fails or for ATTEMPT_MS (at most half
        of timeout_ms) while more wait, the last for timeout_ms (service()).
        Whatever a previous connection left queued is dropped. OSError when
        it fails at once at every address (a name, no route)."""
        self.close()
        self._clear()
        self.addrs = [addr] if isinstance(addr, str) else list(addr)
        self.port = port
        self.timeout_ms = timeout_ms
        self.tried = []
        self._next(None)

    def _next(self, err):
        # Connect to the next address (err: why the current one failed);
        # OSError when none is left, naming each address tried.
        if err is not None:
            self.tried.append("%s: %s" % (self.addr, err))
            rt.close(self.sock)
            self.sock = self.raw = None
            self.state = CLOSED
        while self.addrs:
            self.addr = self.addrs.pop(0)
            self.started = self.last_io = rt.ms()
            try:
                self.sock = self.raw = rt.tcp_start(self.addr, self.port)
                self.state = CONNECTING
                return
            except OSError as e:
                err = e
                self.tried.append("%s: %s" % (self.addr, e))
        if err is None:
            err = OSError(errno.EHOSTUNREACH, "no address to connect to")
        if len(self.tried) > 1:
            raise OSError(getattr(err, "errno", 0) or errno.EHOSTUNREACH,
                          "no address answered (%s)" % "; ".join(self.tried))
        raise err

    def close(self):
        """Close the socket (none: nothing to do) and drop what is queued."""
        rt.close(self.sock)
        if self.raw is not self.sock:
            # MicroPython's TLS socket, closed after a failed handshake, leaves
            # the TCP socket under it open: one file and one server connection
            # lost at each try.
            rt.close(self.raw)
        self.sock = self.raw = self.stream = None
        self.state = CLOSED
        self.outq = []
        self.cur = b""

    # ---- what the loop calls (through the owner) -----------------------

    @property
    def polled(self):
        """The socket to poll (wants() names it): sock, or under
        MicroPython's TLS the TCP socket under it (see the top)."""
        return self.raw if self.stream is not None else self.sock

    def wants(self):
        """[(socket, poll mask)] to wait on now; [] when closed, or paused
        with nothing to write."""
        if self.sock is None:
            return []
        if self.state == CONNECTING:
            return [(self.polled, rt.POLLOUT)]
        if self.state == HANDSHAKE:
            return [(self.polled, rt.POLLIN)]  # the server's answer moves it on
        mask = 0 if self.paused or self.eof else rt.POLLIN
        if self.cur or self.outq:
            mask |= rt.POLLOUT
        return [(self.polled, mask)] if mask else []

    def step(self, events=0):
        """Move on as far as possible without waiting, given the poll
        events seen for the socket (0: none seen, just try): finish the
        connect (on_open), write what is queued, read (on_data)."""
        if self.state == CONNECTING:
            try:
                if not rt.connected(self.sock, events):
                    return
            except OSError as e:
                self._next(e)  # refused: the next address at once
                return
            self._connected()
        if self.state < HANDSHAKE:
            return
        # Input first: an answer that came with a reset after it is read
        # before a write fails on that reset.
        if events & (rt.POLLIN | rt.POLLERR):
            self._read()
        self.flush()
        self._read()
        # A TLS handshake can end inside that read: what waited for it,
        # the owner's first bytes, goes now. Nothing else would wake us.
        if self.state >= HANDSHAKE and (self.cur or self.outq):
            self.flush()

    def service(self):
        """The open() deadlines: ms until the next (60000 once open or
        closed); the next address once one took too long; OSError
        ETIMEDOUT once the last passed with the connection not open."""
        if self.state not in (CONNECTING, HANDSHAKE):
            return 60000
        limit = self.timeout_ms
        if self.state == CONNECTING and self.addrs:
            limit = min(ATTEMPT_MS, self.timeout_ms // 2)
        left = limit - (rt.ms() - self.started)
        if left < 0:
            err = OSError(errno.ETIMEDOUT, "connect timed out")
            if self.state != CONNECTING:
                raise err
            self._next(err)
            return self.service()
        return left + 1

    # ---- writing ---------------------------------------------------------

    def write(self, data):
        """queue(data), then flush(): written as far as the socket takes it
        now. Before the connection is open it waits in the queue; from
        inside on_drain it goes when the write under way goes on."""
        self.queue(data)
        self.flush()

    def queue(self, data):
        """Queue data (bytes, bytearray or memoryview, kept as it is: leave
        it unchanged until written) for the next flush(), which joins small
        chunks into one write."""
        if len(data):
            self.outq.append(data)

    def pending(self):
        """Bytes queued and not written yet (backpressure: stop feeding a
        connection whose pending() stays high, go on at on_drain)."""
        n = len(self.cur)
        for c in self.outq:
            n += len(c)
        return n

    def flush(self):
        """Write what is queued as far as the socket takes it now; calls
        on_drain() when all of it is written."""
        if self.state < HANDSHAKE or self.flushing:
            return
        self.flushing = True  # writes from on_drain only queue: this loop sends them
        try:
            self._flush()
        finally:
            self.flushing = False

    def _flush(self):
        wrote = False
        while self.sock is not None:
            if not self.cur:
                q = self.outq
                if not q:
                    if not wrote or self.on_drain is None:
                        return
                    wrote = False
                    self.on_drain()
                    continue
                # Small chunks go out in one write (no Nagle stalls); a big
                # one alone and through a view, never copied on a router's heap.
                if len(q) == 1 or max(len(c) for c in q) > JOIN_MAX:
                    self.cur = memoryview(q.pop(0))
                else:
                    self.cur, self.outq = b"".join(q), []
            try:
                n = rt.send(self.sock, self.cur)
                if not n and self.stream is not None and self.stream.err is not None:
                    raise self.stream.err  # held back by TLSStream: read first
            except (OSError, ValueError) as e:
                self._after_failed_write()
                raise e
            if not n:
                return
            wrote = True
            self.state = OPEN
            self.last_tx = self.last_io = rt.ms()
            self.cur = self.cur[n:]

    def drain(self, max_ms):
        """Block up to max_ms until everything queued is written: a clean
        stop's last words (MQTT DISCONNECT). True when all went."""
        end = rt.ms() + max_ms
        while self.sock is not None and self.pending():
            self.flush()
            if not self.pending() or rt.ms() >= end:
                break
            rt.wait_io(self.polled, rt.POLLOUT, 50)
        return not self.pending()

    # ---- reading ---------------------------------------------------------

    def pause(self):
        """Read nothing more until resume() (no POLLIN is asked for): the
        owner cannot take more now. Writes go on."""
        self.paused = True

    def resume(self):
        """Read again, starting at once: bytes the TLS layer has already
        decrypted wake no poll, so they are read (on_data) here."""
        if self.paused:
            self.paused = False
            if self.state == OPEN:
                self._read()

    def _after_failed_write(self):
        # The kernel keeps what arrived before a reset, and a read after the
        # failed write still gets it (plain TCP on both runtimes, CPython's
        # TLS): the server's answer goes to the owner before the write's
        # error does. A read that fails too says nothing new.
        if self.state == OPEN and not self.paused:
            try:
                self._read()
            except (OSError, ValueError):
                pass

    def _read(self):
        # During the handshake the read is what moves it on: done even
        # while paused (what it may bring goes to the owner all the same).
        while self.state >= HANDSHAKE and not self.eof and (not self.paused or self.state == HANDSHAKE):
            data = rt.recv(self.sock, self.read_size)
            if data is None:
                return
            self.state = OPEN
            self.last_rx = self.last_io = rt.ms()
            if data:
                rt.quickack(self.raw)
            else:
                self.eof = True
            self.on_data(data)

    def _connected(self):
        if self.tls is not None:
            under = self.raw
            if rt.MPY:
                from .tlsstream import TLSStream  # loaded by the first TLS connection
                under = self.stream = TLSStream(self.raw)
            self.sock = self.tls.wrap_socket(under, server_hostname=self.host,
                                             do_handshake_on_connect=False)
            self.state = HANDSHAKE
        else:
            self.state = OPEN
        self.last_io = rt.ms()
        if self.on_open is not None:
            self.on_open()
