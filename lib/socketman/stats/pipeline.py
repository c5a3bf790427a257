# The stats pipeline (PROTOCOL 5 and 7): collectors -> document -> spool ->
# gzip -> upload. Each stage is a loop task; data moves one way through
# them: a collection's parts wait for the cycle's status, become one
# document line, go to the spool (or straight out with no-cache), and leave
# the spool in gzipped batches every heartbeat.
import random

from .. import log, proc, rt
from ..loop import SLEEP
from . import doc
from .collect import Collector, Surveyor
from .spool import Spool
from .upload import DirectPoster, Uploader

IDLE_MS = 60000


class Stats:
    """The pipeline's parts and tasks. collect() once per monitor cycle;
    status_known(status) when that cycle's status is in (the document waits
    for it); uploads run by themselves every heartbeat. start_call(call,
    on_done) runs an HTTP call; on_unauthorized() is told when the stats API
    answers 401 (None: the documents are kept, PROTOCOL 5); bus, a
    ubus.Client (or None), answers what it can of the collection (PROTOCOL
    12)."""

    def __init__(self, cfg, loop, start_call, on_unauthorized=None, bus=None):
        self.cfg = cfg
        self.loop = loop
        cache = cfg["cache_dir"]
        self.collector = Collector(cfg, cache + "/collect", bus)
        self.surveyor = Surveyor(cfg, cache + "/survey") if cfg["scan"] and cfg["survey"] else None
        self.spool = self.uploader = self.direct = None
        if cfg["no-cache"]:
            self.direct = DirectPoster(cfg, start_call, on_unauthorized)
        else:
            self.spool = Spool(cache + "/spool.jsonl", cfg["cache_max_bytes"])
            self.uploader = Uploader(cfg, self.spool, start_call, cache + "/gzip", proc.getenv("SOCKETMAN_GZIP"),
                                     on_unauthorized)
        self.parts = None     # a collection's parts (collect.Collector.poll), waiting for the status
        self.cannot = None    # why the last collection could not start (str), None when it could
        self.status = None    # this cycle's status (monitor.NO_ROUTE ...), None while pending
        self.seq = 0          # documents made since start
        self.collect_task = loop.every(IDLE_MS, self._collect_tick, name="collect")
        self.collector.wake = lambda: loop.wake(self.collect_task)  # the bus answered
        self.upload_task = self.survey_task = None
        if self.uploader is not None:
            hb = cfg["heartbeat"] * 1000
            # At a random phase: a fleet that powers up together spreads its
            # uploads over the heartbeat instead of hitting the API at once.
            loop.every(hb, self._heartbeat, first_ms=1 + int(random.random() * hb), name="heartbeat")
            self.upload_task = loop.every(IDLE_MS, self.uploader.tick, name="upload")
            self.uploader.wake = lambda: loop.wake(self.upload_task)
        if self.surveyor is not None:
            self.survey_task = loop.every(IDLE_MS, self._survey_tick, name="survey")

    def collect(self):
        """Start this cycle's collection in the background. When its
        commands cannot be written (a full or read-only cache_dir), no
        document this cycle: said once, and again when it works."""
        self.status = None
        try:
            started = self.collector.start()
        except OSError as e:
            self._cannot(e)
            return
        if started:
            self.loop.wake(self.collect_task)
        else:
            log.warn("stats: the last collection is still running, skipped one")

    def status_known(self, status):
        """This cycle's connectivity status: the document may go now."""
        self.status = status
        self.loop.wake(self.collect_task)

    def spool_bytes(self):
        """Bytes of documents waiting in the spool (0 with no-cache)."""
        return self.spool.size if self.spool is not None else 0

    def last_upload(self):
        """Unix time of the last upload the server took (2xx), or 0."""
        return (self.uploader or self.direct).last_ok

    def uploading(self):
        """True while an upload's answer is awaited (a clean stop waits)."""
        return self.uploader is not None and self.uploader.busy()

    def _cannot(self, e):
        """The collection could not start its commands (a full or read-only
        cache_dir): no document this cycle; said once, and again when it works."""
        if self.cannot is None:
            log.error("stats: cannot start the collection (%s): no documents until it can" % e)
        self.cannot = str(e)

    def _collect_tick(self):
        if self.parts is None:
            try:
                self.parts = self.collector.poll()
            except OSError as e:
                self._cannot(e)
                return SLEEP  # collect() wakes us next cycle
            if self.parts is None:
                return proc.poll_ms(20) if self.collector.running() else SLEEP
            if self.cannot is not None:
                log.info("stats: the collection starts again")
                self.cannot = None
        if self.status is None:
            return SLEEP  # the document waits for this cycle's status: status_known() wakes us
        parts, self.parts = self.parts, None
        survey = self.surveyor.take() if self.surveyor else None
        reported = self.spool.pending_drops() if self.spool else 0
        rejects = (self.spool or self.direct).pending_rejects()
        self.seq += 1
        line = doc.line(doc.build(parts, self.cfg["mac"], rt.now(), self.status, survey, reported,
                                  self.seq, rejects))
        log.debug("stats: document of %d bytes" % len(line))
        if self.spool is not None:
            self.spool.append(line, reported, rejects)
        else:
            self.direct.send(line)
            self.direct.reported(rejects)
        if self.surveyor is not None and self.surveyor.due():
            try:
                self.surveyor.start(self.collector.devs)
                self.loop.wake(self.survey_task)
            except OSError as e:  # tried again in 10 minutes
                log.warn("stats: cannot start the neighbour scan: %s" % e)
        return SLEEP  # collect() wakes us

    def _survey_tick(self):
        self.surveyor.poll()
        return proc.poll_ms(500) if self.surveyor.running() else SLEEP

    def _heartbeat(self):
        self.uploader.start()
        self.loop.wake(self.upload_task)
