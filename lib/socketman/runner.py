# Runs one job at a time in the background (PROTOCOL 4.1): the shell command
# goes to a script in its own directory under cache_dir/jobs, output and exit
# status come back through files the loop polls. Each accepted job gets its
# directory (job.json) at once, so an agent restart loses no accepted job.
import json

from . import log, rt, text

TIMEOUT_CODE = 124
FLOOD_CODE = 125
NOT_RUN_CODE = 126


def with_note(msg, note):
    """Job output with a note of ours after it ("DNE" counts as nothing)."""
    msg = "" if msg == "DNE" else msg
    return msg + ("\n" if msg and not msg.endswith("\n") else "") + note


class Runner:
    def __init__(self, cache_dir, max_output, timeout_s):
        self.root = cache_dir + "/jobs"
        self.max_output = max_output
        self.timeout_ms = timeout_s * 1000
        # Output beyond this is not kept anyway; a job writing far more is
        # stopped before it fills the RAM disk.
        self.flood = max(8 * max_output, 1 << 20)
        self.cur = None
        self.seq = 0
        rt.makedirs(self.root)

    # ---- accepted jobs on disk -----------------------------------------

    def store(self, job):
        """Give an accepted job its directory."""
        self.seq += 1
        # The id is validated (A-Z a-z 0-9 . _ -), and the prefix keeps "." and
        # ".." from naming anything but a fresh directory.
        job["dir"] = "%s/%08d-%s" % (self.root, self.seq, job["id"])
        rt.makedirs(job["dir"])
        rt.write_atomic(job["dir"] + "/job.json", json.dumps(
            {"id": job["id"], "msg": job["msg"], "type": job["type"]}).encode())

    def forget(self, job):
        if job.get("dir"):
            rt.remove_dir(job["dir"])

    def recover(self):
        """Jobs a previous agent left: (results to report, jobs to run)."""
        results, todo = [], []
        for name in rt.listdir(self.root):
            d = self.root + "/" + name
            seq = name.partition("-")[0]
            if seq.isdigit():
                self.seq = max(self.seq, int(seq))
            raw = rt.read_file(d + "/job.json")
            try:
                job = json.loads(raw)
                job = {"id": job["id"], "msg": job["msg"], "type": job["type"], "dir": d}
            except Exception:
                log.warn("jobs: dropping unreadable job directory " + name)
                self.forget({"dir": d})
                continue
            code = rt.exit_status(d)
            if code is not None:
                results.append(self._result(job, code, 0, ""))
            elif rt.stat(d + "/pid"):
                rt.kill_tree(self._tag(job))
                results.append(self._result(job, TIMEOUT_CODE, 0, "[interrupted: agent restarted]"))
            else:
                todo.append(job)
        return results, todo

    # ---- running -------------------------------------------------------

    def busy(self):
        return self.cur is not None

    def _tag(self, job):
        return "job-" + job["dir"].rpartition("/")[2]

    def start(self, job):
        """Start the job in the background; None, or the result of a job
        that could not even start."""
        d = job["dir"]
        job["started"] = rt.ms()
        try:
            with open(d + "/job.sh", "w") as f:
                f.write(job["msg"])
                f.write("\n")
            rt.spawn(d + "/job.sh", d, self._tag(job))
        except OSError as e:
            log.error("job %s: cannot start: %s" % (job["id"], e))
            return self.unrun(job, "[not run: %s]" % e)
        self.cur = job
        self.polls = 0
        log.info("job %s: started" % job["id"])
        return None

    def poll(self):
        """The finished job's result, or None while it runs."""
        job = self.cur
        if job is None:
            return None
        d = job["dir"]
        took = rt.ms() - job["started"]
        code = rt.exit_status(d)
        if code is not None:
            return self._done(self._result(job, code, took, ""))
        if took > self.timeout_ms:
            rt.kill_tree(self._tag(job))
            log.warn("job %s: killed after %d s" % (job["id"], took // 1000))
            return self._done(self._result(job, TIMEOUT_CODE, took, "[timed out]"))
        st = rt.stat(d + "/out")
        if st and st[0] > self.flood:
            rt.kill_tree(self._tag(job))
            log.warn("job %s: killed, output over %d bytes" % (job["id"], self.flood))
            return self._done(self._result(job, FLOOD_CODE, took, "[output limit]"))
        return None

    def next_poll_ms(self):
        """Every 2 ms for the first 50 ms, then less and less often: short
        jobs answer in milliseconds, long ones cost a few reads a second."""
        self.polls += 1
        return 2 if self.polls <= 25 else min(200, 2 << min(self.polls - 25, 7))

    def unrun(self, job, note):
        """The result of a job that could not be started."""
        job["started"] = rt.ms()
        return self._result(job, NOT_RUN_CODE, 0, note)

    def _done(self, result):
        self.cur = None
        log.info("job %s: exit %d in %d ms" % (result["id"], result["exit_code"], result["duration_ms"]))
        return result

    def _result(self, job, code, took, note):
        out = rt.read_file(job["dir"] + "/out", self.max_output + 4) or b""
        msg = text.utf8(text.cut(out, self.max_output))
        if note:
            msg = with_note(msg, note)
        return {"id": job["id"], "type": job["type"], "msg": msg or "DNE",
                "success": code == 0 and not note, "exit_code": code,
                "duration_ms": took, "job": job}
