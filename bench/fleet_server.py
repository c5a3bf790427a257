"""The reference fleet server at fleet scale (issue 25): N native agents, as
bench/fleet.py runs them, against `server/main.py serve` with PostgreSQL
and Mosquitto, all started here.

    .venv/bin/python bench/fleet_server.py --agents N [--servers 2] [--minutes M] [--json OUT]

The agents (native MicroPython 1.23 running the .mpy bundle, each with its
own MAC, cache dir and config, on bench/fleet.py's cheap fake router) keep
their default monitor (15 s), heartbeat (60 s) and ping-interval (180 s)
unless told otherwise, and talk to the server as devices do: stats uploads
and boot calls over HTTP, CONNECT/PING/job events over MQTT. PostgreSQL runs
as an operator would run it (fsync on, its data on disk; `--pg-setting`
changes a setting); Mosquitto as bench/fleet.py runs it. With `--servers 2`
two server processes share the database and the MQTT event stream
(`--mqtt-shared-group`), and the agents' uploads are split between them (as
a load balancer would).

The agents run at niceness 19 (`--agents-nice`): on a real fleet each has a
router's CPU of its own, and here 1000 of them share the server's two
cores. At niceness 0 they starve the server (at N = 1000 on 2 cores, a load
average of 30 left the server process about 1/30 of the machine, 6 % of a
core, and its pages waited 10 s for it), and the bench would measure the
machine, not the server. At 19 the scheduler gives the server, PostgreSQL
and Mosquitto the CPU first, as their own host would.

Phases, each printed and kept in the JSON:
  start    N devices admitted (through the Store, as `socketman-server admit`
           does), an operator and an API token; the agents started at once;
           time until the server has them all online.
  steady   --minutes of ordinary work. Meanwhile an operator's pages, one
           every half second in turn: the fleet page, its live list and
           counts, a device page and its live part, each timed by the
           server itself (its Server-Timing header: arrival to answer,
           the wait for a thread included) and by the client; every 5 s the
           server processes' CPU and RSS, PostgreSQL's CPU (all its
           processes), the samples table's rows and the database's size. The
           retention (--retention-minutes) is short, so retention passes run
           while the fleet does and the database must stay bounded.
  job      one fleet job (`true`) to all N through POST /fleet-jobs with the
           API token: time until the database holds all N results.
  rollout  a release (tools/package.py --set-version, .mpy for bundle agents) and a rollout
           to all N in waves 1,10%,rest through POST /rollouts with the API
           token; time until every device has an outcome, and each wave's.
  stop     the clean stop of every agent (bench/fleet.py's: its control
           FIFO, then SIGINT), then the ledger: every stats document each
           agent made (device.seq) is in the samples table once or still in
           its spool; every MQTT message the broker carried (counted by the
           bench's own subscriber) was taken by exactly one server process.

Figures that come from the database: the lag of each document from its
creation on the device (device.created_at) to its row (received_at), by
minute; bytes per sample row and per device-day. Exit status 0 when the run
got to its end (targets met or not: see `targets`), 1 when it could not, 2
when the machine cannot hold N agents (bench/fleet.py's checks).
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "server"))

import fleet as fb  # noqa: E402  (bench/fleet.py: processes, broker, agents, machine checks)
from measure import pct, read  # noqa: E402

from helpers import net  # noqa: E402
from helpers.postgres import Postgres  # noqa: E402

SERVER_MAIN = os.path.join(ROOT, "server", "main.py")
OPERATOR = "bench"
TARGETS = {
    "server_cpu_pct": 25.0,        # ingestion at most a quarter of a core (server processes)
    "page_p99_ms": 300.0,          # fleet page and device page, server time, p99
    "job_all_s": 15.0,             # all N results of a fleet job recorded
    "lag_growth_s": 5.0,           # no growing lag: last minutes' p99 against the first full minute's
}
PAGES = ("fleet", "fleet_list", "fleet_counts", "device", "device_live")


def ms(v):
    return None if v is None else round(v, 1)


def proc_tree_cpu(root_pid):
    """CPU seconds of a process, the children it reaped and its living
    children (PostgreSQL: the postmaster and its backends)."""
    own = fb.cpu_s(root_pid)
    if own is None:
        return None
    total = own[0] + own[1]
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        raw = read("/proc/%s/stat" % p)
        if raw and int(raw.rpartition(b")")[2].split()[1]) == root_pid:
            c = fb.cpu_s(int(p))
            if c:
                total += c[0] + c[1]
    return total


class Http:
    """A small client with the operator's API token."""

    def __init__(self, port, token):
        self.port, self.token = port, token

    def request(self, method, path, form=None, timeout=60):
        headers = {"Authorization": "Bearer " + self.token}
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form, doseq=True)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            t0 = time.perf_counter()
            c.request(method, path, body=body, headers=headers)
            r = c.getresponse()
            data = r.read()
            rtt = (time.perf_counter() - t0) * 1000
            timing = r.getheader("server-timing") or ""
            server_ms = None
            if "dur=" in timing:
                server_ms = float(timing.split("dur=")[1].split(";")[0].split(",")[0])
            return r.status, data, server_ms, rtt
        finally:
            c.close()


