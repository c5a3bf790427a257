"""The reference fleet server from a checkout: python3 server/main.py serve ..."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from socketman_server.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
