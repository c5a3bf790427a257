# Processes, the same on both runtimes: shell commands started in the
# background and followed through files (MicroPython has no subprocess and
# no threads), their exit status, killing a command with everything it
# started, and Batch, a directory of commands run together. With a Bell,
# each command rings it when it ends, so the loop sleeps until then instead
# of looking at files every few milliseconds.
#
# Every background command runs in a session (and so a process group) of
# its own: a job's `kill 0` (`trap 'kill 0' EXIT` is common in scripts)
# or any signal to its group reaches the job alone, never the agent and
# its launcher. Killing a command kills its group, which also takes the
# children that cleared their environment (`env -i`, `su -`) and so lost
# the tag the /proc sweep finds them by.
import errno
import os

from . import fs, log, rt

# How a command gets its own session, chosen at the first command: setsid
# (util-linux, toybox, BusyBox when built with it), else BusyBox's
# start-stop-daemon -b, which calls setsid() and which stock OpenWRT has
# (its BusyBox is built without setsid), else none (said once).
SETSID, SSD, SHARED = "setsid", "start-stop-daemon", "shared"
_detach = []
LOOK_MS = 500  # how often a command that wrote no exit status is looked for in /proc


def getenv(name, default=None):
    """The environment variable name, or default when it is not set."""
    v = os.getenv(name)
    return default if v is None else v


def shell_quote(s):
    """s as one sh word, whatever it holds."""
    return "'" + s.replace("'", "'\"'\"'") + "'"


def system(cmd):
    """Run a short shell command and wait: its exit status (0..255; 128+n
    for a signal n). Only for commands that end at once."""
    st = os.system(cmd)
    # Both runtimes return the raw wait status from os.system.
    if st & 0x7F:
        return 128 + (st & 0x7F)
    return (st >> 8) & 0xFF


_bell = []  # the path of the open Bell's FIFO, when there is one


def poll_ms(fast_ms):
    """How long a task waiting for a background command sleeps between
    looks: fast_ms with no bell; with one, a second (the bell wakes it
    earlier, this only covers a ring that was lost)."""
    return 1000 if _bell else fast_ms


def spawn(script, workdir, marker):
    """Run the shell script in the background and return at once. Its output
    (stdout and stderr) goes to workdir/out, its exit status to workdir/rc
    (complete once it ends in a newline), the background shell's pid to
    workdir/pid. marker tags every process it starts, for kill_tree. Few
    processes on purpose: each fork costs milliseconds on a router."""
    # A status or pid left by an earlier command in this directory would be
    # read as this one's: remove them by name, never trusting a listing (a
    # 32-bit program under qemu-user lists nothing on ext4).
    for name in ("rc", "pid"):
        if not fs.remove(workdir + "/" + name) and fs.stat(workdir + "/" + name):
            raise OSError(errno.EEXIST, "cannot remove %s/%s" % (workdir, name))
    w, q = shell_quote(workdir), shell_quote
    # The wrapper is exec'd with the tag in its environment, so kill_tree
    # finds it too and it cannot write an exit status for a killed job. The
    # script runs in a forked subshell (no exec: a process fewer), which
    # inherits the tag. The wrapper catches the signals a job sends its own
    # group (kill 0), so it lives to write the job's exit status; the
    # subshell gets the default actions back (caught signals are reset).
    inner = "trap : HUP INT TERM; ( . %s ) > %s/out 2>&1 < /dev/null; echo $? > %s/rc" % (q(script), w, w)
    if _bell:
        # <> opens without waiting for a reader: a command never hangs on
        # the bell, whatever state the agent is in.
        inner += "; printf . 1<>%s 2>/dev/null" % q(_bell[0])
    how = detach_mode()
    if how == SSD:
        # -m -p: the daemon writes the wrapper's pid itself (its own pid is
        # gone at once); the missing pid file means "not running" to it.
        cmd = ("start-stop-daemon -S -b -m -p %s/pid -x /bin/sh -- -c %s > /dev/null 2>&1 < /dev/null"
               % (w, q(inner)))
    else:
        cmd = ("exec %ssh -c %s > /dev/null 2>&1 < /dev/null & echo $! > %s/pid"
               % ("setsid " if how == SETSID else "", q(inner), w))
    # The tag goes into the environment system()'s shell starts with, not
    # an assignment in the command: a child forked from that shell shows
    # its environment in /proc from the fork on, and the pid in the pid
    # file always names a tagged process (ended() relies on it). The
    # agent's own /proc environment does not change.
    if not hasattr(os, "putenv"):  # a MicroPython built without it: the tag from the exec on
        os.system("SOCKETMAN_TAG=%s %s" % (q(marker), cmd))
        return
    os.putenv("SOCKETMAN_TAG", marker)
    try:
        os.system(cmd)
    finally:
        os.unsetenv("SOCKETMAN_TAG")


