# The pure parts of provisioning (PROTOCOL 3): where it starts from, the
# shared secret, the WAN device's MAC, the model and release it sends, and
# the check of a served config. Real captures from fixtures/openwrt.
import json
import os

from portable.support import fixture, raises, tmpdir, write
from socketman import config, fs, provision
from socketman.stats import system

WAN = "unknown-device_dhcp-wan-eth0.1/network_interface_wan_status.json"
BOARD = "openwrt-18.06.5_tplink-tl-wr1043nd-v4/system_board.json"
RELEASE = "openwrt-24.10.0_openwrt-one-filogic/openwrt_release"
ROUTE = ("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
         "wan9\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n")


def mkdirs(base, rel):
    """base/rel, made one new directory at a time (fs.makedirs goes from /,
    and the WebAssembly port's file system says "exists" in its own way)."""
    for part in rel.split("/"):
        base += "/" + part
        try:
            os.mkdir(base)
        except OSError:
            pass
    return base


def device(mac_of=None, route=False):
    root = tmpdir()
    for dev, mac in (mac_of or {}).items():
        mkdirs(root, "sys/class/net/" + dev)
        write(root + "/sys/class/net/" + dev + "/address", mac + "\n")
    if route:
        mkdirs(root, "proc/net")
        write(root + "/proc/net/route", ROUTE)
    return root


def test_the_wan_device_mac():
    root = device({"eth0.1": "a0:f3:c1:00:11:22", "wan9": "02:00:00:00:00:09"}, route=True)
    assert provision.wan_mac(root, fixture(WAN)) == "a0:f3:c1:00:11:22"  # ubus names eth0.1
    # No ubus answer: the interface of the default route.
    assert provision.wan_mac(root, None) == "02:00:00:00:00:09"
    assert provision.wan_mac(root, b"not json") == "02:00:00:00:00:09"
    assert provision.wan_mac(device(), fixture(WAN)) == ""  # no such device in /sys
    assert provision.wan_mac(device({"eth0.1": "00:00:00:00:00:00"}), fixture(WAN)) == ""
    assert provision.wan_mac(device({"eth0.1": "garbage"}), fixture(WAN)) == ""
    assert provision.wan_mac(device(), b'{"device": "../../etc"}') == ""
    assert provision.wan_mac(device(), b'{"device": 5}') == ""


def test_model_and_release_from_the_same_sources_as_the_stats():
    root = tmpdir()
    mkdirs(root, "etc")
    write(root + "/etc/openwrt_release", fixture(RELEASE))

    def read(p, n):
        return fs.read_file(root + p, n)
    assert system.identity(read) == {"firmware": "24.10.0"}
    both = system.identity(read, system.board(fixture(BOARD)))
    assert both == {"machine_type": "TP-Link TL-WR1043N/ND v4", "firmware": "18.06.5"}  # ubus wins
    assert system.identity(lambda p, n: None) == {}


def test_base_config_missing_empty_or_without_token():
    d = tmpdir()
    base = provision.base_config(d + "/none.json")
    assert base["token"] == "" and base["mac"] == "" and base["cache_dir"] == "/tmp/socketman"
    write(d + "/empty.json", " \n")
    assert provision.base_config(d + "/empty.json")["mac_file"] == "/etc/mac"
    write(d + "/mac", "AA-BB-CC-00-11-22\n")
    write(d + "/c.json", json.dumps({"mac_file": d + "/mac", "cache_dir": d + "/cache"}))
    base = provision.base_config(d + "/c.json")
    assert base["mac"] == "AA-BB-CC-00-11-22" and base["cache_dir"] == d + "/cache"
    write(d + "/mac", "not a mac\n")
    assert provision.base_config(d + "/c.json")["mac"] == ""  # the WAN device's, then
    write(d + "/bad.json", '{"port": "x"}')
    raises(config.ConfigError, provision.base_config, d + "/bad.json")
    write(d + "/badmac.json", '{"mac": "12"}')
    raises(config.ConfigError, provision.base_config, d + "/badmac.json")


def test_the_secret_is_the_first_line():
    d = tmpdir()
    assert provision.read_secret(write(d + "/s", "s3cr3t-value \nsecond line\n")) == "s3cr3t-value"
    e = raises(ValueError, provision.read_secret, write(d + "/e", "\nsecret on line 2\n"))
    assert "empty" in str(e)
    e = raises(ValueError, provision.read_secret, d + "/missing")
    assert "cannot read" in str(e)


def test_a_secret_with_a_control_character_is_refused():
    # It goes into an Authorization header: a CR in it would end the header
    # line and start another one of the file's choosing.
    d = tmpdir()
    for bad in ("abc\rX-Other: 1\n", "a\tb\n", "a\x00b\n", "a\x7fb\n"):
        e = raises(ValueError, provision.read_secret, write(d + "/c", bad))
        assert "control character" in str(e), (bad, e)
    assert provision.read_secret(write(d + "/crlf", "s3cr3t\r\n")) == "s3cr3t"  # a CRLF file


def test_a_served_config_is_checked_like_a_config_file():
    d = tmpdir()
    good = {"mqtt_host": "127.0.0.1", "topic": "t", "key": "k", "token": "tk-1", "cache_dir": d}
    body = json.dumps(good).encode()
    cfg, data = provision.served_config(body, "aa:bb:cc:dd:ee:01")
    assert cfg["mac"] == "aa:bb:cc:dd:ee:01" and cfg["token"] == "tk-1"  # the MAC it asked with
    assert json.loads(data) == dict(good, mac="aa:bb:cc:dd:ee:01")
    own = json.dumps(dict(good, mac="AA-BB-CC-DD-EE-02")).encode()
    cfg, data = provision.served_config(own, "aa:bb:cc:dd:ee:01")
    assert data == own and cfg["mac"] == "AA-BB-CC-DD-EE-02"  # written as served
    for bad in (b"", b"<html>503</html>", b"[1, 2]", b'"config"', b'{"port": 0}', b'{"topic": "a/b"}',
                b'{"mqtt_host": "h"}', b'{"cache_dir": "relative"}', b'{"token": 5}', b'\xff\xfe{}',
                b'{"token": "t", "token": "u"', b'{"rest": 1}',
                b'{"token": "t", "x": ' + b"[" * 1500 + b"]" * 1500 + b"}"):  # ran CPython out of stack
        raises(config.ConfigError, provision.served_config, bad, "aa:bb:cc:dd:ee:01")


def test_config_without_a_mac_only_when_asked():
    d = tmpdir()
    cfg = config.check({"mac_file": d + "/missing"}, need_mac=False)
    assert cfg["mac"] == ""
    raises(config.ConfigError, config.check, {"mac_file": d + "/missing"})
    raises(config.ConfigError, config.check, {"mac": "zz:zz:zz:zz:zz:zz"}, False)
