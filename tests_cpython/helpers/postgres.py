"""A real PostgreSQL (Debian's `postgresql`) in a temporary directory on a
free loopback port, like the tests' Mosquitto. PostgreSQL refuses to run as
root: as root it runs as the `postgres` user the Debian package makes."""
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time

from helpers import net

USER, DB = "socketman", "fleet"


def bindir():
    """The newest installed PostgreSQL's bin directory, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[-3]))
    return os.path.dirname(found[-1]) if found else None


class Postgres:
    """fsync=False (the tests: nothing to lose); the fleet bench runs it as
    an operator would, fsync on. settings: more `-c name=value`. prefix: a
    command the server runs under (the bench's `setpriv --pdeathsig KILL
    --`, so a killed bench leaves no PostgreSQL behind). dir: where its data
    goes (default: a new folder in the system's temporary directory)."""

    def __init__(self, fsync=False, settings=None, prefix=(), dir=None):
        self.bin = bindir()
        if self.bin is None:
            raise FileNotFoundError("PostgreSQL is not installed (Debian package postgresql)")
        # Not under pytest's root-only tmp: postgres must reach it.
        self.dir = tempfile.mkdtemp(prefix="sm-pg-", dir=dir)
        self.data = os.path.join(self.dir, "data")
        self.port = net.free_port()
        self.as_user = {}
        if os.getuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
            self.as_user = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
        self._run([os.path.join(self.bin, "initdb"), "-D", self.data, "-U", USER, "--auth=trust", "-E", "UTF8",
                   "--no-sync"])
        self.log = os.path.join(self.dir, "postgres.log")
        conf = ["-c", "fsync=%s" % ("on" if fsync else "off")]
        for k, v in (settings or {}).items():
            conf += ["-c", "%s=%s" % (k, v)]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(list(prefix) + [os.path.join(self.bin, "postgres"), "-D", self.data, "-h",
                                                         "127.0.0.1", "-p", str(self.port), "-k", self.dir] + conf,
                                         stdout=subprocess.DEVNULL, stderr=log, cwd=self.dir, **self.as_user)
        deadline = time.monotonic() + 30
        while True:
            # Through the socket in our own folder: on a shared machine
            # another PostgreSQL may hold the port we picked, and its answer
            # must not pass for ours (ours then exits: that is the error).
            r = subprocess.run([os.path.join(self.bin, "pg_isready"), "-h", self.dir, "-p", str(self.port)],
                               capture_output=True)
            if r.returncode == 0:
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("postgres did not start:\n" + self.output())
            time.sleep(0.1)
        self.createdb(DB)

    def _run(self, argv):
        r = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=self.dir, **self.as_user)
        if r.returncode != 0:
            raise AssertionError("%s failed: %s%s" % (argv[0], r.stdout, r.stderr))

    def url(self, db=DB):
        return "postgresql://%s@127.0.0.1:%d/%s" % (USER, self.port, db)

    def socket_url(self, db=DB):
        """The URL through the server's Unix socket in its own folder: no
        other PostgreSQL on a shared machine can answer it (the bench)."""
        return "postgresql://%s@/%s?host=%s&port=%d" % (USER, db, self.dir, self.port)

    def createdb(self, name):
        self._run([os.path.join(self.bin, "createdb"), "-h", self.dir, "-p", str(self.port), "-U", USER, name])
        return self.url(name)

    def output(self):
        try:
            with open(self.log, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # "fast" shutdown: clients are cut off
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)
