"""Both ends of a tunnel (PROTOCOL 11) for the fleet server's own tests
(test_tunnel_server.py, test_tunnel_browser.py; test_tunnel_e2e.py runs
the real agent instead):

- TunnelDevice: a device played by a small client of its own: on MQTT as
  a device (retained CONNECT online "1", jobs on sub/<base>, DELIVERED /
  PROCESSED / REJECTED back), and for each `tunnel` job a connection to the
  local TCP service and a WebSocket (the `websockets` library's client:
  the handshake with access_token, mac and the subprotocol, masked binary
  frames) relayed both ways, as PROTOCOL 11 says the agent does.
- operator(): the operator's WebSocket to /tunnel with an API token.
- EchoServer, Firehose: the device's local services (dropbear:
  helpers/sshd.py)."""
import json
import os
import socket
import threading
import time
import urllib.parse

import paho.mqtt.client as paho

from helpers.broker import PASSWORD, USER
from helpers.fleet import KEY, TOPIC

SUBPROTOCOL = "socketman-tunnel"
FRAME = 16 * 1024   # what the test device reads from its TCP service at once (< the 64 KiB cap)


class TunnelDevice:
    """One admitted device of `srv` (helpers.fleet.FleetServer), online on
    `broker`. ports: {port in the job: local TCP port it reaches}. mode:
    "relay" (default), "ignore" (never connects: the tunnel expires),
    "reject" (REJECTED: the port is not in tunnel_ports). Before its real
    connection it may try `bad_first`: a list of (what, url changer) whose
    refusals are recorded in self.refusals. job_key: checks each job's
    signature (PROTOCOL 9)."""

    def __init__(self, srv, broker, mac, ports, name="", job_key=None):
        self.srv, self.mac, self.ports, self.job_key = srv, mac, dict(ports), job_key
        self.mode = "relay"
        self.bad_first = []
        self.refusals = []
        self.jobs = []          # every job payload received (dicts)
        self.urls = []          # every tunnel URL used (with the token)
        self.closes = []        # (close code, reason) of each tunnel's WebSocket, as the device saw it
        self.sockets = []       # the device-side WebSocket connections
        srv.post_form("/provisioning", {"mac": mac, "name": name})
        st = srv.store()
        try:
            self.token = st.device(mac)["token"]
        finally:
            st.close()
        self.base = "%s/%s/%s" % (TOPIC, KEY, mac)
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="dev-%s" % mac.replace(":", ""),
                                  clean_session=True)
        self.client.username_pw_set(USER, PASSWORD)
        self.client.will_set("status/" + self.base, self._event("CONNECT", online="0"), qos=1, retain=True)
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = self._on_job
        self.client.connect("127.0.0.1", broker.port, keepalive=30)
        self.client.loop_start()
        self.client.subscribe("sub/" + self.base, qos=1)
        assert subscribed.wait(10), "the test device did not subscribe"
        self.client.publish("status/" + self.base, self._event("CONNECT", online="1", client_id="dev"),
                            qos=1, retain=True).wait_for_publish(10)
        srv.wait(lambda: self._online(), what="the test device online on the server")

    def _online(self):
        st = self.srv.store()
        try:
            return st.device(self.mac)["online"]
        finally:
            st.close()

    @staticmethod
    def _event(kind, job_id=None, **meta):
        e = {"app": "socketman", "timestamp": int(time.time()), "event_type": kind, "meta": meta}
        if job_id:
            e["id"] = job_id
        return json.dumps(e)

    def _publish(self, kind, topic, job_id, **meta):
        self.client.publish("%s/%s" % (topic, self.base), self._event(kind, job_id, **meta), qos=1)

    def _on_job(self, client, userdata, msg):
        job = json.loads(msg.payload)
        self.jobs.append(job)
        if job["meta"].get("type") != "tunnel":
            return
        threading.Thread(target=self._tunnel_job, args=(job,), daemon=True).start()

    def _tunnel_job(self, job):
        port_text, url = job["meta"]["msg"].split(" ", 1)
        port = int(port_text)
        if self.job_key:
            from helpers.signing import signed
            expect = signed(job["id"], job["meta"]["msg"], "tunnel", job["timestamp"], key=self.job_key)["sig"]
            if job.get("sig") != expect:
                self._publish("REJECTED", "pub", job["id"], reason="bad signature")
                return
        if self.mode == "reject" or port not in self.ports:
            self._publish("REJECTED", "pub", job["id"], reason="port %d is not in tunnel_ports" % port)
            return
        self._publish("DELIVERED", "delivery", job["id"])
        if self.mode == "ignore":
            return
        try:
            tcp = socket.create_connection(("127.0.0.1", self.ports[port]), 5)
        except OSError as e:
            self._publish("PROCESSED", "pub", job["id"], success=False, exit_code=1, msg="port %d: %s" % (port, e))
            return
        for what, change in self.bad_first:
            try:
                ws = connect_device(change(self.device_url(url)), subprotocol=what != "no subprotocol")
                ws.close()
                self.refusals.append((what, 101))
            except Exception as e:  # noqa: BLE001
                self.refusals.append((what, getattr(getattr(e, "response", None), "status_code", repr(e))))
        try:
            ws = connect_device(self.device_url(url))
        except Exception as e:  # noqa: BLE001
            tcp.close()
            status = getattr(getattr(e, "response", None), "status_code", e)
            self._publish("PROCESSED", "pub", job["id"], success=False, exit_code=1, msg="server said %s" % status)
            return
        self.sockets.append(ws)
        t0 = time.monotonic()
        got, sent = relay_tcp(ws, tcp)
        self.closes.append((ws.close_code, ws.close_reason))
        self._publish("PROCESSED", "pub", job["id"], success=True, exit_code=0,
                      msg="closed: %d bytes in, %d bytes out, %d s" % (got, sent, time.monotonic() - t0))

    def device_url(self, url):
        """The URL a device connects to (PROTOCOL 11: its query, then
        access_token and mac)."""
        full = url + ("&" if "?" in url else "?") + urllib.parse.urlencode({"access_token": self.token,
                                                                           "mac": self.mac})
        self.urls.append(full)
        return full

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def connect_device(url, subprotocol=True):
    """The device's WebSocket as PROTOCOL 11 has it (websockets' sync
    client: key and accept checked, masked frames, no compression)."""
    from websockets.sync.client import connect
    ws = connect(url, subprotocols=[SUBPROTOCOL] if subprotocol else None, compression=None,
                 max_size=64 * 1024, user_agent_header="socketman/test", open_timeout=10, close_timeout=5,
                 legacy=True)
    if subprotocol:
        assert ws.subprotocol == SUBPROTOCOL, ws.subprotocol
    return ws


