#!/bin/sh
# System packages the tests and the demo need. Installs the Debian packages
# that are missing when we are root; otherwise says exactly what is missing.
# Required ones stop `make` when missing; the fleet server's PostgreSQL and
# browser tests only need theirs where they can be had (the tests skip with
# a message naming the package otherwise).
missing=""
optional=""
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
have mosquitto || missing="$missing mosquitto"
# mosquitto_pub: a test publishes a signed job the way the README tells operators to.
have mosquitto_pub || missing="$missing mosquitto-clients"
for tool in openssl gzip busybox shellcheck; do
    have "$tool" || missing="$missing $tool"
done
# Runs the 32-bit big-endian MIPS MicroPython (a router's CPU) in the tests.
have qemu-mips-static || missing="$missing qemu-user-static"
# The fleet server's database test runs a real PostgreSQL; its browser test
# drives Debian's Chromium through ChromeDriver.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || optional="$optional postgresql"
have chromium || optional="$optional chromium"
have chromedriver || optional="$optional chromium-driver"
# Tunnels (PROTOCOL 11): Debian's dropbear (OpenWRT's SSH server) on a
# loopback port, reached by OpenSSH's ssh and scp through the ProxyCommand.
have dropbear || missing="$missing dropbear-bin"
have ssh || missing="$missing openssh-client"
# unshare and mount give a test its own /etc/resolv.conf (test_dns_e2e.py).
# The ubus tests publish real captures on OpenWRT's own ubusd through its
# Lua 5.1 bindings (../shared/bin/openwrt-ubus).
have lua5.1 || missing="$missing lua5.1"
have unshare || missing="$missing util-linux"
have mount || missing="$missing mount"
# The second broker kind the server and the agent are tested against
# (test_server_broker2.py): RabbitMQ with its MQTT plugin. The test starts
# its own node on loopback ports, whatever the package starts or not.
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || missing="$missing rabbitmq-server"
[ -z "$missing$optional" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    all="$missing$optional"
    echo "installing:$all"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q $all >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null && apt-get install -y -q $all >/dev/null; } \
        || { [ -z "$missing" ] && echo "apt-get could not install:$optional (their tests will skip)" >&2 && exit 0; } \
        || { echo "apt-get could not install:$all" >&2; exit 1; }
    exit 0
fi
[ -n "$optional" ] && echo "not installed:$optional -- their tests will skip; install with: sudo apt-get install$optional" >&2
[ -z "$missing" ] && exit 0
echo "missing:$missing -- install it with: sudo apt-get install$missing" >&2
exit 1
