# A batch of shell commands run in the background: each writes its output to
# a file in its own directory; the loop polls for the end. Used for the
# collection commands and the neighbour scan, which can take seconds.
from . import rt


class Batch:
    def __init__(self, workdir, tag, timeout_ms):
        self.dir = workdir
        self.tag = tag
        self.timeout_ms = timeout_ms
        self.started = None
        rt.makedirs(workdir)

    def running(self):
        return self.started is not None

    def start(self, commands):
        """commands: shell lines, run in workdir (write outputs relative to it)."""
        for name in rt.listdir(self.dir):
            rt.remove(self.dir + "/" + name)
        with open(self.dir + "/batch.sh", "w") as f:
            f.write("cd %s || exit 1\n" % rt.shell_quote(self.dir))
            for c in commands:
                f.write(c + "\n")
        self.started = rt.ms()
        rt.spawn(self.dir + "/batch.sh", self.dir, self.tag)

    def poll(self):
        """None while it runs; True when done; False when it was killed."""
        if self.started is None:
            return None
        if rt.exit_status(self.dir) is not None:
            self.started = None
            return True
        if rt.ms() - self.started > self.timeout_ms:
            rt.kill_tree(self.tag)
            self.started = None
            return False
        return None

    def read(self, name, limit=262144):
        return rt.read_file(self.dir + "/" + name, limit)
