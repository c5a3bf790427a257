# Jobs of type "network" (PROTOCOL 4.1): check connectivity and copy
# config_dir; run the job; check again, for up to 60 s. A job that took an
# online device offline is rolled back: the copy is restored, the network
# restarted, and the result says so (success false, the job's own exit code).
from .. import log, proc, rt
from ..monitor import online
from .runner import with_note

AFTER_MS = 60000
RETRY_MS = 5000
POLL_MS = 200


class NetJob:
    """One network job under way, as a state machine: poll() until it gives
    the job's result record (runner.result, with our note on what happened).
    start_check(on_done) starts a status check (monitor.Monitor.check)."""

    network = True

    def __init__(self, job, cfg, runner, start_check, workdir):
        self.job = job
        self.runner = runner
        self.run = None
        self.start_check = start_check  # f(on_done(status))
        self.conf = cfg["config_dir"].rstrip("/") or "/"
        self.restart_cmd = cfg["restart_cmd"]
        self.batch = proc.Batch(workdir + "/run", "netjob-" + cfg["mac"].replace(":", ""), 180000)
        self.copy = workdir + "/config-copy"
        self.state = "before"
        self.status = None      # the last check's answer; None while one runs
        self.before = None
        self.result = None
        self.deadline = 0
        self.next_check = 0
        self._check()

    def _check(self):
        self.status = None
        phase = self.state

        def done(status):
            log.debug("job %s: status %d (%s)" % (self.job["id"], status, phase))
            self.status = status
        self.start_check(done)

    def poll(self):
        """The job's result record when everything is over, else None."""
        fn = getattr(self, "_" + self.state)
        return fn()

    def next_ms(self):
        """When to poll again: often while the command runs, else calmly."""
        return self.run.next_ms() if self.state == "run" else POLL_MS

    def _before(self):
        if self.status is None:
            return None
        self.before = self.status
        q = proc.shell_quote
        self.batch.start(["rm -rf %s && mkdir -p %s && cp -a %s/. %s/ && echo ok > copied"
                          % (q(self.copy), q(self.copy), q(self.conf), q(self.copy))])
        self.state = "backup"
        return None

    def _backup(self):
        done = self.batch.poll()
        if done is None:
            return None
        if not done or self.batch.read("copied") != b"ok\n":
            log.error("job %s: could not copy %s, not run" % (self.job["id"], self.conf))
            return self.runner.unrun(self.job, "[network: could not copy %s before the job: not run]" % self.conf)
        self.run = self.runner.start(self.job)
        if self.run.failed is not None:
            self.state = "done"  # never ran: nothing to check or roll back
            return self.run.poll()
        self.state = "run"
        return None

    def _run(self):
        r = self.run.poll()
        if r is None:
            return None
        self.result = r
        self.deadline = rt.ms() + AFTER_MS
        self.state = "after"
        self._check()
        return None

    def _after(self):
        if self.status is None:
            return self._maybe_check()
        if online(self.status):
            return self._finish(None)
        if not online(self.before):
            return self._finish("[network: offline before the job (status %d) and after it (status %d): "
                                "nothing to roll back]" % (self.before, self.status))
        if rt.ms() < self.deadline:
            return self._retry()
        log.warn("job %s: took the device offline (status %d, was %d): restoring %s"
                 % (self.job["id"], self.status, self.before, self.conf))
        self.offline = self.status
        q = proc.shell_quote
        # Files the job added go; everything copied comes back as it was.
        self.batch.start([
            "( cd %s && for f in * .[!.]*; do [ -e \"$f\" ] || continue; [ -e %s/\"$f\" ] || rm -rf \"$f\"; done"
            " ) && cp -a %s/. %s/ && echo ok > restored" % (q(self.conf), q(self.copy), q(self.copy), q(self.conf))])
        self.state = "restore"
        return None

    def _restore(self):
        done = self.batch.poll()
        if done is None:
            return None
        self.restored = done and self.batch.read("restored") == b"ok\n"
        self.batch.start(["{\n%s\n} > restart.out 2>&1" % self.restart_cmd])
        self.state = "restart"
        return None

    def _restart(self):
        if self.batch.poll() is None:
            return None
        self.deadline = rt.ms() + AFTER_MS
        self.state = "final"
        return self._retry()  # give the network time to come up

    def _final(self):
        if self.status is None:
            return self._maybe_check()
        if not online(self.status) and rt.ms() < self.deadline:
            return self._retry()
        what = "restored" if self.restored else "could NOT be restored"
        return self._finish("[network: the job took the device offline (status %d, was %d): %s %s, "
                            "network restarted, status now %d]"
                            % (self.offline, self.before, self.conf, what, self.status), failed=True)

    def _retry(self):
        self.status = None  # until the next check answers
        self.next_check = rt.ms() + RETRY_MS
        return None

    def _maybe_check(self):
        if self.next_check and rt.ms() >= self.next_check:
            self.next_check = 0
            self._check()
        return None

    def _finish(self, note, failed=False):
        r = self.result
        if note:
            r["msg"] = with_note(r["msg"], note)
            log.info("job %s: %s" % (self.job["id"], note))
        if failed:
            r["success"] = False
        self.state = "done"
        return r
