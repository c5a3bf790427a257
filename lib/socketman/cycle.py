# The monitor cycle, every `monitor` seconds: status check -> recovery, the
# config watch, and collection -> document -> spool -> uploads (PROTOCOL 5-8).
import json

from . import events, log, rt
from .batch import Batch
from .monitor import Monitor
from .recovery import Recovery
from .spool import Spool
from .stats import doc
from .stats.collect import Collector, Surveyor
from .upload import DirectPoster, Uploader
from .watch import Watch

IDLE_MS = 60000


class Cycle:
    def __init__(self, cfg, loop, start_call, publish, paused):
        """start_call(call, on_done) runs an HTTP call; publish(kind, payload,
        qos) goes to MQTT; paused() is true while recovery must hold off."""
        self.cfg = cfg
        self.loop = loop
        self.start_call = start_call
        self.publish = publish
        self.paused = paused
        cache = cfg["cache_dir"]
        tag = cfg["mac"].replace(":", "")
        self.monitor = Monitor(cfg)
        self.recovery = Recovery(cfg["reboot"], _load_state(cfg["state_file"]))
        self.actions = Batch(cache + "/recovery", "recovery-" + tag, 600000)
        self.watch = Watch(cfg["config_dir"])
        self.collector = Collector(cfg, cache + "/collect")
        self.surveyor = Surveyor(cfg, cache + "/survey") if cfg["scan"] and cfg["survey"] else None
        self.spool = self.uploader = self.direct = None
        if cfg["no-cache"]:
            self.direct = DirectPoster(cfg, start_call)
        else:
            self.spool = Spool(cache + "/spool.jsonl", cfg["cache_max_bytes"])
            self.uploader = Uploader(cfg, self.spool, start_call, cache + "/gzip", rt.getenv("SOCKETMAN_GZIP"))
        self.status_pending = False
        self.parts = None   # a collection's parts, waiting for this cycle's status
        self.seq = 0        # documents made since start
        self._schedule()

    def _schedule(self):
        loop, cfg = self.loop, self.cfg
        loop.add_source(self.monitor)
        loop.every("checks", IDLE_MS, self.monitor.tick)
        loop.every("monitor", cfg["monitor"] * 1000, self.run, first_ms=0)
        loop.every("collect", IDLE_MS, self.collect_step)
        loop.every("actions", IDLE_MS, self.actions_step)
        if self.uploader is not None:
            hb = cfg["heartbeat"] * 1000
            loop.every("heartbeat", hb, self.upload, first_ms=hb)
            loop.every("upload", IDLE_MS, self.uploader.poll)
        if self.surveyor is not None:
            loop.every("survey", IDLE_MS, self.survey_step)

    def run(self):
        self.status_pending = True
        self.check(self.status_checked)
        self.watch_step()
        if self.collector.start():
            self.loop.wake("collect")
        else:
            log.warn("stats: the last collection is still running, skipped one")

    def check(self, on_done):
        """A status check now; on_done(status) when it is known."""
        self.monitor.check(on_done)
        self.loop.wake("checks")

    def uploading(self):
        return self.uploader is not None and self.uploader.busy()

    # ---- collectors -> document -> spool ---------------------------------

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
        line = doc.line(doc.build(parts, self.cfg["mac"], rt.now(), self.monitor.last, survey, reported,
                                  self.seq))
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

    # ---- status -> recovery ------------------------------------------------

    def status_checked(self, status):
        self.status_pending = False
        self.loop.wake("collect")
        log.debug("monitor: status %d" % status)
        if self.paused():
            return
        for kind, what in self.recovery.update(status, rt.ms()):
            if kind == "log":
                log.warn("recovery: " + what)
            elif kind == "save":
                _save_state(self.cfg["state_file"], what)
            else:
                self._command(kind, what)

    def _command(self, kind, why):
        cmd = self.cfg["restart_cmd" if kind == "restart" else "reboot_cmd"]
        if self.actions.running():
            log.warn("recovery: %s skipped, the last command is still running (%s)" % (kind, why))
            return
        log.warn("recovery: %s: %s; running: %s" % (kind, why, cmd))
        try:
            self.actions.start(["{\n%s\n} > out 2>&1" % cmd])
        except OSError as e:
            # A full /tmp is one way a router gets stuck, and a reboot is
            # what clears it: run the command without files rather than not.
            log.error("recovery: cannot write %s (%s); running the command without it" % (self.actions.dir, e))
            rt.system("( %s\n) </dev/null >/dev/null 2>&1 &" % cmd)
            return
        self.loop.wake("actions")

    def actions_step(self):
        self.actions.poll()
        return 1000 if self.actions.running() else IDLE_MS

    # ---- config watch ------------------------------------------------------

    def watch_step(self):
        changed = self.watch.changes()
        if changed:
            log.info("config: changed in %s: %s" % (self.cfg["config_dir"], " ".join(changed)))
            self.publish("status", events.config_changed(rt.now(), changed), 1)


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
