"""Stats end to end (PROTOCOL 5, 7): the agent as a process on a fake OpenWRT
made of real captures, uploading to a real local HTTP(S) server. The test
clock runs 15 times faster: a document a second, an upload every 4 s."""
import json
import os
import time

import pytest

from helpers import openwrt
from helpers.device import MAC, config

# Also on the OpenWRT snapshot's MicroPython and on a router's CPU (MIPS, qemu).
EXTRA_RUNTIMES = ("mpy1.28-bundle", "mips1.23-bundle")

FAST = {"SOCKETMAN_TIME_SCALE": "15"}


def start(agents, agent_cmd, tmp_path, profile=None, env=None, **kw):
    kw.setdefault("scan", 1)
    fenv, fcfg = openwrt.make(tmp_path, profile)
    fenv.update(FAST)
    fenv.update(env or {})
    cfg = config(tmp_path, **dict(fcfg, **kw))
    return agents(agent_cmd, cfg, tmp_path, env=fenv)


def delivered(server, path="/stats"):
    """Documents of the requests the server answered 2xx, in arrival order."""
    out = []
    for r in server.got("POST", path):
        if r.answered and r.answered // 100 == 2:
            out.extend(r.documents())
    return out


def spool_empty(tmp_path):
    p = tmp_path / "cache" / "spool.jsonl"
    return not p.exists() or p.stat().st_size == 0


