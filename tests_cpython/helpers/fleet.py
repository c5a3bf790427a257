"""The reference fleet server (server/) as a real process, and a small HTTP
client for tests that talk to it."""
import gzip
import http.client
import json
import os
import subprocess
import sys
import time
import urllib.parse

from helpers import net
from helpers.broker import CTRL_PASSWORD, CTRL_USER, PASSWORD, USER

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVER_DIR = os.path.join(ROOT, "server")
SERVER_MAIN = os.path.join(SERVER_DIR, "main.py")
if SERVER_DIR not in sys.path:
    sys.path.insert(0, SERVER_DIR)

INIT_SECRET = "let-me-in-0123"
TOPIC, KEY = "fleet", "k3y"


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<%d %r>" % (self.status, self.body[:200])


class FleetServer:
    """server/main.py serve on a free loopback port, with its own SQLite file
    unless db_url is given, talking to `broker` (helpers.broker.Broker) as
    the controller user."""

    def __init__(self, tmp, broker=None, db_url=None, job_key=None, auto_admit=False, args=(), wait_broker=True):
        self.dir = os.path.join(str(tmp), "fleet-server")
        os.makedirs(self.dir, exist_ok=True)
        self.port = net.free_port()
        self.db_url = db_url or "sqlite:///" + os.path.join(self.dir, "fleet.db")
        self.device_template = {"topic": TOPIC, "key": KEY, "username": USER, "password": PASSWORD,
                                "mqtt_host": "127.0.0.1", "port": broker.port if broker else 1}
        files = {"device.json": json.dumps(self.device_template), "secret": INIT_SECRET + "\n",
                 "mqtt-password": CTRL_PASSWORD + "\n"}
        if job_key:
            files["job-key"] = job_key + "\n"
        for name, text in files.items():
            with open(os.path.join(self.dir, name), "w") as f:
                f.write(text)
        argv = [sys.executable, SERVER_MAIN, "serve", "--db", self.db_url, "--listen", "127.0.0.1:%d" % self.port,
                "--device-config", os.path.join(self.dir, "device.json"),
                "--init-secret-file", os.path.join(self.dir, "secret"),
                "--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker.port if broker else 1),
                "--mqtt-username", CTRL_USER, "--mqtt-password-file", os.path.join(self.dir, "mqtt-password"),
                "--max-body", str(256 * 1024)]
        if job_key:
            argv += ["--job-key-file", os.path.join(self.dir, "job-key")]
        if auto_admit:
            argv.append("--auto-admit")
        argv += list(args)
        self.log_path = os.path.join(self.dir, "server.log")
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, cwd=self.dir)
        try:
            net.wait_listening(self.port, timeout=30)
            if broker and wait_broker:
                self.wait(lambda: self.get("/healthz").json()["broker"], what="the server's broker subscription")
        except BaseException:
            self.stop()
            raise

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def output(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def alive(self):
        return self.proc.poll() is None

    def request(self, method, path, body=None, headers=None, query=None):
        if query:
            path += ("&" if "?" in path else "?") + urllib.parse.urlencode(query)
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return Response(r.status, dict(r.getheaders()), r.read())
        finally:
            c.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post_form(self, path, fields, headers=None):
        body = urllib.parse.urlencode(fields, doseq=True)
        h = {"Content-Type": "application/x-www-form-urlencoded"}
        h.update(headers or {})
        return self.request("POST", path, body=body, headers=h)

    def wait(self, pred, timeout=20.0, what="condition"):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = pred()
            except (OSError, ValueError, KeyError, TypeError) as e:
                last = e
            if last and not isinstance(last, Exception):
                return last
            time.sleep(0.05)
        raise AssertionError("no %s within %ss (last: %r); server log:\n%s" % (what, timeout, last, self.output()))

    def store(self):
        """A Store on the server's database (a second client, as another
        server process would be)."""
        from socketman_server.db import Store
        return Store(self.db_url)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def multipart(fields, files):
    """A multipart/form-data body: (content type, bytes). files: {name:
    (filename, content type, bytes)}. Built by urllib3, not by hand."""
    from urllib3 import encode_multipart_formdata
    parts = dict(fields)
    parts.update(files)
    body, ctype = encode_multipart_formdata(parts)
    return ctype, body


def stats_body(docs, raw=None):
    """The agent's upload shape (PROTOCOL 5): one gzip part "data"."""
    data = raw if raw is not None else gzip.compress(("\n".join(json.dumps(d) for d in docs) + "\n").encode())
    return multipart({}, {"data": ("archive.gz", data, "application/gzip")})


def document(mac, **device):
    """A stats document in the agent's shape (PROTOCOL 7)."""
    dev = {"mac": mac, "firmware": "OpenWrt 23.05.0", "machine_type": "TP-Link Archer C7", "smv": "test",
           "wan_name": "eth0.2", "wan_ip": "192.0.2.10", "wan_gateway": "192.0.2.1", "rx_bytes": 1000,
           "tx_bytes": 2000, "uptime": 3600, "load_1": 0.25, "load_5": 0.2, "load_15": 0.1,
           "total_ram": 128 * 1048576, "free_ram": 64 * 1048576, "procs": 50, "v": "4", "status": 9,
           "connected": 1, "created_at": int(time.time())}
    dev.update(device)
    return {"device": dev, "ssids": [{"interface": "wlan0", "ssid": "lobby", "signal": -40, "bitrate": 144000}],
            "stations": [{"interface": "wlan0", "mac": "AA:BB:CC:00:11:22", "signal": -55, "name": "phone"}],
            "dhcp": [{"mac": "aa:bb:cc:00:11:22", "ip": "192.168.1.20", "name": "phone"}]}
