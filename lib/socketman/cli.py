# Command line -> options (PROTOCOL 2).
from . import urls

DEFAULT_CONFIG = "/etc/socketman/config.json"

USAGE = """usage: socketman [--config=PATH] [-b INIT_URL [--secret-file PATH]] [--debug] [--version] [--help]

  --config=PATH, --config PATH   config file (default %s)
  -b INIT_URL                    provision from INIT_URL when the config is missing, empty or has no token
  --secret-file PATH             with -b: the first line of PATH is sent to INIT_URL as a Bearer token
  --debug                        verbose logs (DEBUG=1 in the environment logs to the terminal)
  --version                      print the version and exit
  --help                         print this help and exit
""" % DEFAULT_CONFIG


class UsageError(Exception):
    """A bad command line (PROTOCOL 2: exit 2 with the message)."""
    pass


def parse(argv):
    """argv without the program name -> dict of options; UsageError if bad."""
    opts = {"config": DEFAULT_CONFIG, "init_url": "", "secret_file": "", "debug": False,
            "version": False, "help": False}
    i = 0
    while i < len(argv):
        a = argv[i]
        i += 1
        name, eq, value = a.partition("=")
        if name in ("--config", "-b", "--secret-file"):
            if not eq:
                if i >= len(argv):
                    raise UsageError("%s needs a value" % name)
                value = argv[i]
                i += 1
            if not value:
                raise UsageError("%s needs a value" % name)
            opts[{"--config": "config", "-b": "init_url"}.get(name, "secret_file")] = value
        elif a == "--debug":
            opts["debug"] = True
        elif a == "--version":
            opts["version"] = True
        elif a in ("--help", "-h"):
            opts["help"] = True
        else:
            raise UsageError("unknown argument %s" % a)
    if opts["init_url"]:
        try:
            urls.split(opts["init_url"])
        except ValueError as e:
            raise UsageError("-b %s: %s" % (opts["init_url"], e))
    elif opts["secret_file"]:
        raise UsageError("--secret-file is only used with -b")
    return opts
