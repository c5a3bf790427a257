# MicroPython only, loaded by the first TLS connection (conn.py): the TCP
# socket as MicroPython's TLS sees it. That TLS (Mbed TLS under
# modssl_mbedtls, 1.23 and 1.28) keeps the first error of a read or a
# write and raises it at every call after, so once a write met a server's
# reset, the answer the server sent just before it (a 413 to an upload)
# could not be read any more; and its read(n) reads again until it has n
# bytes and drops what it got when that read fails. Between the TLS and
# the socket, this stream gives a hard error back as "nothing yet" once:
# a read's error comes at the next read, a write's is kept for the
# transport, which reads what is there and then raises it.
import errno
import io
import select

from .rt import BUSY, POLLERR, POLLIN, POLLOUT


class TLSStream(io.IOBase):
    """sock (a non-blocking TCP socket) for ssl wrap_socket(). err: the
    OSError a write met (held back: writes answer "nothing yet" from then
    on), None while none did. Reads go on after it: the kernel keeps what
    arrived before a reset."""

    def __init__(self, sock):
        self.sock = sock
        self.err = None
        self.rerr = 0      # a read's errno, given at the next read
        self.poller = None

    def readinto(self, buf):
        if self.rerr:
            return -self.rerr
        try:
            return self.sock.readinto(buf)  # None: nothing yet
        except OSError as e:
            if e.errno in BUSY:
                return None
            self.rerr = e.errno or errno.EIO
            return None

    def write(self, buf):
        if self.err is not None:
            return None
        try:
            return self.sock.write(buf)
        except OSError as e:
            if e.errno not in BUSY:
                self.err = e
            return None

    def ioctl(self, op, arg):
        if op == 4:  # MP_STREAM_CLOSE
            self.sock.close()
            return 0
        if op == 3:  # MP_STREAM_POLL (rt.wait_io on the TLS socket)
            if self.poller is None:
                self.poller = select.poll()
                self.poller.register(self.sock, POLLIN | POLLOUT)
            ev = self.poller.poll(0)
            return (ev[0][1] if ev else 0) & (arg | POLLERR)
        return -errno.EINVAL

    def setblocking(self, flag):
        self.sock.setblocking(flag)
