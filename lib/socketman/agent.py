# Entry point: options and config, then the loop with every part wired in.
import json
import sys

from . import VERSION, cli, config, events, http, jobs, log, rt, urls
from .batch import Batch
from .calls import Calls
from .loop import Loop
from .monitor import Monitor
from .netjob import NetJob
from .recovery import Recovery
from .reporter import Reporter
from .runner import Runner
from .session import Session
from .spool import Spool
from .stats import doc
from .stats.collect import Collector, Surveyor
from .upload import DirectPoster, Uploader
from .watch import Watch

JOB_POLL_MS = 200
IDLE_MS = 60000


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
        self.calls = Calls()
        self.session = None
        self.queue = jobs.Queue()
        self.runner = None
        self.reporter = None
        self.spool = self.uploader = self.direct = self.surveyor = None
        self.current = None      # the NetJob under way, if any
        self.status_pending = False
        self.parts = None        # a collection's parts waiting for the status
        self.seq = 0             # documents made since start

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
        self.monitor = Monitor(cfg)
        loop.add_source(self.monitor)
        loop.every("checks", IDLE_MS, self.monitor.tick)
        self.recovery = Recovery(cfg["reboot"], _load_state(cfg["state_file"]))
        self.actions = Batch(cfg["cache_dir"] + "/recovery", "recovery-" + cfg["mac"].replace(":", ""), 600000)
        self.watch = Watch(cfg["config_dir"])
        self.runner = Runner(cfg["cache_dir"], cfg["max_output"], cfg["job_timeout"])
        self.reporter = Reporter(cfg, self.session, self.http, self.job_reported)
        loop.every("jobs", JOB_POLL_MS, self.jobs_step)
        loop.every("report", 30000, self.reporter.tick)
        self._recover_jobs()
        if not cfg["no-ping"]:
            period = cfg["ping-interval"] * 1000
            loop.every("ping", period, self.ping, first_ms=period)
        self._start_stats()

    def stop(self):
        self.loop.stop()
        if self.uploader is not None and self.uploader.busy():
            # The server may have taken the batch: wait for its answer, or
            # the next start sends those lines again.
            self.loop.wait_cap = 50
            self.loop.drain(self.uploader.busy, 3000)
        if self.session is not None:
            self.session.stop()
        log.info("socketman stopped")

    def http(self, call, on_done):
        """Start an HTTP call that the loop drives to its end."""
        self.calls.add(call, on_done)
        self.loop.wake("http")

    # ---- stats: collectors -> document -> spool -> uploader -------------

    def _start_stats(self):
        cfg, loop = self.cfg, self.loop
        cache = cfg["cache_dir"]
        if cfg["no-cache"]:
            self.direct = DirectPoster(cfg, self.http)
        else:
            self.spool = Spool(cache + "/spool.jsonl", cfg["cache_max_bytes"])
            self.uploader = Uploader(cfg, self.spool, self.http, cache + "/gzip", rt.getenv("SOCKETMAN_GZIP"))
            hb = cfg["heartbeat"] * 1000
            loop.every("heartbeat", hb, self.upload, first_ms=hb)
            loop.every("upload", IDLE_MS, self.uploader.poll)
        self.collector = Collector(cfg, cache + "/collect")
        if cfg["scan"] and cfg["survey"]:
            self.surveyor = Surveyor(cfg, cache + "/survey")
            loop.every("survey", IDLE_MS, self.survey_step)
        loop.every("monitor", cfg["monitor"] * 1000, self.collect, first_ms=1000)
        loop.every("actions", IDLE_MS, self.actions_step)
        loop.every("collect", IDLE_MS, self.collect_step)

    def collect(self):
        """The monitor cycle: status check, config watch, collection."""
        self.status_pending = True
        self.monitor.check(self.status_checked)
        self.loop.wake("checks")
        self.watch_step()
        if self.collector.start():
            self.loop.wake("collect")
        else:
            log.warn("stats: the last collection is still running, skipped one")

    def collect_step(self):
        if self.parts is None:
            self.parts = self.collector.poll()
            if self.parts is None:
                return 20 if self.collector.running() else IDLE_MS
        if self.status_pending:
            return 20  # the document waits for this cycle's status (3 s at most)
        parts, self.parts = self.parts, None
        survey = self.surveyor.take() if self.surveyor else None
        reported = self.spool.pending_drops() if self.spool else 0
        self.seq += 1
        line = doc.line(doc.build(parts, self.cfg["mac"], rt.now(), self.status(), survey, reported, self.seq))
        log.debug("stats: document of %d bytes" % len(line))
        if self.spool is not None:
            self.spool.append(line, reported)
        else:
            self.direct.send(line)
        if self.surveyor is not None and self.surveyor.due():
            self.surveyor.start(self.collector.devs)
            self.loop.wake("survey")
        return IDLE_MS

    def survey_step(self):
        self.surveyor.poll()
        return 500 if self.surveyor.running() else IDLE_MS

    def upload(self):
        self.uploader.start()
        self.loop.wake("upload")

    def status(self):
        return self.monitor.last

    # ---- monitor: status -> document and recovery -----------------------

    def status_checked(self, status):
        self.status_pending = False
        self.loop.wake("collect")
        log.debug("monitor: status %d" % status)
        if self.current is not None:
            # A network job watches connectivity itself, and rolls back and
            # restarts when it has to; a restart of ours would get in its way.
            return
        for action in self.recovery.update(status, rt.ms()):
            self._recovery_action(action)

    def _recovery_action(self, action):
        kind, what = action
        if kind == "log":
            log.warn("recovery: " + what)
        elif kind == "save":
            _save_state(self.cfg["state_file"], what)
        else:
            cmd = self.cfg["restart_cmd" if kind == "restart" else "reboot_cmd"]
            if self.actions.running():
                log.warn("recovery: %s skipped, the last command is still running (%s)" % (kind, what))
                return
            log.warn("recovery: %s: %s; running: %s" % (kind, what, cmd))
            self.actions.start(["{\n%s\n} > out 2>&1" % cmd])
            self.loop.wake("actions")

    def actions_step(self):
        if self.actions.poll() is None:
            return 1000 if self.actions.running() else IDLE_MS
        return IDLE_MS

    def watch_step(self):
        changed = self.watch.changes()
        if changed:
            log.info("config: changed in %s: %s" % (self.cfg["config_dir"], " ".join(changed)))
            if self.session is not None:
                self.session.publish("status", events.config_changed(rt.now(), changed), 1)

    # ---- jobs: session -> queue -> runner -> reporter --------------------

    def on_job_message(self, payload):
        job, bad = jobs.parse(payload)
        if bad:
            self.reporter.rejected(bad[0], bad[1])
            return
        outcome = self.queue.offer(job)
        if outcome == "busy":
            self.reporter.rejected(job["id"], "busy")
            return
        if outcome == "accepted":
            self.runner.store(job)
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
        job = self.queue.take()
        if job is None:
            return IDLE_MS
        if job["type"] == "network":
            self.current = NetJob(job, self.cfg, self.runner, self._check_now, self.cfg["cache_dir"] + "/netjob")
            return JOB_POLL_MS
        self.runner.start(job)
        return self.runner.next_poll_ms()

    def _check_now(self, on_done):
        self.monitor.check(on_done)
        self.loop.wake("checks")

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


def _load_state(path):
    raw = rt.read_file(path, 4096)
    if raw is None:
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        log.warn("recovery: %s is not JSON, starting afresh" % path)
        return {}


def _save_state(path, state):
    try:
        rt.makedirs(path.rpartition("/")[0] or "/")
        rt.write_atomic(path, json.dumps(state).encode())
    except OSError as e:
        log.error("recovery: cannot write %s: %s" % (path, e))


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
    try:
        agent.stop()
    except KeyboardInterrupt:
        pass  # asked again while stopping: go now
    return status
