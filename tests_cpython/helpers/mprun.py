"""The verdict of one mp_run.py run (a portable file under a MicroPython)."""
import re


def check(r, record_property):
    """Assert the run passed, and record how many tests passed in it (the
    summary line counts them)."""
    m = re.search(r"RESULT passed=(\d+) failed=(\d+)", r.stdout)
    assert m, "no result line from micropython:\n%s\n%s" % (r.stdout, r.stderr)
    passed, failed = int(m.group(1)), int(m.group(2))
    record_property("inner_passed", passed)
    assert failed == 0 and r.returncode == 0, r.stdout + r.stderr
    assert passed > 0
