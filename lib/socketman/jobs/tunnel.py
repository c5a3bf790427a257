# Tunnels (PROTOCOL 11): a job of type "tunnel" connects to a service on
# the device itself (127.0.0.1:<port>, a port of tunnel_ports: its dropbear,
# its web interface) and opens a WebSocket to the fleet server (ws.py), and
# the bytes go both ways unchanged until either side closes or none passed
# for tunnel_idle seconds. A tunnel is not a queued job: the loop drives
# every tunnel beside jobs, MQTT and stats. Each side's reader is paused
# while the other side has HIGH bytes it could not write yet, so a slow
# reader at either end costs bounded memory, never more with the traffic.
# Loaded by the first tunnel job (jobs.dispatch routes it here).
from .. import dns, log, rt, ws, wsframe
from ..conn import Conn
from ..loop import SLEEP

MAX_TUNNELS = 4
HIGH = 8192         # bytes queued towards one side before the other side's reads pause
LOCAL_MS = 10000    # the connect to the device's own service
DRAIN_MS = 10000    # what the server sent before its close frame may take this long to go
STOP_MS = 2000      # a clean stop of the agent waits this long for the close frames
FAILED_CODE = 1


def parse(msg, ports):
    """meta.msg of a tunnel job, "<port> <ws or wss URL>" (PROTOCOL 11),
    against tunnel_ports (list of int) -> (port int, url str). ValueError
    with the reason for REJECTED ("port" in it when the port is refused)."""
    port, sep, url = msg.partition(" ")
    # Exactly one space and nothing around the URL: a server that sends
    # more is not following the contract, and guessing hides its bug.
    if not sep or not url or url != url.strip() or " " in url:
        raise ValueError('meta.msg must be "<port> <ws:// or wss:// URL>", one space between')
    # No leading zero: "022" is not how a port is written (octal to some readers).
    # ASCII digits by hand: CPython's isdigit() also takes other scripts'
    # digits ("٢٢"), MicroPython's does not.
    if not 0 < len(port) <= 5 or port[0] == "0" or [c for c in port if c not in "0123456789"]:
        raise ValueError("port %r is not a TCP port number" % port[:20])
    port = int(port)
    if not ports:
        raise ValueError("port %d refused: tunnels are off (tunnel_ports is empty)" % port)
    if port not in ports:
        raise ValueError("port %d is not in tunnel_ports" % port)
    try:
        wsframe.split(url)
    except ValueError as e:
        raise ValueError("the tunnel URL: %s" % e)
    return port, url


