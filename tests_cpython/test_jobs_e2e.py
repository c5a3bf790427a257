"""Jobs over MQTT end to end: a real Mosquitto, the agent as a process under
CPython, MicroPython and the .mpy bundle, and an independent controller."""
import json
import os
import time

from helpers.device import BASE, config

# Also on the OpenWRT snapshot's MicroPython and on a router's CPU (MIPS, qemu).
EXTRA_RUNTIMES = ("mpy1.28-bundle", "mips1.23-bundle")

CONNECT_S = 20


def start(agents, agent_cmd, tmp_path, broker, controllers, qos=1, env=None, **kw):
    ctrl = controllers(broker, BASE, qos=qos)
    a = agents(agent_cmd, config(tmp_path, broker, qos=qos, **kw), tmp_path, env=env)
    ctrl.wait_event("CONNECT", timeout=CONNECT_S, online="1")
    return a, ctrl


def test_job_round_trip(agent_cmd, agents, tmp_path, broker, controllers):
    a, ctrl = start(agents, agent_cmd, tmp_path, broker, controllers)
    ctrl.job("job-1", "echo hello; echo oops >&2")
    d = ctrl.wait_event("DELIVERED", "job-1")
    assert d["_topic"] == "delivery/" + BASE and d["meta"] == {"delivered": True}
    p = ctrl.wait_event("PROCESSED", "job-1")
    assert p["_topic"] == "pub/" + BASE
    assert p["app"] == "socketman" and isinstance(p["timestamp"], int)
    m = p["meta"]
    assert m["msg"] == "hello\noops\n"
    assert m["type"] == "cmd" and m["success"] is True and m["exit_code"] == 0
    assert isinstance(m["duration_ms"], int) and 0 <= m["duration_ms"] < 10000
    assert d["_t"] <= p["_t"]


def test_failing_job_and_empty_output(agent_cmd, agents, tmp_path, broker, controllers):
    a, ctrl = start(agents, agent_cmd, tmp_path, broker, controllers)
    ctrl.job("f1", "echo bad >&2; exit 3")
    ctrl.job("f2", "true")
    m = ctrl.wait_event("PROCESSED", "f1")["meta"]
    assert m["success"] is False and m["exit_code"] == 3 and m["msg"] == "bad\n"
    m = ctrl.wait_event("PROCESSED", "f2")["meta"]
    assert m["success"] is True and m["msg"] == "DNE"


def test_output_is_cut_at_max_output(agent_cmd, agents, tmp_path, broker, controllers):
    a, ctrl = start(agents, agent_cmd, tmp_path, broker, controllers, max_output=100)
    ctrl.job("big", "i=0; while [ $i -lt 50 ]; do echo 0123456789; i=$((i+1)); done")
    m = ctrl.wait_event("PROCESSED", "big")["meta"]
    assert m["msg"] == "0123456789\n" * 9 + "0"
    assert m["success"] is True


BAD_PAYLOADS = [
    (b"not json", None, "JSON"),
    (b'{"id": "t1", "meta": {"msg": "echo cut"', None, "JSON"),  # MicroPython 1.23 would take it
    (b'{"id": "t2" "meta": {"msg": "echo no comma"}}', None, "JSON"),  # any MicroPython would
    (b'{"id": "t3", "meta": {"msg": "echo \\ud800"}}', None, "JSON"),  # no such character
    (b"[1,2]", None, "object"),
    (b'"just a string"', None, "object"),
    (b"{}", None, "id"),
    (json.dumps({"id": "", "meta": {"msg": "true"}}).encode(), None, "id"),
    (json.dumps({"id": 42, "meta": {"msg": "true"}}).encode(), None, "id"),
    (json.dumps({"id": "a/b", "meta": {"msg": "true"}}).encode(), None, "id"),
    (json.dumps({"id": "x" * 65, "meta": {"msg": "true"}}).encode(), None, "id"),
    (json.dumps({"id": "../../etc", "meta": {"msg": "true"}}).encode(), None, "id"),
    (json.dumps({"id": "m1"}).encode(), "m1", "meta"),
    (json.dumps({"id": "m2", "meta": "true"}).encode(), "m2", "meta"),
    (json.dumps({"id": "m3", "meta": {}}).encode(), "m3", "msg"),
    (json.dumps({"id": "m4", "meta": {"msg": ""}}).encode(), "m4", "msg"),
    (json.dumps({"id": "m5", "meta": {"msg": 7}}).encode(), "m5", "msg"),
    (json.dumps({"id": "m6", "meta": {"msg": "true", "type": 5}}).encode(), "m6", "type"),
    (json.dumps({"id": "m7", "meta": {"msg": "true", "type": "reboot-now"}}).encode(), "m7", "type"),
    (b'{"id": "u1", "meta": {"msg": "echo \xff\xfe"}}', None, "UTF-8"),
    (b'{"id": "u2", "meta": {"msg": "echo \xc0\xaf"}}', None, "UTF-8"),
    (json.dumps({"id": "huge", "meta": {"msg": "echo " + "A" * 100 * 1024}}).encode(), None, "bytes"),
    # over the client's 128 KiB packet limit: dropped while it streams in
    (json.dumps({"id": "huger", "meta": {"msg": "echo " + "B" * 300 * 1024}}).encode(), None, "bytes"),
]


