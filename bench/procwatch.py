"""What the footprint bench needs for the ubus path (issue 21), apart from
bench/footprint.py:

- Forks: every process an agent starts, and whose it is, from the Linux
  proc connector (netlink; root or CAP_NET_ADMIN): a fork in the agent's
  tree is counted, and the tree of each process the agent starts gets a
  kind from the command line of its first exec (a collection batch, the
  system gzip of an upload, the neighbour scan, anything else). Only while
  a window is open, since every fork of the machine passes through it.
- The bus: OpenWRT's ubusd and the Lua publisher of the tests' captures
  (tests_cpython/helpers/ubus.py), started by the bench's reaper (which
  waits for every child of the bench: no subprocess once it exists).
"""
import errno
import os
import socket
import struct
import threading
import time

NETLINK_CONNECTOR = 11
CN_IDX_PROC = CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN, PROC_CN_MCAST_IGNORE = 1, 2
PROC_EVENT_FORK, PROC_EVENT_EXEC = 0x1, 0x2
_EVENT = 36  # nlmsghdr (16) + cn_msg (20): the proc_event starts here
KINDS = (("/collect", "collection"), ("/gzip", "upload gzip"), ("/survey", "neighbour scan"))


class Forks:
    """Counts the processes started in the tree of one pid while open.
    unavailable says why it cannot (None when it can)."""

    def __init__(self):
        self.unavailable = None
        self.sock = None
        self.lock = threading.Lock()
        self.root = None
        self.tree = {}      # pid -> kind (None until its first exec says)
        self.started = []   # pids forked in the tree, in order
        self.examples = []  # command lines of processes of no known kind (a few)
        self.lost = 0       # times the kernel dropped events (the counts are then low)
        try:
            s = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
            s.bind((0, CN_IDX_PROC))
            s.settimeout(0.2)
            self.sock = s
        except OSError as e:
            self.unavailable = "the proc connector is not open to us (%s): root or CAP_NET_ADMIN" % e
            return
        self.running = True
        self.listening = False
        self.thread = threading.Thread(target=self._run, name="forks", daemon=True)
        self.thread.start()

    def _op(self, op):
        payload = struct.pack("=I", op)
        cn = struct.pack("=IIIIHH", CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(payload), 0) + payload
        self.sock.send(struct.pack("=IHHII", 16 + len(cn), 3, 0, 0, 0) + cn)  # NLMSG_DONE

    def open(self, pid):
        """Count from now in pid's tree (the forks before are not known)."""
        if self.sock is None:
            return
        with self.lock:
            self.root, self.tree, self.started, self.lost, self.examples = pid, {pid: "agent"}, [], 0, []
        self._op(PROC_CN_MCAST_LISTEN)
        self.listening = True

    def close(self):
        """Stop counting: {"processes": n, "by_kind": {kind: n}, "lost_events": n},
        or None when it cannot count."""
        if self.sock is None:
            return None
        self._op(PROC_CN_MCAST_IGNORE)
        self.listening = False
        time.sleep(0.3)  # the events already on their way
        with self.lock:
            by = {}
            for p in self.started:
                k = self.tree.get(p) or "other"
                by[k] = by.get(k, 0) + 1
            return {"processes": len(self.started), "by_kind": by, "lost_events": self.lost,
                    "other_examples": self.examples}

    def _run(self):
        while self.running:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    self.lost += 1
                    continue
                return
            if len(data) < _EVENT + 16:
                continue
            what = struct.unpack_from("=I", data, _EVENT)[0]
            if what == PROC_EVENT_FORK:
                _, ptgid, cpid, ctgid = struct.unpack_from("=IIII", data, _EVENT + 16)
                with self.lock:
                    if ptgid in self.tree and cpid == ctgid:  # a process, not a thread
                        k = self.tree[ptgid]
                        self.tree[cpid] = None if k == "agent" else k
                        self.started.append(cpid)
            elif what == PROC_EVENT_EXEC:
                pid = struct.unpack_from("=I", data, _EVENT + 16)[0]
                with self.lock:
                    if pid in self.tree and self.tree[pid] is None:
                        self.tree[pid], cmd = _kind(pid)
                        if self.tree[pid] == "other" and len(self.examples) < 5:
                            self.examples.append(cmd[:300])

    def stop(self):
        if self.sock is not None:
            self.running = False
            self.thread.join(2)
            self.sock.close()


def _kind(pid):
    """(kind, command line) of a process that just called exec."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            cmd = f.read().decode("utf-8", "replace").replace("\0", " ")
        if not cmd:  # ended already: its name is still there
            with open("/proc/%d/comm" % pid, "rb") as f:
                cmd = "[%s]" % f.read().decode("utf-8", "replace").strip()
    except OSError:
        return "other", "(gone)"
    for needle, kind in KINDS:
        if needle + "-" in cmd or needle + "/" in cmd:
            return kind, cmd
    return "other", cmd


class Bus:
    """ubusd on tmp/ubus.sock and the publisher of the tests' captures,
    started by reaper (footprint.Reaper); pids for CPU figures."""

    def __init__(self, reaper, tmp):
        import sys
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests_cpython"))
        from helpers import ubus as hubus
        self.dir = hubus.folder()
        d = os.path.join(tmp, "ubus")
        os.makedirs(d, exist_ok=True)
        self.sock = os.path.join(d, "ubus.sock")
        data = os.path.join(d, "objects.lua")
        with open(data, "w") as f:
            f.write("return " + hubus.lua(hubus.objects()) + "\n")
        env = dict(os.environ)
        self.reaper = reaper
        self.ubusd = reaper.spawn("ubusd", [os.path.join(self.dir, "ubusd"), "-s", self.sock], env,
                                  os.path.join(d, "ubusd.log"), d, guard=True)
        end = time.monotonic() + 10
        while not os.path.exists(self.sock):
            if time.monotonic() > end:
                raise RuntimeError("ubusd did not make " + self.sock)
            time.sleep(0.02)
        log = os.path.join(d, "publisher.log")
        self.publisher = reaper.spawn("publisher", ["lua5.1", hubus.PUBLISHER, self.sock, data, self.dir], env,
                                      log, d, guard=True)
        while True:
            with open(log, "rb") as f:
                if b"ready" in f.read():
                    break
            if time.monotonic() > end or not reaper.alive(self.publisher):
                raise RuntimeError("the Lua publisher did not start; its log:\n" + open(log).read()[-2000:])
            time.sleep(0.02)

    def stop(self):
        self.reaper.stop(self.publisher)
        self.reaper.stop(self.ubusd)
