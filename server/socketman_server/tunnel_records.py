"""Tunnels in the database (issue 22, PROTOCOL 11): the part of db.Store (a
mixin on its `engine`) that records each tunnel an operator asked for, its
bytes while it lives and how it ended. The relaying itself is tunnels.py;
these are the reads and writes, shared by every server process (the
dashboard of one process shows and closes the tunnels another relays)."""

import sqlalchemy as sa

from .rows import now as _now
from .rows import row as _row
from .rows import text as _text
from .schema import devices, jobs, tunnels

OPEN_STATES = ("waiting", "open")
# The relaying process writes updated_at at least this often; a tunnel not
# closed and not written for LOST_AFTER_S belongs to a process that died.
HEARTBEAT_S = 10
LOST_AFTER_S = 60
# The agent frees a tunnel's slot once its close handshake is over and then
# answers the tunnel job (PROCESSED): a closed tunnel whose job is not
# answered still counts toward the device's 4 for this long at most (a
# device that never answers does not keep its slots forever).
SLOT_HELD_S = 15
ANSWERED = ("PROCESSED", "REJECTED", "NOT SENT")


class TunnelQueries:
    """Mixed into db.Store: needs self.engine. Times are Unix seconds, byte
    counts are the tunnel's payload bytes (what crossed, not the frames)."""

    def tunnel_add(self, tunnel_id, device, port, job_id, operator, via, address, server):
        """A new tunnel, state "waiting" (its job is being sent). device: a
        devices row. Returns the row."""
        now = _now()
        with self.engine.begin() as c:
            c.execute(sa.insert(tunnels).values(
                tunnel_id=tunnel_id, device_id=device["id"], mac=device["mac"], port=int(port), job_id=job_id,
                operator=_text(operator, 64), via=_text(via, 120), address=_text(address, 64),
                server=_text(server, 100), state="waiting", opened_at=now, updated_at=now))
            return _row(c.execute(sa.select(tunnels).where(tunnels.c.tunnel_id == tunnel_id)).first())

    def tunnel(self, tunnel_id):
        with self.engine.connect() as c:
            return _row(c.execute(sa.select(tunnels).where(tunnels.c.tunnel_id == tunnel_id)).first())

    def tunnel_connected(self, tunnel_id):
        """The device connected: state "open"."""
        now = _now()
        with self.engine.begin() as c:
            c.execute(sa.update(tunnels).where(tunnels.c.tunnel_id == tunnel_id)
                      .values(state="open", connected_at=now, updated_at=now))

    def tunnel_closed(self, tunnel_id, outcome, detail, to_device, from_device):
        """The tunnel ended: state "closed", how (outcome, a short word;
        detail, a sentence) and its final byte counts."""
        now = _now()
        with self.engine.begin() as c:
            c.execute(sa.update(tunnels).where(tunnels.c.tunnel_id == tunnel_id)
                      .values(state="closed", closed_at=now, updated_at=now, outcome=_text(outcome, 40),
                              detail=_text(detail, 2000), bytes_to_device=int(to_device),
                              bytes_from_device=int(from_device)))

    def tunnel_tick(self, tunnel_ids, counts, waiting_jobs):
        """One round of the relaying process's bookkeeping, in one
        transaction. tunnel_ids: the tunnels it holds; counts: {tunnel_id:
        (bytes to device, bytes from device)} to write (with updated_at);
        waiting_jobs: the job ids of its tunnels still waiting for their
        device. Returns ({tunnel_id: who} of the close requests, [tunnel_id]
        whose row is gone (the device was forgotten), {job_id: job row} of
        the waiting jobs the device answered)."""
        now = _now()
        asked, answered = {}, {}
        present = set()
        with self.engine.begin() as c:
            for tid, (to_dev, from_dev) in counts.items():
                c.execute(sa.update(tunnels).where(tunnels.c.tunnel_id == tid)
                          .values(bytes_to_device=int(to_dev), bytes_from_device=int(from_dev), updated_at=now))
            if tunnel_ids:
                for r in c.execute(sa.select(tunnels.c.tunnel_id, tunnels.c.close_requested_at,
                                             tunnels.c.close_requested_by)
                                   .where(tunnels.c.tunnel_id.in_(list(tunnel_ids)))).all():
                    present.add(r.tunnel_id)
                    if r.close_requested_at is not None:
                        asked[r.tunnel_id] = r.close_requested_by or ""
            if waiting_jobs:
                for r in c.execute(sa.select(jobs).where(jobs.c.job_id.in_(list(waiting_jobs)),
                                                         jobs.c.state.in_(("DELIVERED", "PROCESSED",
                                                                           "REJECTED")))).all():
                    answered[r.job_id] = _row(r)
        return asked, [t for t in tunnel_ids if t not in present], answered

    def tunnels_lost(self, now=None):
        """Close every tunnel left open by a process that stopped writing it
        (killed, crashed): outcome "lost". Returns how many."""
        now = _now() if now is None else now
        with self.engine.begin() as c:
            r = c.execute(sa.update(tunnels).where(tunnels.c.state.in_(OPEN_STATES),
                                                   tunnels.c.updated_at < now - LOST_AFTER_S)
                          .values(state="closed", closed_at=now, outcome="lost",
                                  detail="the server process relaying it stopped without closing it"))
            return r.rowcount

    def devices_named(self, name):
        """Devices whose name is `name`, whatever the case (ssh lowercases
        the host name it hands a ProxyCommand)."""
        name = _text(name, 200).strip().lower()
        if not name:
            return []
        with self.engine.connect() as c:
            rows = c.execute(sa.select(devices).where(sa.func.lower(devices.c.name) == name)).all()
        return [_row(r) for r in rows]

    def tunnels_open_count(self, device_id, now=None):
        """Tunnels that hold one of the device's slots (PROTOCOL 11: 4 at
        once): waiting or open (and alive), or closed here within
        SLOT_HELD_S while the device has not answered its job yet (it is
        still closing its side: a new job now would be refused "busy")."""
        now = _now() if now is None else now
        live = sa.and_(tunnels.c.state.in_(OPEN_STATES), tunnels.c.updated_at >= now - LOST_AFTER_S)
        closing = sa.and_(tunnels.c.state == "closed", tunnels.c.closed_at >= now - SLOT_HELD_S,
                          tunnels.c.job_id.in_(sa.select(jobs.c.job_id).where(
                              jobs.c.device_id == device_id, jobs.c.state.notin_(ANSWERED))))
        with self.engine.connect() as c:
            return c.execute(sa.select(sa.func.count()).select_from(tunnels)
                             .where(tunnels.c.device_id == device_id, sa.or_(live, closing))).scalar()

    def device_tunnels(self, device_id, closed_limit=5):
        """(open tunnels oldest first, the last `closed_limit` closed ones
        newest first) of a device, for its page."""
        with self.engine.connect() as c:
            live = c.execute(sa.select(tunnels).where(tunnels.c.device_id == device_id,
                                                      tunnels.c.state.in_(OPEN_STATES))
                             .order_by(tunnels.c.id)).all()
            done = c.execute(sa.select(tunnels).where(tunnels.c.device_id == device_id,
                                                      tunnels.c.state == "closed")
                             .order_by(tunnels.c.id.desc()).limit(closed_limit)).all()
        return [_row(r) for r in live], [_row(r) for r in done]

    def tunnel_request_close(self, tunnel_id, device_id, by):
        """"Close" on the dashboard: the process relaying the tunnel closes
        both sides at its next tick. Returns the row, or None when the
        tunnel is not this device's or not open any more."""
        with self.engine.begin() as c:
            r = c.execute(sa.update(tunnels).where(tunnels.c.tunnel_id == tunnel_id,
                                                   tunnels.c.device_id == device_id,
                                                   tunnels.c.state.in_(OPEN_STATES))
                          .values(close_requested_at=_now(), close_requested_by=_text(by, 64)))
            if not r.rowcount:
                return None
            return _row(c.execute(sa.select(tunnels).where(tunnels.c.tunnel_id == tunnel_id)).first())