def test_bad_payloads_are_rejected_and_the_agent_carries_on(agent_cmd, agents, tmp_path, broker, controllers):
    marker = tmp_path / "ran"
    a, ctrl = start(agents, agent_cmd, tmp_path, broker, controllers)
    for payload, _, _ in BAD_PAYLOADS:
        ctrl.send(payload)
    ctrl.job("good-after", "echo fine")
    ctrl.wait_event("PROCESSED", "good-after")
    rejected = ctrl.events("REJECTED")
    assert len(rejected) == len(BAD_PAYLOADS), [r["meta"] for r in rejected]
    for (payload, want_id, word), r in zip(BAD_PAYLOADS, rejected, strict=True):
        assert r["id"] == want_id, (payload[:60], r)
        assert word in r["meta"]["reason"], (payload[:60], r["meta"]["reason"])
        assert r["_topic"] == "pub/" + BASE
    assert ctrl.events("DELIVERED") and all(e["id"] == "good-after" for e in ctrl.events("DELIVERED"))
    assert not marker.exists()
    assert a.alive()


def test_duplicate_id_runs_once(agent_cmd, agents, tmp_path, broker, controllers):
    a, ctrl = start(agents, agent_cmd, tmp_path, broker, controllers)
    side = tmp_path / "side"
    ctrl.job("dup-1", "echo x >> %s" % side)
    ctrl.wait_event("PROCESSED", "dup-1")
    ctrl.job("dup-1", "echo x >> %s" % side)
    ctrl.job("after-dup", "true")
    ctrl.wait_event("PROCESSED", "after-dup")
    assert side.read_text() == "x\n"
    assert len([e for e in ctrl.events("DELIVERED") if e["id"] == "dup-1"]) == 2
    assert len([e for e in ctrl.events("PROCESSED") if e["id"] == "dup-1"]) == 1


def test_long_job_does_not_block_delivery_or_keepalive(agent_cmd, agents, tmp_path, broker, controllers):
    # keepalive 2 s: the broker drops a silent client after 3 s; the job runs 5 s.
    a, ctrl = start(agents, agent_cmd, tmp_path, broker, controllers, keepalive=2)
    ctrl.job("slow", "sleep 5; echo done")
    ctrl.wait_event("DELIVERED", "slow")
    time.sleep(0.5)
    t0 = time.monotonic()
    ctrl.job("next", "echo next")
    d = ctrl.wait_event("DELIVERED", "next")
    assert d["_t"] - t0 < 1.0
    p = ctrl.wait_event("PROCESSED", "slow", timeout=20)
    assert p["meta"]["msg"] == "done\n"
    n = ctrl.wait_event("PROCESSED", "next", timeout=10)
    assert n["_t"] >= p["_t"]  # one job at a time, in arrival order
    offline = [e for e in ctrl.events("CONNECT") if e["meta"]["online"] == "0"]
    assert offline == [], "the broker published the will during the job"
    assert "next try" not in a.output()


def test_timeout_kills_the_job_and_its_children(agent_cmd, agents, tmp_path, broker, controllers):
    late = tmp_path / "late"
    a, ctrl = start(agents, agent_cmd, tmp_path, broker, controllers, job_timeout=2)
    ctrl.job("t1", "echo started; (sleep 4; echo late > %s) & sleep 60" % late)
    p = ctrl.wait_event("PROCESSED", "t1", timeout=15)
    m = p["meta"]
    assert m["exit_code"] == 124 and m["success"] is False
    assert m["msg"] == "started\n[timed out]"
    assert 2000 <= m["duration_ms"] < 6000
    time.sleep(4.5)
    assert not late.exists(), "a child of the timed-out job lived on"


