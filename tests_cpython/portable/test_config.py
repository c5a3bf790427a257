import json

from portable.support import raises, tmpdir, write
from socketman import config

MAC = "aa:bb:cc:dd:ee:ff"


def ok(**kw):
    d = {"mac": MAC}
    d.update(kw)
    return config.check(d)


def bad(obj):
    return raises(config.ConfigError, config.check, obj)


def test_defaults_match_protocol():
    c = ok()
    assert c["port"] == 1883
    assert c["qos"] == 1
    assert c["monitor"] == 15
    assert c["heartbeat"] == 60
    assert c["ping-interval"] == 180
    assert c["reboot"] == 600
    assert c["health_port"] == 53
    assert c["cache_dir"] == "/tmp/socketman"
    assert c["cache_max_bytes"] == 1048576
    assert c["job_timeout"] == 300
    assert c["max_output"] == 51200
    assert c["config_dir"] == "/etc/config"
    assert c["leases_file"] == "/tmp/dhcp.leases"
    assert c["restart_cmd"] == "/etc/init.d/network restart"
    assert c["reboot_cmd"] == "reboot"
    assert c["scan"] == 1 and c["survey"] == 0 and c["insecure"] == 0
    assert c["mqtt_host"] == "" and c["stats_url"] == ""
    assert c["job_key"] == "" and c["job_max_age"] == 300
    assert c["client_cert"] == "" and c["client_key"] == ""


def test_example_config_has_every_key_with_its_default():
    from portable.support import ROOT, read
    example = json.loads(read(ROOT + "/config.example.json"))
    for row in config.SCHEMA:
        assert row[0] in example, row[0]
    c = config.check(dict(example, mac=MAC))
    for row in config.SCHEMA:
        key = row[0]
        if key not in ("mac", "port"):
            assert c[key] == row[2] or key == "heartbeat", key


def test_tls_changes_default_port():
    assert ok(tls=True)["port"] == 8883
    assert ok(tls=True, port=9000)["port"] == 9000


def test_clamps():
    assert ok(monitor=1)["monitor"] == 15
    assert ok(monitor=-5)["monitor"] == 15
    assert ok(monitor=30, heartbeat=10)["heartbeat"] == 30
    assert ok(heartbeat=1000)["heartbeat"] == 300
    assert ok(**{"ping-interval": 5})["ping-interval"] == 30
    assert ok(reboot=1)["reboot"] == 300
    assert ok(reboot=299)["reboot"] == 300
    assert ok(reboot=0)["reboot"] == 0
    assert ok(reboot=301)["reboot"] == 301


def test_sleep_is_an_alias_of_heartbeat():
    assert ok(sleep=120)["heartbeat"] == 120
    assert ok(sleep=120, heartbeat=90)["heartbeat"] == 90


def test_flags_accept_bool_int_and_strings():
    for v, want in ((True, 1), (False, 0), (1, 1), (0, 0), ("1", 1), ("0", 0), ("true", 1), ("false", 0)):
        assert ok(tls=v)["tls"] == want, v
    assert bad({"mac": MAC, "tls": 2}).key == "tls"
    assert bad({"mac": MAC, "tls": "maybe"}).key == "tls"
    assert bad({"mac": MAC, "scan": None}).key == "scan"


def test_ints_accept_numeric_strings_not_bools_or_fractions():
    assert ok(port="1884")["port"] == 1884
    e = bad({"mac": MAC, "port": True})
    assert e.key == "port"
    e = bad({"mac": MAC, "monitor": 15.5})
    assert e.key == "monitor" and "integer" in e.problem
    assert ok(monitor=20.0)["monitor"] == 20


def test_wrong_types_name_the_key():
    for key, value in (("username", 5), ("password", ["x"]), ("mqtt_host", {"a": 1}),
                       ("token", None), ("cache_dir", 1), ("port", "x"), ("qos", [1])):
        e = bad({"mac": MAC, key: value})
        assert e.key == key, (key, e)
        assert key in str(e)


def test_ranges():
    for key, value in (("port", 0), ("port", 65536), ("qos", 3), ("qos", -1),
                       ("health_port", 0), ("reboot", -1), ("job_timeout", 0),
                       ("max_output", 0), ("cache_max_bytes", 10)):
        e = bad({"mac": MAC, key: value})
        assert e.key == key and "range" in e.problem, (key, e)


def test_topic_parts_reject_mqtt_wildcards_and_separators():
    for bad_value in ("a/b", "a+", "#", "x\u0000y"):
        for key in ("topic", "key"):
            e = bad({"mac": MAC, key: bad_value})
            assert e.key == key


def test_topic_and_key_required_with_mqtt():
    assert bad({"mac": MAC, "mqtt_host": "127.0.0.1", "key": "k"}).key == "topic"
    assert bad({"mac": MAC, "mqtt_host": "127.0.0.1", "topic": "t"}).key == "key"
    assert ok(mqtt_host="127.0.0.1", topic="t", key="k")["topic"] == "t"


