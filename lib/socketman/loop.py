# The cooperative loop: timed tasks and a bounded wait on sockets. Tasks are
# short "do one step now" functions; nothing in here sleeps except poll().
from . import log, rt

SLOW_STEP_MS = 200
MAX_WAIT_MS = 30000


class Loop:
    def __init__(self):
        self.tasks = {}     # name -> [fn, period_ms, due_ms]
        self.sources = []   # objects with wants() -> [(sock, mask)] and ready(sock, events)
        self.running = False
        self.wait_cap = MAX_WAIT_MS

    def every(self, name, period_ms, fn, first_ms=0):
        """Run fn every period_ms. fn may return the ms until its next run."""
        self.tasks[name] = [fn, period_ms, rt.ms() + first_ms]

    def wake(self, name, in_ms=0):
        t = self.tasks.get(name)
        if t is not None:
            t[2] = min(t[2], rt.ms() + in_ms)

    def cancel(self, name):
        self.tasks.pop(name, None)

    def add_source(self, src):
        self.sources.append(src)

    def _run_task(self, name, t, now):
        try:
            nxt = t[0]()
        except Exception as e:  # one broken task must not stop the agent
            log.exc("task " + name, e)
            nxt = max(t[1], 1000)
        t[2] = now + (t[1] if nxt is None else max(0, nxt))
        took = rt.ms() - now
        if took > SLOW_STEP_MS:
            log.debug("task %s took %d ms" % (name, took))

    def run_due(self):
        now = rt.ms()
        for name in list(self.tasks):
            t = self.tasks.get(name)
            if t is not None and t[2] <= now:
                self._run_task(name, t, now)
                now = rt.ms()

    def wait(self):
        """Poll every source's sockets until the next task is due."""
        now = rt.ms()
        timeout = MAX_WAIT_MS
        for t in self.tasks.values():
            timeout = min(timeout, t[2] - now)
        timeout = max(0, min(timeout, self.wait_cap))
        poller = rt.Poller()
        owners = []
        for src in self.sources:
            for sock, mask in src.wants():
                poller.register(sock, mask)
                owners.append((sock, src))
        if not owners:
            if timeout:
                rt.sleep_ms(timeout)
            return
        for sock, ev in poller.poll(timeout):
            for s, src in owners:
                if s is sock:
                    try:
                        src.ready(sock, ev)
                    except Exception as e:
                        log.exc("io %s" % type(src).__name__, e)

    def run(self):
        self.running = True
        while self.running:
            self.run_due()
            if self.running:
                self.wait()

    def stop(self):
        self.running = False

    def drain(self, busy, max_ms):
        """Keep running while busy() says so, for at most max_ms: lets a
        request that is under way finish on a clean stop."""
        end = rt.ms() + max_ms
        self.wait_cap = 50  # look at busy() often
        while busy() and rt.ms() < end:
            self.run_due()
            self.wait()
        self.wait_cap = MAX_WAIT_MS
