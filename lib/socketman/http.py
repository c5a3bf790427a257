# A small HTTP/1.1 client on conn.Conn: a non-blocking Call the agent's loop
# drives, and a Response with urequests' fields (status_code, text, content,
# json(), headers, close). Unlike urequests: deadlines on connect and every
# read, TLS verified (tls.context, loaded for https only), chunked bodies,
# a body streamed to a sink; names are looked up by the resolver start() is
# given. The answer is read by httpresp.Reader. urequests' blocking
# request/get/... are in blocking.py.
from . import VERSION, fs, rt, urls
from .conn import HANDSHAKE, Conn
from .httpresp import Reader, Response  # noqa: F401 (http.Response: the answer's class)

USER_AGENT = "socketman/" + VERSION
MAX_BODY = 1 << 20

_default_tls = ["", False]


def set_default_tls(cacrt, insecure):
    """The CA file (PEM path, "" for the system bundle) and insecure flag of
    HTTPS calls that bring no SSLContext of their own (config keys cacrt,
    insecure)."""
    _default_tls[0], _default_tls[1] = cacrt, bool(insecure)


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
    service()) until done(). Then .response is set when the answer's
    status line arrived (the call is judged by it, answers.classify), else
    .error (str) says why there is none. When the status line came but the
    body did not arrive whole (cut short, a reset, a deadline, a framing
    error, the sink's error) both are set: response.body_error says why,
    and .error too, so a caller that needs the body (provisioning, a
    download) and looks at .error first takes it as a failed call.
    body: bytes, str or a list of bytes and FilePart; timeout (s): the
    deadline for the connect and for each read or write (4 times it for the
    whole call); ctx: an SSLContext for https (else tls.context of
    set_default_tls); max_body: the largest body taken (bytes). sink: None
    to keep a 2xx body in .response.content, or f(bytes) given each piece
    of it as it arrives instead (content stays b""; an exception it raises,
    OSError or ValueError, ends the call). Other answers' bodies are kept."""

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
        # identity: no content coding, please (a server may code all the same: httpresp decodes gzip, deflate)
        h = {"Host": self._host_header(), "User-Agent": USER_AGENT, "Accept-Encoding": "identity",
             "Connection": "close"}
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
        self.reader = Reader(self.method, max_body, sink)

    def _host_header(self):
        host = "[%s]" % self.host if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else "%s:%d" % (host, self.port)

    def start(self, resolver=None):
        """Look the host up through resolver (a dns.Resolver: addresses(host),
        poll_ms(host), prefer(host, addr); None: the host is an IP address),
        then connect, to each of its addresses in turn until one answers
        (conn.Conn.open); returns self. A connect that fails at once sets
        .error."""
        self.started = self.last = rt.ms()
        self.resolver = resolver
        self._connect()
        return self

    def _connect(self):
        try:
            addrs = [self.host] if self.resolver is None else self.resolver.addresses(self.host)
            if addrs is None:
                self.state = RESOLVING  # service() asks again
                return
            self.state = CONNECTING
            c = self.conn = Conn(None, self.host)
            c.on_open, c.on_data, c.on_drain = self._on_open, self._on_data, self._on_drain
            c.open(addrs, self.port, self.timeout_ms)
        except OSError as e:
            self._end(str(e), "connect to %s:%d: %s" % (self.host, self.port, e))
            return
        if self.scheme == "https":
            try:
                c.tls = self.ctx or _tls_context()
            except (OSError, ValueError) as e:  # the CA file
                self._end(str(e))

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
        except (OSError, ValueError) as e:  # a reset, a bad answer, the sink's error
            why = str(e)
            if self.conn.tls is not None and self.conn.state == HANDSHAKE:
                from .tls import tls_note  # loaded already: it made the context
                why = tls_note(why)  # say so when it was our certificate, or the server's chain
            self._end(why)

    def service(self):
        """Deadlines; the ms until it should be looked at again."""
        if self.state == DONE:
            return 60000
        now = rt.ms()
        nxt = 60000
        if self.conn is not None:
            try:
                nxt = self.conn.service()  # an address that does not answer: the next one
            except OSError as e:
                self._end(str(e))
                return 60000
            self.last = max(self.last, self.conn.last_io)
        if now - self.last > self.timeout_ms or now - self.started > 4 * self.timeout_ms:
            what = {CONNECTING: "connect", RESOLVING: "name lookup"}.get(self.state, "response")
            self._end("%s timed out" % what)
            return 60000
        if self.state == RESOLVING:
            self._connect()
            return self.resolver.poll_ms(self.host)
        # Until a deadline: the handshake moves on when the server answers
        # (POLLIN: each answer lets the next write go on), not by polling.
        return max(1, min(nxt, self.timeout_ms - (now - self.last), 4 * self.timeout_ms - (now - self.started)))

    # ---- sending ---------------------------------------------------------

    def _on_open(self):
        if self.resolver is not None:
            self.resolver.prefer(self.host, self.conn.addr)  # it answered: first next time
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
        if data:
            self._feed(data)
        else:
            self._eof()

    def _feed(self, data):
        self.reader.feed(data)  # ValueError: step() ends the call
        if self.reader.done:
            self._end(None)

    def _eof(self):
        self.reader.closed()  # ValueError when what came is not HTTP
        self._end(None)

    def _end(self, why, failed=None):
        """The call is over: judged by the answer's status line when it
        came (why, if given, is then why its body is not whole), else it
        failed for why (failed: the whole line to say, else "METHOD host:
        why")."""
        if self.state == DONE:
            return  # a write's error after the answer it followed: the answer counts
        r = self.reader.result(why)
        if r is None:
            self.error = failed or "%s %s: %s" % (self.method, self.host, why or "connection closed early")
        else:
            self.response = r
            if r.body_error is not None:
                self.error = "%s %s: %s" % (self.method, self.host, r.body_error)
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
