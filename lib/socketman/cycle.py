# The monitor cycle (PROTOCOL 7 and 8): every `monitor` seconds, one
# scheduling step and nothing else: start the stats collection, start a
# status check, and hand its status on (recovery, the stats document) when
# it is known. The parts it drives are given as callbacks, and each runs
# whatever another one raised: a read-only cache_dir made the collection
# raise, and with it went the status check, recovery and the config watch.
from . import log


def _call(f, *args):
    """f(*args); an exception is logged, and the cycle goes on."""
    try:
        f(*args)
    except Exception as e:  # one failing part of a cycle must not stop the others
        log.exc("monitor cycle", e)


class Cycle:
    """each_cycle: functions called at the start of every cycle, before the
    check (a collection must be under way when its status arrives, which can
    be at once). check(on_done) starts a status check (monitor.Monitor.check);
    on_status: functions given each status (int, see monitor.NO_ROUTE)."""

    def __init__(self, loop, period_s, each_cycle, check, on_status):
        self.each_cycle = each_cycle
        self.start_check = check
        self.on_status = on_status
        self.task = loop.every(period_s * 1000, self.tick, first_ms=0, name="monitor")

    def tick(self):
        """The loop's task, every `monitor` seconds."""
        for f in self.each_cycle:
            _call(f)
        _call(self.start_check, self._checked)

    def _checked(self, status):
        for f in self.on_status:
            _call(f, status)
