"""Router footprint, side by side (issue 16): one run, one table.

    .venv/bin/python bench/footprint.py [--quick] [--json OUT] [--markdown OUT]
        [--rows bundle,sources,mips] [--other NAME=COMMAND]... [--other-size NAME=PATH]...

Rows ("agents"), each measured alone, one after another, against the same
broker, stats API and fake router:

  bundle   SocketMan's .mpy bundle (tools/build_mpy.sh) under the native
           MicroPython 1.23 (x86-64; tests_cpython/helpers/runtimes.py finds it)
  sources  SocketMan's sources (main.py, lib/) under the same interpreter
  mips     the bundle under the 32-bit big-endian MIPS build of 1.23, run by
           qemu-mips-static: a router's 32-bit heap. Under emulation only the
           heap, the wakeups and the flash are the router's; start-up, job
           round trip, CPU and memory are qemu's (the table says "qemu", the
           JSON keeps the raw figures with "emulated": true)
  ubus, mips-ubus  the bundle as in bundle and mips, collecting over the
           ubus socket (PROTOCOL 12, issue 21): OpenWRT's real ubusd with the
           tests' Lua publisher serving the same captures, and no `ubus`,
           `iwinfo` or `iw` on PATH. The other rows have ubus_socket "" (the
           commands only). Every row's fake router is the same
           (tests_cpython/helpers/ubus.py: the captures both paths serve)
  NAME     every --other NAME=COMMAND: any agent given as a command (below)

Columns, all taken from outside the agent (so the same for any agent):

  start->CONNECT  process start (posix_spawn of the command) to the operator's
                  receipt of the live CONNECT online "1" on status/<base>;
                  median of --starts starts (the agent is stopped between starts)
  job p50/p90/p99 --jobs `true` jobs one after another: the operator's PUBLISH
                  on sub/<base> to its receipt of PROCESSED on pub/<base>. The
                  operator sends on one connection and listens on another,
                  Nagle off on both (see mqtt_bench.py)
  VmRSS, RssAnon  /proc/PID/status at the end of the idle window (default config)
  idle CPU        over --idle s with MQTT connected and no jobs, default config
                  (monitor 15, heartbeat 60, ping-interval 180, keepalive 30):
                  the agent's own threads from /proc/PID/task/*/schedstat (ns),
                  in ms of CPU a minute and % of a core. "with children" adds
                  the shell commands it starts: the children it waited for
                  (cutime+cstime of /proc/PID/stat, 10 ms ticks: coarse) and
                  the background shells that outlive their parent (the bench
                  is their subreaper and adds up their rusage when they end)
  wakeups/min     voluntary context switches a minute over the idle window
                  (every sleep that ended: poll timeouts, socket data, waits
                  for a child); involuntary ones (preemptions) apart
  nothing due     the same window once more, after a restart with a config
                  under which nothing is due for a minute: monitor and
                  heartbeat 86400 (the agent caps heartbeat at 300), ping-
                  interval 86400, keepalive 300, no stats_url (a heartbeat at a
                  random phase in 300 s would land in a 60 s window one time in
                  five). The MQTT messages and POSTs seen in that window are
                  counted (they should be 0)
  processes/min   processes the agent started over the default-config idle
                  window, from the Linux proc connector (bench/procwatch.py,
                  needs root), and in brackets those of collection batches;
                  the JSON has them by kind. For the ubus rows the JSON also
                  has ubusd's and the publisher's CPU over that window
  heap            smallest `-X heapsize` (KiB) for a full cycle: start, CONNECT,
                  a job PROCESSED, an upload of 3 or more stats documents
                  answered 200, still running, no MemoryError in the log; the
                  agent's clock 15 times faster (SOCKETMAN_TIME_SCALE=15: a
                  document a second, an upload every 4 s). Bisection in
                  --heap-step KiB steps. MicroPython only
  flash           bytes of the agent's code on flash: the bundle as
                  tools/build_mpy.sh makes it (test-only modules excluded), the
                  sources that would be installed, or for another agent the
                  files given with --other-size (the interpreter is apart: the
                  header names its size)

The contract for --other NAME=COMMAND. COMMAND is split into words like a
shell would (shlex, no shell runs), then these placeholders are replaced in
each word:

  {host} {port}        the broker (127.0.0.1, plain MQTT 3.1.1)
  {user} {password}    the device's broker credentials
  {topic} {key} {mac}  the device's topic components; {base} = topic/key/mac
  {qos}                QoS for the job subscription and job events
  {workdir}            an empty directory of its own, also the current directory
  {config}             a PROTOCOL 1 config.json with all of the above and the
                       settings of the phase (the original daemon reads this file)
  {stats_url}          the stats API ("" in the nothing-due phase)
  {monitor} {heartbeat} {ping_interval} {keepalive}   the phase's periods, s

The first word is the program that runs (no shell in between: use `exec` at
the end of a `sh -c '...'` so the measured pid is the agent). Within 30 s
the agent connects and publishes CONNECT with meta.online "1" on
status/<base>, retained (PROTOCOL 4); it runs jobs it receives on sub/<base>
({"id": ID, "timestamp": T, "meta": {"msg": "true", "type": "cmd"}}) and
answers each with PROCESSED carrying that id on pub/<base>. SIGTERM stops it
(SIGKILL after 5 s). It runs with the environment of the fake router
(PATH with tests_cpython/fakebin first, FAKE_OPENWRT); the config's sysroot and
leases_file point into it. The heap column is "n/a" for it, and so is flash
unless --other-size NAME=PATH (files or directories, repeatable) is given.

Also printed and kept: two floors for the job round trip on this machine
(the native 1.23's os.system("true"), and the broker plus operator alone: an
echo client in the bench answers the job), the machine, the commit, and the
targets of issue 16 against the bundle row.

Exit status 0 when every row was measured, 1 when one could not be.
"""
import argparse
import ctypes
import datetime
import getpass
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
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
from procwatch import Bus as UbusBus  # noqa: E402
from procwatch import Forks  # noqa: E402

from helpers import net, openwrt, runtimes  # noqa: E402
from helpers import ubus as hubus  # noqa: E402
from helpers.broker import mosquitto_bin  # noqa: E402
from helpers.httpserver import Server  # noqa: E402

TOPIC, KEY = "bench", "k"
DEVICE_USER, DEVICE_PASSWORD = "device", "bench-device-pw"
OPERATOR_USER, OPERATOR_PASSWORD = "operator", "bench-operator-pw"
# Under qemu-user a 32-bit guest sees ext4 directories as empty (see
# tests_cpython/conftest.py): every agent's files live on tmpfs, as a router's /tmp.
TMPFS = "/dev/shm"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PR_SET_CHILD_SUBREAPER = 36
SETPRIV = shutil.which("setpriv")
CONNECT_TIMEOUT_S = 30.0
JOB_TIMEOUT_S = 20.0
STOP_WAIT_S = 5.0

# The settings of the two idle phases (PROTOCOL 1 keys).
DUE = {"monitor": 15, "heartbeat": 60, "ping-interval": 180, "keepalive": 30}
NOTHING_DUE = {"monitor": 86400, "heartbeat": 86400, "ping-interval": 86400, "keepalive": 300}

