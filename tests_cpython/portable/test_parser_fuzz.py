# Every stats parser fed every capture, damaged in seeded ways (cut short,
# bytes flipped, numbers turned into odd words, brackets swapped): none may
# raise, and what comes out must be plain data that makes valid JSON.
import json

from portable.support import OPENWRT, Seeded, fixture
from socketman import fs
from socketman.stats import dhcp, survey, system, wan, wifi

PARSERS = (system.board, system.info, system.loadavg, system.meminfo, system.uptime, system.release,
           system.board_json, system.cpuinfo, wan.status, wan.route, wan.net_dev, dhcp.leases,
           wifi.devices, wifi.devices_text, wifi.info_text, wifi.assoclist_json, wifi.station_dump,
           wifi.assoclist_text, survey.scan_json, survey.scan_text,
           lambda d: wifi.info_json("wlan0", d), lambda d: wan.counters(d, "eth0"))

ODD_WORDS = (b"nan", b"inf", b"-inf", b"1e999", b"-0", b"99999999999999999999999", b"null", b'"x"',
             b"true", b"[]", b"{}", b"\xff", b"")


def damaged(data, rnd):
    yield data[:rnd.below(len(data) + 1)]
    b = bytearray(data)
    for _ in range(1 + len(b) // 64):
        if b:
            b[rnd.below(len(b))] = rnd.below(256)
    yield bytes(b)
    out = bytearray()
    for ch in data:
        if 48 <= ch <= 57 and rnd.below(4) == 0:
            out.extend(ODD_WORDS[rnd.below(len(ODD_WORDS))])
        else:
            out.append(ch)
    yield bytes(out)
    yield data.replace(b"[", b"{").replace(b"]", b"}")
    yield data.replace(b"{", b"[").replace(b"}", b"]")
    yield data.replace(b'"', b"")
    yield data.replace(b"\n", b"")


def plain(v):
    if v is None or v is True or v is False or isinstance(v, (int, str)):
        return True
    if isinstance(v, float):
        return v == v and v not in (float("inf"), float("-inf"))
    if isinstance(v, (list, tuple)):
        return all(plain(x) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and plain(x) for k, x in v.items())
    return False


def captures():
    for d in fs.listdir(OPENWRT):
        if d.endswith(".md"):
            continue
        for f in fs.listdir(OPENWRT + "/" + d):
            yield d + "/" + f


def test_damaged_captures_never_raise_and_give_plain_data():
    rnd = Seeded(20261127)
    n = 0
    for name in captures():
        for data in damaged(fixture(name), rnd):
            for i, fn in enumerate(PARSERS):
                try:
                    out = fn(data)
                    json.dumps(out)
                except Exception as e:
                    raise AssertionError("parser %d on damaged %s: %r" % (i, name, e)) from e
                assert plain(out), "parser %d on damaged %s gave %r" % (i, name, out)
                n += 1
    assert n > 5000, n
