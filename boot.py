# Early start-up that MicroPython users expect from boot.py: module paths and
# heap tuning. main.py imports it; on a board it also runs by itself.
import sys

_here = __file__.rpartition("/")[0] or "."
if _here + "/lib" not in sys.path:
    sys.path.insert(0, _here + "/lib")

from socketman import rt  # noqa: E402

rt.tune_heap()