# Issue 16's targets, for the bundle row (native 1.23) and the MIPS heap.
TARGETS = {
    "start_ms": 19.0,                 # at most the C daemon's start -> CONNECT here
    "job_p50_ms": 3.0,
    "idle_cpu_ms_per_min": 6.0,       # own CPU, default config
    "nothing_due_wakeups_per_min": 10.0,
    "mips_heap_kib": 96,
    "bundle_bytes": 48 * 1024,
}
# Issue 21's, for the ubus rows: idle CPU own plus children, no process per
# monitor cycle, and heap and bundle at most issue 16's measured figures
# plus what the client costs (client_cost()).
UBUS_TARGETS = {"idle_cpu_with_children_ms_per_min": 6.0, "collection_processes_per_min": 0,
                "mips_heap_kib_before": 152, "bundle_bytes_before": 93750}
UBUS_MODULES = ("ubus", "ubusmsg", "blobmsg", "ubusstatus")

QUICK = {"starts": 2, "jobs": 20, "idle": 10.0, "heap_step": 32}
FULL = {"starts": 5, "jobs": 100, "idle": 60.0, "heap_step": 4}


def log(msg):
    sys.stderr.write("footprint: %s\n" % msg)
    sys.stderr.flush()






def tree_bytes(path):
    """Bytes of a file, or of every file under a directory."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for d, _, files in os.walk(path):
        for f in files:
            p = os.path.join(d, f)
            if os.path.isfile(p) and not os.path.islink(p):
                total += os.path.getsize(p)
    return total


def sources_bytes():
    """Bytes of the sources a sources install would put on flash: main.py,
    boot.py and lib/socketman's .py files less tools/bundle_exclude.txt."""
    excluded = set()
    for line in (read(os.path.join(ROOT, "tools", "bundle_exclude.txt"), b"") or b"").decode().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            excluded.add(line)
    total = sum(os.path.getsize(os.path.join(ROOT, f)) for f in ("main.py", "boot.py"))
    lib = os.path.join(ROOT, "lib", "socketman")
    for d, dirs, files in os.walk(lib):
        dirs[:] = [x for x in dirs if x != "__pycache__"]
        for f in files:
            rel = os.path.relpath(os.path.join(d, f), lib)
            if f.endswith(".py") and rel not in excluded:
                total += os.path.getsize(os.path.join(d, f))
    return total


# ---- processes ---------------------------------------------------------------

