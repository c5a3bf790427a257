# Which tree main.py runs (slots.py, PROTOCOL 10): the transitions a start
# makes from the state file, under every runtime.
import json
import os

from portable.support import raises, read, tmpdir, write
from socketman import VERSION, slots


def setup(st=None, slots_=()):
    """(package dir, argv, update_dir) with the state st and marked slots
    holding a tree."""
    d = tmpdir("slots")
    ud = d + "/updates"
    os.mkdir(ud)
    for name in slots_:
        for sub in ("", "/lib", "/lib/socketman"):
            os.mkdir(ud + "/" + name + sub)
        write(ud + "/" + name + "/main.py", "")
        write(ud + "/" + name + "/" + slots.MARK, "")
    if st is not None:
        write(ud + "/state.json", json.dumps(st))
    cfg = write(d + "/config.json", json.dumps({"update_dir": ud}))
    os.mkdir(d + "/pkg")
    return d + "/pkg", ["--config=" + cfg], ud


def saved(ud):
    try:
        return json.loads(read(ud + "/state.json"))
    except OSError:
        return None


def test_versions_compare_part_by_part():
    assert slots.newer("1.10.0", "1.9.9") and slots.newer("2", "1.99")
    assert slots.newer("1.5.0", "1.5.0rc1") and not slots.newer("1.5.0rc1", "1.5.0")
    assert not slots.newer("1.5.0", "1.5.0") and slots.newer("0.1.0.1", "0.1.0")


def test_no_state_or_a_slot_of_its_own_runs_its_own_tree():
    here, argv, ud = setup()
    assert slots.choose(here, argv) == (here + "/lib", False)
    write(here + "/" + slots.MARK, "")  # main.py of a slot: the --version check
    here2, argv2, ud2 = setup({"current": {"slot": "a", "version": "9"}, "package": VERSION}, ["a"])
    write(here2 + "/" + slots.MARK, "")
    assert slots.choose(here2, argv2) == (here2 + "/lib", False)


def test_a_committed_update_runs_and_a_newer_package_wins():
    st = {"current": {"slot": "a", "version": "9.0"}, "fallback": {"slot": "b", "version": "8.0"},
          "package": VERSION}
    here, argv, ud = setup(st, ["a", "b", "c"])
    assert slots.choose(here, argv) == (ud + "/a/lib", False)
    assert saved(ud) == st  # nothing to write
    # The package recorded is another one, older than the update: the update stays.
    st["package"] = "0.0.1"
    write(ud + "/state.json", json.dumps(st))
    assert slots.choose(here, argv) == (ud + "/a/lib", False)
    # A package newer than the update, installed since: it runs, the update is forgotten.
    st = {"current": {"slot": "a", "version": "0.0.5"}, "fallback": {"slot": "b", "version": "0.0.4"},
          "package": "0.0.1"}
    write(ud + "/state.json", json.dumps(st))
    assert slots.choose(here, argv + ["--version"]) == (here + "/lib", False)
    assert saved(ud) == st  # --version only reads
    assert slots.choose(here, argv) == (here + "/lib", False)
    assert saved(ud) is None and os.listdir(ud) == []  # every marked slot went
    # An older version sent on purpose (the package then was this one) stays.
    here, argv, ud = setup({"current": {"slot": "a", "version": "0.0.5"}, "package": VERSION}, ["a"])
    assert slots.choose(here, argv) == (ud + "/a/lib", False)


def test_the_fallback_or_the_package_when_a_slot_is_gone():
    st = {"current": {"slot": "gone", "version": "9.0"}, "fallback": {"slot": "b", "version": "8.0"},
          "package": VERSION}
    here, argv, ud = setup(st, ["b"])
    assert slots.choose(here, argv) == (ud + "/b/lib", False)
    for bad in ("../b", "", None, 5):
        here, argv, ud = setup({"current": {"slot": bad, "version": "9"}, "package": VERSION}, ["b"])
        assert slots.choose(here, argv) == (here + "/lib", False), bad
    here, argv, ud = setup(None)
    write(ud + "/state.json", "[1]")
    assert raises(ValueError, slots.choose, here, argv)  # main.py runs its own tree


def test_a_trial_starts_once_then_rolls_back():
    t = {"slot": "n", "version": "9.1", "job": "up-1", "from": VERSION, "tries": 0, "at": 5}
    here, argv, ud = setup({"trial": t}, ["n"])
    assert slots.choose(here, argv + ["--version"]) == (here + "/lib", False)
    assert saved(ud)["trial"]["tries"] == 0
    assert slots.choose(here, argv) == (ud + "/n/lib", True)
    assert saved(ud)["trial"]["tries"] == 1 and saved(ud)["trial"]["package"] == VERSION
    # Started once and never committed (a crash, a power cut): the version before runs.
    assert slots.choose(here, argv) == (here + "/lib", False)
    st = saved(ud)
    assert "trial" not in st and st["report"] == {
        "job": "up-1", "success": False,
        "msg": "rolled back: the trial of 9.1 was interrupted (the agent stopped before it reached the broker)"}


def test_a_trial_whose_tree_is_gone_or_that_fails_rolls_back():
    t = {"slot": "n", "version": "9.1", "job": "up-2", "from": VERSION, "tries": 0}
    here, argv, ud = setup({"trial": dict(t), "current": {"slot": "c", "version": "9.0"}, "package": VERSION},
                           ["c"])
    assert slots.choose(here, argv) == (ud + "/c/lib", False)
    assert saved(ud)["report"]["msg"] == "rolled back: the files of 9.1 are gone"
    here, argv, ud = setup({"trial": dict(t)}, ["n"])
    assert slots.choose(here, argv) == (ud + "/n/lib", True)
    assert slots.failed(argv, "exited with status 2") is True
    assert saved(ud) == {"report": {"job": "up-2", "success": False,
                                    "msg": "rolled back: 9.1 exited with status 2"}}
    assert slots.failed(argv, "again") is False  # no trial left: nothing to roll back


def test_an_update_a_restart_cut_short_is_reported():
    here, argv, ud = setup({"update": {"job": "up-3", "at": 1}}, ["new-1234"])
    assert slots.choose(here, argv) == (here + "/lib", False)
    assert saved(ud) == {"report": {"job": "up-3", "success": False,
                                    "msg": "not updated: the agent stopped during the update; nothing changed"}}


def test_prune_removes_only_marked_slots_the_state_does_not_name():
    here, argv, ud = setup(None, ["a", "b", "c"])
    os.mkdir(ud + "/not-a-slot")
    write(ud + "/not-a-slot/x", "keep")
    slots.prune(ud, {"current": {"slot": "a"}, "trial": {"slot": "c"}})
    assert sorted(os.listdir(ud)) == ["a", "c", "not-a-slot"]
