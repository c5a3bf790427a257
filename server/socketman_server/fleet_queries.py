"""The fleet page's queries (issue 25): search, filters, sorting, paging and
the counts at the top, done by the database, so a page of 50 devices costs
the same with a thousand or a hundred thousand. Part of db.Store (a mixin
on its `engine`).

A filter is a plain dict (parse_filter): `q` (a piece of a name, a MAC in
any common form, or a model), `state` (online | silent | offline | never
connected), `model`, `firmware`, `version` (the agent's: its CONNECT's,
else its stats'), `status` (the connectivity of PROTOCOL 7.1: 0, 1, 4, 6,
9) and `offline_hours` (offline for at least that long). Empty means any.
The same filter picks the devices of a fleet job or a rollout, so what an
operator sees is what the job goes to."""
import re

import sqlalchemy as sa

from .schema import devices

STATES = ("online", "silent", "offline", "never connected")
FILTER_KEYS = ("q", "state", "model", "firmware", "version", "status", "offline_hours")
SORTS = ("name", "mac", "state", "last_seen", "model", "firmware", "version", "wan_ip", "stations", "status")
PAGE_SIZES = (25, 50, 100, 200)
_MAC_PIECE = re.compile(r"^[0-9A-Fa-f:.\-]{2,17}$")
# A device in a list (fleet, provisioning, rollouts): everything but the
# latest stats document and the device's own config keys (kilobytes each).
LISTED = tuple(c for c in devices.c if c.name not in ("last_doc", "config_json"))


def parse_filter(args):
    """The filter of a request's arguments or form (a mapping with .get):
    a dict of FILTER_KEYS, each None when not given or not valid (a bad
    value filters nothing rather than failing the page)."""
    f = {k: None for k in FILTER_KEYS}
    q = (args.get("q") or "").strip()[:100]
    f["q"] = q or None
    state = (args.get("state") or "").strip()
    f["state"] = state if state in STATES else None
    for k in ("model", "firmware", "version"):
        v = (args.get(k) or "").strip()[:200]
        f[k] = v or None
    try:
        f["status"] = int(args.get("status"))
    except (TypeError, ValueError):
        pass
    try:
        h = float(args.get("offline_hours"))
        f["offline_hours"] = h if 0 < h <= 24 * 3650 else None
    except (TypeError, ValueError):
        pass
    return f


def active(f):
    """True when the filter picks some devices rather than all."""
    return any(v is not None for v in f.values())


def filter_args(f):
    """The filter as query arguments (only what is set), for links and forms."""
    return {k: ("%g" % v if isinstance(v, float) else v) for k, v in f.items() if v is not None}


def describe(f):
    """The filter in words, for the page, the audit log and a rollout's target."""
    parts = []
    if f.get("state"):
        parts.append(f["state"])
    if f.get("offline_hours"):
        parts.append("offline for %s h or more" % ("%g" % f["offline_hours"]))
    for k in ("model", "firmware", "version"):
        if f.get(k):
            parts.append("%s %s" % (k, f[k]))
    if f.get("status") is not None:
        parts.append("connectivity %d" % f["status"])
    if f.get("q"):
        parts.append("matching %r" % f["q"])
    return ", ".join(parts) or "all devices"


def version_col():
    """What a device runs: its CONNECT's version, else its stats' (smv)."""
    return sa.func.coalesce(devices.c.version, devices.c.agent_version)


def state_col(now, stale_after):
    """The state the pages show (ui.device_view, with the broker up) as SQL."""
    return sa.case(
        (sa.and_(devices.c.online == sa.true(), sa.func.coalesce(devices.c.last_seen, 0) >= now - stale_after),
         "online"),
        (devices.c.online == sa.true(), "silent"),
        (devices.c.online == sa.false(), "offline"),
        else_="never connected")


