# The update job (PROTOCOL 10): download the archive to cache_dir, hashed as
# it arrives -> check the SHA-256 -> unpack it into a new slot under
# update_dir -> start the new tree once in a child process (`main.py
# --version` must answer) -> record it as on trial in the state file -> ask
# the agent to switch (main.py then runs the new tree; jobs/trial.py commits
# it or rolls it back). Any step that fails ends the job with PROCESSED
# success false, exit_code 1, the reason, and nothing changed. Not queued
# behind other jobs; loaded only when an update job comes.
import binascii
import hashlib
import os

from .. import VERSION, answers, fs, http, log, proc, rt, slots, text, urls
from ..untar import Refused, Unpacker

SWITCH = "switch"
TIMEOUT_S = 30        # the download's deadline for the connect and each read (4 times it in all)
CHECK_MS = 60000      # the new tree's --version must answer within this
UNPACK_STEP = 32768   # bytes unpacked per loop step
UNPACKED_RATIO = 8    # the files of an archive may take at most this times update_max_bytes
DOWNLOAD_TRIES = 3   # a download that fails for a reason that can change (no answer, 408, 429, 5xx)
RETRY_MS = 10000     # is tried again after 10 s, then 20 s
WATCHDOG_S = 30      # after update_trial, a version on trial that did not end its trial is killed
_HEX = "0123456789abcdef"


def target(msg):
    """meta.msg of an update job -> (URL without the fragment, SHA-256 as
    64 lowercase hex digits); ValueError saying what is wrong."""
    url, sep, frag = msg.strip().partition("#")
    want = "meta.msg must be an http(s) URL ending in #sha256=<64 hex digits>"
    if not sep or not frag.startswith("sha256="):
        raise ValueError(want)
    digest = frag[7:].lower()
    if len(digest) != 64 or any(c not in _HEX for c in digest):
        raise ValueError(want)
    try:
        urls.split(url)
    except ValueError as e:
        raise ValueError("%s: %s" % (want, e))
    return url, digest


def _state(update_dir):
    try:
        return slots.read(update_dir)
    except ValueError:
        log.warn("update: %s/%s is not a JSON object: starting it anew" % (update_dir, slots.STATE))
        return {}