def wait_for(cond, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


def test_upload_format_and_document(agent_cmd, agents, tmp_path, http_server):
    api = http_server()
    a = start(agents, agent_cmd, tmp_path, stats_url=api.url("/v2/stats?region=eu"), token="tok-stats")
    r = api.wait("POST", "/v2/stats", timeout=30)[0]
    assert r.query == {"region": ["eu"], "access_token": ["tok-stats"], "mac": [MAC]}
    assert r.headers["User-Agent"].startswith("socketman/")
    fn, ctype, _ = r.multipart_file("data")
    assert fn == "archive.gz" and ctype == "application/gzip"
    # One document a "monitor", four "monitors" to a "heartbeat"; the first
    # upload comes at a random point of the first heartbeat.
    assert 1 <= len(r.documents()) <= 5
    r2 = api.wait("POST", "/v2/stats", count=2, timeout=30)[1]
    assert 3 <= len(r2.documents()) <= 5
    docs = r.documents()
    d = docs[0]
    dev = d["device"]
    assert dev["mac"] == MAC and dev["v"] == "4" and dev["smv"]
    assert dev["machine_type"] == "TP-Link TL-WR1043N/ND v4" and dev["firmware"] == "18.06.5"
    assert dev["uptime"] == 161 and dev["load_1"] == 0.04 and dev["procs"] == 119
    assert dev["total_ram"] == 511537152 and dev["free_ram"] == 362319872
    assert dev["wan_name"] == "eth0.1" and dev["wan_ip"] == "192.168.2.162" and dev["wan_gateway"] == "192.168.2.1"
    assert "rx_bytes" not in dev  # eth0.1 is not in that /proc/net/dev capture
    assert isinstance(dev["created_at"], int)
    assert dev["connected"] == 2
    assert [s["interface"] for s in d["ssids"]] == ["mesh0", "wlan0"]
    assert d["ssids"][1]["ssid"] == "SiWiFi-22a4-2.4G" and d["ssids"][1]["bitrate"] == 19500
    st = {s["mac"]: s for s in d["stations"]}
    assert st["D8:9C:67:1F:D4:57"]["tx_retries"] == 49 and st["D8:9C:67:1F:D4:57"]["interface"] == "wlan0"
    assert st["1A:61:B4:51:77:F0"]["rx_packets"] == 40528421  # iwinfo text fallback
    assert d["dhcp"][0] == {"mac": "c8:21:58:9e:bf:1f", "ip": "192.168.1.118", "name": "Alisa"}
    assert d["survey"] == []
    assert [x["device"]["seq"] for x in docs] == list(range(1, len(docs) + 1))
    assert "tok-stats" not in a.output()


def test_outage_then_every_document_exactly_once_in_order(agent_cmd, agents, tmp_path, http_server):
    api = http_server()
    # 500s, a dropped connection, a reply too slow for the 10 s timeout, a
    # 503: none of these is a 2xx, so none of them delivered anything.
    api.script = [(500, b"down"), (0, b"", "close"), (503, b"slow", "sleep:1.5"), (503, b"busy"),
                  (500, b"down")]
    a = start(agents, agent_cmd, tmp_path, stats_url=api.url("/stats"))
    api.wait("POST", "/stats", count=6, timeout=60)
    time.sleep(2)
    assert a.stop() == 0
    n_docs = a.output().count("stats: document of")
    # The lines still spooled go out when the agent comes back. (Waiting for
    # an empty spool instead would race: a new document follows each upload
    # within some 30 ms.)
    spool = tmp_path / "cache" / "spool.jsonl"
    kept = set(keys(json.loads(x) for x in spool.read_bytes().split(b"\n") if x))
    b = start(agents, agent_cmd, tmp_path, stats_url=api.url("/stats"))
    assert wait_for(lambda: kept <= set(keys(delivered(api))), 30)
    b.stop()
    n_docs += b.output().count("stats: document of")
    got = []
    for r in api.got("POST", "/stats")[5:]:
        got.extend(r.documents())
    # seq counts the documents of one run: the first run's, then the second's,
    # each in order with no gap (the second run may start within the second
    # the first one's last document was made, so created_at cannot order them).
    seqs = [d["device"]["seq"] for d in got]
    restart = [i for i in range(1, len(seqs)) if seqs[i] <= seqs[i - 1]]
    assert len(restart) <= 1, seqs
    cut = restart[0] if restart else len(seqs)
    assert seqs[:cut] == list(range(seqs[0], seqs[0] + cut)), seqs
    assert seqs[cut:] == list(range(1, len(seqs) - cut + 1)), seqs
    # A document made after the last upload and before the stop is still kept.
    left = spool.read_bytes().count(b"\n") if spool.exists() else 0
    assert len(got) + left == n_docs, (len(got), left, n_docs)


def test_an_answer_with_bare_lf_line_ends_counts_and_nothing_goes_twice(agent_cmd, agents, tmp_path, http_server):
    # issue 15, item 3: "HTTP/1.1 200 OK\n" + headers ending in "\n", then
    # close. The agent took it for "connection closed early" and sent the
    # whole spool again at every heartbeat.
    api = http_server()
    api.default = (200, b"HTTP/1.1 200 OK\nContent-Type: text/plain\nConnection: close\n\nok", "raw")
    a = start(agents, agent_cmd, tmp_path, stats_url=api.url("/stats"))
    api.wait("POST", "/stats", count=3, timeout=30)
    got = []
    for r in api.got("POST", "/stats"):
        got.extend(r.documents())
    seqs = [d["device"]["seq"] for d in got]
    assert seqs == list(range(1, len(seqs) + 1)), seqs  # each document once, in order
    assert "closed early" not in a.output()


def test_backup_url_takes_over(agent_cmd, agents, tmp_path, http_server):
    main_api, backup = http_server(), http_server()
    main_api.default = (502, b"bad gateway")
    start(agents, agent_cmd, tmp_path, stats_url=main_api.url("/stats"), backup_stats_url=backup.url("/b"))
    r = backup.wait("POST", "/b", timeout=30)[0]
    assert r.documents()
    assert main_api.got("POST", "/stats")
    assert r.query["mac"] == [MAC]


def test_cap_drops_oldest_and_reports_it(agent_cmd, agents, tmp_path, http_server):
    api = http_server()
    api.default = (500, b"down")
    a = start(agents, agent_cmd, tmp_path, stats_url=api.url("/stats"), cache_max_bytes=8192)
    a.wait_log("dropped the", timeout=40)
    time.sleep(1)
    api.default = (200, b"{}")
    assert wait_for(lambda: any("dropped" in d["device"] for d in delivered(api)), 40)
    assert a.stop() == 0
    docs = delivered(api)
    out = a.output()
    reported = sum(d["device"].get("dropped", 0) for d in docs)
    dropped = sum(int(line.split("dropped the ")[1].split()[0]) for line in out.splitlines()
                  if "dropped the " in line)
    made = out.count("stats: document of")
    spool = tmp_path / "cache" / "spool.jsonl"
    left = spool.read_bytes().count(b"\n") if spool.exists() else 0
    assert 0 < reported <= dropped
    assert len(docs) + dropped + left == made  # every document delivered, dropped or still kept
    keys = [(d["device"]["created_at"], d["device"]["seq"]) for d in docs]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)


def test_power_cut_spool_is_repaired(agent_cmd, agents, tmp_path, http_server):
    api = http_server()
    cache = tmp_path / "cache"
    cache.mkdir()
    old = [{"device": {"mac": MAC, "created_at": 1000 + i, "v": "4"}} for i in range(2)]
    (cache / "spool.jsonl").write_bytes(b"".join(json.dumps(d).encode() + b"\n" for d in old)
                                        + b'{"device": {"mac": "' + MAC.encode() + b'", "crea')
    a = start(agents, agent_cmd, tmp_path, stats_url=api.url("/stats"))
    r = api.wait("POST", "/stats", timeout=30)[0]
    docs = r.documents()
    assert docs[:2] == old
    assert all("created_at" in d["device"] for d in docs)
    assert "discarded 1 damaged line" in a.output()


