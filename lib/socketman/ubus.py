# ubus over its socket (PROTOCOL 12): one non-blocking connection to ubusd
# that looks objects up, calls their methods and serves objects of its own,
# for MicroPython's unix port and CPython alike. Written from the wire
# format libubus documents in ubusmsg.h, not from its code.
#
# The wire format is in ubusmsg.py. ubusd says HELLO first. LOOKUP finds
# objects by path (a trailing * matches a prefix), INVOKE calls a method:
# the answers are DATA messages, then one STATUS, all with the request's
# sequence number. ubusd hands a call to one of our objects to us as an
# INVOKE; we answer DATA + STATUS with its sequence number and peer.
#
# Every call has a deadline. A malformed or oversize answer ends that call
# with BAD; a header that cannot be framed, a message cut off, ubusd closing
# or not saying HELLO closes the connection, ends every call under way with
# DOWN, and the connection is made again later (with back-off), objects
# registered again. This module carries no agent policy: what a failure
# means is for the caller.
import socket

from . import blobmsg, log, rt
from . import ubusmsg as w

OK, METHOD_NOT_FOUND = w.OK, w.METHOD_NOT_FOUND  # for callers: ubusmsg has the rest
# How a call can end besides a status from the bus (never on the wire).
NO_OBJECT = -1   # no object has that path
DOWN = -2        # not connected, the connection was lost, or no answer before the deadline
BAD = -3         # the answer was malformed, or larger than MAX_MSG

# Deadlines for ubusd and the daemons behind it to answer are real time,
# also under the test clock (rt.SCALE): it cannot make them answer faster.
CALL_MS = 1000         # default deadline of a call
MAX_MSG = 262144       # largest message kept (the same cap as a command's output)
MAX_OUT = 65536        # unsent bytes beyond this: ubusd is not reading, start again
HELLO_MS = 1000        # from connect to HELLO
PARTIAL_MS = 2000      # a message begun and not finished for this long: the stream is broken
STABLE_MS = 10000      # a connection that lived this long starts the back-off again
RETRY_MIN_MS, RETRY_MAX_MS = 500, 15000
IDLE_MS = 60000        # connected with nothing to do: the socket wakes us, not a timer
READS_PER_STEP = 16    # then the loop runs others; poll says there is more


class _Req:
    """A request under way: kind (a message type), deadline (agent ms), done(status, req, from_bus)."""

    def __init__(self, kind, deadline, done):
        self.kind = kind
        self.deadline = deadline
        self.done = done
        self.found = []    # LOOKUP: (path, id); ADD_OBJECT: id
        self.data = None   # INVOKE: the first DATA's table