class Reaper:
    """Starts every process of the run and is the subreaper of its tree: a
    background shell whose parent (the agent's system() shell) has ended
    comes here, and its CPU (rusage, its own waited-for children included)
    is added to orphan_cpu_s when it ends. Only this thread waits for
    children: nothing in the run may use subprocess once it exists."""

    def __init__(self):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
        self.lock = threading.Lock()
        self.mine = {}          # pid -> name of the processes started here
        self.exits = {}         # pid -> exit code (or -signal)
        self.orphan_cpu_s = 0.0
        self.orphans = 0
        self.closed = False
        self.thread = threading.Thread(target=self._reap, name="reaper", daemon=True)
        self.thread.start()

    def spawn(self, name, argv, env, log_path, cwd, guard=False):
        """Start argv (the first word found in env's PATH when it has no
        slash) in cwd, stdin /dev/null, stdout and stderr to log_path; the
        pid. guard: killed when the bench dies (util-linux setpriv), for the
        broker and the API, never for a measured agent (an exec more)."""
        argv = list(argv)
        if "/" not in argv[0]:
            found = shutil.which(argv[0], path=env.get("PATH"))
            if not found:
                raise FileNotFoundError("%s: %s not found in PATH" % (name, argv[0]))
            argv[0] = found
        if guard and SETPRIV:
            argv = [SETPRIV, "--pdeathsig", "KILL", "--"] + argv
        actions = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                   (os.POSIX_SPAWN_OPEN, 1, log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
                   (os.POSIX_SPAWN_DUP2, 1, 2)]
        with self.lock:
            # posix_spawn has no cwd: the bench's own paths are all absolute.
            old = os.getcwd()
            os.chdir(cwd)
            try:
                pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
            finally:
                os.chdir(old)
            self.mine[pid] = name
        return pid

    def _reap(self):
        while not self.closed:
            try:
                pid, status, ru = os.wait4(-1, 0)
            except ChildProcessError:
                time.sleep(0.02)
                continue
            except InterruptedError:
                continue
            with self.lock:
                if pid in self.mine:
                    self.exits[pid] = os.waitstatus_to_exitcode(status)
                else:
                    self.orphans += 1
                    self.orphan_cpu_s += ru.ru_utime + ru.ru_stime

    def alive(self, pid):
        with self.lock:
            return pid not in self.exits

    def wait(self, pid, timeout):
        """The exit code, or None if still running after timeout s."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if pid in self.exits:
                    return self.exits[pid]
            time.sleep(0.01)
        return None

    def stop(self, pid, sig=signal.SIGTERM, wait_s=STOP_WAIT_S):
        """sig, then SIGKILL after wait_s: the exit code."""
        if not self.alive(pid):
            return self.exits[pid]
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
        code = self.wait(pid, wait_s)
        if code is None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            code = self.wait(pid, 5)
        return code

    def orphan_cpu(self):
        with self.lock:
            return self.orphan_cpu_s, self.orphans

    def leftovers(self):
        """Pids of living processes whose parent is the bench, but for those
        started here that still run (background shells left behind)."""
        me, out = os.getpid(), []
        for p in os.listdir("/proc"):
            if not p.isdigit():
                continue
            raw = read("/proc/%s/stat" % p)
            if not raw:
                continue
            f = raw.rpartition(b")")[2].split()
            if int(f[1]) == me and f[0] != b"Z" and int(p) not in self.mine:
                out.append(int(p))
        return out


# ---- /proc figures -------------------------------------------------------------

def proc_sample(pid, reaper):
    """What the idle figures are computed from, now: CPU ns and context
    switches summed over the process's threads (and of its first thread
    alone: under qemu-user that is the guest's), its stat ticks, its
    children's ticks, the orphans' CPU, memory; None when it is gone."""
    task_dir = "/proc/%d/task" % pid
    try:
        tids = sorted(int(t) for t in os.listdir(task_dir))
    except OSError:
        return None
    cpu_ns, vol, invol = 0, 0, 0
    main = {}
    for tid in tids:
        sched = read("%s/%d/schedstat" % (task_dir, tid))
        status = read("%s/%d/status" % (task_dir, tid))
        if not sched or not status:
            continue
        t_cpu = int(sched.split()[0])
        t_vol = t_invol = 0
        for line in status.decode().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                t_vol = int(line.split()[1])
            elif line.startswith("nonvoluntary_ctxt_switches:"):
                t_invol = int(line.split()[1])
        cpu_ns += t_cpu
        vol += t_vol
        invol += t_invol
        if tid == pid:
            main = {"cpu_ns": t_cpu, "vol": t_vol, "invol": t_invol}
    stat = read("/proc/%d/stat" % pid)
    status = read("/proc/%d/status" % pid)
    if not stat or not status:
        return None
    f = stat.rpartition(b")")[2].split()
    # After the command: state is index 0; utime 11, stime 12, cutime 13, cstime 14.
    mem = {}
    for line in status.decode().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            mem[k] = int(v.split()[0])
    orphan_s, orphans = reaper.orphan_cpu()
    return {"t": time.monotonic(), "threads": len(tids), "cpu_ns": cpu_ns, "vol": vol, "invol": invol,
            "main": main, "ticks": int(f[11]) + int(f[12]), "child_ticks": int(f[13]) + int(f[14]),
            "orphan_cpu_s": orphan_s, "orphans": orphans, "mem": mem}


def window(s0, s1):
    """The idle figures between two samples, per minute."""
    secs = s1["t"] - s0["t"]
    per_min = 60.0 / secs
    own_ms = (s1["cpu_ns"] - s0["cpu_ns"]) / 1e6
    child_ms = ((s1["child_ticks"] - s0["child_ticks"]) * 1000.0 / CLK_TCK
                + (s1["orphan_cpu_s"] - s0["orphan_cpu_s"]) * 1000.0)
    out = {
        "seconds": round(secs, 3),
        "cpu_own_ms": round(own_ms, 3),
        "cpu_own_ms_per_min": round(own_ms * per_min, 3),
        "cpu_own_pct_core": round(own_ms / 1000.0 / secs * 100, 5),
        "cpu_children_ms": round(child_ms, 3),
        "cpu_with_children_ms_per_min": round((own_ms + child_ms) * per_min, 3),
        "cpu_with_children_pct_core": round((own_ms + child_ms) / 1000.0 / secs * 100, 5),
        "cpu_ticks_ms_per_min": round((s1["ticks"] - s0["ticks"]) * 1000.0 / CLK_TCK * per_min, 1),
        "orphans_ended": s1["orphans"] - s0["orphans"],
        "wakeups_per_min": round((s1["vol"] - s0["vol"]) * per_min, 2),
        "involuntary_per_min": round((s1["invol"] - s0["invol"]) * per_min, 2),
        "threads": s1["threads"],
        "VmRSS_kib": s1["mem"].get("VmRSS"),
        "RssAnon_kib": s1["mem"].get("RssAnon"),
    }
    if s0["main"] and s1["main"]:
        out["main_thread"] = {
            "cpu_ms_per_min": round((s1["main"]["cpu_ns"] - s0["main"]["cpu_ns"]) / 1e6 * per_min, 3),
            "wakeups_per_min": round((s1["main"]["vol"] - s0["main"]["vol"]) * per_min, 2),
            "involuntary_per_min": round((s1["main"]["invol"] - s0["main"]["invol"]) * per_min, 2),
        }
    return out


# ---- broker, operator, API ---------------------------------------------------------

class Broker:
    """Mosquitto on loopback: a password file (the device and the operator),
    no persistence, its own defaults otherwise."""

    def __init__(self, tmp):
        """Writes the files (mosquitto_passwd runs here, before the reaper
        exists); start() starts it."""
        self.port = net.free_port()
        d = os.path.join(tmp, "broker")
        os.makedirs(d)
        pw = os.path.join(d, "passwd")
        open(pw, "w").close()
        for user, password in ((DEVICE_USER, DEVICE_PASSWORD), (OPERATOR_USER, OPERATOR_PASSWORD)):
            subprocess.run(["mosquitto_passwd", "-b", pw, user, password], check=True, capture_output=True)
        conf = os.path.join(d, "mosquitto.conf")
        with open(conf, "w") as f:
            # As root, mosquitto would switch to its own user, who cannot read our files.
            f.write("user %s\nper_listener_settings false\nallow_anonymous false\npassword_file %s\n"
                    "persistence false\nlistener %d 127.0.0.1\n" % (getpass.getuser(), pw, self.port))
        self.conf = conf
        self.dir = d
        self.reaper = self.pid = None

    def start(self, reaper):
        self.reaper = reaper
        d = self.dir
        self.pid = reaper.spawn("mosquitto", [mosquitto_bin(), "-c", self.conf], dict(os.environ),
                                os.path.join(d, "mosquitto.log"), d, guard=True)
        net.wait_listening(self.port)

    def stop(self):
        self.reaper.stop(self.pid)


def _client(name, port):
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="fp-%s-%d-%d" % (name, os.getpid(), id(name)))
    c.username_pw_set(OPERATOR_USER, OPERATOR_PASSWORD)
    c.connect("127.0.0.1", port, 60)
    # The measuring clients must not add Nagle stalls of their own.
    c.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.loop_start()
    return c


class Operator:
    """Jobs go out on one connection, events come back on another, as an
    operator's controller would have it (see mqtt_bench.Watcher); every
    message on status/, delivery/ and pub/ of base is kept with the time it
    arrived (time.perf_counter, the clock the starts are timed with)."""

    def __init__(self, port, base):
        self.base = base
        self.events = []   # (perf_counter, topic, retained, payload dict or None)
        self.cond = threading.Condition()
        self.pub = _client("pub", port)
        self.sub = _client("sub", port)
        self.sub.on_message = self._msg
        done = threading.Event()
        self.sub.on_subscribe = lambda *a: done.set()
        self.sub.subscribe([("status/" + base, 1), ("delivery/" + base, 1), ("pub/" + base, 1)])
        if not done.wait(10):
            raise RuntimeError("the operator could not subscribe")

    def _msg(self, client, userdata, m):
        t = time.perf_counter()
        try:
            payload = json.loads(m.payload)
        except ValueError:
            payload = None
        with self.cond:
            self.events.append((t, m.topic, m.retain, payload))
            self.cond.notify_all()

    def mark(self):
        with self.cond:
            return len(self.events)

    def wait(self, pred, timeout, since=0, give_up=None):
        """The arrival time of the first event from index since for which
        pred(topic, retained, payload); TimeoutError after timeout s, or as
        soon as give_up() says so (the agent died)."""
        end = time.monotonic() + timeout
        with self.cond:
            i = since
            while True:
                while i < len(self.events):
                    t, topic, retained, payload = self.events[i]
                    i += 1
                    if isinstance(payload, dict) and pred(topic, retained, payload):
                        return t
                left = end - time.monotonic()
                if left <= 0 or (give_up is not None and give_up()):
                    raise TimeoutError
                self.cond.wait(min(left, 0.2))

    def online(self, topic, retained, e):
        """The live CONNECT online "1" (PROTOCOL 4): not a retained copy."""
        meta = e.get("meta")
        return (topic == "status/" + self.base and not retained and e.get("event_type") == "CONNECT"
                and isinstance(meta, dict) and str(meta.get("online")) == "1")

    def send_job(self, jid, cmd, qos=1):
        job = {"id": jid, "timestamp": int(time.time()), "meta": {"msg": cmd, "type": "cmd"}}
        self.pub.publish("sub/" + self.base, json.dumps(job), qos=qos)

    def processed(self, jid):
        return lambda topic, retained, e: (topic == "pub/" + self.base and e.get("id") == jid
                                           and e.get("event_type") == "PROCESSED")

    def close(self):
        for c in (self.sub, self.pub):
            c.loop_stop()
            c.disconnect()


# ---- agents ----------------------------------------------------------------------

class AgentSpec:
    """One row: a name, a label, the command template (words), whether it is
    SocketMan (heap column, env hooks) and whether it runs emulated."""

    def __init__(self, name, label, words, socketman=False, emulated=False, interp=None, main=None,
                 flash=None, flash_what="", ubus=False):
        self.name, self.label, self.words = name, label, words
        self.ubus = ubus  # collects over the bench's ubus socket
        self.socketman, self.emulated = socketman, emulated
        self.interp, self.main = interp, main   # SocketMan: argv prefix and main.py (for -X heapsize)
        self.flash, self.flash_what = flash, flash_what

    def argv(self, values):
        return [fill(w, values) for w in self.words]

    def env(self):
        e = {}
        if self.emulated:
            # The agent's name lookups start its interpreter again (dns.py);
            # without binfmt_misc the kernel cannot start the MIPS binary itself.
            e["SOCKETMAN_INTERPRETER"] = " ".join(self.interp)
        return e


def fill(word, values):
    """word with every {name} of values replaced; other braces stay."""
    return re.sub(r"\{(\w+)\}", lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), word)


class Device:
    """One row's identity and files: a MAC of its own, the fake router, and
    a work directory on tmpfs."""

    def __init__(self, n, tmp, broker, api):
        self.mac = "02:00:00:00:be:%02x" % n
        self.base = "%s/%s/%s" % (TOPIC, KEY, self.mac)
        self.dir = tempfile.mkdtemp(prefix="fp-%d-" % n, dir=tmp)
        self.fenv, self.fcfg = openwrt.make(self.dir, hubus.command_profile())
        self.broker, self.api = broker, api
        self.n = n

    def values(self, phase, workdir, stats_path, ubus_socket=""):
        """(placeholder values, SocketMan config) for one start in phase
        (DUE or NOTHING_DUE); stats_path None: no stats_url."""
        stats_url = self.api.url(stats_path) if stats_path else ""
        cfg = dict(self.fcfg, ubus_socket=ubus_socket)
        cfg.update(mac=self.mac, topic=TOPIC, key=KEY, mqtt_host="127.0.0.1", port=self.broker.port,
                   username=DEVICE_USER, password=DEVICE_PASSWORD, qos=1, stats_url=stats_url,
                   # A target in use counts as reachable (PROTOCOL 7.1): the broker.
                   health_url="127.0.0.1", health_port=self.broker.port,
                   reboot=0, restart_cmd="true", cache_dir=os.path.join(workdir, "cache"),
                   config_dir=os.path.join(workdir, "etc"), state_file=os.path.join(workdir, "state.json"),
                   update_dir=os.path.join(workdir, "updates"))
        cfg.update(phase)
        os.makedirs(cfg["config_dir"], exist_ok=True)
        path = os.path.join(workdir, "config.json")
        with open(path, "w") as f:
            json.dump(cfg, f, indent=1)
        values = {"host": "127.0.0.1", "port": self.broker.port, "user": DEVICE_USER,
                  "password": DEVICE_PASSWORD, "topic": TOPIC, "key": KEY, "mac": self.mac, "base": self.base,
                  "qos": 1, "workdir": workdir, "config": path, "stats_url": stats_url,
                  "monitor": phase["monitor"], "heartbeat": phase["heartbeat"],
                  "ping_interval": phase["ping-interval"], "keepalive": phase["keepalive"]}
        return values

    def env(self, spec, extra=None):
        env = dict(os.environ, **self.fenv)
        for k in ("DEBUG", "SOCKETMAN_CONTROL", "SOCKETMAN_TIME_SCALE"):
            env.pop(k, None)
        # No syslog socket there: the log lines go to stderr, our log file.
        env["SOCKETMAN_SYSLOG"] = os.path.join(self.dir, "no-syslog")
        env.update(spec.env())
        if spec.ubus:
            env["PATH"] = os.environ["PATH"]  # no fake `ubus`, `iwinfo`, `iw`: everything from the bus
        env.update(extra or {})
        return env


class Run:
    """One measuring session: the reaper, the broker, the API, the options."""

    def __init__(self, args, tmp):
        self.args, self.tmp = args, tmp
        self.broker = Broker(tmp)
        self.reaper = Reaper()
        self.broker.start(self.reaper)
        self.api = Server()
        self.forks = Forks()
        self.bus = None

    def ubus_socket(self, spec):
        """The bench's ubus socket for a ubus row (started on first use), else ""."""
        if not spec.ubus:
            return ""
        if self.bus is None:
            self.bus = UbusBus(self.reaper, self.tmp)
        return self.bus.sock

    def close(self):
        self.forks.stop()
        if self.bus is not None:
            self.bus.stop()
        self.api.close()
        self.broker.stop()
        time.sleep(0.5)
        for pid in self.reaper.leftovers():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def start(self, spec, dev, op, phase, workdir, stats_path, extra_argv=(), extra_env=None):
        """Start the agent and wait for its live CONNECT: (pid, start to
        CONNECT in ms, log path); RuntimeError when it does not come online."""
        os.makedirs(workdir, exist_ok=True)
        values = dev.values(phase, workdir, stats_path, self.ubus_socket(spec))
        argv = spec.argv(values)
        if extra_argv:
            argv = argv[:len(spec.interp)] + list(extra_argv) + argv[len(spec.interp):]
        env = dev.env(spec, extra_env)
        logp = os.path.join(workdir, "agent.log")
        since = op.mark()
        t0 = time.perf_counter()
        pid = self.reaper.spawn(spec.name, argv, env, logp, workdir)
        try:
            t = op.wait(op.online, CONNECT_TIMEOUT_S, since, give_up=lambda: not self.reaper.alive(pid))
        except TimeoutError:
            code = self.reaper.stop(pid)
            raise RuntimeError("%s did not come online in %d s (exit %s); argv %s; its log ends:\n%s"
                               % (spec.name, CONNECT_TIMEOUT_S, code, argv, tail(logp)))
        return pid, (t - t0) * 1000.0, logp

    def idle(self, pid, op, seconds, stats_path, spec=None):
        """One idle window: its figures, and what the agent sent in it; the
        processes it started; for a ubus row ubusd's and the publisher's CPU."""
        m0 = op.mark()
        p0 = len(self.api.got("POST", stats_path)) if stats_path else 0
        self.forks.open(pid)
        side = [(k, p) for k, p in (("ubusd", self.bus.ubusd), ("publisher", self.bus.publisher))] \
            if spec is not None and spec.ubus and self.bus is not None else []
        b0 = [proc_sample(p, self.reaper) for _, p in side]
        s0 = proc_sample(pid, self.reaper)
        time.sleep(seconds)
        s1 = proc_sample(pid, self.reaper)
        b1 = [proc_sample(p, self.reaper) for _, p in side]
        forks = self.forks.close()
        if s0 is None or s1 is None:
            raise RuntimeError("the agent ended during the idle window")
        w = window(s0, s1)
        if forks is not None:
            per_min = 60.0 / w["seconds"]
            w["processes_per_min"] = round(forks["processes"] * per_min, 2)
            w["processes_by_kind_per_min"] = {k: round(n * per_min, 2) for k, n in forks["by_kind"].items()}
            w["proc_connector_lost_events"] = forks["lost_events"]
            w["other_processes_examples"] = forks["other_examples"]
        else:
            w["processes_unavailable"] = self.forks.unavailable
        for (k, _), x0, x1 in zip(side, b0, b1):
            if x0 and x1:
                w[k] = {"cpu_ms_per_min": window(x0, x1)["cpu_own_ms_per_min"],
                        "wakeups_per_min": window(x0, x1)["wakeups_per_min"]}
        with op.cond:
            sent = op.events[m0:]
        w["mqtt_messages_in_window"] = len(sent)
        w["posts_in_window"] = (len(self.api.got("POST", stats_path)) - p0) if stats_path else 0
        return w


