"""The recording stats API of the fleet bench (bench/fleet.py), run as its
own process so that its work does not share a GIL with the harness.

    python bench/fleet_api.py --port PORT --out RECORDS.jsonl --ready FILE

It accepts any number of connections on 127.0.0.1:PORT and writes one JSON
line per connection to --out, flushed at once, with `t` the wall-clock time
(time.time(), seconds) the connection ended:

- {"t", "kind": "empty"}: the peer closed before sending a byte. That is the
  connectivity check of PROTOCOL 7.1 (a TCP connect, no byte sent).
- {"t", "t0", "kind": "request", "method", "path", "mac", "bytes", "docs":
  [[mac, seq], ...], "error": null or text}: one HTTP request, answered 200.
  `bytes` counts the request as it came over the wire (head and body);
  `docs` are the stats documents of a PROTOCOL 5 upload (multipart, gzip,
  JSON lines), `mac` and `seq` from each document's `device`.
- {"t", "kind": "broken", "error"}: bytes came but no whole request.

It answers every request 200 with `{}`; it is the API of a healthy fleet.
The --ready file is created once the socket listens (a probe connection
would count as a check). SIGTERM or SIGINT ends it.
"""
import argparse
import asyncio
import gzip
import json
import os
import signal
import sys
import time
import urllib.parse

MAX_HEAD = 65536
MAX_BODY = 16 << 20
READ_S = 30.0
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"


def documents(ctype, body):
    """[[mac, seq], ...] of a stats upload: multipart/form-data with one gzip
    part (PROTOCOL 5), or one plain JSON document (no-cache). ValueError when
    the body is not that."""
    if ctype.startswith("multipart/form-data"):
        boundary = ctype.partition("boundary=")[2].strip().strip('"').encode()
        if not boundary:
            raise ValueError("multipart without boundary")
        parts = body.split(b"--" + boundary)
        if len(parts) < 3 or parts[-1].strip() != b"--":
            raise ValueError("multipart not closed")
        head, _, data = parts[1].partition(b"\r\n\r\n")
        if not data.endswith(b"\r\n"):
            raise ValueError("multipart part not ended by CRLF")
        lines = gzip.decompress(data[:-2]).split(b"\n")
    else:
        lines = [body]
    out = []
    for line in lines:
        if not line.strip():
            continue
        d = json.loads(line)
        dev = d.get("device") or {}
        out.append([dev.get("mac"), dev.get("seq")])
    return out


class Recorder:
    def __init__(self, path):
        self.f = open(path, "a", buffering=1)

    def write(self, rec):
        self.f.write(json.dumps(rec, separators=(",", ":")) + "\n")


async def handle(reader, writer, rec):
    t0 = time.time()
    entry = {"t0": t0}
    try:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_S)
        except asyncio.IncompleteReadError as e:
            entry.update(kind="empty" if not e.partial else "broken", error=None if not e.partial else "cut head")
            return
        except (asyncio.LimitOverrunError, asyncio.TimeoutError, ConnectionError) as e:
            entry.update(kind="broken", error=type(e).__name__)
            return
        lines = head.decode("latin-1").split("\r\n")
        method, _, rest = lines[0].partition(" ")
        target = rest.rpartition(" ")[0]
        headers = {}
        for h in lines[1:]:
            k, _, v = h.partition(":")
            if k:
                headers[k.strip().lower()] = v.strip()
        path, _, query = target.partition("?")
        q = urllib.parse.parse_qs(query)
        size = int(headers.get("content-length", "0") or 0)
        if size > MAX_BODY:
            entry.update(kind="broken", error="body of %d bytes" % size)
            return
        try:
            body = await asyncio.wait_for(reader.readexactly(size), READ_S) if size else b""
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError) as e:
            entry.update(kind="broken", error="body: %s" % type(e).__name__)
            return
        entry.update(kind="request", method=method, path=path, mac=(q.get("mac") or [None])[0],
                     bytes=len(head) + size, docs=[], error=None)
        if method == "POST":
            try:
                entry["docs"] = documents(headers.get("content-type", ""), body)
            except (ValueError, OSError, EOFError) as e:
                entry["error"] = "%s: %s" % (type(e).__name__, e)
        writer.write(ANSWER)
        try:
            await writer.drain()
        except ConnectionError as e:
            entry["error"] = "answer: %s" % type(e).__name__
    finally:
        entry["t"] = time.time()
        rec.write(entry)
        writer.close()


async def serve(args):
    rec = Recorder(args.out)
    server = await asyncio.start_server(lambda r, w: handle(r, w, rec), "127.0.0.1", args.port,
                                        backlog=args.backlog, limit=MAX_HEAD)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with open(args.ready, "w") as f:
        f.write("%d\n" % os.getpid())
    async with server:
        await stop.wait()
    rec.f.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--ready", required=True)
    ap.add_argument("--backlog", type=int, default=4096)
    args = ap.parse_args()
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