def test_mac_formats_kept_as_written():
    assert ok(mac="AA-BB-CC-DD-EE-FF")["mac"] == "AA-BB-CC-DD-EE-FF"
    assert ok(mac="aa:bb:cc:dd:ee:0f")["mac"] == "aa:bb:cc:dd:ee:0f"
    for m in ("aa:bb:cc:dd:ee", "aa-bb:cc:dd:ee:ff", "gg:bb:cc:dd:ee:ff", "aabbccddeeff", "x"):
        assert bad({"mac": m}).key == "mac", m


def test_mac_from_mac_file():
    d = tmpdir()
    write(d + "/mac", "00:11:22:33:44:55\nsecond line\n")
    assert config.check({"mac_file": d + "/mac"})["mac"] == "00:11:22:33:44:55"
    e = bad({"mac_file": d + "/missing"})
    assert e.key == "mac" and "missing" in e.problem
    write(d + "/junk", b"\xff\xfe junk\n")
    assert bad({"mac_file": d + "/junk"}).key == "mac"


def test_urls_checked():
    assert ok(stats_url="https://127.0.0.1:8443/stats?x=1")["stats_url"].endswith("x=1")
    for key in ("api_url", "stats_url", "backup_stats_url", "boot_url"):
        assert bad({"mac": MAC, key: "ftp://x"}).key == key
        assert bad({"mac": MAC, key: "http://"}).key == key
        assert bad({"mac": MAC, key: "http://h:99999/"}).key == key


def test_health_url_host_or_url():
    assert ok(health_url="127.0.0.1")["health_url"] == "127.0.0.1"
    assert ok(health_url="http://127.0.0.2:80/x")["health_url"] == "127.0.0.2"
    assert ok(health_url="none")["health_url"] == "none"
    assert bad({"mac": MAC, "health_url": "a/b"}).key == "health_url"


def test_cacrt_must_be_readable():
    assert bad({"mac": MAC, "cacrt": "/nonexistent/ca.pem"}).key == "cacrt"


def test_paths_must_be_absolute():
    assert bad({"mac": MAC, "cache_dir": "tmp/x"}).key == "cache_dir"


def test_unknown_keys_are_ignored():
    c = ok(frobnicate=1, sleep=90, heartbeet=2)
    assert "frobnicate" not in c and c["heartbeat"] == 90
    # ... and named, for the agent's warning (sleep is heartbeat's alias, not unknown)
    assert c["unknown_keys"] == ["frobnicate", "heartbeet"]
    assert ok()["unknown_keys"] == []


def test_parse_bad_files():
    for data, word in ((None, "read"), (b"", "empty"), (b"  \n", "empty"), (b"{", "JSON"),
                       (b"[1, 2]", "object"), (b"\"x\"", "object"), (b"\xff\xfe{}", "UTF-8"),
                       (b"null", "object"), (b'{"mac": "aa:bb:cc:dd:ee:ff", "mqtt_host": "h"', "JSON"),
                       (b'{"mac": "aa:bb:cc:dd:ee:ff",}', "JSON")):
        e = raises(config.ConfigError, config.parse, data)
        assert word in str(e), (data, e)


def test_load_good_file():
    d = tmpdir()
    write(d + "/c.json", json.dumps({"mac": MAC, "mqtt_host": "127.0.0.1", "topic": "t", "key": "k"}))
    c = config.load(d + "/c.json")
    assert c["mqtt_host"] == "127.0.0.1"


ODD_VALUES = (None, True, False, 0, -1, 1, 2 ** 31, -(2 ** 63), 10 ** 30, 0.5, 20.0, -0.0, 1e999, -1e999,
              float("nan"), "", " ", "-", "--5", "+5", "5 5", "1e3", "\u00b2", "\u0661", "0x10", "\0",
              "a/b", "#", "x" * 5000, [], [1], {}, {"a": 1}, "true", "yes", "http://", "/abs", "rel")


def test_every_key_with_odd_values_is_a_config_error_or_accepted():
    base = {"mac": MAC, "mqtt_host": "127.0.0.1", "topic": "t", "key": "k"}
    for key in [row[0] for row in config.SCHEMA] + ["sleep"]:
        for v in ODD_VALUES:
            obj = dict(base)
            obj[key] = v
            named = "heartbeat" if key == "sleep" else key
            try:
                got = config.check(obj)
            except config.ConfigError as e:
                assert e.key in (named, "api_url" if key == "rest" else named) and e.problem, (key, v, e)
                continue
            json.dumps(got)  # what it kept is plain data
            assert got[named] is not None, (key, v)


