#!/bin/sh
# System packages the tests and the demo need. Installs the Debian packages
# that are missing when we are root; otherwise says exactly what is missing.
missing=""
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
have mosquitto || missing="$missing mosquitto"
for tool in openssl gzip busybox shellcheck; do
    have "$tool" || missing="$missing $tool"
done
# Runs the 32-bit big-endian MIPS MicroPython (a router's CPU) in the tests.
have qemu-mips-static || missing="$missing qemu-user-static"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q $missing >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null && apt-get install -y -q $missing >/dev/null; } \
        || { echo "apt-get could not install:$missing" >&2; exit 1; }
    exit 0
fi
echo "missing:$missing -- install it with: sudo apt-get install$missing" >&2
exit 1