def tail(path, n=3000):
    return (read(path, b"") or b"")[-n:].decode("utf-8", "replace")


def measure(run, spec, n):
    """Every figure of one row; raises RuntimeError when the agent fails."""
    a = run.args
    dev = Device(n, run.tmp, run.broker, run.api)
    op = Operator(run.broker.port, dev.base)
    row = {"agent": spec.name, "label": spec.label, "socketman": spec.socketman, "emulated": spec.emulated,
           "command": spec.words, "flash_bytes": spec.flash, "flash_what": spec.flash_what}
    stats_path = "/stats/%d" % n
    workdir = os.path.join(dev.dir, "work")
    pid = None
    try:
        starts = []
        for i in range(a.starts):
            pid, ms, logp = run.start(spec, dev, op, DUE, workdir, stats_path)
            starts.append(ms)
            log("%s: start %d -> CONNECT %.1f ms" % (spec.name, i + 1, ms))
            if i < a.starts - 1:
                run.reaper.stop(pid)
                pid = None
                time.sleep(a.pause)
        row["start_to_connect_ms"] = {"p50": round(statistics.median(starts), 2), "all": [round(x, 2) for x in starts]}
        jobs = 0 if spec.emulated else a.jobs
        rtts = []
        for i in range(jobs):
            jid = "fp-%d-%d" % (n, i)
            since = op.mark()
            t0 = time.perf_counter()
            op.send_job(jid, "true")
            try:
                t = op.wait(op.processed(jid), JOB_TIMEOUT_S, since, give_up=lambda: not run.reaper.alive(pid))
            except TimeoutError:
                raise RuntimeError("%s: no PROCESSED for job %s in %d s; its log ends:\n%s"
                                   % (spec.name, jid, JOB_TIMEOUT_S, tail(logp)))
            rtts.append((t - t0) * 1000.0)
        if rtts:
            row["job_rtt_ms"] = {"n": len(rtts), "p50": round(pct(rtts, 50), 3), "p90": round(pct(rtts, 90), 3),
                                 "p99": round(pct(rtts, 99), 3)}
            log("%s: %d jobs, p50 %.2f ms p90 %.2f p99 %.2f" % (spec.name, len(rtts), row["job_rtt_ms"]["p50"],
                                                              row["job_rtt_ms"]["p90"], row["job_rtt_ms"]["p99"]))
        time.sleep(a.settle)
        row["idle"] = run.idle(pid, op, a.idle, stats_path, spec)
        log("%s: idle %s" % (spec.name, short(row["idle"])))
        run.reaper.stop(pid)
        pid = None
        time.sleep(a.pause)
        # Nothing due: the same agent, restarted with far-away periods and no
        # stats URL, after its start-up work (the first monitor cycle) is over.
        pid, ms, logp = run.start(spec, dev, op, NOTHING_DUE, workdir + "-quiet", None)
        time.sleep(a.settle + (3.0 if spec.emulated else 1.0))
        row["nothing_due"] = run.idle(pid, op, a.idle, None)
        log("%s: nothing due %s" % (spec.name, short(row["nothing_due"])))
        run.reaper.stop(pid)
        pid = None
        if spec.socketman and a.heap:
            row["heap"] = smallest_heap(run, spec, dev, a.heap_low, a.heap_high, a.heap_step, a.heap_seconds)
            log("%s: heap %s KiB" % (spec.name, row["heap"]["kib"]))
    finally:
        if pid is not None:
            run.reaper.stop(pid)
        op.close()
    return row


