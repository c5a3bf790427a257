"""The tunnel service (issue 22, PROTOCOL 11): pairs an operator's WebSocket
with the one the device opens, on the ASGI side of the server (asgi.py).

    operator  GET /tunnel?device=MAC-or-name&port=22   (WebSocket; API token
              or dashboard session, role operator)
    device    GET /tunnel/<id>?access_token=&mac=       (WebSocket, PROTOCOL 11)

The operator's handshake is checked, a random one-time id made and a
`tunnel` job (`meta.msg` "<port> <ws(s) URL>/tunnel/<id>", signed like any
job) sent to the device over MQTT. The device must connect within
`--tunnel-wait` seconds (60), with its own token and MAC, and may do so
once. Then binary frames are relayed both ways, each direction through a
queue of QUEUE_MESSAGES messages: nothing is read from one side while the
other has not taken what came before (uvicorn pauses reading a WebSocket
until its message is taken, and waits for a writable transport before each
send), so a slow reader slows the writer and memory stays bounded. When
either side closes, what it sent before is delivered to the other, which is
closed then. Every tunnel is a row of `tunnels` (tunnel_records.py) and two
audit records, `tunnel.open` and `tunnel.close`.

After the handshake, the operator gets text frames with JSON status
({"state": "waiting" | "delivered" | "open", ...}) and the stream in binary
frames; the close code says how it ended (CLOSE_* below)."""
import asyncio
import logging
import os
import secrets
import socket
import time

from . import auth
from .protocol import BadInput
from .tunnel_wire import SUBPROTOCOL, Side, any_mac, deny, find_device, handshake_view, parse_port, pump, read_side

log = logging.getLogger("socketman_server.tunnels")

QUEUE_MESSAGES = 2           # messages held per direction (besides uvicorn's one)
MAX_PER_DEVICE = 4           # PROTOCOL 11: the agent opens at most 4 at once
TICK_S = 1.0                 # byte counts, close requests and job answers
LOST_EVERY_TICKS = 30

# How a tunnel ended, as the operator's close code (and its reason text).
CLOSE_NORMAL = 1000          # the other side closed; everything it sent was delivered
CLOSE_STOPPING = 1001        # the server is stopping
CLOSE_REFUSED = 4403         # the device refused the tunnel job (REJECTED: port not allowed, busy...)
CLOSE_EXPIRED = 4408         # the device did not connect within --tunnel-wait seconds
CLOSE_GONE = 4410            # the device was forgotten meanwhile
CLOSE_BY_OPERATOR = 4499     # "Close" on the dashboard (both sides get it)
CLOSE_FAILED = 4502          # the device could not open it (nothing listens, the server refused it...)



def _why(eof):
    """What a side's close said, for the record and the other side: " (1009)",
    " (idle)" (the agent's reason when it closed an idle tunnel), " (1001:
    the agent is stopping)", or "" for a plain close."""
    if eof is None:
        return ""
    code = str(eof.code) if eof.code not in (None, 1000, 1005) else ""
    said = ": ".join(x for x in (code, eof.reason.strip()[:100]) if x)
    return " (%s)" % said if said else ""


class Tunnel:
    """One tunnel while this process relays it. state: waiting (for the
    device) -> open -> closed. Byte counts are payload bytes."""

    def __init__(self, tunnel_id, device, port, operator, address, job):
        self.id, self.device, self.port = tunnel_id, device, port
        self.operator, self.address, self.job = operator, address, job
        self.state = "waiting"
        self.op = self.dev = None
        self.attached = asyncio.Event()   # the device connected
        self.ended = asyncio.Event()      # something outside the relay ends it
        self.changed = asyncio.Event()    # news for the operator while waiting
        self.finished = asyncio.Event()   # recorded; both handlers may return
        self.recorded = False
        self.delivered = False
        self.to_device = self.from_device = 0
        self.written = (0, 0, 0.0)        # counts and time last written to the database
        self.outcome = self.detail = None
        self.code = CLOSE_NORMAL
        self.closer = None                # who pressed "Close" on the dashboard
        self.started = time.monotonic()
        self.connected = None

    def count_to_device(self, n):
        self.to_device += n

    def count_from_device(self, n):
        self.from_device += n

    def end(self, outcome, detail, code):
        """Ask the tunnel to end (the first reason given stands)."""
        if self.outcome is None:
            self.outcome, self.detail, self.code = outcome, detail, code
        self.ended.set()


