"""The fleet page with a thousand devices in a real browser (headless
Chromium, the setup of test_server_browser.py; issue 25): the counts at the
top, paging, sorting by a column, search by MAC, name and model, filters
(state, offline for a day, model), a fleet job and a rollout to exactly the
devices a filter picks, and the live list and counts following a device
that goes offline without a reload; no page breaks its
Content-Security-Policy. The thousand devices are written straight into
the server's database (the ingestion itself is bench/fleet_server.py's)."""
import time

import pytest
import sqlalchemy as sa
from test_server_browser import browser, csp_violations, login, pytestmark, shot  # noqa: F401  (fixtures, skip)

from helpers.fleet import FleetServer, password_of
from helpers.rollout import add_release, archive

N = 1000
MODELS = ("Archer C7", "RT3200", "COVR-X1860", "GL-MT3000")


def device(i, now):
    """Device i of the fleet, as a devices row: every 5th offline (every
    10th of those for two days, the others for an hour), every 97th never
    connected; four models, three firmwares, two agent versions."""
    mac = "02:F0:00:00:%02X:%02X" % (i >> 8, i & 255)
    online = i % 5 != 0
    since = now - (2 * 86400 if i % 10 == 0 else 3600) if not online else now - 7200
    row = dict(mac=mac, mac_written=mac.lower(), name="" if i % 10 == 3 else "ap-%04d" % i,
               token="t%031d" % i, base="fleet/k3y/" + mac.lower(), admitted_at=now - 86400 * 3,
               first_seen=now - 86400 * 3, last_seen=now - 30 - i % 500 if online else since,
               online=online, online_changed_at=since, model=MODELS[i % 4], firmware="OpenWrt 23.05.%d" % (i % 3),
               agent_version="0.%d.0" % (i % 2 + 1), version="0.%d.0" % (i % 2 + 1), wan_ip="192.0.2.%d" % (i % 250),
               stations=i % 7, status=1 if i % 3 == 0 else 9, last_doc_at=now - 60)
    if i % 97 == 1:
        row.update(online=None, online_changed_at=None, last_seen=None, version=None, agent_version=None)
    return row


@pytest.fixture
def big(tmp_path, broker):
    from socketman_server.schema import devices
    srv = FleetServer(tmp_path, broker)
    st = srv.store()
    now = int(time.time())
    rows = [device(i, now) for i in range(N)]
    with st.engine.begin() as c:
        c.execute(sa.insert(devices), rows)
    try:
        yield srv, st, rows
    finally:
        st.close()
        srv.stop()


def page_macs(b):
    return b.execute_script("return Array.from(document.querySelectorAll('#fleet-rows tr.device'))"
                            ".map(function (r) { return r.dataset.mac; });")


def pager(b):
    return b.execute_script("var p = document.getElementById('fleet-pager'); return p && "
                            "[+p.dataset.total, +p.dataset.page, +p.dataset.pages];")


def counts(b):
    return b.execute_script("var o = {}; document.querySelectorAll('#fleet-state-counts a.count')"
                            ".forEach(function (a) { o[a.dataset.countState] = +a.dataset.n; }); return o;")


