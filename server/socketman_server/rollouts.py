"""Rollouts of a release to devices in waves (issue 23, PROTOCOL 10): the
plan (which devices, which wave, how many failures a wave may have), what a
device's answer to its update job means, and the scheduler that moves
rollouts on from the database.

A rollout is state in the database (rollouts, rollout_devices: see
schema.py), not in a process: a server that restarts picks it up where it
was. The Scheduler thread of each server process calls Engine.tick() every
few seconds; for each rollout with work left it first takes the rollout's
lease (one conditional UPDATE: only one process drives a rollout at a
time; another takes over when the lease runs out, 30 s after its holder
died), then:

1. records the answers of devices it sent the update to: PROCESSED success
   true -> updated (with the version the OUTPUT `updated <old> -> <new>`
   names, which must be the release's); false with OUTPUT `rolled back:...`
   -> rolled back; any other false, or REJECTED -> failed; no answer within
   trial_s + margin_s of the send -> failed, unless the device's CONNECT
   has named the release's version since (its PROCESSED was lost);
2. stops the rollout (state stopped, with why, audited) when the current
   wave has more failures (failed + rolled back) than it may have;
3. when running: once every device of the wave has an outcome, starts the
   next wave (or finishes: done); sends the update job to each waiting
   device of the wave that is online; a device offline for offline_wait_s
   after its wave started fails ("offline").

Operators pause (no more sends; answers are still recorded), resume (a
stopped rollout too: the failures of the wave it stopped at are accepted)
and abort (devices not sent yet are skipped). Every action and every
automatic stop or end is in the audit log."""
import json
import logging
import math
import os
import re
import secrets
import socket
import threading
import time

from .protocol import BadInput, normalize_mac

log = logging.getLogger("socketman_server.rollouts")

FAILED = ("rolled back", "failed")
FINAL = ("updated", "rolled back", "failed", "skipped")
MAX_WAVES = 20
LEASE_S = 30
TICK_S = 2.0
SCHEDULER = "(rollout)"     # who the audit log says stopped or finished a rollout
DEFAULTS = {"waves": "1,10%,rest", "threshold": "0", "trial": 300, "margin": 120, "offline_wait": 600}
LIMITS = {"trial": (5, 3600), "margin": (0, 3600), "offline_wait": (0, 7 * 86400)}
_UPDATED_RE = re.compile(r"^updated (\S+) -> (\S+)")


# ---- the plan ----------------------------------------------------------------

def _entries(spec, what):
    parts = [p.strip().lower() for p in str(spec or "").split(",")]
    if not parts or any(not p for p in parts):
        raise BadInput("%s: a comma-separated list, e.g. %s" % (what, DEFAULTS["waves"] if what == "waves" else "0"))
    if len(parts) > MAX_WAVES:
        raise BadInput("%s: at most %d entries" % (what, MAX_WAVES))
    return parts


def _share(part, total, what):
    """'N' -> N; 'P%' -> P % of total; BadInput otherwise. Returns (kind, value)."""
    if part.endswith("%"):
        try:
            p = float(part[:-1])
        except ValueError:
            p = math.nan
        if not 0 <= p <= 100:  # NaN fails this too
            raise BadInput("%s: %r is not a percentage from 0%% to 100%%" % (what, part))
        return "%", p
    try:
        n = int(part)
    except ValueError:
        raise BadInput("%s: %r is neither a number of devices nor a percentage (like 10%%)" % (what, part))
    if n < 0:
        raise BadInput("%s: %r is below 0 devices" % (what, part))
    return "n", n


def plan_waves(n, spec):
    """How many of n devices go in each wave. spec: comma-separated sizes,
    each a count ("1"), a share of all n ("10%", rounded up, at least 1) or
    "rest" (last only). Waves that would be empty are left out; devices
    left after the last entry make one more wave. BadInput for a bad spec.
    plan_waves(10, "1,10%,rest") == [1, 1, 8]."""
    parts = _entries(spec, "waves")
    sizes, left = [], n
    for i, part in enumerate(parts):
        if part == "rest":
            if i != len(parts) - 1:
                raise BadInput("waves: rest comes last")
            size = left
        else:
            kind, v = _share(part, n, "waves")
            if kind == "n" and v == 0 or kind == "%" and v == 0:
                raise BadInput("waves: a wave of no device (%r)" % part)
            size = v if kind == "n" else max(1, math.ceil(n * v / 100))
        size = min(size, left)
        if size:
            sizes.append(size)
        left -= size
    if left:
        sizes.append(left)
    return sizes


