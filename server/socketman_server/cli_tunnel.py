"""The operator's side of tunnels (issue 22, PROTOCOL 11), over HTTP with an
API token (client.load_token, client.server_url):

    socketman-server ssh DEVICE [--port 22]
        stdin and stdout relayed, unbuffered, to DEVICE's port 22: OpenSSH's
        ProxyCommand, e.g.
        ssh -o ProxyCommand='socketman-server ssh %h' root@aa-bb-cc-dd-ee-ff
    socketman-server forward DEVICE PORT [--listen 127.0.0.1:LOCAL]
        every connection to the local address is a tunnel of its own to
        DEVICE's PORT (its web interface in a local browser); at most 4 at
        once (PROTOCOL 11), the others wait for a free one.

DEVICE is a MAC in any common form or a device name. Each tunnel is a
WebSocket to the server's /tunnel (tunnels.py) through the `websockets`
library's sync client. A refusal (unknown device, offline, role, expiry)
is one line on stderr and exit status 255, as ssh exits; a bad command
line exits 2. Nothing here needs the server's database or Flask."""
import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.parse

from . import client
from .protocol import BadInput

SUBPROTOCOL = "socketman-tunnel"
FRAME_MAX = 64 * 1024          # PROTOCOL 11: the payload cap of a frame
EXIT_REFUSED = 255             # what ssh exits with when it cannot connect
MAX_AT_ONCE = 4                # PROTOCOL 11: tunnels a device opens at once
BUSY_RETRY_S = 1.0             # a 429 (the device's 4 tunnels are in use): ask again after this
BUSY_GIVE_UP_S = 60.0

# The server's close codes (tunnels.py) in words, when it gave no reason.
CLOSE_WORDS = {1001: "the server is stopping", 1006: "the connection to the server was lost",
               1011: "the server failed", 1012: "the server is restarting",
               4403: "the device refused the tunnel", 4408: "the device did not connect in time",
               4410: "the device was forgotten", 4499: "closed on the dashboard",
               4502: "the device could not open the tunnel"}


class Refused(Exception):
    """The server did not open the tunnel. status: its HTTP status (0: it
    could not be reached)."""

    def __init__(self, message, status=0):
        super().__init__(message)
        self.status = status


def add_parsers(sub):
    s = sub.add_parser("ssh", help="relay stdin/stdout to a device's SSH server through a tunnel "
                                   "(OpenSSH's ProxyCommand: ssh -o ProxyCommand='socketman-server ssh %%h' root@MAC)")
    s.add_argument("device", help="a MAC (aa:bb:cc:dd:ee:ff, aa-bb-..., aabbccddeeff) or a device name")
    s.add_argument("--port", type=client.whole_number(1, 65535), default=22,
                   help="the TCP port on the device (default 22)")
    _client_args(s)
    f = sub.add_parser("forward", help="serve a device's TCP port on a local address, one tunnel per connection")
    f.add_argument("device", help="a MAC (any common form) or a device name")
    f.add_argument("port", type=client.whole_number(1, 65535),
                   help="the TCP port on the device (80: its web interface)")
    f.add_argument("--listen", default="127.0.0.1:0", metavar="HOST:PORT",
                   help="the local address to serve it on (default 127.0.0.1 and a free port, printed)")
    _client_args(f)


def _client_args(p):
    p.add_argument("--server", metavar="URL", help="the server (default $SOCKETMAN_SERVER, else http://127.0.0.1:8080)")
    p.add_argument("--token-file", metavar="FILE",
                   help="the API token (default $SOCKETMAN_TOKEN, else ~/.config/socketman/token)")
    p.add_argument("-v", "--verbose", action="store_true", help="say on stderr how the tunnel goes")


def _say(cmd, text):
    print("socketman-server %s: %s" % (cmd, text), file=sys.stderr, flush=True)


def run(args):
    """`ssh` or `forward`: the exit status."""
    if not args.device.strip():
        _say(args.cmd, "name the device: a MAC (any common form) or a device name, not an empty string")
        return 2
    try:
        token = client.load_token(args.token_file)
        server = client.server_url(args.server)
    except BadInput as e:  # no usable token or server URL: ssh's "cannot connect"
        _say(args.cmd, e)
        return EXIT_REFUSED if args.cmd == "ssh" else 2
    if args.cmd == "ssh":
        return ssh(server, token, args.device, args.port, args.verbose)
    return forward(server, token, args.device, args.port, args.listen, args.verbose)