def detach_mode():
    """How background commands get a session of their own: SETSID, SSD or
    SHARED (neither tool: they share the agent's process group). Looked up
    once, and said in the log."""
    if not _detach:
        st = system("command -v setsid >/dev/null 2>&1 && exit 3;"
                    " command -v start-stop-daemon >/dev/null 2>&1 && exit 4; exit 0")
        how = SETSID if st == 3 else SSD if st == 4 else SHARED
        _detach.append(how)
        if how == SHARED:
            log.warn("neither setsid nor start-stop-daemon in PATH: background commands share the agent's "
                     "process group, and a job that signals its group (kill 0) stops the agent")
        else:
            log.info("background commands run in a session of their own (%s)" % how)
    return _detach[0]


def run_detached(cmd):
    """Start the shell command cmd in the background, in a session of its
    own, without any file: its output is discarded. For a recovery command
    when cache_dir cannot be written."""
    how, q = detach_mode(), shell_quote
    if how == SSD:
        # -p /dev/null: a pid file that names no process, so the daemon
        # does not take another sh for this one "already running".
        system("start-stop-daemon -S -b -p /dev/null -x /bin/sh -- -c %s </dev/null >/dev/null 2>&1" % q(cmd))
    elif how == SETSID:
        system("setsid sh -c %s </dev/null >/dev/null 2>&1 &" % q(cmd))
    else:
        system("( %s\n) </dev/null >/dev/null 2>&1 &" % cmd)


def exit_status(workdir):
    """The exit status spawn() wrote (int), or None while the command runs."""
    raw = fs.read_file(workdir + "/rc", 16)
    if not raw or not raw.endswith(b"\n"):
        return None
    raw = raw.strip()
    return int(raw) if raw.isdigit() else 1


def _tag(marker):
    return ("SOCKETMAN_TAG=" + marker).encode() + b"\0"


def _tagged(pid, want):
    env = fs.read_file("/proc/" + pid + "/environ")
    return bool(env) and (b"\0" + env).find(b"\0" + want) >= 0


def tagged_pids(marker):
    """Pids (str) of every process carrying marker in its environment (Linux
    /proc), which catches children that were re-parented after their parent
    died."""
    want = _tag(marker)
    return [name for name in fs.listdir("/proc") if name.isdigit() and _tagged(name, want)]


def _stat(pid):
    """The fields of /proc/<pid>/stat after the command name (bytes: state,
    ppid, pgrp, ...); [] when there is no such process."""
    raw = fs.read_file("/proc/%s/stat" % pid, 1024)
    return raw[raw.rfind(b")") + 1:].split() if raw else []


def kill_tree(marker):
    """Kill every process tagged with marker and every process group one of
    them leads or belongs to (never the agent's own); how many tagged
    processes there were."""
    own = _stat("self")[2:3]
    killed = set()
    for _ in range(5):  # again, for anything forked while we looked
        pids = [p for p in tagged_pids(marker) if p not in killed]
        if not pids:
            break
        groups = []
        for p in pids:
            g = _stat(p)[2:3]
            if g and g != own and g[0] not in groups and g[0] not in (b"0", b"1"):
                groups.append(g[0])
        # Stop them all first, so no shell lives to print "Killed" into
        # the job's output when its child dies. -PGID is the group (no
        # "--" before it: dash's kill refuses that).
        ids = " ".join(["-" + g.decode() for g in groups] + pids)
        os.system("kill -STOP %s 2>/dev/null; kill -KILL %s 2>/dev/null" % (ids, ids))
        killed.update(pids)
    return len(killed)


def ended(workdir, marker):
    """True when the command spawn() started in workdir with marker runs no
    more, whether or not it wrote its exit status: its shell was killed
    (a job that sent SIGKILL to its own group), or could not write rc (a
    full or read-only cache_dir). Reads a few /proc files; the whole /proc
    only while the pid file is missing."""
    raw = fs.read_file(workdir + "/pid", 32)
    try:
        pid = raw.strip().decode() if raw else ""
    except UnicodeError:
        pid = ""
    if not pid.isdigit():
        return not tagged_pids(marker)
    f = _stat(pid)
    if not f or f[0] == b"Z":
        return True
    # A pid the system gave to another process since: an environment
    # without the tag. An empty one says nothing: a process in the middle
    # of exec() shows none for a moment.
    env = fs.read_file("/proc/" + pid + "/environ")
    return bool(env) and (b"\0" + env).find(b"\0" + _tag(marker)) < 0


