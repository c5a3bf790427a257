# Entry point: options and config, then the loop with every part wired in.
import sys

from . import VERSION, cli, config, log, rt
from .loop import Loop


def _fail(msg):
    sys.stderr.write("socketman: %s\n" % msg)
    return 2


class Agent:
    """Owns the loop and wires the parts together; parts never reach into
    each other, they hand plain data through here."""

    def __init__(self, cfg, opts):
        self.cfg = cfg
        self.opts = opts
        self.loop = Loop()

    def start(self):
        rt.makedirs(self.cfg["cache_dir"])
        log.info("socketman %s starting (mac %s)" % (VERSION, self.cfg["mac"]))

    def stop(self):
        self.loop.stop()
        log.info("socketman stopped")


def main(argv):
    try:
        opts = cli.parse(argv)
    except cli.UsageError as e:
        _fail(str(e))
        sys.stderr.write(cli.USAGE)
        return 2
    if opts["help"]:
        sys.stdout.write(cli.USAGE)
        return 0
    if opts["version"]:
        print("socketman " + VERSION)
        return 0
    try:
        cfg = config.load(opts["config"])
    except config.ConfigError as e:
        return _fail("%s: %s" % (opts["config"], e))
    log.setup(verbose=opts["debug"] or bool(cfg["debug"]))
    log.secret(cfg["password"])
    log.secret(cfg["token"])
    rt.seed_random()
    agent = Agent(cfg, opts)
    try:
        agent.start()
        agent.loop.run()
    except KeyboardInterrupt:
        pass
    except OSError as e:
        agent.stop()
        return _fail("cannot run: %s" % e)
    agent.stop()
    return 0
