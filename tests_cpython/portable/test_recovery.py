# The recovery state machine (PROTOCOL 8) driven by a clock the test owns.
from socketman.recovery import Recovery

S = 1000


def run(rec, status, start_s, end_s, step_s=15):
    """Feed a status every step_s seconds; [(second, kind, text)] of actions."""
    out = []
    t = start_s
    while t <= end_s:
        for a in rec.update(status, t * S):
            out.append((t, a[0], a[1]))
        t += step_s
    return out


def kinds(actions, kind):
    return [t for t, k, _ in actions if k == kind]


def test_online_does_nothing():
    rec = Recovery(600, {})
    assert run(rec, 9, 0, 3600) == []
    assert run(rec, 4, 3600, 7200) == []  # partly online is online


def test_offline_restarts_at_30s_then_backs_off_then_reboots():
    rec = Recovery(600, {})
    acts = run(rec, 1, 0, 900, step_s=1)
    assert kinds(acts, "restart") == [30, 90, 210, 450, 750]  # waits 60, 120, 240, 300
    assert kinds(acts, "reboot") == [600]
    assert [a for a in acts if a[1] == "save"] == [(600, "save", {"reboots": 1})]
    assert "restart 1" in acts[1][2]


def test_restart_waits_are_capped_at_300s():
    rec = Recovery(0, {})
    acts = run(rec, 0, 0, 2000, step_s=1)
    assert kinds(acts, "restart") == [30, 90, 210, 450, 750, 1050, 1350, 1650, 1950]
    assert kinds(acts, "reboot") == []  # reboot 0: never


def test_counted_from_the_first_check_that_found_it():
    rec = Recovery(600, {})
    acts = run(rec, 1, 1000, 1100, step_s=15)  # checks every 15 s
    assert kinds(acts, "restart") == [1030, 1090]


def test_back_online_resets_everything():
    rec = Recovery(600, {})
    run(rec, 1, 0, 100, step_s=1)
    assert rec.update(9, 101 * S)[0][0] == "log"
    acts = run(rec, 1, 200, 500, step_s=1)
    assert kinds(acts, "restart") == [230, 290, 410]  # a fresh 30 s, not at once
    assert kinds(acts, "reboot") == []


def test_one_reboot_per_offline_spell():
    rec = Recovery(300, {})
    acts = run(rec, 1, 0, 1200, step_s=1)
    assert kinds(acts, "reboot") == [300]


def test_reboot_guard_doubles_after_a_recent_recovery_reboot():
    rec = Recovery(600, {"reboots": 1})
    assert rec.reboot_wait_s() == 1200
    assert kinds(run(rec, 1, 0, 1300, step_s=1), "reboot") == [1200]
    assert rec.reboots == 2
    assert Recovery(600, {"reboots": 2}).reboot_wait_s() == 2400
    assert Recovery(600, {"reboots": 10}).reboot_wait_s() == 86400  # capped at 24 h
    assert Recovery(0, {"reboots": 3}).reboot_wait_s() == 0


def test_an_hour_online_forgets_the_reboots():
    rec = Recovery(600, {"reboots": 2})
    acts = run(rec, 9, 0, 3599, step_s=1)
    assert acts == []
    acts = rec.update(9, 3600 * S)
    assert ("save", {}) in acts
    assert rec.reboot_wait_s() == 600


def test_going_offline_within_the_hour_keeps_the_doubling():
    rec = Recovery(600, {"reboots": 1})
    run(rec, 9, 0, 1800, step_s=60)  # up for half an hour
    acts = run(rec, 1, 1801, 1801 + 1300, step_s=1)
    assert kinds(acts, "reboot") == [1801 + 1200]


def test_bad_state_is_ignored():
    for state in (None, [], {"reboots": "x"}, {"reboots": -1}, {"reboots": True}, {"reboots": 10 ** 9}):
        assert Recovery(600, state).reboot_wait_s() == 600
