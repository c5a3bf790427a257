"""The one database layer: every query the server makes, on the tables of
schema.py. SQLite (one file, created on start) by default, PostgreSQL by
changing the URL; the schema is created and migrated by Alembic on start
(migrations/). Device, stats and job queries are here; operators, sessions,
API tokens and the audit log are in accounts.py, releases and rollouts in
rollout_queries.py, tunnels in tunnel_records.py (parts of Store)."""
import json
import logging
import os
import secrets
import time

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.dialects import postgresql, sqlite

from .accounts import AccountQueries
from .fleet_queries import LISTED, FleetQueries
from .protocol import BadInput, check_device_overrides, normalize_mac
from .rollout_queries import RolloutQueries
from .schema import devices, events, fleet_jobs, jobs, metadata, rollout_devices, samples, tunnels
from .tunnel_records import TunnelQueries

__all__ = ["Store", "metadata", "engine_for", "migrate", "MIGRATIONS"]

MIGRATIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")
# Any device clock before this is "not set yet" (a router without RTC before NTP).
CLOCK_SET = 1704067200  # 2024-01-01
WILL_SLACK_S = 5  # s: how much older than its own online "1" a session's will can be stamped
MAX_OUTPUT_CHARS = 1024 * 1024
MIGRATION_LOCK = 0x536F636B  # a PostgreSQL advisory lock id: one migrator at a time
PRUNE_CHUNK = 200          # devices per DELETE of their old samples
log = logging.getLogger("socketman_server.db")
# What an MQTT event needs of its device: not the whole row (last_doc is
# kilobytes, read for nothing thousands of times a minute).
SEEN = (devices.c.id, devices.c.mac, devices.c.mac_written, devices.c.base, devices.c.first_seen,
        devices.c.last_seen, devices.c.online, devices.c.online_ts, devices.c.version, devices.c.version_at)