def short(w):
    return "%.2f ms CPU/min (%.2f with children), %.1f wakeups/min, %d invol./min, RssAnon %s KiB%s%s" % (
        w["cpu_own_ms_per_min"], w["cpu_with_children_ms_per_min"], w["wakeups_per_min"],
        w["involuntary_per_min"], w["RssAnon_kib"],
        ", processes/min %s %s" % (w["processes_per_min"], w["processes_by_kind_per_min"])
        if "processes_per_min" in w else "",
        "".join(", %s %.2f ms/min" % (k, w[k]["cpu_ms_per_min"]) for k in ("ubusd", "publisher") if k in w))


# ---- heap ---------------------------------------------------------------------------

HEAP_PHASE = dict(DUE, keepalive=30)


def heap_trial(run, spec, dev, heap, seconds):
    """One run with -X heapsize=heap: True when the full cycle worked (start,
    CONNECT, a job PROCESSED with success, an upload of 3 or more documents
    answered 200, the agent still running, no MemoryError in its log)."""
    workdir = tempfile.mkdtemp(prefix="heap-", dir=dev.dir)
    stats_path = "/heap/%d/%d" % (dev.n, heap)
    op = Operator(run.broker.port, dev.base)
    pid = None
    try:
        end = time.monotonic() + seconds
        logp = os.path.join(workdir, "agent.log")

        def dead():
            return not run.reaper.alive(pid) or b"MemoryError" in (read(logp, b"") or b"")

        try:
            pid, _, logp = run.start(spec, dev, op, HEAP_PHASE, workdir, stats_path,
                                     extra_argv=["-X", "heapsize=%d" % heap],
                                     extra_env={"SOCKETMAN_TIME_SCALE": "15"})
        except RuntimeError:
            return False
        jid = "heap-%d" % heap
        since = op.mark()
        op.send_job(jid, "echo ok")
        try:
            op.wait(lambda t, r, e: op.processed(jid)(t, r, e) and (e.get("meta") or {}).get("success") is True,
                    max(1.0, end - time.monotonic()), since, give_up=dead)
        except TimeoutError:
            return False
        while time.monotonic() < end and not dead():
            ups = [r for r in run.api.got("POST", stats_path) if r.answered == 200 and len(r.documents()) >= 3]
            if ups:
                return not dead()
            time.sleep(0.1)
        return False
    finally:
        if pid is not None:
            run.reaper.stop(pid)
        op.close()
        shutil.rmtree(workdir, ignore_errors=True)


