# SocketMan entry point: `python3 main.py --config=...` or
# `micropython main.py --config=...`. MicroPython's unix port does not run
# boot.py by itself, so find lib/ here and then run boot.
import sys

_here = __file__.rpartition("/")[0] or "."
for _p in (_here + "/lib", _here):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import boot  # noqa: E402,F401  (heap tuning)
from socketman.agent import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
