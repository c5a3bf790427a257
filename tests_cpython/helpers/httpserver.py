"""A real local HTTP(S) server that records every request and answers from a
script the test sets: status codes, delays, dropped connections."""
import gzip
import http.server
import json
import ssl
import threading
import time
import urllib.parse

from helpers import net


class Recorded:
    def __init__(self, method, path, query, headers, body):
        self.method, self.path, self.query, self.headers, self.body = method, path, query, headers, body
        self.t = time.monotonic()

    def json(self):
        return json.loads(self.body)

    def multipart_file(self, field="data"):
        """(filename, content type, bytes) of a multipart/form-data part."""
        ctype = self.headers.get("Content-Type", "")
        assert ctype.startswith("multipart/form-data; boundary="), ctype
        boundary = ctype.split("boundary=", 1)[1].encode()
        parts = self.body.split(b"--" + boundary)
        assert parts[-1].strip() == b"--", parts[-1][:50]
        for part in parts[1:-1]:
            head, _, data = part.partition(b"\r\n\r\n")
            assert data.endswith(b"\r\n")
            data = data[:-2]
            head = head.decode()
            if 'name="%s"' % field in head:
                fn = head.split('filename="', 1)[1].split('"', 1)[0]
                ct = [h.split(":", 1)[1].strip() for h in head.split("\r\n") if h.lower().startswith("content-type")]
                return fn, ct[0] if ct else None, data
        raise AssertionError("no part %s" % field)

    def documents(self):
        """The stats documents of an upload (gzip multipart or plain JSON)."""
        if self.headers.get("Content-Type", "").startswith("multipart/"):
            _, _, data = self.multipart_file()
            lines = gzip.decompress(data).decode().split("\n")
            return [json.loads(line) for line in lines if line]
        return [json.loads(self.body)]


class Server:
    def __init__(self, certs=None, client_ca=None):
        """HTTPS with certs; with client_ca (a CA file) too, only clients
        with a certificate from that CA get through the TLS handshake."""
        self.requests = []
        self.lock = threading.Lock()
        self.script = []       # answers used one per request, then `default`
        self.default = (200, b"{}")
        self.decide = None     # f(Recorded) -> an answer, or None for the script's
        self.hold = None       # f(Recorded) -> True: answer only after release() (a crash test)
        self.released = threading.Event()
        self.port = net.free_port()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _any(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                u = urllib.parse.urlsplit(self.path)
                rec = Recorded(self.command, u.path, urllib.parse.parse_qs(u.query, keep_blank_values=True),
                               dict(self.headers), body)
                peer = self.connection.getpeercert() if certs else None
                rec.peer_cn = dict(x[0] for x in peer["subject"]).get("commonName") if peer else None
                with outer.lock:
                    answer = outer.decide(rec) if outer.decide else None
                    if answer is None:
                        answer = outer.script.pop(0) if outer.script else outer.default
                    mode = answer[2] if len(answer) > 2 else None
                    # What the client can have seen: a dropped or too slow
                    # answer is no answer.
                    rec.answered = None if mode in ("close",) or (mode or "").startswith("sleep") else answer[0]
                    held = outer.hold is not None and outer.hold(rec)
                    if held:
                        rec.answered = None
                    outer.requests.append(rec)
                if held:
                    outer.released.wait(60)  # the client is gone by then: no answer reaches it
                try:
                    outer.answer(self, answer)
                except OSError:
                    pass  # the client gave up first (a "sleep" answer after its timeout)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _any

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        if certs:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(certs["cert"], certs["key"])
            if client_ca:
                ctx.verify_mode = ssl.CERT_REQUIRED
                ctx.load_verify_locations(client_ca)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.scheme = "https" if certs else "http"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path="/", host="127.0.0.1"):
        return "%s://%s:%d%s" % (self.scheme, host, self.port, path)

    @staticmethod
    def answer(h, answer):
        status, body = answer[0], answer[1]
        mode = answer[2] if len(answer) > 2 else None
        if mode == "close":       # drop the connection without an answer
            h.close_connection = True
            return
        if mode == "raw":         # body is the whole answer, bytes as given, then close
            h.wfile.write(body)
            h.wfile.flush()
            h.close_connection = True
            return
        if mode and mode.startswith("sleep:"):
            time.sleep(float(mode[6:]))
        if isinstance(body, str):
            body = body.encode()
        h.send_response(status)
        if mode == "chunked":
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            for i in range(0, len(body), 7):
                piece = body[i:i + 7]
                h.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            h.wfile.write(b"0\r\n\r\n")
        else:
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
        h.close_connection = True

    def got(self, method=None, path=None):
        with self.lock:
            return [r for r in self.requests
                    if (method is None or r.method == method) and (path is None or r.path == path)]

    def wait(self, method=None, path=None, count=1, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hits = self.got(method, path)
            if len(hits) >= count:
                return hits
            time.sleep(0.02)
        raise AssertionError("%d %s %s requests in %ss, wanted %d; all: %s" % (
            len(self.got(method, path)), method, path, timeout, count,
            [(r.method, r.path) for r in self.got()]))

    def close(self):
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()
