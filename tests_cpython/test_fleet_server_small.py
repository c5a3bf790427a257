"""The reference server at fleet scale, small (issue 25): bench/fleet_server.py
with 100 native agents, two server processes sharing the MQTT event stream
and one PostgreSQL, short phases. Nothing lost, nothing recorded twice,
nothing left running; the figures themselves are `make bench`'s
(bench/RESULTS.md), not a test's."""
import json
import os
import subprocess
import sys

import pytest
from test_fleet_small import _processes_under

from helpers.postgres import bindir

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
N = 100

pytestmark = pytest.mark.skipif(bindir() is None, reason="PostgreSQL is not installed (Debian package postgresql)")


@pytest.mark.slow
def test_a_hundred_agents_two_servers_lose_nothing(tmp_path):
    work = str(tmp_path / "fleet")
    out = str(tmp_path / "fleet-server.json")
    cmd = [sys.executable, os.path.join(ROOT, "bench", "fleet_server.py"), "--agents", str(N), "--servers", "2",
           "--minutes", "0.5", "--heartbeat", "15", "--storm-timeout", "90", "--job-timeout", "60",
           "--rollout-timeout", "180", "--workdir", work, "--json", out]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    log = r.stdout[-4000:] + r.stderr[-3000:]
    assert r.returncode == 0, "fleet_server.py exited %d:\n%s" % (r.returncode, log)
    with open(out) as f:
        res = json.load(f)
    ph = res["phases"]

    assert ph["start"]["online"] == N and ph["start"]["missing"] == 0, log
    # Every stats document each agent made is stored once or still spooled.
    led = ph["ledger"]
    assert led["missing"] == 0 and led["stored_twice"] == 0 and led["agents_with_gaps"] == 0, log
    assert led["agents_with_none"] == 0 and led["documents_stored"] >= N, log
    # Every MQTT message the broker carried was taken by exactly one server,
    # and both took a share ($share/bench/...).
    mq = led["mqtt"]
    assert mq["taken_twice_or_lost"] == 0 and sum(mq["servers_took"]) == mq["broker_carried"] > 0, log
    assert min(mq["servers_took"]) > 0 and mq["servers_bad"] == [0, 0] and mq["servers_errors"] == [0, 0], log
    # A fleet job to all N through the API: every result recorded.
    job = ph["job"]
    assert job["sent"] == N and job["recorded"] == N and job["lost"] == 0, log
    # A rollout to all N in waves: every agent updated itself (its documents
    # after the switch count from seq 1 again: the ledger above holds them).
    ro = ph["rollout"]
    assert ro["state"] == "done" and ro["devices"] == {"updated": N}, log
    # The pages answered while the fleet ran.
    for page, s in ph["steady"]["pages"].items():
        assert s["n"] > 0 and s["errors"] == 0, (page, log)
    # Every agent stopped cleanly when asked as the OpenWRT launcher asks
    # ("q" into its control FIFO): none had to be killed.
    if ph["stop"]["killed"]:  # what it was blocked in (pytest -rP shows it)
        print("agents that ignored the stop: %s" % json.dumps(ph["stop"]["stuck"], indent=1))
    assert ph["stop"]["killed"] == 0 and ph["stop"]["clean_exits"] == N, (ph["stop"], log)
    assert res["leftover_processes"] == 0 and _processes_under(work) == []