class Update:
    """One update job under way. poll(idle) until it gives a result record
    (runner.Runner.result's shape: the update failed, nothing changed) or
    SWITCH (the new tree is recorded as on trial: stop and let main.py run
    it). idle: no other job is running (the switch waits for the job under
    way, never for the queue). start_call(http.Call, on_done) runs the
    download; wake() asks for poll() soon (the HTTP answer came)."""

    network = False

    def __init__(self, job, cfg, start_call, wake):
        self.job = job
        self.jid = job["id"]
        self.url, self.digest = target(job["msg"])
        self.ud = cfg["update_dir"]
        self.max_bytes = cfg["update_max_bytes"]
        self.trial_s = cfg["update_trial"]
        self.work = cfg["cache_dir"] + "/update"
        self.part = self.work + "/archive"
        self.start_call = start_call
        self.wake = wake
        self.started = rt.ms()
        self.at = rt.now()
        self.step = self._start
        self.failed = None
        self.f = self.hash = self.call = self.unpacker = None
        self.got = 0
        self.tries = 0
        self.retry_at = 0
        self.slot = None
        self.version = None
        self.deadline = 0
        self.trial = None  # its record in the state, once staged
        self.polls = 0
        job["reported"] = self._reported
        # The job in the state before it is DELIVERED: from here on a
        # restart reports it failed (slots.choose), so an accepted update
        # is never left without its PROCESSED.
        try:
            fs.makedirs(self.ud)
            st = _state(self.ud)
            st["update"] = {"job": self.jid, "at": self.at}
            slots.write(self.ud, st, "accept")
        except OSError as e:
            self.step = self._cannot
            self.why = "cannot write update_dir %s: %s" % (self.ud, e)

    def poll(self, idle):
        """None while under way; a result record, or SWITCH."""
        self.polls += 1
        try:
            out = self.step(idle)
        except OSError as e:  # cache_dir (the download, the check) or a rename
            out = self._fail("cannot write: %s" % (e,))
        except MemoryError:  # the heap is full or too cut up (the decompressor wants 32 KiB at once)
            out = self._fail("not enough memory for the update")
        return out

    def next_ms(self):
        """When to poll again (ms)."""
        if self.step == self._downloading:
            return 30000  # the answer wakes us
        if self.step == self._waiting:
            return max(0, self.retry_at - rt.ms())
        if self.step == self._checking:
            return proc.poll_ms(50)
        return 0 if self.step == self._unpacking else 200

    # ---- steps ----------------------------------------------------------

    def _cannot(self, idle):
        return self._fail(self.why)

    def _start(self, idle):
        fs.makedirs(self.work)
        fs.remove(self.part)
        self.f = open(self.part, "wb")
        self.hash = hashlib.sha256()
        self.got = 0
        self.tries += 1
        log.info("update %s: downloading %s%s" % (self.jid, self.url,
                                                   " (try %d)" % self.tries if self.tries > 1 else ""))
        self.step = self._downloading
        self.call = http.Call("GET", self.url, timeout=TIMEOUT_S, max_body=self.max_bytes, sink=self._sink)
        self.start_call(self.call, self._answered)
        return None

    def _sink(self, data):
        self.f.write(data)  # OSError ends the call
        self.hash.update(data)
        self.got += len(data)
        slots.hook("download")

    def _answered(self, call):
        self.step = self._downloaded
        self.wake()

    def _downloading(self, idle):
        return None

    def _waiting(self, idle):
        if rt.ms() >= self.retry_at:
            return self._start(idle)
        return None

    def _downloaded(self, idle):
        call = self.call
        self.call = None
        self.f.close()
        self.f = None
        if call.error and "body over" in call.error:
            return self._fail("the archive is over update_max_bytes (%d bytes)" % self.max_bytes)
        status = call.response.status_code if call.response is not None else 0
        if (status == 0 or status in (408, 429) or status >= 500) and self.tries < DOWNLOAD_TRIES:
            # An answer that can change: again after a while (PROTOCOL 5).
            self.retry_at = rt.ms() + answers.backoff_ms(self.tries, RETRY_MS, 60000)
            log.warn("update %s: download failed: %s; trying again in %d s" % (
                self.jid, answers.why(call), (self.retry_at - rt.ms()) // 1000))
            self.step = self._waiting
            return None
        if call.error:
            return self._fail("download failed: %s" % call.error)
        if status // 100 != 2:
            return self._fail("download failed: HTTP %d %s" % (status, call.response.reason))
        got = binascii.hexlify(self.hash.digest()).decode()
        if got != self.digest:
            return self._fail("SHA-256 mismatch: the archive's is %s, the job says %s" % (got, self.digest))
        log.info("update %s: %d bytes, SHA-256 checked" % (self.jid, self.got))
        # A slot name that the state does not use. Three fixed names, not
        # one per update: MicroPython keeps every module path it imported
        # for good (an interned __file__), some 5 KiB a tree, so a process
        # that went through many updates would run out of heap.
        st = _state(self.ud)
        used = [(st.get(k) or {}).get("slot") for k in ("current", "fallback", "trial")]
        self.slot = [n for n in slots.NAMES if n not in used][0]
        d = self.ud + "/" + self.slot
        if fs.stat(d + "/" + slots.MARK):
            slots.rmtree(d)  # what an update cut short left
        elif fs.stat(d):
            return self._fail("cannot write update_dir %s: %s is in the way" % (self.ud, d))
        try:
            fs.makedirs(d)
            fs.write_atomic(d + "/" + slots.MARK, b"")  # first: only marked directories are ever removed
            self.unpacker = Unpacker(self.part, d, UNPACKED_RATIO * self.max_bytes)
        except Refused as e:
            return self._fail("refused the archive: %s" % e)
        except OSError as e:
            return self._fail("cannot write update_dir %s: %s" % (self.ud, e))
        self.step = self._unpacking
        return None

    def _unpacking(self, idle):
        try:
            done = self.unpacker.step(UNPACK_STEP)
        except Refused as e:
            return self._fail("refused the archive: %s" % e)
        except OSError as e:
            return self._fail("cannot write update_dir %s: %s" % (self.ud, e))
        slots.hook("unpack")
        if not done:
            return None
        d = self.ud + "/" + self.slot
        files = self.unpacker.files
        self.unpacker = None
        fs.remove(self.part)
        if not fs.stat(d + "/main.py") or not (fs.stat(d + "/lib/socketman/__init__.py")
                                                or fs.stat(d + "/lib/socketman/__init__.mpy")):
            return self._fail("refused the archive: no main.py and lib/socketman/ at its top")
        log.info("update %s: %d files unpacked into %s" % (self.jid, files, d))
        with open(self.work + "/check.sh", "w") as f:
            f.write("exec %s %s --version\n" % (" ".join(proc.shell_quote(w) for w in rt.interpreter()),
                                                 proc.shell_quote(d + "/main.py")))
        proc.spawn(self.work + "/check.sh", self.work, self._tag())
        self.deadline = rt.ms() + CHECK_MS
        self.step = self._checking
        return None

    def _tag(self):
        # With the directory, as the runner's jobs: agents side by side on
        # one host (each with its cache_dir) never kill each other's check.
        return "update-check:" + self.work

    def _checking(self, idle):
        code = proc.exit_status(self.work)
        if code is None:
            if rt.ms() < self.deadline:
                return None
            proc.kill_tree(self._tag())
            return self._fail("the new version did not answer --version within %d s" % (CHECK_MS // 1000))
        out = text.utf8(fs.read_file(self.work + "/out", 4096) or b"").strip()
        words = out.split("\n")[0].split(" ")
        if code != 0 or len(words) != 2 or words[0] != "socketman" or not words[1]:
            last = out.split("\n")[-1][-300:] if out else "no output"
            return self._fail("the new version does not start on this runtime (exit %d: %s)" % (code, last))
        self.version = words[1]
        slots.hook("check")
        log.info("update %s: %s answers here; switching when no job runs" % (self.jid, self.version))
        self.step = self._ready
        return self._ready(idle)

    def _ready(self, idle):
        if not idle:
            return None
        st = _state(self.ud)
        st.pop("update", None)
        st["trial"] = {"slot": self.slot, "version": self.version, "job": self.jid, "from": VERSION,
                       "tries": 0, "at": self.at, "watch": "w" + rt.random_hex(6)}
        slots.write(self.ud, st, "staged")
        self.trial = st["trial"]  # for watchdog(), once the old version has stopped
        log.info("update %s: switching from %s to %s (on trial)" % (self.jid, VERSION, self.version))
        return SWITCH

    def watchdog(self):
        """After SWITCH, once the old version has stopped (its sockets
        closed: a MicroPython socket is inherited by every child, and one
        this shell loop held would keep the old MQTT connection and ubus
        object alive for the whole trial). The new version keeps its own
        trial time, from its own loop; one that hangs cannot. A process
        outside ours kills this process when the state still holds this
        trial update_trial + WATCHDOG_S after the switch: procd then starts
        it again, and that start rolls back."""
        trial = self.trial
        state = self.ud + "/" + slots.STATE
        q = proc.shell_quote
        # $PPID of the shell os.system starts is this process; "watch" is
        # in the state only while this trial is (a commit or a rollback
        # drops the record, another trial has its own). It looks every few
        # seconds and ends as soon as the trial or this process has.
        secs = rt.real_ms((self.trial_s + WATCHDOG_S) * 1000) // 1000 + 1
        step = max(1, min(5, secs // 10))
        w, f = q(trial["watch"]), q(state)
        os.system("a=$PPID; (t=%d; while [ $t -gt 0 ] && [ -d /proc/$a ] && grep -qF %s %s; do sleep %d; t=$((t-%d));"
                  " done; [ $t -le 0 ] && grep -qF %s %s && grep -q main.py /proc/$a/cmdline && kill -KILL $a)"
                  " </dev/null >/dev/null 2>&1 &" % (secs, w, f, step, step, w, f))

    # ---- the end --------------------------------------------------------

    def _fail(self, why):
        """The failed result record; what this job left is removed."""
        log.error("update %s: %s" % (self.jid, why))
        if self.f is not None:
            self.f.close()
            self.f = None
        if self.unpacker is not None:
            self.unpacker.close()
            self.unpacker = None
        fs.remove(self.part)
        if self.slot:
            slots.rmtree(self.ud + "/" + self.slot)
        return {"id": self.jid, "type": "update", "msg": why.encode(), "success": False, "exit_code": 1,
                "duration_ms": rt.ms() - self.started, "job": self.job}

    def _reported(self):
        """The failure went out: the state no longer holds the job."""
        try:
            st = slots.read(self.ud)
            if st.get("update", {}).get("job") == self.jid:
                del st["update"]
                slots.save(self.ud, st, "reported")
        except (OSError, ValueError) as e:
            log.warn("update %s: cannot clear it from %s: %s" % (self.jid, self.ud, e))
