# The job flow (PROTOCOL 4.1): an inbound payload is checked and queued,
# answered DELIVERED or REJECTED, stored on disk, then run one at a time
# (a plain command by the runner, a "network" job by NetJob) and its result
# handed to the reporter. A "tunnel" job is not queued: jobs.tunnel relays
# it in the loop and hands its result to the reporter (PROTOCOL 11). The
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
        if self.current is not None:
            try:
                result = self.current.poll()
            except Exception as e:  # one job that breaks the agent's code must not hold the queue
                log.exc("job %s" % self.current.job["id"], e)
                result = self.runner.result(self.current.job, NOT_RUN_CODE, 0, "[failed in the agent: %s]" % e)
            if result is None:
                return self.current.next_ms()
            self.current = None
            self.reporter.processed(result)
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