def smallest_heap(run, spec, dev, low_kib, high_kib, step_kib, seconds):
    """Bisection over -X heapsize: {"kib": smallest that worked, "trials":
    [(KiB, ok)]}; kib None when even high_kib fails."""
    trials = []
    lo, hi = low_kib, high_kib
    ok = heap_trial(run, spec, dev, hi * 1024, seconds)
    trials.append((hi, ok))
    if not ok:
        return {"kib": None, "trials": trials, "step_kib": step_kib}
    while hi - lo > step_kib:
        mid = (lo + hi) // 2 // step_kib * step_kib
        if mid <= lo:
            mid = lo + step_kib
        if mid >= hi:
            break
        ok = heap_trial(run, spec, dev, mid * 1024, seconds)
        trials.append((mid, ok))
        log("%s: heapsize %d KiB: %s" % (spec.name, mid, "full cycle" if ok else "fails"))
        if ok:
            hi = mid
        else:
            lo = mid
    return {"kib": hi, "trials": trials, "step_kib": step_kib, "failed_at_kib": lo}


# ---- floors ---------------------------------------------------------------------------

def floor_system(native, n=50):
    """Median ms of os.system("true") in the native MicroPython 1.23: the
    fork and exec of a shell that every job costs at least."""
    code = ("import os, time\nts = []\nfor i in range(%d):\n t = time.ticks_us()\n os.system('true')\n"
            " ts.append(time.ticks_diff(time.ticks_us(), t))\nts.sort()\nprint(ts[len(ts) // 2])\n" % n)
    r = subprocess.run([native, "-c", code], capture_output=True, text=True, timeout=60)
    return int(r.stdout.strip()) / 1000.0 if r.returncode == 0 else None


def floor_broker(run, n):
    """Median ms of a job round trip with no agent: an echo client in the
    bench (paho, Nagle off) answers every job at once with PROCESSED. What
    the broker and the measuring clients cost of every round trip."""
    base = "%s/%s/floor" % (TOPIC, KEY)
    echo = _client("echo", run.broker.port)

    def answer(client, userdata, m):
        # Acknowledge at once (as the agent does): a delayed ACK here would
        # hold the broker's next packet 40 ms and be counted as the broker's.
        client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        job = json.loads(m.payload)
        client.publish("pub/" + base, json.dumps({"id": job["id"], "event_type": "PROCESSED", "meta": {}}), qos=1)

    echo.on_message = answer
    done = threading.Event()
    echo.on_subscribe = lambda *a: done.set()
    echo.subscribe("sub/" + base, 1)
    done.wait(10)
    op = Operator(run.broker.port, base)
    try:
        rtts = []
        for i in range(n):
            jid = "floor-%d" % i
            since = op.mark()
            t0 = time.perf_counter()
            op.send_job(jid, "true")
            rtts.append((op.wait(op.processed(jid), 10, since) - t0) * 1000.0)
        return round(pct(rtts, 50), 3)
    finally:
        op.close()
        echo.loop_stop()
        echo.disconnect()


# ---- the table ---------------------------------------------------------------------------

COLUMNS = ["agent", "start->CONNECT", "job p50 / p90 / p99", "VmRSS / RssAnon",
           "idle CPU, own (with children)", "wakeups/min (involuntary)", "processes/min (collection)",
           "nothing due: CPU, wakeups/min", "smallest heap", "flash"]


def ms(x):
    return "%.1f ms" % x if x >= 10 else "%.2f ms" % x


def cells(row):
    """The row's table cells, in COLUMNS order: a figure, "qemu" (measured,
    but under emulation not the router's: see the JSON), "n/a" (does not
    apply to this agent) or "-" (not measured in this run)."""
    emu = row["emulated"]
    out = [row["label"]]
    s = row.get("start_to_connect_ms")
    out.append("-" if s is None else ("qemu" if emu else ms(s["p50"])))
    j = row.get("job_rtt_ms")
    out.append("qemu" if emu else ("-" if j is None else "%s / %s / %s" % (ms(j["p50"]), ms(j["p90"]),
                                                                             ms(j["p99"]))))
    w = row.get("idle")
    if w is None:
        out += ["-", "-", "-", "-"]
    else:
        out.append("qemu" if emu else "%.1f MiB / %d KiB" % (w["VmRSS_kib"] / 1024.0, w["RssAnon_kib"]))
        out.append("qemu" if emu else "%.1f ms/min = %.4f %% (%.1f ms/min)" % (
            w["cpu_own_ms_per_min"], w["cpu_own_pct_core"], w["cpu_with_children_ms_per_min"]))
        if emu:
            mt = w["main_thread"]
            out.append("%.1f (%.1f), guest thread" % (mt["wakeups_per_min"], mt["involuntary_per_min"]))
        else:
            out.append("%.1f (%.1f)" % (w["wakeups_per_min"], w["involuntary_per_min"]))
        if "processes_per_min" in w:
            out.append("%.1f (%.1f)" % (w["processes_per_min"], w["processes_by_kind_per_min"].get("collection", 0)))
        else:
            out.append("n/a")
    q = row.get("nothing_due")
    if q is None:
        out.append("-")
    elif emu:
        out.append("qemu, %.1f wakeups (guest thread)" % q["main_thread"]["wakeups_per_min"])
    else:
        out.append("%.1f ms/min, %.1f" % (q["cpu_own_ms_per_min"], q["wakeups_per_min"]))
    if not row["socketman"]:
        out.append("n/a")
    else:
        h = row.get("heap")
        out.append("-" if h is None else ("fails at %d KiB" % h["trials"][0][0] if h["kib"] is None
                                          else "%d KiB" % h["kib"]))
    f = row.get("flash_bytes")
    out.append("n/a" if f is None else "{:,} B".format(f).replace(",", " ") + (
        " (%s)" % row["flash_what"] if row.get("flash_what") else ""))
    return out


def markdown(rows):
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join(r["cells"]) + " |")
    return "\n".join(lines)


def target_check(rows):
    """Issue 16's targets against the bundle row and the MIPS heap: a list
    of (what, target, measured, met)."""
    by = {r["agent"]: r for r in rows}
    out = []
    b = by.get("bundle")
    if b:
        if b.get("start_to_connect_ms"):
            out.append(("bundle start -> CONNECT, ms", TARGETS["start_ms"], b["start_to_connect_ms"]["p50"]))
        if b.get("job_rtt_ms"):
            out.append(("bundle job p50, ms", TARGETS["job_p50_ms"], b["job_rtt_ms"]["p50"]))
        if b.get("idle"):
            out.append(("bundle idle CPU (own), ms a minute", TARGETS["idle_cpu_ms_per_min"],
                        b["idle"]["cpu_own_ms_per_min"]))
        if b.get("nothing_due"):
            out.append(("bundle wakeups a minute, nothing due", TARGETS["nothing_due_wakeups_per_min"],
                        b["nothing_due"]["wakeups_per_min"]))
        if b.get("flash_bytes") is not None:
            out.append(("bundle bytes", TARGETS["bundle_bytes"], b["flash_bytes"]))
    m = by.get("mips")
    if m and m.get("heap") and m["heap"]["kib"] is not None:
        out.append(("MIPS smallest heap, KiB", TARGETS["mips_heap_kib"], m["heap"]["kib"]))
    u, mu = by.get("ubus"), by.get("mips-ubus")
    if u and u.get("idle"):
        w = u["idle"]
        out.append(("ubus idle CPU own+children, ms a minute", UBUS_TARGETS["idle_cpu_with_children_ms_per_min"],
                    w["cpu_with_children_ms_per_min"]))
        if "processes_per_min" in w:
            out.append(("ubus collection processes a minute", UBUS_TARGETS["collection_processes_per_min"],
                        w["processes_by_kind_per_min"].get("collection", 0)))
    cost = rows_cost(rows)
    if cost and u and u.get("flash_bytes") is not None:
        out.append(("ubus bundle bytes (93 750 + the client's)",
                    UBUS_TARGETS["bundle_bytes_before"] + cost["bytes"], u["flash_bytes"]))
    if cost and cost.get("heap_kib") is not None and mu and mu.get("heap") and mu["heap"]["kib"] is not None:
        out.append(("ubus MIPS smallest heap, KiB (152 + the client's)",
                    UBUS_TARGETS["mips_heap_kib_before"] + cost["heap_kib"], mu["heap"]["kib"]))
    return [{"what": w, "target": t, "measured": v, "met": v <= t} for w, t, v in out]


