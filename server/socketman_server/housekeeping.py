"""The retention pass of a serving process (issue 25): a thread that forgets
chart samples and events older than --retention-hours, and expired
sessions and old audit records, every few minutes, while the fleet runs.
Not on a device's request path: a pass over a large table would hold up
that device's upload (it used to run inline, every 200 uploads)."""
import logging
import random
import threading
import time

log = logging.getLogger("socketman_server.retention")


def interval(retention_s):
    """Seconds between passes: a twentieth of the retention, from 30 s to
    10 minutes (what is kept then exceeds the retention by at most 5 %)."""
    return min(600.0, max(30.0, retention_s / 20.0))


class Pruner:
    """Calls store.prune(now - retention_s) every interval(retention_s)
    seconds (the first after a random part of it: several server processes
    started together do not all prune at once). stop() ends it."""

    def __init__(self, store, retention_s, every_s=None):
        self.store, self.retention_s = store, retention_s
        self.every_s = every_s or interval(retention_s)
        self.passes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="retention", daemon=True)

    def start(self):
        self._thread.start()

    def _run(self):
        wait = random.uniform(0.1, 1.0) * self.every_s
        while not self._stop.wait(wait):
            wait = self.every_s
            t0 = time.monotonic()
            try:
                gone = self.store.prune(int(time.time()) - self.retention_s)
            except Exception:  # noqa: BLE001 - a database hiccup: try again next time
                log.exception("the retention pass failed")
                continue
            self.passes += 1
            log.info("retention pass: %d samples and events older than %.1f h gone in %.2f s", gone,
                     self.retention_s / 3600, time.monotonic() - t0)

    def stop(self):
        self._stop.set()
        self._thread.join(30)
