# The ubus wire format (PROTOCOL 12) on every runtime: blobmsg values of
# every type and width both ways, the exact bytes libubox lays out (taken
# from OpenWRT's real ubusd), messages cut from a stream, the answer to a
# call of one of our objects, and bad input: lengths that lie, truncation,
# deep nesting, unknown types, and a seeded fuzz. Bad input is BadBlob or
# Desync, never another exception.
import struct

from portable.support import Seeded, raises
from socketman import blobmsg, config, ubusmsg
from socketman.blobmsg import BadBlob

# What the real ubusd (openwrt/ubus master) sent for `LOOKUP test`: a DATA
# message (objpath "test", objid, objtype, signature {"vals": {}, "fail":
# {}}), then STATUS 0. Captured once from ../shared/bin/openwrt-ubus.
REAL = bytes.fromhex(
    "00020102000000000000003c02000009746573740000000003000008995c4b9105000008d93924030600001c8200000c0004"
    "76616c7300008200000c00046661696c00000001010200000000000000" "0c0100000800000000")

EVERY = {
    "s": "text", "utf8": "r\u00e9seau \u2713", "empty": "", "t": True, "f": False, "none": None,
    "i0": 0, "i": -55, "i32max": (1 << 31) - 1, "i32min": -(1 << 31), "i64": 1 << 31, "i64neg": -(1 << 31) - 1,
    "i64max": (1 << 63) - 1, "i64min": -(1 << 63), "d": 2.5, "dneg": -1e300, "arr": [1, "two", [3, [4]], {}],
    "tbl": {"a": {"b": {"c": []}}, "": 1}, "emptyarr": [], "emptytbl": {},
}
MAC = "aa:bb:cc:dd:ee:ff"


def _attr(typ, name, payload, ext=True):
    nb = name.encode()
    hdr = struct.pack(">H", len(nb)) + nb + b"\0"
    hdr += b"\0" * (blobmsg.pad(len(hdr)) - len(hdr))
    raw = 4 + len(hdr) + len(payload) if ext else 4 + len(payload)
    body = (hdr if ext else b"") + payload
    return struct.pack(">I", (blobmsg.EXTENDED if ext else 0) | typ << 24 | raw) + body + b"\0" * (
        blobmsg.pad(raw) - raw)


def test_every_type_round_trips():
    b = blobmsg.encode(EVERY)
    assert blobmsg.decode(b, 0, len(b)) == EVERY
    assert len(b) % 4 == 0


def test_integers_take_the_narrowest_of_int32_and_int64():
    for v, typ in (((1 << 31) - 1, blobmsg.INT32), (-(1 << 31), blobmsg.INT32), (1 << 31, blobmsg.INT64),
                   (-(1 << 31) - 1, blobmsg.INT64)):
        b = blobmsg.encode({"x": v})
        assert (b[0] & 0x7F) == typ, (v, b[0])


def test_the_bytes_libubox_lays_out():
    assert blobmsg.encode({"a": 1}) == bytes.fromhex("8500000c000161000000000" "1")
    assert blobmsg.encode({"l": ["x"]}) == bytes.fromhex("81000014" "00016c00" "8300000a" "00000000" "7800" "0000")
    assert blobmsg.encode({"b": True}) == bytes.fromhex("87000009" "00016200" "01000000")


def test_every_width_decodes_signed_as_the_cli_prints_it():
    b = (_attr(blobmsg.INT16, "h", struct.pack(">h", -2)) + _attr(blobmsg.INT8, "b", b"\x02")
         + _attr(blobmsg.INT64, "q", struct.pack(">q", -5000000000))
         + _attr(blobmsg.DOUBLE, "d", struct.pack(">d", 0.1))
         + _attr(blobmsg.INT32, "u", b"\xff\xff\xff\xc9") + _attr(blobmsg.UNSPEC, "n", b"")
         + _attr(blobmsg.STRING, "cut", b"ab\0cd\0"))
    assert blobmsg.decode(b, 0, len(b)) == {"h": -2, "b": True, "q": -5000000000, "d": 0.1, "u": -55, "n": None,
                                             "cut": "ab"}