class ServerFleet(fb.Fleet):
    """bench/fleet.py's agents, pointed at the reference server."""

    def __init__(self, args, workdir):
        super().__init__(args, workdir)
        self.pg = None
        self.servers = []      # {"port", "pid", "log"}
        self.store = None
        self.samples_log = []  # (t, {...}) every 5 s
        self.page_log = []     # (t, page, status, server ms, rtt ms)
        self.stop_pages = threading.Event()

    # ---- set-up ----

    def start(self):
        a = self.args
        self.procs = fb.Procs()
        self.result["fd_limit"] = fb.raise_fd_limit(self.n)
        settings = dict(kv.split("=", 1) for kv in a.pg_setting)
        prefix = [fb.SETPRIV, "--pdeathsig", "KILL", "--"] if fb.SETPRIV else []
        self.pg = Postgres(fsync=True, settings=settings, prefix=prefix, dir=a.pg_dir)
        self.result["postgres"] = {"version": os.path.basename(os.path.dirname(os.path.dirname(self.pg.bin))),
                                   "fsync": "on", "settings": settings, "data_dir": self.pg.data}
        # Through its socket: twice on this shared machine the TCP port picked
        # for it was answered by another PostgreSQL ("database fleet does
        # not exist").
        self.db_url = self.pg.socket_url()
        from socketman_server.db import Store
        self.store = Store(self.db_url)
        self.store.add_operator(OPERATOR, "admin", "bench-password-%d" % os.getpid())
        self.token = self.store.add_token(OPERATOR, "bench")[0]
        self.broker = fb.Broker(self.procs, self.dir, max_queued=max(1000, 10 * self.n))
        self.broker.start()
        self.data_dir = os.path.join(self.dir, "server-data")
        os.makedirs(self.data_dir, exist_ok=True)
        for k in range(a.servers):
            self.start_server(k)
        t0 = time.time()
        self.tokens = {}
        for ag in self.agents:
            row = self.store.admit(ag["mac"], "bench-%05d" % ag["i"])
            self.tokens[ag["mac"]] = row["token"]
        self.result["admit_s"] = round(time.time() - t0, 1)
        self.write_configs()
        self.op = fb.Operator(self.broker.port, self.n)
        self.op.connect()
        self.http = Http(self.servers[0]["port"], self.token)

    def start_server(self, k):
        a = self.args
        port = net.free_port()
        log = os.path.join(self.dir, "server-%d.log" % k)
        argv = [sys.executable, SERVER_MAIN, "serve", "--db", self.db_url, "--listen", "127.0.0.1:%d" % port,
                "--public-url", "http://127.0.0.1:%d" % port, "--mqtt-host", "127.0.0.1",
                "--mqtt-port", str(self.broker.port), "--retention-hours", "%g" % (a.retention_minutes / 60.0),
                "--data-dir", self.data_dir]
        if a.servers > 1:
            argv += ["--mqtt-shared-group", "bench"]
        pid = self.procs.spawn("server", argv, dict(os.environ), log)
        self.servers.append({"port": port, "pid": pid, "log": log})
        net.wait_listening(port, timeout=60)
        end = time.monotonic() + 30
        while not self.healthz(k).get("broker"):
            if time.monotonic() > end or not self.procs.alive(pid):
                raise RuntimeError("server %d did not connect to the broker: %s" % (k, (read(log) or b"")[-800:]))
            time.sleep(0.1)

    def healthz(self, k):
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.servers[k]["port"], timeout=10)
            c.request("GET", "/healthz")
            return json.loads(c.getresponse().read())
        except (OSError, ValueError):
            return {}

    def write_configs(self):
        a = self.args
        for ag in self.agents:
            d = ag["dir"]
            base = "http://127.0.0.1:%d/api" % self.servers[ag["i"] % len(self.servers)]["port"]
            cfg = {"mac": ag["mac"], "topic": fb.TOPIC, "key": fb.KEY, "token": self.tokens[ag["mac"]],
                   "mqtt_host": "127.0.0.1", "port": self.broker.port,
                   "api_url": base, "stats_url": base + "/stats", "boot_url": base + "/boot",
                   "scan": 0, "cache_dir": os.path.join(d, "cache"), "config_dir": os.path.join(d, "etc-config"),
                   "state_file": os.path.join(d, "state.json"), "sysroot": self.sysroot,
                   "update_dir": os.path.join(d, "updates"),
                   "leases_file": self.leases, "health_url": "127.0.0.1", "health_port": self.broker.port,
                   "restart_cmd": "echo restart >> %s" % os.path.join(d, "recovery"),
                   "reboot_cmd": "echo reboot >> %s" % os.path.join(d, "recovery")}
            for k, v in (("monitor", a.monitor), ("heartbeat", a.heartbeat), ("ping-interval", a.ping_interval)):
                if v:
                    cfg[k] = v
            with open(ag["cfg"], "w") as f:
                json.dump(cfg, f)

    # ---- helpers ----

    def scalar(self, sql, **params):
        import sqlalchemy as sa
        with self.store.engine.connect() as c:
            return c.execute(sa.text(sql), params).scalar()

    def rows(self, sql, **params):
        import sqlalchemy as sa
        with self.store.engine.connect() as c:
            return c.execute(sa.text(sql), params).all()

    def sample(self):
        """Server processes' CPU seconds and RSS, PostgreSQL's CPU seconds,
        samples rows and sizes."""
        out = {"t": time.time(), "servers": [], "pg_cpu_s": proc_tree_cpu(self.pg.proc.pid)}
        for s in self.servers:
            c = fb.cpu_s(s["pid"])
            st = fb.status_kib(s["pid"])
            out["servers"].append({"cpu_s": c[0] if c else None, "rss_kib": st.get("VmRSS")})
        out["samples_rows"] = self.scalar("SELECT count(*) FROM samples")
        out["samples_bytes"] = self.scalar("SELECT pg_total_relation_size('samples')")
        out["db_bytes"] = self.scalar("SELECT pg_database_size(current_database())")
        return out

    def sampler(self):
        while not self.stop_pages.is_set():
            try:
                self.samples_log.append(self.sample())
            except Exception as e:  # noqa: BLE001 - a sample missed is reported, the run goes on
                print("sample failed: %s" % e, file=sys.stderr)
            self.stop_pages.wait(5.0)

    def pages(self):
        """An operator's pages, one every half second, in turn."""
        mac = self.agents[len(self.agents) // 2]["mac"].upper().replace(":", "-")
        paths = {"fleet": "/", "fleet_list": "/live/fleet", "fleet_counts": "/live/fleet/counts",
                 "device": "/devices/" + mac, "device_live": "/live/devices/" + mac}
        i = 0
        while not self.stop_pages.is_set():
            name = PAGES[i % len(PAGES)]
            i += 1
            try:
                status, _, server_ms, rtt = self.http.request("GET", paths[name])
            except OSError as e:
                status, server_ms, rtt = "error: %s" % e, None, None
            self.page_log.append((time.time(), name, status, server_ms, rtt))
            self.stop_pages.wait(0.5)

    def page_stats(self, t0=None, t1=None):
        out = {}
        for name in PAGES:
            got = [x for x in self.page_log if x[1] == name and (t0 is None or x[0] >= t0)
                   and (t1 is None or x[0] < t1)]
            srv = [x[3] for x in got if x[3] is not None]
            rtt = [x[4] for x in got if x[4] is not None]
            out[name] = {"n": len(got), "errors": sum(1 for x in got if x[2] != 200),
                         "server_ms_p50": ms(pct(srv, 50)), "server_ms_p99": ms(pct(srv, 99)),
                         "server_ms_max": ms(max(srv)) if srv else None,
                         "client_ms_p50": ms(pct(rtt, 50)), "client_ms_p99": ms(pct(rtt, 99))}
        return out

    def cpu_between(self, s0, s1):
        w = s1["t"] - s0["t"]
        servers = []
        for a, b in zip(s0["servers"], s1["servers"]):
            if a["cpu_s"] is not None and b["cpu_s"] is not None:
                servers.append(round((b["cpu_s"] - a["cpu_s"]) / w * 100, 1))
        pg = None
        if s0["pg_cpu_s"] is not None and s1["pg_cpu_s"] is not None:
            pg = round((s1["pg_cpu_s"] - s0["pg_cpu_s"]) / w * 100, 1)
        return {"window_s": round(w, 1), "server_pct": servers, "server_pct_total": round(sum(servers), 1),
                "postgres_pct": pg}

    # ---- phases ----

    def phase_start(self):
        t0 = time.time()
        for ag in self.agents:
            ag["pid"] = self.procs.spawn("agent", self.cmd + ["--config=" + ag["cfg"]], self.env, ag["log"],
                                         nice=self.args.agents_nice)
        t_spawned = time.time()
        end = time.monotonic() + self.args.storm_timeout
        online = 0
        while time.monotonic() < end:
            online = self.scalar("SELECT count(*) FROM devices WHERE online")
            if online >= self.n:
                break
            self.check_alive("the start")
            time.sleep(0.2)
        t_all = time.time()
        self.t_start = t0
        return {"started_in_s": round(t_spawned - t0, 2), "online": online, "missing": self.n - online,
                "all_online_in_db_s": round(t_all - t0, 2) if online >= self.n else None}

    def phase_steady(self):
        a = self.args
        threading.Thread(target=self.sampler, daemon=True).start()
        threading.Thread(target=self.pages, daemon=True).start()
        t0 = time.time()
        # CPU from the end of the start (boot calls, first CONNECTs) on.
        time.sleep(min(10.0, a.minutes * 60 / 4))
        s0 = self.sample()
        end = t0 + a.minutes * 60
        # The lag of each document, read as it arrives (every 30 s): the
        # retention prunes rows older than --retention-minutes, so a query
        # at the end of the run would see only its last minutes.
        self.lag_rows, lag_from = [], int(t0)
        while time.time() < end:
            self.check_alive("the steady phase")
            time.sleep(1.0)
            if time.time() - lag_from >= 30 or time.time() >= end:
                lag_to = int(time.time())
                self.lag_rows += self.rows("SELECT received_at, received_at - ts FROM samples WHERE received_at >= :a "
                                           "AND received_at < :b", a=lag_from, b=lag_to)
                lag_from = lag_to
        s1 = self.sample()
        self.t_steady = (t0, time.time())
        mem = [s["rss_kib"] for s in s1["servers"]]
        rows = [(round(s["t"] - t0), s["samples_rows"], s["db_bytes"]) for s in self.samples_log if s["t"] >= t0]
        return {"minutes": a.minutes, "cpu": self.cpu_between(s0, s1), "server_rss_kib": mem,
                "pages": self.page_stats(t0, time.time()), "samples_rows_curve": rows,
                "db_bytes_end": s1["db_bytes"], "samples_rows_end": s1["samples_rows"]}

    def phase_job(self):
        t0 = time.time()
        since = self.op.mark()
        status, body, server_ms, rtt = self.http.request("POST", "/fleet-jobs", {"command": "true", "target": "all"})
        if status != 201:
            raise RuntimeError("POST /fleet-jobs: %s %r" % (status, body[:300]))
        got = json.loads(body)
        fid = got["fleet_job"]
        sent = sum(1 for j in got["jobs"] if j["state"] == "SENT")
        t_posted = time.time()
        end = time.monotonic() + self.args.job_timeout
        done = 0
        while time.monotonic() < end:
            done = self.scalar("SELECT count(*) FROM jobs WHERE fleet_job_id = :f AND state IN "
                               "('PROCESSED', 'REJECTED')", f=fid)
            if done >= self.n:
                break
            time.sleep(0.1)
        t_all = time.time()
        states = dict(self.rows("SELECT state, count(*) FROM jobs WHERE fleet_job_id = :f GROUP BY state", f=fid))
        ok = self.scalar("SELECT count(*) FROM jobs WHERE fleet_job_id = :f AND success", f=fid)
        # When the agents had answered (their last PROCESSED on the broker,
        # seen by the bench's own subscriber): what is left of all_recorded_s
        # after it is the server's, the rest the agents' own work here.
        ids = {j["job_id"] for j in got["jobs"]}
        answered = [t for t, _, _, e in self.op.events(since, "PROCESSED") if e.get("id") in ids]
        time.sleep(2.0)  # the pages a moment longer, then the job's window is over
        return {"fleet_job": fid, "post_s": round(t_posted - t0, 3), "post_server_ms": ms(server_ms),
                "sent": sent, "recorded": done, "lost": self.n - done, "states": states, "succeeded": ok,
                "all_recorded_s": round(t_all - t0, 2) if done >= self.n else None,
                "last_answer_on_broker_s": round(max(answered) - t0, 2) if answered else None,
                "answers_on_broker": len(answered),
                "pages_during": self.page_stats(t0, time.time())}

    def phase_rollout(self):
        import subprocess
        out = os.path.join(self.dir, "release")
        # The bundle's agents get a bundle (.mpy for MicroPython 1.23), as a
        # fleet would: the .py sources of the whole agent compiled on a
        # MicroPython heap the switch has fragmented ran one agent in 100
        # out of memory for good.
        form = ["--micropython", "1.23"] if self.args.runtime == "bundle" else ["--source"]
        r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "package.py"), "--set-version", "9.9.9",
                            "--out", out] + form, capture_output=True, text=True, timeout=300)
        if r.returncode:
            raise RuntimeError("tools/package.py: %s" % r.stderr[-500:])
        r = subprocess.run([sys.executable, SERVER_MAIN, "release", "add", os.path.join(out, "socketman-9.9.9.tar.gz"),
                            "--db", self.db_url, "--data-dir", self.data_dir], capture_output=True, text=True,
                           timeout=120)
        if r.returncode:
            raise RuntimeError("release add: %s" % (r.stdout + r.stderr)[-500:])
        t0 = time.time()
        # The margin a device has to answer: its download and switch take
        # its own CPU on a router; here the wave's agents take them from two
        # shared cores, so it grows with N (30 s, plus 0.2 s an agent).
        margin = self.args.rollout_margin or 30 + self.n // 5
        status, body, _, _ = self.http.request("POST", "/rollouts", {
            "release": "9.9.9", "target": "all", "waves": "1,10%,rest", "threshold": "100%", "trial": "30",
            "margin": str(margin), "offline_wait": str(max(60, margin))})
        if status != 201:
            raise RuntimeError("POST /rollouts: %s %r" % (status, body[:300]))
        rid = json.loads(body)["rollout"]["id"]
        end = time.monotonic() + self.args.rollout_timeout
        state = None
        while time.monotonic() < end:
            state = self.scalar("SELECT state FROM rollouts WHERE id = :r", r=rid)
            if state in ("done", "stopped", "aborted"):
                break
            time.sleep(0.2)
        t_end = time.time()
        waves = []
        for w, n, s0, s1, f1 in self.rows(
                "SELECT wave, count(*), min(sent_at), max(sent_at), max(finished_at) FROM rollout_devices "
                "WHERE rollout_id = :r GROUP BY wave ORDER BY wave", r=rid):
            waves.append({"wave": w, "devices": n, "first_sent_s": s0 - int(t0) if s0 else None,
                          "last_sent_s": s1 - int(t0) if s1 else None, "last_done_s": f1 - int(t0) if f1 else None})
        states = dict(self.rows("SELECT state, count(*) FROM rollout_devices WHERE rollout_id = :r GROUP BY state",
                                r=rid))
        reasons = dict(self.rows("SELECT reason, count(*) FROM rollout_devices WHERE rollout_id = :r "
                                 "GROUP BY reason ORDER BY count(*) DESC LIMIT 3", r=rid))
        return {"rollout": rid, "state": state, "done_s": round(t_end - t0, 1), "devices": states, "waves": waves,
                "reasons": reasons}

    def phase_stop(self):
        self.stop_pages.set()
        r = super().phase_stop()
        time.sleep(3.0)  # the last events reach the servers
        return r

    def ledger(self):
        """Every document each agent made: in the samples table once, or
        still in its spool; every MQTT message taken by one server. A
        document is (created_at, device.seq); seq counts from 1 again at
        each start of the agent (an update's switch included), so an
        agent's documents are cut into runs where seq goes down, and each
        run must have no gap."""
        got, dups = {}, {}
        for mac, ts, seq, n in self.rows("SELECT d.mac, s.ts, s.seq, count(*) FROM samples s JOIN devices d ON "
                                         "d.id = s.device_id WHERE s.seq IS NOT NULL GROUP BY d.mac, s.seq, s.ts"):
            got.setdefault(mac, set()).add((ts, seq))
            dups[mac] = dups.get(mac, 0) + n - 1
        stored = dup = gaps = agents_gapped = spooled_total = lowest = 0
        for ag in self.agents:
            rows = got.get(ag["mac"].upper(), set())
            stored += len(rows) + dups.get(ag["mac"].upper(), 0)
            dup += dups.get(ag["mac"].upper(), 0)
            spooled = set()
            for line in (read(os.path.join(ag["dir"], "cache", "spool.jsonl")) or b"").split(b"\n"):
                if line.strip():
                    try:
                        d = json.loads(line)["device"]
                        spooled.add((d["created_at"], d["seq"]))
                    except (ValueError, KeyError, TypeError):
                        pass
                    spooled_total += 1
            runs, prev = [], None
            # Within one second the higher seq first: the last document of
            # a run and the first of the next (seq 1) can share a second
            # when the switch is quick; two of one run cannot (15 s apart).
            for _, seq in sorted(rows | spooled, key=lambda r: (r[0], -r[1])):
                if prev is None or seq <= prev:
                    runs.append([])
                runs[-1].append(seq)
                prev = seq
            # What retention pruned is gone from the table: the first run
            # counts from the lowest seq still there.
            low = runs[0][0] if runs else 1
            lowest = max(lowest, low)
            missing = sum(r[-1] - r[0] + 1 - len(r) for r in runs)
            if missing:
                gaps += missing
                agents_gapped += 1
        mqtt = {"broker_carried": 0, "servers_took": [], "servers_recorded": [], "servers_bad": [],
                "servers_errors": []}
        # The bench's subscriber got every message on the fleet's topics once.
        mqtt["broker_carried"] = len(self.op.msgs)
        for k in range(len(self.servers)):
            h = self.healthz(k).get("mqtt", {})
            mqtt["servers_took"].append(h.get("messages"))
            mqtt["servers_recorded"].append(h.get("recorded"))
            mqtt["servers_bad"].append(h.get("bad"))
            mqtt["servers_errors"].append(h.get("errors"))
        took = sum(x or 0 for x in mqtt["servers_took"])
        mqtt["taken_twice_or_lost"] = took - mqtt["broker_carried"]
        return {"documents_stored": stored, "stored_twice": dup, "still_spooled": spooled_total,
                "missing": gaps, "agents_with_gaps": agents_gapped, "lowest_seq_max": lowest,
                "agents_with_none": sum(1 for ag in self.agents if not got.get(ag["mac"].upper())),
                "mqtt": mqtt}

    def lag(self):
        """Document lag (received_at - created_at, s): overall and by minute
        of arrival, over the steady phase."""
        t0, t1 = self.t_steady
        rows = self.lag_rows
        lags = [r[1] for r in rows]
        by_min = {}
        for t, v in rows:
            by_min.setdefault(int((t - t0) // 60), []).append(v)
        curve = [[m, len(v), pct(v, 50), pct(v, 99)] for m, v in sorted(by_min.items())]
        full = [c for c in curve if c[1] >= self.n * 0.5]   # minutes with most of the fleet's uploads
        growth = None
        if len(full) >= 3:
            growth = max(c[3] for c in full[-2:]) - full[1][3]
        return {"documents": len(lags), "p50_s": pct(lags, 50), "p99_s": pct(lags, 99), "max_s": max(lags or [0]),
                "by_minute": curve, "p99_growth_s": growth}

    def db_size(self):
        rows = self.scalar("SELECT count(*) FROM samples")
        size = self.scalar("SELECT pg_total_relation_size('samples')")
        heap = self.scalar("SELECT pg_relation_size('samples')")
        per_row = size / rows if rows else None
        per_day = 86400 / (self.args.monitor or 15)
        ev_rows = self.scalar("SELECT count(*) FROM events")
        return {"samples_rows": rows, "samples_bytes": size, "samples_heap_bytes": heap,
                "bytes_per_sample_row": round(per_row) if per_row else None,
                "samples_per_device_day": per_day,
                "mib_per_device_day": round(per_row * per_day / 1048576, 3) if per_row else None,
                "events_rows": ev_rows, "devices_bytes": self.scalar("SELECT pg_total_relation_size('devices')"),
                "jobs_bytes": self.scalar("SELECT pg_total_relation_size('jobs')"),
                "db_bytes": self.scalar("SELECT pg_database_size(current_database())"),
                "retention_minutes": self.args.retention_minutes,
                "bound_rows": int(self.n * (self.args.retention_minutes * 60 + 600) / (self.args.monitor or 15))}

    def run(self):
        ph = self.result["phases"]
        for name, fn in (("start", self.phase_start), ("steady", self.phase_steady), ("job", self.phase_job),
                         ("rollout", self.phase_rollout)):
            if name == "rollout" and self.args.no_rollout:
                continue
            t = time.monotonic()
            ph[name] = fn()
            ph[name]["phase_s"] = round(time.monotonic() - t, 1)
            fb.print_phase(name, ph[name])
            if name == "steady":  # before the job and the rollout change the table
                ph["lag"] = self.lag()
                fb.print_phase("lag", ph["lag"])
                ph["database"] = self.db_size()
                fb.print_phase("database", ph["database"])
        ph["stop"] = self.phase_stop()
        fb.print_phase("stop", ph["stop"])
        ph["ledger"] = self.ledger()
        fb.print_phase("ledger", ph["ledger"])
        self.result["targets"] = targets(ph)

    def cleanup(self):
        self.stop_pages.set()
        for s in self.servers:
            if self.procs and self.procs.alive(s["pid"]):
                self.procs.kill(s["pid"], signal.SIGTERM)
        if self.procs:
            self.procs.wait([s["pid"] for s in self.servers], 20)
        if self.store is not None:
            self.store.close()
        if self.pg is not None:
            self.pg.stop()
        return super().cleanup()


def targets(ph):
    out = {}

    def put(name, value, target, met):
        out[name] = {"value": value, "target": target, "met": bool(met) if value is not None else False}
    cpu = ph["steady"]["cpu"]["server_pct_total"]
    put("server_cpu_pct", cpu, TARGETS["server_cpu_pct"], cpu is not None and cpu <= TARGETS["server_cpu_pct"])
    for name in ("fleet", "device"):
        v = ph["steady"]["pages"][name]["server_ms_p99"]
        put("%s_page_p99_ms" % name, v, TARGETS["page_p99_ms"], v is not None and v <= TARGETS["page_p99_ms"])
    j = ph["job"]
    put("job_all_s", j["all_recorded_s"], TARGETS["job_all_s"],
        j["lost"] == 0 and (j["all_recorded_s"] or 1e9) <= TARGETS["job_all_s"])
    g = ph["lag"]["p99_growth_s"]
    put("lag_p99_growth_s", g, TARGETS["lag_growth_s"], g is not None and g <= TARGETS["lag_growth_s"])
    db = ph["database"]
    put("samples_rows_bounded", db["samples_rows"], db["bound_rows"], db["samples_rows"] <= db["bound_rows"])
    return out


def table(res):
    ph = res["phases"]
    st, j, lag, db, led = ph["steady"], ph["job"], ph["lag"], ph["database"], ph["ledger"]
    p = st["pages"]
    rows = [
        ("agents / server processes", "%d / %d" % (res["params"]["agents"], res["params"]["servers"])),
        ("all online in the database after", "%s s" % ph["start"]["all_online_in_db_s"]),
        ("server CPU, steady (%s min)" % st["minutes"],
         "%s %% of a core (%s)" % (st["cpu"]["server_pct_total"], " + ".join(str(x) for x in st["cpu"]["server_pct"]))),
        ("PostgreSQL CPU, steady", "%s %% of a core" % st["cpu"]["postgres_pct"]),
        ("server RSS", " / ".join("%d MiB" % (k // 1024) for k in st["server_rss_kib"] if k)),
        ("document lag, creation to row, p50 / p99", "%s / %s s" % (lag["p50_s"], lag["p99_s"])),
        ("document lag p99 by minute", ", ".join(str(c[3]) for c in lag["by_minute"])),
        ("fleet page, server time p50 / p99", "%s / %s ms" % (p["fleet"]["server_ms_p50"],
                                                              p["fleet"]["server_ms_p99"])),
        ("fleet page live list, p50 / p99", "%s / %s ms" % (p["fleet_list"]["server_ms_p50"],
                                                            p["fleet_list"]["server_ms_p99"])),
        ("fleet counts, p50 / p99", "%s / %s ms" % (p["fleet_counts"]["server_ms_p50"],
                                                    p["fleet_counts"]["server_ms_p99"])),
        ("device page, server time p50 / p99", "%s / %s ms" % (p["device"]["server_ms_p50"],
                                                               p["device"]["server_ms_p99"])),
        ("device page live part, p50 / p99", "%s / %s ms" % (p["device_live"]["server_ms_p50"],
                                                             p["device_live"]["server_ms_p99"])),
        ("fleet job: POST answered / last answer on the broker / all results recorded",
         "%s s / %s s / %s s" % (j["post_s"], j.get("last_answer_on_broker_s"), j["all_recorded_s"])),
        ("fleet job: results recorded / lost", "%s / %s" % (j["recorded"], j["lost"])),
        ("pages during the job, fleet / device p99", "%s / %s ms" % (j["pages_during"]["fleet"]["server_ms_p99"],
                                                                     j["pages_during"]["device"]["server_ms_p99"])),
    ]
    if "rollout" in ph:
        ro = ph["rollout"]
        rows.append(("rollout to all (waves 1,10%,rest): every device answered", "%s s (%s)" % (
            ro["done_s"], ", ".join("wave %d: %d devices, last at %s s" % (w["wave"], w["devices"], w["last_done_s"])
                                   for w in ro["waves"]))))
    rows += [
        ("samples: bytes a row (with index) / MiB a device-day", "%s / %s" % (db["bytes_per_sample_row"],
                                                                            db["mib_per_device_day"])),
        ("samples rows at the end (retention %s min) / bound" % db["retention_minutes"],
         "%s / %s" % (db["samples_rows"], db["bound_rows"])),
        ("database size at the end", "%.1f MiB" % (db["db_bytes"] / 1048576)),
        ("stats documents: stored / still spooled / missing / twice",
         "%s / %s / %s / %s" % (led["documents_stored"], led["still_spooled"], led["missing"], led["stored_twice"])),
        ("MQTT messages: broker carried / servers took (each)", "%s / %s" % (
            led["mqtt"]["broker_carried"], " + ".join(str(x) for x in led["mqtt"]["servers_took"]))),
    ]
    out = ["| figure | value |", "|---|---|"]
    out += ["| %s | %s |" % r for r in rows]
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, required=True)
    ap.add_argument("--servers", type=int, choices=(1, 2), default=1)
    ap.add_argument("--agents-nice", type=int, default=19, choices=range(0, 20), metavar="0..19",
                    help="the agents' niceness (default 19: they stand for devices with CPUs of their own, and "
                         "must not starve the server they are measuring; 0 shares the CPU equally)")
    ap.add_argument("--minutes", type=float, default=10.0, help="the steady phase (default 10)")
    ap.add_argument("--retention-minutes", type=float, default=5.0,
                    help="the server's --retention-hours, in minutes (default 5: passes run during the steady phase)")
    ap.add_argument("--heartbeat", type=int, default=None, help="agents' heartbeat, s (default: theirs, 60)")
    ap.add_argument("--ping-interval", type=int, default=None, help="agents' ping-interval (default: theirs, 180)")
    ap.add_argument("--monitor", type=int, default=None, help="agents' monitor period (default: theirs, 15)")
    ap.add_argument("--pg-setting", action="append", default=[], metavar="NAME=VALUE",
                    help="a PostgreSQL setting (repeat); fsync is on")
    ap.add_argument("--pg-dir", default=None, help="where PostgreSQL's data goes (default: the system's temp dir)")
    ap.add_argument("--no-rollout", action="store_true")
    ap.add_argument("--storm-timeout", type=float, default=None)
    ap.add_argument("--job-timeout", type=float, default=120.0)
    ap.add_argument("--rollout-timeout", type=float, default=None,
                    help="s (default: 300 + N x 0.6, the waves' margins)")
    ap.add_argument("--rollout-margin", type=int, default=None,
                    help="the rollout's margin, s (default: 30 + N/5: N agents switch on this machine's CPUs)")
    ap.add_argument("--workdir", help="the agents' files (default: a new directory in /dev/shm)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv)
    args.runtime = "bundle"
    args.health = "broker"
    if args.storm_timeout is None:
        args.storm_timeout = 60.0 + args.agents / 10.0
    if args.rollout_timeout is None:
        args.rollout_timeout = 300.0 + args.agents * 0.6
    made = args.workdir is None
    workdir = args.workdir or tempfile.mkdtemp(prefix="fleet-server-", dir=fb.ram_dir())
    os.makedirs(workdir, exist_ok=True)
    problems = fb.machine_problems(args.agents, "bundle", args.monitor or 15, workdir)
    if problems:
        print("fleet_server: this machine cannot hold %d agents:" % args.agents, file=sys.stderr)
        for p in problems:
            print("  - " + p, file=sys.stderr)
        return 2
    fleet = ServerFleet(args, workdir)
    fleet.result["machine"] = fb.machine_name()
    status = 0

    def on_term(sig, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    try:
        fleet.prepare()
        print("fleet_server: %d agents, %s; %d server process(es); work dir %s" % (
            args.agents, fleet.result["runtime"], args.servers, workdir), flush=True)
        fleet.start()
        fleet.run()
    except fb.runtimes.Missing as e:
        print("fleet_server: %s" % e, file=sys.stderr)
        status = 2
    except (RuntimeError, OSError, FileNotFoundError) as e:
        print("fleet_server: the run failed: %s" % e, file=sys.stderr)
        fleet.result["error"] = str(e)
        status = 1
    except KeyboardInterrupt:
        fleet.result["error"] = "interrupted"
        status = 1
    finally:
        fleet.result["leftover_processes"] = fleet.cleanup()
        if args.json:
            with open(args.json, "w") as f:
                json.dump(fleet.result, f, indent=1, default=str)
        if made and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if status == 0:
        print()
        print(table(fleet.result))
        print()
        for name, t in fleet.result["targets"].items():
            print("target %-24s %-10s (target %s) %s" % (name, t["value"], t["target"],
                                                         "met" if t["met"] else "MISSED"))
    print("leftover processes killed at the end: %d" % fleet.result["leftover_processes"])
    return status


if __name__ == "__main__":
    sys.exit(main())
