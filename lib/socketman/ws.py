# A WebSocket client (RFC 6455) on the transport (conn.Conn), for tunnels
# (PROTOCOL 11): the opening handshake (a random key, the accept check
# where the runtime has SHA-1, the subprotocol), masked binary frames out,
# server frames in (wsframe.Parser: ping/pong, close with a status,
# fragmented messages, a cap on a frame's size), keepalive pings, the
# closing handshake. It knows nothing of tunnels or jobs (jobs/tunnel.py
# relays); names are looked up by the resolver start() is given, as
# http.Call does.
import binascii
import os

from . import rt, text, urls
from .conn import HANDSHAKE as TLS_HANDSHAKE
from .conn import Conn
from .http import USER_AGENT
from .wsframe import (
    ABNORMAL,
    BINARY,
    CLOSE,
    ERROR,
    MAX_FRAME,
    NO_STATUS,
    NORMAL,
    PING,
    PONG,
    SUBPROTOCOL,
    Parser,
    accept_for,
    close_payload,
    frame,
    split,
)

PING_MS = 30000        # a ping after this long without a byte from the server
DEAD_MS = 60000        # then given up after this long more without one
CLOSE_MS = 5000        # the server's answer to our close frame is awaited this long
MAX_HEAD = 8192        # bytes of the server's handshake answer


def _headers(head):
    """The lines of a response head (bytes) -> (status line str, {lowercase
    name: value str})."""
    lines = [x[:-1] if x.endswith(b"\r") else x for x in head.split(b"\n")]
    h = {}
    for line in lines[1:]:
        k, sep, v = line.partition(b":")
        if sep:
            h[text.utf8(k.strip()).lower()] = text.utf8(v.strip())
    return text.utf8(lines[0]), h


RESOLVING, CONNECTING, HANDSHAKE, OPEN, CLOSING, CLOSED = range(6)