def test_unauthorized_keeps_lines_and_logs_once(agent_cmd, agents, tmp_path, http_server):
    api = http_server()
    api.default = (401, b"no")
    a = start(agents, agent_cmd, tmp_path, stats_url=api.url("/stats"), token="old-token")
    api.wait("POST", "/stats", count=3, timeout=40)
    assert a.output().count("401 unauthorized") == 1
    api.default = (200, b"{}")
    before = len(api.got())
    assert wait_for(lambda: any(r.answered == 200 for r in api.got()[before:]), 30)
    first_ok = api.got("POST", "/stats")[before:]
    seqs = [d["device"]["seq"] for r in first_ok for d in r.documents()]
    # A batch whose 200 came after the agent's deadline (a loaded machine,
    # with deadlines 15 times shorter) goes again: keep first arrivals.
    firsts = [x for i, x in enumerate(seqs) if x not in seqs[:i]]
    assert firsts == list(range(1, len(firsts) + 1)) and len(firsts) >= 3  # all kept, in order


@pytest.mark.parametrize("ca", ["right", "wrong"])
def test_https_uploads(agent_cmd, agents, tmp_path, http_server, certs, ca):
    api = http_server(certs)
    cacrt = certs["ca"] if ca == "right" else certs["other_ca"]
    a = start(agents, agent_cmd, tmp_path, stats_url=api.url("/s", host="localhost"), cacrt=cacrt)
    if ca == "right":
        assert api.wait("POST", "/s", timeout=30)[0].documents()
    else:
        a.wait_log("upload to https://localhost", timeout=30)
        assert api.got() == []
        assert not spool_empty(tmp_path)


def test_no_cache_posts_each_document_as_json(agent_cmd, agents, tmp_path, http_server):
    api = http_server()
    api.script = [(500, b"down")]
    a = start(agents, agent_cmd, tmp_path, stats_url=api.url("/stats"), **{"no-cache": 1})
    rs = api.wait("POST", "/stats", count=3, timeout=30)
    assert rs[1].headers["Content-Type"] == "application/json"
    d = rs[1].json()
    assert d["device"]["mac"] == MAC
    assert not (tmp_path / "cache" / "spool.jsonl").exists()
    a.stop()
    # the document of the failed first POST was not retried
    seqs = [r.json()["device"]["seq"] for r in api.got("POST", "/stats")]
    assert seqs == list(range(1, len(seqs) + 1))


def test_scan_off_leaves_out_wireless(agent_cmd, agents, tmp_path, http_server):
    api = http_server()
    start(agents, agent_cmd, tmp_path, stats_url=api.url("/stats"), scan=0)
    d = api.wait("POST", "/stats", timeout=30)[0].documents()[0]
    assert set(d) == {"device", "dhcp"}
    assert "connected" not in d["device"]


def test_survey_results_arrive(agent_cmd, agents, tmp_path, http_server):
    api = http_server()
    start(agents, agent_cmd, tmp_path, stats_url=api.url("/stats"), scan=1, survey=1)
    assert wait_for(lambda: any(d["survey"] for d in delivered(api)), 30)
    surveys = [d["survey"] for d in delivered(api) if d["survey"]]
    macs = {e["mac"] for e in surveys[0]}
    assert {"6C:55:E8:BF:DE:A8", "50:64:2B:4B:02:4E"} <= macs
    assert len(surveys) == 1  # a scan's results are sent once, not with every document


def test_missing_sources_and_odd_values(agent_cmd, agents, tmp_path, http_server):
    api = http_server()
    odd = {"ubus_text": {"system.board": '{"model": null, "release": {"version": 5}}',
                         "system.info": '{"uptime": "soon", "load": [1, 2], "memory": []}',
                         "iwinfo.devices": '{"devices": ["wlan0"]}',
                         "iwinfo.info.wlan0": "[]"},
           "root": {}, "leases": None}
    a = start(agents, agent_cmd, tmp_path, profile=odd, stats_url=api.url("/stats"))
    d = api.wait("POST", "/stats", timeout=30)[0].documents()[0]
    dev = d["device"]
    for key in ("machine_type", "firmware", "uptime", "load_1", "total_ram", "wan_ip", "rx_bytes"):
        assert key not in dev, key
    assert dev["wan_name"] == "eth0.1"  # the route table still answers
    assert d["ssids"] == [] and d["stations"] == [] and d["dhcp"] == []
    assert a.alive()
    assert os.path.exists(a.cfg_path)