def rows_cost(rows):
    for r in rows:
        if r.get("client_cost"):
            return r["client_cost"]
    return None


def client_cost(bundle):
    """What the ubus client costs (issue 21): the bytes of its modules in
    the bundle, and the heap their code takes on the MIPS build (gc.mem_alloc
    around importing them), in KiB rounded up; heap_kib None without MIPS."""
    lib = os.path.join(bundle, "lib", "socketman")
    out = {"modules": list(UBUS_MODULES),
           "bytes": sum(os.path.getsize(os.path.join(lib, m + ".mpy")) for m in UBUS_MODULES), "heap_kib": None}
    code = ("import sys, gc\nsys.path.insert(0, %r)\nimport socketman.rt, socketman.log, socketman.text\n"
            "gc.collect()\na = gc.mem_alloc()\nimport socketman.ubus, socketman.ubusstatus\ngc.collect()\n"
            "print(gc.mem_alloc() - a)\n" % os.path.join(bundle, "lib"))
    try:
        r = subprocess.run(runtimes.interpreter("1.23-mips") + ["-c", code], capture_output=True, text=True,
                           timeout=120)
        if r.returncode == 0:
            out["heap_bytes"] = int(r.stdout.strip())
            out["heap_kib"] = -(-out["heap_bytes"] // 1024)
    except (runtimes.Missing, ValueError):
        pass
    return out


# ---- main ---------------------------------------------------------------------------

def machine():
    cpu = ""
    for line in (read("/proc/cpuinfo", b"") or b"").decode().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    os_name = ""
    for line in (read("/etc/os-release", b"") or b"").decode().splitlines():
        if line.startswith("PRETTY_NAME="):
            os_name = line.split("=", 1)[1].strip('"')
    mem = 0
    for line in (read("/proc/meminfo", b"") or b"").decode().splitlines():
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1]) >> 10
    mosq = subprocess.run([mosquitto_bin(), "-h"], capture_output=True, text=True).stdout.splitlines()
    qemu = ""
    try:
        qemu = subprocess.run([runtimes.qemu_mips(), "--version"], capture_output=True, text=True).stdout.split(
            "\n")[0]
    except runtimes.Missing:
        pass
    return {"host": platform.node(), "cpu": cpu, "cores": os.cpu_count(), "mem_mib": mem,
            "kernel": platform.release(), "os": os_name, "python": platform.python_version(),
            "mosquitto": mosq[0] if mosq else "", "qemu": qemu,
            "loadavg_at_start": (read("/proc/loadavg", b"") or b"").decode().split()[:3]}


