# The agent as main.py runs it, in this process, then the socketman
# modules it holds once it has stopped: what a run of the agent loaded and
# kept (test_loaded_modules.py).
#   python3|micropython loaded_modules.py MAIN_DIR OUT_FILE AGENT_ARGS...
# MAIN_DIR: where main.py is (the repository, or a .mpy bundle); OUT_FILE
# gets one module name a line after the clean stop (the control FIFO's
# "q", as the launcher asks).
import sys

root, out = sys.argv[1], sys.argv[2]
for _p in (root, root + "/lib"):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import boot  # noqa: E402,F401  (as main.py: heap tuning)
from socketman.agent import main  # noqa: E402

status = main(sys.argv[3:])
names = sorted(n for n in sys.modules if n == "socketman" or n.startswith("socketman."))
with open(out, "w") as f:
    f.write("\n".join(names) + "\n")
sys.exit(status)
