# Runs one portable test file under MicroPython: every test_* function, then a
# summary line the pytest side parses. Usage: micropython mp_run.py FILE.py
# SOCKETMAN_LIB=DIR in the environment tests the socketman package in DIR
# (the lib/ of a .mpy bundle) instead of the repository's lib/.
import os
import sys

path = sys.argv[1]
tests_dir = __file__.rpartition("/")[0] or "."
sys.path.insert(0, tests_dir)
sys.path.insert(0, os.getenv("SOCKETMAN_LIB") or (tests_dir.rpartition("/")[0] or ".") + "/lib")
import socketman  # noqa: E402

print("runtime: micropython %s, socketman from %s" % (
    ".".join(str(v) for v in sys.implementation.version[:3]), socketman.__file__))
name = path.rpartition("/")[2][:-3]
mod = __import__("portable." + name, None, None, [name])
passed = failed = 0
for attr in sorted(dir(mod)):
    fn = getattr(mod, attr)
    if not attr.startswith("test_") or not callable(fn):
        continue
    try:
        fn()
        passed += 1
        print("PASS " + attr)
    except Exception as e:
        failed += 1
        print("FAIL %s: %s: %s" % (attr, type(e).__name__, e))
        sys.print_exception(e)
print("RESULT passed=%d failed=%d" % (passed, failed))
sys.exit(1 if failed or not passed else 0)
