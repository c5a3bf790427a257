# Recovery (PROTOCOL 8): what to do about being offline, as a pure state
# machine the loop feeds with each status and the time; it never sleeps or
# runs anything itself, so tests drive it with their own clock.
#
# Offline (status 0 or 1), counted from the first check that found it: restart
# the network after 30 s, then after waits of 60, 120, 240, 300, 300 ... s;
# reboot once offline for `reboot` seconds (0: never). Back online resets all.
#
# Reboot-loop guard: the number of recovery reboots in a row is kept in a
# small state file on persistent storage. A device that comes back after one
# and does not stay online for an hour doubles its reboot wait (at most 24 h),
# so a dead uplink does not reboot the router every 10 minutes forever.

FIRST_RESTART_MS = 30000
SECOND_WAIT_MS = 60000
MAX_WAIT_MS = 300000
STABLE_MS = 3600000
MAX_REBOOT_S = 86400


def reboots_in(state):
    v = state.get("reboots") if isinstance(state, dict) else None
    return v if isinstance(v, int) and type(v) is not bool and 0 <= v <= 64 else 0


class Recovery:
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
        if not self.reboot_s:
            return 0
        return min(self.reboot_s << min(self.reboots, 20), MAX_REBOOT_S)

    def update(self, status, now):
        """Feed one status and the time (ms). Actions to take, in order:
        ("log", text), ("save", state dict), ("restart", why), ("reboot", why)."""
        if status > 1:
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
