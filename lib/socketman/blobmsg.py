# blob and blobmsg, the tagged binary format of OpenWRT's libubox (blob.h,
# blobmsg.h) that every ubus message carries (PROTOCOL 12). Written from
# the format's description, not from libubox's code.
#
# A blob attribute is one big-endian 32-bit word and a payload:
#   bit 31      extended: a blobmsg attribute, a name header follows
#   bits 24..30 the id: a ubus attribute (ubus.A_*) or a blobmsg type below
#   bits 0..23  length of word and payload, without the padding that makes
#               the next attribute start on a multiple of 4
# A blobmsg attribute's payload starts with its name: a big-endian 16-bit
# length, the bytes, a NUL, padding to 4; then the value. Tables and arrays
# hold blobmsg attributes (array elements have empty names); integers are
# big-endian and signed (as the `ubus` CLI prints them); INT8 is a bool;
# strings end in a NUL. Everything from the bus is checked: a length that
# lies, a truncated attribute, an unknown type or nesting deeper than
# MAX_DEPTH raise BadBlob, never anything else.
import struct

from . import text

EXTENDED = 0x80000000
LEN_MASK = 0xFFFFFF

UNSPEC, ARRAY, TABLE, STRING, INT64, INT32, INT16, INT8, DOUBLE = 0, 1, 2, 3, 4, 5, 6, 7, 8
BOOL = INT8
MAX_DEPTH = 32  # as deep as the agent's JSON may nest (strictjson)
_FIXED = {INT64: (8, ">q"), INT32: (4, ">i"), INT16: (2, ">h"), DOUBLE: (8, ">d")}
_I32 = 1 << 31
_I64 = 1 << 63


class BadBlob(ValueError):
    """Bytes that are not a well-formed blob or blobmsg (the message says
    what is wrong and where)."""


def pad(n):
    """n rounded up to the blob alignment (4)."""
    return (n + 3) & ~3


def walk(buf, start, end):
    """The blob attributes in buf[start:end] (bytes, bytearray or
    memoryview) as a list of (id, extended, payload start, payload end).
    BadBlob when an attribute's length is below its header or runs past
    end (its padding included)."""
    out = []
    while start < end:
        if end - start < 4:
            raise BadBlob("truncated attribute header at %d" % start)
        w = struct.unpack_from(">I", buf, start)[0]
        raw = w & LEN_MASK
        if raw < 4 or start + pad(raw) > end:
            raise BadBlob("attribute at %d says %d bytes, %d are there" % (start, raw, end - start))
        out.append(((w >> 24) & 0x7F, w & EXTENDED, start + 4, start + raw))
        start += pad(raw)
    return out


def cstring(buf, s, e):
    """The NUL-terminated string payload buf[s:e] as text (up to the first
    NUL, as C reads it; bytes that are not UTF-8 become U+FFFD). BadBlob
    when it does not end in a NUL."""
    if e <= s or buf[e - 1] != 0:  # libubox wants the NUL last
        raise BadBlob("string at %d does not end in a NUL" % s)
    b = bytes(buf[s:e - 1])
    i = b.find(b"\0")
    return _text(b if i < 0 else b[:i])


def _text(b):
    """bytes -> str; bytes that are not UTF-8 become U+FFFD (text.utf8)."""
    return b.decode() if not b or max(b) < 0x80 else text.utf8(b)


def _value(buf, typ, s, e, depth):
    """A value of a type decode() does not take inline."""
    if typ in _FIXED:
        size, fmt = _FIXED[typ]
        if e - s != size:
            raise BadBlob("type %d at %d has %d bytes, not %d" % (typ, s, e - s, size))
        return struct.unpack_from(fmt, buf, s)[0]
    if typ == UNSPEC:
        return None  # the CLI prints null
    raise BadBlob("unknown blobmsg type %d at %d" % (typ, s))