def test_queue_is_bounded(agent_cmd, agents, tmp_path, broker, controllers):
    a, ctrl = start(agents, agent_cmd, tmp_path, broker, controllers)
    gate = tmp_path / "gate"
    ctrl.job("blocker", "while [ ! -e %s ]; do sleep 0.05; done" % gate)
    ctrl.wait_event("DELIVERED", "blocker")
    for i in range(17):
        ctrl.job("q%d" % i, "echo %d" % i)
    r = ctrl.wait_event("REJECTED", "q16")
    assert r["meta"]["reason"] == "busy"
    gate.write_text("")
    ctrl.wait_event("PROCESSED", "q15", timeout=30)
    done = [e["id"] for e in ctrl.events("PROCESSED")]
    assert done == ["blocker"] + ["q%d" % i for i in range(16)]


def test_qos2_both_ways(agent_cmd, agents, tmp_path, broker, controllers):
    a, ctrl = start(agents, agent_cmd, tmp_path, broker, controllers, qos=2)
    side = tmp_path / "side"
    ctrl.job("q2", "echo y >> %s" % side)
    ctrl.wait_event("PROCESSED", "q2")
    time.sleep(0.5)
    assert side.read_text() == "y\n"
    assert len(ctrl.events("DELIVERED")) == 1 and len(ctrl.events("PROCESSED")) == 1
    assert "PUBREC" in broker.output() and "PUBCOMP" in broker.output()


def test_rest_mode_patches_the_api(agent_cmd, agents, tmp_path, broker, controllers, http_server):
    api = http_server()
    api.script = [(503, b"busy")]  # the first PATCH fails and is retried
    a, ctrl = start(agents, agent_cmd, tmp_path, broker, controllers, rest=1, api_url=api.url("/api"),
                    token="tok-rest-1", env={"SOCKETMAN_TIME_SCALE": "10"})  # retry in 3 s
    ctrl.job("r1", "echo rest; exit 2")
    ctrl.wait_event("DELIVERED", "r1")
    patches = api.wait("PATCH", "/api/operations/r1", count=2, timeout=60)
    p = patches[-1]
    assert p.query == {"access_token": ["tok-rest-1"]}
    assert p.headers["Content-Type"] == "application/json"
    assert p.headers["User-Agent"].startswith("socketman/")
    assert p.json() == {"success": False, "output": "rest\n", "exit_code": 2}
    time.sleep(0.5)
    assert ctrl.events("PROCESSED") == []
    assert "tok-rest-1" not in a.output()


def test_agent_restart_loses_no_accepted_job(agent_cmd, agents, tmp_path, broker, controllers):
    a, ctrl = start(agents, agent_cmd, tmp_path, broker, controllers)
    ctrl.job("first", "echo begun; sleep 60")
    ctrl.job("second", "echo second")
    ctrl.wait_event("DELIVERED", "second")
    # "first" has begun (DELIVERED says it was accepted, not that it runs:
    # the first start of a job may look for setsid first).
    jobs = tmp_path / "cache" / "jobs"
    end = time.monotonic() + 20
    while not any(b"begun" in (d / "out").read_bytes() for d in jobs.iterdir() if (d / "out").exists()):
        assert time.monotonic() < end, "job first never began"
        time.sleep(0.05)
    a.proc.kill()  # no clean stop: "first" is running, "second" waits
    a.proc.wait(5)
    b = agents(agent_cmd, config(tmp_path, broker), tmp_path)
    p1 = ctrl.wait_event("PROCESSED", "first", timeout=30)
    assert p1["meta"]["success"] is False
    assert p1["meta"]["msg"] == "begun\n[interrupted: agent restarted]"
    p2 = ctrl.wait_event("PROCESSED", "second", timeout=30)
    assert p2["meta"]["msg"] == "second\n"
    assert b.alive()
    time.sleep(0.3)
    assert os.listdir(tmp_path / "cache" / "jobs") == []


