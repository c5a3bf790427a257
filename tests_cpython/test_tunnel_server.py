"""The fleet server's tunnel service (issue 22, PROTOCOL 11) with real parts:
the server as a process (uvicorn), a real Mosquitto, the device played by a
test client that speaks PROTOCOL 11 (helpers/tunnel.py: MQTT as a device,
the WebSocket with its token, MAC and subprotocol, masked binary frames) and
relays to a real local TCP service, and the operator's WebSocket with an API
token or the dashboard's session cookie.

One server, one broker and one device serve the whole module; the device's
behaviour (relay, ignore the job, refuse it) is set per test."""
import hashlib
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from helpers import net, tunnel
from helpers.broker import Broker
from helpers.fleet import ROOT, SERVER_MAIN, FleetServer
from helpers.signing import JOB_KEY

CLI = os.path.join(ROOT, "server", "socketman-server")
MAC = "02:7e:00:00:00:01"
OFFLINE_MAC = "02:7e:00:00:00:09"
WAIT_S = 3


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, certs):
    tmp = tmp_path_factory.mktemp("tunnels")
    broker = Broker(tmp, certs)
    srv = FleetServer(tmp, broker, job_key=JOB_KEY, args=["--tunnel-wait", str(WAIT_S)])
    echo, hangup = tunnel.EchoServer(), tunnel.EchoServer(greeting=b"bye now\n", then_close=True)
    hose = tunnel.Firehose()
    dev = tunnel.TunnelDevice(srv, broker, MAC, {7: echo.port, 13: hangup.port, 19: hose.port}, name="lobby",
                              job_key=JOB_KEY)
    srv.post_form("/provisioning", {"mac": OFFLINE_MAC, "name": "cellar"})
    tokens = {name: srv.token(name) for name in ("admin", "oper", "viewer")}
    yield srv, dev, tokens
    assert "Traceback" not in srv.output() and "Exception in ASGI" not in srv.output(), srv.output()
    dev.close()
    echo.close()
    hangup.close()
    hose.close()
    srv.stop()
    broker.stop()


@pytest.fixture
def device(fleet):
    srv, dev, tokens = fleet
    dev.mode, dev.bad_first = "relay", []
    yield dev
    srv.wait(lambda: not srv.store().device_tunnels(srv.store().device(MAC)["id"])[0], 15,
             "every tunnel of the test closed")


def rows(srv, mac=MAC):
    st = srv.store()
    try:
        return st.device_tunnels(st.device(mac)["id"], closed_limit=50)
    finally:
        st.close()


def audit(srv, action, **kw):
    st = srv.store()
    try:
        return st.audit_log(action=action, **kw)
    finally:
        st.close()


def statuses(ws, until="open", timeout=WAIT_S + 5):
    """The status text frames until `until` (JSON dicts)."""
    import json
    got = []
    while not got or got[-1].get("state") != until:
        msg = ws.recv(timeout)
        assert isinstance(msg, str), msg[:100]
        got.append(json.loads(msg))
    return got


def closed_with(ws, timeout=WAIT_S + 5):
    """(close code, reason) once the server closed the operator's side;
    binary frames before it are returned too."""
    from websockets.exceptions import ConnectionClosed
    data = b""
    try:
        while True:
            msg = ws.recv(timeout)
            if isinstance(msg, bytes):
                data += msg
    except ConnectionClosed:
        pass
    return ws.close_code, ws.close_reason, data


