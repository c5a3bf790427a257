# After an update (PROTOCOL 10), at the start of the agent when update_dir
# holds a state: the trial of a new version (this one, when main.py started
# it as the version on trial), the PROCESSED an update job is owed (after a
# commit, a rollback, or an update a restart cut short), and the slots
# nothing names any more. Loaded only where an update left a state.
#
# Trial: the new version must reach the broker (CONNACK) within
# update_trial seconds, or, without mqtt_host, get a 2xx for a stats upload.
# Then it commits: current = this version, fallback = the one before, older
# slots deleted, PROCESSED success true "updated <old> -> <new>". Otherwise
# it records the rollback and asks the agent to stop: main.py runs the
# version before, whose start publishes PROCESSED success false.
from .. import log, rt, slots
from ..loop import SLEEP

POLL_MS = 250


def running_slot(update_dir):
    """The slot this agent's code was loaded from ("" for the package's own
    tree): main.py put <update_dir>/<slot>/lib first in sys.path."""
    import socketman
    path = getattr(socketman, "__file__", "") or ""
    prefix = update_dir + "/"
    return path[len(prefix):].partition("/")[0] if path.startswith(prefix) else ""


class Trial:
    """The update state's work at start. connected() says whether the
    session has its CONNACK now, online() whether events go out now (True
    without MQTT: the reporter then PATCHes or has nowhere to send);
    on_rollback() stops the agent so main.py runs the version before.
    tick() is a loop task."""

    def __init__(self, cfg, reporter, connected, online, on_rollback):
        self.ud = cfg["update_dir"]
        self.reporter = reporter
        self.connected = connected
        self.online = online
        self.on_rollback = on_rollback
        self.trial_s = cfg["update_trial"]
        self.proof = "reach the broker" if cfg["mqtt_host"] else "get a 2xx for a stats upload"
        self.started = rt.ms()
        self.uploaded = False   # a stats upload got a 2xx (watch())
        self.sending = None     # the report handed to the reporter, until it is out
        try:
            st = slots.read(self.ud)
        except (OSError, ValueError) as e:
            log.error("update: %s/%s cannot be read (%s): the package's own version runs" % (
                self.ud, slots.STATE, e))
            st = None
        t = st and st.get("trial")
        self.mine = t if t and t.get("tries", 0) >= 1 and running_slot(self.ud) == t.get("slot") else None
        self.report = st and st.get("report")
        if self.mine:
            log.info("update: %s on trial: it has %d s to %s" % (t.get("version"), self.trial_s, self.proof))
            slots.hook("trial")
        if st is not None:  # a state that cannot be read might name slots still wanted
            slots.prune(self.ud, st)

    def on_trial(self):
        """True while this version is on trial (another update is "busy")."""
        return self.mine is not None

    def watch(self, start_call):
        """start_call for the stats uploads, noting a 2xx (the proof without
        MQTT)."""
        def start(call, on_done):
            def done(c):
                if c.response is not None and c.response.status_code // 100 == 2:
                    self.uploaded = True
                on_done(c)
            start_call(call, done)
        return start

    def tick(self):
        """The loop's task: commit, roll back or report when it is time."""
        if self.mine is not None:
            if self.connected() or self.uploaded:
                self._commit()
            elif rt.ms() - self.started >= self.trial_s * 1000:
                self._rollback()
                return SLEEP
        if self.report is not None and self.sending is None and self.online():
            self._send()
        if self.mine is None and self.report is None:
            return SLEEP
        return POLL_MS

    def _commit(self):
        t = self.mine
        st = slots.read(self.ud)
        st.pop("trial", None)
        if st.get("current"):
            st["fallback"] = st["current"]
        else:
            st.pop("fallback", None)  # the one before is the package's own tree
        st["current"] = {"slot": t["slot"], "version": t["version"]}
        st["package"] = t.get("package")
        st["report"] = {"job": t.get("job"), "success": True, "at": t.get("at"),
                        "msg": "updated %s -> %s" % (t.get("from"), t["version"])}
        slots.write(self.ud, st, "commit")
        slots.hook("committed")
        self.mine = None
        self.report = st["report"]
        log.info("update: %s committed (it reached the broker or the API); %s kept as the fallback" % (
            t["version"], (st.get("fallback") or {}).get("version", "the package's own version")))
        slots.prune(self.ud, st)

    def _rollback(self):
        t = self.mine
        self.mine = None
        st = slots.read(self.ud)
        st.pop("trial", None)
        why = "rolled back: %s did not %s within %d s" % (t.get("version"), self.proof, self.trial_s)
        st["report"] = {"job": t.get("job"), "success": False, "at": t.get("at"), "msg": why}
        slots.write(self.ud, st, "rollback")
        log.error("update: " + why)
        self.on_rollback()

    def _send(self):
        r = self.report
        self.sending = r
        took = rt.now() - r["at"] if isinstance(r.get("at"), int) else 0
        job = {"id": r.get("job"), "type": "update", "reported": self._reported}
        ok = bool(r.get("success"))
        self.reporter.processed({"id": job["id"], "type": "update", "msg": str(r.get("msg")).encode(),
                                 "success": ok, "exit_code": 0 if ok else 1,
                                 "duration_ms": max(0, took) * 1000, "job": job})

    def _reported(self):
        """The owed PROCESSED went out: it leaves the state."""
        sent, self.sending, self.report = self.sending, None, None
        try:
            st = slots.read(self.ud)
            if st.get("report") == sent:
                del st["report"]
                slots.save(self.ud, st, "reported")
        except (OSError, ValueError) as e:
            log.warn("update: cannot clear the report from %s: %s" % (self.ud, e))
