"""Rollouts end to end with real agents (issue 23): the reference server
(server/, its releases added with `socketman-server release add`, its
rollouts in waves, jobs signed) and agents as real processes under
CPython, provisioned by that server, on a real Mosquitto. A release whose
agents cannot reach the broker: the first wave's agents roll back by
themselves and say so, the rollout stops at that wave and nobody else gets
the job. Then a good release to the same agents, the ones that rolled back
included: every agent downloads it from the server, switches, commits and
reports, the rollout is done, and the fleet page shows the new version.

The fake devices of test_rollout_server.py cover the server's rules (pause,
resume, abort, thresholds, restarts, refused archives); the agents' own
update paths run on every runtime in test_update_*.py. Here ten agents,
every other one under CPython and under the native MicroPython 1.23 (both
run the sources a release holds), with a 2 s trial (update_trial 30 on a
clock 15 times faster)."""
import os
import re
import sys

import pytest

from helpers import openwrt, runtimes, updates
from helpers.device import config
from helpers.fleet import FleetServer
from helpers.rollout import add_release, archive
from helpers.updates import slots_in, state, wait_until
from socketman import VERSION

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AGENT = [sys.executable, os.path.join(ROOT, "main.py")]
JOB_KEY = "rollout-e2e-job-key"
GOOD, BAD = "0.5.0", "0.5.1"
MACS = ["02:e5:00:00:00:%02x" % i for i in range(1, 11)]
# The server's side of the trial: how long it waits for a device's answer
# before it calls it failed. Far beyond what the agents need here (a 2 s
# trial): an answer comes first, and a loaded test machine makes no
# device "silent".
FAST = {"trial": "30", "margin": "90", "offline_wait": "120"}
LOST = ("lib/socketman/session.py", 'cfg["mqtt_host"], cfg["port"]', 'cfg["mqtt_host"], 1')


def agent_argv(i):
    """Every other agent under the native MicroPython 1.23."""
    if i % 2:
        try:
            return [runtimes.native_micropython("1.23"), os.path.join(ROOT, "main.py")]
        except runtimes.Missing as e:
            pytest.fail(str(e), pytrace=False)
    return AGENT


def start_agent(agents, srv, tmp_path, mac, argv):
    """An agent on a fake OpenWRT with the config the server hands out
    (job_key included: the server signs its jobs)."""
    srv.post_form("/provisioning", {"mac": mac})
    served = srv.get("/devices/%s/config.json" % mac.upper().replace(":", "-")).json()
    assert served.get("job_key") == JOB_KEY, served
    d = tmp_path / mac.replace(":", "")
    d.mkdir()
    env, fcfg = openwrt.make(d)
    env["SOCKETMAN_TIME_SCALE"] = "15"
    served.update(mac=mac, update_trial=30)
    cfg = config(d, **dict(fcfg, **served))
    return agents(argv, cfg, d, env=env), cfg


def start_rollout(srv, fields):
    r = srv.post_form("/rollouts", fields)
    assert r.status == 303, (r, srv.output()[-3000:])
    return int(r.headers["Location"].rsplit("/", 1)[1])