def test_retained_job_runs_once_and_never_again_after_a_restart(agent_cmd, agents, tmp_path, broker, controllers):
    a, ctrl = start(agents, agent_cmd, tmp_path, broker, controllers)
    ran = tmp_path / "ran"
    ctrl.send({"id": "kept", "meta": {"msg": "echo once >> %s" % ran}}, retain=True)
    ctrl.wait_event("PROCESSED", "kept")  # a live subscriber gets it unretained
    assert a.stop() == 0
    b = agents(agent_cmd, config(tmp_path, broker), tmp_path)
    r = ctrl.wait_event("REJECTED", "kept", timeout=CONNECT_S)  # the broker's retained copy
    assert "retained" in r["meta"]["reason"]
    ctrl.job("after", "true")
    ctrl.wait_event("PROCESSED", "after")
    assert ran.read_text() == "once\n"
    assert b.alive()


def _heap(agent_cmd, size):
    """agent_cmd with MicroPython's heap set to size (a router's heap)."""
    for i, word in enumerate(agent_cmd):
        if "micropython" in os.path.basename(word) and "=" not in word and not word.endswith(".py"):
            return agent_cmd[:i + 1] + ["-X", "heapsize=" + size] + agent_cmd[i + 1:]
    return agent_cmd


def test_binary_output_is_reported_and_the_queue_moves_on(agent_cmd, agents, tmp_path, broker, controllers):
    # issue 15, item 1: making 120 KB of random bytes valid UTF-8 ran
    # MicroPython out of memory; the job was retried every tick, never
    # reported, and "echo after" never ran.
    a, ctrl = start(agents, agent_cmd, tmp_path, broker, controllers, max_output=100000)
    ctrl.job("bin", "head -c 120000 /dev/urandom")
    ctrl.job("after", "echo after")
    m = ctrl.wait_event("PROCESSED", "bin", timeout=30)["meta"]
    assert m["success"] is True and "\ufffd" in m["msg"]
    assert ctrl.wait_event("PROCESSED", "after", timeout=30)["meta"]["msg"] == "after\n"


def test_binary_output_under_a_routers_heap(agent_cmd, agents, tmp_path, broker, controllers):
    a, ctrl = start(agents, _heap(agent_cmd, "1M"), tmp_path, broker, controllers)
    ctrl.job("bin", "head -c 120000 /dev/urandom")
    ctrl.job("after", "echo after")
    m = ctrl.wait_event("PROCESSED", "bin", timeout=30)["meta"]
    assert "\ufffd" in m["msg"]
    assert ctrl.wait_event("PROCESSED", "after", timeout=30)["meta"]["msg"] == "after\n"
    assert a.alive()


def test_a_leftover_job_with_binary_output_cannot_stop_the_start(agent_cmd, agents, tmp_path, broker, controllers):
    # issue 15, item 1: the restarted agent died at start-up recovering it.
    d = tmp_path / "cache" / "jobs" / "00000001-bin"
    d.mkdir(parents=True)
    (d / "job.json").write_text(json.dumps({"id": "bin", "msg": "head -c 120000 /dev/urandom", "type": "cmd"}))
    (d / "out").write_bytes(os.urandom(120000))
    (d / "rc").write_text("0\n")
    odd = tmp_path / "cache" / "jobs" / "00000002-odd"
    odd.mkdir()
    (odd / "job.json").write_bytes(os.urandom(3000))  # not even text
    ctrl = controllers(broker, BASE)
    a = agents(_heap(agent_cmd, "1M"), config(tmp_path, broker, max_output=100000), tmp_path)
    m = ctrl.wait_event("PROCESSED", "bin", timeout=CONNECT_S)["meta"]
    assert "\ufffd" in m["msg"]
    ctrl.job("after", "echo after")
    assert ctrl.wait_event("PROCESSED", "after", timeout=30)["meta"]["msg"] == "after\n"
    assert a.alive() and not odd.exists()


def test_a_result_over_the_brokers_packet_size_does_not_lock_the_device_out(
        agent_cmd, agents, tmp_path, tmp_path_factory, certs, controllers):
    # issue 15, item 2: the broker dropped the connection on the big PUBLISH,
    # the agent sent it again first after every CONNACK, and no job ever
    # arrived again. Now: subscribed and online first, and given up after a
    # few tries with a short PROCESSED that says why.
    from helpers.broker import Broker
    b = Broker(tmp_path_factory.mktemp("small-broker"), certs, extra="max_packet_size 16384\n")
    try:
        a, ctrl = start(agents, agent_cmd, tmp_path, b, controllers)
        ctrl.job("big", "head -c 40000 /dev/zero | tr '\\0' a")
        m = ctrl.wait_event("PROCESSED", "big", timeout=60)["meta"]
        assert m["success"] is False and "not delivered" in m["msg"] and "max_payload" in m["msg"]
        ctrl.job("small", "echo small")
        assert ctrl.wait_event("PROCESSED", "small", timeout=30)["meta"]["msg"] == "small\n"
        assert ctrl.events("CONNECT")[-1]["meta"]["online"] == "1"
    finally:
        b.stop()


