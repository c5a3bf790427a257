# Recovery (PROTOCOL 8): what to do about being offline. Recovery is a pure
# state machine fed with each status and the time; it never sleeps or runs
# anything itself, so tests drive it with their own clock. Recoverer carries
# out what it decides: log lines, the state file, and the restart and reboot
# commands, run in the background.
#
# Offline (status 0 or 1), counted from the first check that found it: restart
# the network after 30 s, then after waits of 60, 120, 240, 300, 300 ... s;
# reboot once offline for `reboot` seconds (0: never). Back online resets all.
#
# Reboot-loop guard: the number of recovery reboots in a row is kept in a
# small state file on persistent storage. A device that comes back after one
# and does not stay online for an hour doubles its reboot wait (at most 24 h),
# so a dead uplink does not reboot the router every 10 minutes forever.

import json

from . import fs, log, proc, rt
from .loop import SLEEP
from .monitor import online

FIRST_RESTART_MS = 30000
SECOND_WAIT_MS = 60000
MAX_WAIT_MS = 300000
STABLE_MS = 3600000
MAX_REBOOT_S = 86400


def reboots_in(state):
    """The count of recovery reboots in a row kept in a state dict (0..64)."""
    v = state.get("reboots") if isinstance(state, dict) else None
    return v if isinstance(v, int) and type(v) is not bool and 0 <= v <= 64 else 0


class Recovery:
    """The decisions of PROTOCOL 8. reboot_s: the `reboot` key (0: never);
    state: the state file's dict ({"reboots": n})."""
    def __init__(self, reboot_s, state):
        self.reboot_s = reboot_s
        self.reboots = reboots_in(state)
        self.offline_since = None
        self.online_since = None
        self.next_restart = None
        self.wait = SECOND_WAIT_MS
        self.restarts = 0
        self.rebooted = False

    def reboot_wait_s(self):
        """Seconds offline before a reboot: reboot x 2^reboots, at most 24 h (0: never)."""
        if not self.reboot_s:
            return 0
        return min(self.reboot_s << min(self.reboots, 20), MAX_REBOOT_S)

    def update(self, status, now):
        """Feed one status and the time (ms). Actions to take, in order:
        ("log", text), ("save", state dict), ("restart", why), ("reboot", why)."""
        if online(status):
            return self._online(status, now)
        out = []
        self.online_since = None
        if self.offline_since is None:
            self.offline_since = now
            self.next_restart = now + FIRST_RESTART_MS
            self.wait = SECOND_WAIT_MS
            self.restarts = 0
            self.rebooted = False
            out.append(("log", "offline (status %d)%s" % (status, self._reboot_note())))
        gone_s = (now - self.offline_since) // 1000
        wait_s = self.reboot_wait_s()
        if wait_s and not self.rebooted and gone_s >= wait_s:
            self.rebooted = True
            self.reboots += 1
            out.append(("save", {"reboots": self.reboots}))
            out.append(("reboot", "offline (status %d) for %d s, reboot wait %d s" % (status, gone_s, wait_s)))
        elif now >= self.next_restart:
            self.restarts += 1
            self.next_restart = now + self.wait
            out.append(("restart", "offline (status %d) for %d s, restart %d; next in %d s"
                        % (status, gone_s, self.restarts, self.wait // 1000)))
            self.wait = min(self.wait * 2, MAX_WAIT_MS)
        return out

    def _online(self, status, now):
        out = []
        if self.offline_since is not None:
            out.append(("log", "back online (status %d) after %d s offline"
                        % (status, (now - self.offline_since) // 1000)))
            self.offline_since = self.next_restart = None
        if self.online_since is None:
            self.online_since = now
        if self.reboots and now - self.online_since >= STABLE_MS:
            self.reboots = 0
            out.append(("save", {}))
            out.append(("log", "online for an hour: reboot wait back to %d s" % self.reboot_s))
        return out

    def _reboot_note(self):
        if not self.reboot_s:
            return "; reboot is off"
        if self.reboots:
            return "; %d recovery reboot(s) in a row: reboot wait %d s" % (self.reboots, self.reboot_wait_s())
        return ""


class Recoverer:
    """Feeds each status (status(s), from the monitor cycle) to Recovery and
    does what it decides. paused() is true while recovery must hold off (a
    network job does its own rollback)."""

    def __init__(self, cfg, loop, paused):
        self.cfg = cfg
        self.loop = loop
        self.paused = paused
        self.recovery = Recovery(cfg["reboot"], load_state(cfg["state_file"]))
        self.actions = proc.Batch(cfg["cache_dir"] + "/recovery", "recovery-" + cfg["mac"].replace(":", ""), 600000)
        self.task = loop.every(60000, self._actions_tick, name="actions")

    def status(self, status):
        """One status (int, monitor.NO_ROUTE ...) from the monitor cycle."""
        log.debug("monitor: status %d" % status)
        if self.paused():
            return
        for kind, what in self.recovery.update(status, rt.ms()):
            if kind == "log":
                log.warn("recovery: " + what)
            elif kind == "save":
                save_state(self.cfg["state_file"], what)
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
            proc.run_detached(cmd)
            return
        self.loop.wake(self.task)

    def _actions_tick(self):
        self.actions.poll()
        return proc.poll_ms(1000) if self.actions.running() else SLEEP


def load_state(path):
    """The recovery state file (JSON, {"reboots": n}) as a dict; {} when it
    is missing or not JSON."""
    raw = fs.read_file(path, 4096)
    if raw is None:
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        log.warn("recovery: %s is not JSON, starting afresh" % path)
        return {}


def save_state(path, state):
    """Write the state dict to path atomically; a failure is logged."""
    try:
        fs.makedirs(path.rpartition("/")[0] or "/")
        fs.write_atomic(path, json.dumps(state).encode())
    except OSError as e:
        log.error("recovery: cannot write %s: %s" % (path, e))
