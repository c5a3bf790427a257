"""The agent as a real process, for end-to-end tests."""
import json
import os
import signal
import stat
import subprocess
import time

MIN_AGE_S = 1.5
FIFO_WAIT_S = 3.0  # the agent's control FIFO is there by then, unless something is wrong


class Agent:
    def __init__(self, cmd, cfg, tmp, env=None, args=None, debug=True, session=False):
        self.tmp = str(tmp)
        self.cfg_path = os.path.join(self.tmp, "config.json")
        if isinstance(cfg, dict) and "update_dir" not in cfg:
            # Never the default /usr/lib/socketman/updates: a test's update
            # there would be run by every agent on the machine after it.
            cfg = dict(cfg, update_dir=os.path.join(self.tmp, "updates"))
        if cfg is not None:
            with open(self.cfg_path, "w") as f:
                json.dump(cfg, f)
        self.log_path = os.path.join(self.tmp, "agent.log")
        e = dict(os.environ)
        if debug:
            e["DEBUG"] = "1"
        # The control FIFO the launcher uses on a router (proc.Bell): stop()
        # asks through it, as procd's stop does.
        self.control = os.path.join(self.tmp, "control.fifo")
        e["SOCKETMAN_CONTROL"] = self.control
        e.update(env or {})
        self.log = open(self.log_path, "wb")
        argv = list(cmd) + ["--config=" + self.cfg_path] + list(args or [])
        self.started = time.monotonic()
        # session: a process group of its own, for a test to kill it with
        # everything it started (killpg), as a power cut would.
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=e,
                                     cwd=self.tmp, start_new_session=session)

    def output(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_log(self, text, timeout=10.0, count=1):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.output()
            if out.count(text) >= count:
                return out
            if self.proc.poll() is not None:
                raise AssertionError("agent exited %s before logging %r:\n%s"
                                     % (self.proc.returncode, text, out))
            time.sleep(0.05)
        raise AssertionError("agent did not log %r in %ss:\n%s" % (text, timeout, self.output()))

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=15.0, sigint=False):
        """The clean stop; the exit status. As the installed launcher does:
        "q" to the control FIFO once the agent has made it, else (or with
        sigint) SIGINT, Ctrl-C. system(3) ignores SIGINT while it starts a
        shell command, so a SIGINT that lands in those few milliseconds is
        lost: send it again until the agent goes."""
        # MicroPython raises KeyboardInterrupt wherever the process is, even
        # inside a garbage collection that holds the heap's lock, which can
        # then hang the stop. An idle agent waits in poll(), where that is
        # safe: do not interrupt it in the middle of its start-up.
        time.sleep(max(0.0, MIN_AGE_S - (time.monotonic() - self.started)))
        deadline = time.monotonic() + timeout
        # The agent makes its FIFO after its first CONNECT, or a second
        # after its start without one: wait for it rather than send a SIGINT
        # that can land inside a garbage collection and leave the
        # collector's mutex held (the stop then hangs, or ends in
        # "MemoryError: heap is locked").
        fifo_by = time.monotonic() + min(FIFO_WAIT_S, timeout / 2)
        while not sigint and not os.path.exists(self.control) and time.monotonic() < fifo_by and self.alive():
            time.sleep(0.05)
        try:
            if not sigint and stat.S_ISFIFO(os.stat(self.control).st_mode if os.path.exists(self.control) else 0):
                fd = os.open(self.control, os.O_RDWR | os.O_NONBLOCK)
                os.write(fd, b"q")
                os.close(fd)
                try:
                    return self.proc.wait(min(8.0, timeout))
                except subprocess.TimeoutExpired:
                    pass  # not heard: SIGINT, below
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    return self._status()
                self.proc.send_signal(signal.SIGINT)
                try:
                    # A clean stop may wait up to 3 s for an upload's answer.
                    self.proc.wait(min(5.0, max(0.1, deadline - time.monotonic())))
                    return self._status()
                except subprocess.TimeoutExpired:
                    pass
            raise AssertionError("agent did not stop on SIGINT:\n" + self.output())
        finally:
            self.kill()

    def _status(self):
        """The exit status; an unclean one shows the end of the agent's log in
        the failing test's captured output."""
        if self.proc.returncode:
            print("agent exited %d; its log ends:\n%s" % (self.proc.returncode, self.output()[-4000:]))
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()

    def power_cut(self):
        """SIGKILL to the agent's process group (started with session=True):
        it and every process it started die at once."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(5)
        self.log.close()