def plan_allowed(sizes, spec):
    """How many failures each wave may have: spec is one entry for every
    wave or one per wave entry ("0", "1", "10%": a share of that wave's
    devices, rounded down); a wave past the list takes the last entry.
    A wave whose failures are MORE than this stops the rollout.
    plan_allowed([1, 10, 89], "0,10%") == [0, 1, 8]."""
    parts = _entries(spec, "threshold")
    out = []
    for i, size in enumerate(sizes):
        kind, v = _share(parts[min(i, len(parts) - 1)], size, "threshold")
        out.append(int(v) if kind == "n" else math.floor(size * v / 100 + 1e-9))
    return out


def settings_from(form):
    """The rollout's settings from a form or dict (waves, threshold, trial,
    margin, offline_wait; defaults for what is missing or empty): a dict
    with the specs checked and the times as ints. BadInput otherwise."""
    out = {}
    for k, default in DEFAULTS.items():
        v = form.get(k)
        v = default if v is None or str(v).strip() == "" else v
        if k in LIMITS:
            lo, hi = LIMITS[k]
            try:
                v = int(str(v).strip())
            except ValueError:
                raise BadInput("%s: a whole number of seconds" % k)
            if not lo <= v <= hi:
                raise BadInput("%s: %d to %d seconds" % (k, lo, hi))
        else:
            v = ",".join(p.strip() for p in str(v).split(","))[:200]
        out[k] = v
    plan_allowed(plan_waves(10, out["waves"]), out["threshold"])  # checks both specs
    return out


def order_devices(devs):
    """Devices online now first (the canary should be a device that can
    answer), otherwise in the order given."""
    return [d for d in devs if d.get("online")] + [d for d in devs if not d.get("online")]


def select_devices(store, target, macs=(), version=None):
    """The devices a rollout goes to: target "all" (every device, by name),
    "selected" (the MACs given, in their order: any list, e.g. the result
    of a fleet page filter) or "version" (the devices whose agent says it
    runs `version`). Returns device rows. BadInput for a bad target or MAC,
    or an unknown device."""
    if target == "all":
        return store.devices()
    if target == "version":
        v = (version or "").strip()
        if not v:
            raise BadInput("which version? (target version needs one)")
        return [d for d in store.devices() if (d["version"] or d["agent_version"]) == v]
    if target == "selected":
        order, seen = [], set()
        for m in macs:
            mac = normalize_mac(m)
            if mac not in seen:
                seen.add(mac)
                order.append(mac)
        found = store.devices_by_mac(order)  # a few queries for a thousand MACs, not one each
        for mac in order:
            if mac not in found:
                raise BadInput("no device %s" % mac)
        return [found[mac] for mac in order]
    raise BadInput("target: all, selected or version")


def device_version(d):
    """What a device runs: its CONNECT's version, else its stats' (smv)."""
    return d.get("version") or d.get("agent_version")


def start(store, release, devs, settings, target, operator_name):
    """A new running rollout of `release` (a releases row) to the device
    rows `devs` (select_devices, or any list of device rows), with
    settings_from()'s settings. Devices that already run the release's
    version are left out. Returns (rollout id, how many left out).
    BadInput: no device left, or one is in another open rollout."""
    todo = [d for d in devs if device_version(d) != release["version"]]
    if not todo:
        raise BadInput("no device to update: %s" % ("all %d already run %s" % (len(devs), release["version"])
                                                     if devs else "none selected"))
    todo = order_devices(todo)
    sizes = plan_waves(len(todo), settings["waves"])
    allowed = plan_allowed(sizes, settings["threshold"])
    members, i = [], 0
    for w, size in enumerate(sizes, 1):
        for d in todo[i:i + size]:
            members.append((d["id"], w, device_version(d)))
        i += size
    rid = store.create_rollout(release["id"], members, dict(
        target=target[:200], wave_spec=settings["waves"], threshold_spec=settings["threshold"],
        waves=json.dumps(sizes), allowed=json.dumps(allowed), trial_s=settings["trial"],
        margin_s=settings["margin"], offline_wait_s=settings["offline_wait"], created_by=operator_name or ""))
    return rid, len(devs) - len(todo)


