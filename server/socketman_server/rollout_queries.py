"""Releases, rollouts and their devices in the database: the part of db.Store
(a mixin on its `engine`) that issue 23 added. Policy (waves, thresholds,
what a job's answer means, who drives a rollout) is in rollouts.py; these
are the reads and writes. Every write that races with another server
process or an operator's click is conditional (on a state, a wave, a job
id) and says whether it took effect."""
import json
import secrets

import sqlalchemy as sa

from .protocol import BadInput
from .rows import now as _now
from .rows import row as _row
from .rows import text as _text
from .schema import devices, jobs, releases, rollout_devices, rollouts

OPEN = ("running", "paused", "stopped")   # a rollout that may still send (stopped: when resumed)


class RolloutQueries:
    """Mixed into db.Store: needs self.engine."""

    # ---- releases ------------------------------------------------------------

    def add_release(self, info, filename, uploaded_by):
        """A new release from releases.inspect()'s info. BadInput when that
        version is there already. Returns the row."""
        with self.engine.begin() as c:
            old = _row(c.execute(sa.select(releases).where(releases.c.version == info["version"])).first())
            if old is not None:
                raise BadInput("release %s exists already (%s, uploaded by %s)%s" % (
                    info["version"], old["filename"] or "?", old["uploaded_by"] or "?",
                    ": the same archive" if old["sha256"] == info["sha256"] else ""))
            try:
                with c.begin_nested():
                    c.execute(sa.insert(releases).values(
                        version=info["version"], sha256=info["sha256"], size=info["size"], form=info["form"],
                        files=info["files"], filename=_text(filename, 200), uploaded_by=_text(uploaded_by, 64),
                        uploaded_at=_now()))
            except sa.exc.IntegrityError:
                raise BadInput("release %s exists already" % info["version"])  # another process, same moment
            return _row(c.execute(sa.select(releases).where(releases.c.version == info["version"])).first())

    def release(self, version):
        with self.engine.connect() as c:
            return _row(c.execute(sa.select(releases).where(releases.c.version == str(version)[:50])).first())

    def release_by_id(self, release_id):
        with self.engine.connect() as c:
            return _row(c.execute(sa.select(releases).where(releases.c.id == release_id)).first())

    def releases(self):
        """Every release, newest first, with `rollouts` (how many used it)."""
        n = (sa.select(sa.func.count()).where(rollouts.c.release_id == releases.c.id)
             .correlate(releases).scalar_subquery())
        with self.engine.connect() as c:
            rows = c.execute(sa.select(releases, n.label("rollouts")).order_by(releases.c.id.desc())).all()
        return [_row(r) for r in rows]

    # ---- rollouts ------------------------------------------------------------

    def busy_devices(self, device_ids):
        """{device_id: rollout id} of these devices that are in an open
        rollout (running, paused or stopped)."""
        ids = list(device_ids)
        out = {}
        with self.engine.connect() as c:
            for i in range(0, len(ids), 500):
                rows = c.execute(sa.select(rollout_devices.c.device_id, rollouts.c.id)
                                 .join(rollouts, rollouts.c.id == rollout_devices.c.rollout_id)
                                 .where(rollouts.c.state.in_(OPEN),
                                        rollout_devices.c.device_id.in_(ids[i:i + 500]))).all()
                out.update({d: r for d, r in rows})
        return out

    def create_rollout(self, release_id, members, values):
        """A new rollout (state running, wave 1) of a release: members is
        [(device_id, wave, old_version)] in order; values the rollouts
        columns the plan decided (target, wave_spec, threshold_spec, waves,
        allowed, trial_s, margin_s, offline_wait_s, created_by). BadInput
        when a device is in another open rollout. Returns the id."""
        now = _now()
        busy = self.busy_devices(d for d, _, _ in members)
        if busy:
            raise BadInput("%d of these devices are in an open rollout (#%s): finish or abort it first" % (
                len(busy), ", #".join(str(r) for r in sorted(set(busy.values())))))
        with self.engine.begin() as c:
            rid = c.execute(sa.insert(rollouts).values(
                release_id=release_id, created_at=now, state="running", reason="", wave=1, wave_started_at=now,
                accepted_wave=0, updated_at=now, **values)).inserted_primary_key[0]
            c.execute(sa.insert(rollout_devices), [
                dict(rollout_id=rid, device_id=d, wave=w, position=i, state="waiting",
                     old_version=_text(v, 50) or None, reason="") for i, (d, w, v) in enumerate(members, 1)])
        return rid

    def _rollout_select(self):
        return (sa.select(rollouts, releases.c.version, releases.c.sha256, releases.c.size)
                .join(releases, releases.c.id == rollouts.c.release_id))

    def rollout(self, rid):
        """A rollout row with its release's version, sha256 and size, or None."""
        with self.engine.connect() as c:
            r = _row(c.execute(self._rollout_select().where(rollouts.c.id == rid)).first())
        if r:
            r["waves"], r["allowed"] = json.loads(r["waves"]), json.loads(r["allowed"])
        return r

    def rollouts(self, limit=50):
        """Recent rollouts, newest first, each with `counts` {device state: n}."""
        with self.engine.connect() as c:
            rows = [_row(r) for r in c.execute(self._rollout_select().order_by(rollouts.c.id.desc())
                                               .limit(limit)).all()]
            for r in rows:
                r["waves"], r["allowed"] = json.loads(r["waves"]), json.loads(r["allowed"])
                r["counts"] = dict(c.execute(sa.select(rollout_devices.c.state, sa.func.count())
                                             .where(rollout_devices.c.rollout_id == r["id"])
                                             .group_by(rollout_devices.c.state)).all())
        return rows

    def rollout_devices(self, rid):
        """The rollout's devices in order: the rollout_devices row plus the
        device's mac, name, online, base, last_seen, version, version_at
        and its update job's job_state, delivered_at, job_finished_at,
        success, output and job_reason (None before it is sent)."""
        q = (sa.select(rollout_devices, devices.c.mac, devices.c.name, devices.c.online, devices.c.base,
                       devices.c.last_seen, devices.c.version.label("device_version"), devices.c.version_at,
                       jobs.c.state.label("job_state"), jobs.c.delivered_at,
                       jobs.c.finished_at.label("job_finished_at"), jobs.c.success, jobs.c.output,
                       jobs.c.reason.label("job_reason"))
             .join(devices, devices.c.id == rollout_devices.c.device_id)
             .outerjoin(jobs, jobs.c.job_id == rollout_devices.c.job_id)
             .where(rollout_devices.c.rollout_id == rid).order_by(rollout_devices.c.position))
        with self.engine.connect() as c:
            return [_row(r) for r in c.execute(q).all()]

    def set_rollout(self, rid, states, at_wave=None, **values):
        """Change a rollout's columns (values) only while its state is one
        of `states` (and its wave is at_wave, when given). Returns whether
        it did."""
        cond = [rollouts.c.id == rid, rollouts.c.state.in_(states)]
        if at_wave is not None:
            cond.append(rollouts.c.wave == at_wave)
        values.setdefault("updated_at", _now())
        if "reason" in values:
            values["reason"] = _text(values["reason"], 4000)
        with self.engine.begin() as c:
            return c.execute(sa.update(rollouts).where(*cond).values(**values)).rowcount == 1

    def skip_waiting(self, rid, reason):
        """Every device of the rollout still waiting becomes skipped."""
        with self.engine.begin() as c:
            return c.execute(sa.update(rollout_devices)
                             .where(rollout_devices.c.rollout_id == rid, rollout_devices.c.state == "waiting")
                             .values(state="skipped", reason=_text(reason, 1000), finished_at=_now())).rowcount

    # ---- the scheduler's side --------------------------------------------------

    def rollouts_to_drive(self):
        """Ids of rollouts with something left to do: open ones, and closed
        ones whose sent devices have not answered yet."""
        pending = sa.select(rollout_devices.c.rollout_id).where(rollout_devices.c.state == "sent").distinct()
        with self.engine.connect() as c:
            return [r[0] for r in c.execute(sa.select(rollouts.c.id).where(
                sa.or_(rollouts.c.state.in_(OPEN), rollouts.c.id.in_(pending))).order_by(rollouts.c.id)).all()]

    def take_lease(self, rid, owner, ttl_s, now=None):
        """Become (or stay) the one server process that drives this rollout
        for ttl_s seconds: only when nobody holds it, we do, or the holder's
        lease ran out (it died). One UPDATE, so two processes cannot both
        win. Returns whether we hold it."""
        now = _now() if now is None else now
        with self.engine.begin() as c:
            return c.execute(sa.update(rollouts).where(
                rollouts.c.id == rid,
                sa.or_(rollouts.c.lease_owner.is_(None), rollouts.c.lease_owner == owner,
                       rollouts.c.lease_until < now))
                .values(lease_owner=owner, lease_until=now + ttl_s)).rowcount == 1

    def drop_leases(self, owner):
        """A server that stops lets others take its rollouts at once."""
        with self.engine.begin() as c:
            c.execute(sa.update(rollouts).where(rollouts.c.lease_owner == owner)
                      .values(lease_owner=None, lease_until=None))

    def send_update(self, rd_id, rid, device_id, msg, now=None):
        """Mark a waiting device of a running rollout sent, with a new update
        job (jobs row, type "update", state SENT, no fleet job) carrying
        `msg`. Returns the job row, or None when the device is no longer
        waiting or the rollout no longer running (an operator's pause or
        abort in between)."""
        now = _now() if now is None else now
        jid = "upd-" + secrets.token_hex(8)
        running = sa.select(rollouts.c.id).where(rollouts.c.id == rid, rollouts.c.state == "running")
        with self.engine.begin() as c:
            n = c.execute(sa.update(rollout_devices).where(
                rollout_devices.c.id == rd_id, rollout_devices.c.state == "waiting",
                rollout_devices.c.rollout_id.in_(running))
                .values(state="sent", job_id=jid, sent_at=now, reason="")).rowcount
            if n != 1:
                return None
            c.execute(sa.insert(jobs).values(job_id=jid, device_id=device_id, command=msg, type="update",
                                             created_at=now, state="SENT"))
            return _row(c.execute(sa.select(jobs).where(jobs.c.job_id == jid)).first())

    def update_not_sent(self, rd_id, job_row_id, why):
        """The job could not be published: it is NOT SENT, and the device
        waits again (it is tried again while its wave lasts)."""
        now = _now()
        with self.engine.begin() as c:
            c.execute(sa.update(jobs).where(jobs.c.id == job_row_id)
                      .values(state="NOT SENT", reason=_text(why, 1000), finished_at=now))
            c.execute(sa.update(rollout_devices).where(rollout_devices.c.id == rd_id, rollout_devices.c.state == "sent")
                      .values(state="waiting", job_id=None, sent_at=None, reason=_text("not sent: " + why, 1000)))

    def finish_device(self, rd_id, job_id, state, reason, new_version=None, now=None, from_states=("sent",)):
        """A device's outcome (updated, rolled back, failed), only while it
        is still in `from_states` with this job id (None: any). Returns
        whether it was recorded."""
        cond = [rollout_devices.c.id == rd_id, rollout_devices.c.state.in_(from_states)]
        if job_id is not None:
            cond.append(rollout_devices.c.job_id == job_id)
        values = dict(state=state, reason=_text(reason, 2000), finished_at=_now() if now is None else now)
        if new_version:
            values["new_version"] = _text(new_version, 50)
        with self.engine.begin() as c:
            return c.execute(sa.update(rollout_devices).where(*cond).values(**values)).rowcount == 1
