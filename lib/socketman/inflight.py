# Operations in flight (HTTP calls, status checks), driven by the loop: each
# runs to its end, then its callback gets it. An operation is a socket
# operation (loop.py's table): wants(), step(events, sock), service() -> ms,
# done() and, optionally, close(). start() is the agent's path for HTTP
# calls: names through the agent's one cache (dns), and an answer marks its
# host reachable (reach, PROTOCOL 7.1); the client itself knows neither.
from . import dns, log, reach
from .loop import SLEEP


class InFlight:
    """A set of operations under way. With a loop, it is a socket source of
    that loop and has its own task for the operations' deadlines."""

    def __init__(self, loop=None, name="calls"):
        self.active = []   # (op, on_done)
        self.loop = loop
        self.task = None
        if loop is not None:
            loop.add_source(self)
            self.task = loop.every(60000, self.tick, name=name)

    def add(self, op, on_done):
        """op already started; on_done(op) when it is over."""
        self.active.append((op, on_done))
        self._reap()
        if self.task is not None:
            self.loop.wake(self.task)

    def start(self, call, on_done):
        """Start call (an http.Call) and drive it to its end: on_done(call),
        with call.response or call.error set."""
        def done(c):
            if c.response is not None:
                reach.seen(c.host, c.port)  # any answer: the host is reachable
            on_done(c)
        self.add(call.start(dns.shared), done)

    def busy(self):
        """True while any operation is under way."""
        return bool(self.active)

    def wants(self):
        """Every operation's [(socket, poll mask)]."""
        out = []
        for op, _ in self.active:
            out.extend(op.wants())
        return out

    def ready(self, sock, ev):
        """The loop saw events on sock: hand them to its operation."""
        for op, _ in self.active:
            for s, _ in op.wants():
                if s is sock:
                    op.step(ev, sock)
                    break
        self._reap()

    def tick(self):
        """The loop's task: deadlines of every operation; ms until the next
        look, or SLEEP with none under way (add() wakes us)."""
        if not self.active:
            return SLEEP
        nxt = 60000
        for op, _ in self.active:
            nxt = min(nxt, op.service())
        self._reap()
        return nxt

    def _reap(self):
        for item in [a for a in self.active if a[0].done()]:
            self.active.remove(item)
            op, on_done = item
            if hasattr(op, "close"):
                op.close()
            try:
                on_done(op)
            except Exception as e:
                log.exc("callback of %s" % type(op).__name__, e)