def lost(workdir):
    """Why a command that ended wrote no exit status in workdir (str)."""
    try:
        st = os.statvfs(workdir)
    except (OSError, AttributeError):
        st = None
    if st and st[8] & 1:  # ST_RDONLY
        return "cache_dir is read-only"
    if st and not st[4]:
        return "cache_dir full"
    return "its shell ended without writing it"


class Batch:
    """Shell commands run together in the background, in their own
    directory; each writes its output to a file there, and the loop polls
    for the end. Used for the collection commands, the neighbour scan, the
    system gzip, recovery commands and network-job steps, which can take
    seconds. OSError from start() when the directory cannot be written."""

    def __init__(self, workdir, tag, timeout_ms):
        self.dir = workdir
        # With the directory: another agent on the host (its own
        # cache_dir) never finds or kills this one's commands.
        self.tag = "%s:%s" % (tag, workdir)
        self.timeout_ms = timeout_ms
        self.started = None
        self.looked = 0
        self.lost = None   # why the last run wrote no exit status (str), None when it did
        fs.makedirs(workdir)

    def running(self):
        """True from start() until poll() saw the end."""
        return self.started is not None

    def start(self, commands):
        """commands: shell lines, run in workdir (write outputs relative to it).
        The outputs of the last run are gone before the first command runs,
        so a command that fails writes nothing rather than leaving an old
        answer to be read as new. OSError when workdir cannot be written."""
        with open(self.dir + "/batch.sh", "w") as f:
            # The shell clears the directory, not the agent: its listing is
            # the only one that cannot come back empty by mistake.
            f.write("cd %s || exit 1\nfor f in *; do case $f in batch.sh|out|pid) ;; *) rm -f \"./$f\" ;; esac; done\n"
                    % shell_quote(self.dir))
            for c in commands:
                f.write(c + "\n")
        self.started = self.looked = rt.ms()
        self.lost = None
        spawn(self.dir + "/batch.sh", self.dir, self.tag)

    def poll(self):
        """None while it runs (or was never started); True when done; False
        when it ran past its timeout and was killed. Done without an exit
        status (a full or read-only cache_dir): True at once, with .lost
        saying why; its outputs are what it could write."""
        if self.started is None:
            return None
        if exit_status(self.dir) is not None:
            self.started = None
            return True
        now = rt.ms()
        if now - self.started > self.timeout_ms:
            kill_tree(self.tag)
            self.started = None
            return False
        if now - self.looked >= LOOK_MS:
            self.looked = now
            if ended(self.dir, self.tag) and exit_status(self.dir) is None:
                self.started = None
                self.lost = lost(self.dir)
                return True
        return None

    def read(self, name, limit=262144):
        """Bytes of the output file name (at most limit), or None."""
        return fs.read_file(self.dir + "/" + name, limit)


class Bell:
    """A FIFO that background commands ring when they end (spawn), which the
    loop polls like a socket: the tasks in `waiting` are woken at once. A
    "q" written to it (by the OpenWRT launcher on procd's SIGTERM) calls
    on_stop(): a clean stop without a signal, which MicroPython can only
    take as an exception raised wherever the process is. Nothing rings
    until open() worked; errors leave the agent polling files, as before."""

    def __init__(self, path, wake, on_stop):
        self.path = path
        self.wake = wake          # wake(task): the loop's
        self.on_stop = on_stop
        self.waiting = []         # loop tasks to wake when a command ends
        self.f = None

    def open(self):
        """Make the FIFO (if it is not one already) and open it; False, and
        polling as before, when that cannot be done."""
        st = fs.stat(self.path)
        if st is None or st[4] or st[2]:  # missing, or a file or directory: make it anew
            fs.remove(self.path)
            system("mkfifo -m 600 %s 2>/dev/null" % shell_quote(self.path))
        try:
            # Read-write: opening a FIFO to read only would wait for a writer.
            self.f = open(self.path, "r+b", 0)
        except OSError:
            return False
        _bell[:] = [self.path]
        return True

    def wants(self):
        return [(self.f, rt.POLLIN)] if self.f is not None else []

    def ready(self, f, events):
        b = self.f.read(1)  # one byte a ring: a blocking read of more would wait for it
        if b == b"q":
            self.on_stop()
            return
        for t in self.waiting:
            self.wake(t)
