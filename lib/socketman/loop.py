# The cooperative loop: timed tasks and a bounded wait on sockets. Nothing
# in here sleeps but the wait. Three contracts, one verb each:
#
#   contract          verb                              who calls it
#   loop task         tick() -> ms to its next run,     the Loop, when due (every(),
#                     None (its period) or SLEEP        wake())
#   socket operation  step(events[, sock]): move on,    its owner, a socket source
#                     events seen (0: just try);        (Session, InFlight), when
#                     service() -> ms: its deadlines    poll() saw its socket
#   background work   poll() -> None while under way,   the loop task that started it
#                     then its outcome                  (processes, lookups, gzip)
#
# A socket source (add_source) gives the loop wants() -> [(sock, mask)] and
# takes ready(sock, events); the loop keeps one poller and changes it in
# place as those wants change. A task is known by the handle every()
# returns: waking or cancelling one the loop does not hold is an error, so
# a mistake cannot pass silently.
import gc

from . import log, rt

SLOW_STEP_MS = 200
OOM_ROUNDS = 60     # rounds of the loop in a row out of memory before the process gives up
MAX_WAIT_MS = 30000
SLEEP = -1  # a task returns it when it has nothing to do until something wakes it


class Task:
    """A handle from Loop.every(): fn, its period (ms), when it is due next
    (agent ms, rt.ms(); None while it sleeps until woken) and a name for log
    lines."""

    def __init__(self, name, fn, period_ms, due_ms):
        self.name = name
        self.fn = fn
        self.period = period_ms
        self.due = due_ms


class Loop:
    """Timed tasks (every) and socket sources (add_source), run by run()."""
    def __init__(self):
        self.tasks = []     # Task handles, in the order they were added
        self.sources = []   # objects with wants() -> [(sock, mask)] and ready(sock, events)
        self.poller = rt.Poller()
        self.watched = []   # [sock, mask, source, round] as registered with the poller
        self.round = 0      # counts waits: a watched entry not seen this round goes
        self.running = False
        self.wait_cap = MAX_WAIT_MS
        self.wakeups = 0    # waits, i.e. times the process slept and woke (bench figures)

    def every(self, period_ms, fn, first_ms=0, name=None):
        """Run fn every period_ms, the first time in first_ms. fn may return
        the ms until its next run instead, or SLEEP: not until woken (a timer
        with nothing to do costs no wakeup). Returns the task's handle."""
        t = Task(name or getattr(fn, "__name__", "task"), fn, period_ms, rt.ms() + first_ms)
        self.tasks.append(t)
        return t

    def wake(self, task, in_ms=0):
        """Run task within in_ms (sooner if it is due sooner). ValueError if
        the loop does not hold it."""
        self._check(task)
        due = rt.ms() + in_ms
        if task.due is None or due < task.due:
            task.due = due

    def cancel(self, task):
        """Stop running task. ValueError if the loop does not hold it."""
        self._check(task)
        self.tasks.remove(task)

    def _check(self, task):
        if task not in self.tasks:
            raise ValueError("no such task: %s" % getattr(task, "name", task))

    def add_source(self, src):
        """src: an object with wants() -> [(sock, mask)] and ready(sock, events)."""
        self.sources.append(src)

    def _run_task(self, t, now):
        try:
            nxt = t.fn()
        except Exception as e:  # one broken task must not stop the agent
            if isinstance(e, MemoryError):
                log.oom()  # "task " + name would need memory too
            else:
                log.exc("task " + t.name, e)
            nxt = max(t.period, 1000)  # the task tries again later
        t.due = now + t.period if nxt is None else (None if nxt == SLEEP else now + max(0, nxt))
        took = rt.ms() - now
        if took > SLOW_STEP_MS:
            log.debug("task %s took %d ms" % (t.name, took))

    def run_due(self):
        """Run every task that is due."""
        now = rt.ms()
        for t in list(self.tasks):
            # A task an earlier one cancelled in this round does not run.
            if t.due is not None and t.due <= now and t in self.tasks:
                self._run_task(t, now)
                now = rt.ms()

    def wait(self):
        """Poll every source's sockets until the next task is due."""
        now = rt.ms()
        timeout = MAX_WAIT_MS
        for t in self.tasks:
            if t.due is not None:
                timeout = min(timeout, t.due - now)
        self.wakeups += 1
        timeout = max(0, min(timeout, self.wait_cap))
        if not self._watch():
            if timeout:
                rt.sleep_ms(timeout)
            return
        for sock, ev in self.poller.poll(timeout):
            for w in self.watched:
                if w[0] is sock:
                    try:
                        w[2].ready(sock, ev)
                    except Exception as e:
                        log.exc("io %s" % type(w[2]).__name__, e)
                    break

    def _watch(self):
        """Bring the poller in line with what the sources want now: masks
        changed in place, sockets no longer wanted (maybe closed) dropped
        before new ones come (a new socket may have a closed one's fd).
        The number of sockets watched."""
        self.round = r = (self.round + 1) & 0xFFFFFF
        new = None
        for src in self.sources:
            for sock, mask in src.wants():
                for w in self.watched:
                    if w[0] is sock:
                        if w[1] != mask:
                            self.poller.modify(sock, mask)
                            w[1] = mask
                        w[3] = r
                        break
                else:
                    if new is None:
                        new = []
                    new.append([sock, mask, src, r])
        i = len(self.watched)
        while i:
            i -= 1
            if self.watched[i][3] != r:
                self.poller.unregister(self.watched.pop(i)[0])
        if new is not None:
            for w in new:
                self.poller.register(w[0], w[1])
                self.watched.append(w)
        return len(self.watched)

    def run(self):
        """Run tasks and wait on sockets until stop(). Running out of memory
        outside a task (the loop's own lists, a socket's handler) is said and
        survived: the loop goes on after a pause, and what needed the memory
        tries again. MemoryError once it has failed so for OOM_ROUNDS rounds
        in a row: a fresh process (procd's respawn) gets a whole heap back."""
        self.running = True
        ooms = 0
        while self.running:
            try:
                self.run_due()
                if self.running:
                    self.wait()
                ooms = 0
            except MemoryError:
                log.oom()
                ooms += 1
                if ooms >= OOM_ROUNDS:
                    raise
                # Not at once again: a tight loop of failures would hold
                # the CPU and starve what could free the memory.
                gc.collect()
                rt.sleep_ms(min(1000, 50 * ooms))

    def stop(self):
        """run() returns after the current step."""
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
