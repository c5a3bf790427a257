"""HTTP answers that misbehave, end to end (issue 24): the agent as a process
(CPython and the native MicroPython 1.23) uploading stats to a raw server
that answers early then resets, or answers 200 with a body that never
ends. The stats channel is where a wrong judgement costs most: documents
dropped, or sent again."""
import threading
import time
import urllib.parse

from helpers import openwrt, rawhttp
from helpers.device import config
from helpers.httpserver import Recorded

RUNTIMES = ("cpython", "mpy1.23")
FAST = {"SOCKETMAN_TIME_SCALE": "15", "SOCKETMAN_GZIP": "stored"}  # a document a second, an upload every 4 s


def start(agents, agent_cmd, tmp_path, url):
    env, fcfg = openwrt.make(tmp_path)
    env.update(FAST)
    return agents(agent_cmd, config(tmp_path, **dict(fcfg, stats_url=url)), tmp_path, env=env)


def recorded(head, body):
    lines = head.decode().split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = dict(x.split(": ", 1) for x in lines[1:] if ": " in x)
    u = urllib.parse.urlsplit(target)
    return Recorded(method, u.path, urllib.parse.parse_qs(u.query), headers, body)


class Uploads:
    """What a raw stats server took: the documents of each request it read
    whole, in order, and what it answered."""

    def __init__(self):
        self.lock = threading.Lock()
        self.taken = []     # documents of requests answered 2xx
        self.answers = []
        self.heads = 0

    def head(self, c):
        """(index of this request, its head, what came after) or None for a
        connection without one (the connectivity check's)."""
        head, rest = rawhttp.read_head(c)
        if not head:
            return None
        with self.lock:
            self.heads += 1
            return self.heads - 1, head, rest

    def took(self, status, rec=None):
        with self.lock:
            self.answers.append(status)
            if rec is not None and status // 100 == 2:
                self.taken.extend(rec.documents())

    def seqs(self):
        with self.lock:
            return [d["device"]["seq"] for d in self.taken]


def wait_for(cond, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end and not cond():
        time.sleep(0.1)
    return cond()


def test_an_early_413_then_a_reset_splits_the_batch(agent_cmd, agents, tmp_path):
    # issue 24, item 5: two heartbeats of 503 let documents pile up; the
    # third upload is answered 413 as soon as its head is in, then the
    # connection is reset. The batch must be split as for any 413, every
    # document delivered once, none dropped.
    up = Uploads()

    def handle(c, _):
        req = up.head(c)
        if req is None:
            return
        i, head, rest = req
        if i == 2:
            c.sendall(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n")
            up.took(413)
            rawhttp.reset(c)
            return
        rec = recorded(head, rawhttp.read_body(c, head, rest))
        status = 503 if i < 2 else 200
        c.sendall(b"HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n" % status)
        up.took(status, rec)

    srv = rawhttp.Server(handle)
    try:
        a = start(agents, agent_cmd, tmp_path, srv.url("/stats"))
        assert wait_for(lambda: len(up.answers) >= 5 and up.seqs()[:1] == [1], 40), up.answers
        a.wait_log("sending it in parts", timeout=20)
        seqs = up.seqs()
        assert seqs == list(range(1, len(seqs) + 1)), seqs  # each once, in order, none lost
        out = a.output()
        assert "dropped, counted" not in out and "refused one document" not in out
        assert a.stop() == 0
    finally:
        srv.close()


def test_a_200_whose_body_never_ends_takes_the_documents_once(agent_cmd, agents, tmp_path):
    # issue 24, item 6: the status line came, then the body stalls (even
    # connections) or streams on without end (odd ones). The documents were
    # taken: they must not go again.
    up = Uploads()
    stop = threading.Event()

    def handle(c, _):
        req = up.head(c)
        if req is None:
            return
        i, head, rest = req
        rec = recorded(head, rawhttp.read_body(c, head, rest))
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n{\"ok\":")
        up.took(200, rec)
        c.settimeout(0.5)
        while not stop.is_set():
            try:
                if i % 2:
                    c.sendall(b" " * 65536)
                elif not c.recv(1):
                    return  # the agent gave up on the body
            except (TimeoutError, BlockingIOError):
                continue
            except OSError:
                return

    srv = rawhttp.Server(handle)
    try:
        a = start(agents, agent_cmd, tmp_path, srv.url("/stats"))
        assert wait_for(lambda: len(up.answers) >= 4, 40), up.answers
        seqs = up.seqs()
        assert seqs == list(range(1, len(seqs) + 1)), seqs  # none twice
        bad = [x for x in a.output().splitlines() if "stats: upload to" in x and "failing" in x]
        assert not bad, bad  # judged by its status line: the channel works
        assert a.stop() == 0
    finally:
        stop.set()
        srv.close()