def test_a_thousand_devices_in_the_browser(big, browser):  # noqa: F811  (the fixture imported above)
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    srv, st, rows = big
    login(browser, srv.url(""), "admin", password_of("admin"))
    states = {"online": 0, "offline": 0, "never connected": 0, "silent": 0}
    for r in rows:
        states["never connected" if r["online"] is None else "online" if r["online"] else "offline"] += 1
    assert counts(browser) == states
    versions = browser.execute_script("var o = {}; document.querySelectorAll('#fleet-version-counts a.count')"
                                      ".forEach(function (a) { o[a.dataset.version] = +a.dataset.n; }); return o;")
    assert versions == {v: sum(1 for r in rows if r["version"] == v) for v in ("0.1.0", "0.2.0")}
    # One page of 50, by name (unnamed devices by their MAC).
    by_name = sorted(rows, key=lambda r: (r["name"] or r["mac"], r["mac"]))
    assert pager(browser) == [N, 1, 20] and page_macs(browser) == [r["mac"] for r in by_name[:50]]
    shot(browser, "fleet-1000-1-first-page")
    browser.find_element(By.ID, "page-next").click()
    WebDriverWait(browser, 10).until(lambda b: pager(b) == [N, 2, 20], message="page 2")
    assert page_macs(browser) == [r["mac"] for r in by_name[50:100]]

    # Sorting: Last seen, twice (the newest first).
    browser.find_element(By.CSS_SELECTOR, 'a.sort[data-sort="last_seen"]').click()
    WebDriverWait(browser, 10).until(lambda b: "sort=last_seen" in b.current_url and pager(b)[1] == 1)
    browser.find_element(By.CSS_SELECTOR, 'a.sort[data-sort="last_seen"]').click()
    WebDriverWait(browser, 10).until(lambda b: "desc=1" in b.current_url)
    newest = sorted((r for r in rows if r["last_seen"]), key=lambda r: (-r["last_seen"], r["mac"]))
    assert page_macs(browser) == [r["mac"] for r in newest[:50]]

    # Search: a MAC written with dashes and in lower case, a name, a model.
    def search(text):
        browser.get(srv.url("/"))
        box = browser.find_element(By.ID, "filter-q")
        box.clear()
        box.send_keys(text)
        browser.find_element(By.ID, "filter-apply").click()
        WebDriverWait(browser, 10).until(lambda b: "q=" in b.current_url)
        return page_macs(browser), pager(browser)[0]
    assert search("02-f0-00-00-02-0a") == (["02:F0:00:00:02:0A"], 1)
    expect = [r["mac"] for r in by_name if "ap-012" in r["name"]]
    assert search("ap-012") == (expect, len(expect)) and len(expect) == 9
    got, total = search("covr")
    assert total == sum(1 for r in rows if r["model"] == "COVR-X1860") == 250

    # The filter of the issue: offline for a day or more, model Archer C7.
    browser.get(srv.url("/"))
    Select(browser.find_element(By.ID, "filter-state")).select_by_value("offline")
    Select(browser.find_element(By.ID, "filter-offline")).select_by_value("24")
    Select(browser.find_element(By.ID, "filter-model")).select_by_value("Archer C7")
    browser.find_element(By.ID, "filter-apply").click()
    want = sorted(r["mac"] for r in rows if r["online"] is False and r["online_changed_at"] <= time.time() - 86400
                  and r["model"] == "Archer C7")
    assert len(want) == 49  # i % 20 == 0, but for device 680, which never connected
    WebDriverWait(browser, 10).until(lambda b: pager(b) and pager(b)[0] == len(want), message="the filter's count")
    assert sorted(page_macs(browser)) == want
    assert browser.find_element(By.ID, "fleet-filter-count").text == str(len(want))
    shot(browser, "fleet-1000-2-filter")

    # A fleet job to the filter's devices: exactly those (offline: NOT SENT).
    browser.find_element(By.ID, "fleet-command").send_keys("uptime")
    assert browser.find_element(By.ID, "fleet-target-filter").is_selected()
    browser.find_element(By.ID, "fleet-send").click()
    WebDriverWait(browser, 10).until(lambda b: "/fleet-jobs/" in b.current_url, message="the fleet job page")
    fid = int(browser.current_url.rsplit("/", 1)[1].split("?")[0])
    f, job_rows = st.fleet_job(fid)
    assert sorted(r["mac"] for r in job_rows) == want and {r["state"] for r in job_rows} == {"NOT SENT"}
    detail = st.audit_log(action="fleet-job")[0]["detail"]
    assert "filter (offline, offline for 24 h or more, model Archer C7)" in detail, detail

    # A rollout to the same filter, from the fleet page's link.
    add_release(srv, archive(srv.dir, "0.3.0"))
    browser.back()
    WebDriverWait(browser, 10).until(lambda b: b.find_elements(By.ID, "rollout-filter"))
    browser.find_element(By.ID, "rollout-filter").click()
    WebDriverWait(browser, 10).until(lambda b: "/rollouts" in b.current_url)
    assert browser.find_element(By.ID, "target-filter").is_selected()
    assert browser.find_element(By.ID, "rollout-filter-count").text == str(len(want))
    assert browser.find_elements(By.ID, "rollout-too-many")  # no thousand boxes to tick
    browser.find_element(By.ID, "rollout-send").click()
    WebDriverWait(browser, 10).until(lambda b: "/rollouts/" in b.current_url, message="the rollout page")
    rid = int(browser.current_url.rsplit("/", 1)[1].split("?")[0])
    assert sorted(d["mac"] for d in st.rollout_devices(rid)) == want
    assert st.rollout(rid)["target"].startswith("filter: offline, offline for 24 h or more, model Archer C7")
    shot(browser, "fleet-1000-3-rollout")

    # Live: a device of the first page goes offline; its row and the counts
    # follow without a reload.
    browser.get(srv.url("/"))
    mac = by_name[1]["mac"]
    assert by_name[1]["online"]
    st.status_event(by_name[1]["base"], by_name[1]["mac_written"],
                    {"event_type": "CONNECT", "timestamp": int(time.time()), "meta": {"online": "0"}})

    def row_state(b):
        return b.execute_script("var r = document.querySelector('#fleet-rows tr.device[data-mac=\"%s\"]');"
                                " return r && r.querySelector('.state').textContent;" % mac)
    WebDriverWait(browser, 10, 0.2).until(lambda b: row_state(b) == "offline", message="the row went offline live")
    WebDriverWait(browser, 10, 0.2).until(lambda b: counts(b)["offline"] == states["offline"] + 1,
                                          message="the counts followed")
    shot(browser, "fleet-1000-4-live")
    assert csp_violations(browser) == []
