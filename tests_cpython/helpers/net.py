"""Loopback helpers: free ports, waiting for a listener."""
import os
import random
import socket
import time

# Below Linux's ephemeral range (32768-60999): a port the kernel hands out
# to some outgoing connection cannot be taken while a test restarts its
# broker on it.
PORTS = (20000, 32000)
_given = set()  # never the same port twice in one process (a broker's two listeners)


def _my_ports():
    """Each pytest-xdist worker draws from its own slice of PORTS."""
    w = os.getenv("PYTEST_XDIST_WORKER", "gw0")[2:]
    n = int(w) % 8 if w.isdigit() else 0
    size = (PORTS[1] - PORTS[0]) // 8
    return PORTS[0] + n * size, PORTS[0] + (n + 1) * size


def free_port():
    for _ in range(200):
        port = random.randrange(*_my_ports())
        if port in _given:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            _given.add(port)
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise AssertionError("no free port in %d..%d" % PORTS)


def wait_listening(port, host="127.0.0.1", timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), 0.5).close()
            return
        except OSError:
            time.sleep(0.02)
    raise AssertionError("nothing listens on %s:%d" % (host, port))
