# An HTTP/1.1 answer read from bytes as they arrive (RFC 9112), for
# http.Call: the head, then the body framed by Content-Length, the chunked
# coding or the connection's end, kept or handed to a sink. An answer is
# judged by its status line once that has arrived (CHOICES, "What happens
# when the server says ..."): whatever goes wrong after it (a body cut
# short, a reset, a deadline, a bad chunk, a header that cannot be parsed)
# still gives a Response, whose body_error says why its body is not whole.
# A coded body (Content-Encoding gzip or deflate) is decoded (coding.py);
# one the agent cannot decode is refused as such, never taken as the body.
from . import text

MAX_HEAD = 16384


def head_end(buf):
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


def status_and_headers(head):
    """A response head (bytes, without the blank line) -> (status int,
    reason str, {lowercase name: value str}); ValueError when its first
    line is not an HTTP status line. A header line without ':' is skipped."""
    lines = [x[:-1] if x.endswith(b"\r") else x for x in head.split(b"\n")]
    parts = lines[0].split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise ValueError("not an HTTP response")
    headers = {}
    for line in lines[1:]:
        k, sep, v = line.partition(b":")
        if sep:
            headers[text.utf8(k.strip()).lower()] = text.utf8(v.strip())
    return int(parts[1]), text.utf8(parts[2]) if len(parts) > 2 else "", headers


class Response:
    """A finished response: status_code (int), reason (str), headers (dict,
    lowercase names -> str), content (bytes, decoded when the answer came
    with Content-Encoding gzip or deflate), body_error: None when the body
    arrived whole (and decoded), else why not (str: cut short, a reset, a
    deadline, a framing error, a coding the agent cannot decode, the
    sink's error); content is then what came. A caller that needs the body
    checks body_error."""
    def __init__(self, status, reason, headers, content, body_error=None):
        self.status_code = status
        self.reason = reason
        self.headers = headers
        self.content = content
        self.body_error = body_error
        self.encoding = "utf-8"

    @property
    def text(self):
        """The body as text (bad UTF-8 replaced)."""
        return text.utf8(self.content)

    def json(self):
        """The body parsed as JSON; ValueError when it is not JSON."""
        import json
        return json.loads(self.text)

    def close(self):
        """Let the body go."""
        self.content = b""


class Reader:
    """One answer to a request with method (str), read by feed(bytes) and
    closed() (the peer's end); done once the body is whole. max_body: the
    largest body taken (bytes); sink: None to keep a 2xx body, or f(bytes)
    given its pieces (an exception it raises goes through feed()). feed()
    and closed() raise ValueError for what cannot be read on (the caller
    then asks result(why))."""

    def __init__(self, method, max_body, sink=None):
        self.method = method
        self.max_body = max_body
        self.sink = sink
        self.head = b""       # the response head so far
        self.resp = None      # (status, reason, headers) once the head is in
        self.body = []        # pieces of the body (none with a sink)
        self.got = 0          # bytes of body received
        self.done = False
        self.chunked = False
        self.length = None    # Content-Length; None: until the connection's end
        self.need = None      # chunked: None = a size line is next, n > 0 = bytes of data, -1 = CRLF
        self.pending = b""
        self.coding = None    # Content-Encoding other than identity, lowercase

    def feed(self, data):
        """Bytes of the answer, in order."""
        if self.done:
            return
        if self.resp is None:
            self.head += data
            end, body = head_end(self.head)
            if end > MAX_HEAD or (end < 0 and len(self.head) > MAX_HEAD):
                raise ValueError("response head too large")
            if end < 0:
                return
            data = self.head[body:]
            self._framing(self.head[:end])
            if self.resp is None:  # a 1xx interim response: the real one follows
                self.head = b""
                if data:
                    self.feed(data)
                return
            if self.done:
                return
        if self.chunked:
            self._feed_chunked(data)
        else:
            self._add(data)
            if self.length is not None and self.got >= self.length:
                self.done = True

    def closed(self):
        """The peer closed its side: a body delimited by the connection's
        end is whole now. ValueError when what came is not HTTP."""
        if self.resp is None:
            self._partial_head(True)
        if self.resp is not None and not self.done and not self.chunked and self.length is None:
            self.done = True

    def result(self, why=None):
        """The Response (its body_error: why, or that the body was cut
        short, when it is not whole), or None when no status line came."""
        if self.resp is None:
            try:
                self._partial_head(False)
            except ValueError:
                return None
        if self.resp is None:
            return None
        status, reason, headers = self.resp
        cut = None
        if not self.done:
            cut = why or ("body cut short: %d of %d bytes" % (self.got, self.length) if self.length is not None
                          else "body cut short")
        content = b"".join(self.body)
        if cut is None and self.coding and content:
            from . import coding  # only for a server that codes although asked not to
            try:
                content = coding.decode(self.coding, content, self.max_body)
            except ValueError as e:
                cut = str(e)
        return Response(status, reason, headers, content, cut)

    # ---- inside ---------------------------------------------------------

    def _partial_head(self, strict):
        # A head cut short: its complete lines still say what the server
        # did. strict: a first line that is not HTTP raises ValueError.
        end = self.head.rfind(b"\n")
        if end < 0:
            return
        try:
            status, reason, headers = status_and_headers(self.head[:end])
        except ValueError:
            if strict:
                raise
            return
        if status >= 200:
            self.resp = (status, reason, headers)

    def _framing(self, head):
        status, reason, headers = status_and_headers(head)
        if 100 <= status < 200:
            return
        self.resp = (status, reason, headers)  # first: a framing error below still has the status
        self.chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        codings = [c.strip() for c in headers.get("content-encoding", "").lower().split(",")]
        self.coding = ", ".join(c for c in codings if c and c != "identity") or None
        if self.coding and self.sink is not None and status // 100 == 2:
            # A download is hashed as it arrives: a coded one is refused, not guessed at.
            raise ValueError("Content-Encoding %s: a coded body is not taken for a download" % self.coding)
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
            self.done = True

    def _feed_chunked(self, data):
        buf = self.pending + data
        while not self.done:
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
                    self.done = True  # trailers are not needed
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
