"""The verdict of one mp_run.py run (a portable file under a MicroPython)."""
import re


def check(r, record_property, prop):
    """Assert the run passed, and record how many tests passed as prop."""
    m = re.search(r"RESULT passed=(\d+) failed=(\d+)", r.stdout)
    assert m, "no result line from micropython:\n%s\n%s" % (r.stdout, r.stderr)
    passed, failed = int(m.group(1)), int(m.group(2))
    record_property(prop, passed)
    assert failed == 0 and r.returncode == 0, r.stdout + r.stderr
    assert passed > 0
