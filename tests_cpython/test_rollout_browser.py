"""Releases and rollouts in a real browser (headless Chromium, the setup of
test_server_browser.py): an admin uploads a release on the Releases page,
starts a rollout to two ticked devices on the Rollouts page, and watches
the per-device table fill in without reloading (one device updated, the
canary of another rollout rolled back and the rollout stopped); the fleet
page shows each device's version; no page breaks its
Content-Security-Policy."""
import pytest
from test_server_browser import browser, csp_violations, login, pytestmark, shot  # noqa: F401  (fixtures, skip)

from helpers.fleet import FleetServer, password_of
from helpers.rollout import FakeFleet, add_release, archive


@pytest.fixture
def setup(tmp_path, broker):
    srv = FleetServer(tmp_path, broker)
    add_release(srv, archive(tmp_path, "0.2.0"))
    f = FakeFleet(broker, 3, modes={2: "rollback"}, prefix="02:b0:00:00:00")
    st = srv.store()
    try:
        srv.wait(lambda: all((st.device(m) or {}).get("version") == "0.1.0" for m in f.macs()), 20, "3 online")
        yield srv, st, f, archive(tmp_path, "0.3.0")
    finally:
        f.stop()
        st.close()
        srv.stop()


def rows(browser):  # noqa: F811  (the fixture imported above)
    return browser.execute_script(
        "var o = {}; document.querySelectorAll('#rollout-rows tr.rdevice').forEach(function (r) {"
        " o[r.dataset.mac] = [r.dataset.state, r.querySelector('td.reason').textContent]; }); return o;")


def state(browser):  # noqa: F811
    """The rollout's state, read in one go (live.js swaps the element every 2 s)."""
    return browser.execute_script("var e = document.getElementById('rollout-state'); return e && e.dataset.state;")


def test_upload_and_roll_out_from_the_dashboard(setup, browser):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    srv, st, f, second = setup
    login(browser, srv.url(""), "admin", password_of("admin"))
    browser.get(srv.url("/releases"))
    browser.find_element(By.ID, "release-file").send_keys(second)
    browser.find_element(By.ID, "release-send").click()
    WebDriverWait(browser, 20).until(lambda b: b.find_elements(By.CSS_SELECTOR, 'tr.release[data-version="0.3.0"]'),
                                     message="the uploaded release listed")
    assert st.release("0.3.0")["uploaded_by"] == "admin"
    shot(browser, "rollout-1-releases")

    browser.get(srv.url("/rollouts"))
    browser.find_element(By.CSS_SELECTOR, '#rollout-release option[value="0.3.0"]').click()
    browser.find_element(By.ID, "target-selected").click()
    for mac in f.macs()[:2]:
        browser.find_element(By.CSS_SELECTOR, '#rollout-devices input[value="%s"]' % mac).click()
    for name, value in (("rollout-waves", "1,rest"), ("rollout-trial", "6"), ("rollout-margin", "2")):
        el = browser.find_element(By.ID, name)
        el.clear()
        el.send_keys(value)
    browser.find_element(By.ID, "rollout-send").click()
    WebDriverWait(browser, 10).until(lambda b: "/rollouts/" in b.current_url, message="the rollout page")
    # live.js fills the table in as the devices answer.
    WebDriverWait(browser, 40, 0.2).until(
        lambda b: [s for s, _ in rows(b).values()] == ["updated", "updated"], message="two devices updated")
    assert state(browser) in ("running", "done")
    WebDriverWait(browser, 10, 0.2).until(lambda b: state(b) == "done", message="done")
    shot(browser, "rollout-2-done")

    # The third device, alone: it rolls back, and the rollout stops.
    browser.get(srv.url("/rollouts"))
    browser.find_element(By.CSS_SELECTOR, '#rollout-release option[value="0.3.0"]').click()
    browser.find_element(By.ID, "target-all").click()
    browser.find_element(By.ID, "rollout-send").click()
    WebDriverWait(browser, 10).until(lambda b: "/rollouts/" in b.current_url, message="the second rollout's page")
    WebDriverWait(browser, 40, 0.2).until(lambda b: state(b) == "stopped", message="the rollout stopped")
    got = rows(browser)
    assert list(got) == [f.macs()[2]] and got[f.macs()[2]][0] == "rolled back"
    assert "rolled back:" in browser.execute_script("return document.getElementById('rollout-reason').textContent")
    assert browser.find_elements(By.ID, "rollout-resume") and browser.find_elements(By.ID, "rollout-abort")
    shot(browser, "rollout-3-stopped")

    browser.get(srv.url("/"))
    versions = browser.execute_script(
        "var o = {}; document.querySelectorAll('#fleet-rows tr.device').forEach(function (r) {"
        " o[r.dataset.mac] = r.querySelector('td.version').textContent; }); return o;")
    assert versions == {f.macs()[0]: "0.3.0", f.macs()[1]: "0.3.0", f.macs()[2]: "0.1.0"}
    browser.get(srv.url("/rollouts"))
    assert csp_violations(browser) == []
