"""The internet, as the agent's connectivity check sees it, on loopback: a
listening port is a reachable host, a closed port an unreachable one, and a
listener with a full accept queue a host that never answers (SYNs dropped)."""
import os
import socket
import threading
import time

from helpers import net


class Host:
    def __init__(self):
        self.port = net.free_port()
        self.sock = None
        self.up()

    def up(self):
        if self.sock is None:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", self.port))
            s.listen(16)
            self.sock = s
            threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def _accept(self, s):
        while True:
            try:
                c, _ = s.accept()
            except OSError:
                return
            c.close()

    def down(self):
        if self.sock is not None:
            # shutdown() first: a plain close() leaves the socket listening
            # while the accept thread still sits in accept().
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()  # the port refuses connections now
            self.sock = None


class Silent:
    """A port whose accept queue is full: new connections hang, unanswered."""

    def __init__(self):
        self.port = net.free_port()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(0)
        self.fillers = []
        for _ in range(3):
            f = socket.socket()
            f.setblocking(False)
            try:
                f.connect(("127.0.0.1", self.port))
            except BlockingIOError:
                pass
            self.fillers.append(f)
        time.sleep(0.1)
        probe = socket.socket()
        probe.settimeout(0.5)
        try:
            probe.connect(("127.0.0.1", self.port))
            raise AssertionError("the accept queue is not full")
        except socket.timeout:
            pass
        finally:
            probe.close()

    def close(self):
        for s in self.fillers + [self.sock]:
            s.close()


class Internet:
    """A health host and an API host, switched by the test or by control
    files that jobs and the fake restart command write (CTRL/down, CTRL/up)."""

    def __init__(self, tmp, up=True):
        self.health, self.api = Host(), Host()
        self.ctrl = os.path.join(str(tmp), "internet-ctrl")
        os.makedirs(self.ctrl, exist_ok=True)
        if not up:
            self.set(False)
        self.stopped = False
        threading.Thread(target=self._watch, daemon=True).start()

    def set(self, up):
        for h in (self.health, self.api):
            h.up() if up else h.down()

    def _watch(self):
        while not self.stopped:
            for name, up in (("down", False), ("up", True)):
                p = os.path.join(self.ctrl, name)
                if os.path.exists(p):
                    self.set(up)
                    os.remove(p)  # after: whoever wrote it can wait for it to go
            time.sleep(0.01)

    def config(self):
        return {"health_url": "127.0.0.1", "health_port": self.health.port,
                "api_url": "http://127.0.0.1:%d/api" % self.api.port}

    def close(self):
        self.stopped = True
        self.set(False)