def tunnel_url(server, device, port):
    """The WebSocket URL of the operator's side: ws(s)://.../tunnel?device=&port=."""
    u = urllib.parse.urlsplit(server)
    scheme = "wss" if u.scheme == "https" else "ws"
    path = u.path.rstrip("/") + "/tunnel"
    return urllib.parse.urlunsplit((scheme, u.netloc, path, urllib.parse.urlencode({"device": device, "port": port}),
                                    ""))


def open_tunnel(server, token, device, port):
    """A websockets sync ClientConnection of a new tunnel. Refused when the
    server says no (its message and status) or cannot be reached."""
    from websockets.exceptions import InvalidHandshake, InvalidStatus
    from websockets.sync.client import connect

    try:
        return connect(tunnel_url(server, device, port), additional_headers={"Authorization": "Bearer " + token},
                       subprotocols=[SUBPROTOCOL], compression=None, max_size=FRAME_MAX, max_queue=4,
                       open_timeout=30, close_timeout=10, ping_interval=30, ping_timeout=60,
                       user_agent_header="socketman-server")
    except InvalidStatus as e:
        r = e.response
        try:
            message = json.loads(r.body)["error"]
        except (TypeError, ValueError, KeyError):
            message = (r.body or b"").decode("utf-8", "replace").strip()[:200] or r.reason_phrase
        raise Refused("%s (HTTP %d)" % (message, r.status_code), r.status_code)
    except (OSError, TimeoutError, InvalidHandshake) as e:
        raise Refused("cannot open a tunnel through %s: %s" % (server, e or type(e).__name__))


def _status(cmd, text, verbose):
    """A status text frame of the server (JSON) on stderr with -v."""
    if not verbose:
        return
    try:
        s = json.loads(text)
    except ValueError:
        return
    if s.get("state") == "waiting":
        _say(cmd, "tunnel %s to %s port %s: waiting for the device (%s s at most)" % (
            s.get("tunnel"), s.get("device"), s.get("port"), s.get("wait")))
    elif s.get("state") == "delivered":
        _say(cmd, "the device has the tunnel job")
    elif s.get("state") == "open":
        _say(cmd, "the device connected: tunnel open")


# The server's reasons for a normal close that need no word to the operator.
PLAIN_ENDS = ("", "the device closed the tunnel", "the operator closed the tunnel")


def _ending(ws):
    """(exit status, why) of a closed tunnel: 0 when it closed normally,
    with why only when the server's reason says more than who closed it
    (the device closed it "(idle)": the agent's tunnel_idle)."""
    code = ws.close_code
    if code in (1000, None):
        reason = ws.close_reason or ""
        return 0, "" if reason in PLAIN_ENDS else reason
    return EXIT_REFUSED, "%s (%d)" % (ws.close_reason or CLOSE_WORDS.get(code, "closed"), code)


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def relay(ws, read, write, cmd, verbose):
    """Relay one tunnel: read() -> binary frames in a thread (b"" ends it:
    the tunnel is closed after what was read went out), binary frames ->
    write() here, until either side ends. Sends wait while the server
    cannot take more, and nothing is read from the tunnel while write()
    blocks, so neither direction piles up. Returns (exit status, why)."""
    from websockets.exceptions import ConnectionClosed

    def up():
        try:
            while True:
                data = read()
                if not data:
                    break
                ws.send(data)
        except (OSError, ConnectionClosed):
            pass
        finally:
            with contextlib.suppress(Exception):
                ws.close()

    threading.Thread(target=up, daemon=True, name="tunnel-up").start()
    try:
        while True:
            msg = ws.recv()
            if isinstance(msg, str):
                _status(cmd, msg, verbose)
            else:
                write(msg)
    except ConnectionClosed:
        pass
    except OSError:  # the local side went away (ssh exited, the browser closed)
        ws.close()
        return 0, ""
    return _ending(ws)


def ssh(server, token, device, port, verbose=False):
    """The ProxyCommand: stdin -> the device's port, the device -> stdout."""
    # ssh sends SIGHUP to its ProxyCommand as it exits, right after closing
    # our stdin: finish closing the tunnel instead of dying mid-close.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        ws = open_tunnel(server, token, device, port)
    except Refused as e:
        _say("ssh", e)
        return EXIT_REFUSED
    with ws:
        status, why = relay(ws, lambda: os.read(0, FRAME_MAX), lambda b: _write_all(1, b), "ssh", verbose)
    if why:
        _say("ssh", why)
    return status


