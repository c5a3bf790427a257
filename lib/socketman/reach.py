# Targets known to be reachable (PROTOCOL 7.1): one the agent reached lately
# (its MQTT session is up on it, or an HTTP exchange with it completed)
# counts as reachable without a new connection, so a fleet does not open
# an empty connection per device and cycle to its own broker or API.
from . import rt

_seen = {}  # (host as configured, port) -> agent ms of its last sign of life
_up = set()  # (host, port) a connection is up on now (the MQTT session)


def up(host, port, is_up):
    """A connection to host:port went up (True) or down (False)."""
    if is_up:
        _up.add((host, port))
    elif (host, port) in _up:
        _up.discard((host, port))
        seen(host, port)  # it was there until now (a connect that failed says nothing)


def seen(host, port):
    """host:port (as the config names it) answered just now."""
    _seen[(host, port)] = rt.ms()


def recent(host, port, within_ms):
    """True when a connection is up on host:port, or it answered in the
    last within_ms ms."""
    if (host, port) in _up:
        return True
    t = _seen.get((host, port))
    return t is not None and rt.ms() - t <= within_ms
