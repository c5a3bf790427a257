# A small HTTP/1.1 client on conn.Conn: a non-blocking Call the agent's loop
# drives, and a Response with urequests' fields (status_code, text, content,
# json(), headers, close). Unlike urequests: deadlines on connect and every
# read, TLS verified (tls.context, loaded for https only), chunked bodies,
# a body streamed to a sink; names are looked up by the resolver start() is
# given. urequests' blocking request/get/... are in blocking.py.
import json as _json

from . import VERSION, fs, rt, text, urls
from .conn import Conn

USER_AGENT = "socketman/" + VERSION
MAX_HEAD = 16384
MAX_BODY = 1 << 20

_default_tls = ["", False]


def set_default_tls(cacrt, insecure):
    """The CA file (PEM path, "" for the system bundle) and insecure flag of
    HTTPS calls that bring no SSLContext of their own (config keys cacrt,
    insecure)."""
    _default_tls[0], _default_tls[1] = cacrt, bool(insecure)


def _head_end(buf):
    """(end of the response head, start of the body) in buf, or (-1, -1)
    while the blank line has not come. A bare LF ends a line as CRLF does:
    RFC 9112 section 2.2 lets a client take it, and servers send it."""
    i = buf.find(b"\n")
    while i >= 0:
        j = i + 1
        if buf[j:j + 1] == b"\r":
            j += 1
        if buf[j:j + 1] == b"\n":
            return i, j + 1
        i = buf.find(b"\n", i + 1)
    return -1, -1


class Response:
    """A finished response: status_code (int), reason (str), headers (dict,
    lowercase names -> str), content (bytes)."""
    def __init__(self, status, reason, headers, content):
        self.status_code = status
        self.reason = reason
        self.headers = headers
        self.content = content
        self.encoding = "utf-8"

    @property
    def text(self):
        """The body as text (bad UTF-8 replaced)."""
        return text.utf8(self.content)

    def json(self):
        """The body parsed as JSON; ValueError when it is not JSON."""
        return _json.loads(self.text)

    def close(self):
        """Let the body go."""
        self.content = b""


def multipart(field, filename, content_type, data):
    """(Content-Type header, body chunks) for one multipart/form-data file
    part; data is not copied."""
    r = rt.random_hex(12)
    boundary = "----socketman" + r
    head = ('--%s\r\nContent-Disposition: form-data; name="%s"; filename="%s"\r\n'
            "Content-Type: %s\r\n\r\n" % (boundary, field, filename, content_type)).encode()
    tail = ("\r\n--%s--\r\n" % boundary).encode()
    return "multipart/form-data; boundary=" + boundary, [head, data, tail]


CONNECTING, SENDING, RECEIVING, DONE, RESOLVING = 0, 1, 2, 3, 4
FILE_CHUNK = 4096


class FilePart:
    """A body part read from the file at path while it is sent, 4 KiB at a
    time: a gzipped stats batch need not fit a router's heap. Its size is
    the file's when the part is made."""

    def __init__(self, path):
        self.path = path
        st = fs.stat(path)
        self.size = st[0] if st else 0

    def __len__(self):
        return self.size


