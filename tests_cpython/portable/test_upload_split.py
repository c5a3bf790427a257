# A refused stats batch (PROTOCOL 5, failure table) is sent again in
# halves until the refused lines stand alone: a real spool in a directory,
# the server a function of the lines it is sent. Needs a shell (gz probes
# for the system gzip): not under WebAssembly.
import json

from portable.support import tmpdir
from portable.test_failures import Done, cfg, line
from socketman.stats.spool import Spool
from socketman.stats.upload import Uploader


class RecordingSpool(Spool):
    """A real spool that remembers the last batch it handed out."""

    def batch(self, limit=262144, max_lines=0):
        self.last = Spool.batch(self, limit, max_lines)
        return self.last


def seqs(data):
    return [json.loads(x)["device"]["seq"] for x in data.split(b"\n") if x]


class Server:
    """answer(seqs of the batch) -> status; calls are answered in order."""

    def __init__(self, answer):
        self.answer = answer
        self.calls = []
        self.taken = []
        self.sent = []

    def start_call(self, call, on_done):
        self.calls.append((call, on_done))

    def run(self, spool, limit=1000):
        n = 0
        while self.calls and n < limit:
            call, on_done = self.calls.pop(0)
            got = seqs(spool.last)
            self.sent.append(got)
            status = self.answer(got)
            if status == 200:
                self.taken.extend(got)
            on_done(Done(status))
            n += 1
        return n


def uploader(n_lines, answer, **kw):
    d = tmpdir()
    spool = RecordingSpool(d + "/spool.jsonl", 1 << 20)
    for i in range(1, n_lines + 1):
        spool.append(line(i))
    srv = Server(answer)
    up = Uploader(cfg(d, stats_url="http://127.0.0.1:9/s", **kw), spool, srv.start_call, d + "/gz", "stored")
    return spool, srv, up


def test_a_refused_line_is_found_and_dropped_alone():
    spool, srv, up = uploader(16, lambda got: 400 if 11 in got else 200)
    up.start()
    srv.run(spool)
    assert not up.busy() and spool.size == 0
    assert sorted(srv.taken) == [i for i in range(1, 17) if i != 11]
    assert len(srv.taken) == 15  # nothing twice
    assert spool.pending_rejects() == 1
    # Halves, each sent at once: 16 -> 8+8 -> 4+4 -> 2+2 -> 1+1.
    assert srv.sent[0] == list(range(1, 17)) and srv.sent[1] == list(range(1, 9))
    assert len(srv.sent) <= 2 + 2 * 4


def test_several_refused_lines_and_a_413():
    bad = (1, 7, 8, 20)
    spool, srv, up = uploader(20, lambda got: 413 if len(got) > 12 else (422 if set(bad) & set(got) else 200))
    up.start()
    srv.run(spool)
    assert sorted(srv.taken) == [i for i in range(1, 21) if i not in bad]
    assert spool.pending_rejects() == len(bad) and spool.size == 0


def test_a_server_failure_in_the_middle_keeps_the_rest_for_the_next_heartbeat():
    state = {"n": 0}

    def answer(got):
        state["n"] += 1
        if state["n"] == 4:
            return 503  # during the split
        return 400 if 5 in got else 200
    spool, srv, up = uploader(8, answer)
    up.start()
    srv.run(spool)
    assert not up.busy() and up.parts == []
    kept = seqs(Spool.batch(spool))
    spool.release()
    assert sorted(srv.taken + kept) == list(range(1, 9))  # nothing lost ...
    assert not set(srv.taken) & set(kept)                 # ... nothing twice
    up.start()  # the next heartbeat
    srv.run(spool)
    assert sorted(srv.taken) == [1, 2, 3, 4, 6, 7, 8] and spool.pending_rejects() == 1


def test_404_and_401_keep_everything_and_the_backup_is_tried():
    for status in (404, 410, 500, 408, 429):
        spool, srv, up = uploader(3, lambda got, s=status: s, backup_stats_url="http://127.0.0.1:9/b")
        up.start()
        srv.run(spool)
        assert len(srv.sent) == 2 and srv.taken == []  # main, then the backup
        assert spool.size == len(line(1)) * 3 and spool.pending_rejects() == 0
    told = []
    spool, srv, up = uploader(3, lambda got: 401)
    up.on_unauthorized = lambda: told.append(1)
    up.start()
    srv.run(spool)
    assert told == [1] and len(srv.sent) == 1 and spool.size == len(line(1)) * 3
