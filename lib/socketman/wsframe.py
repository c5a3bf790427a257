# The WebSocket wire format (RFC 6455) for the client in ws.py: masking,
# client frames, a parser of server frames that holds at most a header and
# a control frame (a binary frame's payload is handed on as it is read, so
# memory is bounded whatever the server sends), close statuses, and the
# handshake's key and accept value. No sockets here: portable tests feed it
# bytes (tests_cpython/portable/test_wsframe.py).
import binascii
import os

from . import text, urls

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
SUBPROTOCOL = "socketman-tunnel"
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0, 1, 2, 8, 9, 10
ERROR = -1             # Parser.feed's last event when a frame was refused
MAX_FRAME = 65536      # bytes: a bigger frame ends the WebSocket with TOO_BIG
# Close status codes (RFC 6455 section 7.4.1).
NORMAL, GOING_AWAY, PROTOCOL_ERROR, NO_STATUS, ABNORMAL, BAD_TEXT, TOO_BIG, INTERNAL = \
    1000, 1001, 1002, 1005, 1006, 1007, 1009, 1011

# ---- masking (RFC 6455 section 5.3) -----------------------------------------
#
# A client masks every byte it sends: byte i XOR key[i % 4]. A Python loop
# over the bytes costs a router's CPU some 3 us a byte under MicroPython; the
# same XOR as one operation on big integers (the payload and the key
# repeated, each read as one little-endian number) runs in C inside the
# interpreter's long-int code, about 5-10 times faster (bench/tunnel_bench.py,
# bench/RESULTS.md). MASK_CHUNK bounds the numbers, and so the memory, of
# one step: a few times MASK_CHUNK at a time.
MASK_CHUNK = 4096
_ONES = b"\x01\x00\x00\x00" * (MASK_CHUNK // 4)  # as a number: 1 in the low byte of every 4


def _mask_chunk(data, k, n):
    # (key as a number) * ONES is the key repeated: each copy sits in its own
    # 4 bytes, so nothing carries. n4: whole repeats; the extra bytes of the
    # last one are cut off the result.
    n4 = (n + 3) & ~3
    m = k * int.from_bytes(_ONES[:n4], "little")
    out = (int.from_bytes(data, "little") ^ m).to_bytes(n4, "little")
    return out if n4 == n else out[:n]


def mask(data, key):
    """data (bytes-like) masked with key (4 bytes) -> bytes-like of the same
    length (RFC 6455 section 5.3; masking twice gives data back)."""
    n = len(data)
    k = int.from_bytes(key, "little")
    if n <= MASK_CHUNK:
        return _mask_chunk(data, k, n) if n else b""
    out = bytearray(n)
    for i in range(0, n, MASK_CHUNK):  # MASK_CHUNK is a multiple of 4: the key stays in step
        piece = data[i:i + MASK_CHUNK]
        out[i:i + len(piece)] = _mask_chunk(piece, k, len(piece))
    return out


def frame(op, payload=b"", key=None):
    """One client frame (RFC 6455 section 5.2): FIN set, opcode op, the
    payload (bytes-like) masked with key (4 bytes; None: a fresh random one,
    as every frame must have) -> bytes."""
    n = len(payload)
    key = key or os.urandom(4)
    if n < 126:
        head = bytes((0x80 | op, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | op, 0xFE, n >> 8, n & 0xFF))
    else:
        head = bytes((0x80 | op, 0xFF)) + n.to_bytes(8, "big")
    return head + key + mask(payload, key)


def close_payload(code, reason=""):
    """The payload of a close frame: the status (int) and a reason (str),
    cut to fit a control frame's 125 bytes (at a character boundary)."""
    return code.to_bytes(2, "big") + text.cut(reason.encode(), 123)


class ProtocolError(Exception):
    """A server frame RFC 6455 does not allow: code is the close status to
    answer with (PROTOCOL_ERROR, BAD_TEXT or TOO_BIG), why says what."""

    def __init__(self, code, why):
        super().__init__(why)
        self.code = code
        self.why = why


def _close_status(p):
    """A close frame's payload -> (code, reason str). ProtocolError for a
    one-byte payload, a status no endpoint may send, a reason not UTF-8."""
    if not p:
        return NO_STATUS, ""
    if len(p) == 1:
        raise ProtocolError(PROTOCOL_ERROR, "a close frame of one byte")
    code = p[0] << 8 | p[1]
    if code < 1000 or code in (1004, NO_STATUS, ABNORMAL) or 1015 <= code < 3000 or code >= 5000:
        raise ProtocolError(PROTOCOL_ERROR, "close status %d" % code)
    if not text.valid(p[2:]):
        raise ProtocolError(BAD_TEXT, "a close reason that is not UTF-8")
    return code, text.utf8(p[2:])


class Parser:
    """Frames from a server, fed as bytes come (RFC 6455 section 5). Holds
    at most a frame header and a control frame's 125 bytes: the payload of
    a binary frame is handed on as it comes. max_frame: the largest payload
    a frame may announce (bigger: TOO_BIG)."""

    def __init__(self, max_frame=MAX_FRAME):
        self.max_frame = max_frame
        self.head = b""       # the header of the next frame so far
        self.op = None        # opcode of the frame whose payload is being read; None: a header is next
        self.fin = True
        self.left = 0         # payload bytes of that frame still to come
        self.kind = None      # what its payload is: BINARY, TEXT or a control opcode
        self.message = None   # TEXT or BINARY while a fragmented message is under way
        self.ctl = b""        # a control frame's payload so far
        self.failed = False

    def feed(self, data):
        """bytes from the server -> [(opcode, value)] in order: (BINARY,
        bytes) for each piece of a binary message's payload as it comes
        (one frame's payload may come in several pieces, pieces of empty
        frames are left out), (PING, payload), (PONG, payload), (CLOSE,
        (code, reason)). Text messages are read and dropped. A frame RFC
        6455 refuses ends the list with (ERROR, ProtocolError); nothing
        after it is read, now or later."""
        out = []
        i, n = 0, len(data)
        try:
            while i < n and not self.failed:
                if self.op is None:
                    i = self._header(data, i, out)
                    continue
                take = min(self.left, n - i)
                piece = data[i:i + take]
                i += take
                self.left -= take
                if self.kind >= CLOSE:
                    self.ctl += piece
                elif self.kind == BINARY and take:
                    out.append((BINARY, piece))
                if not self.left:
                    self._end(out)
        except ProtocolError as e:
            self.failed = True
            out.append((ERROR, e))
        return out

    def _header(self, data, i, out):
        h = self.head
        need = 2 if len(h) < 2 else 2 + {126: 2, 127: 8}.get(h[1] & 0x7F, 0)
        take = min(need - len(h), len(data) - i)
        h = self.head = h + data[i:i + take]
        i += take
        if len(h) == 2:
            self._check(h[0], h[1])
            need = 2 + {126: 2, 127: 8}.get(h[1] & 0x7F, 0)
        if len(h) < need:
            return i
        size = h[1] & 0x7F
        if size == 126:
            size = h[2] << 8 | h[3]
        elif size == 127:
            size = int.from_bytes(h[2:10], "big")
        if size > self.max_frame:
            raise ProtocolError(TOO_BIG, "a frame of %d bytes, over %d" % (size, self.max_frame))
        op = h[0] & 0x0F
        self.head = b""
        self.op, self.fin, self.left = op, bool(h[0] & 0x80), size
        self.kind = self.message if op == CONT else op
        if op < CLOSE:
            self.message = None if self.fin else self.kind
        if not size:
            self._end(out)
        return i

    def _check(self, b0, b1):
        op = b0 & 0x0F
        if b0 & 0x70:
            raise ProtocolError(PROTOCOL_ERROR, "reserved bits set (no extension was agreed)")
        if op not in (CONT, TEXT, BINARY, CLOSE, PING, PONG):
            raise ProtocolError(PROTOCOL_ERROR, "unknown opcode %d" % op)
        if b1 & 0x80:
            raise ProtocolError(PROTOCOL_ERROR, "a masked frame from the server")
        if op >= CLOSE:
            if not b0 & 0x80:
                raise ProtocolError(PROTOCOL_ERROR, "a fragmented control frame")
            if b1 & 0x7F > 125:
                raise ProtocolError(PROTOCOL_ERROR, "a control frame over 125 bytes")
        elif op == CONT and self.message is None:
            raise ProtocolError(PROTOCOL_ERROR, "a continuation frame outside a fragmented message")
        elif op != CONT and self.message is not None:
            raise ProtocolError(PROTOCOL_ERROR, "a new message inside a fragmented one")

    def _end(self, out):
        kind, p = self.kind, self.ctl
        self.op = None
        self.ctl = b""
        if kind == CLOSE:
            out.append((CLOSE, _close_status(p)))
        elif kind in (PING, PONG):
            out.append((kind, p))




def split(url):
    """A ws:// or wss:// URL -> (secure bool, host, port, path with its
    query); ValueError when it is not one (urls.split's checks)."""
    scheme, sep, _ = url.partition("://")
    if not sep or scheme.lower() not in ("ws", "wss"):
        raise ValueError("not a ws:// or wss:// URL")
    secure = scheme.lower() == "wss"
    _, host, port, path = urls.split(("https" if secure else "http") + url[len(scheme):])
    return secure, host, port, path


def accept_for(key):
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (str) -> str; None when
    this runtime has no SHA-1 (OpenWRT's micropython-nossl)."""
    try:
        import hashlib
        sha1 = hashlib.sha1
    except (ImportError, AttributeError):
        return None
    return binascii.b2a_base64(sha1(key.encode() + GUID).digest()).strip().decode()
