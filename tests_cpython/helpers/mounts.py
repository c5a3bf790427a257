"""A file system of the test's own for the agent (root and util-linux's
unshare/nsenter): a small tmpfs at a path, in a mount namespace only the
agent's process tree sees, that the test can fill or make read-only while
the agent runs. A router's cache_dir is such a RAM disk."""
import os
import shutil
import subprocess

import pytest


def need():
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("nsenter"):
        pytest.fail("this test needs root and unshare/nsenter (util-linux) for a private tmpfs", pytrace=False)


def tmpfs_prefix(path, size):
    """argv prefix: run the command that follows in a mount namespace of its
    own, with a tmpfs of size bytes mounted at path (made if missing)."""
    need()
    os.makedirs(path, exist_ok=True)
    return ["unshare", "-m", "--propagation", "private", "sh", "-c",
            'mount -t tmpfs -o size="$1" tmpfs "$0" && shift && exec "$@"', str(path), str(size)]


def inside(pid, *cmd):
    """Run cmd in the mount namespace of process pid; its CompletedProcess."""
    return subprocess.run(["nsenter", "-t", str(pid), "-m"] + list(cmd), capture_output=True, text=True,
                          timeout=30)


def remount(pid, path, opts):
    """mount -o remount,<opts> path, as process pid sees it (e.g. "ro", "rw")."""
    r = inside(pid, "mount", "-o", "remount," + opts, str(path))
    assert r.returncode == 0, r.stderr


def seen_by(pid, path):
    """path as process pid sees it, readable from the test (/proc/<pid>/root)."""
    return "/proc/%d/root%s" % (pid, os.path.abspath(str(path)))