def test_relay_both_ways_byte_exact_recorded_and_audited(fleet, device):
    """3 MiB through an echo service on the device: what comes back is
    byte for byte what went (both directions at once, each with its own
    pace); the job is signed and names the tunnel's one-time URL; the
    operator's close closes the device's side; the row and both audit
    records carry the bytes."""
    srv, dev, tokens = fleet
    payload = os.urandom(3 * 1024 * 1024)
    ws = tunnel.operator(srv, tokens["oper"], MAC.replace(":", "-"), 7)
    assert ws.subprotocol == "socketman-tunnel"
    info = statuses(ws)
    assert [s["state"] for s in info][0] == "waiting" and info[-1]["state"] == "open"
    tid = info[0]["tunnel"]
    assert len(tid) == 32 and info[0]["device"] == MAC.upper() and info[0]["port"] == 7
    job = dev.jobs[-1]
    assert job["meta"] == {"type": "tunnel", "msg": "7 ws://127.0.0.1:%d/tunnel/%s" % (srv.port, tid)}
    assert job["sig"]  # checked by the device against the job key

    def send():
        for i in range(0, len(payload), 50000):  # not a multiple of anything the relay uses
            ws.send(payload[i:i + 50000])
    th = threading.Thread(target=send)
    th.start()
    back = bytearray()
    while len(back) < len(payload):
        back += ws.recv(20)
    th.join(10)
    assert hashlib.sha256(back).hexdigest() == hashlib.sha256(payload).hexdigest()
    live, _ = rows(srv)
    assert [t["tunnel_id"] for t in live] == [tid] and live[0]["state"] == "open"
    srv.wait(lambda: rows(srv)[0][0]["bytes_from_device"] == len(payload), 5, "live byte counts")
    ws.close()
    srv.wait(lambda: not rows(srv)[0], 10, "the tunnel closed")
    t = rows(srv)[1][0]
    assert (t["tunnel_id"], t["outcome"], t["detail"], t["operator"], t["via"].startswith("token ")) == \
        (tid, "closed", "the operator closed the tunnel", "oper", True)
    assert (t["bytes_to_device"], t["bytes_from_device"], t["port"]) == (len(payload), len(payload), 7)
    assert t["opened_at"] <= t["connected_at"] <= t["closed_at"]
    srv.wait(lambda: dev.closes and dev.closes[-1][0] == 1000, 10, "the device's side closed normally")
    opened = audit(srv, "tunnel.open", target=MAC.upper())[0]
    assert (opened["operator"], opened["outcome"]) == ("oper", "sent") and tid in opened["detail"]
    closed = audit(srv, "tunnel.close", target=MAC.upper())[0]
    assert closed["outcome"] == "closed"
    assert "%d bytes to the device, %d bytes from it" % (len(payload), len(payload)) in closed["detail"]
    # The device's answer to the job: PROCESSED, as any job's.
    st = srv.store()
    try:
        srv.wait(lambda: st.job(job["id"])["state"] == "PROCESSED", 10, "the tunnel job's result")
        assert st.job(job["id"])["output"].startswith("closed: %d bytes in" % len(payload))
    finally:
        st.close()


def test_the_id_is_good_once_and_only_for_its_device(fleet, device):
    """A wrong token, a wrong MAC or no subprotocol is refused and does not
    use the id up; the device's own connection then opens it; a second
    connection with the same id is refused (404), and after the end too."""
    srv, dev, tokens = fleet
    dev.bad_first = [
        ("token of another device", lambda u: u.replace(dev.token, srv.store().device(OFFLINE_MAC)["token"])),
        ("wrong MAC", lambda u: u.replace("mac=" + MAC.replace(":", "%3A"), "mac=02%3A7e%3A00%3A00%3A00%3A09")),
        ("no token", lambda u: u.replace(dev.token, "")),
        ("no subprotocol", lambda u: u),
    ]
    ws = tunnel.operator(srv, tokens["admin"], MAC, 7)
    statuses(ws)
    assert dev.refusals == [("token of another device", 403), ("wrong MAC", 403), ("no token", 403),
                            ("no subprotocol", 400)]
    ws.send(b"ping")
    assert ws.recv(5) == b"ping"
    url = dev.urls[-1]
    assert tunnel.refusal(lambda: tunnel.connect_device(url))[0] == 404  # used
    ws.close()
    srv.wait(lambda: not rows(srv)[0], 10, "the tunnel closed")
    assert tunnel.refusal(lambda: tunnel.connect_device(url))[0] == 404  # and still after


