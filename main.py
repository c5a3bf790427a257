# SocketMan entry point: `python3 main.py --config=...` or
# `micropython main.py --config=...`. MicroPython's unix port does not run
# boot.py by itself, so find lib/ here and then run boot.
#
# It also picks the tree of the agent to run (PROTOCOL 10): this one (the
# package's), a committed update or a new version on trial, as the state
# file under update_dir says (socketman.slots.choose, this package's own
# copy; any error there: this tree). When the agent returns "restart" (it
# stopped to switch versions, or a trial ran out of time) it chooses and
# runs again in this same process; when a version on trial fails to start,
# raises or exits with an error, the version before runs again; when a
# committed one raises, this one runs.
import sys

_here = __file__.rpartition("/")[0] or "."
_own = _here + "/lib"
for _p in (_own, _here):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import boot  # noqa: E402,F401  (heap tuning)


def _unlock():
    # MicroPython leaves its heap locked when a KeyboardInterrupt comes out
    # of a garbage collection: every allocation after it would fail.
    try:
        import micropython
    except ImportError:
        return
    micropython.heap_lock()
    while micropython.heap_unlock() > 0:
        pass


def _forget():
    """Drop every module of the agent, so the next import reads the tree
    sys.path names now (and the heap gets the old code back)."""
    for name in [n for n in sys.modules if n == "socketman" or n.startswith("socketman.") or n == "boot"]:
        del sys.modules[name]
    import gc
    gc.collect()


def _choose():
    sys.path[sys.path.index(_lib[0])] = _lib[0] = _own
    try:
        from socketman.slots import choose
        return choose(_here, sys.argv[1:])
    except Exception as e:  # this must never be what stops the agent
        sys.stderr.write("socketman: update state not used (%r): running %s\n" % (e, _own))
        return _own, False
    finally:
        _forget()


def _main():
    from socketman.agent import main
    return main(sys.argv[1:])


def _run(lib):
    """The agent of the tree in lib: its exit status, or the exception it
    raised (not a Ctrl-C). Its modules are dropped after it (no frame
    holds them by then)."""
    sys.path[sys.path.index(_lib[0])] = _lib[0] = lib
    try:
        return _main()
    except Exception as e:
        return e
    finally:
        _forget()


def _rolled_back(status):
    why = ("raised %s: %s" % (type(status).__name__, status) if isinstance(status, Exception)
           else "exited with status %s" % (status,))
    sys.path[sys.path.index(_lib[0])] = _lib[0] = _own
    try:
        from socketman.slots import failed
        return failed(sys.argv[1:], why)
    except Exception as e:
        sys.stderr.write("socketman: cannot roll back (%r)\n" % (e,))
        return False
    finally:
        _forget()


_lib = [_own]
_status = "restart"
try:
    while _status == "restart":
        _tree, _trial = _choose()
        _status = _run(_tree)
        if _trial and _status not in (0, "restart") and _rolled_back(_status):
            _status = "restart"  # the version before runs again, and reports
        elif isinstance(_status, Exception) and _tree != _own:
            # A committed update that cannot run (its files damaged): this one does.
            sys.stderr.write("socketman: %s raised %r: running %s\n" % (_tree, _status, _own))
            _status = _run(_own)
except KeyboardInterrupt:
    # A stop (SIGINT, or SIGTERM on CPython) outside the agent's own loop:
    # a second one after its clean stop (timeout, procd), or one between
    # two versions. Nothing is left to flush: the state file says which
    # tree comes next, so this is a clean stop too, without a traceback.
    _unlock()
    _status = _status if isinstance(_status, int) else 0
if isinstance(_status, Exception):
    raise _status
sys.exit(_status)
