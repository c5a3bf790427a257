"""A TCP proxy on loopback between a client and the broker. mode "split"
forwards every byte in its own send(); "stall" stops forwarding both ways
while keeping the connections open, like a peer that went silent."""
import socket
import threading
import time

from helpers import net


class Proxy:
    """Listens on host:port (127.0.0.1 and a free port unless given; "::1"
    for IPv6) and relays each connection to 127.0.0.1:target_port."""

    def __init__(self, target_port, mode="pass", host="127.0.0.1", port=None):
        self.target = target_port
        self.mode = mode
        self.port = port or net.free_port()
        self.ls = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind((host, self.port))
        self.ls.listen(8)
        self.closed = False
        self.conns = []
        self.sends = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            u = socket.create_connection(("127.0.0.1", self.target))
            for s in (c, u):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.conns.append((c, u))
            threading.Thread(target=self._pump, args=(c, u), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c), daemon=True).start()

    def _pump(self, src, dst):
        while not self.closed:
            if self.mode == "stall":
                time.sleep(0.02)
                continue
            try:
                src.settimeout(0.05)
                data = src.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                break
            if not data:
                break
            while self.mode == "stall" and not self.closed:
                time.sleep(0.02)  # read just as the stall began: hold it too
            if (src, dst) not in self.conns and (dst, src) not in self.conns:
                break  # cut: what this connection held is lost
            try:
                if self.mode == "split":
                    for i in range(len(data)):
                        dst.send(data[i:i + 1])
                        self.sends += 1
                        time.sleep(0.0002)
                else:
                    dst.sendall(data)
                    self.sends += 1
            except OSError:
                break
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        """Drop every connection and the bytes it held, then pass again:
        the silent path is gone, what was sent into it is lost."""
        old, self.conns = self.conns, []
        for c, u in old:
            for s in (c, u):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
        self.mode = "pass"

    def close(self):
        self.closed = True
        self.ls.close()
        for c, u in self.conns:
            c.close()
            u.close()
