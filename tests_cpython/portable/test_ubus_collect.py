# Which part of a collection comes from ubus and which from commands
# (PROTOCOL 12), on every runtime, with a bus that answers from real
# captures as told: every part the bus gives is not asked of a command;
# a part whose object or method is missing, or that the bus did not answer,
# is; a part whose object answered with an error status is not. Also the
# hostapd get_clients parser and the socketman object's answer.
import json

from portable.support import fixture, raises, tmpdir
from socketman import ubusstatus
from socketman.stats import wifi
from socketman.stats.collect import Collector

OK, METHOD_NOT_FOUND, NOT_FOUND, NO_OBJECT, DOWN, BAD = 0, 3, 4, -1, -2, -3
MAC = "aa:bb:cc:dd:ee:01"
LEASED = "C8:21:58:9E:BF:1F"


def _clients():
    c = json.loads(fixture("openwrt-2021_hass-openwrt-user/hostapd_wlan1_get_clients.json"))
    c["clients"] = {LEASED.lower(): c["clients"]["xx:xx:xx:xx:xx:xx"]}  # its MAC was masked by the poster
    return c


def _answers():
    wan = json.loads(fixture("unknown-device_dhcp-wan-eth0.1/network_interface_wan_status.json"))
    wan["interface"] = "wan"
    return {
        ("system", "board", None): (OK, json.loads(fixture("openwrt-18.06.5_tplink-tl-wr1043nd-v4/system_board.json"))),
        ("system", "info", None): (OK, json.loads(fixture("openwrt-15.05.1_oolite-v8-mt7621/system_info.json"))),
        ("network.interface", "dump", None): (OK, {"interface": [{"interface": "lan", "up": True}, wan]}),
        ("iwinfo", "devices", None): (OK, {"devices": ["mesh0", "wlan1"]}),
        ("iwinfo", "info", "mesh0"): (OK, json.loads(fixture("openwisp-pr26_mesh-mt7603e/iwinfo_info_mesh0.json"))),
        ("iwinfo", "info", "wlan1"): (NOT_FOUND, None),
        ("iwinfo", "assoclist", "mesh0"): (NOT_FOUND, None),
        ("iwinfo", "assoclist", "wlan1"): (NOT_FOUND, None),
        ("hostapd.wlan1", "get_clients", None): (OK, _clients()),
    }


class Bus:
    """Answers calls at once from answers {(path, method, device): (status, data)};
    anything else: no such object."""

    def __init__(self, answers, up=True):
        self.answers = answers
        self.is_up = up
        self.asked = []

    def up(self):
        return self.is_up

    def call(self, path, method, args, done, timeout_ms=1000):
        key = (path, method, (args or {}).get("device"))
        self.asked.append(key)
        st, data = self.answers.get(key, (NO_OBJECT, None))
        done(st, data)


class Batch:
    """Records the commands; their outputs are files given."""

    def __init__(self, files=None):
        self.files = files or {}
        self.rounds = []

    def start(self, cmds):
        self.rounds.append(list(cmds))

    def poll(self):
        return True

    def read(self, name, limit=0):
        return self.files.get(name)


def _collector(bus, files=None):
    d = tmpdir("ubcol")
    c = Collector({"sysroot": d, "scan": 1, "leases_file": d + "/none", "mac": MAC}, d + "/work", bus)
    c.batch = Batch(files)
    woken = []
    c.wake = lambda: woken.append(1)
    return c


def _cycle(c):
    assert c.start()
    for _ in range(10):
        p = c.poll()
        if p is not None:
            return p
    raise AssertionError("no parts")


def _cmds(c):
    return [x for r in c.batch.rounds for x in r]


def test_all_from_the_bus_and_no_command():
    c = _collector(Bus(_answers()))
    p = _cycle(c)
    assert c.batch.rounds == [] and c.batches == 0
    assert p["system"]["machine_type"] == "TP-Link TL-WR1043N/ND v4" and p["system"]["uptime"] == 15902
    assert p["wan"]["wan_ip"] == "192.168.2.162" and p["wan"]["wan_gateway"] == "192.168.2.1"
    assert [s["interface"] for s in p["ssids"]] == ["mesh0"] and p["ssids"][0]["encryption"] == "WPA3 SAE (CCMP)"
    st = p["stations"]
    assert len(st) == 1 and st[0]["mac"] == LEASED and st[0]["interface"] == "wlan1" and st[0]["rx_bitrate"] == 72.2
    assert c.devs == ["mesh0", "wlan1"]
    # The next cycle asks the known devices with the first round, and not the board again.
    c.bus.asked = []
    again = _cycle(c)
    assert ("system", "board", None) not in c.bus.asked and again == p and c.batches == 0


def test_no_connection_is_the_command_path():
    c = _collector(Bus(_answers(), up=False), {"iwdev": b'{"devices": ["wlan0"]}'})
    _cycle(c)
    assert c.bus.asked == []
    assert len(c.batch.rounds) == 2  # the devices came with the first round: theirs in a second
    first, second = c.batch.rounds
    assert any("system" in x and "info" in x for x in first) and any("iwinfo > iwinfo_all" in x for x in first)
    assert any("'hostapd.wlan0' get_clients" in x and "station dump" in x for x in second)


