"""The collector runs one round of commands a cycle once it knows the WiFi
devices (issue 16: each round is a shell started and waited for, the
largest part of an idle agent's CPU), and a second round only when the
device list changed. On the fake router made of real captures."""
import os
import time

from helpers import openwrt
from socketman.stats.collect import Collector


def _cycle(c):
    assert c.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        parts = c.poll()
        if parts is not None:
            return parts
        time.sleep(0.01)
    raise AssertionError("no parts in 20 s")


def test_one_round_a_cycle_and_two_when_the_devices_change(tmp_path, monkeypatch):
    env, cfg = openwrt.make(tmp_path)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    cfg.update(scan=1, mac="aa:bb:cc:dd:ee:01")
    c = Collector(cfg, str(tmp_path / "work"))
    rounds = []
    start = c.batch.start
    monkeypatch.setattr(c.batch, "start", lambda cmds: (rounds.append(len(cmds)), start(cmds))[1])

    first = _cycle(c)  # devices not known yet: a second round for them
    assert len(rounds) == 2 and c.devs == ["mesh0", "wlan0"]
    again = _cycle(c)  # known: their commands ride with the first round
    assert len(rounds) == 3
    assert again["stations"] == first["stations"] and again["ssids"] == first["ssids"]
    assert {s["interface"] for s in again["stations"]} == {"mesh0", "wlan0"}

    devices = os.path.join(env["FAKE_OPENWRT"], "ubus", "iwinfo.devices.json")
    with open(devices, "w") as f:
        f.write('{"devices": ["wlan0"]}')
    changed = _cycle(c)  # the list changed: the new list's commands in a second round
    assert len(rounds) == 5 and c.devs == ["wlan0"]
    assert {s["interface"] for s in changed["stations"]} == {"wlan0"}
    _cycle(c)
    assert len(rounds) == 6
