"""Config for an agent under test: every path inside the test's directory,
every address on loopback."""
import os

from helpers.broker import PASSWORD, USER

MAC = "aa:bb:cc:dd:ee:01"
TOPIC, KEY = "fleet", "k1"
BASE = "%s/%s/%s" % (TOPIC, KEY, MAC)


def config(tmp, broker=None, **kw):
    tmp = str(tmp)
    cfg = {
        "mac": MAC, "topic": TOPIC, "key": KEY,
        "cache_dir": os.path.join(tmp, "cache"),
        "config_dir": os.path.join(tmp, "etc-config"),
        "leases_file": os.path.join(tmp, "dhcp.leases"),
        "state_file": os.path.join(tmp, "state.json"),
        "health_url": "none",
        "restart_cmd": "echo restart >> %s" % os.path.join(tmp, "restarts"),
        "reboot_cmd": "echo reboot >> %s" % os.path.join(tmp, "reboots"),
        "scan": 0,
        # Commands only, whatever ubusd this machine runs; the ubus tests
        # give their own bus (helpers/ubus.py).
        "ubus_socket": "",
    }
    os.makedirs(cfg["config_dir"], exist_ok=True)
    if broker is not None:
        cfg.update({"mqtt_host": "127.0.0.1", "port": broker.port, "username": USER, "password": PASSWORD})
    cfg.update(kw)
    return cfg