def test_a_missing_object_or_method_is_asked_of_commands_alone():
    a = _answers()
    for k in [k for k in a if k[0] == "iwinfo"]:
        del a[k]                                               # rpcd-mod-iwinfo is not installed
    a[("system", "info", None)] = (DOWN, None)                 # procd did not answer in time
    a[("network.interface", "dump", None)] = (METHOD_NOT_FOUND, None)
    c = _collector(Bus(a), {"iwinfo_all": fixture("siflower-sf19a28_openwrt-18.06-sdk/iwinfo.txt")})
    p = _cycle(c)
    cmds = _cmds(c)
    assert any("'system' info" in x for x in cmds) and any("network.interface.wan" in x for x in cmds)
    assert any("iwinfo > iwinfo_all" in x for x in cmds)
    assert not any("board" in x for x in cmds)  # procd answered that one
    assert c.devs == ["wlan0", "wlan1"] and p["ssids"] == []
    # Then the devices, on the bus: no iwinfo, no hostapd.wlan0: commands for
    # their parts, but wlan1's stations come from hostapd.
    last = c.batch.rounds[-1]
    assert ("hostapd.wlan0", "get_clients", None) in c.bus.asked
    assert any("iwinfo 'wlan0' info" in x for x in last) and any("iwinfo 'wlan1' info" in x for x in last)
    assert any("'wlan0' station dump" in x for x in last) and not any("'wlan1' station dump" in x for x in last)
    assert [s["mac"] for s in p["stations"]] == [LEASED]


def test_an_error_from_the_object_speaks_for_its_part():
    c = _collector(Bus(_answers()))
    _cycle(c)
    # iwinfo said NOT_FOUND for wlan1's info and both assoclists; no hostapd.mesh0:
    # the daemons answered, so no command asks them again.
    assert c.batches == 0


def test_a_malformed_answer_is_asked_of_commands():
    a = _answers()
    a[("hostapd.wlan1", "get_clients", None)] = (BAD, None)
    a[("iwinfo", "assoclist", "wlan1")] = (DOWN, None)
    c = _collector(Bus(a))
    p = _cycle(c)
    assert c.batches == 1 and any("station dump" in x and "wlan1" in x for x in _cmds(c))
    assert p["stations"] == []


def test_a_changed_device_list_is_a_second_round():
    a = _answers()
    c = _collector(Bus(a))
    _cycle(c)
    a[("iwinfo", "devices", None)] = (OK, {"devices": ["wlan1"]})
    c.bus.asked = []
    p = _cycle(c)
    assert c.devs == ["wlan1"] and [s["interface"] for s in p["stations"]] == ["wlan1"]
    assert c.bus.asked.count(("hostapd.wlan1", "get_clients", None)) == 2  # as device 1, then as device 0


def test_get_clients():
    st = wifi.clients_json(_clients())
    assert st == [{"mac": LEASED, "signal": -55, "authorized": True, "authenticated": True, "associated": True,
                   "wmm": True, "mfp": False, "rx_packets": 153853, "rx_bytes": 148449402, "rx_bitrate": 72.2,
                   "tx_packets": 99111, "tx_bytes": 8522063, "tx_bitrate": 72.2}]
    masked = json.loads(fixture("openwrt-2021_hass-openwrt-user/hostapd_wlan1_get_clients.json"))
    assert wifi.clients_json(masked) == []  # "xx:xx:.." is no MAC
    for bad in (None, b"", b"[]", {"clients": []}, {"clients": {"aa:bb:cc:dd:ee:ff": 5}},
                {"clients": {"aa:bb:cc:dd:ee:ff": {"bytes": [1], "rate": {"rx": "x"}, "signal": 3}}}):
        r = wifi.clients_json(bad)
        assert r in ([], [{"mac": "AA:BB:CC:DD:EE:FF"}]), (bad, r)


def test_the_socketman_object():
    s = ubusstatus.Status(MAC)
    st, d = s.status({})
    assert st == 0 and d["mac"] == MAC and d["mqtt"] == "disconnected" and d["status"] is None
    for k in ("version", "spool_bytes", "jobs_queued", "tunnels", "last_upload"):
        assert k in d, k
    s.mqtt = lambda: True
    s.spool_bytes = lambda: 1234
    s.jobs_queued = lambda: 2
    s.tunnels = lambda: 1
    s.last_upload = lambda: 1700000000
    s.checked(9)
    d = s.methods()["status"]({"ignored": 1})[1]
    assert (d["mqtt"], d["status"], d["spool_bytes"], d["jobs_queued"], d["tunnels"], d["last_upload"]) == (
        "connected", 9, 1234, 2, 1, 1700000000)
    s.tunnels = None
    raises(TypeError, s.status, {})  # a broken fact raises: the client answers UNKNOWN_ERROR
