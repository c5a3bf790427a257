"""Tunnels end to end with every real part (issue 22, PROTOCOL 11): the agent
as a real process, admitted on the reference fleet server (a real process:
uvicorn, the tunnel service) with the config the server hands out, a real
Mosquitto carrying the signed tunnel job, Debian's dropbear on a loopback
port as the device's SSH server, and on the operator's side OpenSSH's ssh
and scp with `socketman-server ssh %h --port %p` as ProxyCommand and an
API token, or `socketman-server forward`.

The test's dropbear listens on a free port P, not 22: the device's
tunnel_ports is [P] and the operator asks for port P (`ssh -p P`, which
the ProxyCommand passes on as --port %p), as the demo does.

The full runtime matrix runs ssh and scp; what happens around the relay
runs on CPython and the native 1.23 with the .mpy bundle."""
import asyncio
import concurrent.futures
import hashlib
import http.server
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.request

import pytest

from helpers import net, openwrt
from helpers import sshd as sshd_helpers
from helpers.broker import Broker
from helpers.device import config
from helpers.fleet import ROOT, FleetServer
from helpers.signing import JOB_KEY

RUNTIMES = ("cpython", "mpy1.23", "mpy1.23-bundle", "mips1.23-bundle")
FEW = ("cpython", "mpy1.23-bundle")
CLI = os.path.join(ROOT, "server", "socketman-server")
MACS = {"cpython": "02:e7:00:00:00:01", "mpy1.23": "02:e7:00:00:00:02", "mpy1.23-bundle": "02:e7:00:00:00:03",
        "mips1.23-bundle": "02:e7:00:00:00:04"}
CLOSED = re.compile(r"closed: (\d+) bytes in, (\d+) bytes out, (\d+) s")

pytestmark = pytest.mark.skipif(sshd_helpers.missing() is not None, reason=sshd_helpers.missing() or "")


class Page(http.server.BaseHTTPRequestHandler):
    """The device's web interface (LuCI's stand-in), on loopback."""

    def do_GET(self):
        body = ("<html><title>LuCI</title><body>router page %s</body></html>" % self.path).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