def relay_tcp(ws, tcp):
    """Relay a WebSocket and a TCP connection until either ends: TCP -> ws
    in a thread (the end of the TCP stream closes the WebSocket), binary
    frames -> TCP here. Returns (bytes from ws, bytes from tcp)."""
    from websockets.exceptions import ConnectionClosed
    counts = [0, 0]

    def up():
        try:
            while True:
                data = tcp.recv(FRAME)
                if not data:
                    break
                ws.send(data)
                counts[1] += len(data)
        except (OSError, ConnectionClosed):
            pass
        ws.close()

    th = threading.Thread(target=up, daemon=True)
    th.start()
    try:
        for msg in ws:
            if isinstance(msg, bytes):
                tcp.sendall(msg)
                counts[0] += len(msg)
    except (OSError, ConnectionClosed):
        pass
    try:
        tcp.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    tcp.close()
    th.join(10)
    return counts[0], counts[1]


def operator(srv, token, device, port, headers=None, subprotocol=True):
    """The operator's WebSocket to /tunnel (websockets' sync client);
    headers: instead of the Bearer token (a cookie, an Origin...)."""
    from websockets.sync.client import connect
    url = "ws://127.0.0.1:%d/tunnel?%s" % (srv.port, urllib.parse.urlencode({"device": device, "port": port}))
    h = headers if headers is not None else {"Authorization": "Bearer " + token}
    return connect(url, additional_headers=h, subprotocols=[SUBPROTOCOL] if subprotocol else None,
                   compression=None, max_size=64 * 1024, open_timeout=15, close_timeout=5, legacy=True)


def refusal(fn, *args, **kw):
    """(HTTP status, JSON error) of the WebSocket handshake fn(*args, **kw)
    that the server refused."""
    from websockets.exceptions import InvalidStatus
    try:
        ws = fn(*args, **kw)
    except InvalidStatus as e:
        body = e.response.body or b"{}"
        return e.response.status_code, json.loads(body).get("error", "")
    ws.close()
    raise AssertionError("the handshake was accepted")


class EchoServer:
    """A TCP service on loopback that sends back what it gets. greeting:
    sent first; then_close: closes after the greeting (a service that
    hangs up by itself)."""

    def __init__(self, greeting=b"", then_close=False):
        self.greeting, self.then_close = greeting, then_close
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conns = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._echo, args=(c,), daemon=True).start()

    def _echo(self, c):
        try:
            if self.greeting:
                c.sendall(self.greeting)
            if self.then_close:
                c.shutdown(socket.SHUT_WR)
                time.sleep(0.2)
                return
            while True:
                data = c.recv(65536)
                if not data:
                    break
                c.sendall(data)
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.sock.close()


class Firehose:
    """A TCP service on loopback that sends as fast as it is taken, until
    the connection ends."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        chunk = os.urandom(65536)
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._pour, args=(c, chunk), daemon=True).start()

    @staticmethod
    def _pour(c, chunk):
        try:
            while True:
                c.sendall(chunk)
        except OSError:
            c.close()

    def close(self):
        self.sock.close()


def rss_kib(pid):
    """A process's resident memory (KiB), from /proc."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)