def test_signing_and_certificate_keys():
    assert ok(job_key="cl\u00e9-\u2713")["job_key"] == "cl\u00e9-\u2713"
    assert ok(job_max_age=30)["job_max_age"] == 30 and ok(job_max_age="86400")["job_max_age"] == 86400
    for v in (29, 86401, -1, 0):
        assert bad({"mac": MAC, "job_max_age": v}).key == "job_max_age"
    d = tmpdir()
    cert, key = write(d + "/c.pem", "x"), write(d + "/k.pem", "y")
    c = ok(client_cert=cert, client_key=key)
    assert (c["client_cert"], c["client_key"]) == (cert, key)
    e = bad({"mac": MAC, "client_cert": cert})
    assert e.key == "client_cert" and "client_key" in e.problem
    assert bad({"mac": MAC, "client_key": key}).key == "client_key"
    assert bad({"mac": MAC, "client_cert": d + "/none", "client_key": key}).key == "client_cert"
    assert bad({"mac": MAC, "client_cert": cert, "client_key": d}).key == "client_key"  # a directory


def test_update_keys():
    c = ok()
    assert c["update_dir"] == "/usr/lib/socketman/updates"
    assert c["update_trial"] == 300 and c["update_max_bytes"] == 1048576
    assert ok(update_trial=30)["update_trial"] == 30 and ok(update_trial="3600")["update_trial"] == 3600
    for v in (29, 3601, 0, -1, True, "5m", None):
        assert bad({"mac": MAC, "update_trial": v}).key == "update_trial"
    assert ok(update_max_bytes=1024)["update_max_bytes"] == 1024
    for v in (1023, 0, -1, 1.5, "1M"):
        assert bad({"mac": MAC, "update_max_bytes": v}).key == "update_max_bytes"
    assert ok(update_dir="/overlay/sm")["update_dir"] == "/overlay/sm"
    for v in ("updates", "", 5):
        assert bad({"mac": MAC, "update_dir": v}).key == "update_dir"


def test_mqtt_strings_refuse_what_a_broker_refuses():
    # issue 24, item 9: a TAB from a template or a CR from a CRLF file in
    # topic, key or username passed the check; then the broker closed every
    # CONNECT ("Malformed UTF-8") and the agent tried again for ever.
    refused = ("\t", "\r", "\n", "\x01", "\x1f", "\x7f", "\x80", "\x85", "\x9f",
               "\ufdd0", "\ufdef", "\ufffe", "\uffff", "\U0001fffe", "\U0010ffff")
    for key in ("topic", "key", "username"):
        for ch in refused:
            e = bad({"mac": MAC, key: "ab" + ch + "c"})
            assert e.key == key and "U+%04X" % ord(ch) in e.problem, (key, ch, e)
        for fine in ("caf\u00e9", "a\u00a0b", "\ufdcf\ufdf0\ufffd", "\U0001f600", "\u4e2d\u6587"):
            assert ok(**{key: fine})[key] == fine
    assert "carriage return" in bad({"mac": MAC, "key": "k\r"}).problem
    # The password is binary data in MQTT: any character, only its length.
    assert ok(password="p\tw\r\x85")["password"] == "p\tw\r\x85"


def test_mqtt_strings_fit_an_mqtt_string_field():
    assert bad({"mac": MAC, "username": "u" * 65536}).key == "username"
    assert bad({"mac": MAC, "password": "\u00e9" * 32768}).key == "password"  # 65536 bytes
    assert ok(username="u" * 65535)["username"] == "u" * 65535
    e = bad({"mac": MAC, "topic": "t" * 65000, "key": "k" * 600})
    assert e.key == "topic" and "65535" in e.problem


def test_config_file_must_be_strict_utf8():
    # MicroPython's decode() took the overlong C0 AF for "/" inside a topic.
    for raw in (b'{"mac": "%s", "topic": "a\xc0\xafb"}', b'{"mac": "%s", "key": "k\xed\xa0\x80"}'):
        e = raises(config.ConfigError, config.parse, raw.replace(b"%s", MAC.encode()))
        assert "UTF-8" in e.problem, e


def test_range_message_says_the_bound_a_person_can_use():
    # monitor, heartbeat and ping-interval have no lower bound (low values
    # are clamped): the message must not show the internal sentinel, and a
    # number of hundreds of digits is not repeated in full.
    e = bad({"mac": MAC, "monitor": 10 ** 300})
    assert e.key == "monitor" and "at most 86400" in e.problem, e
    assert str(-(1 << 30)) not in e.problem and len(str(e)) < 120, e
    e = bad({"mac": MAC, "port": 10 ** 30})
    assert "out of range 1..65535" in e.problem and len(str(e)) < 120, e


def test_a_byte_order_mark_is_named():
    # Notepad and other Windows editors save UTF-8 with a BOM: "JSON syntax
    # error at byte 0" did not tell the operator what to change.
    e = raises(config.ConfigError, config.parse, b'\xef\xbb\xbf{"mac": "aa:bb:cc:dd:ee:ff"}')
    assert "byte order mark" in str(e), e