def test_a_failing_wave_stops_the_rollout_and_its_agents_roll_back_then_a_good_one_passes(
        tmp_path, tmp_path_factory, broker, agents):
    good = archive(tmp_path_factory.mktemp("good"), GOOD)  # tools/package.py --set-version --source
    bad, _ = updates.archive(tmp_path_factory, BAD, patches=[LOST])
    srv = FleetServer(tmp_path, broker, job_key=JOB_KEY)
    st = srv.store()
    try:
        add_release(srv, good)
        add_release(srv, bad)
        fleet = [start_agent(agents, srv, tmp_path, m, agent_argv(i)) for i, m in enumerate(MACS)]
        srv.wait(lambda: all((st.device(m) or {}).get("online") and st.device(m)["version"] == VERSION
                             for m in MACS), 60, "%d agents online with their version" % len(MACS))

        # A release that cannot reach the broker: waves of 2, then the rest.
        rid = start_rollout(srv, dict(FAST, release=BAD, target="selected", mac=MACS, waves="2,rest"))
        r = srv.wait(lambda: st.rollout(rid)["state"] == "stopped" and st.rollout(rid), 90, "the rollout stopped")
        assert r["wave"] == 1 and r["waves"] == [2, 8], r
        # It stops at the first failure over the threshold; the other agent
        # of the wave may still be on trial then, and its answer is recorded.
        assert re.search(r"^wave 1 of 2: [12] of its 2 devices failed, more than the 0 allowed \(.*rolled back: ",
                         r["reason"]), r
        first = [d["mac"].lower() for d in st.rollout_devices(rid) if d["wave"] == 1]
        rest = [m for m in MACS if m not in first]
        rows = srv.wait(lambda: all(d["state"] == "rolled back" for d in st.rollout_devices(rid) if d["wave"] == 1)
                        and {d["mac"]: d for d in st.rollout_devices(rid)}, 60, "the first wave rolled back")
        for m in first:
            row = rows[m.upper()]
            assert row["state"] == "rolled back", row
            assert row["output"].strip() == "rolled back: %s did not reach the broker within 30 s" % BAD, row
        assert all(rows[m.upper()]["state"] == "waiting" and not rows[m.upper()]["job_id"] for m in rest)
        # The agents of the first wave came back by themselves with the
        # version they had, and their slot of the bad one is gone.
        srv.wait(lambda: all(st.device(m)["online"] and st.device(m)["version"] == VERSION for m in first),
                 30, "the first wave back online with %s" % VERSION)
        for a, cfg in fleet:
            assert a.alive(), a.output()[-3000:]
            wait_until(lambda c=cfg: not os.path.exists(os.path.join(c["update_dir"], "state.json")),
                       what="no update state")
            # (update_dir is made by the first update an agent runs)
            assert cfg["mac"] in rest and not os.path.exists(cfg["update_dir"]) or slots_in(cfg) == []
        assert "rolled back" in srv.get("/rollouts/%d" % rid).text()
        # The operator ends it (a stopped rollout holds its devices): the rest are skipped.
        assert srv.post_form("/rollouts/%d/abort" % rid, {}).status == 303
        srv.wait(lambda: {d["state"] for d in st.rollout_devices(rid) if d["wave"] == 2} == {"skipped"}, 20,
                 "the second wave skipped")

        # A good release to all ten: waves of 1, 1, then the rest.
        rid = start_rollout(srv, dict(FAST, release=GOOD, target="selected", mac=MACS, waves="1,1,rest"))
        r = srv.wait(lambda: st.rollout(rid)["state"] == "done" and st.rollout(rid), 120, "the rollout done")
        assert r["waves"] == [1, 1, 8] and r["reason"] == "10 updated", r
        rows = st.rollout_devices(rid)
        assert [(d["state"], d["old_version"], d["new_version"]) for d in rows] == \
            [("updated", VERSION, GOOD)] * len(MACS)
        assert all(d["output"].strip() == "updated %s -> %s" % (VERSION, GOOD) for d in rows), rows
        for w in (2, 3):  # a wave is sent only once the one before is over
            assert min(d["sent_at"] for d in rows if d["wave"] == w) >= \
                max(d["finished_at"] for d in rows if d["wave"] == w - 1)
        for _, cfg in fleet:
            wait_until(lambda c=cfg: "report" not in state(c), what="the report sent")
            s = state(cfg)
            assert s["current"]["version"] == GOOD and s["package"] == VERSION and "trial" not in s, s
        seen = {}  # mac: (version, online) as the fleet's table has it, for the failure's message
        try:
            srv.wait(lambda: not seen.update((m, (st.device(m)["version"], st.device(m)["online"])) for m in MACS)
                     and all(v == GOOD for v, _ in seen.values()), 30, "the fleet on %s" % GOOD)
        except AssertionError as e:
            raise AssertionError("%s\n(version, online) by MAC: %r" % (str(e)[:3000], seen)) from None
        assert srv.get("/").text().count('<td class="version">%s</td>' % GOOD) == len(MACS)
        for a, _ in fleet:
            assert a.alive(), a.output()[-3000:]
            assert a.stop() == 0
    finally:
        st.close()
        srv.stop()