class Client:
    """ubus client on the socket at path. The loop drives it: wants() and
    step(events) for the socket, tick() as a task (connect, deadlines,
    reconnect); wake(in_ms), set by the wiring, runs tick() sooner. Calls
    answer through done(status, data): status OK (0) or a ubus status from the
    object, or NO_OBJECT, DOWN, BAD (above); data a dict (or None)."""

    def __init__(self, path):
        self.path = path
        self.sock = None
        self.hello = False
        self.opened = 0          # agent ms of the connect
        self.framer = w.Framer(MAX_MSG)
        self.out = bytearray()
        self.partial = None      # agent ms since a message began arriving and is not whole
        self.seq = 0
        self.pending = {}        # sequence number -> _Req
        self.ids = {}            # path -> object id, found by LOOKUP
        self.objects = []        # [name, {method: handler}, id or None, ms of the next try, failure said]
        self.next_try = 0        # agent ms of the next connect
        self.retry_ms = RETRY_MIN_MS
        self.said_down = False   # the failure to connect was logged
        self.wake = None
        self.served = 0          # calls of our objects answered (bench figures)

    # ---- what the agent calls --------------------------------------------

    def up(self):
        """True while connected (HELLO seen)."""
        return self.hello

    def call(self, path, method, args, done, timeout_ms=CALL_MS):
        """Call method of the object at path with args (a dict, or None);
        done(status, data) once, perhaps before this returns (DOWN when not
        connected). The object's id is kept from the first LOOKUP; when
        ubusd no longer knows it (the daemon restarted), one more LOOKUP."""
        if self.sock is None:
            done(DOWN, None)
            return
        try:
            payload = blobmsg.encode(args or {})
        except ValueError:
            done(w.INVALID_ARGUMENT, None)
            return
        deadline = rt.ms() + timeout_ms * rt.SCALE
        oid = self.ids.get(path)
        if oid is None:
            self._find(path, method, payload, done, deadline)
        else:
            self._invoke(path, oid, method, payload, done, deadline, True)

    def add_object(self, name, methods):
        """Serve the object name with methods {method name: handler}; a
        handler takes the call's arguments (a dict) and returns (status,
        dict or None), at once. Registered now when connected, and again
        after every reconnect (ubusd forgets objects with their client)."""
        self.objects.append([name, methods, None, 0, False])
        if self.hello:
            self._register(self.objects[-1])

    def close(self):
        """Drop the connection (the clean stop): ubusd removes our objects.
        Allocates nothing: it runs after a Ctrl-C may have locked the heap."""
        rt.close(self.sock)
        self.sock = None

    # ---- loop interface --------------------------------------------------

    def wants(self):
        """[(socket, poll mask)] while a connection is open."""
        if self.sock is None:
            return []
        return [(self.sock, rt.POLLIN | (rt.POLLOUT if self.out else 0))]

    def step(self, events):
        """The socket is ready (poll events): write what waits, read what came."""
        if self.sock is not None and events & rt.POLLOUT:
            self._flush()
        if self.sock is not None and events & (rt.POLLIN | rt.POLLERR):
            self._read()

    def ready(self, sock, events):
        """The loop's name for step() (a source's ready(sock, events))."""
        self.step(events)

    def tick(self):
        """Connect when due, end calls past their deadline, give up on a
        silent or broken stream; the ms until it should run again."""
        now = rt.ms()
        if self.sock is None:
            if now >= self.next_try:
                self._open()
        elif not self.hello and now - self.opened > HELLO_MS * rt.SCALE:
            self._lost("no HELLO from ubusd")
        elif self.partial is not None and now - self.partial > PARTIAL_MS * rt.SCALE:
            self._lost("a message stopped half-way")
        if self.hello:
            for obj in self.objects:
                if obj[2] is None and obj[3] <= now:
                    self._register(obj)
        now = rt.ms()
        for seq in list(self.pending):
            req = self.pending.get(seq)
            if req is not None and req.deadline <= now:
                if self.partial is not None:
                    # What began to arrive may be this very answer: the
                    # stream cannot be trusted to be in step any more.
                    self._lost("an answer stopped half-way")
                else:
                    self._finish(seq, DOWN, "no answer in time")
        nxt = (self.next_try - now) if self.sock is None else IDLE_MS
        if self.sock is not None and (not self.hello or self.partial is not None):
            nxt = min(nxt, PARTIAL_MS * rt.SCALE)
        for req in self.pending.values():
            nxt = min(nxt, req.deadline - now)
        for obj in self.objects:
            if self.hello and obj[2] is None:
                nxt = min(nxt, obj[3] - now)
        return max(0, nxt)

    # ---- connection ------------------------------------------------------

    def _open(self):
        s = None
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            # A Unix socket connects at once or not at all (EAGAIN: the
            # listen queue is full), so any error is a failed try.
            s.connect(rt.unix_addr(self.path))
        except OSError as e:
            rt.close(s)
            self._retry("cannot connect to %s (%s)" % (self.path, e))
            return
        self.sock, self.hello, self.opened = s, False, rt.ms()
        self.framer, self.out, self.partial = w.Framer(MAX_MSG), bytearray(), None

    def _retry(self, why):
        if not self.said_down:
            log.info("ubus: %s: collection uses commands; trying again" % why)
            self.said_down = True
        else:
            log.debug("ubus: " + why)
        self.next_try = rt.ms() + self.retry_ms
        self.retry_ms = min(RETRY_MAX_MS, self.retry_ms * 2)
        if self.wake is not None:
            self.wake(self.next_try - rt.ms())

    def _drop(self, status):
        """Close the connection; every request under way ends with status."""
        rt.close(self.sock)
        self.sock = None
        self.hello = False
        self.framer = w.Framer(MAX_MSG)
        self.out = bytearray()
        self.partial = None
        self.ids = {}
        for obj in self.objects:
            obj[2:] = [None, 0, False]
        for seq in list(self.pending):
            self._finish(seq, status, None)

    def _lost(self, why):
        if rt.ms() - self.opened >= STABLE_MS:
            self.retry_ms = RETRY_MIN_MS
        was_up = self.hello
        self._drop(DOWN)
        self.said_down = False
        self._retry("connection to %s %s: %s" % (self.path, "lost" if was_up else "failed", why))

    def _hello(self):
        self.hello, self.said_down = True, False
        log.info("ubus: connected to " + self.path)
        for obj in self.objects:
            self._register(obj)

    # ---- sending ---------------------------------------------------------

    def _send(self, typ, seq_peer, body):
        """Queue one message: seq_peer is the 6 bytes of sequence number
        and peer; body the attributes. False when the connection went."""
        self.out.extend(w.message(typ, seq_peer, body))
        if len(self.out) > MAX_OUT:
            self._lost("ubusd does not read what we send")
            return False
        # Written when the loop next polls (wants() asks for POLLOUT): the
        # calls of a collection go out in one write, not one each.
        return True

    def _flush(self):
        while self.out:
            try:
                n = rt.send(self.sock, self.out)
            except OSError as e:
                self._lost("write: %s" % (e,))
                return
            if not n:
                return
            self.out = self.out[n:]

    def _request(self, typ, body, deadline, done):
        if self.sock is None:
            done(DOWN, None, False)
            return
        seq = self.seq
        for _ in range(65536):  # the next number no request under way holds
            seq = (seq + 1) & 0xFFFF
            if seq not in self.pending:
                break
        self.seq = seq
        self.pending[seq] = _Req(typ, deadline, done)
        if self._send(typ, w.ref(seq), body) and self.wake is not None:
            self.wake(max(0, deadline - rt.ms()))

    def _lookup(self, path, done, deadline):
        self._request(w.LOOKUP, w.lookup(path), deadline, done)

    def _find(self, path, method, payload, done, deadline):
        def found(status, req, from_bus):
            if status != w.OK or not req.found:
                done(NO_OBJECT if status in (w.OK, w.NOT_FOUND) else status, None)
                return
            oid = req.found[0][1]
            self.ids[path] = oid
            self._invoke(path, oid, method, payload, done, deadline, False)
        self._lookup(path, found, deadline)

    def _invoke(self, path, oid, method, payload, done, deadline, cached):
        def answered(status, req, from_bus):
            if status == w.NOT_FOUND and from_bus:  # ubusd: no object has that id (any more)
                self.ids.pop(path, None)
                if cached:
                    self._find(path, method, payload, done, deadline)
                    return
                status = NO_OBJECT
            done(status, req.data if req else None)
        self._request(w.INVOKE, w.invoke(oid, method, payload), deadline, answered)

    def _register(self, obj):
        body = w.add_object(obj[0], obj[1])
        obj[3] = rt.ms() + RETRY_MAX_MS  # no second try while this one is under way

        def added(status, req, from_bus):
            if status == w.OK and req.found:
                obj[2] = req.found[0]
                log.info("ubus: serving object %s" % obj[0])
            elif self.sock is not None:  # said once a connection: another process may hold the name
                (log.debug if obj[4] else log.warn)("ubus: ubusd did not register %s (status %d)" % (obj[0], status))
                obj[3], obj[4] = rt.ms() + RETRY_MAX_MS, True
        self._request(w.ADD_OBJECT, body, rt.ms() + CALL_MS * rt.SCALE, added)

    # ---- receiving -------------------------------------------------------

    def _read(self):
        for _ in range(READS_PER_STEP):
            try:
                n = self.framer.read_from(self.sock)
            except OSError as e:
                self._lost("read: %s" % (e,))
                return
            if n is None:
                return
            if not n:
                self._lost("closed by ubusd")
                return
            self._parse()
            if self.sock is None:
                return

    def _parse(self):
        """Handle every whole message that arrived."""
        while self.sock is not None:
            try:
                m = self.framer.next()
            except w.Desync as e:
                self._lost(str(e))
                return
            if m is None:
                break
            if m[0] == "oversize":
                if m[1] in self.pending:
                    self._finish(m[1], BAD, "an answer of %d bytes (at most %d are kept)" % (m[2], MAX_MSG))
                continue
            self._message(m[1], m[2])
        if self.sock is not None and self.framer.waiting():
            if self.partial is None:
                self.partial = rt.ms()
        else:
            self.partial = None

    def _message(self, hdr, body):
        typ = hdr[1]
        seq = hdr[2] << 8 | hdr[3]
        try:
            attrs = w.attributes(body)
        except blobmsg.BadBlob as e:
            attrs, why = None, e
        if typ == w.HELLO:
            if not self.hello:
                self._hello()
        elif typ == w.STATUS or typ == w.DATA:
            req = self.pending.get(seq)
            if req is None:
                return  # the answer to a request given up (its deadline passed)
            try:
                if attrs is None:
                    raise why
                if typ == w.DATA:
                    self._data(req, body, attrs)
                else:
                    status = w.integer(body, attrs, w.A_STATUS, ">i")
                    self._finish(seq, status, None, w.A_OBJID not in attrs)
            except blobmsg.BadBlob as e:
                self._finish(seq, BAD, e)
        elif typ == w.INVOKE and attrs is not None:
            self._serve(hdr, body, attrs)
        # Anything else (NOTIFY of our object's subscribers, a PING...) asks nothing of us.

    def _data(self, req, body, attrs):
        if req.kind == w.LOOKUP:
            req.found.append((w.string(body, attrs, w.A_OBJPATH), w.integer(body, attrs, w.A_OBJID, ">I")))
        elif req.kind == w.ADD_OBJECT:
            req.found.append(w.integer(body, attrs, w.A_OBJID, ">I"))
        elif req.data is None and w.A_DATA in attrs:
            s, e = attrs[w.A_DATA]
            req.data = blobmsg.decode(body, s, e)

    def _finish(self, seq, status, why, from_bus=False):
        req = self.pending.pop(seq, None)
        if req is None:
            return
        if status == BAD:
            log.warn("ubus: a malformed answer from %s: %s" % (self.path, why))
        try:
            req.done(status, req, from_bus)
        except Exception as e:  # a caller's bug must not leave the stream half-read
            log.exc("ubus answer", e)

    def _serve(self, hdr, body, attrs):
        """An INVOKE for one of our objects: answer at once."""
        for typ, reply in w.answer(self.objects, body, attrs):
            if not self._send(typ, hdr[2:8], reply):
                return
            if typ == w.STATUS:
                self.served += 1