class Site:
    """What every test of the module shares: Mosquitto, the fleet server
    (signed jobs), dropbear, a web page, and the operator's environment
    (the CLI on PATH, the server's URL, an operator's API token)."""

    def __init__(self, tmp, certs):
        self.tmp, self.certs = tmp, certs
        self.broker = self.srv = self.sshd = self.web = None
        try:
            self.broker = Broker(tmp, certs)
            self.srv = FleetServer(tmp, broker=self.broker, job_key=JOB_KEY, args=["--tunnel-wait", "30"])
            self.sshd = sshd_helpers.Dropbear(tmp)
        except BaseException:  # what started must not outlive a failed start
            self.close()
            raise
        self.web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
        self.web_port = self.web.server_address[1]
        threading.Thread(target=self.web.serve_forever, daemon=True).start()
        self.env = dict(os.environ, SOCKETMAN_SERVER="http://127.0.0.1:%d" % self.srv.port,
                        SOCKETMAN_TOKEN=self.srv.token("oper"),
                        PATH=os.path.dirname(CLI) + os.pathsep + os.environ["PATH"])

    def close(self):
        if self.web:
            self.web.shutdown()
        for part in (self.sshd, self.srv, self.broker):
            if part:
                part.stop()

    def agent(self, runtime, agent_cmd, agents, tmp_path, srv=None, env=None, mac=None, **kw):
        """The agent of this runtime on a fake OpenWRT, with the config the
        server hands out (tunnel_ports: dropbear's port and the web page's),
        online on the server. (agent, its MAC, the name ssh uses for it)."""
        srv = srv or self.srv
        mac = mac or MACS[runtime]
        srv.post_form("/provisioning", {"mac": mac})
        served = srv.get("/devices/%s/config.json" % mac.upper().replace(":", "-")).json()
        assert served["job_key"] == JOB_KEY
        fenv, fcfg = openwrt.make(tmp_path)
        fenv.update(env or {})
        cfg = config(tmp_path, **dict(fcfg, **served))
        cfg.update(dict(mac=mac, tunnel_ports=[self.sshd.port, self.web_port]), **kw)
        a = agents(agent_cmd, cfg, tmp_path, env=fenv)
        st = srv.store()
        try:
            srv.wait(lambda: st.device(mac)["online"], 90 if runtime.startswith("mips") else 30, "the agent online")
        finally:
            st.close()
        return a, mac, mac.replace(":", "-")

    def ssh_argv(self, program="ssh", port=None):
        """OpenSSH with the test's key and the ProxyCommand of the README."""
        return [program, "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR",
                "-i", self.sshd.key, "-o", "ProxyCommand=socketman-server ssh %h --port %p",
                "-P" if program == "scp" else "-p", str(port or self.sshd.port)]

    def ssh(self, name, command, timeout=120, port=None, env=None, **kw):
        return subprocess.run(self.ssh_argv(port=port) + ["%s@%s" % (self.sshd.user, name), command],
                              env=env or self.env, capture_output=True, timeout=timeout, **kw)

    def ssh_bg(self, name, command, env=None):
        return subprocess.Popen(self.ssh_argv() + ["%s@%s" % (self.sshd.user, name), command], env=env or self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.PIPE)

    def tunnels(self, mac, srv=None):
        """(open tunnel rows, the last 10 closed ones) of a device."""
        srv = srv or self.srv
        st = srv.store()
        try:
            return st.device_tunnels(st.device(mac)["id"], closed_limit=10)
        finally:
            st.close()

    def run_job(self, mac, command, timeout=30):
        """A fleet job of one shell command to the device, from the
        dashboard: its result row once PROCESSED."""
        r = self.srv.post_form("/fleet-jobs", {"command": command, "type": "cmd", "target": "selected",
                                               "mac": [mac.upper()]})
        assert r.status == 303, r
        fid = int(r.headers["Location"].rsplit("/", 1)[1])
        st = self.srv.store()
        try:
            return self.srv.wait(lambda: [x for x in st.fleet_job(fid)[1] if x["state"] == "PROCESSED"], timeout,
                                 "the job's result")[0]
        finally:
            st.close()

    def job(self, job_id, srv=None):
        st = (srv or self.srv).store()
        try:
            return st.job(job_id)
        finally:
            st.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory, certs):
    s = Site(tmp_path_factory.mktemp("tunnel-e2e"), certs)
    yield s
    s.close()


def why(a, site, srv=None):
    """The agent's and the server's last words, for a failing assertion."""
    return "agent:\n%s\nserver:\n%s" % (a.output()[-4000:], (srv or site.srv).output()[-4000:])


def ended(site, mac, count, srv=None, timeout=30):
    """The last `count` closed tunnels of a device, once none is open and
    the agent's answer to each tunnel job (PROCESSED) is recorded."""
    srv = srv or site.srv

    def done():
        live, closed = site.tunnels(mac, srv)
        if live or len(closed) < count or any(site.job(t["job_id"], srv)["state"] != "PROCESSED"
                                              for t in closed[:count]):
            return None
        return closed[:count]
    return srv.wait(done, timeout, "the tunnels closed and answered")


