"""The operator's command line through real tunnels (issue 22): OpenSSH's
`ssh` and `scp` with `socketman-server ssh %h` as ProxyCommand, reaching
Debian's dropbear (OpenWRT's SSH server) on a loopback port through the
fleet server and a device played by the PROTOCOL 11 test client
(helpers/tunnel.py); `socketman-server forward` serving a device's web page
to local HTTP clients; and the one-line refusals with ssh's exit status 255.
"""
import concurrent.futures
import hashlib
import http.server
import os
import re
import shutil
import signal
import subprocess
import threading
import urllib.request

import pytest

from helpers import tunnel
from helpers.broker import Broker
from helpers.fleet import ROOT, FleetServer

MAC = "02:55:00:00:00:01"
NAME = MAC.lower().replace(":", "-")   # how an operator writes it for ssh and scp
CLI = os.path.join(ROOT, "server", "socketman-server")

pytestmark = pytest.mark.skipif(not (shutil.which("dropbear") or os.path.exists("/usr/sbin/dropbear"))
                                or not shutil.which("ssh"),
                                reason="dropbear or the OpenSSH client is missing (Debian packages dropbear-bin "
                                       "and openssh-client; tools/need_system.sh installs them as root)")


class Page(http.server.BaseHTTPRequestHandler):
    """The device's web interface (LuCI's stand-in)."""

    def do_GET(self):
        body = ("<html><title>LuCI</title><body>router page %s</body></html>" % self.path).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory, certs):
    tmp = tmp_path_factory.mktemp("tunnel-ssh")
    broker = Broker(tmp, certs)
    srv = FleetServer(tmp, broker)
    sshd = tunnel.Dropbear(tmp)
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    dev = tunnel.TunnelDevice(srv, broker, MAC, {22: sshd.port, 80: web.server_address[1]}, name="gate")
    env = dict(os.environ, SOCKETMAN_SERVER="http://127.0.0.1:%d" % srv.port, SOCKETMAN_TOKEN=srv.token("oper"),
               PATH=os.path.dirname(CLI) + os.pathsep + os.environ["PATH"])
    yield srv, sshd, env, tmp
    dev.close()
    web.shutdown()
    sshd.stop()
    srv.stop()
    broker.stop()


def ssh_argv(sshd, tmp, program="ssh"):
    """OpenSSH with only the test's settings and the ProxyCommand of the
    README."""
    return [program, "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new",
            "-o", "UserKnownHostsFile=%s" % os.path.join(str(tmp), "known_hosts"), "-o", "IdentitiesOnly=yes",
            "-o", "LogLevel=ERROR", "-i", sshd.key, "-o", "ProxyCommand=socketman-server ssh %h"]


def test_ssh_and_scp_through_the_tunnel(site):
    """`ssh ... echo hello` answers; a 5 MiB file goes up with scp and comes
    back intact (checksums); each is a tunnel of its own, recorded."""
    srv, sshd, env, tmp = site
    r = subprocess.run(ssh_argv(sshd, tmp) + ["root@" + NAME, "echo hello from $(id -un)"], env=env,
                       capture_output=True, timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"hello from root\n", b""), (r.stderr, sshd.output())
    data = os.urandom(5 * 1024 * 1024)
    src, there, back = (os.path.join(str(tmp), n) for n in ("up.bin", "on-device.bin", "down.bin"))
    with open(src, "wb") as f:
        f.write(data)
    # -O: the scp protocol (OpenWRT's dropbear has no SFTP server either).
    scp = ssh_argv(sshd, tmp, "scp") + ["-O"]
    r = subprocess.run(scp + [src, "root@%s:%s" % (NAME, there)], env=env, capture_output=True, timeout=120)
    assert r.returncode == 0, r
    r = subprocess.run(scp + ["root@%s:%s" % (NAME, there), back], env=env, capture_output=True, timeout=120)
    assert r.returncode == 0, r
    want = hashlib.sha256(data).hexdigest()
    for path in (there, back):
        with open(path, "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == want, path
    st = srv.store()
    try:
        srv.wait(lambda: not st.device_tunnels(st.device(MAC)["id"])[0], 10, "the tunnels closed")
        done = st.device_tunnels(st.device(MAC)["id"], closed_limit=3)[1]
    finally:
        st.close()
    assert [(t["port"], t["outcome"], t["operator"]) for t in done] == [(22, "closed", "oper")] * 3
    assert done[1]["bytes_to_device"] > len(data) and done[0]["bytes_from_device"] > len(data)  # up, then down


def test_refusals_are_one_line_and_exit_255(site):
    """As ssh: a tunnel that cannot open is one line on stderr and exit
    status 255, through ssh too."""
    srv, sshd, env, tmp = site
    viewer = dict(env, SOCKETMAN_TOKEN=srv.token("viewer"))
    no_token = {k: v for k, v in env.items() if k != "SOCKETMAN_TOKEN"}
    no_token["HOME"] = str(tmp)  # no ~/.config/socketman/token either
    down = dict(env, SOCKETMAN_SERVER="http://127.0.0.1:9")
    for e, device, words in ((env, "nowhere", "no device has the MAC or name 'nowhere' (HTTP 404)"),
                             (viewer, NAME, "your role (viewer) cannot open tunnels: it needs operator (HTTP 403)"),
                             (no_token, NAME, "no API token"),
                             (down, NAME, "cannot open a tunnel through http://127.0.0.1:9")):
        r = subprocess.run([CLI, "ssh", device], env=e, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
        lines = r.stderr.decode().splitlines()
        assert r.returncode == 255 and len(lines) == 1 and lines[0].startswith("socketman-server ssh: ") \
            and words in lines[0], r
    r = subprocess.run(ssh_argv(sshd, tmp) + ["root@nowhere", "true"], env=env, capture_output=True, timeout=30)
    assert r.returncode == 255 and b"no device has the MAC or name 'nowhere'" in r.stderr, r


def test_forward_serves_the_web_interface(site):
    """`forward DEVICE 80`: a local port where each connection is a tunnel
    of its own; 6 at once are served (4 tunnels at a time, the others wait
    their turn); Ctrl-C stops it cleanly."""
    srv, sshd, env, tmp = site
    p = subprocess.Popen([CLI, "forward", NAME, "80", "--listen", "127.0.0.1:0"], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        line = p.stdout.readline().decode()
        local = re.search(r"on 127\.0\.0\.1:(\d+) ", line)
        assert local, line
        base = "http://127.0.0.1:%s" % local.group(1)

        def get(i):
            with urllib.request.urlopen("%s/cgi-bin/luci/%d" % (base, i), timeout=30) as r:
                return r.read().decode()
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            pages = list(pool.map(get, range(6)))
        assert pages == ["<html><title>LuCI</title><body>router page /cgi-bin/luci/%d</body></html>" % i
                         for i in range(6)]
    finally:
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=20)
    assert p.returncode == 0 and err == b"", err
    st = srv.store()
    try:
        srv.wait(lambda: not st.device_tunnels(st.device(MAC)["id"])[0], 10, "the tunnels closed")
        done = st.device_tunnels(st.device(MAC)["id"], closed_limit=6)[1]
    finally:
        st.close()
    assert [(t["port"], t["outcome"]) for t in done] == [(80, "closed")] * 6