def test_a_device_that_does_not_connect_expires(fleet, device):
    """The device takes the job and never connects: after --tunnel-wait the
    operator is told why (4408) and a late connection is refused."""
    srv, dev, tokens = fleet
    dev.mode = "ignore"
    t0 = time.monotonic()
    ws = tunnel.operator(srv, tokens["oper"], "lobby", 7)  # by its name
    code, reason, _ = closed_with(ws)
    assert code == 4408 and reason == "the device did not connect within %d s" % WAIT_S, (code, reason)
    assert WAIT_S - 0.5 < time.monotonic() - t0 < WAIT_S + 4
    tid = rows(srv)[1][0]["tunnel_id"]
    late = dev.device_url("ws://127.0.0.1:%d/tunnel/%s" % (srv.port, tid))
    assert tunnel.refusal(lambda: tunnel.connect_device(late))[0] == 404
    t = rows(srv)[1][0]
    assert (t["outcome"], t["connected_at"], t["bytes_to_device"]) == ("expired", None, 0)
    assert audit(srv, "tunnel.close", target=MAC.upper())[0]["outcome"] == "expired"
    # Until the device answers the job (the agent does once its late
    # connection is refused) the tunnel still holds one of its 4 slots.
    st = srv.store()
    try:
        dev_id = st.device(MAC)["id"]
        assert st.tunnels_open_count(dev_id) == 1
        dev._publish("PROCESSED", "pub", t["job_id"], success=False, exit_code=1, msg="the server answered 404")
        srv.wait(lambda: st.tunnels_open_count(dev_id) == 0, 10, "the device's slot free")
    finally:
        st.close()


def test_the_device_refusing_the_job_ends_the_tunnel_at_once(fleet, device):
    """A port the device does not allow (REJECTED, PROTOCOL 11): the
    operator hears it within a tick or two, with the device's reason."""
    srv, dev, tokens = fleet
    t0 = time.monotonic()
    ws = tunnel.operator(srv, tokens["oper"], MAC, 8022)
    code, reason, _ = closed_with(ws)
    assert code == 4403 and "port 8022 is not in tunnel_ports" in reason, (code, reason)
    assert time.monotonic() - t0 < WAIT_S
    assert rows(srv)[1][0]["outcome"] == "refused"


def test_a_slow_reader_holds_the_writer_back(fleet, device):
    """The device's service sends as fast as it can while the operator
    reads nothing: the server stops reading the device (the count of bytes
    it relayed stops growing, its memory does not grow with the offered
    stream), and everything flows again once the operator reads."""
    srv, dev, tokens = fleet
    ws = tunnel.operator(srv, tokens["oper"], MAC, 19)
    statuses(ws)
    rss0 = tunnel.rss_kib(srv.proc.pid)
    time.sleep(1.5)  # loopback moves GBs a second: every buffer on the way is full by now
    held = rows(srv)[0][0]["bytes_from_device"]
    time.sleep(2)
    assert rows(srv)[0][0]["bytes_from_device"] == held, "the server kept reading a device nobody reads from"
    assert held < 32 * 1024 * 1024, held  # socket buffers and a few frames, not the stream
    assert tunnel.rss_kib(srv.proc.pid) - rss0 < 16 * 1024
    got = 0
    while got < held + 20 * 1024 * 1024:
        got += len(ws.recv(10))
    ws.close()


def test_either_side_closing_ends_both(fleet, device):
    """The device's service hangs up after a greeting: the operator gets the
    greeting, then a normal close. (The operator's close is the first
    test's.)"""
    srv, dev, tokens = fleet
    ws = tunnel.operator(srv, tokens["oper"], MAC, 13)
    statuses(ws)
    code, reason, data = closed_with(ws)
    assert (code, reason, data) == (1000, "the device closed the tunnel", b"bye now\n")
    srv.wait(lambda: not rows(srv)[0], 10, "the tunnel closed")
    t = rows(srv)[1][0]
    assert (t["outcome"], t["detail"], t["bytes_from_device"]) == ("closed", "the device closed the tunnel", 8)


