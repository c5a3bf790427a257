# ubus messages on the wire (PROTOCOL 12), as libubus' ubusmsg.h describes
# them: the constants, building a message, reading its attributes, and
# cutting the byte stream from ubusd into messages. The client (ubus.py)
# decides what they mean.
#
# A message is an 8-byte header (version 0, type, 16-bit sequence number,
# 32-bit peer) and one blob attribute (blobmsg.py) that holds the message's
# attributes (A_*). The sequence number and peer are echoed as bytes and
# never interpreted, so ubusd's host byte order does not matter.
import struct

from . import blobmsg, log, rt

HELLO, STATUS, DATA, PING, LOOKUP, INVOKE, ADD_OBJECT = 0, 1, 2, 3, 4, 5, 6
A_STATUS, A_OBJPATH, A_OBJID, A_METHOD, A_OBJTYPE, A_SIGNATURE, A_DATA = 1, 2, 3, 4, 5, 6, 7
A_NO_REPLY = 10
# Status codes on the wire (enum ubus_msg_status).
OK, INVALID_ARGUMENT, METHOD_NOT_FOUND, NOT_FOUND, UNKNOWN_ERROR = 0, 2, 3, 4, 9

HEADER = 12  # the 8-byte header and the word of the attribute that follows


class Desync(ValueError):
    """The stream from ubusd cannot be cut into messages any more."""


def message(typ, ref, body):
    """One message (bytearray): typ, ref the 6 bytes of sequence number and
    peer, body the bytes of its attributes."""
    msg = bytearray(HEADER)
    msg[1] = typ
    msg[2:8] = ref
    struct.pack_into(">I", msg, 8, 4 + len(body))
    msg.extend(body)
    return msg


def ref(seq):
    """The sequence number seq and a zero peer: how a request starts."""
    return struct.pack(">H", seq) + b"\0\0\0\0"


def lookup(path):
    """The body of a LOOKUP of path (a trailing * matches a prefix)."""
    body = bytearray()
    blobmsg.attr(body, A_OBJPATH, path.encode() + b"\0")
    return body


def invoke(oid, method, payload):
    """The body of an INVOKE of method on object oid with the arguments
    payload (blobmsg.encode of a dict)."""
    body = bytearray()
    blobmsg.attr(body, A_OBJID, struct.pack(">I", oid))
    blobmsg.attr(body, A_METHOD, method.encode() + b"\0")
    blobmsg.attr(body, A_DATA, payload)
    return body


def add_object(name, methods):
    """The body of an ADD_OBJECT of name with the method names in methods;
    no argument policy (any arguments are taken)."""
    body = bytearray()
    blobmsg.attr(body, A_OBJPATH, name.encode() + b"\0")
    sig = bytearray()
    for m in methods:
        blobmsg.put(sig, m, {})
    blobmsg.attr(body, A_SIGNATURE, sig)
    return body


def attributes(body):
    """{attribute id: (payload start, end)} of a message body (the bytes
    after the 8-byte header). BadBlob when they are malformed."""
    out = {}
    for aid, _ext, s, e in blobmsg.walk(body, 4, len(body)):
        out[aid] = (s, e)
    return out


def integer(body, attrs, aid, fmt):
    """The integer attribute aid (fmt: its struct format, ">I", ">i",
    ">b"); BadBlob when it is missing or has the wrong size."""
    if aid not in attrs:
        raise blobmsg.BadBlob("attribute %d missing" % aid)
    s, e = attrs[aid]
    if e - s != struct.calcsize(fmt):
        raise blobmsg.BadBlob("attribute %d has %d bytes" % (aid, e - s))
    return struct.unpack_from(fmt, body, s)[0]


def string(body, attrs, aid):
    """The string attribute aid; BadBlob when it is missing or malformed."""
    if aid not in attrs:
        raise blobmsg.BadBlob("attribute %d missing" % aid)
    return blobmsg.cstring(body, *attrs[aid])


CHUNK = 2048  # the read buffer a connection keeps; a larger message has one of its size while it lasts


