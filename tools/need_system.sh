#!/bin/sh
# System packages the tests and the demo need. Installs the Debian packages
# that are missing when we are root; otherwise says exactly what is missing.
missing=""
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
have mosquitto || missing="$missing mosquitto"
for tool in openssl gzip npm; do
    have "$tool" || missing="$missing $tool"
done
# node runs MicroPython 1.23's WebAssembly port (tests_cpython/mpy123).
have node || missing="$missing nodejs"
# unshare and mount give a test its own /etc/resolv.conf (test_dns_e2e.py).
have unshare || missing="$missing util-linux"
have mount || missing="$missing mount"
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
