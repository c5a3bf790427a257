"""A TCP (or TLS) server that answers each connection with a function the
test gives: for servers no HTTP library would play on purpose (an answer
sent early and then a reset, a body that never ends, a head cut short)."""
import socket
import ssl
import struct
import threading

from helpers import net


def read_head(c, limit=65536):
    """Read from c until the end of a request head; (head, what came after it)."""
    buf = b""
    while b"\r\n\r\n" not in buf and len(buf) < limit:
        data = c.recv(4096)
        if not data:
            break
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def read_request(c):
    """(head, body) of one request with a Content-Length body."""
    head, rest = read_head(c)
    return head, read_body(c, head, rest)


def read_body(c, head, body):
    """The Content-Length body of the request whose head is head; body:
    what came after the head already."""
    n = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            n = int(v)
    while len(body) < n:
        data = c.recv(65536)
        if not data:
            break
        body += data
    return body


def reset(c):
    """Close c with an RST (SO_LINGER 0), as a server does that stops reading."""
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()


class Server:
    """Listens on host (127.0.0.1; "::1" for IPv6) and runs handler(conn,
    index) in a thread for each connection (index counts from 0). With
    certs (helpers.certs), conn is TLS; rcvbuf: the accepted sockets'
    receive buffer (bytes). Exceptions in the handler end that connection
    only."""

    def __init__(self, handler, certs=None, host="127.0.0.1", port=None, rcvbuf=None):
        self.handler = handler
        self.count = 0
        self.errors = []
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf:  # a small window: a client writing a big body soon waits for room
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind((host, port or net.free_port()))
        self.sock.listen(16)
        self.host, self.port = host, self.sock.getsockname()[1]
        self.ctx = None
        if certs:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(certs["cert"], certs["key"])
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, path="/", host=None):
        host = host or (self.host if ":" not in self.host else "[%s]" % self.host)
        return "%s://%s:%d%s" % ("https" if self.ctx else "http", host, self.port, path)

    def _accept(self):
        while self.running:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            # No Nagle: an answer written just before a reset must leave
            # before it (held back, the reset would drop it).
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            i = self.count
            self.count += 1
            threading.Thread(target=self._one, args=(c, i), daemon=True).start()

    def _one(self, c, i):
        try:
            if self.ctx is not None:
                c = self.ctx.wrap_socket(c, server_side=True)
            self.handler(c, i)
        except (OSError, ValueError) as e:
            self.errors.append(e)
        finally:
            try:
                c.close()
            except OSError:
                pass

    def close(self):
        self.running = False
        self.sock.close()
