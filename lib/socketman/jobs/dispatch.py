# The job flow (PROTOCOL 4.1): an inbound payload is checked and queued,
# answered DELIVERED or REJECTED, stored on disk, then run one at a time
# (a plain command by the runner, a "network" job by NetJob) and its result
# handed to the reporter. A "tunnel" job is not queued: jobs.tunnel relays
# it in the loop and hands its result to the reporter (PROTOCOL 11). An
# "update" job is not queued either: it runs at once (jobs/update.py), and
# the queue waits until the new version runs it (PROTOCOL 10). The
# dispatcher alone knows which job is under way.
# With job_key set, a job must be signed and fresh first (PROTOCOL 9).
from .. import log, rt
from ..loop import SLEEP
from . import queue
from .reporter import Reporter
from .runner import NOT_RUN_CODE, Runner

POLL_MS = 200
RETAINED = "retained job not run: it would run again after every restart; clear it and publish without retain"


class Dispatcher:
    """Wires the job flow. publish and start_call go to the reporter (see
    reporter.Reporter); wake() asks the loop to run tick() soon. Set
    start_check (monitor.Monitor.check) once status checks can run: network
    jobs wait for it."""

    def __init__(self, cfg, publish, start_call, wake):
        self.cfg = cfg
        self.wake = wake
        self.start_call = start_call
        self.start_check = None
        self.key = cfg["job_key"]
        replay = None
        if self.key:
            replay = queue.Replay(cfg["job_max_age"], cfg["cache_dir"] + "/signed-ids")
        self.queue = queue.Queue(replay)
        self.runner = Runner(cfg["cache_dir"], cfg["max_output"], cfg["job_timeout"])
        self.reporter = Reporter(cfg, publish, start_call, self._reported)
        self.current = None   # the job under way: a runner.Run or a netjob.NetJob
        self.loop = None      # the agent's loop.Loop, for tunnels (set by the wiring)
        self.tunnels = None   # tunnel.Tunnels once a tunnel job came
        self.on_tunnels = None  # f(tunnels) once they are made (the wiring: name lookups wake their task)
        self.update = None    # the update under way (jobs.update.Update): not queued (PROTOCOL 10)
        self.trial = None     # jobs.trial.Trial, set by the wiring where an update left a state
        self.on_switch = None  # f(then): a new version is ready to run (the agent stops, calls then(),
        #                      main.py runs it)
        self.switched = False

    def on_message(self, payload, retained=False):
        """An inbound job payload (bytes, or None when it was too large to
        keep) from the session; retained: the broker's kept copy."""
        job, bad = queue.parse(payload)
        if not bad and self.key:
            from .sign import check  # loaded only on devices that want signed jobs
            why = check(job, self.key, self.cfg["job_max_age"], rt.now())
            if why:
                bad = (job["id"], why)
        if bad:
            self.reporter.rejected(bad[0], bad[1])
            return
        if retained and not self.queue.seen(job["id"]):
            # The broker keeps a retained job and hands it over on every
            # connect: after each restart it would run again (a retained
            # "reboot" reboots for ever). A live subscriber gets the first
            # copy unretained and runs it once.
            self.reporter.rejected(job["id"], RETAINED)
            return
        if job["type"] == "update":
            self._update(job)
            return
        tunnel = job["type"] == "tunnel"  # not queued: relayed in the loop (PROTOCOL 11)
        outcome = self.queue.offer(job, wait=not tunnel)
        if outcome == "busy":
            self.reporter.rejected(job["id"], "busy")
            return
        if outcome == "full":
            self.reporter.rejected(job["id"], "busy: %d signed jobs are remembered within job_max_age"
                                   % queue.MAX_SIGNED)
            return
        if outcome == "accepted" and tunnel:
            why = self._tunnel(job)
            if why:
                self.queue.cancel(job)
                self.reporter.rejected(job["id"], why)
                return
        elif outcome == "accepted":
            try:
                self.runner.store(job)
            except OSError as e:  # cache_dir full or gone: say so, run nothing
                self.queue.cancel(job)
                self.reporter.rejected(job["id"], "cannot store the job: %s" % e)
                return
            self.wake()
        self.reporter.delivered(job["id"])

    def _update(self, job):
        """An update job (PROTOCOL 10): run at once, one at a time."""
        if self.queue.seen(job["id"]):
            self.reporter.delivered(job["id"])  # a redelivery: not run again
            return
        from .update import Update, target  # loaded only when an update comes
        try:
            target(job["msg"])
        except ValueError as e:
            self.reporter.rejected(job["id"], str(e))
            return
        if self.update is not None or (self.trial is not None and self.trial.on_trial()):
            self.reporter.rejected(job["id"], "busy: an update is under way")
            return
        if self.queue.offer(job, wait=False) == "full":
            self.reporter.rejected(job["id"], "busy: %d signed jobs are remembered within job_max_age"
                                   % queue.MAX_SIGNED)
            return
        self.update = Update(job, self.cfg, self.start_call, self.wake)  # recorded in update_dir first
        self.reporter.delivered(job["id"])
        self.wake()

    def _poll_update(self):
        """Drive the update under way: the ms until it wants a look, SLEEP
        without one."""
        if self.update is None:
            return SLEEP
        out = self.update.poll(self.current is None)
        if out is None:
            return self.update.next_ms()
        upd, self.update = self.update, None
        if out == "switch":
            self.switched = True  # no job starts any more: the new version runs the queue
            self.on_switch(upd.watchdog)
        else:
            self.reporter.processed(out)
        return SLEEP

    def _tunnel(self, job):
        """Open a tunnel (jobs.tunnel, loaded by the first tunnel job): None
        once it is under way, else the reason to reject it."""
        if self.loop is None:
            return "tunnels need the agent's loop"
        if self.tunnels is None:
            from .tunnel import Tunnels
            self.tunnels = Tunnels(self.cfg, self.loop, self.reporter.processed)
            if self.on_tunnels is not None:
                self.on_tunnels(self.tunnels)
        return self.tunnels.start(job)

    def tunnels_open(self):
        """How many tunnels are open (ubus status' `tunnels`, PROTOCOL 12)."""
        return 0 if self.tunnels is None else self.tunnels.count()

    def network_job(self):
        """True while a network job is under way (recovery holds off)."""
        return self.current is not None and self.current.network

    def tick(self):
        """The loop's task: drive the job under way, start the next one.
        The ms until it wants to run again."""
        upd = self._poll_update()
        if self.switched:
            return SLEEP
        if self.current is not None:
            try:
                result = self.current.poll()
            except Exception as e:  # one job that breaks the agent's code must not hold the queue
                log.exc("job %s" % self.current.job["id"], e)
                result = self.runner.result(self.current.job, NOT_RUN_CODE, 0, "[failed in the agent: %s]" % e)
            if result is None:
                nxt = self.current.next_ms()
                return nxt if upd == SLEEP else min(nxt, upd)
            self.current = None
            self.reporter.processed(result)
            if self.update is not None:
                return 0  # the update may switch now
        if self.update is not None:
            return upd  # queued jobs wait: the new version runs them (PROTOCOL 10)
        nxt = self.queue.peek()
        if nxt is None:
            return SLEEP  # a new job wakes us
        if nxt["type"] == "network":
            if self.start_check is None:
                return 50  # its connectivity checks start with the monitor cycle, in a moment
            from .netjob import NetJob  # rare: not loaded until needed
            self.current = NetJob(self.queue.take(), self.cfg, self.runner, self.start_check,
                                  self.cfg["cache_dir"] + "/netjob")
            return POLL_MS
        self.current = self.runner.start(self.queue.take())
        return 0  # its first look at once: a job that could not start reports now

    def _reported(self, result):
        done = result["job"].get("reported")
        if done is not None:
            done()  # an update's: its record in update_dir goes
        self.runner.forget(result["job"])

    def recover(self):
        """At start: report what a previous run left finished, and queue
        what it left waiting."""
        results, todo = self.runner.recover()
        for job in todo:
            self.queue.restore(job)
        for result in results:
            self.reporter.processed(result)
        if todo or results:
            log.info("jobs: recovered %d finished and %d waiting from a previous run"
                     % (len(results), len(todo)))
            self.wake()
