# Entry point: options and config, then the loop with every part wired in.
# The MQTT session comes first; the monitor cycle (stats, recovery) is
# imported and started right after the session is online, so start-up work
# does not delay the first CONNECT.
import sys

from . import VERSION, cli, config, events, http, jobs, log, rt, urls
from .inflight import InFlight
from .loop import Loop
from .reporter import Reporter
from .runner import Runner
from .session import Session

JOB_POLL_MS = 200
IDLE_MS = 60000
INIT_WAIT_MS = 1000
RETAINED = "retained job not run: it would run again after every restart; clear it and publish without retain"


def _fail(msg):
    sys.stderr.write("socketman: %s\n" % msg)
    return 2


class Agent:
    """Owns the loop and wires the parts together; parts never reach into
    each other, they hand plain data through here."""

    def __init__(self, cfg, opts):
        self.cfg = cfg
        self.opts = opts
        self.loop = Loop()
        self.calls = InFlight()
        self.session = None
        self.queue = jobs.Queue()
        self.runner = None
        self.reporter = None
        self.cycle = None
        self.current = None      # the NetJob under way, if any

    def start(self):
        cfg = self.cfg
        rt.makedirs(cfg["cache_dir"])
        log.info("socketman %s starting (mac %s)" % (VERSION, cfg["mac"]))
        http.set_default_tls(cfg["cacrt"], cfg["insecure"])
        loop = self.loop
        loop.add_source(self.calls)
        loop.every("http", 60000, self.calls.tick)
        if cfg["mqtt_host"]:
            ctx = rt.tls_context(cfg["cacrt"], cfg["insecure"]) if cfg["tls"] else None
            self.session = Session(cfg, self.on_job_message, ctx)
            loop.add_source(self.session)
            loop.every("mqtt", 1000, self.session.tick)
        self.runner = Runner(cfg["cache_dir"], cfg["max_output"], cfg["job_timeout"])
        self.reporter = Reporter(cfg, self.session, self.http, self.job_reported)
        loop.every("jobs", JOB_POLL_MS, self.jobs_step)
        loop.every("report", 30000, self.reporter.tick)
        self._recover_jobs()
        if not cfg["no-ping"]:
            period = cfg["ping-interval"] * 1000
            loop.every("ping", period, self.ping, first_ms=period)
        self.started = rt.ms()
        loop.every("init", 20, self.init_rest)

    def init_rest(self):
        """Once the session is online (or after a second): the monitor cycle
        and the boot URL and command."""
        if self.session is not None and not self.session.online and rt.ms() - self.started < INIT_WAIT_MS:
            return 20
        self.loop.cancel("init")
        from .cycle import Cycle
        self.cycle = Cycle(self.cfg, self.loop, self.http, self.publish, lambda: self.current is not None)
        self._boot()
        return IDLE_MS

    def publish(self, kind, payload, qos):
        if self.session is not None:
            self.session.publish(kind, payload, qos)

    def stop(self):
        self.loop.stop()
        if self.cycle is not None and self.cycle.uploading():
            # The server may have taken the batch: wait for its answer, or
            # the next start sends those lines again.
            self.loop.drain(self.cycle.uploading, 3000)
        if self.session is not None:
            self.session.stop()
        log.info("socketman stopped")

    def _boot(self):
        """PROTOCOL 5: GET boot_url once (its body is never run), then
        boot_cmd once, in the background like a job."""
        cfg = self.cfg
        if cfg["boot_url"]:
            url = urls.add_query(cfg["boot_url"], [("access_token", cfg["token"]), ("mac", cfg["mac"])])
            self.http(http.Call("GET", url), _boot_done)
        if cfg["boot_cmd"]:
            log.info("boot: running boot_cmd")
            from .batch import Batch
            self.boot = Batch(cfg["cache_dir"] + "/boot", "boot-" + cfg["mac"].replace(":", ""), 3600000)
            self.boot.start(["{\n%s\n} > out 2>&1" % cfg["boot_cmd"]])

    def http(self, call, on_done):
        """Start an HTTP call that the loop drives to its end."""
        self.calls.add(call.start(), on_done)
        self.loop.wake("http")

    # ---- jobs: session -> queue -> runner -> reporter --------------------

    def on_job_message(self, payload, retained=False):
        job, bad = jobs.parse(payload)
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
        outcome = self.queue.offer(job)
        if outcome == "busy":
            self.reporter.rejected(job["id"], "busy")
            return
        if outcome == "accepted":
            try:
                self.runner.store(job)
            except OSError as e:  # cache_dir full or gone: say so, run nothing
                self.queue.cancel(job)
                self.reporter.rejected(job["id"], "cannot store the job: %s" % e)
                return
            self.loop.wake("jobs")
        self.reporter.delivered(job["id"])

    def jobs_step(self):
        if self.current is not None:
            result = self.current.step()
            if result is None:
                return JOB_POLL_MS
            self.current = None
            self.reporter.processed(result)
        elif self.runner.busy():
            result = self.runner.poll()
            if result is None:
                return self.runner.next_poll_ms()
            self.reporter.processed(result)
        nxt = self.queue.peek()
        if nxt is None:
            return IDLE_MS
        if nxt["type"] == "network" and self.cycle is None:
            return 50  # its connectivity checks start with the monitor cycle, in a moment
        job = self.queue.take()
        if job["type"] == "network":
            from .netjob import NetJob
            self.current = NetJob(job, self.cfg, self.runner, self.cycle.check, self.cfg["cache_dir"] + "/netjob")
            return JOB_POLL_MS
        result = self.runner.start(job)
        if result is not None:
            self.reporter.processed(result)
            return 0
        return self.runner.next_poll_ms()

    def job_reported(self, result):
        self.runner.forget(result["job"])

    def _recover_jobs(self):
        results, todo = self.runner.recover()
        for job in todo:
            self.queue.restore(job)
        for result in results:
            self.reporter.processed(result)
        if todo or results:
            log.info("jobs: recovered %d finished and %d waiting from a previous run"
                     % (len(results), len(todo)))

    # ---- pings -----------------------------------------------------------

    def ping(self):
        if self.session is not None:
            self.session.publish("status", events.ping(rt.now()), 0, keep=False)
        if self.cfg["rest"] and self.cfg["api_url"]:
            url = urls.add_query(self.cfg["api_url"].rstrip("/") + "/ping",
                                 [("access_token", self.cfg["token"]), ("mac", self.cfg["mac"])])
            call = http.Call("POST", url, events.ping(rt.now()), {"Content-Type": "application/json"})
            self.http(call, _ping_done)