def test_ssh_and_scp(site, runtime, agent_cmd, agents, tmp_path):
    """`ssh ... echo hello` answers; scp -O of 5 MB to the device and back
    arrives intact; each is a tunnel of its own, recorded with its bytes,
    which are the agent's counts in its answer to the tunnel job."""
    a, mac, name = site.agent(runtime, agent_cmd, agents, tmp_path)
    r = site.ssh(name, "echo hello")
    assert (r.returncode, r.stdout, r.stderr) == (0, b"hello\n", b""), "%r\n%s" % (r, why(a, site))
    # Up and back down (-O: the SCP protocol; OpenWRT's dropbear has no SFTP server).
    data = os.urandom(5 * 1024 * 1024)
    src, there, back = tmp_path / "five.bin", tmp_path / "on-device.bin", tmp_path / "back.bin"
    src.write_bytes(data)
    remote = "%s@%s:" % (site.sshd.user, name)
    for a_, b_ in ((str(src), remote + str(there)), (remote + str(there), str(back))):
        r = subprocess.run(site.ssh_argv("scp") + ["-O", a_, b_], env=site.env, capture_output=True, timeout=300)
        assert (r.returncode, r.stderr) == (0, b""), "%r\n%s" % (r, why(a, site))
    want = hashlib.sha256(data).digest()
    assert hashlib.sha256(there.read_bytes()).digest() == want and hashlib.sha256(back.read_bytes()).digest() == want
    rows = ended(site, mac, 3)
    assert [(t["port"], t["outcome"], t["operator"]) for t in rows] == [(site.sshd.port, "closed", "oper")] * 3
    assert rows[0]["bytes_from_device"] > len(data) and rows[1]["bytes_to_device"] > len(data)  # down, up
    for t in rows:
        job = site.job(t["job_id"])
        got = CLOSED.match(job["output"])
        assert job["success"] and got, job
        assert (int(got.group(1)), int(got.group(2))) == (t["bytes_to_device"], t["bytes_from_device"]), (job, t)
    assert a.alive() and "MemoryError" not in a.output()