def engine_for(url, pool_size=8):
    """An Engine for a database URL. 'sqlite:///PATH' makes the file's folder;
    SQLite waits up to 30 s for a lock (the MQTT thread and web threads write
    at once); PostgreSQL URLs ('postgresql://...') use psycopg 3, with a
    pool that keeps `pool_size` connections (a PostgreSQL connection is a
    process: opening one per request would cost more than the request)."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    u = sa.engine.make_url(url)
    kw = {"future": True}
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(u.database)), exist_ok=True)
        kw["connect_args"] = {"timeout": 30, "check_same_thread": False}
    else:
        # No ping before each use (pool_pre_ping: a SELECT 1 and a ROLLBACK,
        # two round trips for every query of a page): a connection broken by
        # a database restart fails one query, and SQLAlchemy then drops every
        # pooled connection; recycled after 30 min in any case.
        kw.update(pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800, pool_timeout=30)
    return sa.create_engine(u, **kw)


def migrate(engine):
    """Create or upgrade the schema to the newest migration (Alembic). On
    PostgreSQL an advisory lock makes several servers starting at once take
    turns."""
    cfg = Config()
    cfg.set_main_option("script_location", MIGRATIONS)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK)))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def _now():
    return int(time.time())


def _row(r):
    return dict(r._mapping) if r is not None else None


class Store(AccountQueries, FleetQueries, RolloutQueries, TunnelQueries):
    """Every read and write of the server. Thread-safe (one Engine, one
    connection per call). Times are Unix seconds; MACs are normalized.
    retention_s: samples and events; audit_retention_s: the audit log."""

    def __init__(self, url, retention_s=48 * 3600, audit_retention_s=365 * 86400, pool_size=8):
        self.engine = engine_for(url, pool_size)
        self.retention_s = retention_s
        self.audit_retention_s = audit_retention_s
        migrate(self.engine)

    def close(self):
        self.engine.dispose()

    # ---- devices -------------------------------------------------------

    def device(self, mac):
        """The device row (dict) for a MAC in any accepted form, or None."""
        try:
            mac = normalize_mac(mac)
        except BadInput:
            return None
        with self.engine.connect() as c:
            return _row(c.execute(sa.select(devices).where(devices.c.mac == mac)).first())

    def device_by_id(self, device_id):
        with self.engine.connect() as c:
            return _row(c.execute(sa.select(devices).where(devices.c.id == device_id)).first())

    def device_by_token(self, token):
        """The admitted device whose token this is, or None."""
        if not token:
            return None
        with self.engine.connect() as c:
            return _row(c.execute(sa.select(devices).where(devices.c.token == token)).first())

    def devices(self):
        """Every device, by name then MAC, without its latest stats document
        and its own config keys (LISTED columns)."""
        with self.engine.connect() as c:
            rows = c.execute(sa.select(*LISTED).order_by(devices.c.name, devices.c.mac)).all()
        return [_row(r) for r in rows]

    def device_bases(self):
        """Every device's MQTT base ('<topic>/<key>/<mac>' as last heard on
        MQTT), those never heard on MQTT left out."""
        with self.engine.connect() as c:
            return [r[0] for r in c.execute(sa.select(devices.c.base).where(devices.c.base.is_not(None))
                                            .order_by(devices.c.id))]

    def devices_by_mac(self, macs):
        """{normalized MAC: device row (LISTED columns)} of those of `macs`
        (normalized already) that exist, in a few queries whatever their
        number."""
        macs = list(macs)
        out = {}
        with self.engine.connect() as c:
            for i in range(0, len(macs), 500):
                for r in c.execute(sa.select(*LISTED).where(devices.c.mac.in_(macs[i:i + 500]))).all():
                    out[r.mac] = _row(r)
        return out

    def admit(self, mac, name="", config=None):
        """Admit a device by MAC (provisioning, before it first calls): gives
        it a token if it has none. config: a dict of config keys for this
        device alone (protocol.check_device_overrides), None keeps what it
        has. Returns the row. BadInput for a bad MAC or config."""
        norm = normalize_mac(mac)
        now = _now()
        name = (name or "").replace("\x00", "")  # PostgreSQL refuses NUL in text
        if config is not None:
            config = json.dumps(check_device_overrides(config))
        with self.engine.begin() as c:
            row = _row(c.execute(sa.select(devices).where(devices.c.mac == norm)).first())
            if row is None:
                c.execute(sa.insert(devices).values(mac=norm, name=(name or "")[:200], token=secrets.token_hex(16),
                                                    admitted_at=now, config_json=config))
            else:
                values = {}
                if not row["token"]:
                    values.update(token=secrets.token_hex(16), admitted_at=now)
                if name:
                    values["name"] = name[:200]
                if config is not None:
                    values["config_json"] = config
                if values:
                    c.execute(sa.update(devices).where(devices.c.id == row["id"]).values(**values))
            return _row(c.execute(sa.select(devices).where(devices.c.mac == norm)).first())

    def rename(self, mac, name):
        with self.engine.begin() as c:
            c.execute(sa.update(devices).where(devices.c.mac == normalize_mac(mac))
                      .values(name=name.replace("\x00", "")[:200]))

    def forget(self, mac):
        """Remove a device and everything recorded about it."""
        norm = normalize_mac(mac)
        with self.engine.begin() as c:
            row = _row(c.execute(sa.select(devices.c.id).where(devices.c.mac == norm)).first())
            if row is None:
                return False
            for t in (samples, jobs, events, rollout_devices, tunnels):
                c.execute(sa.delete(t).where(t.c.device_id == row["id"]))
            c.execute(sa.delete(devices).where(devices.c.id == row["id"]))
            return True

    def mark_provisioned(self, device_id, mac_written):
        with self.engine.begin() as c:
            c.execute(sa.update(devices).where(devices.c.id == device_id)
                      .values(provisioned_at=_now(), mac_written=mac_written))

    def _seen(self, c, mac_written, now, base=None, when=None):
        """The row (SEEN columns) of the device that wrote this MAC, made if
        new (a device the broker let in is part of the fleet even before it
        is admitted), with its MAC as written, its base and `last_seen` (when
        `when` is later) brought up to date in at most one UPDATE."""
        norm = normalize_mac(mac_written)
        row = _row(c.execute(sa.select(*SEEN).where(devices.c.mac == norm)).first())
        if row is None:
            # last_seen is set below: a retained message is old news.
            # Another server process (or thread) may insert the same new
            # device at the same moment: then its row is the one to use.
            try:
                with c.begin_nested():
                    c.execute(sa.insert(devices).values(mac=norm, mac_written=mac_written, first_seen=now,
                                                        base=base))
            except sa.exc.IntegrityError:
                pass
            row = _row(c.execute(sa.select(*SEEN).where(devices.c.mac == norm)).first())
        values = {}
        if row["mac_written"] != mac_written:
            values["mac_written"] = mac_written
        if row["first_seen"] is None:
            values["first_seen"] = now
        if base and row["base"] != base:
            values["base"] = base
        if when and (row["last_seen"] or 0) < when:
            values["last_seen"] = when
        if values:
            c.execute(sa.update(devices).where(devices.c.id == row["id"]).values(**values))
            row.update(values)
        return row

    def _event(self, c, device_id, when, kind, detail=""):
        c.execute(sa.insert(events).values(device_id=device_id, ts=when, kind=kind, detail=detail[:2000]))

    # ---- MQTT events (PROTOCOL 4, 6) -----------------------------------

    def record_events(self, items):
        """Record MQTT events in one transaction (the bridge hands them over
        in batches: one commit for many messages). items: [(topic kind
        "status" | "delivery" | "pub", base, MAC as written, event dict,
        retained)]. When the batch fails as a whole, each is tried again in
        a transaction of its own, so one bad message costs only itself.
        Returns [(item, exception)] of those that still failed."""
        now = _now()
        try:
            with self.engine.begin() as c:
                for item in items:
                    self._record(c, now, *item)
            return []
        except Exception as e:  # noqa: BLE001 - retried one by one below
            if len(items) == 1:
                return [(items[0], e)]
        failed = []
        for item in items:
            try:
                with self.engine.begin() as c:
                    self._record(c, _now(), *item)
            except Exception as e:  # noqa: BLE001 - reported to the caller, which logs it
                failed.append((item, e))
        return failed

    def _record(self, c, now, kind, base, mac_written, event, retained=False):
        if kind == "status":
            self._status_event(c, now, base, mac_written, event, retained)
        else:
            return self._job_event(c, now, base, mac_written, event)

    def status_event(self, base, mac_written, event, retained=False):
        """CONNECT / PING / CONFIG_CHANGED on status/<base> (one transaction;
        the bridge uses record_events)."""
        with self.engine.begin() as c:
            self._status_event(c, _now(), base, mac_written, event, retained)

    def _status_event(self, c, now, base, mac_written, event, retained):
        """A retained message is an old one the broker kept: its own
        timestamp (not now) is when the device was last heard of. A CONNECT
        older (by the device's own clock) than the one that set the
        device's state is not applied: the broker publishes the will of a
        session it noticed late (a half-open connection taken over by the
        device's new one) after the new session's online "1", and another
        server process sharing the subscription may record a newer event
        first. Within one second they count in the order they come: a
        session's will after its own online "1" (both stamped when it
        connected) leaves it offline, and a new session's "1" after the
        clean "0" of the one before (an update's switch, a quick restart)
        leaves it online with its new version. A device clock that is not
        set, or is ahead of ours, is not believed: such events count in the
        order they come. An offline CONNECT up to WILL_SLACK_S older than
        the state's counts: a session's will carries the time it connected,
        its online "1" the time the broker answered."""
        ts = event.get("timestamp")
        ts = int(ts) if isinstance(ts, int) and not isinstance(ts, bool) and CLOCK_SET < ts <= now + 300 else None
        when = now
        if retained:
            when = min(ts, now) if ts else None
        kind = event["event_type"]
        meta = event.get("meta") or {}
        row = self._seen(c, mac_written, now, base, when)
        if kind == "CONNECT":
            online = str(meta.get("online")) == "1"
            last = row["online_ts"]
            # A will is stamped when its session connected, its own "1"
            # after the CONNACK: up to WILL_SLACK_S older, it is that session's.
            if ts and last and ts < last - (0 if online else WILL_SLACK_S):
                return  # an older CONNECT than the one the state comes from
            values = {}
            if ts != last:
                values["online_ts"] = ts
            version = meta.get("version")
            if online and isinstance(version, str) and version.strip():
                # PROTOCOL 10: the running version, in every CONNECT.
                version = _cut(version.strip().replace("\x00", ""), 50)
                if row["version"] != version or not row["version_at"]:
                    values.update(version=version, version_at=when or now)
                    if row["version"] and row["version"] != version:
                        self._event(c, row["id"], now, "version", "%s -> %s" % (row["version"], version))
            if row["online"] != online:
                values.update(online=online, online_changed_at=when or now)
                self._event(c, row["id"], now, "online" if online else "offline", "retained" if retained else "")
            if values:
                c.execute(sa.update(devices).where(devices.c.id == row["id"]).values(**values))
        elif kind == "CONFIG_CHANGED":
            files = meta.get("files")
            self._event(c, row["id"], now, "config changed",
                        ", ".join(str(f) for f in files) if isinstance(files, list) else "")

    def job_event(self, base, mac_written, event):
        """DELIVERED (delivery/<base>) or PROCESSED / REJECTED (pub/<base>)
        for a job this server sent (one transaction; the bridge uses
        record_events); events for other ids are only a sign of life.
        Returns {"job_id", "state"...} of what was written, or None."""
        with self.engine.begin() as c:
            return self._job_event(c, _now(), base, mac_written, event)

    def _job_event(self, c, now, base, mac_written, event):
        kind = event["event_type"]
        meta = event.get("meta") or {}
        job_id = event.get("id")
        row = self._seen(c, mac_written, now, base, now)
        if not isinstance(job_id, str):
            if kind == "REJECTED":
                self._event(c, row["id"], now, "rejected", str(meta.get("reason", ""))[:500])
            return None
        if kind == "DELIVERED":
            # A late DELIVERED (a broker's redelivery) does not undo a result.
            values = dict(delivered_at=now, state=sa.case((jobs.c.state == "SENT", "DELIVERED"),
                                                          else_=jobs.c.state))
        elif kind == "PROCESSED":
            values = dict(state="PROCESSED", finished_at=now, via="mqtt", success=bool(meta.get("success")),
                          exit_code=_int_or_none(meta.get("exit_code"), 31),
                          duration_ms=_int_or_none(meta.get("duration_ms"), 31), output=_text(meta.get("msg")))
        elif kind == "REJECTED":
            values = dict(state="REJECTED", finished_at=now, reason=_text(meta.get("reason")))
        else:
            return None
        # One UPDATE, no read first: only this device's job of that id.
        n = c.execute(sa.update(jobs).where(jobs.c.job_id == job_id, jobs.c.device_id == row["id"])
                      .values(**values)).rowcount
        if not n:
            return None
        if kind == "DELIVERED":
            values["state"] = "DELIVERED"
        return dict(values, job_id=job_id)

    # ---- HTTP from devices (PROTOCOL 4.1 rest, 5) ----------------------

    def job_result(self, device_id, job_id, success, output, exit_code):
        """PATCH /operations/<id>: True when the job is this device's."""
        now = _now()
        with self.engine.begin() as c:
            r = c.execute(sa.update(jobs).where(jobs.c.job_id == job_id, jobs.c.device_id == device_id)
                          .values(state="PROCESSED", finished_at=now, via="rest", success=success,
                                  output=_text(output), exit_code=exit_code))
            if r.rowcount:
                c.execute(sa.update(devices).where(devices.c.id == device_id).values(last_seen=now))
            return r.rowcount > 0

    def ping(self, device_id):
        with self.engine.begin() as c:
            c.execute(sa.update(devices).where(devices.c.id == device_id).values(last_seen=_now()))

    def boot(self, device_id):
        now = _now()
        with self.engine.begin() as c:
            c.execute(sa.update(devices).where(devices.c.id == device_id).values(last_seen=now, boot_at=now))
            self._event(c, device_id, now, "boot")

    def _insert_new(self, table):
        """INSERT that skips rows a unique index already has (ON CONFLICT DO
        NOTHING, on PostgreSQL and SQLite alike)."""
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(table).on_conflict_do_nothing()

    def store_stats(self, device_id, docs, mac_written):
        """A batch of stats documents (PROTOCOL 7), all or none: one sample
        each for the charts, the newest one kept whole for the device page.
        A document's created_at is its time unless the device clock was not
        set or is ahead (then: now). A document stored already (same
        created_at and device.seq: an upload sent again after its answer was
        lost, to this process or another) is not stored again. Returns how
        many were new."""
        now = _now()
        rows = []
        for d in docs:
            dev = d["device"]
            ts = dev.get("created_at")
            ts = int(ts) if isinstance(ts, (int, float)) and CLOCK_SET < ts <= now + 300 else now
            rows.append(dict(device_id=device_id, ts=ts, load_1=dev.get("load_1"),
                             total_ram=_int_or_none(dev.get("total_ram")),
                             free_ram=_int_or_none(dev.get("free_ram")),
                             rx_bytes=_int_or_none(dev.get("rx_bytes")),
                             tx_bytes=_int_or_none(dev.get("tx_bytes")),
                             stations=_int_or_none(dev.get("connected"), 31),
                             status=_int_or_none(dev.get("status"), 31),
                             seq=_int_or_none(dev.get("seq"), 31), received_at=now))
        if not rows:
            return 0
        newest = max(range(len(docs)), key=lambda i: rows[i]["ts"])
        d = docs[newest]
        dev = d["device"]
        summary = dict(last_seen=now, last_doc=json.dumps(d), last_doc_at=rows[newest]["ts"], mac_written=mac_written,
                       model=_cut(dev.get("machine_type"), 200), firmware=_cut(dev.get("firmware"), 200),
                       agent_version=_cut(dev.get("smv"), 50), wan_ip=_cut(dev.get("wan_ip"), 64),
                       stations=rows[newest]["stations"], status=rows[newest]["status"])
        with self.engine.begin() as c:
            row = _row(c.execute(sa.select(devices.c.first_seen, devices.c.last_doc_at)
                                 .where(devices.c.id == device_id)).first())
            stored = [(r.ts, r.seq) for r in c.execute(
                self._insert_new(samples).returning(samples.c.ts, samples.c.seq), rows)]
            if row["first_seen"] is None:
                summary["first_seen"] = now
            if row["last_doc_at"] and row["last_doc_at"] >= summary["last_doc_at"]:
                # An older batch arriving late (a spool catching up), or this
                # one again, keeps the newer summary.
                for k in ("last_doc", "last_doc_at", "model", "firmware", "agent_version", "wan_ip", "stations",
                          "status"):
                    summary.pop(k)
            c.execute(sa.update(devices).where(devices.c.id == device_id).values(**summary))
            new = set(stored)
            for r, d in zip(rows, docs):
                if (r["ts"], r["seq"]) not in new:
                    continue  # stored before: its events were recorded then
                for k in ("dropped", "rejected"):
                    if d["device"].get(k):
                        self._event(c, device_id, now, "stats %s" % k, "%s lines" % d["device"][k])
        return len(stored)

    def prune(self, before):
        """Forget samples and events older than `before` (Unix seconds), and
        what the accounts keep past their own times (accounts.py). Samples
        go device by device, in chunks, through their (device_id, ts, seq)
        index: no scan of the whole table, whatever its size. Returns how
        many samples and events went."""
        gone = 0
        with self.engine.connect() as c:
            ids = [r[0] for r in c.execute(sa.select(devices.c.id).order_by(devices.c.id)).all()]
        for i in range(0, len(ids), PRUNE_CHUNK):
            with self.engine.begin() as c:
                gone += c.execute(sa.delete(samples).where(samples.c.device_id.in_(ids[i:i + PRUNE_CHUNK]),
                                                           samples.c.ts < before)).rowcount
        with self.engine.begin() as c:
            gone += c.execute(sa.delete(events).where(events.c.ts < before)).rowcount
        self.prune_accounts()
        return gone

    def samples(self, device_id, since):
        """[(ts, load_1, total_ram, free_ram, rx_bytes, tx_bytes, stations, status)] from `since`, oldest first."""
        with self.engine.connect() as c:
            rows = c.execute(sa.select(samples.c.ts, samples.c.load_1, samples.c.total_ram, samples.c.free_ram,
                                       samples.c.rx_bytes, samples.c.tx_bytes, samples.c.stations,
                                       samples.c.status)
                             .where(samples.c.device_id == device_id, samples.c.ts >= since)
                             .order_by(samples.c.ts, samples.c.id)).all()
        return [tuple(r) for r in rows]

    def events(self, device_id, limit=20):
        with self.engine.connect() as c:
            rows = c.execute(sa.select(events).where(events.c.device_id == device_id)
                             .order_by(events.c.id.desc()).limit(limit)).all()
        return [_row(r) for r in rows]

    # ---- jobs ----------------------------------------------------------

    def create_jobs(self, device_ids, command_text, job_type, target, created_by=None):
        """One fleet job and one job per device (each with its own random wire
        id, so a reset database never reuses an id a device remembers), in
        one INSERT of many rows. created_by: the operator's name. Returns
        (fleet_job_id, [job rows] in the order of device_ids)."""
        now = _now()
        with self.engine.begin() as c:
            fid = c.execute(sa.insert(fleet_jobs).values(created_at=now, command=command_text, type=job_type,
                                                         target=target, created_by=created_by)
                            ).inserted_primary_key[0]
            rows = [dict(job_id="j-" + secrets.token_hex(8), fleet_job_id=fid, device_id=did, command=command_text,
                         type=job_type, created_at=now, state="SENT") for did in device_ids]
            if rows:
                c.execute(sa.insert(jobs), rows)
            made = {r.job_id: _row(r) for r in c.execute(sa.select(jobs).where(jobs.c.fleet_job_id == fid)).all()}
        return fid, [made[r["job_id"]] for r in rows]

    def fleet_job(self, fid):
        """(fleet job row, [job row + device mac/name]) or (None, [])."""
        with self.engine.connect() as c:
            f = _row(c.execute(sa.select(fleet_jobs).where(fleet_jobs.c.id == fid)).first())
            if f is None:
                return None, []
            rows = c.execute(sa.select(jobs, devices.c.mac, devices.c.name)
                             .join(devices, devices.c.id == jobs.c.device_id)
                             .where(jobs.c.fleet_job_id == fid).order_by(devices.c.name, devices.c.mac)).all()
        return f, [_row(r) for r in rows]

    def fleet_job_page(self, fid, state=None, page=1, size=100):
        """A fleet job's results a page at a time: (fleet job row or None,
        {state: n} over all its jobs, [job row + device mac/name] of the
        page, in state then name order, only `state` when given, the page
        clamped to the last one, how many pages)."""
        with self.engine.connect() as c:
            f = _row(c.execute(sa.select(fleet_jobs).where(fleet_jobs.c.id == fid)).first())
            if f is None:
                return None, {}, [], 1, 1
            summary = dict(c.execute(sa.select(jobs.c.state, sa.func.count()).where(jobs.c.fleet_job_id == fid)
                                     .group_by(jobs.c.state)).all())
            n = summary.get(state, 0) if state else sum(summary.values())
            pages = max(1, -(-n // size))
            page = min(max(1, page), pages)
            q = (sa.select(jobs, devices.c.mac, devices.c.name).join(devices, devices.c.id == jobs.c.device_id)
                 .where(jobs.c.fleet_job_id == fid))
            if state:
                q = q.where(jobs.c.state == state)
            rows = c.execute(q.order_by(jobs.c.state, devices.c.name, devices.c.mac)
                             .limit(size).offset((page - 1) * size)).all()
        return f, summary, [_row(r) for r in rows], page, pages

    def fleet_jobs(self, limit=20):
        """Recent fleet jobs, newest first, with counts per state (two
        queries, whatever the number)."""
        with self.engine.connect() as c:
            fl = [_row(r) for r in c.execute(sa.select(fleet_jobs).order_by(fleet_jobs.c.id.desc())
                                             .limit(limit)).all()]
            counts = {}
            if fl:
                for fid, state, n in c.execute(
                        sa.select(jobs.c.fleet_job_id, jobs.c.state, sa.func.count())
                        .where(jobs.c.fleet_job_id.in_([f["id"] for f in fl]))
                        .group_by(jobs.c.fleet_job_id, jobs.c.state).order_by(jobs.c.state)).all():
                    counts.setdefault(fid, {})[state] = n
            for f in fl:
                f["counts"] = counts.get(f["id"], {})
        return fl

    def device_jobs(self, device_id, limit=20):
        with self.engine.connect() as c:
            rows = c.execute(sa.select(jobs).where(jobs.c.device_id == device_id)
                             .order_by(jobs.c.id.desc()).limit(limit)).all()
        return [_row(r) for r in rows]

    def job(self, job_id):
        with self.engine.connect() as c:
            return _row(c.execute(sa.select(jobs).where(jobs.c.job_id == job_id)).first())

    def job_not_sent(self, job_row_id, reason):
        self.jobs_not_sent([(job_row_id, reason)])

    def jobs_not_sent(self, items):
        """[(job row id, reason)]: NOT SENT, one UPDATE per reason."""
        by_reason = {}
        for jid, reason in items:
            by_reason.setdefault(reason, []).append(jid)
        now = _now()
        with self.engine.begin() as c:
            for reason, ids in by_reason.items():
                for i in range(0, len(ids), 500):
                    c.execute(sa.update(jobs).where(jobs.c.id.in_(ids[i:i + 500]))
                              .values(state="NOT SENT", reason=reason, finished_at=now))


def _int_or_none(v, bits=63):
    """An int column's value: None for a missing, non-numeric or out-of-range
    value (a PostgreSQL INTEGER is 32 bits, BIGINT 64)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        v = int(v)
    except (OverflowError, ValueError):
        return None
    return v if -(1 << bits) <= v < (1 << bits) else None


def _cut(v, n):
    """A string for a VARCHAR(n) column (PostgreSQL refuses longer ones)."""
    return v[:n] if isinstance(v, str) else None


def _text(v):
    if v is None:
        return None
    return str(v)[:MAX_OUTPUT_CHARS]
