# Which tree of the agent runs (PROTOCOL 10): the package's own, a committed
# update, or a new version on trial. Updates live in slots, directories
# under update_dir that each hold a tree as tools/build_mpy.sh makes it
# (main.py, lib/socketman/...) and the marker file MARK; one small state
# file, <update_dir>/state.json, replaced atomically, says which to run:
#
#   "current"  {"slot": name, "version": str}  the committed update; absent:
#              the package's own tree
#   "fallback" the same, the version before it (absent: the package's)
#   "package"  the package's VERSION when "current" was committed: a
#              different, newer package installed since wins (choose())
#   "update"   {"job": id, "step": str}  an update job under way, before
#              its trial (a start that finds it reports it failed)
#   "trial"    {"slot", "version", "job", "from": the version before,
#              "tries": starts of the new tree, "package", "at": when the
#              job came (Unix s), "watch": the watchdog's token}  a new
#              version on trial; current is still the one before
#   "report"   {"job", "success": bool, "msg": str}  the PROCESSED an
#              update job is owed (after a commit or a rollback)
#
# main.py calls choose() at every start, with the package's own copy of this
# module; the agent's copy (jobs/update.py, jobs/trial.py) writes the rest.
# Nothing else is imported here, so main.py stays cheap.
import os
import sys

from . import VERSION, fs

STATE = "state.json"
NAMES = ("s1", "s2", "s3")  # the slots' names: current, fallback and one for the next update
MARK = ".slot"         # in every slot: its main.py runs its own tree (the --version check)
DEFAULT_DIR = "/usr/lib/socketman/updates"
RESTART = "restart"    # agent.main() returns it to have main.py choose and run again


def vkey(v):
    """A version (str) as a list that compares numerically part by part:
    1.10 > 1.9; letters after a part's digits make it a pre-release of
    that number (1.5.0rc1 < 1.5.0)."""
    out = []
    for part in str(v).split("."):
        i = 0
        while i < len(part) and "0" <= part[i] <= "9":
            i += 1
        out.append((int(part[:i]) if i else -1, -1 if part[i:] else 0, part[i:]))
    return out


def newer(a, b):
    """True when version a is newer than version b."""
    return vkey(a) > vkey(b)


def hook(step):
    """Test hook: with SOCKETMAN_UPDATE_STOP=<step> the agent says so and
    stops dead at that step of an update, for a test to kill it there (a
    power cut at that line). Never set on a router. The steps, in order:
    accept (the job's record written, not yet in place), download, unpack,
    check (the new tree answered), staged (the trial's record written, not
    yet in place), switch (the old version stopped), start (main.py's count
    of the trial's starts written, not yet in place), trial (the new version
    runs, not committed), commit (its record written, not yet in place),
    committed (in place, PROCESSED not yet sent); rollback and reported
    (those records written, not yet in place)."""
    if os.getenv("SOCKETMAN_UPDATE_STOP") == step:
        sys.stderr.write("socketman: test hook: stopped at %s\n" % step)
        import time
        while True:
            time.sleep(60)


def read(update_dir):
    """The state (dict) in update_dir; {} when there is none; ValueError
    when it is there but not a JSON object."""
    data = fs.read_file(update_dir + "/" + STATE, 65536)
    if data is None:
        return {}
    import json
    st = json.loads(data)
    if not isinstance(st, dict):
        raise ValueError("not an object")
    return st


def write(update_dir, st, step="state"):
    """Replace the state atomically (a power cut leaves the old one or the
    new one), synced where the runtime can. OSError on failure."""
    import json
    path = update_dir + "/" + STATE
    with open(path + ".tmp", "w") as f:
        f.write(json.dumps(st))
        if hasattr(os, "fsync"):
            f.flush()
            os.fsync(f.fileno())
    hook(step)
    os.rename(path + ".tmp", path)


def save(update_dir, st, step="state"):
    """write(), or remove the file when st is empty: an agent with nothing
    pending loads none of the update code at its next start."""
    if st:
        write(update_dir, st, step)
    else:
        fs.remove(update_dir + "/" + STATE)


def tree(update_dir, rec):
    """The directory of a slot record ({"slot": name, ...}) when it holds a
    tree to run, else None."""
    if not isinstance(rec, dict) or not isinstance(rec.get("slot"), str) or "/" in rec["slot"]:
        return None
    d = update_dir + "/" + rec["slot"]
    if fs.stat(d + "/" + MARK) and fs.stat(d + "/main.py") and fs.stat(d + "/lib/socketman"):
        return d
    return None