class Framer:
    """Bytes from ubusd in, whole messages out, in one buffer that the
    socket reads into in place (space(), then wrote(n)): on a router's
    fragmented heap a new 4 KiB buffer for every read can fail with half the
    heap free. A message larger than max_msg is thrown away as it arrives
    (the stream stays in step) and said once, so the request it answers can
    end."""

    def __init__(self, max_msg):
        self.max_msg = max_msg
        self.skip = 0
        self._new(CHUNK, b"")

    def _new(self, size, keep):
        self.buf = bytearray(size)  # never resized: memoryviews of it are handed out
        self.mv = memoryview(self.buf)
        self.mv[:len(keep)] = keep
        self.start, self.end = 0, len(keep)

    def space(self):
        """A memoryview of the free end of the buffer, to read into (room
        is made first: bytes taken are dropped, and a message larger than
        the buffer gets one of its size, given back once it is taken)."""
        if self.start == self.end:
            if len(self.buf) > CHUNK:
                self._new(CHUNK, b"")
            self.start = self.end = 0
        elif self.end == len(self.buf):
            rest = bytes(self.mv[self.start:self.end])
            want = len(rest) + 1
            if len(rest) >= HEADER:
                want = max(want, min(8 + (struct.unpack_from(">I", rest, 8)[0] & blobmsg.LEN_MASK),
                                     self.max_msg + 8))
            if want > len(self.buf):
                self._new(want, rest)
            else:
                self.mv[:len(rest)] = rest
                self.start, self.end = 0, len(rest)
        return self.mv[self.end:]

    def wrote(self, n):
        """n bytes were read into what space() gave."""
        self.end += n

    def read_from(self, sock):
        """Read what sock has (non-blocking) into the buffer: the number of
        bytes, 0 at EOF, None when nothing is there yet; OSError."""
        try:
            n = sock.readinto(self.space()) if rt.MPY else sock.recv_into(self.space())
        except OSError as e:
            if e.errno in rt.BUSY:
                return None
            raise
        if n:
            self.end += n
        return n

    def feed(self, data):
        """Bytes that arrived (as space() and wrote() would put them)."""
        i = 0
        while i < len(data):
            room = self.space()
            n = min(len(room), len(data) - i)
            room[:n] = data[i:i + n]
            self.wrote(n)
            i += n

    def waiting(self):
        """True while part of a message is held (or being thrown away)."""
        return self.end > self.start or self.skip > 0

    def next(self):
        """The next whole message as (type, header bytes, body); the body is
        a memoryview into the buffer, good until the next space(). ("oversize",
        sequence number, length) for one thrown away; None until more bytes
        come. Desync for a header that cannot be right."""
        while self.skip:
            n = min(self.skip, self.end - self.start)
            if not n:
                return None
            self.start += n
            self.skip -= n
        s, mv = self.start, self.mv
        if self.end - s < HEADER:
            return None
        raw = struct.unpack_from(">I", self.buf, s + 8)[0] & blobmsg.LEN_MASK
        if mv[s] != 0 or raw < 4:
            raise Desync("a malformed message header")
        if raw > self.max_msg:
            self.skip = 8 + raw
            return ("oversize", mv[s + 2] << 8 | mv[s + 3], raw)
        if self.end - s < 8 + raw:
            return None
        self.start = s + 8 + raw
        return (mv[s + 1], bytes(mv[s:s + 8]), mv[s + 8:s + 8 + raw])


def answer(objects, body, attrs):
    """What to send back for an INVOKE from ubusd (its body and attributes)
    to one of objects ([name, {method: handler}, id, ...]): a list of
    (type, body), DATA with the handler's dict when it gave one, then
    STATUS; [] when no answer is wanted or none can be addressed. A
    handler takes the arguments (dict) and returns (status, dict or None);
    one that raises answers UNKNOWN_ERROR."""
    try:
        oid = integer(body, attrs, A_OBJID, ">I")
    except blobmsg.BadBlob:
        return []  # no object to answer as: the caller's deadline ends it
    obj = None
    for o in objects:
        if o[2] == oid:
            obj = o
    out = []
    try:
        method = string(body, attrs, A_METHOD)
        args = blobmsg.decode(body, *attrs[A_DATA]) if A_DATA in attrs else {}
        if A_NO_REPLY in attrs and integer(body, attrs, A_NO_REPLY, ">b"):
            return []
    except blobmsg.BadBlob:
        obj, status = None, INVALID_ARGUMENT
    else:
        status = NOT_FOUND
    if obj is not None:
        handler = obj[1].get(method)
        status = METHOD_NOT_FOUND
        if handler is not None:
            try:
                status, data = handler(args)
                if data is not None:
                    reply = bytearray()
                    blobmsg.attr(reply, A_OBJID, struct.pack(">I", oid))
                    blobmsg.attr(reply, A_DATA, blobmsg.encode(data))
                    out.append((DATA, reply))
            except Exception as e:  # a handler's bug, or an answer that cannot be sent
                log.exc("ubus method %s.%s" % (obj[0], method), e)
                status, out = UNKNOWN_ERROR, []
    reply = bytearray()
    blobmsg.attr(reply, A_STATUS, struct.pack(">i", status))
    blobmsg.attr(reply, A_OBJID, struct.pack(">I", oid))
    out.append((STATUS, reply))
    return out
