"""strictjson against CPython's json, which is strict (CPython only:
hypothesis). portable/test_strictjson.py runs fixed cases on both runtimes."""
import json
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from socketman import strictjson

text_ok = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | text_ok,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text_ok, children, max_size=4),
    max_leaves=15)
jsonish = st.text(alphabet='{}[]:,"\\ \n0123456789.-+eEtruefalsnNIiy/bu\u00e9x', max_size=40)
# What CPython takes and JSON does not: NaN, Infinity, lone surrogates.
CPYTHON_EXTRAS = re.compile(r"NaN|Infinity|\\u[dD][89a-fA-F]")


@settings(max_examples=500, deadline=None)
@given(values, st.sampled_from([None, 0, 2]), st.booleans())
def test_what_json_writes_loads_the_same(value, indent, ascii_only):
    s = json.dumps(value, indent=indent, ensure_ascii=ascii_only)
    assert strictjson.loads(s) == value


@settings(max_examples=1500, deadline=None)
@given(jsonish)
def test_accepts_exactly_what_cpython_accepts(s):
    try:
        want = json.loads(s)
    except ValueError:
        want = ValueError
    try:
        got = strictjson.loads(s)
    except ValueError:
        got = ValueError
    if want is ValueError or got is not ValueError:
        assert got == want or (got != got and want != want), s
    else:
        assert CPYTHON_EXTRAS.search(s), s


@settings(max_examples=800, deadline=None)
@given(values, st.integers(min_value=0), st.sampled_from(["cut", "drop", "double", "comma"]))
def test_damaged_json_as_cpython_judges_it(value, at, how):
    s = json.dumps(value)
    i = at % (len(s) + 1)
    s = {"cut": s[:i], "drop": s[:i] + s[i + 1:], "double": s[:i] + s[i:i + 1] * 2 + s[i + 1:],
         "comma": s[:i] + "," + s[i:]}[how]
    test_accepts_exactly_what_cpython_accepts.hypothesis.inner_test(s)
