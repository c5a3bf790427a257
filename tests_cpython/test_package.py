"""The OpenWRT packages (`make package`, tools/package.py): the .ipk as
OpenWRT's opkg reads it, the .apk installed into a root by apk-tools v3 the
way a 25.12 router does (its scripts run there under BusyBox ash), the shell
files checked by sh, BusyBox ash and shellcheck, and the installed agent run
under the native MicroPython 1.23 against the test broker: a job round trip,
then `service socketman stop`'s SIGTERM, which must be a clean stop. And
the update archive (PROTOCOL 10) `make package` writes beside them: the
same bundle, laid out as a device unpacks it, with its SHA-256, the same
bytes at every build."""
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
import threading
import time

import paho.mqtt.client as paho
import pytest

from helpers import runtimes
from helpers.broker import CTRL_PASSWORD, CTRL_USER
from helpers.device import BASE, config

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OPENWRT = os.path.join(ROOT, "openwrt")
STUB_RC = os.path.join(HERE, "openwrt_stub", "rc.common")
with open(os.path.join(ROOT, "lib", "socketman", "__init__.py")) as _f:
    VERSION = re.search(r'VERSION = "([^"]+)"', _f.read()).group(1)

SHELL_FILES = ["socketman", "socketman.init", "postinst", "prerm"]
# path -> mode, every file of the package but the bundle's modules
FILES = {
    "usr/bin/socketman": 0o755,
    "etc/init.d/socketman": 0o755,
    "etc/socketman/config.json": 0o600,
    "usr/lib/socketman/main.py": 0o644,
    "usr/lib/socketman/boot.mpy": 0o644,
}
CONFFILE = "/etc/socketman/config.json"


