# The failure table of PROTOCOL 5 in its pure parts: how an answer is
# classed, the back-off, the log lines of a failing channel, and job
# results each on their own retry schedule (test_upload_split.py: stats).
import json

from portable.support import tmpdir
from socketman import answers, config, http, log, rt
from socketman.jobs.reporter import FIRST_RETRY_MS, MAX_RETRY_MS, Reporter
from socketman.stats.spool import Spool


def cfg(tmp, **kw):
    c = {"mac": "aa:bb:cc:dd:ee:01", "cache_dir": tmp}
    c.update(kw)
    return config.check(c)


def line(i):
    return (json.dumps({"device": {"seq": i}}) + "\n").encode()


class Done:
    """An ended http.Call as the loop hands it over."""

    def __init__(self, status=None, error=None):
        self.response = http.Response(status, "", {}, b"") if status else None
        self.error = error


def test_classify_every_row_of_the_table():
    want = {200: answers.OK, 201: answers.OK, 204: answers.OK,
            400: answers.REFUSED, 413: answers.REFUSED, 422: answers.REFUSED,
            401: answers.UNAUTHORIZED, 404: answers.GONE, 410: answers.GONE,
            408: answers.RETRY, 429: answers.RETRY, 500: answers.RETRY, 503: answers.RETRY,
            # Not in the table: kept and tried again, never lost.
            301: answers.RETRY, 403: answers.RETRY, 405: answers.RETRY, 409: answers.RETRY}
    for status, kind in want.items():
        assert answers.classify(Done(status)) == kind, status
    assert answers.classify(Done(error="connect timed out")) == answers.RETRY
    assert answers.why(Done(503)) == "HTTP 503"
    assert answers.why(Done(error="connect timed out")) == "connect timed out"


def test_backoff_doubles_up_to_the_cap_with_jitter():
    for tries, base in ((1, 15000), (2, 30000), (3, 60000), (5, 240000), (6, 300000), (40, 300000)):
        for _ in range(20):
            w = answers.backoff_ms(tries, 15000, 300000)
            assert base * 4 // 5 <= w <= base, (tries, w)
    seen = set(answers.backoff_ms(1, 15000, 300000) for _ in range(50))
    assert len(seen) > 1  # jitter: devices that failed together spread out


def test_channel_logs_the_changes_not_every_try():
    lines = []
    old = log._write
    log._write = lambda level, msg: lines.append(log._NAMES[level] + " " + msg)
    log._state["level"] = log.INFO
    try:
        ch = answers.Channel("stats: upload to X")
        ch.ok()
        for _ in range(5):
            ch.failed("HTTP 503", "documents are kept")
        ch.ok()
        ch.failed("HTTP 500", "documents are kept")
    finally:
        log._write = old
    assert lines == ["warn stats: upload to X failing: HTTP 503; documents are kept",
                     "info stats: upload to X works again after 5 failed tries",
                     "warn stats: upload to X failing: HTTP 500; documents are kept"], lines


def test_a_refused_line_counts_in_the_next_document():
    d = tmpdir()
    spool = Spool(d + "/s", 1 << 20)
    spool.append(line(1))
    spool.batch()
    spool.reject()
    assert spool.pending_rejects() == 1 and spool.size == 0
    spool.append(line(2), 0, 1)  # the document that reports it
    assert spool.pending_rejects() == 0


# ---- job results: each on its own schedule -------------------------------

def result(i):
    return {"id": "job-%d" % i, "type": "cmd", "msg": "out %d" % i, "success": True, "exit_code": 0,
            "duration_ms": 1, "job": {}}


def reporter():
    d = tmpdir()
    c = cfg(d, rest=1, api_url="http://127.0.0.1:9/api", token="t")
    calls, reported, woken = [], [], []
    r = Reporter(c, None, lambda call, done: calls.append((call, done)), reported.append)
    r.wake = woken.append
    return r, calls, reported


def answer_all(calls, status_of):
    while calls:
        call, done = calls.pop(0)
        rid = call.url.split("/operations/")[1].split("?")[0]
        done(Done(status_of(rid)))


def test_a_404_result_is_given_up_and_does_not_hold_the_others():
    r, calls, reported = reporter()
    for i in range(1, 4):
        r.processed(result(i))
    assert len(calls) == 3  # all three PATCHes go out at once
    answer_all(calls, lambda rid: 404 if rid == "job-1" else 200)
    assert sorted(x["id"] for x in reported) == ["job-1", "job-2", "job-3"]
    assert not r.busy() and calls == []  # job-1 given up, not retried


def test_a_503_result_is_retried_later_while_later_ones_go_out():
    r, calls, reported = reporter()
    r.processed(result(1))
    answer_all(calls, lambda rid: 503)
    assert reported == [] and r.busy()
    r.processed(result(2))  # later result: out at once, not behind job-1
    assert [c[0].url.split("/operations/")[1].split("?")[0] for c in calls] == ["job-2"]
    answer_all(calls, lambda rid: 200)
    assert [x["id"] for x in reported] == ["job-2"]
    p = r.pending[0]
    assert p.tries == 1 and FIRST_RETRY_MS * 4 // 5 <= p.due - rt.ms() <= FIRST_RETRY_MS
    r.tick()
    assert calls == []  # not due yet
    p.due = rt.ms()
    r.tick()
    assert len(calls) == 1
    body = json.loads(calls[0][0].parts[1])
    assert body == {"success": True, "output": "out 1", "exit_code": 0}  # the stored body
    answer_all(calls, lambda rid: 200)
    assert [x["id"] for x in reported] == ["job-2", "job-1"] and not r.busy()


def test_refused_results_are_dropped_and_401_is_retried():
    r, calls, reported = reporter()
    r.processed(result(1))
    r.processed(result(2))
    answer_all(calls, lambda rid: 400 if rid == "job-1" else 401)
    assert [x["id"] for x in reported] == ["job-1"]
    assert [p.result["id"] for p in r.pending] == ["job-2"]
    for _ in range(12):
        p = r.pending[0]
        p.due = rt.ms()
        r.tick()
        answer_all(calls, lambda rid: 500)
    assert r.pending[0].tries == 13
    assert r.pending[0].due - rt.ms() <= MAX_RETRY_MS  # backoff stops at 5 minutes


def test_at_most_a_few_patches_at_once():
    r, calls, reported = reporter()
    for i in range(10):
        r.processed(result(i))
    assert len(calls) == 4
    answer_all(calls, lambda rid: 200)
    assert len(reported) == 10 and not r.busy()
