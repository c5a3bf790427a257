"""The agent as a process, under CPython, MicroPython and the .mpy bundle."""
import json
import os
import socket
import subprocess

import pytest

MAC = "aa:bb:cc:dd:ee:ff"


def run(cmd, *args, timeout=30, **kw):
    return subprocess.run(list(cmd) + list(args), capture_output=True, text=True, timeout=timeout, **kw)


def test_version(agent_cmd):
    r = run(agent_cmd, "--version")
    assert r.returncode == 0
    assert r.stdout.startswith("socketman ")


def test_help(agent_cmd):
    r = run(agent_cmd, "--help")
    assert r.returncode == 0
    assert "--config" in r.stdout and "-b INIT_URL" in r.stdout


@pytest.mark.parametrize("args", [["--frobnicate"], ["--config"], ["extra"], ["-b", "nota url"]])
def test_usage_errors_exit_2(agent_cmd, args):
    r = run(agent_cmd, *args)
    assert r.returncode == 2
    assert "socketman:" in r.stderr and "usage:" in r.stderr


BAD = [
    (b"{not json", "JSON"),
    (b"[1,2,3]", "object"),
    (b"", "empty"),
    (json.dumps({"mac": MAC, "port": "eighty"}).encode(), "port:"),
    (json.dumps({"mac": MAC, "port": 70000}).encode(), "port:"),
    (json.dumps({"mac": MAC, "qos": 5}).encode(), "qos:"),
    (json.dumps({"mac": MAC, "topic": "a/b"}).encode(), "topic:"),
    (json.dumps({"mac": MAC, "key": "k#"}).encode(), "key:"),
    (json.dumps({"mac": MAC, "tls": "perhaps"}).encode(), "tls:"),
    (json.dumps({"mac": "nope"}).encode(), "mac:"),
    (json.dumps({"mac": MAC, "mqtt_host": "127.0.0.1", "key": "k"}).encode(), "topic:"),
    (json.dumps({"mac": MAC, "stats_url": "gopher://x"}).encode(), "stats_url:"),
    # Valid JSON 2000 deep: CPython's json raised RecursionError (a traceback, exit 1).
    (('{"mac": "%s", "x": ' % MAC + "[" * 2000 + "]" * 2000 + "}").encode(), "nested deeper"),
    (json.dumps({"mac": MAC, "cache_dir": "/proc/socketman-nope"}).encode(), "cache_dir /proc/socketman-nope"),
    # issue 24, item 9: what an MQTT broker refuses in a UTF-8 string (see
    # test_the_broker_refuses_what_the_config_check_refuses) exits 2 at
    # once, naming the key, instead of a CONNECT refused for ever.
    (json.dumps({"mac": MAC, "topic": "fleet\t"}).encode(), "topic:"),
    (json.dumps({"mac": MAC, "key": "k1\r"}).encode(), "key:"),
    (json.dumps({"mac": MAC, "username": "device\u0085"}).encode(), "username:"),
    (json.dumps({"mac": MAC, "topic": "t\ufdd0"}, ensure_ascii=False).encode(), "topic:"),
    (json.dumps({"mac": MAC, "key": "k\U0010ffff"}, ensure_ascii=False).encode(), "key:"),
    (json.dumps({"mac": MAC, "username": "u" * 70000}).encode(), "username:"),
    (b'{"mac": "%s", "topic": "a\xc0\xafb"}' % MAC.encode(), "UTF-8"),  # "/" to MicroPython's decode()
]


@pytest.mark.parametrize("data,word", BAD, ids=[w for _, w in BAD])
def test_bad_config_exits_2_naming_the_problem(agent_cmd, tmp_path, data, word):
    p = tmp_path / "c.json"
    p.write_bytes(data)
    r = run(agent_cmd, "--config=" + str(p))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert word in lines[0]


def test_a_config_that_is_not_a_regular_file_exits_2_at_once(agent_cmd, tmp_path):
    # A FIFO blocked the agent for good in open(); a directory or a device is no config either.
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    for path in (fifo, tmp_path, "/dev/zero"):
        r = run(agent_cmd, "--config=%s" % path)
        assert r.returncode == 2 and "cannot read" in r.stderr, (path, r.stderr)


