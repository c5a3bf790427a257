"""The pure-logic portable test files again, under MicroPython 1.23 (what
OpenWRT ships) through its WebAssembly port under node: the unix binary the
other tests use is a newer MicroPython, and 1.23 differs (its json, for one,
took a text cut short). Both the sources and the .mpy bundle that
tools/build_mpy.sh compiles for 1.23. See mpy123/run.mjs."""
import glob
import os
import shutil
import subprocess

import pytest

from helpers import mprun

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PACKAGE = os.path.join(ROOT, ".venv", "mpy123", "node_modules", "@micropython",
                       "micropython-webassembly-pyscript")
# These need sockets, a shell or a real file system, which the WebAssembly
# port has not; the unix binary runs them in test_portable_mpy.py.
NEEDS_OS = {"test_dns_lookup.py", "test_log.py", "test_loop.py", "test_monitor.py", "test_rt_fs_proc.py",
            "test_upload_split.py", "test_watch_fifo.py"}
FILES = sorted(n for n in (os.path.basename(p) for p in glob.glob(os.path.join(HERE, "portable", "test_*.py")))
               if n not in NEEDS_OS)


@pytest.fixture(scope="session")
def node():
    exe = shutil.which("node")
    if not exe or not os.path.exists(os.path.join(PACKAGE, "micropython.mjs")):
        pytest.fail("MicroPython 1.23 (WebAssembly) is not installed: run `make test` (it needs node and npm)")
    return exe


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("code", ["source", "bundle"])
def test_portable_file_under_micropython_1_23(name, code, node, record_property, request):
    extra = [os.path.join(request.getfixturevalue("bundle"), "lib")] if code == "bundle" else []
    r = subprocess.run([node, os.path.join(HERE, "mpy123", "run.mjs"), PACKAGE, ROOT, name] + extra,
                       capture_output=True, text=True, timeout=600)
    assert "runtime: micropython 1.23.0" in r.stdout, r.stdout + r.stderr
    assert ("__init__.mpy" if code == "bundle" else "__init__.py") in r.stdout, r.stdout
    mprun.check(r, record_property, "mpy123_passed")