def _config_dir(argv):
    """update_dir of the config that argv names (--config=PATH or --config
    PATH, PROTOCOL 1, 2); the default when it cannot be read. Nothing more
    is imported for it: what main.py imports before the agent stays in a
    MicroPython heap for good (its interned names)."""
    path = "/etc/socketman/config.json"
    for i, a in enumerate(argv):
        if a.startswith("--config="):
            path = a[9:]
        elif a == "--config" and i + 1 < len(argv):
            path = argv[i + 1]
    try:
        import json
        v = json.loads(fs.read_file(path, 1 << 20) or b"{}").get("update_dir")
    except Exception:  # not JSON, nested too deep, not an object: the agent says what is wrong
        v = None
    return v.rstrip("/") or "/" if isinstance(v, str) and v.startswith("/") else DEFAULT_DIR


def choose(here, argv):
    """What main.py runs: (the lib directory of the tree, on_trial). here
    is main.py's directory, the package's own tree. Makes the transitions
    a start decides (PROTOCOL 10): an update job a restart interrupted is
    reported failed; a trial already started once rolls back; a pending
    trial is started (its tries counted first); a newer package replaces
    the committed update, which is forgotten. --version and --help only
    read. Raises on any error: main.py then runs its own tree."""
    own = here + "/lib"
    if fs.stat(here + "/" + MARK):
        return own, False   # a slot's main.py, run by the update job's check
    ud = _config_dir(argv)
    st = read(ud)
    if not st:
        return own, False
    quiet = "--version" in argv or "--help" in argv or "-h" in argv
    changed = forgot = False
    upd = st.get("update")
    if upd and not quiet:
        del st["update"]
        st["report"] = {"job": upd.get("job"), "success": False,
                        "msg": "not updated: the agent stopped during the update; nothing changed"}
        changed = True
    trial = st.get("trial")
    on_trial = None
    if trial and not quiet:
        changed = True
        slot = tree(ud, trial)
        if trial.get("tries", 0) >= 1 or slot is None:
            del st["trial"]
            why = ("the trial of %s was interrupted (the agent stopped before it reached the broker)"
                   if slot else "the files of %s are gone") % trial.get("version")
            st["report"] = {"job": trial.get("job"), "success": False, "msg": "rolled back: " + why}
        elif newer(VERSION, trial.get("version", "")) and newer(VERSION, trial.get("from", "")):
            del st["trial"]  # a package newer than both came meanwhile: it runs
            st["report"] = {"job": trial.get("job"), "success": False,
                            "msg": "rolled back: the installed package %s is newer" % VERSION}
        else:
            trial["tries"] = trial.get("tries", 0) + 1
            trial["package"] = VERSION
            on_trial = slot
    cur = st.get("current")
    if cur and not on_trial and st.get("package") != VERSION and newer(VERSION, cur.get("version", "")):
        # A newer package was installed since the update was committed.
        cur = st["fallback"] = None  # (not written when quiet)
        if not quiet:
            for k in ("current", "fallback", "package"):
                st.pop(k, None)
            changed = forgot = True
    if changed:
        save(ud, st, "start")
    if forgot:
        prune(ud, st)
    if on_trial:
        return on_trial + "/lib", True
    for rec in (cur, st.get("fallback")):
        d = tree(ud, rec) if rec else None
        if d:
            return d + "/lib", False
    return own, False


def failed(argv, why):
    """main.py: the tree on trial failed to start, raised or exited (why, a
    text): roll back to the version before. False when there was no trial
    to roll back (it had committed)."""
    ud = _config_dir(argv)
    st = read(ud)
    trial = st.pop("trial", None)
    if not trial:
        return False
    st["report"] = {"job": trial.get("job"), "success": False,
                    "msg": "rolled back: %s %s" % (trial.get("version"), why)}
    write(ud, st, "rollback")
    return True


def rmtree(path):
    """Remove a directory and everything in it (rm -rf: links are removed,
    never followed)."""
    os.system("rm -rf '%s' >/dev/null 2>&1" % path.replace("'", "'\"'\"'"))


def prune(update_dir, st):
    """Remove every slot the state does not name (a trial rolled back, a
    download cut short, versions older than the fallback); only
    directories with the MARK are touched."""
    keep = set()
    for k in ("current", "fallback", "trial"):
        rec = st.get(k)
        if isinstance(rec, dict):
            keep.add(rec.get("slot"))
    for name in fs.listdir(update_dir):
        d = update_dir + "/" + name
        if name not in keep and fs.stat(d + "/" + MARK):
            rmtree(d)
