# strictjson refuses what JSON refuses on both runtimes: MicroPython's own
# json.loads takes many of these (1.23 even takes a document cut short).
import json

from portable.support import raises
from socketman import strictjson

VALID = ['{}', '[]', '0', '-0', '1.5e-3', '2E+10', '-12.25', 'true', 'false', 'null', '""',
         ' {"a": [1, {"b": null}], "c": true}\n', '"\\"\\\\\\/\\b\\f\\n\\r\\t"', '"\\u00e9\\ud83d\\ude00"',
         '[[[]], {"": {}}]', '{"id": "job-42", "meta": {"msg": "uptime", "type": "cmd"}}', '"\u00e9 \u2603"']

INVALID = ['', ' ', '{', '[', '{"a": 1', '{"a": [1, 2', '[1, 2', '"abc', '{"a"', '{"a":', '{"a": 1,',
           '{"a":1 "b":2}', '[1 2]', '{"a" 1}', '{,}', '[,1]', '{"a":1,}', '[1,]', "{'a':1}", '01', '-01',
           '1.', '.5', '+1', '1e', '1e+', '-', '--1', 'NaN', 'Infinity', '-Infinity', 'tru', 'nulls',
           '"\\x41"', '"\\u12"', '"\\u12g4"', '"\\ud800"', '"\\udc00"', '"\\ud800\\u0041"', '"a\nb"', '"\t"',
           '{"a":1}}', '[1]]', '{} x', '1 2', ':', ',', '{"a":}', '["a":1]', '{1: 2}', '{"a":1,,"b":2}',
           '[1,,2]', '{"a"::1}', '"\\"', '}', ']']

TRUNCATED_JOB = '{"id": "j1", "meta": {"msg": "uptime", "type": "cmd"}}'


def test_valid_texts_load_as_json_does():
    for s in VALID:
        assert strictjson.loads(s) == json.loads(s), s


def test_invalid_texts_are_refused():
    for s in INVALID:
        raises(ValueError, strictjson.loads, s)


def test_a_job_cut_anywhere_is_refused():
    for n in range(len(TRUNCATED_JOB)):
        raises(ValueError, strictjson.loads, TRUNCATED_JOB[:n])
    assert strictjson.loads(TRUNCATED_JOB)["meta"]["msg"] == "uptime"


def test_big_strings_with_escapes():
    s = json.dumps({"msg": "x\\\"y\n" * 5000 + "\u00e9" * 1000})
    assert strictjson.loads(s) == json.loads(s)