def commit():
    def git(*a):
        r = subprocess.run(["git", "-C", ROOT] + list(a), capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else ""
    sha = git("rev-parse", "--short", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return sha + ("-dirty" if dirty else "")


def specs(args, bundle):
    """The rows to measure, in order."""
    out = []
    want = [r for r in args.rows.split(",") if r]
    for name in want:
        if name not in ("bundle", "sources", "mips", "ubus", "mips-ubus"):
            raise SystemExit("footprint: unknown row %r (bundle, sources, mips, ubus, mips-ubus)" % name)
    if "ubus" in want or "mips-ubus" in want:
        hubus.folder()  # Missing names the folder
    if "bundle" in want or "sources" in want or "ubus" in want:
        native = runtimes.native_micropython("1.23")
    if "bundle" in want:
        main = os.path.join(bundle, "main.py")
        out.append(AgentSpec("bundle", "SocketMan .mpy bundle, native 1.23", [native, main, "--config={config}"],
                             socketman=True, interp=[native], main=main, flash=tree_bytes(bundle),
                             flash_what="bundle"))
    if "sources" in want:
        main = os.path.join(ROOT, "main.py")
        out.append(AgentSpec("sources", "SocketMan sources, native 1.23", [native, main, "--config={config}"],
                             socketman=True, interp=[native], main=main, flash=sources_bytes(),
                             flash_what="sources"))
    if "mips" in want:
        interp = runtimes.interpreter("1.23-mips")
        main = os.path.join(bundle, "main.py")
        out.append(AgentSpec("mips", "SocketMan .mpy bundle, 1.23 MIPS 32-bit (qemu)",
                             interp + [main, "--config={config}"], socketman=True, emulated=True, interp=interp,
                             main=main, flash=tree_bytes(bundle), flash_what="bundle"))
    if "ubus" in want:
        main = os.path.join(bundle, "main.py")
        out.append(AgentSpec("ubus", "SocketMan .mpy bundle, native 1.23, over ubus",
                             [native, main, "--config={config}"], socketman=True, interp=[native], main=main,
                             flash=tree_bytes(bundle), flash_what="bundle", ubus=True))
    if "mips-ubus" in want:
        interp = runtimes.interpreter("1.23-mips")
        main = os.path.join(bundle, "main.py")
        out.append(AgentSpec("mips-ubus", "SocketMan .mpy bundle, 1.23 MIPS 32-bit (qemu), over ubus",
                             interp + [main, "--config={config}"], socketman=True, emulated=True, interp=interp,
                             main=main, flash=tree_bytes(bundle), flash_what="bundle", ubus=True))
    sizes = {}
    for item in args.other_size or []:
        name, _, path = item.partition("=")
        if not path or not os.path.exists(path):
            raise SystemExit("footprint: --other-size %r: want NAME=PATH of an existing file or directory" % item)
        sizes[name] = sizes.get(name, 0) + tree_bytes(path)
    for item in args.other or []:
        name, _, cmd = item.partition("=")
        if not name or not cmd.strip() or not re.match(r"^[\w.-]+$", name):
            raise SystemExit("footprint: --other %r: want NAME=COMMAND (NAME of letters, digits, . _ -)" % item)
        try:
            words = shlex.split(cmd)
        except ValueError as e:
            raise SystemExit("footprint: --other %s: %s" % (name, e))
        out.append(AgentSpec(name, name, words, flash=sizes.get(name), flash_what="given files" if name in sizes
                             else ""))
    for name in sizes:
        if name not in [s.name for s in out]:
            raise SystemExit("footprint: --other-size %s: no --other of that name" % name)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="few starts, 20 jobs, 10 s idle, coarse heap (development)")
    ap.add_argument("--rows", default="bundle,sources,mips,ubus,mips-ubus",
                    help="SocketMan rows, comma-separated ('' for none)")
    ap.add_argument("--other", action="append", metavar="NAME=COMMAND", help="another agent (see the contract)")
    ap.add_argument("--other-size", action="append", metavar="NAME=PATH", help="a file of that agent, for flash")
    ap.add_argument("--starts", type=int)
    ap.add_argument("--jobs", type=int)
    ap.add_argument("--idle", type=float, help="seconds of each idle window")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds before an idle window")
    ap.add_argument("--pause", type=float, default=0.5, help="seconds between stopping and starting")
    ap.add_argument("--no-heap", dest="heap", action="store_false")
    ap.add_argument("--heap-low", type=int, default=64, help="KiB")
    ap.add_argument("--heap-high", type=int, default=512, help="KiB")
    ap.add_argument("--heap-step", type=int, help="KiB")
    ap.add_argument("--heap-seconds", type=float, default=30.0, help="time a heap trial gets")
    ap.add_argument("--floor-jobs", type=int, default=50)
    ap.add_argument("--json", metavar="OUT")
    ap.add_argument("--markdown", metavar="OUT", help="write the table (markdown) here too")
    args = ap.parse_args()
    for k, v in (QUICK if args.quick else FULL).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.idle <= 0 or args.starts < 1 or args.jobs < 0:
        raise SystemExit("footprint: --idle > 0, --starts >= 1 and --jobs >= 0 please")

    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    tmp = tempfile.mkdtemp(prefix="footprint-", dir=TMPFS)
    ok = True
    try:
        # Everything that uses subprocess comes before the reaper.
        bundle = os.path.join(tmp, "bundle")
        r = subprocess.run(["sh", os.path.join(ROOT, "tools", "build_mpy.sh"), "--out", bundle],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit("footprint: the bundle does not build:\n" + r.stderr)
        log(r.stdout.strip())
        info = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "commit": commit(),
                "machine": machine(), "settings": {k: getattr(args, k) for k in (
                    "quick", "starts", "jobs", "idle", "settle", "heap_low", "heap_high", "heap_step",
                    "heap_seconds")}, "due": DUE, "nothing_due": NOTHING_DUE, "targets": TARGETS}
        try:
            rows_spec = specs(args, bundle)
        except runtimes.Missing as e:
            raise SystemExit("footprint: %s" % e)
        interps = {}
        for key in ("1.23", "1.23-mips"):
            try:
                interps[key] = os.path.getsize(runtimes.native(key))
            except runtimes.Missing:
                pass
        info["interpreter_bytes"] = interps
        cost = client_cost(bundle) if any(s.ubus for s in rows_spec) else None
        info["ubus_client_cost"] = cost
        floors = {}
        if "1.23" in interps:
            floors["system_true_ms"] = floor_system(runtimes.native("1.23"))
        run = Run(args, tmp)
        rows = []
        try:
            floors["broker_echo_ms"] = floor_broker(run, args.floor_jobs)
            info["floors"] = floors
            log("floors: %s" % floors)
            for n, spec in enumerate(rows_spec, 1):
                log("measuring %s: %s" % (spec.name, " ".join(spec.words)))
                try:
                    row = measure(run, spec, n)
                except RuntimeError as e:
                    ok = False
                    log("%s FAILED: %s" % (spec.name, e))
                    row = {"agent": spec.name, "label": spec.label, "socketman": spec.socketman,
                           "emulated": spec.emulated, "command": spec.words, "error": str(e)[:2000],
                           "flash_bytes": spec.flash, "flash_what": spec.flash_what}
                if spec.ubus:
                    row["client_cost"] = cost
                row["cells"] = cells(row)
                rows.append(row)
        finally:
            run.close()
        info["machine"]["loadavg_at_end"] = (read("/proc/loadavg", b"") or b"").decode().split()[:3]
        info["rows"] = rows
        info["columns"] = COLUMNS
        info["target_check"] = target_check(rows)
        info["table_markdown"] = markdown(rows)
        report(info)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(info, f, indent=1)
        if args.markdown:
            with open(args.markdown, "w") as f:
                f.write(info["table_markdown"] + "\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


def report(info):
    m = info["machine"]
    print("measured %s on %s (%s, %d cores, %d MiB, Linux %s, %s), commit %s" % (
        info["date"][:10], m["host"], m["cpu"], m["cores"], m["mem_mib"], m["kernel"], m["os"], info["commit"]))
    print("%s; %s; load average %s at the start, %s at the end" % (
        m["mosquitto"], m["qemu"] or "no qemu", " ".join(m["loadavg_at_start"]), " ".join(m["loadavg_at_end"])))
    s = info["settings"]
    print("%d starts, %d jobs, idle windows of %g s, heap step %d KiB%s" % (
        s["starts"], s["jobs"], s["idle"], s["heap_step"], " (--quick)" if s["quick"] else ""))
    print("interpreters: %s" % ", ".join("%s %s B" % (k, "{:,}".format(v).replace(",", " "))
                                         for k, v in info["interpreter_bytes"].items()))
    f = info.get("floors", {})
    print("floors: os.system(\"true\") in native 1.23 %s ms; job round trip with an echo client and no agent %s ms"
          % (f.get("system_true_ms"), f.get("broker_echo_ms")))
    print()
    print(info["table_markdown"])
    print()
    for r in info["rows"]:
        if r.get("error"):
            print("%s: FAILED: %s" % (r["agent"], r["error"].splitlines()[0]))
        q = r.get("nothing_due")
        if q and (q["mqtt_messages_in_window"] or q["posts_in_window"]):
            print("%s: in the nothing-due window the agent sent %d MQTT messages and %d POSTs" % (
                r["agent"], q["mqtt_messages_in_window"], q["posts_in_window"]))
    c = info.get("ubus_client_cost")
    if c:
        print("the ubus client: %s B of bundle (%s), %s B of heap on MIPS" % (
            c["bytes"], ", ".join(c["modules"]), c.get("heap_bytes")))
    for r in info["rows"]:
        w = r.get("idle") or {}
        for k in ("ubusd", "publisher"):
            if k in w:
                print("%s: %s over the idle window: %.2f ms CPU a minute, %.1f wakeups a minute" % (
                    r["agent"], k, w[k]["cpu_ms_per_min"], w[k]["wakeups_per_min"]))
        if "processes_by_kind_per_min" in w:
            print("%s: processes a minute by kind: %s%s" % (r["agent"], w["processes_by_kind_per_min"], "".join(
                "\n  other: " + x for x in w.get("other_processes_examples", []))))
    for t in info["target_check"]:
        print("target: %-40s at most %8g, measured %8g: %s" % (t["what"], t["target"], t["measured"],
                                                              "met" if t["met"] else "MISSED"))


if __name__ == "__main__":
    sys.exit(main())
