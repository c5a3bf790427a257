"""Property tests of the job parser and the signature check (CPython only: hypothesis). The same
invariants run under MicroPython in portable/test_jobs.py with a seeded corpus."""
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from socketman.jobs import queue as jobs
from socketman.jobs import sign

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)

ids = st.one_of(st.text(alphabet="abcXYZ019._-/ é", min_size=0, max_size=70), st.integers(), st.none())
metas = st.one_of(json_values, st.fixed_dictionaries(
    {"msg": st.one_of(st.text(max_size=40), st.integers(), st.none())},
    optional={"type": st.one_of(st.sampled_from(["cmd", "network", "other", ""]), st.integers())}))


def check(payload):
    j, bad = jobs.parse(payload)
    assert (j is None) != (bad is None)
    if j is not None:
        assert jobs.valid_id(j["id"])
        assert isinstance(j["msg"], str) and j["msg"].strip() and "\0" not in j["msg"]
        assert j["type"] in ("cmd", "network")
    else:
        assert bad[0] is None or jobs.valid_id(bad[0])
        assert isinstance(bad[1], str) and bad[1]
    return j, bad


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes(payload):
    check(payload)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_any_json(value):
    check(json.dumps(value).encode())


@settings(max_examples=600, deadline=None)
@given(ids, metas)
def test_job_shaped(jid, meta):
    j, bad = check(json.dumps({"id": jid, "meta": meta}).encode())
    if j is not None:
        assert j["id"] == jid and j["msg"] == meta["msg"]


KEY = "k\u00e9y"


@settings(max_examples=400, deadline=None)
@given(ids, metas, json_values, json_values, st.integers(min_value=0, max_value=2 ** 34))
def test_signature_check_never_raises_and_passes_only_the_right_signature(jid, meta, sig, ts, now):
    payload = {"id": jid, "meta": meta, "sig": sig, "timestamp": ts}
    j, bad = check(json.dumps(payload).encode())
    if j is None:
        return
    why = sign.check(j, KEY, 300, now)
    assert why is None or ("signature" in why or why.startswith("expired")), why
    if why is None:
        assert type(ts) is int and sig == sign.signature(KEY, j["id"], ts, j["type"], j["msg"])
        assert now < sign.CLOCK_SET or abs(now - ts) <= 300
    # and the right signature on the same job passes, whatever the clock
    if type(ts) is int:
        good = dict(j, sig=sign.signature(KEY, j["id"], ts, j["type"], j["msg"]))
        assert sign.check(good, KEY, 300, ts) is None
