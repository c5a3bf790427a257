# HTTP calls in flight, driven by the loop: each runs to its end (response or
# error) and then its callback gets it. Several may run at once.
from . import log


class Calls:
    def __init__(self):
        self.active = []   # (call, on_done)

    def add(self, call, on_done):
        call.start()
        self.active.append((call, on_done))
        self._reap()

    def busy(self):
        return bool(self.active)

    def wants(self):
        out = []
        for call, _ in self.active:
            out.extend(call.wants())
        return out

    def ready(self, sock, ev):
        for call, _ in self.active:
            if call.sock is sock:
                call.ready(sock, ev)
        self._reap()

    def tick(self):
        if not self.active:
            return 60000
        nxt = 60000
        for call, _ in self.active:
            nxt = min(nxt, call.service())
        self._reap()
        return nxt

    def _reap(self):
        for item in [a for a in self.active if a[0].done()]:
            self.active.remove(item)
            call, on_done = item
            try:
                on_done(call)
            except Exception as e:
                log.exc("http callback", e)
