"""Where the native MicroPython binaries are: an environment variable first,
then ../shared/bin next to the repository (see ../shared/bin/README.md for
how they are built)."""
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED_BIN = os.path.join(os.path.dirname(ROOT), "shared", "bin")
NATIVE = {"1.23": "SOCKETMAN_MPY_1_23", "1.28": "SOCKETMAN_MPY_1_28"}


class Missing(Exception):
    """A runtime the caller asked for is not on this machine; the message
    says where it was looked for and how to provide it."""


def native_micropython(version="1.23"):
    """Path of the native MicroPython `version` ("1.23" or "1.28") unix-port
    binary: $SOCKETMAN_MPY_1_23 (or _1_28) when set, else
    ../shared/bin/micropython-<version>. Raises Missing when it is absent,
    not executable, or reports another version."""
    var = NATIVE[version]
    path = os.environ.get(var) or os.path.join(SHARED_BIN, "micropython-" + version)
    where = "$%s=%s" % (var, path) if os.environ.get(var) else "%s (set %s to use another)" % (path, var)
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        raise Missing("native MicroPython %s not found: no executable at %s; build it as ../shared/bin/README.md "
                      "says" % (version, where))
    try:
        r = subprocess.run([path, "-c", "import sys; print('%d.%d' % sys.implementation.version[:2])"],
                           capture_output=True, text=True, timeout=20)
    except OSError as e:
        raise Missing("native MicroPython %s at %s does not run: %s" % (version, where, e))
    if r.returncode != 0 or r.stdout.strip() != version:
        raise Missing("%s is not MicroPython %s: it printed %r (exit %d)"
                      % (where, version, (r.stdout + r.stderr).strip()[:200], r.returncode))
    return path
