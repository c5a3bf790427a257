import json

from socketman import VERSION, events


def test_shapes():
    e = json.loads(events.connect(100, True, "sm-x"))
    assert e == {"app": "socketman", "timestamp": 100, "event_type": "CONNECT",
                 "meta": {"online": "1", "client_id": "sm-x", "version": VERSION}}
    assert json.loads(events.connect(1, False, "c"))["meta"]["online"] == "0"
    assert json.loads(events.ping(5)) == {"app": "socketman", "timestamp": 5, "event_type": "PING"}
    assert json.loads(events.delivered(5, "j")) == {"id": "j", "app": "socketman", "timestamp": 5,
                                                    "event_type": "DELIVERED", "meta": {"delivered": True}}
    r = {"msg": "out", "type": "cmd", "success": False, "exit_code": 3, "duration_ms": 12}
    assert json.loads(events.processed(5, "j", r))["meta"] == r
    assert json.loads(events.rejected(5, None, "why")) == {"id": None, "app": "socketman", "timestamp": 5,
                                                          "event_type": "REJECTED", "meta": {"reason": "why"}}
    assert json.loads(events.config_changed(5, ["network"]))["meta"] == {"files": ["network"]}
    assert json.loads(events.rest_result(r)) == {"success": False, "output": "out", "exit_code": 3}


def test_topics_and_client_id():
    assert events.base("t", "k", "aa:bb") == "t/k/aa:bb"
    assert events.client_id("AA-BB-CC-DD-EE-FF") == "sm-AA-BB-CC-DD-EE-FF"
    assert len(events.client_id("x" * 40)) == 23


def test_compact_utf8():
    raw = events.processed(1, "j", {"msg": "café", "type": "cmd", "success": True, "exit_code": 0,
                                    "duration_ms": 1})
    assert b": " not in raw and b", " not in raw
    assert json.loads(raw.decode("utf-8"))["meta"]["msg"] == "café"


def _result(msg):
    return {"id": "j", "type": "cmd", "msg": msg, "success": True, "exit_code": 0, "duration_ms": 5}


def test_processed_fits_max_payload_whatever_the_output():
    # issue 15, item 2: a broker caps packets; escaped binary output grew a
    # 51200-byte output to 200-275 KB of JSON.
    outputs = ["a" * 40000, "\x01\x02\"\\" * 10000, "\ufffd" * 20000 + "é" * 5000, "x\n" * 30000]
    for msg in outputs:
        for limit in (1024, 5000, 16000):
            out = events.processed(1, "j", _result(msg), limit)
            assert len(out) <= limit, (len(out), limit)
            e = json.loads(out)
            assert e["meta"]["msg"].endswith("[output cut: the result was over max_payload %d bytes]" % limit)
            assert msg.startswith(e["meta"]["msg"][:-len(events.CUT_NOTE % limit) - 1])
            assert len(out) > limit // 2  # cut to fit, not emptied
    small = events.processed(1, "j", _result("hi\n"), 1024)
    assert json.loads(small)["meta"]["msg"] == "hi\n"


def test_non_ascii_is_not_escaped_on_any_runtime():
    out = events.processed(1, "j", _result("\ufffdé"))
    assert "\ufffdé".encode() in out and b"\\u" not in out
