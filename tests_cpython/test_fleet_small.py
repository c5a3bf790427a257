"""A small fleet (issue 13): bench/fleet.py with 20 agents and short phases.
Nothing is lost and every agent comes back; the figures themselves belong to
`make bench` (bench/RESULTS.md), not to a test."""
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
N = 20


def _processes_under(path):
    """Pids of living processes whose command line or working directory is
    inside path."""
    found = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % p, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
            with open("/proc/%s/stat" % p, "rb") as f:
                state = f.read().rpartition(b")")[2].split()[0]
            cwd = os.readlink("/proc/%s/cwd" % p)
        except OSError:
            continue
        if state != b"Z" and (path in cmd or cwd.startswith(path)):
            found.append((int(p), cmd))
    return found


@pytest.mark.slow
def test_small_fleet_loses_nothing_and_comes_back(tmp_path):
    work = str(tmp_path / "fleet")
    out = str(tmp_path / "fleet.json")
    cmd = [sys.executable, os.path.join(ROOT, "bench", "fleet.py"), "--agents", str(N),
           "--heartbeat", "15", "--heartbeats", "1", "--settle", "3", "--down", "3",
           "--storm-timeout", "60", "--restart-timeout", "60", "--job-timeout", "60",
           "--workdir", work, "--json", out]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert r.returncode == 0, "fleet.py exited %d:\n%s\n%s" % (r.returncode, r.stdout[-3000:], r.stderr[-3000:])
    with open(out) as f:
        res = json.load(f)
    ph = res["phases"]
    log = r.stdout

    storm = ph["storm"]
    assert storm["online"] == N and storm["missing"] == 0, log

    job = ph["job"]
    assert job["processed"] == N and job["lost"] == 0, log
    assert job["delivered"] == N and job["rejected"] == 0 and job["failed"] == 0, log
    assert job["processed_twice"] == 0, log

    restart = ph["restart"]
    assert restart["online"] == N and restart["missing"] == 0, log
    assert restart["all_back_s"] is not None, log
    assert restart["agents_that_ran_recovery"] == 0, log

    stop = ph["stop"]
    assert stop["clean_exits"] == N and stop["killed"] == 0, log
    assert stop["offline_announced"] == N, log

    stats = ph["stats"]
    assert stats["agents_with_none"] == 0, log          # every agent delivered documents
    assert stats["missing"] == 0 and stats["agents_with_gaps"] == 0, log
    assert stats["received_twice"] == 0 and stats["bad_requests"] == 0, log
    assert stats["documents_received"] >= N, log

    # The figures a run must have, whatever their values.
    steady = ph["steady"]
    assert steady["memory"]["agents_sampled"] == N
    assert steady["cpu"]["agent_pct_mean"] > 0
    assert steady["uploads"]["posts"] >= N
    assert set(res["targets"]) >= {"restart_all_back_s", "job_all_s", "idle_cpu_pct_per_agent", "rss_anon_kib_max"}

    # Every process it started, and every one those started, is gone.
    assert _processes_under(work) == []


def test_refuses_a_fleet_the_machine_cannot_hold(tmp_path):
    """An N beyond the machine's processes, memory and ports: exit 2, a
    reason per limit, nothing started."""
    r = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "fleet.py"), "--agents", "1000000",
                        "--workdir", str(tmp_path / "w")], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "cannot hold 1000000 agents" in r.stderr
    for what in ("processes:", "memory:", "ephemeral ports:"):
        assert what in r.stderr, r.stderr
    assert not os.path.exists(str(tmp_path / "w" / "agents"))