class Client:
    """One WebSocket to url (ws:// or wss://; ValueError otherwise), with
    the (name, value) pairs of query added to its query, over TLS with ctx
    (an SSLContext, tls.context) for wss. start(), then the owner's loop
    drives it (wants(), step(), service()) until done(). Callbacks:

    on_open()       the server took the handshake (101): send() from now
    on_data(bytes)  a piece of a binary message from the server, in order
    on_drain()      everything queued was written (backpressure: go on)
    on_close()      it is over (once): .code and .reason (the close status
                    that ended it, sent or received), .error (None after a
                    closing handshake, else why it ended: str), .status (the
                    HTTP status of a refused handshake, else None)."""

    def __init__(self, url, query=(), ctx=None, protocol=SUBPROTOCOL, timeout_ms=10000,
                 max_frame=MAX_FRAME, ping_ms=PING_MS, dead_ms=DEAD_MS):
        secure, self.host, self.port, path = split(url)
        if secure and ctx is None:
            raise ValueError("a wss:// URL needs a TLS context")
        self.path = urls.add_query(path, list(query))
        self.ctx = ctx if secure else None
        self.protocol = protocol
        self.timeout_ms = timeout_ms
        self.ping_ms, self.dead_ms = ping_ms, dead_ms
        self.parser = Parser(max_frame)
        self.key = binascii.b2a_base64(os.urandom(16)).strip().decode()
        self.on_open = self.on_data = self.on_drain = self.on_close = None
        self.conn = None
        self.state = RESOLVING
        self.code, self.reason, self.error, self.status = ABNORMAL, "", None, None
        self.head = b""
        self.sent_close = self.got_close = False
        self.pinged = False
        self.quiet_since = 0   # agent ms from which the server's silence counts
        self.deadline = 0

    def start(self, resolver=None):
        """Look the host up (resolver: a dns.Resolver; None: the host is an
        address) and connect, to each of its addresses in turn until one
        answers (conn.Conn.open); returns self. A failure ends it
        (on_close)."""
        self.started = rt.ms()
        self.resolver = resolver
        self._connect()
        return self

    def _connect(self):
        try:
            addrs = [self.host] if self.resolver is None else self.resolver.addresses(self.host)
            if addrs is None:
                return  # looked up in the background: service() asks again
            c = self.conn = Conn(self.ctx, self.host)
            c.on_open, c.on_data, c.on_drain = self._opened, self._on_data, self._drained
            self.state = CONNECTING
            c.open(addrs, self.port, self.timeout_ms)
        except OSError as e:
            self._finish("connect to %s:%d: %s" % (self.host, self.port, e))

    # ---- what the owner calls -------------------------------------------

    def done(self):
        """True once it is over (on_close was called)."""
        return self.state == CLOSED

    def wants(self):
        """[(socket, poll mask)] to wait on now."""
        return [] if self.conn is None else self.conn.wants()

    def step(self, events=0):
        """Move on as far as it goes now (events: poll events seen for its
        socket). A failure of the connection ends it (on_close)."""
        if self.conn is None or self.state == CLOSED:
            return
        try:
            self.conn.step(events)
        except (OSError, ValueError) as e:
            self._lost(e)
        self._settle()

    def service(self):
        """Deadlines (the handshake's, keepalive pings, the closing
        handshake's); ms until it should be looked at again."""
        now = rt.ms()
        if self.state == CLOSED:
            return 60000
        if self.state < OPEN:
            if self.state == CONNECTING:
                try:
                    self.conn.service()  # an address that does not answer: the next one
                except OSError as e:
                    self._finish("connect to %s:%d: %s" % (self.host, self.port, e))
                    return 60000
            # Each address gets the whole deadline once it is tried.
            left = self.timeout_ms - (now - max(self.started, self.conn.started if self.conn else 0))
            if left < 0:
                what = ("name lookup", "connect", "answer to the handshake")[self.state]
                self._finish("no %s from %s in %d s" % (what, self.host, self.timeout_ms // 1000))
                return 60000
            if self.state == RESOLVING:
                self._connect()
                return max(1, min(left, self.resolver.poll_ms(self.host)))
            return left + 1
        if self.state == CLOSING:
            self._settle()
            if self.state == CLOSING and now >= self.deadline:
                self._finish(self.error or "no answer to the close frame in %d s" % (CLOSE_MS // 1000))
            return 60000 if self.state == CLOSED else max(1, self.deadline - now)
        if self.conn.paused:
            return 60000  # the owner holds the reads: the server's silence is ours
        quiet = now - max(self.conn.last_rx, self.quiet_since)
        if quiet >= self.ping_ms + self.dead_ms:
            self._finish("no frame from the server for %d s" % (quiet // 1000))
            return 60000
        if quiet >= self.ping_ms and not self.pinged:
            self.pinged = True
            self._send(frame(PING, b"socketman"))
        return max(1, (self.ping_ms + self.dead_ms if self.pinged else self.ping_ms) - quiet)

    def send(self, data):
        """Queue data (bytes-like, at most the server's frame cap) as one
        masked binary frame. False when the WebSocket is not open (the data
        is dropped)."""
        if self.state != OPEN:
            return False
        self._send(frame(BINARY, data))
        return True

    def close(self, code=NORMAL, reason=""):
        """Start the closing handshake: a close frame with code and reason
        after whatever is queued; over when the server answers (or after
        CLOSE_MS). Before the WebSocket is open: over at once."""
        if self.state < OPEN:
            self.code, self.reason = code, reason
            self._finish("closed before the handshake ended")
        elif self.state == OPEN:
            self.code, self.reason = code, reason
            self._start_close(code, reason)

    def pending(self):
        """Bytes queued and not written yet."""
        return 0 if self.conn is None else self.conn.pending()

    def pause(self):
        """Read nothing more until resume() (the owner cannot take more)."""
        if self.conn is not None:
            self.conn.pause()

    def resume(self):
        """Read again; what is already there comes at once (on_data)."""
        if self.conn is not None and self.conn.paused and self.state != CLOSED:
            self.quiet_since = rt.ms()  # the silence while paused was ours
            try:
                self.conn.resume()
            except (OSError, ValueError) as e:
                self._lost(e)
            self._settle()

    def paused(self):
        """True while the owner holds the reads."""
        return self.conn is not None and self.conn.paused

    # ---- inside ---------------------------------------------------------

    def _send(self, data):
        try:
            self.conn.write(data)
        except (OSError, ValueError) as e:
            self._lost(e)

    def _opened(self):
        if self.resolver is not None:
            self.resolver.prefer(self.host, self.conn.addr)  # it answered: first next time
        self.state = HANDSHAKE
        q = "%s %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" \
            "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: %s\r\n" \
            "User-Agent: %s\r\n\r\n" % ("GET", self.path, self._host_header(), self.key, self.protocol, USER_AGENT)
        self.conn.write(q.encode())

    def _host_header(self):
        host = "[%s]" % self.host if ":" in self.host else self.host
        return host if self.port == (443 if self.ctx is not None else 80) else "%s:%d" % (host, self.port)

    def _drained(self):
        if self.on_drain is not None and self.state == OPEN:
            self.on_drain()

    def _on_data(self, data):
        if not data:
            if self.state == HANDSHAKE:
                self._finish("the server closed the connection during the handshake")
            elif not self.got_close:
                self._finish(self.error or "the server closed the connection without a close frame")
            else:
                self._finish(self.error)
            return
        if self.state == HANDSHAKE:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            end = (end, end + 4) if end >= 0 else (self.head.find(b"\n\n"), self.head.find(b"\n\n") + 2)
            if end[0] < 0:
                if len(self.head) > MAX_HEAD:
                    self._finish("a handshake answer over %d bytes" % MAX_HEAD)
                return
            rest = self.head[end[1]:]
            why = self._check_answer(self.head[:end[0]])
            self.head = b""
            if why:
                self._finish(why)
                return
            self.state = OPEN
            self.quiet_since = rt.ms()
            if self.on_open is not None:
                self.on_open()
            data = rest
            if not data or self.state != OPEN:
                return
        if self.state in (OPEN, CLOSING) and not self.got_close:
            self._frames(data)

    def _check_answer(self, head):
        line, h = _headers(head)
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            return "not an HTTP answer to the handshake: %r" % line[:80]
        status = int(parts[1])
        if status != 101:
            self.status = status
            return "the server answered %s" % " ".join(parts[1:])
        if h.get("upgrade", "").lower() != "websocket" or \
                "upgrade" not in [t.strip() for t in h.get("connection", "").lower().split(",")]:
            return "a 101 answer without Upgrade: websocket"
        want = accept_for(self.key)
        if want is not None and h.get("sec-websocket-accept") != want:
            return "a wrong Sec-WebSocket-Accept"
        if h.get("sec-websocket-protocol") != self.protocol:
            return "the server did not take the subprotocol %s" % self.protocol
        if h.get("sec-websocket-extensions"):
            return "the server chose an extension nobody asked for"
        return None

    def _judged(self, error):
        # The handshake ended before its answer did (a reset, a deadline, a
        # head too large): a status line that came still says what the
        # server did, as for every HTTP answer (CHOICES).
        end = self.head.find(b"\n")
        if end < 0:
            return error
        parts = text.utf8(self.head[:end].rstrip(b"\r")).split(None, 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit() or parts[1] == "101":
            return error
        self.status = int(parts[1])
        return "the server answered %s (then: %s)" % (" ".join(parts[1:]), error)

    def _frames(self, data):
        for op, v in self.parser.feed(data):
            if op == BINARY:
                if self.state == OPEN and self.on_data is not None:
                    self.on_data(v)
            elif op == PING:
                if self.state == OPEN:
                    self._send(frame(PONG, v))
            elif op == CLOSE:
                self.got_close = True
                if not self.sent_close:
                    self.code, self.reason = v
                    # Answered with the same status (RFC 6455 section 5.5.1).
                    self._start_close(NORMAL if v[0] == NO_STATUS else v[0], "")
                return
            elif op == ERROR:
                self.error = "the server sent %s" % v.why
                self.code, self.reason = v.code, v.why
                self._start_close(v.code, v.why)
                self.got_close = True  # nothing more is read; over once that is written
                return
            if self.state == CLOSED:
                return

    def _start_close(self, code, reason):
        if not self.sent_close:
            self.sent_close = True
            self._send(frame(CLOSE, close_payload(code, reason)))
        if self.state != CLOSED:
            self.state = CLOSING
            self.deadline = rt.ms() + CLOSE_MS

    def _settle(self):
        # Both close frames went (or ours after a bad frame): over once ours is written.
        if self.state == CLOSING and self.got_close and self.sent_close and self.conn is not None \
                and not self.conn.pending():
            self._finish(self.error)

    def _lost(self, e):
        e = str(e)
        if self.conn is not None and self.conn.tls is not None and self.conn.state == TLS_HANDSHAKE:
            from .tls import tls_note  # loaded already: it made the context
            e = tls_note(e)  # say so when it was our certificate, or the server's chain
        self._finish(self.error or "connection to %s lost: %s" % (self.host, e))

    def _finish(self, error):
        if self.state == CLOSED:
            return
        if self.state == HANDSHAKE and error is not None and self.status is None:
            error = self._judged(error)
        self.error = error
        if error is not None and not self.got_close and self.code == NORMAL:
            self.code = ABNORMAL
        self.state = CLOSED
        if self.conn is not None:
            self.conn.close()
        if self.on_close is not None:
            self.on_close()