# ---- an operator's actions ------------------------------------------------------

def pause(store, rid):
    return store.set_rollout(rid, ("running",), state="paused")


def resume(store, rid):
    """paused -> running; stopped -> running, accepting the failures of the
    wave it stopped at."""
    r = store.rollout(rid)
    if r is None:
        return False
    if r["state"] == "stopped":
        return store.set_rollout(rid, ("stopped",), at_wave=r["wave"], state="running", accepted_wave=r["wave"],
                                 reason="")
    return store.set_rollout(rid, ("paused",), state="running")


def abort(store, rid, why):
    """Final: devices not sent yet are skipped; those sent still report."""
    if not store.set_rollout(rid, ("running", "paused", "stopped"), state="aborted", reason=why,
                             finished_at=int(time.time())):
        return False
    store.skip_waiting(rid, "the rollout was aborted")
    return True


# ---- what an answer means ----------------------------------------------------------

def outcome(dev, r, now):
    """The outcome of a device that was sent the update (a row of
    Store.rollout_devices, state sent) in rollout r: None while it may
    still answer, else (state, reason, new version)."""
    want = r["version"]
    js = dev["job_state"]
    out = (dev["output"] or "").strip()
    if js == "PROCESSED":
        if dev["success"]:
            m = _UPDATED_RE.match(out)
            if m and m.group(2) != want:
                return "failed", "it says it runs %s, not %s: %s" % (m.group(2), want, out[:300]), m.group(2)
            return "updated", out[:300], m.group(2) if m else want
        if out.startswith("rolled back:"):
            return "rolled back", out[:500], None
        return "failed", out[:500] or "failed without a reason", None
    if js == "REJECTED":
        return "failed", "rejected: %s" % (dev["job_reason"] or "")[:500], None
    if js == "NOT SENT" or dev["job_state"] is None and dev["job_id"]:
        return "failed", "the job is gone or was not sent", None
    deadline = (dev["sent_at"] or now) + r["trial_s"] + r["margin_s"]
    if now < deadline:
        return None
    if dev["device_version"] == want and (dev["version_at"] or 0) >= (dev["sent_at"] or 0):
        # The PROCESSED was lost (the server had no broker then): the
        # device's own CONNECT since says it runs the release.
        return "updated", "no PROCESSED seen; its CONNECT says it runs %s" % want, want
    return "failed", "no answer within %d s (%s)" % (
        r["trial_s"] + r["margin_s"], "delivered" if dev["delivered_at"] else "not even DELIVERED"), None


def update_url(base_url, release):
    """meta.msg of the update job (PROTOCOL 10): the release's URL on this
    server with its SHA-256 as the fragment."""
    return "%s/api/releases/socketman-%s.tar.gz#sha256=%s" % (base_url.rstrip("/"), release["version"],
                                                             release["sha256"])


# ---- the engine ----------------------------------------------------------------------