def test_the_real_lookup_answer():
    f = ubusmsg.Framer(65536)
    for i in range(len(REAL)):  # a byte at a time: messages come whole or not at all
        f.feed(REAL[i:i + 1])
        m = f.next()
        if m is not None:
            break
    typ, hdr, body = m
    assert typ == ubusmsg.DATA and hdr[2:4] == b"\x01\x02"
    a = ubusmsg.attributes(body)
    assert ubusmsg.string(body, a, ubusmsg.A_OBJPATH) == "test"
    assert ubusmsg.integer(body, a, ubusmsg.A_OBJID, ">I") == 0x995C4B91
    s, e = a[ubusmsg.A_SIGNATURE]
    assert blobmsg.decode(body, s, e) == {"vals": {}, "fail": {}}
    f.feed(REAL[i + 1:])
    typ, hdr, body = f.next()
    assert typ == ubusmsg.STATUS and ubusmsg.integer(body, ubusmsg.attributes(body), ubusmsg.A_STATUS, ">i") == 0
    assert f.next() is None and not f.waiting()


def test_oversize_is_thrown_away_and_the_stream_stays_in_step():
    f = ubusmsg.Framer(64)
    big = ubusmsg.message(ubusmsg.DATA, ubusmsg.ref(7), b"\0" * 200)
    small = ubusmsg.message(ubusmsg.STATUS, ubusmsg.ref(8), b"")
    f.feed(big[:30])
    assert f.next() == ("oversize", 7, 204)
    f.feed(big[30:] + small)
    typ, hdr, body = f.next()
    assert typ == ubusmsg.STATUS and hdr[3] == 8


def test_a_header_that_cannot_be_right_desyncs():
    for bad in (b"\x03" + bytes(11), bytes(8) + b"\0\0\0\x02"):
        f = ubusmsg.Framer(1024)
        f.feed(bad)
        raises(ubusmsg.Desync, f.next)


def test_lengths_that_lie_truncation_and_unknown_types():
    good = _attr(blobmsg.STRING, "k", b"v\0")
    cases = [
        good[:-1],                                                    # the padding cut off
        good[:3],                                                     # a header cut off
        struct.pack(">I", blobmsg.EXTENDED | 3 << 24 | 2) + good[4:],  # a length below the header
        struct.pack(">I", blobmsg.EXTENDED | 3 << 24 | 200) + good[4:],  # a length past the end
        _attr(blobmsg.STRING, "k", b"v"),                             # a string without NUL
        _attr(blobmsg.INT32, "k", b"\0\0\0"),                         # an int of 3 bytes
        _attr(blobmsg.INT8, "k", b""),                                # a bool of none
        _attr(blobmsg.DOUBLE, "k", b"\0" * 4),
        _attr(9, "k", b"\0\0\0\0"),                                   # unknown types
        _attr(127, "k", b""),
        _attr(blobmsg.STRING, "k", b"v\0", ext=False),                # not a blobmsg attribute
        struct.pack(">I", blobmsg.EXTENDED | 3 << 24 | 8) + b"\0\x09kk",  # a name longer than its attribute
        struct.pack(">I", blobmsg.EXTENDED | 3 << 24 | 8) + b"\0\x01kk",  # a name without its NUL
    ]
    for i, b in enumerate(cases):
        e = raises(BadBlob, blobmsg.decode, b, 0, len(b))
        assert str(e), i


def test_deep_nesting_is_refused_both_ways():
    v = "x"
    for _ in range(blobmsg.MAX_DEPTH + 2):
        v = [v]
    raises(ValueError, blobmsg.encode, {"deep": v})
    b = _attr(blobmsg.STRING, "", b"x\0")
    for _ in range(blobmsg.MAX_DEPTH + 2):
        b = _attr(blobmsg.ARRAY, "", b)
    assert "deeper" in str(raises(BadBlob, blobmsg.decode, b, 0, len(b)))


def test_what_cannot_be_sent():
    for v in ({"x": 1 << 64}, {"x": "a\0b"}, {1: 2}, {"x": b"bytes"}, {"x": {2: 3}}):
        raises(ValueError, blobmsg.encode, v)