def parse_listen(text):
    """HOST:PORT (IPv6 in brackets) -> (host, port); BadInput otherwise."""
    host, _, port = (text or "").rpartition(":")
    host = host.strip("[]")
    try:
        port = int(port)
    except ValueError:
        port = -1
    if not host or not 0 <= port <= 65535:
        raise BadInput("--listen wants HOST:PORT, e.g. 127.0.0.1:8080, not %r" % text)
    return host, port


class Forwarder:
    """One tunnel per local connection, at most MAX_AT_ONCE at once (the
    next connections wait for a slot, they are not refused). A refusal that
    every connection would get (the token, the role, an unknown device)
    ends the forward: `fatal` says why."""

    def __init__(self, server, token, device, port, verbose):
        self.server, self.token, self.device, self.port, self.verbose = server, token, device, port, verbose
        self.slots = threading.BoundedSemaphore(MAX_AT_ONCE)
        self.fatal = None
        self.open = set()
        self.lock = threading.Lock()

    def handle(self, conn):
        try:
            with self.slots:
                if self.fatal is None:
                    self._tunnel(conn)
        finally:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _tunnel(self, conn):
        deadline = time.monotonic() + BUSY_GIVE_UP_S
        while True:
            try:
                ws = open_tunnel(self.server, self.token, self.device, self.port)
                break
            except Refused as e:
                if e.status == 429 and time.monotonic() < deadline:
                    time.sleep(BUSY_RETRY_S)  # other operators' tunnels to this device: wait for one to end
                    continue
                if e.status in (400, 401, 403, 404):
                    self.fatal = str(e)
                _say("forward", e)
                return
        with self.lock:
            self.open.add(ws)
        try:
            with ws:
                status, why = relay(ws, lambda: conn.recv(FRAME_MAX), conn.sendall, "forward", self.verbose)
            if why:
                _say("forward", why)
        finally:
            with self.lock:
                self.open.discard(ws)

    def close_all(self):
        with self.lock:
            for ws in list(self.open):
                with contextlib.suppress(Exception):
                    ws.close()


def device_check(server, token, device):
    """Refused (as open_tunnel's) when every tunnel to device would be: the
    server cannot be reached, does not take the token, knows no such device
    (or several by that name), or the token's role cannot open tunnels.
    The server's GET /devices/DEVICE/tunnels.json answers it."""
    try:
        status, body = client.call(server, "/devices/%s/tunnels.json" % urllib.parse.quote(device, safe=""),
                                   token, timeout=30)
    except OSError as e:
        raise Refused("cannot reach %s: %s" % (server, getattr(e, "reason", None) or e))
    if status != 200 or not isinstance(body, dict):
        message = body.get("error") if isinstance(body, dict) else None
        raise Refused("%s (HTTP %d)" % (message or "the server refused", status), status)
    if not body.get("can_open"):
        raise Refused("your role cannot open tunnels: it needs operator (HTTP 403)", 403)


def forward(server, token, device, port, listen, verbose=False):
    """Serve DEVICE's PORT on `listen` until Ctrl-C (0) or a refusal every
    connection would get (255): the device is looked up before anything
    listens, so a mistyped name fails at once."""
    try:
        host, local = parse_listen(listen)
    except BadInput as e:
        _say("forward", "cannot listen on %s: %s" % (listen, e))
        return 2
    try:
        device_check(server, token, device)
    except Refused as e:
        _say("forward", e)
        return EXIT_REFUSED
    try:
        lsock = socket.create_server((host, local), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except OSError as e:
        _say("forward", "cannot listen on %s: %s" % (listen, e))
        return 2
    bound = lsock.getsockname()[1]
    where = "[%s]:%d" % (host, bound) if ":" in host else "%s:%d" % (host, bound)
    print("socketman-server forward: %s port %d on %s (http://%s/ for a web interface); one tunnel per "
          "connection, %d at once; Ctrl-C stops" % (device, port, where, where, MAX_AT_ONCE), flush=True)
    fwd = Forwarder(server, token, device, port, verbose)
    lsock.settimeout(0.5)
    try:
        while fwd.fatal is None:
            try:
                conn, _ = lsock.accept()
            except TimeoutError:
                continue
            conn.settimeout(None)
            threading.Thread(target=fwd.handle, args=(conn,), daemon=True, name="tunnel").start()
    except KeyboardInterrupt:
        pass
    finally:
        lsock.close()
        fwd.close_all()
    return EXIT_REFUSED if fwd.fatal else 0
