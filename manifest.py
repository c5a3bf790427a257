# MicroPython manifest: freezes SocketMan into your own firmware build.
# In your port's or board's manifest:
#
#     include("/path/to/socketman/manifest.py")
#
# It freezes the `socketman` package (lib/socketman, every module at any
# depth) less the modules in tools/bundle_exclude.txt, which only the tests
# and benchmarks use: the same set tools/build_mpy.sh puts in the .mpy bundle.
# main.py stays a file (it is the entry point: `micropython main.py
# --config=...`) and so does boot.py if you want its heap tuning; with the
# package frozen, main.py finds it without a lib/ folder next to it.
# MicroPython's manifest tool runs this file with its own directory as the
# working directory and provides package().
import os
import re

_EXCLUDE = set()
with open("tools/bundle_exclude.txt") as _f:
    for _line in _f:
        _line = _line.strip()
        if _line and not _line.startswith("#"):
            _EXCLUDE.add(_line)


def _modules(top):
    found = []
    for path, dirs, files in os.walk(top):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and (d[:1].isalpha() or d[:1] == "_"))
        for name in sorted(files):
            if not name.endswith(".py") or not (name[:1].isalpha() or name[:1] == "_") or name.count(".") != 1:
                continue
            rel = os.path.relpath(os.path.join(path, name), top).replace(os.sep, "/")
            if rel not in _EXCLUDE:
                found.append(rel)
    return found


with open("lib/socketman/__init__.py") as _f:
    _version = re.search(r'VERSION = "([^"]+)"', _f.read()).group(1)
metadata(description="SocketMan: fleet agent for OpenWRT routers", version=_version)  # noqa: F821
package("socketman", files=_modules("lib/socketman"), base_path="lib", opt=3)  # noqa: F821
