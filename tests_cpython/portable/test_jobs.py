import json
import random

from socketman.jobs import queue as jobs


def job(**meta):
    m = {"msg": "uptime"}
    m.update(meta)
    return json.dumps({"id": "job-42", "timestamp": 1484484398, "meta": m}).encode()


def test_valid_job():
    j, bad = jobs.parse(job())
    assert bad is None
    assert j == {"id": "job-42", "msg": "uptime", "type": "cmd", "timestamp": 1484484398, "sig": None}
    j, _ = jobs.parse(job(type="network"))
    assert j["type"] == "network"


def test_ids():
    assert jobs.valid_id("a") and jobs.valid_id("A.b_c-9") and jobs.valid_id("x" * 64)
    for v in ("", "x" * 65, "a b", "a/b", "é", None, 5, "..\n", "a\u0000"):
        assert not jobs.valid_id(v), v


def test_rejections_keep_a_valid_id():
    cases = [
        (b"nope", None), (b"{}", None), (b"[]", None), (b"null", None),
        (json.dumps({"id": "ok", "meta": None}).encode(), "ok"),
        (json.dumps({"id": "ok", "meta": {"msg": "  "}}).encode(), "ok"),
        (json.dumps({"id": "ok", "meta": {"msg": "a\u0000b"}}).encode(), "ok"),
        (json.dumps({"id": "ok", "meta": {"msg": "x", "type": "other"}}).encode(), "ok"),
        (json.dumps({"id": "bad id", "meta": {"msg": "x"}}).encode(), None),
    ]
    for payload, want in cases:
        j, bad = jobs.parse(payload)
        assert j is None and bad[0] == want and bad[1], (payload, bad)


def test_size_limit():
    big = json.dumps({"id": "b", "meta": {"msg": "x" * jobs.MAX_PAYLOAD}}).encode()
    j, bad = jobs.parse(big)
    assert j is None and "bytes" in bad[1]
    assert jobs.parse(None)[1][0] is None


def test_valid_json_too_deep_is_rejected_saying_so():
    # Valid JSON 5000 deep: CPython's json raised RecursionError, MicroPython
    # ran it or ran out of heap depending on -X heapsize.
    deep = b'{"id": "d", "meta": {"msg": "true", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}}"
    j, bad = jobs.parse(deep)
    assert j is None and bad[1] == "payload is JSON nested deeper than 32 levels"
    ok = b'{"id": "d", "meta": {"msg": "true", "x": ' + b"[" * 28 + b"]" * 28 + b"}}"
    assert jobs.parse(ok)[0]["id"] == "d"


def test_utf8_checked_strictly():
    assert "UTF-8" in jobs.parse(b'{"id":"a","meta":{"msg":"\xc0\xaf"}}')[1][1]
    assert "UTF-8" in jobs.parse(b'{"id":"a","meta":{"msg":"\xed\xa0\x80"}}')[1][1]
    j, bad = jobs.parse('{"id":"a","meta":{"msg":"echo café"}}'.encode())
    assert bad is None and j["msg"] == "echo café"


def test_queue_dedupes_and_bounds():
    q = jobs.Queue()
    assert q.offer({"id": "a"}) == "accepted"
    assert q.offer({"id": "a"}) == "duplicate"
    for i in range(jobs.MAX_WAITING - 1):
        assert q.offer({"id": "w%d" % i}) == "accepted"
    assert q.offer({"id": "late"}) == "busy"
    assert q.take()["id"] == "a"
    assert q.offer({"id": "late"}) == "accepted"
    assert len(q) == jobs.MAX_WAITING


def test_queue_remembers_the_last_64_ids():
    q = jobs.Queue()
    for i in range(jobs.RECENT + 1):
        q.offer({"id": "i%d" % i})
        q.take()
    assert q.offer({"id": "i%d" % jobs.RECENT}) == "duplicate"
    assert q.offer({"id": "i0"}) == "accepted"  # fell out of the window


def _mutate(rng, data):
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randint(0, 4)
        if not data:
            data.append(rng.randint(0, 255))
        i = rng.randint(0, len(data) - 1)
        if op == 0:
            data[i] = rng.randint(0, 255)
        elif op == 1:
            data = data[:i]
        elif op == 2:
            data = data[:i] + bytearray([rng.randint(0, 255)]) + data[i:]
        elif op == 3:
            data = data[:i] + data[i:i + 8] + data[i:]
        else:
            data = data[:i] + bytearray(b'{"[]}",:\\') + data[i:]
    return bytes(data)


def test_fuzz_seeded_corpus():
    """The same seeded corpus on both runtimes: parse never raises, and its
    answer is always well formed."""
    rng = random.Random(20261127) if hasattr(random, "Random") else random
    if rng is random:
        random.seed(20261127)
    seeds = [job(), job(type="network"), b'{"id":"a","meta":{"msg":"x"}}', b"[]", b'"\\ud800"']
    for n in range(1500):
        payload = _mutate(rng, seeds[n % len(seeds)])
        j, bad = jobs.parse(payload)
        assert (j is None) != (bad is None)
        if j is not None:
            assert jobs.valid_id(j["id"]) and j["msg"].strip() and j["type"] in ("cmd", "network")
        else:
            assert bad[0] is None or jobs.valid_id(bad[0])
            assert isinstance(bad[1], str) and bad[1]


def test_queue_cancel_forgets_the_job():
    q = jobs.Queue()
    j = {"id": "c1"}
    assert q.offer(j) == "accepted"
    q.cancel(j)
    assert len(q) == 0 and q.peek() is None
    assert q.offer({"id": "c1"}) == "accepted"  # not a duplicate: it never ran