def _need(fn, *args):
    try:
        return fn(*args)
    except runtimes.Missing as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    """{"ipk": path, "apk": path, "update": path} built by tools/package.py --release 3."""
    apk = _need(runtimes.native, "apk")
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run(["python3", os.path.join(ROOT, "tools", "package.py"), "--release", "3", "--out", str(out),
                        "--apk", apk], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    made = {"ipk": out / ("socketman_%s-3_all.ipk" % VERSION), "apk": out / ("socketman-%s-r3.apk" % VERSION),
            "update": out / ("socketman-%s.tar.gz" % VERSION)}
    assert sorted(os.listdir(out)) == sorted([p.name for p in made.values()] + [made["update"].name + ".sha256"])
    return {k: str(v) for k, v in made.items()}


def bundle_modules():
    """The .mpy files the bundle must hold: one per module of lib/socketman
    that is not on tools/bundle_exclude.txt."""
    with open(os.path.join(ROOT, "tools", "bundle_exclude.txt")) as f:
        excl = {x.strip() for x in f if x.strip() and not x.startswith("#")}
    out = set()
    top = os.path.join(ROOT, "lib", "socketman")
    for dirpath, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for n in files:
            rel = os.path.relpath(os.path.join(dirpath, n), top)
            if n.endswith(".py") and rel not in excl:
                out.add("usr/lib/socketman/lib/socketman/" + rel[:-3] + ".mpy")
    return out


def tree(root):
    """path relative to root -> mode, of every file."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for n in files:
            p = os.path.join(dirpath, n)
            out[os.path.relpath(p, root)] = os.lstat(p).st_mode & 0o7777
    return out


def members(tar_gz_bytes):
    with tarfile.open(fileobj=io.BytesIO(tar_gz_bytes), mode="r:gz") as t:
        return [(m, t.extractfile(m).read() if m.isfile() else None) for m in t.getmembers()]


def unpack_ipk(path):
    """Outer members in order, control files by name (without "./"), data tar."""
    with open(path, "rb") as f:
        raw = f.read()
    assert raw[:2] == b"\x1f\x8b", "an .ipk for OpenWRT is a gzip'd tar, not an ar archive"
    outer = members(raw)
    by = {m.name: data for m, data in outer}
    control = {m.name[2:]: (m, data) for m, data in members(by["./control.tar.gz"]) if m.isfile()}
    return [m.name for m, _ in outer], by, control


def procd_log(root):
    p = os.path.join(root, "tmp", "procd.log")
    if not os.path.exists(p):
        return []
    with open(p) as f:
        return f.read().splitlines()


def run_ash(script, env=None, **kw):
    busybox = shutil.which("busybox")
    assert busybox, "busybox is missing: `make test` installs Debian's busybox"
    return subprocess.run([busybox, "ash", "-c", script], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, **(env or {})), **kw)


# ---------------------------------------------------------------- the .ipk

def test_ipk_is_laid_out_like_ipkg_build(packages):
    names, outer, control = unpack_ipk(packages["ipk"])
    assert names == ["./debian-binary", "./data.tar.gz", "./control.tar.gz"]
    assert outer["./debian-binary"] == b"2.0\n"
    fields = dict(line.split(": ", 1) for line in control["control"][1].decode().splitlines())
    assert fields["Package"] == "socketman"
    assert fields["Version"] == VERSION + "-3"
    assert fields["Depends"] == "micropython"
    assert fields["Architecture"] == "all"
    assert fields["License"] and fields["Description"]
    # ipkg-build's Installed-Size: the bytes of the uncompressed data tar.
    assert int(fields["Installed-Size"]) == len(gzip.decompress(outer["./data.tar.gz"]))
    assert control["conffiles"][1] == (CONFFILE + "\n").encode()
    for name in ("postinst", "prerm"):
        m, data = control[name]
        assert m.mode & 0o777 == 0o755
        with open(os.path.join(OPENWRT, name), "rb") as f:
            assert data == f.read()
    for m, _ in members(outer["./data.tar.gz"]):
        assert m.uid == 0 and m.gid == 0, m.name
        assert m.name == "." or m.name.startswith("./"), m.name  # tarfile reads "./" as "."


def test_ipk_unpacked_like_opkg_then_scripts_in_an_image_build(packages, tmp_path):
    """opkg unpacks data.tar.gz into the root; building a firmware image it
    runs the scripts on the host with IPKG_INSTROOT set to the image's root."""
    _, outer, control = unpack_ipk(packages["ipk"])
    root = tmp_path / "root"
    with tarfile.open(fileobj=io.BytesIO(outer["./data.tar.gz"]), mode="r:gz") as t:
        t.extractall(root, filter="tar")
    got = tree(root)
    for path, mode in FILES.items():
        assert got.pop(path) == mode, path
    assert set(got) == bundle_modules()
    assert all(m == 0o644 for m in got.values())
    with open(root / "usr" / "bin" / "socketman", "rb") as f, open(os.path.join(OPENWRT, "socketman"), "rb") as g:
        assert f.read() == g.read()
    # The image build: only the boot links, made inside the image.
    (root / "tmp").mkdir()
    shutil.copy(STUB_RC, root / "etc" / "rc.common")
    scripts = tmp_path / "control"
    scripts.mkdir()
    for name in ("postinst", "prerm"):
        (scripts / name).write_bytes(control[name][1])
    env = {"IPKG_INSTROOT": str(root)}
    r = run_ash('. "%s"' % (scripts / "postinst"), env)
    assert r.returncode == 0, r.stderr
    assert os.readlink(root / "etc" / "rc.d" / "S99socketman") == "../init.d/socketman"
    assert os.path.islink(root / "etc" / "rc.d" / "K10socketman")
    assert procd_log(root) == ["enable [socketman]"]  # nothing started on the build host
    r = run_ash('. "%s"' % (scripts / "prerm"), env)
    assert r.returncode == 0, r.stderr
    assert os.listdir(root / "etc" / "rc.d") == []
    assert procd_log(root)[-1] == "disable [socketman]"


# ---------------------------------------------------------------- the update archive

def test_update_archive_is_the_bundle_as_a_device_unpacks_it(packages, tmp_path):
    """PROTOCOL 10: a gzip'd tar of the build_mpy.sh tree, main.py at its top
    (boot.mpy beside it: main.py imports it), lib/socketman/... as .mpy;
    plain names (no "./", nothing absolute), regular files and directories
    only, owners root, in ustar; the same files, byte for byte, as the
    package's /usr/lib/socketman. Its .sha256 is in sha256sum's format."""
    with open(packages["update"], "rb") as f:
        data = f.read()
    assert data[:2] == b"\x1f\x8b"
    got = members(data)
    names = [m.name for m, _ in got]
    assert names[:2] == ["boot.mpy", "main.py"], names[:5]
    assert all(not n.startswith(("/", "./")) and ".." not in n.split("/") for n in names)
    assert all(m.isfile() or m.isdir() for m, _ in got)
    assert all((m.uid, m.gid, m.uname, m.gname) == (0, 0, "root", "root") for m, _ in got)
    assert {m.mode for m, _ in got if m.isfile()} == {0o644} and {m.mode for m, _ in got if m.isdir()} == {0o755}
    assert gzip.decompress(data)[257:265] == b"ustar\x0000"  # POSIX ustar, not GNU's "ustar  "
    files = {m.name: body for m, body in got if m.isfile()}
    assert set(files) == {"main.py", "boot.mpy"} | {p[len("usr/lib/socketman/"):] for p in bundle_modules()}
    _, outer, _ = unpack_ipk(packages["ipk"])
    in_ipk = {m.name[len("./usr/lib/socketman/"):]: body for m, body in members(outer["./data.tar.gz"])
              if m.isfile() and m.name.startswith("./usr/lib/socketman/")}
    assert files == in_ipk
    with open(packages["update"] + ".sha256") as f:
        assert f.read() == "%s  socketman-%s.tar.gz\n" % (hashlib.sha256(data).hexdigest(), VERSION)
    r = subprocess.run(["sha256sum", "-c", os.path.basename(packages["update"]) + ".sha256"],
                       cwd=os.path.dirname(packages["update"]), capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_update_archive_is_reproducible_and_can_carry_another_version(packages, tmp_path):
    """--update-only gives the same bytes as `make package` (and as itself
    again); --set-version makes a second version of the same code, whose
    __init__ says it; --source carries the .py files."""
    with open(packages["update"], "rb") as f:
        made = f.read()
    tool = os.path.join(ROOT, "tools", "package.py")
    for n in (1, 2):
        r = subprocess.run(["python3", tool, "--update-only", "--out", str(tmp_path / str(n))], capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        assert (tmp_path / str(n) / ("socketman-%s.tar.gz" % VERSION)).read_bytes() == made
    r = subprocess.run(["python3", tool, "--set-version", "7.7.7", "--out", str(tmp_path / "v")], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    files = {m.name: body for m, body in members((tmp_path / "v" / "socketman-7.7.7.tar.gz").read_bytes())}
    init = files["lib/socketman/__init__.mpy"]
    assert b"7.7.7" in init and VERSION.encode() not in init
    assert set(files) == {m.name for m, _ in members(made)}
    r = subprocess.run(["python3", tool, "--source", "--set-version", "7.7.8", "--out", str(tmp_path / "s")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    files = {m.name: body for m, body in members((tmp_path / "s" / "socketman-7.7.8.tar.gz").read_bytes())}
    assert files["lib/socketman/__init__.py"].startswith(b'VERSION = "7.7.8"')
    assert "main.py" in files and "boot.py" in files and "lib/socketman/blocking.py" not in files
    r = subprocess.run(["python3", tool, "--set-version", "../x", "--out", str(tmp_path / "bad")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "--set-version wants a version" in r.stderr


# ---------------------------------------------------------------- the .apk

def make_root(path):
    """A tiny OpenWRT-like root: BusyBox as /bin/sh (with the libraries it
    needs), the rc.common stand-in, /tmp."""
    busybox = shutil.which("busybox")
    assert busybox, "busybox is missing: `make test` installs Debian's busybox"
    (path / "bin").mkdir(parents=True)
    shutil.copy(busybox, path / "bin" / "busybox")
    for applet in ("sh", "mkdir", "ln", "rm", "cat"):
        os.symlink("busybox", path / "bin" / applet)
    ldd = subprocess.run(["ldd", busybox], capture_output=True, text=True).stdout
    for lib in re.findall(r"(/\S+) \(0x", ldd):
        dest = path / lib.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(lib, dest)
    (path / "etc").mkdir()
    shutil.copy(STUB_RC, path / "etc" / "rc.common")
    (path / "tmp").mkdir()
    return path


def micropython_apk(tmp_path, apk):
    """A `micropython` package holding the native 1.23 binary as
    /usr/bin/micropython: what OpenWRT's micropython package installs."""
    files = tmp_path / "mp-files"
    (files / "usr" / "bin").mkdir(parents=True)
    shutil.copy(_need(runtimes.native, "1.23"), files / "usr" / "bin" / "micropython")
    out = tmp_path / "micropython-1.23.0-r1.apk"
    r = subprocess.run([apk, "mkpkg", "--info", "name:micropython", "--info", "version:1.23.0-r1",
                        "--info", "arch:noarch", "--files", str(files), "--output", str(out)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return str(out)


@pytest.fixture(scope="module")
def installed(packages, tmp_path_factory):
    """A root with micropython and socketman installed by `apk add`, as on
    OpenWRT 25.12; (root, apk, output of apk add)."""
    apk = _need(runtimes.native, "apk")
    tmp = tmp_path_factory.mktemp("apk")
    root = make_root(tmp / "root")
    r = subprocess.run([apk, "--root", str(root), "--initdb", "--allow-untrusted", "--no-network", "add",
                        micropython_apk(tmp, apk), packages["apk"]], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return root, apk, r.stdout


def test_apk_installs_the_same_files_and_runs_post_install(installed, packages, tmp_path):
    root, apk, out = installed
    assert "Installing socketman (%s-r3)" % VERSION in out
    got = tree(root)
    for path, mode in FILES.items():
        assert got[path] == mode, path
    assert bundle_modules() <= set(got)
    # The same payload as the .ipk, bundle byte for byte.
    _, outer, _ = unpack_ipk(packages["ipk"])
    for m, data in members(outer["./data.tar.gz"]):
        if m.isfile():
            with open(root / m.name[2:], "rb") as f:
                assert f.read() == data, m.name
    meta = root / "lib" / "apk" / "packages"
    assert (meta / "socketman.conffiles").read_text() == CONFFILE + "\n"
    assert (meta / "socketman.conffiles_static").read_text().startswith(CONFFILE + " ")
    listed = (meta / "socketman.list").read_text().splitlines()
    assert "/usr/bin/socketman" in listed and "/etc/init.d/socketman" in listed
    # post-install ran under BusyBox ash inside the root: enabled, then
    # started, with the command line the init script builds.
    assert os.readlink(root / "etc" / "rc.d" / "S99socketman") == "../init.d/socketman"
    log = procd_log(root)
    assert log[:2] == ["enable [socketman]", "restart [socketman]"]
    assert "set_param [command] [/usr/bin/socketman] [--config=/etc/socketman/config.json]" in log
    assert "set_param [respawn] [3600] [5] [5]" in log
    assert "set_param [stdout] [1]" in log and "set_param [stderr] [1]" in log
    assert "set_param [file] [/etc/socketman/config.json]" in log


def test_apk_del_runs_pre_deinstall(packages, tmp_path):
    apk = _need(runtimes.native, "apk")
    root = make_root(tmp_path / "root")
    r = subprocess.run([apk, "--root", str(root), "--initdb", "--allow-untrusted", "--no-network", "add",
                        micropython_apk(tmp_path, apk), packages["apk"]], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([apk, "--root", str(root), "--no-network", "del", "socketman"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert procd_log(root)[-2:] == ["disable [socketman]", "stop [socketman]"]
    assert not os.path.exists(root / "etc" / "rc.d" / "S99socketman")
    assert not os.path.exists(root / "usr" / "bin" / "socketman")


# ---------------------------------------------------------------- shell files

@pytest.mark.parametrize("name", SHELL_FILES)
def test_shell_files_pass_sh_busybox_ash_and_shellcheck(name):
    path = os.path.join(OPENWRT, name)
    for argv in (["sh", "-n", path], [shutil.which("busybox") or "busybox", "ash", "-n", path]):
        r = subprocess.run(argv, capture_output=True, text=True)
        assert r.returncode == 0, (argv, r.stderr)
    sc = shutil.which("shellcheck")
    assert sc, "shellcheck is missing: `make test` installs Debian's shellcheck"
    r = subprocess.run([sc, path], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def init_command(tmp_path, files):
    """The procd calls start_service makes, with SOCKETMAN_DIR holding files."""
    d = tmp_path / "etc-socketman"
    d.mkdir(exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)
    (tmp_path / "tmp").mkdir(exist_ok=True)
    r = run_ash('. "%s" "%s" start' % (STUB_RC, os.path.join(OPENWRT, "socketman.init")),
                {"IPKG_INSTROOT": str(tmp_path), "SOCKETMAN_DIR": str(d)})
    assert r.returncode == 0, r.stderr
    log = procd_log(tmp_path)
    (tmp_path / "tmp" / "procd.log").unlink()
    cmd = [line for line in log if line.startswith(("set_param [command]", "append_param [command]"))]
    return " ".join(re.findall(r"\[([^]]*)\]", " ".join(cmd))).replace("command ", ""), log, str(d)


def test_init_script_command_line(tmp_path):
    cmd, log, d = init_command(tmp_path, {})
    assert cmd == "/usr/bin/socketman --config=%s/config.json" % d
    assert log[0] == "start [socketman.init]" and log[1] == "open_instance" and log[-1] == "close_instance"
    assert "set_param [term_timeout] [10]" in log
    cmd, _, d = init_command(tmp_path, {"init_url": "https://init.example/p?x=1\nsecond line\n"})
    assert cmd == "/usr/bin/socketman --config=%s/config.json -b https://init.example/p?x=1" % d
    cmd, _, d = init_command(tmp_path, {"init_url": "https://init.example/p\n", "init_secret": "s3cret\n"})
    assert cmd == ("/usr/bin/socketman --config=%s/config.json -b https://init.example/p --secret-file %s/init_secret"
                   % (d, d))
    assert "s3cret" not in " ".join(procd_log(tmp_path))
    # A secret without a URL, or an empty URL file, changes nothing.
    cmd, _, d = init_command(tmp_path, {"init_url": "", "init_secret": "s3cret\n"})
    assert cmd == "/usr/bin/socketman --config=%s/config.json" % d


# ---------------------------------------------------------------- the installed agent

def test_installed_agent_runs_a_job_and_stops_cleanly_on_sigterm(installed, tmp_path, broker, controllers,
                                                                 record_property):
    """The launcher under BusyBox ash, the bundle under the micropython the
    package manager installed (native 1.23): what procd runs."""
    record_property("runtime", "mpy1.23-bundle")
    root, _, _ = installed
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(config(tmp_path, broker)))
    ctrl = controllers(broker, BASE)
    ctl = tmp_path / "socketman.ctl"
    env = dict(os.environ, PATH="%s:%s" % (root / "usr" / "bin", os.environ["PATH"]), DEBUG="1",
               SOCKETMAN_CONTROL=str(ctl))
    log = open(tmp_path / "agent.log", "wb")
    p = subprocess.Popen([shutil.which("busybox"), "ash", str(root / "usr" / "bin" / "socketman"),
                          "--config=%s" % cfg], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    try:
        ctrl.wait_event("CONNECT", timeout=20, online="1")
        ctrl.job("pkg-1", "echo from the package")
        m = ctrl.wait_event("PROCESSED", "pkg-1")["meta"]
        assert m["msg"] == "from the package\n" and m["exit_code"] == 0
        agent = [int(x) for x in subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True,
                                                 text=True).stdout.split()]
        assert len(agent) == 1
        with open("/proc/%d/cmdline" % agent[0], "rb") as f:
            argv = f.read().split(b"\0")
        assert argv[0] == str(root / "usr" / "bin" / "micropython").encode()
        assert argv[1] == b"-X" and argv[2].startswith(b"heapsize=")  # the published heap
        assert argv[3].endswith(b"/lib/socketman/main.py")
        time.sleep(1.5)  # an idle agent, as a stop usually finds it
        p.send_signal(signal.SIGTERM)
        assert p.wait(15) == 0
    finally:
        if p.poll() is None:
            # A failed check above: the launcher's agent must not outlive the test.
            subprocess.run(["pkill", "-KILL", "-P", str(p.pid)], capture_output=True)
            p.kill()
            p.wait()
        log.close()
    out = (tmp_path / "agent.log").read_text()
    assert "socketman stopped" in out, out
    assert "killing it" not in out
    # Asked through the control FIFO, not with a signal MicroPython takes
    # wherever it is; the launcher removes the FIFO after.
    assert "stop asked through %s" % ctl in out, out
    assert not ctl.exists()
    # The retained status is online "0", published by the agent itself.
    ctrl.wait_event("CONNECT", timeout=10, online="0")
    retained = retained_status(broker)
    assert retained["meta"]["online"] == "0", retained
    assert re.search(r"Received DISCONNECT from sm-", broker.output()), broker.output()


def retained_status(broker):
    """The retained message on status/<base>, read by a fresh subscriber."""
    got, done = [], threading.Event()
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="retained-check")
    c.username_pw_set(CTRL_USER, CTRL_PASSWORD)

    def on_message(client, userdata, m):
        if m.retain:
            got.append(json.loads(m.payload))
            done.set()
    c.on_message = on_message
    c.connect("127.0.0.1", broker.port, 30)
    c.subscribe("status/" + BASE, 1)
    c.loop_start()
    try:
        assert done.wait(10), "no retained status message"
    finally:
        c.loop_stop()
        c.disconnect()
    return got[0]


def test_launcher_without_micropython_says_so(tmp_path):
    bindir = tmp_path / "usr" / "bin"
    bindir.mkdir(parents=True)
    (tmp_path / "usr" / "lib" / "socketman").mkdir(parents=True)
    (tmp_path / "usr" / "lib" / "socketman" / "main.py").write_text("")
    shutil.copy(os.path.join(OPENWRT, "socketman"), bindir / "socketman")
    env = {"PATH": str(tmp_path / "empty")}
    r = run_ash('"%s" ash "%s" --version' % (shutil.which("busybox"), bindir / "socketman"), env)
    assert r.returncode == 127
    assert "no micropython in PATH" in r.stderr and "micropython package" in r.stderr


def test_launcher_without_the_bundle_says_so(tmp_path):
    shutil.copy(os.path.join(OPENWRT, "socketman"), tmp_path / "socketman")
    r = run_ash('"%s" ash "%s" --version' % (shutil.which("busybox"), tmp_path / "socketman"))
    assert r.returncode == 1
    assert "main.py is missing" in r.stderr


# ---------------------------------------------------------------- updates and packages (PROTOCOL 10)

def _launcher(root, cfg, tmp_path, name):
    env = dict(os.environ, PATH="%s:%s" % (root / "usr" / "bin", os.environ["PATH"]), DEBUG="1",
               SOCKETMAN_CONTROL=str(tmp_path / (name + ".ctl")))
    log = open(tmp_path / (name + ".log"), "wb")
    p = subprocess.Popen([shutil.which("busybox"), "ash", str(root / "usr" / "bin" / "socketman"),
                          "--config=%s" % cfg], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    p.log = log
    return p


def _stop(p):
    time.sleep(1.5)
    p.send_signal(signal.SIGTERM)
    try:
        return p.wait(15)
    finally:
        if p.poll() is None:
            subprocess.run(["pkill", "-KILL", "-P", str(p.pid)], capture_output=True)
            p.kill()
            p.wait()
        p.log.close()


def test_a_newer_package_wins_over_a_committed_update(packages, tmp_path, tmp_path_factory, broker, controllers,
                                                      http_server, record_property):
    """OpenWRT 25.12: the package installed by apk runs an update (PROTOCOL
    10) through its launcher; then apk upgrades to a package newer than the
    update: the package's version runs and the update is forgotten."""
    from helpers import updates
    record_property("runtime", "mpy1.23-bundle")
    apk = _need(runtimes.native, "apk")
    root = make_root(tmp_path / "root")
    r = subprocess.run([apk, "--root", str(root), "--initdb", "--allow-untrusted", "--no-network", "add",
                        micropython_apk(tmp_path, apk), packages["apk"]], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    upd_v, pkg_v = VERSION + ".1", VERSION + ".2"
    path, sha = updates.archive(tmp_path_factory, upd_v, mpy="1.23")
    url = updates.file_server(http_server())(path)
    update_dir = root / "usr" / "lib" / "socketman" / "updates"
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(config(tmp_path, broker, update_dir=str(update_dir))))
    ctrl = controllers(broker, BASE)
    p = _launcher(root, cfg, tmp_path, "first")
    try:
        updates.connect_after(ctrl, VERSION, timeout=30)
        ctrl.send(updates.job("pkg-up", url, sha))
        m = ctrl.wait_event("PROCESSED", "pkg-up", timeout=60)["meta"]
        assert m["success"] and m["msg"] == "updated %s -> %s" % (VERSION, upd_v), m
        updates.connect_after(ctrl, upd_v)
    finally:
        assert _stop(p) == 0, (tmp_path / "first.log").read_text()
    slot = updates.state({"update_dir": str(update_dir)})["current"]["slot"]
    # A newer package, built from a copy of these sources with its VERSION, installed over it.
    src = updates.source_tree(str(tmp_path / "src"), pkg_v)
    shutil.copytree(OPENWRT, os.path.join(src, "openwrt"))
    shutil.copy(os.path.join(ROOT, "tools", "package.py"), os.path.join(src, "tools"))
    env = dict(os.environ, MPY_CROSS=updates.mpy_cross("1.23"))
    r = subprocess.run(["python3", os.path.join(src, "tools", "package.py"), "--out", str(tmp_path / "dist2"),
                        "--apk", apk], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([apk, "--root", str(root), "--allow-untrusted", "--no-network", "add",
                        str(tmp_path / "dist2" / ("socketman-%s-r1.apk" % pkg_v))], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "Upgrading socketman" in r.stdout, r.stdout + r.stderr
    assert (update_dir / slot / "main.py").exists()  # apk leaves what it did not install
    t0 = ctrl.events()[-1]["_t"]
    p = _launcher(root, cfg, tmp_path, "second")
    try:
        updates.connect_after(ctrl, pkg_v, t0, timeout=30)
        updates.wait_until(lambda: not (update_dir / slot).exists(), what="the update forgotten")
        assert not (update_dir / "state.json").exists()
    finally:
        assert _stop(p) == 0, (tmp_path / "second.log").read_text()
    assert not [e for e in ctrl.events("CONNECT") if e["_t"] > t0 and e["meta"]["version"] != pkg_v]