class Call:
    """One request; start() then let the loop drive it (wants(), step(),
    service()) until done(). Then .response or .error (str) is set.
    body: bytes, str or a list of bytes and FilePart; timeout (s): the
    deadline for the connect and for each read or write (4 times it for the
    whole call); ctx: an SSLContext for https (else tls.context of
    set_default_tls); max_body: the largest body taken (bytes). sink: None
    to keep a 2xx body in .response.content, or f(bytes) given each piece
    of it as it arrives instead (content stays b""; an exception it raises
    ends the call: OSError, ValueError). Other answers' bodies are kept."""

    def __init__(self, method, url, body=None, headers=None, timeout=10, ctx=None,
                 max_body=MAX_BODY, sink=None):
        self.method = method.upper()
        self.url = url
        self.scheme, self.host, self.port, path = urls.split(url)
        if isinstance(body, str):
            body = body.encode()
        chunks = [] if body is None else (list(body) if isinstance(body, list) else [body])
        size = 0
        for c in chunks:
            size += len(c)
        h = {"Host": self._host_header(), "User-Agent": USER_AGENT, "Connection": "close"}
        if chunks or self.method in ("POST", "PUT", "PATCH"):
            h["Content-Length"] = str(size)
        for k, v in (headers or {}).items():
            h[k] = v
        head = "%s %s HTTP/1.1\r\n" % (self.method, path)
        for k, v in h.items():
            head += "%s: %s\r\n" % (k, v)
        self.parts = [(head + "\r\n").encode()] + [c for c in chunks if len(c)]
        self.timeout_ms = int(timeout * 1000)
        self.ctx = ctx
        self.max_body = max_body
        self.sink = sink
        self.conn = None
        self.state = CONNECTING
        self.response = None
        self.error = None
        self.next = 0         # index of the next part to write
        self.file = None      # the FilePart being sent, open
        self.head = b""       # the response head so far
        self.body = []        # pieces of the body (none with a sink)
        self.got = 0          # bytes of body received
        self.resp = None      # (status, reason, headers) once the head is in

    def _host_header(self):
        host = "[%s]" % self.host if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else "%s:%d" % (host, self.port)

    def start(self, resolver=None):
        """Look the host up through resolver (a dns.Resolver: resolve(host),
        poll_ms(host); None: the host is an IP address), then connect;
        returns self. A connect that fails at once sets .error."""
        self.started = self.last = rt.ms()
        self.resolver = resolver
        self._connect()
        return self

    def _connect(self):
        try:
            addr = self.host if self.resolver is None else self.resolver.resolve(self.host)
            if addr is None:
                self.state = RESOLVING  # service() asks again
                return
            self.state = CONNECTING
            c = self.conn = Conn(None, self.host)
            c.on_open, c.on_data, c.on_drain = self._on_open, self._on_data, self._on_drain
            c.open(addr, self.port, self.timeout_ms)
        except OSError as e:
            self._fail("connect to %s:%d: %s" % (self.host, self.port, e))
            return
        if self.scheme == "https":
            try:
                c.tls = self.ctx or _tls_context()
            except (OSError, ValueError) as e:  # the CA file
                self._fail("%s %s: %s" % (self.method, self.host, e))

    def done(self):
        """True once .response or .error is set."""
        return self.state == DONE

    def wants(self):
        """[(socket, poll mask)] to wait on now."""
        return [] if self.conn is None else self.conn.wants()

    def step(self, events=0, sock=None):
        """Move the call on as far as it goes without waiting (events: the
        poll events of its socket, sock; 0: none seen); errors end it."""
        if self.conn is None:
            return
        try:
            self.conn.step(events)
        except (OSError, ValueError) as e:
            self._fail("%s %s: %s" % (self.method, self.host, e))

    def service(self):
        """Deadlines; the ms until it should be looked at again."""
        if self.state == DONE:
            return 60000
        now = rt.ms()
        if self.conn is not None:
            self.last = max(self.last, self.conn.last_io)
        if now - self.last > self.timeout_ms or now - self.started > 4 * self.timeout_ms:
            what = {CONNECTING: "connect", RESOLVING: "name lookup"}.get(self.state, "response")
            self._fail("%s %s: %s timed out" % (self.method, self.host, what))
            return 60000
        if self.state == RESOLVING:
            self._connect()
            return self.resolver.poll_ms(self.host)
        # Until a deadline: the handshake moves on when the server answers
        # (POLLIN: each answer lets the next write go on), not by polling.
        return max(1, min(self.timeout_ms - (now - self.last), 4 * self.timeout_ms - (now - self.started)))

    # ---- sending ---------------------------------------------------------

    def _on_open(self):
        self.state = SENDING
        self.next = 0  # from the start on each connection
        self._close_file()
        self._send_more()

    def _on_drain(self):
        if self.state == SENDING:
            self._send_more()

    def _send_more(self):
        # The next part, when the last one is written (a file part 4 KiB at
        # a time, never read ahead); then wait for the response.
        while self.state == SENDING:
            if self.file is not None:
                chunk = self.file.read(FILE_CHUNK)
                if chunk:
                    self.conn.write(chunk)
                    return
                self._close_file()
            if self.next == len(self.parts):
                self.state = RECEIVING
                return
            part = self.parts[self.next]
            self.next += 1
            if isinstance(part, FilePart):
                self.file = open(part.path, "rb")  # OSError ends the call
                continue
            self.conn.write(part)
            return

    # ---- receiving -------------------------------------------------------

    def _on_data(self, data):
        # Read from the start: a server may answer before the body is all
        # sent (a 401 to an upload), and that answer counts.
        if not data:
            self._eof()
        else:
            self._feed(data)

    def _feed(self, data):
        if self.resp is None:
            self.head += data
            end, body = _head_end(self.head)
            if end > MAX_HEAD or (end < 0 and len(self.head) > MAX_HEAD):
                raise ValueError("response head too large")
            if end < 0:
                return
            data = self.head[body:]
            self._parse_head(self.head[:end])
            if self.resp is None:  # a 1xx interim response: the real one follows
                self.head = b""
                if data:
                    self._feed(data)
                return
        if self.chunked:
            self._feed_chunked(data)
        else:
            self._add(data)
            if self.length is not None and self.got >= self.length:
                self._finish()

    def _parse_head(self, head):
        lines = [x[:-1] if x.endswith(b"\r") else x for x in head.split(b"\n")]
        parts = lines[0].split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            raise ValueError("not an HTTP response")
        status = int(parts[1])
        if 100 <= status < 200:
            return
        headers = {}
        for line in lines[1:]:
            k, sep, v = line.partition(b":")
            if sep:
                headers[text.utf8(k.strip()).lower()] = text.utf8(v.strip())
        self.resp = (status, text.utf8(parts[2]) if len(parts) > 2 else "", headers)
        self.chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        self.length = None
        self.need = None
        self.pending = b""
        if self.method == "HEAD" or status in (204, 304):
            self.length = 0
        elif not self.chunked and "content-length" in headers:
            cl = headers["content-length"]
            if not cl.isdigit():
                raise ValueError("bad Content-Length")
            self.length = int(cl)
            if self.length > self.max_body:
                raise ValueError("response body over %d bytes" % self.max_body)
        if self.length == 0:
            self._finish()

    def _feed_chunked(self, data):
        # self.need: None = a size line is next, n > 0 = bytes of chunk data,
        # -1 = the CRLF after a chunk.
        buf = self.pending + data
        while self.state != DONE:
            if self.need is None:
                end = buf.find(b"\n")  # CRLF, or a bare LF (RFC 9112 section 2.2)
                if end < 0:
                    if len(buf) > 1024:
                        raise ValueError("bad chunk size line")
                    break
                try:
                    n = int(buf[:end].split(b";")[0].strip(), 16)
                except ValueError:
                    raise ValueError("bad chunk size")
                if n < 0 or n > self.max_body:
                    # MicroPython cannot even slice with a huge size.
                    raise ValueError("bad chunk size")
                buf = buf[end + 1:]
                if n == 0:
                    self._finish()  # trailers are not needed
                    return
                self.need = n
            if self.need > 0:
                piece = buf[:self.need]
                self._add(piece)
                self.need -= len(piece)
                buf = buf[len(piece):]
                if self.need:
                    break
                self.need = -1
            if not buf or buf == b"\r":
                break
            if buf[:1] == b"\n":
                buf = buf[1:]
            elif buf[:2] == b"\r\n":
                buf = buf[2:]
            else:
                raise ValueError("bad chunk end")
            self.need = None
        self.pending = buf

    def _add(self, data):
        if self.length is not None and not self.chunked:
            data = data[:self.length - self.got]  # what follows the body is not it
        if data:
            self.got += len(data)
            if self.got > self.max_body:
                raise ValueError("response body over %d bytes" % self.max_body)
            if self.sink is not None and self.resp[0] // 100 == 2:
                self.sink(data)
            else:
                self.body.append(data)

    def _eof(self):
        """The server closed. Once a status line was received the call is
        judged by it: a head or body cut short still says what the server
        did with the request (a 2xx took the stats lines)."""
        if self.resp is None:
            end = self.head.rfind(b"\n")
            if end >= 0:
                self._parse_head(self.head[:end])  # the complete lines; ValueError if no HTTP
            if self.state == DONE:
                return  # a head without a body finished there
        if self.resp is None:
            self._fail("%s %s: connection closed early" % (self.method, self.host))
        else:
            self._finish()  # body delimited by the connection's end, or cut short

    def _finish(self):
        status, reason, headers = self.resp
        self.response = Response(status, reason, headers, b"".join(self.body))
        self._close()

    def _fail(self, why):
        if self.state == DONE:
            return  # a write's error after the answer it followed: the answer counts
        self.error = why
        self._close()

    def _close(self):
        self._close_file()
        if self.conn is not None:
            self.conn.close()
        self.state = DONE

    def _close_file(self):
        if self.file is not None:
            self.file.close()
            self.file = None


def _tls_context():
    from . import tls  # loaded by the first https call, never for http
    return tls.context(*_default_tls)