class TunnelService:
    """The tunnels this server process relays. flask_app: the app of
    app.create_app (its store, settings and session key check the
    operator's handshake); bridge: sends the tunnel jobs."""

    def __init__(self, settings, store, bridge, flask_app):
        self.settings, self.store, self.bridge, self.app = settings, store, bridge, flask_app
        self.instance = "%s:%d:%s" % (socket.gethostname()[:40], os.getpid(), secrets.token_hex(3))
        self.tunnels = {}
        self.stopping = lambda: False     # set by asgi.run: is the server shutting down?
        self._ticker = None
        # The count of a device's tunnels and the new row are one step: six
        # requests at once (a browser through `forward`) all saw 3 open.
        self._opening = asyncio.Lock()

    # ---- life ------------------------------------------------------------

    async def start(self):
        n = await asyncio.to_thread(self.store.tunnels_lost)
        if n:
            log.info("closed %d tunnel(s) left open by a server process that stopped", n)
        self._ticker = asyncio.create_task(self._tick_forever())

    async def stop(self):
        """Close every tunnel (1001) and record them; then stop ticking."""
        for t in list(self.tunnels.values()):
            t.end("stopped", "the server stopped", CLOSE_STOPPING)
        waits = [t.finished.wait() for t in list(self.tunnels.values())]
        if waits:
            await asyncio.wait([asyncio.ensure_future(w) for w in waits], timeout=5)
        for t in list(self.tunnels.values()):  # handlers that did not finish in time
            await self._finish(t)
        if self._ticker:
            self._ticker.cancel()

    # ---- the operator's side -----------------------------------------------

    async def operator_endpoint(self, ws):
        """GET /tunnel?device=&port= as a WebSocket (see the module doc)."""
        headers, address = handshake_view(ws.scope, self.settings.behind_proxy)
        op = await asyncio.to_thread(auth.operator_for_headers, self.app, headers, address)
        if op is None:
            log.info("refused a tunnel to %s: not logged in, or an unknown, revoked or malformed token", address)
            return await deny(ws, 401, "log in first: send Authorization: Bearer TOKEN (an unknown, revoked or "
                                       "malformed API token is refused), or the dashboard's session cookie")
        ref = (ws.query_params.get("device") or "").strip()
        target = ref[:200] or "?"
        if not op.can("operator"):
            await asyncio.to_thread(self.store.audit, op, "tunnel.open", target, "denied",
                                    "needs the role operator; %s has %s" % (op.name, op.role), address)
            return await deny(ws, 403, "your role (%s) cannot open tunnels: it needs operator" % op.role)
        try:
            port = parse_port(ws.query_params.get("port", "22"))
            if not ref:
                raise BadInput("name the device: ?device=MAC or name")
        except BadInput as e:
            return await deny(ws, 400, str(e))
        dev, status, why = await asyncio.to_thread(find_device, self.store, ref)
        if dev is None:
            await asyncio.to_thread(self.store.audit, op, "tunnel.open", target, "refused", why, address)
            return await deny(ws, status, why)
        async with self._opening:
            status, why = await asyncio.to_thread(self._can_open, dev)
            if not why:
                t = await asyncio.to_thread(self._create, dev, port, op, address)
                self.tunnels[t.id] = t  # before the job leaves: a device on a fast link connects at once
        if why:
            await asyncio.to_thread(self.store.audit, op, "tunnel.open", dev["mac"], "refused",
                                    "port %d: %s" % (port, why), address)
            return await deny(ws, status, why)
        why = await asyncio.to_thread(self._send_job, t)
        if why:
            del self.tunnels[t.id]
            return await deny(ws, 409, "the tunnel job was not sent: %s" % why)
        try:
            await ws.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in ws.scope.get("subprotocols", ()) else None)
            t.op = Side(ws)
            await self._run(t)
        finally:
            t.state = "closed"
            if t.outcome is None:
                t.end("closed", "the operator's connection was lost", CLOSE_NORMAL)
            if t.dev is not None:
                await t.dev.close(t.code, t.detail)
            await self._finish(t)
            self.tunnels.pop(t.id, None)

    def _can_open(self, dev):
        """(0, None) when a tunnel job can go to this device now, else
        (HTTP status, why)."""
        if not dev["token"]:
            return 409, "the device %s is not admitted" % dev["mac"]
        if not self.bridge.connected:
            return 503, "the server is not connected to the broker: it cannot send the tunnel job"
        if not dev.get("base"):
            return 409, "the device %s never connected to the broker" % dev["mac"]
        if not dev.get("online"):
            return 409, "the device %s is offline" % dev["mac"]
        if self.store.tunnels_open_count(dev["id"]) >= MAX_PER_DEVICE:
            return 429, "the device %s already has %d tunnels open, the most it takes (PROTOCOL 11)" % (
                dev["mac"], MAX_PER_DEVICE)
        return 0, None

    def _create(self, dev, port, op, address):
        """The job row and the tunnel row of a new tunnel (Tunnel)."""
        tid = secrets.token_hex(16)
        msg = "%d %s/tunnel/%s" % (port, self.settings.tunnel_base(), tid)
        _, (job,) = self.store.create_jobs([dev["id"]], msg, "tunnel", "one", op.name)
        self.store.tunnel_add(tid, dev, port, job["job_id"], op.name, op.via, address, self.instance)
        return Tunnel(tid, dev, port, op, address, job)

    def _send_job(self, t):
        """Publish the tunnel job; on failure record why (job NOT SENT,
        tunnel closed "not sent") and return it. Audits tunnel.open."""
        try:
            why = self.bridge.send(t.job, t.device)
        except BadInput as e:
            why = str(e)
        detail = "port %d, tunnel %s, job %s" % (t.port, t.id, t.job["job_id"])
        if why:
            self.store.job_not_sent(t.job["id"], why)
            self.store.tunnel_closed(t.id, "not sent", why, 0, 0)
            self.store.audit(t.operator, "tunnel.open", t.device["mac"], "not sent", detail + ": " + why, t.address)
            return why
        self.store.audit(t.operator, "tunnel.open", t.device["mac"], "sent", detail, t.address)
        log.info("tunnel %s: %s asked for %s port %d", t.id, t.operator.name, t.device["mac"], t.port)
        return None

    async def _run(self, t):
        """Wait for the device, then relay until either side closes or the
        tunnel is ended from outside."""
        op_q = asyncio.Queue(QUEUE_MESSAGES)
        tasks = [asyncio.create_task(read_side(t.op, op_q))]
        try:
            await t.op.status(tunnel=t.id, device=t.device["mac"], port=t.port, state="waiting",
                              wait=self.settings.tunnel_wait)
            if not await self._wait_device(t):
                await t.op.close(t.code, t.detail)
                return
            await asyncio.to_thread(self.store.tunnel_connected, t.id)
            await t.op.status(state="open")
            dev_q = asyncio.Queue(QUEUE_MESSAGES)
            tasks.append(asyncio.create_task(read_side(t.dev, dev_q)))
            to_dev = asyncio.create_task(pump(op_q, t.dev, t.count_to_device))
            to_op = asyncio.create_task(pump(dev_q, t.op, t.count_from_device))
            ended = asyncio.create_task(t.ended.wait())
            tasks += [to_dev, to_op, ended]
            await asyncio.wait({to_dev, to_op, ended}, return_when=asyncio.FIRST_COMPLETED)
            if not t.ended.is_set():
                # One side closed (its Eof came through its pump after all it
                # had sent), or could not take more (its pump's send failed).
                if to_dev.done():
                    r = to_dev.result()
                    who, what = ("operator", "closed the tunnel") if r else ("device", "went away")
                else:
                    r = to_op.result()
                    who, what = ("device", "closed the tunnel") if r else ("operator", "went away")
                if self.stopping():
                    t.end("stopped", "the server stopped", CLOSE_STOPPING)
                else:
                    t.end("closed", "the %s %s%s" % (who, what, _why(r)), CLOSE_NORMAL)
            await asyncio.gather(t.op.close(t.code, t.detail), t.dev.close(t.code, t.detail))
        finally:
            for task in tasks:
                task.cancel()

    async def _wait_device(self, t):
        """True once the device connected; False when the tunnel ended
        first (expiry, the device's refusal, the operator leaving...)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.tunnel_wait
        told = False
        while not t.attached.is_set():
            if t.ended.is_set() or t.op.gone.is_set():
                if t.op.gone.is_set():
                    if self.stopping():
                        t.end("stopped", "the server stopped", CLOSE_STOPPING)
                    else:
                        t.end("cancelled", "the operator left before the device connected", CLOSE_NORMAL)
                t.state = "closed"
                return False
            left = deadline - loop.time()
            if left <= 0:
                t.state = "closed"  # now: a device that comes later is refused
                t.end("expired", "the device did not connect within %d s" % self.settings.tunnel_wait,
                      CLOSE_EXPIRED)
                return False
            if t.delivered and not told:
                told = True
                await t.op.status(state="delivered")
            t.changed.clear()
            waits = [asyncio.ensure_future(e.wait()) for e in (t.attached, t.ended, t.changed, t.op.gone)]
            try:
                await asyncio.wait(waits, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
        return True

    async def _finish(self, t):
        """Record the end once, then let both handlers return."""
        if t.recorded:
            return
        t.recorded = True
        await asyncio.to_thread(self._record_end, t)
        t.finished.set()

    def _record_end(self, t):
        """The tunnel's row closed and its tunnel.close audit record."""
        secs = int(time.monotonic() - (t.connected or t.started))
        detail = "port %d, %d bytes to the device, %d bytes from it, %d s: %s" % (
            t.port, t.to_device, t.from_device, secs, t.detail)
        try:
            self.store.tunnel_closed(t.id, t.outcome, t.detail, t.to_device, t.from_device)
            who = t.closer if t.closer is not None else t.operator
            if t.closer is not None:
                detail += " (opened by %s)" % t.operator.name
            self.store.audit(who, "tunnel.close", t.device["mac"], t.outcome, detail, t.address)
        except Exception:  # noqa: BLE001 - the database is down: the log keeps it
            log.exception("could not record the end of tunnel %s", t.id)
        log.info("tunnel %s to %s port %d %s: %s", t.id, t.device["mac"], t.port, t.outcome, detail)

    # ---- the device's side -------------------------------------------------

    async def device_endpoint(self, ws):
        """GET /tunnel/<id>?access_token=&mac= as a WebSocket (PROTOCOL 11):
        404 for an id that is unknown, used or expired; 403 for a token or
        MAC that is not the tunnel's device; 400 without the subprotocol
        socketman-tunnel."""
        tid = ws.path_params.get("tid", "")
        t = self.tunnels.get(tid)
        if t is None or t.state != "waiting":
            log.info("refused a device connection to tunnel %s: unknown, used or expired", tid[:40])
            return await deny(ws, 404, "no such tunnel: unknown, already used, or expired")
        token, mac = ws.query_params.get("access_token", ""), ws.query_params.get("mac", "")
        dev = await asyncio.to_thread(self.store.device_by_token, token)
        if dev is None or dev["id"] != t.device["id"] or any_mac(mac) != t.device["mac"]:
            log.warning("refused a device connection to tunnel %s (for %s): wrong token or MAC %r", tid,
                        t.device["mac"], mac[:40])
            return await deny(ws, 403, "this tunnel is not for this device")
        if SUBPROTOCOL not in ws.scope.get("subprotocols", ()):
            return await deny(ws, 400, "Sec-WebSocket-Protocol: %s is required (PROTOCOL 11)" % SUBPROTOCOL)
        if self.tunnels.get(tid) is not t or t.state != "waiting":
            return await deny(ws, 404, "no such tunnel: unknown, already used, or expired")
        t.state = "open"  # one time: a second connection is refused from here on
        await ws.accept(subprotocol=SUBPROTOCOL)
        t.dev = Side(ws)
        t.connected = time.monotonic()
        t.attached.set()
        log.info("tunnel %s: %s connected", t.id, t.device["mac"])
        await t.finished.wait()

    # ---- bookkeeping ---------------------------------------------------------

    async def _tick_forever(self):
        n = 0
        while True:
            await asyncio.sleep(TICK_S)
            n += 1
            try:
                await self._tick(n % LOST_EVERY_TICKS == 0)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the database is away for a while: next tick
                log.exception("tunnel bookkeeping failed; trying again")

    async def _tick(self, find_lost=False):
        """Write byte counts (when they changed, else every HEARTBEAT_S),
        then act on close requests from the dashboard, forgotten devices
        and the devices' answers to tunnel jobs still waiting."""
        from .tunnel_records import HEARTBEAT_S
        now = time.monotonic()
        mine = dict(self.tunnels)
        counts = {}
        for tid, t in mine.items():
            c = (t.to_device, t.from_device)
            if c != t.written[:2] or now - t.written[2] >= HEARTBEAT_S:
                counts[tid] = c
                t.written = c + (now,)
        waiting = {t.job["job_id"]: t for t in mine.values() if t.state == "waiting"}
        if not mine:
            if find_lost:
                await asyncio.to_thread(self.store.tunnels_lost)
            return
        asked, gone, answered = await asyncio.to_thread(self.store.tunnel_tick, list(mine), counts, list(waiting))
        for tid, who in asked.items():
            t = mine[tid]
            t.closer = who
            t.end("closed", "closed on the dashboard by %s" % who, CLOSE_BY_OPERATOR)
        for tid in gone:
            mine[tid].end("gone", "the device was forgotten", CLOSE_GONE)
        for job_id, job in answered.items():
            t = waiting[job_id]
            if t.state != "waiting":
                continue  # the device connected meanwhile: its answer is about the tunnel's end
            if job["state"] == "REJECTED":
                t.end("refused", "the device refused the tunnel: %s" % (job["reason"] or "no reason"), CLOSE_REFUSED)
            elif job["state"] == "PROCESSED":
                t.end("failed", "the device could not open the tunnel: %s" % (
                    (job["output"] or "").strip()[:300] or "exit code %s" % job["exit_code"]), CLOSE_FAILED)
            elif not t.delivered:
                t.delivered = True
                t.changed.set()
        if find_lost:
            await asyncio.to_thread(self.store.tunnels_lost)