def test_a_result_is_cut_to_max_payload_and_says_so(agent_cmd, agents, tmp_path, tmp_path_factory, certs,
                                                   controllers):
    from helpers.broker import Broker
    b = Broker(tmp_path_factory.mktemp("small-broker"), certs, extra="max_packet_size 16384\n")
    try:
        a, ctrl = start(agents, agent_cmd, tmp_path, b, controllers, max_payload=16000)
        ctrl.job("big", "head -c 40000 /dev/zero | tr '\\0' a")
        ctrl.job("small", "echo small")
        p = ctrl.wait_event("PROCESSED", "big", timeout=30)
        m = p["meta"]
        assert m["msg"].startswith("aaaa") and m["msg"].endswith("[output cut: the result was over max_payload "
                                                                  "16000 bytes]")
        assert m["success"] is True and len(json.dumps(
            {k: v for k, v in p.items() if not k.startswith("_")}, separators=(",", ":"),
            ensure_ascii=False).encode()) <= 16000
        assert ctrl.wait_event("PROCESSED", "small", timeout=30)["meta"]["msg"] == "small\n"
    finally:
        b.stop()


def patched(api, job_id):
    return api.got("PATCH", "/api/operations/" + job_id)


def test_rest_result_the_api_does_not_know_does_not_hold_back_later_ones(agent_cmd, agents, tmp_path, broker,
                                                                          controllers, http_server):
    api = http_server()
    api.decide = lambda r: (404, b"no such operation") if r.path.endswith("/gone-1") else None
    a, ctrl = start(agents, agent_cmd, tmp_path, broker, controllers, rest=1, api_url=api.url("/api"),
                    token="tok-404", env={"SOCKETMAN_TIME_SCALE": "10"})
    ctrl.job("gone-1", "echo first")
    api.wait("PATCH", "/api/operations/gone-1")
    for i in (2, 3):
        ctrl.job("next-%d" % i, "echo %d" % i)
        d = ctrl.wait_event("DELIVERED", "next-%d" % i)
        p = api.wait("PATCH", "/api/operations/next-%d" % i, timeout=10)[0]
        assert p.t - d["_t"] < 2.0  # at once, not after the refused one's retries
        assert p.json()["output"] == "%d\n" % i
    time.sleep(3)  # 30 s of the agent's time: past the first retry of an answer that can change
    assert len(patched(api, "gone-1")) == 1  # given up, not retried
    assert "does not know this operation" in a.output()
    assert os.listdir(tmp_path / "cache" / "jobs") == []


def test_rest_result_503_for_a_while_is_delivered_later(agent_cmd, agents, tmp_path, broker, controllers,
                                                        http_server):
    api = http_server()
    tries = []

    def decide(r):  # the first two PATCHes of slow-1 fail
        if r.path.endswith("/slow-1"):
            tries.append(r)
            return (503, b"busy") if len(tries) <= 2 else None
        return None
    api.decide = decide
    a, ctrl = start(agents, agent_cmd, tmp_path, broker, controllers, rest=1, api_url=api.url("/api"),
                    env={"SOCKETMAN_TIME_SCALE": "10"})
    ctrl.job("slow-1", "echo slow")
    api.wait("PATCH", "/api/operations/slow-1")
    ctrl.job("quick-2", "echo quick")
    q = api.wait("PATCH", "/api/operations/quick-2", timeout=10)[0]
    assert len(patched(api, "slow-1")) == 1  # quick-2 went first
    ps = api.wait("PATCH", "/api/operations/slow-1", count=3, timeout=20)
    assert [p.answered for p in ps] == [503, 503, 200] and q.t < ps[1].t
    assert ps[0].body == ps[2].body and ps[2].json() == {"success": True, "output": "slow\n", "exit_code": 0}
    assert 1.1 <= ps[1].t - ps[0].t <= 2.5 and 2.3 <= ps[2].t - ps[1].t <= 4.5  # 15 s, then 30 s, at 10x
    time.sleep(0.5)
    assert len(patched(api, "slow-1")) == 3
    out = a.output()
    assert out.count("warn job slow-1: result not sent") == 1 and "after 2 failed tries" in out  # once, not per try
