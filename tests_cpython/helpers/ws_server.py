"""The fleet server's side of a tunnel (PROTOCOL 11) for the agent's tests.

- FleetEnd: the device endpoint, played by the `websockets` library (a
  well-kept RFC 6455 server, not ours): it checks the device's handshake
  (path, access_token, mac, subprotocol), can answer 403, and pairs each
  device WebSocket with the operator's side, a local TCP port that OpenSSH
  (or a test socket) connects to. It records what each side sent and the
  close status the device sent, and can vanish mid-stream.
- RawPeer: a server that speaks the wire by hand, to send what no library
  would (frames over the cap, bad opcodes, masked frames, control frames
  over 125 bytes or fragmented, reserved bits) and to read the agent's
  own frames (its close status, its pings) as they are on the wire.
"""
import asyncio
import base64
import hashlib
import os
import socket
import struct
import threading
import time
import urllib.parse

from websockets.asyncio.server import serve
from websockets.datastructures import Headers
from websockets.http11 import Response

from helpers import net

SUBPROTOCOL = "socketman-tunnel"
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Pairing:
    """One tunnel on the server: op_port is the operator's local TCP port;
    url the device's WebSocket URL (for the job); counts in payload bytes."""

    def __init__(self, end, tid, refuse=None):
        self.end, self.tid, self.refuse = end, tid, refuse
        self.url = "%s://%s:%d/tunnel/%s" % ("wss" if end.ssl else "ws", end.host, end.port, tid)
        self.to_device = self.from_device = 0
        self.device_close = None      # (code, reason) the device's close frame said
        self.device_seen = threading.Event()
        self.done = threading.Event()
        self.query = None
        self.ws = None
        self.op_port = None
        self.op = asyncio.Queue()      # the operator's connection (reader, writer), when it comes
        self.vanish = False

    def wait_done(self, timeout=30):
        assert self.done.wait(timeout), "tunnel %s did not end on the server in %ss" % (self.tid, timeout)

    def close(self, code=1000, reason="operator closed"):
        """The server closes the device's WebSocket (a close frame)."""
        self.end.call(self.ws.close(code, reason))

    def drop(self):
        """The server vanishes: the device's TCP connection is cut, no close frame."""
        self.vanish = True
        # On the server's own loop: abort() from this thread only schedules
        # the socket's close, and a loop asleep in select() would not run it
        # until the agent's keepalive (a 60 s hang, seen in CI).
        self.end.loop.call_soon_threadsafe(self.ws.transport.abort)