def _like(text):
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class FleetQueries:
    """Mixed into db.Store: needs self.engine."""

    def _where(self, f, now, stale_after):
        cond = []
        if f.get("q"):
            q = f["q"]
            alts = [devices.c.name.ilike(_like(q), escape="\\"), devices.c.model.ilike(_like(q), escape="\\"),
                    devices.c.mac.ilike(_like(q), escape="\\")]
            if _MAC_PIECE.match(q):
                # aa-bb, aabb.ccdd, AA:BB...: compared without separators.
                bare = re.sub(r"[:.\-]", "", q)
                if bare:
                    alts.append(sa.func.replace(devices.c.mac, ":", "").ilike(_like(bare), escape="\\"))
            cond.append(sa.or_(*alts))
        if f.get("state"):
            cond.append(state_col(now, stale_after) == f["state"])
        if f.get("offline_hours"):
            cond += [devices.c.online == sa.false(),
                     sa.func.coalesce(devices.c.online_changed_at, 0) <= now - int(f["offline_hours"] * 3600)]
        if f.get("model"):
            cond.append(devices.c.model == f["model"])
        if f.get("firmware"):
            cond.append(devices.c.firmware == f["firmware"])
        if f.get("version"):
            cond.append(version_col() == f["version"])
        if f.get("status") is not None:
            cond.append(devices.c.status == f["status"])
        return cond

    def _order(self, sort, desc, now, stale_after):
        by_name = sa.func.coalesce(sa.func.nullif(devices.c.name, ""), devices.c.mac)
        col = {"name": by_name, "mac": devices.c.mac, "state": state_col(now, stale_after),
               "last_seen": devices.c.last_seen, "model": devices.c.model, "firmware": devices.c.firmware,
               "version": version_col(), "wan_ip": devices.c.wan_ip, "stations": devices.c.stations,
               "status": devices.c.status}.get(sort, by_name)
        first = col.desc() if desc else col.asc()
        return [first.nulls_last(), devices.c.mac]

    def fleet_page(self, f, now, stale_after, sort="name", desc=False, page=1, size=50):
        """One page of the devices the filter picks: (device rows without
        their stats document, how many the filter picks in all, the page
        number, clamped to the last page). Sorted by `sort` (SORTS), then
        MAC."""
        cond = self._where(f, now, stale_after)
        with self.engine.connect() as c:
            total = c.execute(sa.select(sa.func.count()).select_from(devices).where(*cond)).scalar()
            pages = max(1, -(-total // size))
            page = min(max(1, page), pages)
            rows = c.execute(sa.select(*LISTED).where(*cond).order_by(*self._order(sort, desc, now, stale_after))
                             .limit(size).offset((page - 1) * size)).all()
        return [dict(r._mapping) for r in rows], total, page

    def fleet_devices(self, f, now, stale_after):
        """Every device the filter picks (rows without their stats
        document), by name then MAC: what a fleet job or a rollout to "the
        devices of this filter" goes to."""
        with self.engine.connect() as c:
            rows = c.execute(sa.select(*LISTED).where(*self._where(f, now, stale_after))
                             .order_by(*self._order("name", False, now, stale_after))).all()
        return [dict(r._mapping) for r in rows]

    def fleet_counts(self, now, stale_after):
        """The counts at the top of the fleet page, over the whole fleet:
        {"total", "states": {state: n}, "versions", "models", "firmwares",
        "statuses": [(value, n)] by count, most first}. One query: the
        fleet grouped by all five (a few hundred groups at most), added up
        here."""
        st = state_col(now, stale_after).label("state")
        cols = (st, version_col().label("version"), devices.c.model, devices.c.firmware, devices.c.status)
        with self.engine.connect() as c:
            groups = c.execute(sa.select(*cols, sa.func.count()).group_by(*cols)).all()
        states = {s: 0 for s in STATES}
        tallies = [{}, {}, {}, {}]
        for row in groups:
            n = row[-1]
            states[row[0]] = states.get(row[0], 0) + n
            for t, v in zip(tallies, row[1:5]):
                if v is not None:
                    t[v] = t.get(v, 0) + n

        def ranked(t):
            return sorted(t.items(), key=lambda kv: (-kv[1], str(kv[0])))
        return {"states": states, "versions": ranked(tallies[0]), "models": ranked(tallies[1]),
                "firmwares": ranked(tallies[2]), "statuses": ranked(tallies[3]), "total": sum(states.values())}