class Tunnel:
    """One tunnel: the job record (jobs.queue.parse), the device's port, the
    server's URL, the config. The loop drives it through Tunnels; .result
    is its result record (jobs.runner.Runner.result's shape) once over.
    Byte counts are payload bytes: bytes_in from the server to the device's
    service, bytes_out from the service to the server."""

    def __init__(self, job, port, url, cfg):
        self.job, self.port, self.url, self.cfg = job, port, url, cfg
        self.started = self.last_byte = rt.ms()
        self.idle_ms = cfg["tunnel_idle"] * 1000
        self.bytes_in = self.bytes_out = 0
        self.result = None
        self.state = "local"        # local -> ws -> relay -> closing | draining -> over
        self.clean_end = None       # why it ended cleanly (log line), when it did
        self.deadline = 0
        self.ws = None
        c = self.local = Conn()
        c.on_open, c.on_data, c.on_drain = self._local_open, self._local_data, self._local_drained
        try:
            c.open("127.0.0.1", port, LOCAL_MS)
        except OSError as e:
            self._failed("cannot connect to 127.0.0.1:%d: %s" % (port, e))
        c.pause()  # nothing is read from the service before the WebSocket is open (after open(): it clears it)

    # ---- the loop's side ---------------------------------------------------

    def wants(self):
        out = self.local.wants()
        if self.ws is not None:
            out = out + self.ws.wants()
        return out

    def step(self, sock, events):
        """Poll events seen on sock, one of this tunnel's sockets."""
        if self.ws is not None and self.ws.conn is not None and sock is self.ws.conn.polled:
            self.ws.step(events)
        elif sock is self.local.polled:
            self._step_local(events)

    def service(self):
        """Deadlines; ms until the next one."""
        if self.result is not None:
            return 60000
        now = rt.ms()
        if self.state == "local":
            try:
                return self.local.service()
            except OSError as e:
                self._failed("cannot connect to 127.0.0.1:%d: %s" % (self.port, e))
                return 60000
        nxt = self.ws.service() if self.ws is not None else 60000
        if self.state == "relay":
            quiet = now - self.last_byte
            if quiet >= self.idle_ms:
                self._close("no byte either way for %d s" % (self.idle_ms // 1000), wsframe.NORMAL, "idle")
            else:
                nxt = min(nxt, self.idle_ms - quiet)
        elif self.state == "draining":
            if not self.local.pending() or now >= self.deadline:
                self._over()
            else:
                nxt = min(nxt, self.deadline - now)
        return max(1, nxt)

    def phase(self):
        """Where it is (its own state, its WebSocket's): its deadlines change with it."""
        return self.state, self.ws.state if self.ws is not None else -1

    def stop(self):
        """The agent stops: close both sides (close status 1001)."""
        if self.result is None:
            if self.state == "relay":
                self._close("the agent stopped", wsframe.GOING_AWAY, "the agent is stopping")
            elif self.ws is not None:
                self.ws.close(wsframe.GOING_AWAY)
            self.local.close()
            if self.ws is None or self.ws.done():
                self._ended("the agent stopped before the tunnel was open")

    def kill(self, why):
        """Over now, whatever is under way (a clean stop that cannot wait
        longer): both sockets closed, the result made."""
        if self.result is None:
            self.local.close()
            if self.ws is not None and self.ws.conn is not None:
                self.ws.conn.close()
            if self.state in ("local", "ws"):
                self._failed(why)
            else:
                self.clean_end = self.clean_end or why
                self._ended(None)

    # ---- the device's service --------------------------------------------

    def _step_local(self, events):
        try:
            self.local.step(events)
        except (OSError, ValueError) as e:
            if self.state == "local":
                self._failed("cannot connect to 127.0.0.1:%d: %s" % (self.port, e))
            else:
                self._local_gone("the device service's connection failed: %s" % e)

    def _local_open(self):
        ctx = None
        try:
            if self.url.startswith("wss:"):
                from .. import tls  # only a wss tunnel loads it
                ctx = tls.context(self.cfg["cacrt"], self.cfg["insecure"])
            c = self.ws = ws.Client(self.url, [("access_token", self.cfg["token"]), ("mac", self.cfg["mac"])], ctx)
        except (OSError, ValueError) as e:
            self._failed("cannot open the WebSocket: %s" % e)
            return
        c.on_open, c.on_data, c.on_drain, c.on_close = self._ws_open, self._ws_data, self._ws_drained, self._ws_closed
        self.state = "ws"
        c.start(dns.shared)

    def _local_data(self, data):
        if not data:
            self._local_gone("the device service closed the connection")
            return
        self.bytes_out += len(data)
        self.last_byte = rt.ms()
        self.ws.send(data)
        if self.ws.pending() > HIGH:
            self.local.pause()  # until the server takes it (_ws_drained)

    def _local_drained(self):
        if self.ws is not None and self.ws.paused() and self.state == "relay":
            self.ws.resume()
        if self.state == "draining":
            self._over()

    def _local_gone(self, why):
        # What the service sent is queued before the close frame: it goes first.
        if self.state == "relay":
            self._close(why, wsframe.NORMAL, "")
        elif self.state == "draining":
            self._over()

    # ---- the server's side -----------------------------------------------

    def _ws_open(self):
        self.state = "relay"
        self.last_byte = rt.ms()
        log.info("tunnel %s: open, 127.0.0.1:%d <-> %s" % (self.job["id"], self.port, self.ws.host))
        self._resume_local()

    def _ws_data(self, data):
        if self.state != "relay":
            return
        self.bytes_in += len(data)
        self.last_byte = rt.ms()
        try:
            self.local.write(data)
        except (OSError, ValueError) as e:
            self._local_gone("the device service's connection failed: %s" % e)
            return
        if self.local.pending() > HIGH:
            self.ws.pause()  # until the service takes it (_local_drained)

    def _ws_drained(self):
        if self.local.paused and self.state == "relay":
            self._resume_local()

    def _resume_local(self):
        try:
            self.local.resume()
        except (OSError, ValueError) as e:
            self._local_gone("the device service's connection failed: %s" % e)

    def _ws_closed(self):
        c = self.ws
        if self.state in ("local", "ws"):
            self.local.close()
            self._failed(c.error or "the server closed the WebSocket at once")
        elif self.state == "relay" and c.error is None:
            # The server closed: what it sent before goes to the service first.
            self.clean_end = "the server closed it (%d%s)" % (c.code, " " + c.reason if c.reason else "")
            self.state = "draining"
            self.deadline = rt.ms() + DRAIN_MS
            if not self.local.pending():
                self._over()
        elif self.state == "relay":
            self.local.close()
            self._ended(c.error)
        elif self.state == "closing":
            self._ended(None if self.clean_end else c.error)

    # ---- the end ---------------------------------------------------------

    def _close(self, why, code, reason):
        """We end it: a close frame after what is queued; over when the
        server answers."""
        self.clean_end = why
        self.state = "closing"
        self.local.close()
        self.ws.close(code, reason)

    def _over(self):
        self.local.close()
        self._ended(None)

    def _ended(self, error):
        if self.result is not None:
            return
        self.state = "over"
        secs = (rt.ms() - self.started) // 1000 // rt.SCALE
        msg = "closed: %d bytes in, %d bytes out, %d s" % (self.bytes_in, self.bytes_out, secs)
        if error:
            msg += "; " + error
            log.warn("tunnel %s: %s" % (self.job["id"], msg))
        else:
            log.info("tunnel %s: %s (%s)" % (self.job["id"], msg, self.clean_end))
        self._result(msg, not error)

    def _failed(self, why):
        """It never relayed: success false, why in the output."""
        if self.result is not None:
            return
        self.state = "over"
        self.local.close()
        if self.ws is not None:
            self.ws.close()
        log.warn("tunnel %s: %s" % (self.job["id"], why))
        self._result(why, False)

    def _result(self, msg, ok):
        self.result = {"id": self.job["id"], "type": "tunnel", "msg": msg.encode(), "success": ok,
                       "exit_code": 0 if ok else FAILED_CODE, "duration_ms": rt.ms() - self.started,
                       "job": self.job}


class Tunnels:
    """The agent's tunnels: at most MAX_TUNNELS at once, a socket source of
    loop with its own task for the deadlines. report(result record) hands a
    finished tunnel's result to the reporter (PROCESSED, PROTOCOL 4.1)."""

    def __init__(self, cfg, loop, report):
        self.cfg = cfg
        self.loop = loop
        self.report = report
        self.tunnels = []
        loop.add_source(self)
        self.task = loop.every(60000, self.tick, name="tunnels")

    def start(self, job):
        """Open a tunnel for a job record of type "tunnel": None when it is
        under way (its result comes later, never from inside this call), or
        the reason to reject it (str: "port" in it for a refused port,
        "busy" when MAX_TUNNELS are open)."""
        try:
            port, url = parse(job["msg"], self.cfg["tunnel_ports"])
        except ValueError as e:
            return str(e)
        if len(self.tunnels) >= MAX_TUNNELS:
            return "busy: %d tunnels are open" % MAX_TUNNELS
        self.tunnels.append(Tunnel(job, port, url, self.cfg))
        self.loop.wake(self.task)
        return None

    def count(self):
        """How many tunnels are open (or opening): ubus status' `tunnels`."""
        return len(self.tunnels)

    def wants(self):
        """Every tunnel's [(socket, poll mask)]."""
        out = []
        for t in self.tunnels:
            out.extend(t.wants())
        return out

    def ready(self, sock, events):
        """The loop saw events on sock: its tunnel moves on."""
        for t in self.tunnels:
            if sock is t.local.polled or (t.ws is not None and t.ws.conn is not None and sock is t.ws.conn.polled):
                before = t.phase()
                t.step(sock, events)
                if t.phase() != before:  # its deadlines changed: the task looks again
                    self.loop.wake(self.task)
                break
        self._reap()

    def tick(self):
        """The loop's task: every tunnel's deadlines; SLEEP with none open."""
        if not self.tunnels:
            return SLEEP
        nxt = 60000
        for t in self.tunnels:
            nxt = min(nxt, t.service())
        if self._reap():
            return 0
        return nxt

    def _reap(self):
        done = [t for t in self.tunnels if t.result is not None]
        for t in done:
            self.tunnels.remove(t)
            try:
                self.report(t.result)
            except Exception as e:  # one result that cannot go must not stop the others
                log.exc("tunnel %s result" % t.job["id"], e)
        if done and self.tunnels:
            self.loop.wake(self.task)
        return bool(done)

    def stop(self):
        """The agent's clean stop: every tunnel closes (close frames go
        while the loop drains busy(), STOP_MS at most)."""
        for t in self.tunnels:
            t.stop()
        self._reap()

    def kill(self):
        """After stop() and its drain: whatever did not close in time ends
        now, and its result is reported."""
        for t in self.tunnels:
            t.kill("the agent stopped")
        self._reap()

    def busy(self):
        """True while a tunnel is still closing."""
        self._reap()
        return bool(self.tunnels)