class FleetEnd:
    def __init__(self, token="tok", mac="aa:bb:cc:dd:ee:01", ssl=None, host="127.0.0.1"):
        self.token, self.mac, self.ssl, self.host = token, mac, ssl, host
        self.port = net.free_port()
        self.pairings = {}
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def start():
            return await serve(self._device, "127.0.0.1", self.port, subprotocols=[SUBPROTOCOL],
                               process_request=self._check, ssl=ssl, max_size=1 << 20,
                               ping_interval=None, compression=None)
        self.server = self.call(start())

    def call(self, coro, timeout=30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def tunnel(self, tid=None, refuse=None):
        """A tunnel waiting for its device: Pairing (refuse: an HTTP status to answer instead of 101)."""
        tid = tid or os.urandom(8).hex()
        p = self.pairings[tid] = Pairing(self, tid, refuse)

        async def listen():
            async def op_side(reader, writer):
                await p.op.put((reader, writer))
            srv = await asyncio.start_server(op_side, "127.0.0.1", 0)
            return srv.sockets[0].getsockname()[1]
        p.op_port = self.call(listen())
        return p

    def close(self):
        self.server.close()
        try:
            self.call(self.server.wait_closed(), 5)
        except Exception:  # noqa: BLE001 - connections a test left
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    # ---- inside, on the server's event loop ----------------------------

    def _check(self, connection, request):
        path, _, query = request.path.partition("?")
        p = self.pairings.get(path.rpartition("/")[2]) if path.startswith("/tunnel/") else None
        if p is None:
            return connection.respond(404, "no such tunnel\n")
        p.query = urllib.parse.parse_qs(query)
        p.headers = request.headers
        if p.refuse:
            return connection.respond(p.refuse, "refused\n")
        if p.query.get("access_token") != [self.token] or p.query.get("mac") != [self.mac]:
            return connection.respond(403, "bad token or mac\n")
        if request.headers.get("Sec-WebSocket-Protocol") != SUBPROTOCOL:
            return Response(400, "Bad Request", Headers(), b"no subprotocol\n")
        return None

    async def _device(self, ws):
        p = self.pairings[ws.request.path.partition("?")[0].rpartition("/")[2]]
        p.ws = ws
        p.device_seen.set()
        try:
            reader, writer = await asyncio.wait_for(p.op.get(), 60)
        except asyncio.TimeoutError:
            await ws.close(1011, "no operator")
            p.done.set()
            return

        async def to_device():
            while True:
                data = await reader.read(65536)
                if not data:
                    await ws.close(1000, "operator closed")
                    return
                p.to_device += len(data)
                await ws.send(data)

        async def from_device():
            try:
                async for msg in ws:
                    if isinstance(msg, bytes):
                        p.from_device += len(msg)
                        writer.write(msg)
                        await writer.drain()
            finally:
                if ws.close_code is not None and not p.vanish:
                    p.device_close = (ws.close_code, ws.close_reason)
                writer.close()
        up = asyncio.ensure_future(to_device())
        try:
            await from_device()
        except Exception:  # noqa: BLE001 - the operator went away: the device's side ends too
            pass
        finally:
            up.cancel()
            p.done.set()


# ---- a raw peer --------------------------------------------------------------


def accept_value(key):
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def server_frame(op, payload=b"", fin=True, rsv=0, masked=False, size=None):
    """A frame as a server would send it (unmasked unless asked)."""
    n = len(payload) if size is None else size
    b0 = (0x80 if fin else 0) | rsv | op
    m = 0x80 if masked else 0
    if n < 126:
        head = bytes((b0, m | n))
    elif n < 65536:
        head = bytes((b0, m | 126)) + struct.pack(">H", n)
    else:
        head = bytes((b0, m | 127)) + struct.pack(">Q", n)
    if masked:
        key = b"\x01\x02\x03\x04"
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        head += key
    return head + payload


class RawPeer:
    """Accepts one device connection at a time on port; for each, answers
    the handshake (valid, or `answer(request_head, key) -> bytes`), then runs
    `script(peer)`: peer.send(bytes), peer.frames(timeout) -> the agent's
    frames [(opcode, payload)] until it closes or goes quiet."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.port = net.free_port()
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(8)
        self.conn = None
        self.heads = []

    def url(self, name):
        return "ws://127.0.0.1:%d/tunnel/%s" % (self.port, name)

    def accept(self, answer=None, timeout=30):
        """Wait for the agent, answer its handshake; the request head (str)."""
        self.sock.settimeout(timeout)
        self.conn, _ = self.sock.accept()
        self.conn.settimeout(timeout)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.conn.recv(4096)
            assert chunk, "the agent hung up in its handshake"
            head += chunk
        head = head.decode()
        self.heads.append(head)
        key = [x.split(":", 1)[1].strip() for x in head.split("\r\n") if x.lower().startswith("sec-websocket-key:")]
        if answer is not None:
            self.conn.sendall(answer(head, key[0]))
        else:
            self.conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                               "Sec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: %s\r\n\r\n"
                               % (accept_value(key[0]), SUBPROTOCOL)).encode())
        return head

    def send(self, data):
        self.conn.sendall(data)

    def frames(self, timeout=10, until_close=True):
        """The agent's frames, unmasked, until its close frame (or EOF, or
        timeout): [(opcode, payload)]. Each must be masked, as RFC 6455 says."""
        out, buf = [], b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.conn.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = self.conn.recv(65536)
            except socket.timeout:
                break
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            while True:
                f, buf = _client_frame(buf)
                if f is None:
                    break
                out.append(f)
                if f[0] == 8 and until_close:
                    return out
        return out

    def close(self):
        for s in (self.conn, self.sock):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass


def _client_frame(buf):
    """(frame, rest) from the start of buf, or (None, buf) when incomplete."""
    if len(buf) < 2:
        return None, buf
    op, n, i = buf[0] & 0x0F, buf[1] & 0x7F, 2
    assert buf[1] & 0x80, "an unmasked frame from the agent"
    assert buf[0] & 0x80, "a fragmented frame from the agent"
    if n == 126:
        if len(buf) < 4:
            return None, buf
        n, i = struct.unpack(">H", buf[2:4])[0], 4
    elif n == 127:
        if len(buf) < 10:
            return None, buf
        n, i = struct.unpack(">Q", buf[2:10])[0], 10
    if len(buf) < i + 4 + n:
        return None, buf
    key = buf[i:i + 4]
    payload = bytes(b ^ key[j % 4] for j, b in enumerate(buf[i + 4:i + 4 + n]))
    return (op, payload), buf[i + 4 + n:]
