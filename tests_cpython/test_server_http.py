"""The reference fleet server over real HTTP: every device endpoint with good
and bad input (PROTOCOL 3, 4.1, 5), the dashboard's pages and forms. One
server process (SQLite) and one Mosquitto for the module; each test uses its
own device."""
import gzip
import itertools
import json
import os
import re
import sys
import time
import zlib

import pytest

from helpers.broker import Broker
from helpers.fleet import INIT_SECRET, FleetServer, document, multipart, stats_body

_macs = itertools.count(1)


@pytest.fixture(scope="module")
def broker_m(tmp_path_factory, certs):
    b = Broker(tmp_path_factory.mktemp("broker"), certs)
    yield b
    b.stop()


@pytest.fixture(scope="module")
def srv(tmp_path_factory, broker_m):
    s = FleetServer(tmp_path_factory.mktemp("server"), broker_m)
    yield s
    assert s.alive(), "the server died:\n" + s.output()
    s.stop()


@pytest.fixture(scope="module")
def store(srv):
    st = srv.store()
    yield st
    st.close()


@pytest.fixture
def dev(store):
    """A newly admitted device: (row, mac as the device writes it)."""
    n = next(_macs)
    mac = "02-5e-00-00-%02x-%02x" % (n // 256, n % 256)
    return store.admit(mac, "dev%d" % n), mac


def post_stats(srv, token, mac, docs=None, raw=None, ctype_body=None):
    ctype, body = ctype_body or stats_body(docs or [], raw)
    return srv.request("POST", "/api/stats", body=body, headers={"Content-Type": ctype},
                       query={"access_token": token, "mac": mac})


# ---- stats (PROTOCOL 5) ----------------------------------------------------

def test_stats_gzip_multipart_is_stored(srv, store, dev):
    row, mac = dev
    t0 = int(time.time()) - 100
    docs = [document(mac, load_1=0.5 + i, created_at=t0 + 15 * i, connected=i) for i in range(3)]
    r = post_stats(srv, row["token"], mac, docs)
    assert r.status == 200, r
    assert r.json() == {"stored": 3}
    got = store.device(mac)
    assert got["model"] == "TP-Link Archer C7" and got["wan_ip"] == "192.0.2.10"
    assert got["stations"] == 2 and got["status"] == 9 and got["mac_written"] == mac
    assert json.loads(got["last_doc"])["device"]["load_1"] == 2.5
    assert [s[:2] for s in store.samples(row["id"], 0)] == [(t0, 0.5), (t0 + 15, 1.5), (t0 + 30, 2.5)]


def test_stats_plain_json_is_stored(srv, store, dev):
    row, mac = dev
    r = srv.request("POST", "/api/stats", body=json.dumps(document(mac, load_1=1.25)),
                    headers={"Content-Type": "application/json"}, query={"access_token": row["token"], "mac": mac})
    assert r.status == 200, r
    assert [s[1] for s in store.samples(row["id"], 0)] == [1.25]


def test_stats_blank_lines_are_skipped(srv, store, dev):
    row, mac = dev
    text = "\n   \n" + json.dumps(document(mac)) + "\n\n"
    r = post_stats(srv, row["token"], mac, raw=gzip.compress(text.encode()))
    assert r.status == 200 and r.json() == {"stored": 1}


def test_stats_several_gzip_members(srv, store, dev):
    row, mac = dev
    raw = b"".join(gzip.compress((json.dumps(document(mac)) + "\n").encode()) for _ in range(2))
    r = post_stats(srv, row["token"], mac, raw=raw)
    assert r.status == 200 and r.json() == {"stored": 2}


@pytest.mark.parametrize("token, mac_of", [("", "own"), ("nope", "own"), ("OTHER", "own"), ("own", "other"),
                                           ("own", "none")])
def test_stats_wrong_token_is_401(srv, store, dev, token, mac_of):
    row, mac = dev
    other = store.admit("02:5e:ff:00:00:%02x" % next(_macs))
    token = {"own": row["token"], "OTHER": other["token"]}.get(token, token)
    query = {"access_token": token}
    if mac_of != "none":
        query["mac"] = mac if mac_of == "own" else other["mac"]
    ctype, body = stats_body([document(mac)])
    r = srv.request("POST", "/api/stats", body=body, headers={"Content-Type": ctype}, query=query)
    assert r.status == 401, r
    assert "error" in r.json()
    assert store.samples(row["id"], 0) == []


def test_stats_bad_gzip_is_400(srv, store, dev):
    row, mac = dev
    good = gzip.compress((json.dumps(document(mac)) + "\n").encode())
    for raw in (b"this is not gzip", good[: len(good) // 2], good[:-4] + b"\0\0\0\0", b""):
        r = post_stats(srv, row["token"], mac, raw=raw)
        assert r.status == 400, (raw[:20], r)
        assert r.json()["error"]
    assert store.samples(row["id"], 0) == []


@pytest.mark.parametrize("bad", ["{not json", "[1, 2]", '{"ssids": []}', '{"device": {"load_1": "high"}}',
                                 '{"device": {"load_1": NaN}}', '{"device": {"mac": "02:00:00:00:00:99"}}',
                                 '{"device": {}, "stations": {"a": 1}}', '{"device": {"connected": true}}'])
def test_stats_a_bad_line_refuses_the_whole_request(srv, store, dev, bad):
    """PROTOCOL 5: the agent splits a refused batch until the bad line is
    alone, so nothing of a refused request may be stored."""
    row, mac = dev
    text = "\n".join([json.dumps(document(mac)), bad, json.dumps(document(mac))]) + "\n"
    r = post_stats(srv, row["token"], mac, raw=gzip.compress(text.encode()))
    assert r.status == 400, r
    assert r.json()["error"].startswith("line 2:")
    assert store.samples(row["id"], 0) == []
    r = post_stats(srv, row["token"], mac, raw=gzip.compress(bad.encode()))
    assert r.status == 400


def test_stats_not_utf8_is_400(srv, dev):
    row, mac = dev
    r = post_stats(srv, row["token"], mac, raw=gzip.compress(b'{"device": {"firmware": "\xff\xfe"}}'))
    assert r.status == 400 and "UTF-8" in r.json()["error"]


def test_stats_body_cut_short_is_408_not_400(srv, store, dev):
    """A device that gives up mid-upload (its deadline, a cut link) closes
    before its Content-Length: a retry (408, PROTOCOL 5), never the 400 of a
    bad document, which would make the agent split the batch and drop
    lines. Nothing of it is stored. Half the body arrives, then the close;
    then a close right after the head (the server may see none of it)."""
    import socket
    row, mac = dev
    ctype, body = stats_body([document(mac)])
    head = ("POST /api/stats?access_token=%s&mac=%s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: %s\r\n"
            "Content-Length: %d\r\n\r\n" % (row["token"], mac, ctype, len(body))).encode()
    def said(count):
        return len(re.findall(r"POST /api/stats -> 408 the body ended after %s of its %d bytes" % (
            count, len(body)), srv.output()))

    before = said(r"\d+")
    for sent, count, n in ((len(body) // 2, "%d" % (len(body) // 2), 1), (0, r"\d+", before + 2)):
        c = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
        c.sendall(head + body[:sent])
        time.sleep(1.0)  # the server has read what came before the device gives up
        c.close()
        srv.wait(lambda count=count, n=n: said(count) >= n, 15, "the 408 in the server's log")
    assert store.samples(row["id"], 0) == []
    assert post_stats(srv, row["token"], mac, [document(mac)]).status == 200


def test_stats_oversize_body_is_413_and_the_server_goes_on(srv, store, dev):
    row, mac = dev
    big = os.urandom(300 * 1024)  # over the test server's --max-body of 256 KiB
    r = post_stats(srv, row["token"], mac, raw=big)
    assert r.status == 413, r
    r = srv.request("POST", "/api/stats", body=b"x" * (300 * 1024), headers={"Content-Type": "application/json"},
                    query={"access_token": row["token"], "mac": mac})
    assert r.status == 413, r
    assert post_stats(srv, row["token"], mac, [document(mac)]).status == 200


def test_stats_gzip_bomb_is_413(srv, store, dev):
    """A small archive that unpacks past the limit (8 MiB) is refused without
    being unpacked whole."""
    row, mac = dev
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    raw = c.compress(b"\n" * (20 * 1024 * 1024)) + c.flush()
    assert len(raw) < 64 * 1024
    r = post_stats(srv, row["token"], mac, raw=raw)
    assert r.status == 413, r
    assert srv.get("/healthz").status == 200


def test_stats_bad_shapes_are_400(srv, dev):
    row, mac = dev
    q = {"access_token": row["token"], "mac": mac}
    gz = gzip.compress(json.dumps(document(mac)).encode())
    wrong_part = multipart({}, {"file": ("archive.gz", gz, "application/gzip")})
    for ctype, body in (wrong_part, ("text/plain", b"hello"), ("application/json", b""),
                        ("multipart/form-data; boundary=xyz", b"--xyz\r\nbroken")):
        r = srv.request("POST", "/api/stats", body=body, headers={"Content-Type": ctype}, query=q)
        assert r.status == 400, (ctype, r)
    assert srv.request("GET", "/api/stats", query=q).status == 405


# ---- ping, boot (PROTOCOL 5) ---------------------------------------------

def test_ping(srv, store, dev):
    row, mac = dev
    q = {"access_token": row["token"], "mac": mac}
    ping = json.dumps({"app": "socketman", "timestamp": 1800000000, "event_type": "PING"})
    r = srv.request("POST", "/api/ping", body=ping, headers={"Content-Type": "application/json"}, query=q)
    assert r.status == 204, r
    assert store.device(mac)["last_seen"]
    for body in ("not json", "[]", '{"event_type": "CONNECT"}'):
        r = srv.request("POST", "/api/ping", body=body, headers={"Content-Type": "application/json"}, query=q)
        assert r.status == 400, (body, r)
    r = srv.request("POST", "/api/ping", body=ping, headers={"Content-Type": "application/json"},
                    query={"access_token": "bad", "mac": mac})
    assert r.status == 401


def test_boot(srv, store, dev):
    row, mac = dev
    assert srv.get("/api/boot", query={"access_token": row["token"], "mac": mac}).status == 200
    assert store.device(mac)["boot_at"]
    assert store.events(row["id"])[0]["kind"] == "boot"
    assert srv.get("/api/boot", query={"access_token": row["token"] + "x", "mac": mac}).status == 401


# ---- job results by PATCH (PROTOCOL 4.1, rest = 1) ------------------------

def test_operation_patch(srv, store, dev):
    row, mac = dev
    _, (job,) = store.create_jobs([row["id"]], "uptime", "cmd", "one")
    result = {"success": True, "output": " 10:00 up 1 day", "exit_code": 0}
    path = "/api/operations/" + job["job_id"]
    r = srv.request("PATCH", path, body=json.dumps(result), headers={"Content-Type": "application/json"},
                    query={"access_token": row["token"]})
    assert r.status == 200, r
    got = store.job(job["job_id"])
    assert (got["state"], got["success"], got["exit_code"], got["output"], got["via"]) == \
        ("PROCESSED", True, 0, " 10:00 up 1 day", "rest")


def test_operation_patch_refusals(srv, store, dev):
    row, mac = dev
    other = store.admit("02:5e:fe:00:00:%02x" % next(_macs))
    _, (job,) = store.create_jobs([row["id"]], "uptime", "cmd", "one")
    good = json.dumps({"success": False, "output": "x", "exit_code": 3})
    h = {"Content-Type": "application/json"}
    path = "/api/operations/" + job["job_id"]
    assert srv.request("PATCH", path, body=good, headers=h, query={"access_token": "wrong"}).status == 401
    assert srv.request("PATCH", path, body=good, headers=h).status == 401
    # Another device's token: that device has no such operation.
    assert srv.request("PATCH", path, body=good, headers=h, query={"access_token": other["token"]}).status == 404
    assert srv.request("PATCH", "/api/operations/j-unknown", body=good, headers=h,
                       query={"access_token": row["token"]}).status == 404
    for body in ("nope", "[]", '{"success": true}', '{"success": 1, "output": "", "exit_code": 0}',
                 '{"success": true, "output": "", "exit_code": true}',
                 '{"success": true, "output": "", "exit_code": 99999999999}'):
        r = srv.request("PATCH", path, body=body, headers=h, query={"access_token": row["token"]})
        assert r.status == 400, (body, r)
    assert store.job(job["job_id"])["state"] == "SENT"


# ---- provisioning (PROTOCOL 3) -------------------------------------------

def _init(srv, mac, secret=INIT_SECRET, header=None):
    headers = {"Authorization": header if header is not None else "Bearer " + secret}
    return srv.get("/api/init", query={"mac": mac, "machine": "TP-Link Archer C7 v5", "firmware": "OpenWrt 23.05"},
                   headers=headers)


def test_init_hands_an_admitted_device_a_config_the_agent_accepts(srv, store, dev):
    from socketman import config as agent_config
    row, mac = dev
    r = _init(srv, mac)
    assert r.status == 200, r
    cfg = r.json()
    assert cfg["token"] == row["token"] and cfg["mac"] == mac
    assert cfg["stats_url"] == srv.url("/api/stats") and cfg["api_url"] == srv.url("/api")
    assert cfg["topic"] == "fleet" and cfg["key"] == "k3y" and cfg["mqtt_host"] == "127.0.0.1"
    # The agent's own config checks (PROTOCOL 1) take it as it is.
    checked = agent_config.parse(r.body)
    assert checked["token"] == row["token"]
    assert store.device(mac)["provisioned_at"]
    assert _init(srv, mac).json()["token"] == row["token"]  # asked again: the same device, the same token


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer wrong-secret", "Basic " + INIT_SECRET,
                                    "Bearer " + INIT_SECRET + "x", "Bearer " + INIT_SECRET[:-1]])
def test_init_wrong_secret_is_403(srv, dev, header):
    row, mac = dev
    r = _init(srv, mac, header=header)
    assert r.status == 403, r
    assert row["token"] not in r.body.decode()


def test_init_device_not_admitted_is_403(srv, store):
    mac = "02:5e:aa:00:00:%02x" % next(_macs)
    r = _init(srv, mac)
    assert r.status == 403, r
    assert store.device(mac) is None


def test_init_device_seen_on_the_broker_but_not_admitted_is_403(srv, store):
    mac = "02:5e:aa:01:00:%02x" % next(_macs)
    store.status_event("fleet/k3y/" + mac, mac, {"event_type": "CONNECT", "meta": {"online": "1"}})
    assert store.device(mac)["token"] is None
    assert _init(srv, mac).status == 403


def test_init_bad_mac_is_400(srv):
    for mac in ("", "nonsense", "02:5e:aa:00:00", "02:5e-aa:00:00:01"):
        assert _init(srv, mac).status == 400, mac


def test_init_auto_admit(tmp_path, broker):
    s = FleetServer(tmp_path, broker, auto_admit=True)
    try:
        mac = "02:5e:ab:00:00:01"
        r = _init(s, mac)
        assert r.status == 200, r
        st = s.store()
        assert st.device(mac)["token"] == r.json()["token"]
        rec = st.audit_log(action="device.admit", target=mac.upper())[0]
        assert (rec["operator"], rec["outcome"]) == ("(auto-admit)", "ok")
        st.close()
        assert _init(s, mac, secret="wrong").status == 403
    finally:
        s.stop()


# ---- dashboard -----------------------------------------------------------

def test_dashboard_pages(srv, store, dev):
    row, mac = dev
    assert post_stats(srv, row["token"], mac, [document(mac)]).status == 200
    url_mac = row["mac"].replace(":", "-")
    for path in ("/", "/live/fleet", "/devices/" + url_mac, "/live/devices/" + url_mac + "?hours=1",
                 "/provisioning", "/fleet-jobs", "/devices/" + url_mac + "?hours=junk"):
        r = srv.get(path)
        assert r.status == 200, (path, r)
    page = srv.get("/devices/" + url_mac).body.decode()
    assert "TP-Link Archer C7" in page and "lobby" in page and "phone" in page and "192.168.1.20" in page
    assert page.count("<svg") == 4
    assert srv.get("/devices/02-00-00-00-00-00").status == 404
    assert srv.get("/devices/not-a-mac").status == 404
    cfg = srv.get("/devices/%s/config.json" % url_mac).json()
    assert cfg["token"] == row["token"]
    listed = {d["mac"]: d for d in srv.get("/devices.json").json()["devices"]}
    assert listed[row["mac"]]["model"] == "TP-Link Archer C7" and listed[row["mac"]]["state"] == "never connected"


def test_dashboard_admit_form(srv, store):
    mac = "02:5e:ac:00:00:%02x" % next(_macs)
    r = srv.post_form("/provisioning", {"mac": mac, "name": "attic"})
    assert r.status == 303
    assert store.device(mac)["name"] == "attic" and store.device(mac)["token"]
    r = srv.post_form("/provisioning", {"mac": "bogus"})
    assert r.status == 400 and b"not a MAC" in r.body
    r = srv.post_form("/provisioning", {"mac": mac, "config": '{"token": "x"}'})
    assert r.status == 400 and b"sets token itself" in r.body
    r = srv.post_form("/provisioning", {"mac": mac, "config": '{"heartbeat": 120, "username": "own-user"}'})
    assert r.status == 303
    cfg = _init(srv, mac).json()
    assert (cfg["heartbeat"], cfg["username"], cfg["topic"]) == (120, "own-user", "fleet")


def test_dashboard_job_to_an_offline_device_is_not_sent(srv, store, dev):
    row, mac = dev
    r = srv.post_form("/fleet-jobs", {"command": "uptime", "type": "cmd", "target": "selected", "mac": row["mac"]})
    assert r.status == 303, r
    fid = int(r.headers["Location"].rsplit("/", 1)[1])
    f, rows = store.fleet_job(fid)
    assert [(x["mac"], x["state"]) for x in rows] == [(row["mac"], "NOT SENT")]
    assert "never connected" in rows[0]["reason"]
    page = srv.get("/live/fleet-jobs/%d" % fid).body.decode()
    assert "NOT SENT" in page


def test_dashboard_bad_forms(srv, dev):
    row, mac = dev
    assert srv.post_form("/fleet-jobs", {"command": " ", "target": "all"}).status == 400
    assert srv.post_form("/fleet-jobs", {"command": "x", "target": "everyone"}).status == 400
    assert srv.post_form("/fleet-jobs", {"command": "x", "type": "evil", "target": "all"}).status == 400
    assert srv.post_form("/fleet-jobs", {"command": "x", "target": "selected", "mac": "none"}).status == 400
    assert srv.post_form("/devices/%s/jobs" % row["mac"].replace(":", "-"), {"command": ""}).status == 400


def test_dashboard_refuses_a_post_from_another_site(srv, store, dev):
    row, mac = dev
    r = srv.post_form("/fleet-jobs", {"command": "reboot", "target": "all"},
                      headers={"Origin": "http://evil.example"})
    assert r.status == 403
    assert store.fleet_jobs(limit=1) == [] or store.fleet_jobs(limit=1)[0]["command"] != "reboot"
    r = srv.post_form("/provisioning", {"mac": "02:5e:ad:00:00:01"}, headers={"Origin": srv.url("")})
    assert r.status == 303


def test_server_refuses_a_bad_setting(tmp_path):
    import subprocess

    from helpers.fleet import SERVER_MAIN
    bad = tmp_path / "device.json"
    bad.write_text('{"topic": "a/b", "key": "k"}')
    r = subprocess.run([sys.executable, SERVER_MAIN, "serve", "--device-config", str(bad), "--db",
                        "sqlite:///" + str(tmp_path / "x.db")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "topic" in r.stderr


@pytest.mark.parametrize("content, words", [
    (None, "No such file or directory"), (b'{"a":', "not JSON (Expecting value"),
    (b"\xff\xfe{}", "not JSON ('utf-8' codec can't decode"), (b"[1]", "is not a JSON object")])
def test_a_bad_device_config_file_is_named(tmp_path, content, words):
    """serve --device-config that cannot be read or is no JSON object: one
    line naming the file, exit 2."""
    import subprocess

    from helpers.fleet import SERVER_MAIN
    path = tmp_path / "device.json"
    if content is not None:
        path.write_bytes(content)
    r = subprocess.run([sys.executable, SERVER_MAIN, "serve", "--device-config", str(path), "--db",
                        "sqlite:///" + str(tmp_path / "x.db")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr
    assert str(path) in r.stderr and words in r.stderr, r.stderr