def test_missing_config_exits_2(agent_cmd, tmp_path):
    r = run(agent_cmd, "--config", str(tmp_path / "nope.json"))
    assert r.returncode == 2
    assert "nope.json" in r.stderr


def test_good_config_runs_until_stopped(agent_cmd, agents, tmp_path):
    cfg = {"mac": MAC, "cache_dir": str(tmp_path / "cache"), "password": "pw-secret-1",
           "token": "tok-secret-2", "config_dir": str(tmp_path / "etc"), "sleep": 60,
           "heartbeet": 30, "note\nsocketman: error: forged": 1}
    cfg.update(("zz%02d" % i, i) for i in range(12))  # 14 unknown keys: the first ten named, the count of the rest
    a = agents(agent_cmd, cfg, tmp_path)
    a.wait_log("starting", timeout=15)
    assert a.alive()
    assert a.stop() == 0
    out = a.output()
    assert "stopped" in out
    # Unknown keys run (PROTOCOL: ignored), each named once, on one line.
    line = ('unknown keys ignored (misspelt?): ["heartbeet", "note\\nsocketman: error: forged", "zz00", "zz01", '
            '"zz02", "zz03", "zz04", "zz05", "zz06", "zz07"] and 4 more')
    assert out.count("unknown keys") == 1 and line in out and "forged" not in out.replace(line, ""), out
    assert "pw-secret-1" not in out and "tok-secret-2" not in out


def test_logs_go_to_stderr_without_syslog_or_debug(agent_cmd, agents, tmp_path):
    cfg = {"mac": MAC, "cache_dir": str(tmp_path / "cache"), "config_dir": str(tmp_path / "etc")}
    env = {"DEBUG": "", "SOCKETMAN_SYSLOG": str(tmp_path / "no-such-socket")}
    a = agents(agent_cmd, cfg, tmp_path, debug=False, env=env)
    out = a.wait_log("socketman: info: socketman", timeout=15)
    assert "starting" in out
    assert a.stop() == 0


def test_logs_go_to_syslog_without_debug(agent_cmd, agents, tmp_path):
    path = str(tmp_path / "log.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(path)
    srv.settimeout(15)
    try:
        cfg = {"mac": MAC, "cache_dir": str(tmp_path / "cache"), "config_dir": str(tmp_path / "etc"),
               "password": "pw-secret-3"}
        a = agents(agent_cmd, cfg, tmp_path, debug=False, env={"DEBUG": "", "SOCKETMAN_SYSLOG": path})
        msg = srv.recv(1024)
        assert msg.startswith(b"<30>socketman: socketman ") and b"starting" in msg, msg
        assert a.stop() == 0
        assert a.output() == ""
    finally:
        srv.close()


def _switches(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    return 0


def test_an_agent_with_no_broker_sleeps_instead_of_spinning(agent_cmd, agents, tmp_path):
    # issue 13: with no socket to poll the loop slept with MicroPython's
    # time.sleep_ms, which wakes every half millisecond (1700 context
    # switches a second, 2 % of a core); an agent waiting for its broker did
    # the same.
    import time

    from helpers.device import config
    a = agents(agent_cmd, config(tmp_path), tmp_path)
    a.wait_log("socketman", timeout=10)
    time.sleep(2)
    before = _switches(a.proc.pid)
    time.sleep(3)
    assert _switches(a.proc.pid) - before < 60


def test_the_broker_refuses_what_the_config_check_refuses(broker):
    # The characters config.py refuses in topic, key and username (MQTT
    # 3.1.1 section 1.5.3), each in the will topic of a CONNECT sent to the
    # real Mosquitto over a raw socket: it closes the connection without a
    # CONNACK. The same CONNECT without it is accepted.
    from helpers.broker import PASSWORD, USER
    from socketman import mqttpacket

    def connack(topic):
        pkt = mqttpacket.connect("sm-test", True, 30, will=(topic, b"0", False, 1), user=USER, password=PASSWORD)
        with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as s:
            s.sendall(pkt)
            try:
                return s.recv(4)
            except ConnectionResetError:
                return b""

    assert connack("status/fleet/k1/aa") == b"\x20\x02\x00\x00"
    for ch in ("\t", "\r", "\x7f", "\x85", "\ufdd0", "\uffff", "\U0010fffe"):
        assert connack("status/fleet" + ch + "/k1/aa") == b"", repr(ch)
