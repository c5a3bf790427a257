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

from . import blobmsg, log

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


class Framer:
    """Bytes from ubusd in, whole messages out. A message larger than
    max_msg is thrown away as it arrives (the stream stays in step) and
    said once, so the request it answers can end."""

    def __init__(self, max_msg):
        self.max_msg = max_msg
        self.buf = bytearray()
        self.skip = 0

    def feed(self, data):
        """Bytes that arrived."""
        self.buf.extend(data)

    def waiting(self):
        """True while part of a message is held (or being thrown away)."""
        return bool(self.buf) or self.skip > 0

    def next(self):
        """The next whole message as (type, header bytes, body bytes);
        ("oversize", sequence number, length) for one thrown away; None
        until more bytes come. Desync for a header that cannot be right."""
        while self.skip:
            n = min(self.skip, len(self.buf))
            if not n:
                return None
            self.buf = self.buf[n:]
            self.skip -= n
        buf = self.buf
        if len(buf) < HEADER:
            return None
        raw = struct.unpack_from(">I", buf, 8)[0] & blobmsg.LEN_MASK
        if buf[0] != 0 or raw < 4:
            raise Desync("a malformed message header")
        if raw > self.max_msg:
            self.skip = 8 + raw
            return ("oversize", buf[2] << 8 | buf[3], raw)
        if len(buf) < 8 + raw:
            return None
        hdr = bytes(buf[:8])
        body = bytes(buf[8:8 + raw])
        self.buf = buf[8 + raw:]
        return (hdr[1], hdr, body)


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