def _boot_done(call):
    if call.error:
        log.warn("boot: %s" % call.error)
    else:
        log.info("boot: %s answered %d" % (call.url.partition("?")[0], call.response.status_code))


def _ping_done(call):
    if call.error or call.response.status_code >= 300:
        log.warn("rest ping: %s" % (call.error or "HTTP %d" % call.response.status_code))


def main(argv):
    try:
        opts = cli.parse(argv)
    except cli.UsageError as e:
        _fail(str(e))
        sys.stderr.write(cli.USAGE)
        return 2
    if opts["help"]:
        sys.stdout.write(cli.USAGE)
        return 0
    if opts["version"]:
        print("socketman " + VERSION)
        return 0
    try:
        cfg = config.load(opts["config"])
    except config.ConfigError as e:
        return _fail("%s: %s" % (opts["config"], e))
    log.setup(verbose=opts["debug"] or bool(cfg["debug"]))
    log.secret(cfg["password"])
    log.secret(cfg["token"])
    rt.seed_random()
    agent = Agent(cfg, opts)
    status = 0
    try:
        agent.start()
        agent.loop.run()
    except KeyboardInterrupt:
        pass
    except OSError as e:
        _fail("cannot run: %s" % e)
        status = 2
    # MicroPython can deliver one Ctrl-C twice, or raise it inside a garbage
    # collection (which leaves the heap locked): the clean stop is tried
    # again rather than dying with a traceback half-way.
    for _ in range(3):
        try:
            rt.after_interrupt()
            agent.stop()
            break
        except KeyboardInterrupt:
            pass
    return status
