# Runs jobs in the background (PROTOCOL 4.1): the shell command goes to a
# script in its own directory under cache_dir/jobs, output and exit status
# come back through files the loop polls. Each accepted job gets its
# directory (job.json) at once, so an agent restart loses no accepted job.
import json

from .. import fs, log, proc, rt, text

TIMEOUT_CODE = 124
FLOOD_CODE = 125
NOT_RUN_CODE = 126
LOST_CODE = 255   # the job ended, but its exit status could not be written


def with_note(msg, note):
    """Job output (bytes) with a note (str) of ours after it, as bytes
    ("DNE" counts as nothing)."""
    msg = b"" if msg == b"DNE" else msg
    return msg + (b"\n" if msg and not msg.endswith(b"\n") else b"") + note.encode()


class Runner:
    """Jobs on disk under cache_dir/jobs, and starting them. Which job is
    under way is the dispatcher's to know: start() hands back a Run."""

    def __init__(self, cache_dir, max_output, timeout_s):
        self.root = cache_dir + "/jobs"
        self.max_output = max_output
        self.timeout_ms = timeout_s * 1000
        # Output beyond this is not kept anyway; a job writing far more is
        # stopped before it fills the RAM disk.
        self.flood = max(8 * max_output, 1 << 20)
        self.seq = 0
        fs.makedirs(self.root)

    # ---- accepted jobs on disk -----------------------------------------

    def store(self, job):
        """Give an accepted job record its directory (sets job["dir"]).
        OSError when cache_dir cannot take it."""
        self.seq += 1
        # The id is validated (A-Z a-z 0-9 . _ -), and the prefix keeps "." and
        # ".." from naming anything but a fresh directory.
        job["dir"] = "%s/%08d-%s" % (self.root, self.seq, job["id"])
        fs.makedirs(job["dir"])
        fs.write_atomic(job["dir"] + "/job.json", json.dumps(
            {"id": job["id"], "msg": job["msg"], "type": job["type"]}))  # str: no copy as bytes

    def forget(self, job):
        """The job's result was handed over: remove its directory."""
        if job.get("dir"):
            fs.remove_dir(job["dir"])

    def recover(self):
        """Jobs a previous agent left: (result records to report, job records
        to run), in the order they were accepted."""
        results, todo = [], []
        for name in fs.listdir(self.root):
            d = self.root + "/" + name
            seq = name.partition("-")[0]
            if seq.isdigit():
                self.seq = max(self.seq, int(seq))
            try:
                job = json.loads(fs.read_file(d + "/job.json", 1 << 20))
                job = {"id": job["id"], "msg": job["msg"], "type": job["type"], "dir": d}
            except Exception:  # anything a leftover file holds must not stop the start
                log.warn("jobs: dropping unreadable job directory " + name)
                self.forget({"dir": d})
                continue
            code = proc.exit_status(d)
            if code is None and not fs.stat(d + "/pid"):
                todo.append(job)  # never started
                continue
            note = ""
            if code is None:
                if proc.ended(d, self.tag(job)):
                    code = proc.exit_status(d)  # written while we looked, or lost
                    if code is None:
                        code, note = LOST_CODE, "[exit status lost: %s]" % proc.lost(d)
                else:  # jobs run in sessions of their own: it outlived the agent
                    proc.kill_tree(self.tag(job))
                    code, note = TIMEOUT_CODE, "[interrupted: agent restarted]"
            results.append(self.result(job, code, 0, note))
        return results, todo

    # ---- running -------------------------------------------------------

    def tag(self, job):
        """The marker of every process the job starts (proc.kill_tree): its
        directory, so two agents on one host (each with its cache_dir)
        never take each other's jobs for their own."""
        return "job:" + job["dir"]

    def start(self, job):
        """Start a stored job in the background: its Run. A job that cannot
        start gives a Run whose first poll() is its failed result."""
        run = Run(self, job)
        try:
            with open(job["dir"] + "/job.sh", "w") as f:
                f.write(job["msg"])
                f.write("\n")
            proc.spawn(job["dir"] + "/job.sh", job["dir"], self.tag(job))
        except OSError as e:
            log.error("job %s: cannot start: %s" % (job["id"], e))
            run.failed = self.result(job, NOT_RUN_CODE, 0, "[not run: %s]" % e)
            return run
        log.info("job %s: started" % job["id"])
        return run

    def unrun(self, job, note):
        """The result record of a job that was not run, note saying why."""
        return self.result(job, NOT_RUN_CODE, 0, note)

    def result(self, job, code, took, note):
        """The result record of a job, passed on to the reporter:
          "id"          str, the job's id
          "type"        "cmd" or "network"
          "msg"         bytes, the output as the command wrote it (any
                        bytes, at most max_output, not split inside a
                        UTF-8 character) with our note after it; b"DNE"
                        when empty. It becomes text only where it is
                        written as JSON (events.processed), in bounded
                        memory whatever the bytes are
          "success"     bool, exit code 0 and no note
          "exit_code"   int, 0..255 (124 timed out or interrupted, 125
                        output limit, 126 not run)
          "duration_ms" int, ms from start to end (0 when not known)
          "job"         the job record, for the runner to forget it"""
        try:
            msg = text.cut(fs.read_file(job["dir"] + "/out", self.max_output + 4) or b"", self.max_output)
        except MemoryError:
            # The heap cannot hold this output: the job is still
            # reported (failed, saying why) and the queue moves on.
            msg = b""
            note = (note + " " if note else "") + "[output not kept: not enough memory]"
            log.error("job %s: not enough memory for its output" % job["id"])
        if note:
            msg = with_note(msg, note)
        return {"id": job["id"], "type": job["type"], "msg": msg or b"DNE",
                "success": code == 0 and not note, "exit_code": code,
                "duration_ms": took, "job": job}


