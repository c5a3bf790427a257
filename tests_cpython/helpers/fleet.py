"""The reference fleet server (server/) as a real process, and a small HTTP
client for tests that talk to it: as a device (no credentials), as a
logged-in operator (session cookie and CSRF token, as a browser), or with an
API token."""
import gzip
import http.client
import http.cookies
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse

from werkzeug.datastructures import Headers

from helpers import net
from helpers.broker import CTRL_PASSWORD, CTRL_USER, PASSWORD, USER

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVER_DIR = os.path.join(ROOT, "server")
SERVER_MAIN = os.path.join(SERVER_DIR, "main.py")
if SERVER_DIR not in sys.path:
    sys.path.insert(0, SERVER_DIR)

INIT_SECRET = "let-me-in-0123"
TOPIC, KEY = "fleet", "k3y"
# The operators every test server has (name: role); each one's password is
# password_of(name).
OPERATORS = {"admin": "admin", "oper": "operator", "viewer": "viewer"}


def password_of(name):
    return "pw-of-%s-Xq7" % name


class Response:
    def __init__(self, status, headers, body, header_list=()):
        self.status, self.headers, self.body = status, headers, body
        self.header_list = list(header_list)  # every header, repeated ones too (Set-Cookie)

    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<%d %r>" % (self.status, self.body[:200])


class FleetServer:
    """server/main.py serve on a free loopback port, with its own SQLite file
    unless db_url is given, talking to `broker` (helpers.broker.Broker) as
    the controller user."""

    def __init__(self, tmp, broker=None, db_url=None, job_key=None, auto_admit=False, args=(), wait_broker=True,
                 operators=OPERATORS, port=None):
        self.dir = os.path.join(str(tmp), "fleet-server")
        os.makedirs(self.dir, exist_ok=True)
        self.port = port or net.free_port()
        self.db_url = db_url or "sqlite:///" + os.path.join(self.dir, "fleet.db")
        self.sessions = {}
        if operators:
            st = self.store()  # migrates the new database first, as the server would
            for name, role in operators.items():
                if st.operator(name) is None:
                    st.add_operator(name, role, password_of(name))
            st.close()
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
        self.argv, self.broker, self.wait_broker = argv, broker, wait_broker
        self.log_path = os.path.join(self.dir, "server.log")
        self.start()

    def start(self):
        """Start the server process (again, after stop())."""
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT, cwd=self.dir)
        try:
            net.wait_listening(self.port, timeout=30)
            if self.broker and self.wait_broker:
                self.wait(lambda: self.get("/healthz").json()["broker"], what="the server's broker subscription")
        except BaseException:
            self.stop()
            raise

    def restart(self, kill=False):
        """Stop the server (SIGTERM, or SIGKILL with kill=True) and start it
        again on the same port and database; logins stay (the sessions are
        in the database)."""
        if kill and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.stop()
        self.start()

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def output(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def alive(self):
        return self.proc.poll() is None

    def raw(self, method, path, body=None, headers=None, query=None):
        """One request with exactly these headers (no cookie, no token)."""
        if query:
            path += ("&" if "?" in path else "?") + urllib.parse.urlencode(query)
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            # Header names are case-insensitive (uvicorn sends them in lower case).
            return Response(r.status, Headers(r.getheaders()), r.read(), r.getheaders())
        finally:
            c.close()

    def request(self, method, path, body=None, headers=None, query=None, auth="admin"):
        """A request; the dashboard's (not /api, not /healthz) goes as the
        logged-in operator `auth` (default admin) unless auth is None."""
        if auth is None or path.startswith("/api/") or path == "/healthz":
            return self.raw(method, path, body=body, headers=headers, query=query)
        return self.session(auth).request(method, path, body=body, headers=headers, query=query)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post_form(self, path, fields, headers=None, auth="admin"):
        """A form POST as a browser sends it: with the CSRF token of the
        operator's session (auth=None: nothing)."""
        if auth is None:
            return self.raw("POST", path, body=urllib.parse.urlencode(fields, doseq=True),
                            headers=dict({"Content-Type": "application/x-www-form-urlencoded"}, **(headers or {})))
        return self.session(auth).post_form(path, fields, headers=headers)

    def session(self, name="admin", password=None):
        """The logged-in Session of an operator (made on first use)."""
        if name not in self.sessions:
            self.sessions[name] = Session(self, name, password or password_of(name))
        return self.sessions[name]

    def token(self, operator="admin", name=None, role=None):
        """A new API token of an operator (through the database, as
        `socketman-server token add` makes it)."""
        st = self.store()
        try:
            return st.add_token(operator, name or "t%d" % time.monotonic_ns(), role)[0]
        finally:
            st.close()

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


CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


class Session:
    """An operator logged in on the dashboard as a browser is: the session
    cookie kept from answer to answer, the CSRF token of its pages added to
    each form POST."""

    def __init__(self, srv, name, password, headers=None, login=True):
        self.srv, self.cookies, self.csrf = srv, {}, None
        self.headers = dict(headers or {})
        if login:
            r = self.login(name, password)
            assert r.status == 303, "login of %s failed: %r" % (name, r)

    def login(self, name, password, headers=None):
        self.request("GET", "/login")
        r = self.post_form("/login", {"name": name, "password": password}, headers=headers)
        self.csrf = None  # a new session has a new token
        return r

    def request(self, method, path, body=None, headers=None, query=None):
        h = dict(self.headers)
        h.update(headers or {})
        if self.cookies:
            h["Cookie"] = "; ".join("%s=%s" % kv for kv in self.cookies.items())
        r = self.srv.raw(method, path, body=body, headers=h, query=query)
        for k, v in r.header_list:
            if k.lower() == "set-cookie":
                c = http.cookies.SimpleCookie(v)
                for name, morsel in c.items():
                    if morsel["expires"] and "1970" in morsel["expires"] or morsel["max-age"] == "0":
                        self.cookies.pop(name, None)
                    else:
                        self.cookies[name] = morsel.value
        m = CSRF_RE.search(r.body.decode("utf-8", "replace"))
        if m:
            self.csrf = m.group(1)
        return r

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post_form(self, path, fields, headers=None, csrf=True):
        """A form POST with the session's CSRF token (csrf=False: without)."""
        if csrf and self.csrf is None:
            self.request("GET", "/account" if "sid" in self.cookie_data() else "/login")
        fields = dict(fields)
        if csrf:
            fields.setdefault("csrf_token", self.csrf)
        h = {"Content-Type": "application/x-www-form-urlencoded"}
        h.update(headers or {})
        return self.request("POST", path, body=urllib.parse.urlencode(fields, doseq=True), headers=h)

    def cookie_data(self):
        """What the signed session cookie carries (it is signed, not hidden)."""
        import base64
        import zlib
        v = self.cookies.get("socketman_session", "")
        if not v:
            return {}
        payload = v.lstrip(".").split(".")[0]
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        return json.loads(zlib.decompress(raw) if v.startswith(".") else raw)


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
