"""Job signatures (PROTOCOL 9): HMAC-SHA256 against RFC 4231, the signed
text, the check's verdicts, and the replay memory. Runs under CPython,
MicroPython and MicroPython 1.23."""
import binascii
import json

from portable.support import tmpdir
from socketman.jobs import queue as jobs
from socketman.jobs import sign

# RFC 4231, section 4: (key, data, HMAC-SHA-256); case 5 is truncated to
# 128 bits by the RFC, so only its first 16 bytes are compared.
RFC4231 = [
    (b"\x0b" * 20, b"Hi There",
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe", b"what do ya want for nothing?",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (b"\xaa" * 20, b"\xdd" * 50,
     "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    (bytes(range(1, 26)), b"\xcd" * 50,
     "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
    (b"\x0c" * 20, b"Test With Truncation",
     "a3b6167473100ee06e0c796c2955552b"),
    (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    (b"\xaa" * 131, b"This is a test using a larger than block-size key and a larger than block-size data. "
     b"The key needs to be hashed before being used by the HMAC algorithm.",
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
]

NOW = 1760000000  # a set clock (2025)
KEY = "fleet-secret-\u00e9\u00df\u2713"  # not ASCII: used as its UTF-8 bytes


def hexof(b):
    return binascii.hexlify(b).decode()


def test_hmac_sha256_matches_rfc_4231():
    for key, data, want in RFC4231:
        for fn in (sign._hmac, sign.hmac_sha256):  # ours, and the one in use here
            got = hexof(fn(key, data))
            assert got[:len(want)] == want, (fn, key[:4], got)


def test_hmac_of_empty_and_block_size_keys():
    # Edge lengths around SHA-256's 64-byte block: both functions agree.
    for n in (0, 1, 63, 64, 65, 200):
        key = bytes((i * 7) & 0xFF for i in range(n))
        assert sign._hmac(key, b"m" * n) == sign.hmac_sha256(key, b"m" * n), n


def test_equal():
    assert sign.equal(b"abc", b"abc") and sign.equal("abc", "abc") and sign.equal(b"", b"")
    assert not sign.equal(b"abc", b"abd") and not sign.equal(b"abc", b"ab")
    assert not sign.equal("a" * 64, "a" * 63 + "b")
    assert sign.equal("\u00e9", "\u00e9".encode())


def test_signed_text():
    assert sign.message("job-1", 1700000000, "cmd", "echo hi") == b"job-1\n1700000000\ncmd\necho hi"
    assert sign.message("j", 5, "network", "\u00e9") == b"j\n5\nnetwork\n\xc3\xa9"
    s = sign.signature(KEY, "job-1", NOW, "cmd", "uptime")
    assert len(s) == 64 and s == s.lower()
    assert s == hexof(sign._hmac(KEY.encode(), b"job-1\n%d\ncmd\nuptime" % NOW))


def signed(jid="job-1", msg="uptime", kind=None, ts=NOW, key=KEY, **extra):
    meta = {"msg": msg}
    if kind is not None:
        meta["type"] = kind
    obj = {"id": jid, "timestamp": ts, "meta": meta,
           "sig": sign.signature(key, jid, ts, kind or "cmd", msg)}
    obj.update(extra)
    return json.dumps(obj).encode()


def verdict(payload, now=NOW, max_age=300):
    job, bad = jobs.parse(payload)
    assert bad is None, bad
    return sign.check(job, KEY, max_age, now)


def test_good_signatures_pass():
    assert verdict(signed()) is None
    assert verdict(signed(kind="network", msg="wifi up")) is None
    assert verdict(signed(kind="cmd")) is None  # "cmd" written out signs the same as absent
    assert verdict(signed(msg="echo \u00e9\u2713")) is None
    assert verdict(signed(ts=NOW - 300)) is None and verdict(signed(ts=NOW + 300)) is None


def test_bad_signatures_say_signature():
    good = json.loads(signed())
    cases = []
    for change in ("missing", "wrong", "upper", "number", "msg", "type", "id", "timestamp", "other key"):
        obj = json.loads(json.dumps(good))
        if change == "missing":
            del obj["sig"]
        elif change == "wrong":
            obj["sig"] = "0" * 64
        elif change == "upper":
            obj["sig"] = obj["sig"].upper()
        elif change == "number":
            obj["sig"] = 12
        elif change == "msg":
            obj["meta"]["msg"] = "reboot"
        elif change == "type":
            obj["meta"]["type"] = "network"
        elif change == "id":
            obj["id"] = "job-2"
        elif change == "timestamp":
            obj["timestamp"] = NOW + 1
        else:
            obj["sig"] = json.loads(signed(key="another key"))["sig"]
        cases.append((change, obj))
    for ts in (None, "1760000000", 1760000000.5, True):
        obj = json.loads(json.dumps(good))
        obj["timestamp"] = ts
        cases.append(("timestamp %r" % (ts,), obj))
    for change, obj in cases:
        why = verdict(json.dumps(obj).encode())
        assert why and "signature" in why, (change, why)
        assert KEY not in why and good["sig"] not in why, why


def test_old_or_future_timestamps_say_expired():
    for ts, age in ((NOW - 301, 300), (NOW + 301, 300), (NOW - 86401, 86400), (0, 300)):
        why = verdict(signed(ts=ts), max_age=age)
        assert why and why.startswith("expired"), (ts, why)
        assert KEY not in why


def test_a_clock_before_2024_skips_the_age_check():
    assert sign.CLOCK_SET == 1704067200  # 2024-01-01T00:00:00Z
    for now in (0, 1000, sign.CLOCK_SET - 1):
        assert verdict(signed(ts=NOW), now=now) is None
    assert verdict(signed(ts=NOW), now=sign.CLOCK_SET).startswith("expired")
    # The signature is checked all the same.
    obj = json.loads(signed())
    obj["meta"]["msg"] = "reboot"
    assert "signature" in verdict(json.dumps(obj).encode(), now=1000)


class Clock:
    def __init__(self, now, ms=0):
        self.t, self.m = now, ms

    def now(self):
        return self.t

    def ms(self):
        return self.m


def test_replay_keeps_ids_for_their_window():
    c = Clock(NOW)
    r = jobs.Replay(300, "", c.ms, c.now)
    q = jobs.Queue(r)
    assert q.offer({"id": "a", "timestamp": NOW}) == "accepted"
    for _ in range(jobs.RECENT + 5):  # pushes "a" out of the 64-id window
        q.take()
        q.offer({"id": "f%d" % c.m, "timestamp": NOW})
        c.m += 1
        q.take()
    assert "a" not in q.recent and q.seen("a")
    assert q.offer({"id": "a", "timestamp": NOW}) == "duplicate"
    c.m += 300 * 1000 + 1  # 300 s on the agent's clock...
    assert q.seen("a")     # ...but the device clock has not moved: still fresh
    c.t += 301
    q.offer({"id": "b", "timestamp": c.t})
    assert not q.seen("a")  # both passed: a replay would be "expired" anyway
    assert q.seen("b")


def test_replay_keeps_a_job_dated_ahead_until_its_timestamp_is_old():
    c = Clock(NOW)
    r = jobs.Replay(300, "", c.ms, c.now)
    r.add("ahead", NOW + 250)
    c.m += 301 * 1000
    c.t += 301
    r.add("x", c.t)
    assert r.seen("ahead")  # its timestamp is only 51 s old
    c.t += 250
    r.add("y", c.t)
    assert not r.seen("ahead")


def test_replay_with_the_clock_unset_forgets_only_to_make_room():
    c = Clock(1000)
    r = jobs.Replay(300, "", c.ms, c.now)
    for i in range(jobs.MAX_SIGNED):
        assert r.add("j%d" % i, NOW)
        c.m += 10
    assert not r.add("one-too-many", NOW)  # none is older than 300 s yet
    c.m += 300 * 1000
    assert r.add("one-too-many", NOW)
    assert not r.seen("j0") and r.seen("j1") and r.seen("one-too-many")
    assert len(r.ids) == jobs.MAX_SIGNED


def test_replay_memory_survives_a_restart_and_a_cancel_forgets():
    d = tmpdir()
    c = Clock(NOW)
    r = jobs.Replay(300, d + "/signed-ids", c.ms, c.now)
    q = jobs.Queue(r)
    assert q.offer({"id": "kept", "timestamp": NOW}) == "accepted"
    job = {"id": "dropped", "timestamp": NOW}
    assert q.offer(job) == "accepted"
    q.cancel(job)
    assert not q.seen("dropped")
    again = jobs.Replay(300, d + "/signed-ids", c.ms, c.now)
    assert again.seen("kept") and not again.seen("dropped")
    with open(d + "/signed-ids", "a") as f:
        f.write("bad line\nok-2 %d\n../x 5\n\xe9 1\n" % NOW)
    third = jobs.Replay(300, d + "/signed-ids", c.ms, c.now)
    assert sorted(third.ids) == ["kept", "ok-2"]


def test_replay_memory_in_a_directory_that_is_gone_still_works():
    c = Clock(NOW)
    r = jobs.Replay(300, "/nonexistent-dir-for-socketman/signed-ids", c.ms, c.now)
    assert r.add("a", NOW) and r.seen("a") and r.write_failed