@pytest.mark.runtimes(*FEW)
def test_two_sessions_and_a_web_page_while_a_job_and_a_stats_upload_go_on(site, runtime, agent_cmd, agents,
                                                                        tmp_path):
    """Two ssh sessions at once, and `forward` serving the device's web
    page to six clients at once meanwhile; a job runs and stats are
    uploaded while the sessions are open."""
    # A clock 5 times faster: a stats upload every 12 s; the tunnel's own
    # keepalive deadline (90 s) is then 18 s, which a loaded machine meets.
    a, mac, name = site.agent(runtime, agent_cmd, agents, tmp_path, env={"SOCKETMAN_TIME_SCALE": "5"})
    srv = site.srv
    st = srv.store()
    fwd = subprocess.Popen([CLI, "forward", name, str(site.web_port), "--listen", "127.0.0.1:0"], env=site.env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        local = re.search(r"on 127\.0\.0\.1:(\d+) ", fwd.stdout.readline().decode())
        assert local
        one, two = (site.ssh_bg(name, "read x; echo %s $x" % w) for w in ("one", "two"))
        srv.wait(lambda: [t["state"] for t in site.tunnels(mac)[0]] == ["open", "open"], 30,
                 "two tunnels open")
        # Six pages at once: the forward opens a tunnel per connection and
        # the device holds 4 at once (two are the sessions): the server says
        # 429 to the others, which ask again until a tunnel is free (and
        # until the agent answered the job of one that closed: the slot is
        # free on its side too, else it would refuse the next one "busy").
        def get(i):
            url = "http://127.0.0.1:%s/cgi-bin/luci/%d" % (local.group(1), i)
            with urllib.request.urlopen(url, timeout=60) as r:
                return r.read().decode()
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            pages = list(pool.map(get, range(6)))
        assert pages == ["<html><title>LuCI</title><body>router page /cgi-bin/luci/%d</body></html>" % i
                         for i in range(6)]
        uploaded = st.device(mac)["last_doc_at"]
        job = site.run_job(mac, "echo job")
        assert job["output"] == "job\n" and job["success"]
        srv.wait(lambda: (st.device(mac)["last_doc_at"] or 0) > (uploaded or 0), 45, "a stats upload")
        assert len(site.tunnels(mac)[0]) == 2, "%r\n%s" % (site.tunnels(mac)[1], why(a, site))
        outs = [p.communicate(b"ok\n", timeout=30) for p in (one, two)]
        assert [(p.returncode, o[0]) for p, o in zip((one, two), outs)] == [(0, b"one ok\n"), (0, b"two ok\n")], \
            "%r\n%s\ndropbear:\n%s" % (outs, why(a, site), site.sshd.output()[-2000:])
    finally:
        fwd.send_signal(signal.SIGINT)
        out, err = fwd.communicate(timeout=20)
        st.close()
    assert fwd.returncode == 0 and err == b"", err
    rows = ended(site, mac, 8)
    assert sorted(t["port"] for t in rows) == sorted([site.sshd.port] * 2 + [site.web_port] * 6)
    assert all(t["outcome"] == "closed" and site.job(t["job_id"])["success"] for t in rows), rows


@pytest.mark.runtimes(*FEW)
def test_closed_on_the_dashboard_and_on_idle(site, runtime, agent_cmd, agents, tmp_path):
    """"Close" on the device's page ends a busy session within seconds (both
    sides, the operator told why); a session where no byte passes for
    tunnel_idle seconds is closed by the agent."""
    a, mac, name = site.agent(runtime, agent_cmd, agents, tmp_path, env={"SOCKETMAN_TIME_SCALE": "3"},
                              tunnel_idle=15)  # 5 s of real time
    srv = site.srv
    busy = site.ssh_bg(name, "while :; do echo tick; sleep 1; done")
    open_ = srv.wait(lambda: [t for t in site.tunnels(mac)[0] if t["state"] == "open"], 30, "the tunnel open")
    assert busy.stdout.readline() == b"tick\n"
    t0 = time.monotonic()
    path = "/devices/%s/tunnels/%s/close" % (mac.upper().replace(":", "-"), open_[0]["tunnel_id"])
    assert srv.post_form(path, {}, auth="oper").status == 303
    out, err = busy.communicate(timeout=30)
    assert time.monotonic() - t0 < 20  # not the ssh session's own end: it never ends
    assert busy.returncode == 255 and b"socketman-server ssh: closed on the dashboard by oper (4499)" in err, \
        "%r\n%s" % (err, why(a, site))
    closed = ended(site, mac, 1)[0]
    assert (closed["outcome"], closed["close_requested_by"]) == ("closed", "oper")
    assert CLOSED.match(site.job(closed["job_id"])["output"]), site.job(closed["job_id"])
    # Idle: a session where nothing passes (no keepalive either way), for
    # tunnel_idle (5 s of real time) from the device's connection, not the
    # 120 s the command would take.
    idle = site.ssh_bg(name, "sleep 120")
    out, err = idle.communicate(timeout=100)
    assert idle.returncode == 255, "%r\n%s" % (err, why(a, site))
    closed = ended(site, mac, 1)[0]
    assert closed["detail"] == "the device closed the tunnel (idle)", closed
    assert 4 <= closed["closed_at"] - closed["connected_at"] <= 30, closed
    assert b"socketman-server ssh: the device closed the tunnel (idle)\n" in err, err


def proxy_command(site, name, port):
    """`socketman-server ssh` as ssh runs it (its stdin kept open), until
    it exits: (exit status, stderr)."""
    p = subprocess.Popen([CLI, "ssh", name, "--port", str(port)], env=site.env, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        p.wait(60)
        return subprocess.CompletedProcess(p.args, p.returncode, p.stdout.read(), p.stderr.read())
    finally:
        if p.poll() is None:
            p.kill()
        for f in (p.stdin, p.stdout, p.stderr):
            f.close()


def one_line(r):
    """The CLI's own refusal: exit status 255 and one line on stderr."""
    lines = r.stderr.decode().splitlines()
    assert r.returncode == 255 and len(lines) == 1 and lines[0].startswith("socketman-server ssh: "), r
    return lines[0]


@pytest.mark.runtimes(*FEW)
def test_refusals_reach_the_operator_in_one_line(site, runtime, agent_cmd, agents, tmp_path):
    """A port not in tunnel_ports (the agent's REJECTED), and the server
    refusing the agent's WebSocket (403: here the agent has another
    device's token): each is one line and exit 255, by itself and through
    ssh, at once rather than after --tunnel-wait."""
    a, mac, name = site.agent(runtime, agent_cmd, agents, tmp_path)
    free = net.free_port()
    t0 = time.monotonic()
    r = proxy_command(site, name, free)
    assert one_line(r) == "socketman-server ssh: the device refused the tunnel: port %d is not in tunnel_ports " \
                          "(4403)" % free, why(a, site)
    r = site.ssh(name, "true", port=free)
    assert r.returncode == 255 and b"port %d is not in tunnel_ports (4403)" % free in r.stderr, r
    assert time.monotonic() - t0 < 20
    a.kill()
    a, mac, name = site.agent(runtime, agent_cmd, agents, tmp_path, token="smd_" + "x" * 40)
    r = proxy_command(site, name, site.sshd.port)
    assert "the device could not open the tunnel: the server answered 403" in one_line(r), why(a, site)
    assert [(t["outcome"], site.job(t["job_id"])["success"]) for t in ended(site, mac, 1)] == [("failed", False)]
    assert a.alive()


@pytest.mark.runtimes(*FEW)
def test_the_server_vanishes_mid_stream(site, runtime, agent_cmd, agents, tmp_path):
    """The server is killed (SIGKILL) while a session streams: the operator
    is told in one line (ssh exits 255), the agent ends the tunnel and
    closes its connection to dropbear, and goes on: once the server is
    back, a new session works."""
    # A MAC of its own: the tunnel the killed server held stays "open" in
    # the database for a minute (then "lost").
    a, mac, name = site.agent(runtime, agent_cmd, agents, tmp_path, mac=MACS[runtime][:-1] + "9")
    srv = site.srv
    busy = site.ssh_bg(name, "while :; do echo tick; sleep 0.2; done")
    assert busy.stdout.readline() == b"tick\n", why(a, site)
    srv.proc.kill()
    srv.proc.wait(10)
    out, err = busy.communicate(timeout=30)
    assert busy.returncode == 255 and b"socketman-server ssh: the connection to the server was lost (1006)\n" in err, \
        err
    a.wait_log("; the server closed the connection without a close frame", 30)
    srv.restart()
    srv.wait(lambda: srv.store().device(mac)["online"], 30, "the device online again")
    r = site.ssh(name, "echo hello")
    assert (r.returncode, r.stdout) == (0, b"hello\n"), "%r\n%s" % (r, why(a, site))
    assert a.alive()


class TLSFront:
    """TLS in front of the server for its device side, as nginx on 443 would
    be: the server's certificate (localhost), and the device must show a
    certificate of the test CA (PROTOCOL 9); each connection is then piped
    to the server's plain port. peers: the CN of each device certificate."""

    def __init__(self, certs, target_port):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(certs["cert"], certs["key"])
        self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.ctx.load_verify_locations(certs["ca"])
        self.target, self.port, self.peers = target_port, net.free_port(), []
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._conn, "127.0.0.1", self.port, ssl=self.ctx), self.loop).result(10)

    async def _conn(self, reader, writer):
        cert = writer.get_extra_info("peercert") or {}
        self.peers.append(dict(x[0] for x in cert.get("subject", ())).get("commonName"))
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target)

        async def pipe(r, w):
            try:
                while True:
                    data = await r.read(65536)
                    if not data:
                        break
                    w.write(data)
                    await w.drain()
            except OSError:
                pass
            finally:
                w.close()
        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer), return_exceptions=True)

    def close(self):
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.mark.runtimes(*FEW)
def test_wss_with_the_device_certificate(site, runtime, agent_cmd, agents, tmp_path):
    """A server whose tunnels are wss:// (--tunnel-url) behind TLS that asks
    for the device's certificate: the agent verifies the server against its
    cacrt and shows its client_cert; ssh and a 1 MB scp go through."""
    port = net.free_port()
    front = TLSFront(site.certs, port)
    srv = FleetServer(tmp_path / "wss", site.broker, job_key=JOB_KEY, port=port,
                      args=["--tunnel-url", "wss://localhost:%d" % front.port])
    try:
        env = dict(site.env, SOCKETMAN_SERVER="http://127.0.0.1:%d" % port, SOCKETMAN_TOKEN=srv.token("oper"))
        a, mac, name = site.agent(runtime, agent_cmd, agents, tmp_path, srv=srv, cacrt=site.certs["ca"],
                                  client_cert=site.certs["client_ec"], client_key=site.certs["client_ec_key"])
        r = site.ssh(name, "echo hello", env=env)
        assert (r.returncode, r.stdout) == (0, b"hello\n"), "%r\n%s" % (r, why(a, site, srv))
        data = os.urandom(1024 * 1024)
        src, dst = tmp_path / "one.bin", tmp_path / "one.copy"
        src.write_bytes(data)
        r = subprocess.run(site.ssh_argv("scp") + ["-O", str(src), "%s@%s:%s" % (site.sshd.user, name, dst)],
                           env=env,
                           capture_output=True, timeout=120)
        assert r.returncode == 0 and dst.read_bytes() == data, "%r\n%s" % (r, why(a, site, srv))
        assert front.peers == ["client-ec", "client-ec"]
        assert [t["outcome"] for t in ended(site, mac, 2, srv)] == ["closed", "closed"]
    finally:
        srv.stop()
        front.close()