class Engine:
    """Moves every rollout with work left one step (module docstring).
    store: db.Store; bridge: bridge.Bridge (`connected`, `send(job,
    device)`); base_url: how devices reach this server; owner: this
    process's lease name."""

    def __init__(self, store, bridge, base_url, owner=None, lease_s=LEASE_S):
        self.store, self.bridge, self.base_url = store, bridge, base_url
        self.owner = owner or "%s-%d-%s" % (socket.gethostname()[:40], os.getpid(), secrets.token_hex(3))
        self.lease_s = lease_s

    def tick(self, now=None):
        """One step of every rollout this process may drive. Returns the
        ids it drove."""
        driven = []
        for rid in self.store.rollouts_to_drive():
            now_ = int(time.time()) if now is None else now
            if not self.store.take_lease(rid, self.owner, self.lease_s, now_):
                continue
            try:
                self.drive(rid, now_)
            except Exception:  # noqa: BLE001 - one rollout's trouble must not stop the others
                log.exception("rollout #%d: a step failed; trying again next tick", rid)
            driven.append(rid)
        return driven

    def drive(self, rid, now):
        r = self.store.rollout(rid)
        if r is None:
            return
        rows = self.store.rollout_devices(rid)
        for d in rows:
            if d["state"] != "sent":
                continue
            got = outcome(d, r, now)
            if got and self.store.finish_device(d["id"], d["job_id"], got[0], got[1], got[2], now):
                d["state"], d["reason"] = got[0], got[1]
                log.info("rollout #%d: %s %s: %s", rid, d["mac"], got[0], got[1])
        if r["state"] == "aborted":
            self.store.skip_waiting(rid, "the rollout was aborted")
            return
        if r["state"] not in ("running", "paused"):
            return
        wave = [d for d in rows if d["wave"] == r["wave"]]
        if self._wave_failed(r, wave, now):
            return
        if r["state"] != "running" or not self.bridge.connected:
            return  # without the broker nothing is sent, and who is offline is not known
        if all(d["state"] in FINAL for d in wave):
            if r["wave"] >= len(r["waves"]):
                self._finish(r, rows, now)
                return
            if not self.store.set_rollout(rid, ("running",), at_wave=r["wave"], wave=r["wave"] + 1,
                                          wave_started_at=now):
                return
            r["wave"] += 1
            r["wave_started_at"] = now
            log.info("rollout #%d: wave %d of %d starts", rid, r["wave"], len(r["waves"]))
            wave = [d for d in rows if d["wave"] == r["wave"]]
        self._send(r, wave, now)

    def _wave_failed(self, r, wave, now):
        failed = [d for d in wave if d["state"] in FAILED]
        allowed = r["allowed"][r["wave"] - 1]
        if r["wave"] <= r["accepted_wave"] or len(failed) <= allowed:
            return False
        why = "wave %d of %d: %d of its %d devices failed, more than the %d allowed (%s)" % (
            r["wave"], len(r["waves"]), len(failed), len(wave), allowed,
            "; ".join("%s: %s" % (d["mac"], d["reason"][:120]) for d in failed[:3]))
        if self.store.set_rollout(r["id"], ("running", "paused"), at_wave=r["wave"], state="stopped", reason=why):
            log.warning("rollout #%d stopped: %s", r["id"], why)
            self.store.audit(SCHEDULER, "rollout.stop", "#%d" % r["id"], "stopped", why)
        return True

    def _finish(self, r, rows, now):
        counts = {}
        for d in rows:
            counts[d["state"]] = counts.get(d["state"], 0) + 1
        why = ", ".join("%d %s" % (n, s) for s, n in sorted(counts.items()))
        if self.store.set_rollout(r["id"], ("running",), at_wave=r["wave"], state="done", reason=why, finished_at=now):
            log.info("rollout #%d done: %s", r["id"], why)
            self.store.audit(SCHEDULER, "rollout.done", "#%d" % r["id"], "done", "%s to %s" % (r["version"], why))

    def _send(self, r, wave, now):
        msg = update_url(self.base_url, r)
        started = r["wave_started_at"] or now
        for d in wave:
            if d["state"] != "waiting":
                continue
            if not d["online"]:
                if now - started >= r["offline_wait_s"]:
                    why = "offline: not online within %d s of its wave's start" % r["offline_wait_s"]
                    if self.store.finish_device(d["id"], None, "failed", why, now=now, from_states=("waiting",)):
                        d["state"], d["reason"] = "failed", why
                continue
            job = self.store.send_update(d["id"], r["id"], d["device_id"], msg, now)
            if job is None:
                return  # paused or aborted meanwhile
            try:
                why = self.bridge.send(job, d)
            except BadInput as e:
                why = str(e)
            if why:
                self.store.update_not_sent(d["id"], job["id"], why)
                continue
            d["state"] = "sent"
            log.info("rollout #%d: sent %s to %s (wave %d)", r["id"], r["version"], d["mac"], r["wave"])


class Scheduler:
    """The thread that calls Engine.tick() every tick_s seconds in a serving
    process; stop() lets go of its leases so another process (or this one
    restarted) takes over at once."""

    def __init__(self, engine, tick_s=TICK_S):
        self.engine, self.tick_s = engine, tick_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rollouts", daemon=True)

    def start(self):
        self._thread.start()

    def _run(self):
        while not self._stop.wait(self.tick_s):
            try:
                self.engine.tick()
            except Exception:  # noqa: BLE001 - a database hiccup: try again next tick
                log.exception("the rollout scheduler's tick failed")

    def stop(self):
        self._stop.set()
        self._thread.join(30)
        try:
            self.engine.store.drop_leases(self.engine.owner)
        except Exception:  # noqa: BLE001 - stopping anyway; the lease runs out by itself
            log.exception("could not let go of the rollout leases")
