"""The WebSocket pieces of a tunnel (PROTOCOL 11), for tunnels.py: the
handshake's rules (MAC forms, the port, the proxy rule, refusals), one side
of a tunnel, and moving its messages to the other side through a bounded
queue. No state of its own."""
import asyncio
import json
import re

from starlette.responses import JSONResponse

from .protocol import BadInput, normalize_mac

SUBPROTOCOL = "socketman-tunnel"
FRAME_MAX = 64 * 1024        # PROTOCOL 11: payload cap of a frame, both ways

_HEX12 = re.compile(r"^[0-9A-Fa-f]{12}$")
_CISCO = re.compile(r"^[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}$")


def any_mac(text):
    """A MAC in any common form (aa:bb:cc:dd:ee:ff, AA-BB-..., aabbccddeeff,
    aabb.ccdd.eeff) -> AA:BB:CC:DD:EE:FF, else None."""
    t = (text or "").strip()
    if _HEX12.match(t) or _CISCO.match(t):
        t = t.replace(".", "")
        t = ":".join(t[i:i + 2] for i in range(0, 12, 2))
    try:
        return normalize_mac(t)
    except BadInput:
        return None


def find_device(store, ref):
    """(device row, 0, "") or (None, HTTP status, why) for a MAC in any
    form or a device name (case does not matter: ssh lowercases %h):
    404 when none has it, 409 when several devices have that name."""
    mac = any_mac(ref)
    if mac:
        dev = store.device(mac)
        if dev is not None:
            return dev, 0, ""
    named = store.devices_named(ref)
    if len(named) == 1:
        return named[0], 0, ""
    if named:
        return None, 409, "%d devices are named %r: give its MAC instead" % (len(named), ref[:100])
    return None, 404, "no device has the MAC or name %r" % ref[:100]


def parse_port(text):
    """A TCP port 1..65535 from text; BadInput otherwise."""
    try:
        port = int(str(text).strip())
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise BadInput("the port must be a number from 1 to 65535, not %r" % str(text)[:20])
    return port


def _forwarded(value, n):
    """The value a chain of n trusted proxies appended last-but-(n-1) to a
    comma-separated X-Forwarded-* header (Werkzeug ProxyFix's rule)."""
    parts = [p.strip() for p in (value or "").split(",") if p.strip()]
    return parts[-n] if n and len(parts) >= n else None


def handshake_view(scope, behind_proxy):
    """(headers as [(name, value)] str pairs, client address) of a WebSocket
    handshake under the server's proxy rule: X-Forwarded-For and -Host are
    believed only with --behind-proxy N (then the Nth from the right), as
    ProxyFix does for the Flask side."""
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", [])]
    address = (scope.get("client") or ("",))[0] or ""
    if not behind_proxy:
        return [(k, v) for k, v in headers if not k.lower().startswith("x-forwarded-")], address
    joined = {}
    for k, v in headers:
        if k.lower() in ("x-forwarded-for", "x-forwarded-host"):
            joined[k.lower()] = joined[k.lower()] + "," + v if k.lower() in joined else v
    address = _forwarded(joined.get("x-forwarded-for"), behind_proxy) or address
    host = _forwarded(joined.get("x-forwarded-host"), behind_proxy)
    if host:
        headers = [(k, v) for k, v in headers if k.lower() != "host"] + [("host", host)]
    return headers, address


def _reason(text):
    """A close reason: at most 123 bytes of UTF-8 (RFC 6455)."""
    return text.encode("utf-8")[:120].decode("utf-8", "ignore")


async def deny(ws, status, message):
    """Refuse a WebSocket handshake with an HTTP status and a JSON body
    {"error": message} (uvicorn's denial response extension)."""
    try:
        await ws.send_denial_response(JSONResponse({"error": message}, status_code=status))
    except OSError:
        pass  # the client left meanwhile


class Eof:
    """The end of one side's messages: its close code and reason."""

    def __init__(self, code, reason=""):
        self.code, self.reason = code, reason


class Side:
    """One WebSocket of a tunnel (a Starlette WebSocket). close() is done
    once; sending to a side that is gone raises."""

    def __init__(self, ws):
        self.ws = ws
        self.closed = False
        self.gone = asyncio.Event()       # its disconnect arrived (even while its queue is full)

    async def send(self, data):
        await self.ws.send_bytes(data)

    async def status(self, **info):
        try:
            await self.ws.send_text(json.dumps(info))
        except Exception:  # noqa: BLE001 - a side that is gone is found by its reader
            pass

    async def close(self, code, reason=""):
        if self.closed:
            return
        self.closed = True
        try:
            await self.ws.close(code, _reason(reason))
        except Exception:  # noqa: BLE001 - already closed by the peer or the server
            pass


async def read_side(side, q):
    """Messages of one side into q (bounded: a full q stops reading it, and
    uvicorn reads nothing more from that WebSocket until its message is
    taken), then its Eof. Text frames are not part of the stream: dropped."""
    while True:
        try:
            msg = await side.ws.receive()
        except Exception:  # noqa: BLE001 - a side that is gone
            msg = {"type": "websocket.disconnect", "code": 1006}
        if msg["type"] == "websocket.disconnect":
            side.closed = True  # the server answered its close already
            side.gone.set()
            await q.put(Eof(msg.get("code"), msg.get("reason") or ""))
            return
        data = msg.get("bytes")
        if data:
            await q.put(data)


async def pump(q, dst, count):
    """Send what q holds to dst, in order, each send waiting until dst can
    take it, until q's Eof (returned) or dst cannot take it (None).
    count(n): called with the size of each message delivered."""
    while True:
        item = await q.get()
        if isinstance(item, Eof):
            return item
        try:
            await dst.send(item)
        except Exception:  # noqa: BLE001 - dst is gone: its own reader says how
            return None
        count(len(item))