class Run:
    """One job under way, from Runner.start(). poll() until it gives the
    result record; next_ms() says when to look again."""

    network = False

    def __init__(self, runner, job):
        self.runner = runner
        self.job = job
        self.started = rt.ms()
        self.looked = 0      # ms after the start of the last look for its process
        self.polls = 0
        self.failed = None   # the result of a job that could not start

    def poll(self):
        """The finished job's result record, or None while it runs. Kills
        the job past job_timeout (124) or past its output limit (125)."""
        if self.failed is not None:
            return self._done(self.failed)
        r, job = self.runner, self.job
        d = job["dir"]
        took = rt.ms() - self.started
        code = proc.exit_status(d)
        if code is not None:
            return self._done(r.result(job, code, took, ""))
        if took > r.timeout_ms:
            proc.kill_tree(r.tag(job))
            log.warn("job %s: killed after %d s" % (job["id"], took // 1000))
            return self._done(r.result(job, TIMEOUT_CODE, took, "[timed out]"))
        if took - self.looked >= proc.LOOK_MS:
            # Its end rang the bell, but no exit status came: the shell
            # that runs it was killed (a job's `kill -9 0`), or could not
            # write rc (the job filled cache_dir). Said now, not at
            # job_timeout as a false "[timed out]".
            self.looked = took
            if proc.ended(d, r.tag(job)) and proc.exit_status(d) is None:
                why = proc.lost(d)
                log.warn("job %s: ended, its exit status lost (%s)" % (job["id"], why))
                return self._done(r.result(job, LOST_CODE, took, "[exit status lost: %s]" % why))
        st = fs.stat(d + "/out")
        if st and st[0] > r.flood:
            proc.kill_tree(r.tag(job))
            log.warn("job %s: killed, output over %d bytes" % (job["id"], r.flood))
            return self._done(r.result(job, FLOOD_CODE, took, "[output limit]"))
        return None

    def next_ms(self):
        """With the bell (proc.Bell), once a second: the job's end rings it.
        Without, every 2 ms for the first 50 ms, then less and less often:
        short jobs answer in milliseconds, long ones cost a few reads a
        second."""
        self.polls += 1
        return proc.poll_ms(2 if self.polls <= 25 else min(200, 2 << min(self.polls - 25, 7)))

    def _done(self, result):
        log.info("job %s: exit %d in %d ms" % (result["id"], result["exit_code"], result["duration_ms"]))
        return result