def recv_n(sock, n):
    buf = bytearray()
    while len(buf) < n:
        d = sock.recv(min(65536, n - len(buf)))
        if not d:
            break
        buf += d
    return bytes(buf)


@pytest.mark.runtimes("mips1.23-bundle")
def test_a_slow_reader_at_each_end_at_the_launchers_heap(site, runtime, agent_cmd, agents, tmp_path):
    """12 MiB each way through the server and the .mpy bundle on 32-bit
    MIPS with the heap the installed launcher gives it (openwrt/socketman),
    while the reader at each end takes nothing for 5 s: every side that
    feeds a full one is paused (the agent's bounded buffers, the server's
    queues), so the agent's heap does not grow with the traffic, and every
    byte arrives once the readers read."""
    from test_memory_bounds import published_heap
    from websockets.exceptions import ConnectionClosed

    from helpers import tunnel

    firehose = os.urandom(12 * 1024 * 1024)  # more than the kernel's socket buffers hold on loopback
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)  # what it does not take piles up sooner
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(2)
    got_by_service = []

    def service():  # pours the firehose out, reads nothing for 5 s, then all of it, closes
        c, _ = lsock.accept()
        threading.Thread(target=c.sendall, args=(firehose,), daemon=True).start()
        time.sleep(5)
        got_by_service.append(recv_n(c, len(firehose)))
        c.close()
    threading.Thread(target=service, daemon=True).start()
    cmd = agent_cmd[:-1] + ["-X", "heapsize=" + published_heap(), agent_cmd[-1]]
    try:
        a, mac, name = site.agent(runtime, cmd, agents, tmp_path, tunnel_ports=[lsock.getsockname()[1]])
        op = tunnel.operator(site.srv, site.env["SOCKETMAN_TOKEN"], mac, lsock.getsockname()[1])

        def send():
            for i in range(0, len(firehose), 65536):
                op.send(firehose[i:i + 65536])
        threading.Thread(target=send, daemon=True).start()
        time.sleep(5)  # the operator reads nothing meanwhile either
        buf = bytearray()
        try:
            while True:
                msg = op.recv(120)
                if isinstance(msg, bytes):
                    buf += msg
        except ConnectionClosed:
            pass
        want = hashlib.sha256(firehose).digest()
        assert len(buf) == len(firehose) and hashlib.sha256(buf).digest() == want, "%r\n%s" % (len(buf), why(a, site))
        assert op.close_code == 1000  # the service's close ended the tunnel
        assert got_by_service and hashlib.sha256(got_by_service[0]).digest() == want
        t = ended(site, mac, 1, timeout=60)[0]
        assert (t["bytes_to_device"], t["bytes_from_device"]) == (len(firehose), len(firehose))
        assert site.job(t["job_id"])["success"], site.job(t["job_id"])
        assert site.run_job(mac, "echo after", 60)["output"] == "after\n"
        assert a.alive()
        out = a.output()
        assert "out of memory" not in out and "MemoryError" not in out, out[-3000:]
    finally:
        lsock.close()
