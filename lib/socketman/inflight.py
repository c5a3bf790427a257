# Operations in flight (HTTP calls, status checks), driven by the loop: each
# runs to its end, then its callback gets it. An operation has wants(),
# ready(sock, events), service() -> ms, done() and, optionally, close().
from . import log


class InFlight:
    def __init__(self):
        self.active = []   # (op, on_done)

    def add(self, op, on_done):
        """op already started; on_done(op) when it is over."""
        self.active.append((op, on_done))
        self._reap()

    def wants(self):
        out = []
        for op, _ in self.active:
            out.extend(op.wants())
        return out

    def ready(self, sock, ev):
        for op, _ in self.active:
            for s, _ in op.wants():
                if s is sock:
                    op.ready(sock, ev)
                    break
        self._reap()

    def tick(self):
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