def test_fuzz_never_anything_but_badblob():
    good = blobmsg.encode(EVERY)
    rnd = Seeded(21)
    for n in range(600):
        b = bytearray(good)
        for _ in range(1 + rnd.below(4)):
            i = rnd.below(len(b))
            b[i] = rnd.below(256) if n % 3 else b[i] ^ (1 << rnd.below(8))
        if n % 5 == 0:
            b = b[:rnd.below(len(b))]
        try:
            blobmsg.decode(b, 0, len(b))
        except BadBlob:
            pass
    for n in range(200):  # messages: framed, parsed, answered, never another exception
        msg = bytearray(ubusmsg.message(ubusmsg.INVOKE, ubusmsg.ref(n), ubusmsg.invoke(5, "status", good)))
        for _ in range(1 + rnd.below(3)):
            msg[8 + rnd.below(len(msg) - 8)] = rnd.below(256)
        f = ubusmsg.Framer(1 << 16)
        f.feed(msg)
        try:
            m = f.next()
            if m is not None and m[0] != "oversize":
                ubusmsg.answer([["socketman", {"status": lambda a: (0, {"ok": 1})}, 5, 0]], m[2],
                               ubusmsg.attributes(m[2]))
        except (BadBlob, ubusmsg.Desync):
            pass


def _invoke_body(oid, method, payload, no_reply=False):
    body = ubusmsg.invoke(oid, method, payload)
    if no_reply:
        blobmsg.attr(body, ubusmsg.A_NO_REPLY, b"\1")
    return bytes(ubusmsg.message(ubusmsg.INVOKE, ubusmsg.ref(1), body))[8:]


def _answer(body, handlers):
    out = []
    for typ, attrs in ubusmsg.answer([["socketman", handlers, 9, 0]], body, ubusmsg.attributes(body)):
        reply = bytes(ubusmsg.message(typ, ubusmsg.ref(1), attrs))[8:]
        a = ubusmsg.attributes(reply)
        data = blobmsg.decode(reply, *a[ubusmsg.A_DATA]) if ubusmsg.A_DATA in a else None
        st = ubusmsg.integer(reply, a, ubusmsg.A_STATUS, ">i") if ubusmsg.A_STATUS in a else None
        out.append((typ, ubusmsg.integer(reply, a, ubusmsg.A_OBJID, ">I"), data, st))
    return out


def test_answering_a_call_of_our_object():
    def status(args):
        return 0, {"echo": args}

    def broken(args):
        raise RuntimeError("bug")
    h = {"status": status, "broken": broken}
    args = blobmsg.encode({"x": [1]})
    assert _answer(_invoke_body(9, "status", args), h) == [
        (ubusmsg.DATA, 9, {"echo": {"x": [1]}}, None), (ubusmsg.STATUS, 9, None, 0)]
    assert _answer(_invoke_body(9, "nope", args), h) == [(ubusmsg.STATUS, 9, None, ubusmsg.METHOD_NOT_FOUND)]
    assert _answer(_invoke_body(8, "status", args), h) == [(ubusmsg.STATUS, 8, None, ubusmsg.NOT_FOUND)]
    assert _answer(_invoke_body(9, "broken", args), h) == [(ubusmsg.STATUS, 9, None, ubusmsg.UNKNOWN_ERROR)]
    assert _answer(_invoke_body(9, "status", b"\0\0\0\0"), h) == [
        (ubusmsg.STATUS, 9, None, ubusmsg.INVALID_ARGUMENT)]
    assert _answer(_invoke_body(9, "status", args, no_reply=True), h) == []


def test_the_config_key():
    base = {"mac": MAC}
    assert config.check(base)["ubus_socket"] == "/var/run/ubus/ubus.sock"
    assert config.check(dict(base, ubus_socket=""))["ubus_socket"] == ""
    for bad in ("ubus.sock", "/" + "x" * 107, 5):
        e = raises(config.ConfigError, config.check, dict(base, ubus_socket=bad))
        assert e.key == "ubus_socket"