def test_boot_url_and_boot_cmd_once(agent_cmd, agents, tmp_path, http_server):
    api = http_server()
    api.default = (200, b"echo this body is never run > %s" % str(tmp_path / "pwned").encode())
    marker = tmp_path / "booted"
    a = start(agents, agent_cmd, tmp_path, boot_url=api.url("/boot"), boot_cmd="echo $$ >> %s" % marker,
              token="tk-boot")
    r = api.wait("GET", "/boot", timeout=20)[0]
    assert r.query == {"access_token": ["tk-boot"], "mac": [MAC]}
    assert wait_for(lambda: marker.exists(), 10)
    time.sleep(2)  # many monitor cycles: still once
    assert len(api.got("GET", "/boot")) == 1
    assert len(marker.read_text().split()) == 1
    assert not (tmp_path / "pwned").exists()
    assert "tk-boot" not in a.output()


def keys(docs):
    return [(d["device"]["created_at"], d["device"]["seq"]) for d in docs]


def refuse_one(api, seq=3):
    """The server refuses (400) every batch that holds the first document
    numbered seq it sees; state["bad"] is that document's key."""
    state = {"bad": None, "refusals": 0}

    def decide(r):
        if r.method != "POST":
            return None
        ks = keys(r.documents())
        if state["bad"] is None:
            state["bad"] = next((k for k in ks if k[1] == seq), None)
        if state["bad"] in ks:
            state["refusals"] += 1
            return (400, b"this batch holds a document we cannot take")
        return None
    api.decide = decide
    return state


def test_a_refused_document_is_dropped_alone_and_counted(agent_cmd, agents, tmp_path, http_server):
    api = http_server()
    state = refuse_one(api)
    a = start(agents, agent_cmd, tmp_path, stats_url=api.url("/stats"), scan=0)
    assert wait_for(lambda: any(d["device"].get("rejected") for d in delivered(api)), 40)
    assert a.stop() == 0
    docs = delivered(api)
    made = a.output().count("stats: document of")
    spool = tmp_path / "cache" / "spool.jsonl"
    left = spool.read_bytes().count(b"\n") if spool.exists() else 0
    ks = keys(docs)
    assert state["bad"] not in ks
    assert len(ks) == len(set(ks)) and ks == sorted(ks)  # every other one exactly once, in order
    assert len(docs) + left + 1 == made
    assert sum(d["device"].get("rejected", 0) for d in docs) == 1
    assert state["refusals"] <= 1 + 2 * 3  # halves: a handful of requests, not one per document
    assert "refused one document" in a.output()


def test_a_crash_in_the_middle_of_a_split_loses_nothing(agent_cmd, agents, tmp_path, http_server):
    api = http_server()
    state = refuse_one(api)
    # The first request after the refusal is never answered: the agent is
    # killed while it waits, in the middle of the split.
    def hold(r):
        if state["refusals"] == 1 and "held" not in state:
            state["held"] = r
            return True
        return False
    api.hold = hold
    a = start(agents, agent_cmd, tmp_path, stats_url=api.url("/stats"), scan=0)
    assert wait_for(lambda: "held" in state, 40)
    a.proc.kill()
    a.proc.wait(5)
    api.released.set()
    before = set(keys(delivered(api)))
    spool = tmp_path / "cache" / "spool.jsonl"
    kept = set()
    for line in spool.read_bytes().split(b"\n"):
        try:
            kept.add(keys([json.loads(line)])[0])
        except ValueError:
            pass  # a line the kill cut short: repaired away at the next start
    assert not before & kept  # what the server took had left the spool
    assert state["bad"] in kept
    b = start(agents, agent_cmd, tmp_path, stats_url=api.url("/stats"), scan=0)
    assert wait_for(lambda: any(d["device"].get("rejected") for d in delivered(api)), 40)
    assert b.stop() == 0
    ks = keys(delivered(api))
    left = set(keys([json.loads(x) for x in spool.read_bytes().split(b"\n") if x])) if spool.exists() else set()
    assert len(ks) == len(set(ks)) and state["bad"] not in ks  # nothing twice, the refused one never
    assert (before | kept) - {state["bad"]} <= set(ks) | left  # nothing lost
    new = (set(ks) | left) - before - kept  # what the second run made: seq 1, 2, 3 ...
    assert sorted(k[1] for k in new) == list(range(1, len(new) + 1))