def decode(buf, start, end, table=True, depth=0):
    """The blobmsg attributes in buf[start:end] (a memoryview is fastest)
    as a dict (table; a name given twice keeps its last value) or a list
    (array): str, int, float, bool, None, dict and list. BadBlob for
    anything malformed (see the top of this module). One loop with the
    common types inline: this runs for every answer of every cycle."""
    if depth > MAX_DEPTH:
        raise BadBlob("nested deeper than %d levels" % MAX_DEPTH)
    out = {} if table else []
    unpack = struct.unpack_from
    pos = start
    while pos < end:
        if end - pos < 8:
            raise BadBlob("truncated attribute at %d" % pos)
        w, n = unpack(">IH", buf, pos)
        raw = w & LEN_MASK
        e = pos + raw
        nxt = pos + ((raw + 3) & ~3)
        if raw < 8 or nxt > end:
            raise BadBlob("attribute at %d says %d bytes, %d are there" % (pos, raw, end - pos))
        if not w & EXTENDED:
            raise BadBlob("attribute at %d is not a blobmsg attribute" % pos)
        v = pos + 4 + ((n + 6) & ~3)  # the value, after the padded name
        if v > e or buf[pos + 6 + n] != 0:
            raise BadBlob("blobmsg name at %d runs past its attribute" % pos)
        typ = (w >> 24) & 0x7F
        if typ == STRING:
            x = cstring(buf, v, e)
        elif typ == INT32:
            if e - v != 4:
                raise BadBlob("int32 at %d has %d bytes" % (v, e - v))
            x = unpack(">i", buf, v)[0]
        elif typ == INT8:
            if e - v != 1:
                raise BadBlob("bool at %d has %d bytes" % (v, e - v))
            x = buf[v] != 0
        elif typ == TABLE or typ == ARRAY:
            x = decode(buf, v, e, typ == TABLE, depth + 1)
        else:
            x = _value(buf, typ, v, e, depth)
        if table:
            out[_text(bytes(buf[pos + 6:pos + 6 + n])) if n else ""] = x
        else:
            out.append(x)
        pos = nxt
    return out


# ---- encoding ------------------------------------------------------------

def _begin(out, word_id):
    """Room for an attribute header at the end of out: its offset."""
    at = len(out)
    out.extend(b"\0\0\0\0")
    struct.pack_into(">I", out, at, word_id)
    return at


def _end(out, at):
    """Set the length of the attribute begun at offset at, and pad it."""
    raw = len(out) - at
    w = struct.unpack_from(">I", out, at)[0]
    struct.pack_into(">I", out, at, w | raw)
    out.extend(b"\0" * (pad(raw) - raw))


def _kind(v):
    """(blobmsg type, payload bytes or None for a container) of a value."""
    if v is None:
        return UNSPEC, b""
    if v is True or v is False:
        return INT8, b"\1" if v else b"\0"
    if isinstance(v, int):
        if -_I32 <= v < _I32:
            return INT32, struct.pack(">i", v)
        if -_I64 <= v < _I64:
            return INT64, struct.pack(">q", v)
        raise ValueError("integer %d does not fit in 64 bits" % v)
    if isinstance(v, float):
        return DOUBLE, struct.pack(">d", v)
    if isinstance(v, str):
        b = v.encode()
        if b"\0" in b:
            raise ValueError("a string sent on ubus cannot hold a NUL")
        return STRING, b + b"\0"
    if isinstance(v, dict):
        return TABLE, None
    if isinstance(v, (list, tuple)):
        return ARRAY, None
    raise ValueError("cannot send a %s on ubus" % type(v).__name__)


def put(out, name, v, depth=0):
    """Append v as a blobmsg attribute called name (str; "" in arrays) to
    out (a bytearray). None, bool, int (INT32, or INT64 when it needs it),
    float, str, dict (TABLE, keys str) and list or tuple (ARRAY). ValueError
    for anything else, a NUL in a string or nesting past MAX_DEPTH."""
    if depth > MAX_DEPTH:
        raise ValueError("nested deeper than %d levels" % MAX_DEPTH)
    typ, payload = _kind(v)
    at = _begin(out, EXTENDED | typ << 24)
    nb = name.encode()
    out.extend(struct.pack(">H", len(nb)))
    out.extend(nb)
    out.extend(b"\0" * (pad(2 + len(nb) + 1) - 2 - len(nb)))
    if payload is not None:
        out.extend(payload)
    elif typ == TABLE:
        for k, x in v.items():
            if not isinstance(k, str):
                raise ValueError("a table key must be a str")
            put(out, k, x, depth + 1)
    else:
        for x in v:
            put(out, "", x, depth + 1)
    _end(out, at)


def encode(table):
    """A dict as the blobmsg attributes of a table (bytes): what a ubus
    message's DATA attribute holds. ValueError as put() says."""
    out = bytearray()
    for k, v in table.items():
        if not isinstance(k, str):
            raise ValueError("a table key must be a str")
        put(out, k, v)
    return bytes(out)


def attr(out, aid, payload):
    """Append a plain (not blobmsg) blob attribute with id aid and the
    payload bytes to out (a bytearray)."""
    at = _begin(out, aid << 24)
    out.extend(payload)
    _end(out, at)