def test_close_on_the_dashboard_closes_both_sides(fleet, device):
    """"Close" (POST, operator role, CSRF token): both sides get 4499 within
    about a second; a viewer cannot; the audit log says who did it."""
    srv, dev, tokens = fleet
    ws = tunnel.operator(srv, tokens["admin"], MAC, 7)
    tid = statuses(ws)[0]["tunnel"]
    ws.send(b"x" * 1000)
    assert ws.recv(5) == b"x" * 1000
    path = "/devices/%s/tunnels/%s/close" % (MAC.replace(":", "-"), tid)
    assert srv.post_form(path, {}, auth="viewer").status == 403
    srv.wait(lambda: rows(srv)[0][0]["bytes_to_device"] == 1000, 5, "the live byte count")
    page = srv.get("/live/devices/%s/tunnels" % MAC.replace(":", "-"), auth="viewer").text()
    assert tid in page and "1000 B" in page and "tunnel-close" not in page  # a viewer sees no Close
    listed = srv.get("/devices/%s/tunnels.json" % MAC.replace(":", "-"), auth="viewer").json()
    assert [(t["tunnel_id"], t["state"], t["operator"], t["port"]) for t in listed["open"]] == \
        [(tid, "open", "admin", 7)]
    assert srv.post_form(path, {}, auth="oper").status == 303
    code, reason, _ = closed_with(ws)
    assert code == 4499 and reason == "closed on the dashboard by oper"
    srv.wait(lambda: dev.closes and dev.closes[-1][0] == 4499, 10, "the device's side closed too")
    t = rows(srv)[1][0]
    assert (t["outcome"], t["close_requested_by"], t["operator"]) == ("closed", "oper", "admin")
    rec = audit(srv, "tunnel.close", target=MAC.upper())
    assert [(r["operator"], r["outcome"]) for r in rec[:2]] == [("oper", "closed"), ("oper", "requested")]
    assert "(opened by admin)" in rec[0]["detail"]
    assert srv.post_form(path, {}, auth="oper").status == 404  # closed already


def test_who_may_open_one(fleet, device):
    """Only an operator or admin, with a live API token or a session cookie
    sent by the dashboard's own origin. The device must exist, be admitted
    and online."""
    srv, dev, tokens = fleet
    mac = MAC.replace(":", "")  # a MAC without separators works too
    assert tunnel.refusal(lambda: tunnel.operator(srv, None, mac, 7, headers={}))[0] == 401
    assert tunnel.refusal(lambda: tunnel.operator(srv, "smt_" + "x" * 43, mac, 7))[0] == 401
    status, error = tunnel.refusal(lambda: tunnel.operator(srv, tokens["viewer"], mac, 7))
    assert (status, error) == (403, "your role (viewer) cannot open tunnels: it needs operator")
    denied = audit(srv, "tunnel.open", outcome="denied")[0]
    assert (denied["operator"], denied["target"]) == ("viewer", mac)
    revoked = srv.token("oper")
    st = srv.store()
    try:
        st.revoke_token([t for t in st.tokens("oper") if revoked.startswith(t["prefix"])][0]["id"])
    finally:
        st.close()
    assert tunnel.refusal(lambda: tunnel.operator(srv, revoked, mac, 7))[0] == 401
    # The dashboard's session cookie: good from the dashboard's own origin,
    # refused from a page of another site (which can open WebSockets with it).
    origin = "http://127.0.0.1:%d" % srv.port
    for name, hdr, status in (("oper", {"Origin": "http://evil.example"}, 401),
                              ("oper", {"Origin": "null"}, 401),
                              ("viewer", {"Origin": origin}, 403)):
        cookie = "; ".join("%s=%s" % kv for kv in srv.session(name).cookies.items())
        got = tunnel.refusal(tunnel.operator, srv, None, mac, 7, headers=dict(hdr, Cookie=cookie))
        assert got[0] == status, (name, hdr, got)
    cookie = "; ".join("%s=%s" % kv for kv in srv.session("oper").cookies.items())
    # X-Forwarded-* are not believed without --behind-proxy: the audit
    # record has the real client address.
    ws = tunnel.operator(srv, None, mac, 7, headers={"Origin": origin, "Cookie": cookie,
                                                     "X-Forwarded-For": "203.0.113.9"})
    statuses(ws)
    ws.close()
    sent = audit(srv, "tunnel.open", outcome="sent")[0]
    assert (sent["operator"], sent["via"], sent["address"]) == ("oper", "password", "127.0.0.1")
    # What the device and port must be.
    for device_ref, port, status, words in (("nope", 22, 404, "no device has the MAC or name 'nope'"),
                                            (MAC, 0, 400, "the port must be"),
                                            (MAC, "http", 400, "the port must be"),
                                            ("", 22, 400, "name the device"),
                                            (OFFLINE_MAC, 22, 409, "never connected to the broker")):
        got = tunnel.refusal(tunnel.operator, srv, tokens["oper"], device_ref, port)
        assert got[0] == status and words in got[1], (device_ref, port, got)


