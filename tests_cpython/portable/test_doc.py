from socketman import VERSION
from socketman.stats import doc


def test_document_shape():
    parts = {"system": {"uptime": 5, "firmware": "23.05.0"}, "wan": {"wan_name": "eth1"},
             "dhcp": [{"mac": "aa", "ip": "10.0.0.2"}], "ssids": [{"interface": "wlan0"}],
             "stations": [{"mac": "AA:BB:CC:DD:EE:FF"}, {"mac": "AA:BB:CC:DD:EE:00"}]}
    d = doc.build(parts, "aa:bb:cc:dd:ee:ff", 1700000000, status=9, survey=[{"mac": "X"}], dropped=3, seq=7,
                  rejected=2)
    dev = d["device"]
    assert dev == {"mac": "aa:bb:cc:dd:ee:ff", "smv": VERSION, "v": "4", "created_at": 1700000000, "seq": 7,
                   "uptime": 5, "firmware": "23.05.0", "wan_name": "eth1", "status": 9, "connected": 2,
                   "dropped": 3, "rejected": 2}
    assert d["survey"] == [{"mac": "X"}] and d["dhcp"] == parts["dhcp"] and d["ssids"] == parts["ssids"]


def test_without_wireless_and_without_status():
    d = doc.build({"system": {}, "wan": {}, "dhcp": []}, "m", 1)
    assert set(d) == {"device", "dhcp"}
    assert "status" not in d["device"] and "dropped" not in d["device"] and "connected" not in d["device"]
    assert "rejected" not in d["device"]


def test_line_is_one_compact_json_line():
    line = doc.line(doc.build({"dhcp": [], "system": {"machine_type": "Ro\\nuter é"}}, "m", 1))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert b": " not in line