def test_refusals_are_one_line_and_exit_255(fleet, device):
    """As ssh: a tunnel the server does not open is one line on stderr and
    exit status 255, through ssh as ProxyCommand too. (The device's own
    refusals: test_tunnel_e2e.py.)"""
    srv, dev, tokens = fleet
    env = dict(os.environ, SOCKETMAN_SERVER="http://127.0.0.1:%d" % srv.port, SOCKETMAN_TOKEN=tokens["oper"],
               PATH=os.path.dirname(CLI) + os.pathsep + os.environ["PATH"])
    viewer = dict(env, SOCKETMAN_TOKEN=tokens["viewer"])
    no_token = {k: v for k, v in env.items() if k != "SOCKETMAN_TOKEN"}
    no_token["HOME"] = srv.dir  # no ~/.config/socketman/token either
    down = dict(env, SOCKETMAN_SERVER="http://127.0.0.1:9")
    for e, ref, words in ((env, "nowhere", "no device has the MAC or name 'nowhere' (HTTP 404)"),
                          (viewer, "lobby", "your role (viewer) cannot open tunnels: it needs operator (HTTP 403)"),
                          (no_token, "lobby", "no API token"),
                          (down, "lobby", "cannot open a tunnel through http://127.0.0.1:9")):
        r = subprocess.run([CLI, "ssh", ref], env=e, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
        lines = r.stderr.decode().splitlines()
        assert r.returncode == 255 and len(lines) == 1 and lines[0].startswith("socketman-server ssh: ") \
            and words in lines[0], r
    r = subprocess.run(["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "ProxyCommand=socketman-server ssh %h",
                        "root@nowhere", "true"], env=env, capture_output=True, timeout=30)
    assert r.returncode == 255 and b"no device has the MAC or name 'nowhere'" in r.stderr, r


def test_four_tunnels_per_device_at_most(fleet, device):
    """PROTOCOL 11: a device opens 4 at once; the server refuses a fifth
    (429) rather than send a job the device would refuse."""
    srv, dev, tokens = fleet
    open_ = [tunnel.operator(srv, tokens["oper"], MAC, 7) for _ in range(4)]
    for ws in open_:
        statuses(ws)
    status, error = tunnel.refusal(lambda: tunnel.operator(srv, tokens["oper"], MAC, 7))
    assert status == 429 and "4 tunnels open" in error
    for ws in open_:
        ws.close()


def test_a_clean_stop_closes_open_tunnels(tmp_path, broker):
    """SIGTERM while a tunnel is open: both sides are closed, the row says
    the server stopped, and the server exits 0."""
    srv = FleetServer(tmp_path, broker)
    echo = tunnel.EchoServer()
    dev = tunnel.TunnelDevice(srv, broker, "02:7e:00:00:00:05", {22: echo.port})
    try:
        ws = tunnel.operator(srv, srv.token("oper"), "02:7e:00:00:00:05", 22)
        statuses(ws)
        ws.send(b"hello")
        assert ws.recv(5) == b"hello"
        st = srv.store()
        srv.proc.terminate()
        assert srv.proc.wait(20) == 0
        code, _, _ = closed_with(ws)
        assert code in (1001, 1012), code  # uvicorn says "restarting" (1012) to every WebSocket it stops
        t = st.device_tunnels(st.device("02:7e:00:00:00:05")["id"])[1][0]
        assert (t["outcome"], t["detail"], t["bytes_to_device"]) == ("stopped", "the server stopped", 5)
        st.close()
        assert "Traceback" not in srv.output()
    finally:
        dev.close()
        echo.close()
        srv.stop()


def test_a_frame_over_64_kib_closes_the_tunnel(fleet, device):
    """PROTOCOL 11's cap: a bigger message is refused with 1009 (and the
    tunnel ends); 64 KiB passes."""
    srv, dev, tokens = fleet
    ws = tunnel.operator(srv, tokens["oper"], MAC, 7)
    statuses(ws)
    ws.send(b"a" * 65536)
    got = b""
    while len(got) < 65536:
        got += ws.recv(5)
    ws.send(b"b" * 65537)
    code, _, _ = closed_with(ws)
    assert code == 1009
    srv.wait(lambda: not rows(srv)[0], 10, "the tunnel closed")
    assert rows(srv)[1][0]["detail"].startswith("the operator closed the tunnel (1009")


def test_behind_a_proxy_and_a_tunnel_url(tmp_path, broker):
    """With --behind-proxy 1 the handshake's X-Forwarded-For and -Host are
    believed (the address in the audit log; the Origin check against the
    browser's host when the proxy rewrote Host); --tunnel-url (http made
    ws) is what the tunnel job names."""
    from helpers import net
    port = net.free_port()
    srv = FleetServer(tmp_path, broker, port=port,
                      args=["--behind-proxy", "1", "--tunnel-url", "http://127.0.0.1:%d/" % port])
    echo = tunnel.EchoServer()
    dev = tunnel.TunnelDevice(srv, broker, "02:7e:00:00:00:06", {22: echo.port})
    try:
        cookie = "; ".join("%s=%s" % kv for kv in srv.session("oper").cookies.items())
        proxied = {"Cookie": cookie, "Origin": "https://fleet.example.net", "X-Forwarded-Host": "fleet.example.net",
                   "X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https"}
        ws = tunnel.operator(srv, None, "02:7e:00:00:00:06", 22, headers=proxied)
        statuses(ws)
        assert dev.jobs[-1]["meta"]["msg"].startswith("22 ws://127.0.0.1:%d/tunnel/" % port)
        ws.close()
        rec = audit(srv, "tunnel.open", outcome="sent")[0]
        assert rec["address"] == "198.51.100.7"
        # The host the proxy says the browser used must be the Origin's.
        assert tunnel.refusal(tunnel.operator, srv, None, "02:7e:00:00:00:06", 22,
                              headers=dict(proxied, Origin="https://evil.example"))[0] == 401
        # Forgetting the device ends its open tunnel (4410).
        ws = tunnel.operator(srv, srv.token("oper"), "02:7e:00:00:00:06", 22)
        statuses(ws)
        assert srv.post_form("/devices/02-7E-00-00-00-06/forget", {}).status == 303
        assert closed_with(ws)[:2] == (4410, "the device was forgotten")
        assert audit(srv, "tunnel.close", target="02:7E:00:00:00:06")[0]["outcome"] == "gone"
    finally:
        dev.close()
        echo.close()
        srv.stop()


@pytest.mark.parametrize("argv, words", [
    (["serve", "--tunnel-wait", "0"], "--tunnel-wait"),
    (["serve", "--tunnel-wait", "601"], "--tunnel-wait"),
    (["serve", "--tunnel-url", "ftp://fleet.example.net"], "--tunnel-url"),
    (["serve", "--tunnel-url", "wss://fleet.example.net/?x=1"], "--tunnel-url"),
    (["forward", "aa-bb-cc-dd-ee-ff", "80", "--listen", "nowhere", "--token-file", os.devnull], "token file"),
])
def test_bad_tunnel_settings_exit_2(tmp_path, argv, words):
    """A setting that cannot work is one line and exit 2."""
    db = ["--db", "sqlite:///" + str(tmp_path / "x.db")] if argv[0] == "serve" else []
    r = subprocess.run([sys.executable, SERVER_MAIN] + argv + db, capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and words in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr


def test_serve_on_a_taken_port_says_so(tmp_path):
    """One line and exit 1, before anything starts (no banner saying it
    serves)."""
    import socket
    taken = socket.create_server(("127.0.0.1", 0))
    try:
        r = subprocess.run([sys.executable, SERVER_MAIN, "serve", "--db", "sqlite:///" + str(tmp_path / "x.db"),
                            "--listen", "127.0.0.1:%d" % taken.getsockname()[1], "--mqtt-port", "1"],
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    finally:
        taken.close()
    assert (r.returncode, r.stdout) == (1, ""), r
    assert r.stderr.startswith("socketman-server: cannot listen on 127.0.0.1:") and len(r.stderr.splitlines()) == 1


def test_bad_cli_input(tmp_path):
    """The operator's commands: a bad command line exits 2 (a bad --listen
    with one line; a port out of range, argparse's usage and its reason),
    as the module says; nothing is listened on or asked of the server."""
    token = tmp_path / "token"
    token.write_text("smt_" + "x" * 43 + "\n")
    token.chmod(0o600)
    for argv, lines, words in ((["forward", "aa-bb-cc-dd-ee-ff", "80", "--listen", "nowhere"], 1, "HOST:PORT"),
                               (["forward", "aa-bb-cc-dd-ee-ff", "0"], 0, "'0' is not a whole number from 1 to 65535"),
                               (["ssh", "aa-bb-cc-dd-ee-ff", "--port", "70000"], 0,
                                "'70000' is not a whole number from 1 to 65535"),
                               (["ssh", "aa-bb-cc-dd-ee-ff", "--port", "ssh"], 0, "'ssh' is not a whole number"),
                               (["ssh", "aa-bb-cc-dd-ee-ff", "--port", "+22"], 0, "'+22' is not a whole number"),
                               (["ssh", "aa-bb-cc-dd-ee-ff", "--port", " 22"], 0, "' 22' is not a whole number"),
                               (["ssh", "aa-bb-cc-dd-ee-ff", "--port", "2_2"], 0, "'2_2' is not a whole number"),
                               (["ssh", "aa-bb-cc-dd-ee-ff", "--port", "\u0662\u0662"], 0, "is not a whole number"),
                               (["forward", " ", "80"], 1, "name the device: a MAC (any common form) or a device "
                                                          "name, not an empty string")):
        r = subprocess.run([sys.executable, SERVER_MAIN] + argv + ["--token-file", str(token), "--server",
                                                                   "http://127.0.0.1:9"],
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert r.returncode == 2 and r.stdout == "", (argv, r)
        assert words in r.stderr.splitlines()[-1] and (not lines or len(r.stderr.splitlines()) == lines), (argv, r)


def test_forward_looks_the_device_up_before_it_listens(fleet, tmp_path):
    """`forward` to a device the server does not know, or with a viewer's
    token, is refused at once (one line, exit 255) and never listens; a
    device's name works as well as its MAC."""
    srv, dev, tokens = fleet
    base = [sys.executable, SERVER_MAIN, "forward"]
    server = ["--server", "http://127.0.0.1:%d" % srv.port]
    for who, ref, words in (("oper", "nosuch", "no device has the MAC or name 'nosuch' (HTTP 404)"),
                            ("oper", "02:7e:00:00:00:77",
                             "no device has the MAC or name '02:7e:00:00:00:77' (HTTP 404)"),
                            ("viewer", "lobby", "your role cannot open tunnels: it needs operator (HTTP 403)")):
        token = tmp_path / who
        token.write_text(tokens[who] + "\n")
        token.chmod(0o600)
        port = net.free_port()
        r = subprocess.run(base + [ref, "7", "--listen", "127.0.0.1:%d" % port, "--token-file", str(token)] + server,
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert (r.returncode, r.stdout) == (255, ""), r
        assert r.stderr == "socketman-server forward: %s\n" % words, r
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # it never listened there
    # A name with a "/" in it (names may hold one) is looked up too.
    srv.post_form("/provisioning", {"mac": "02:7e:00:00:00:0a", "name": "lab/ap1"})
    for ref in ("LOBBY", "lab/ap1"):
        p = subprocess.Popen(base + [ref, "7", "--listen", "127.0.0.1:0", "--token-file", str(tmp_path / "oper")]
                             + server, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             stdin=subprocess.DEVNULL)
        try:
            assert "%s port 7 on 127.0.0.1:" % ref in p.stdout.readline()
        finally:
            p.kill()
            p.communicate(timeout=30)
