"""`make demo` in a real browser: headless Chromium (Debian's chromium,
driven through chromium-driver) opens the dashboard of a running demo, sees
the three devices online, sends `uptime` as a fleet job, waits for three
PROCESSED results to fill in on the page, kills one agent and sees it go
offline without reloading. Screenshots go to tests_cpython/screenshots/
(ignored by git)."""
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from helpers import net

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHOTS = os.path.join(HERE, "screenshots")
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,900"]

pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="Chromium is not installed and could not be installed here (Debian packages "
                                       "chromium and chromium-driver; tools/need_system.sh installs them as root)")


class DemoProcess:
    """tools/demo.py as `make demo` runs it, on a free port."""

    def __init__(self, tmp):
        self.port = net.free_port()
        self.started = time.monotonic()
        self.out_path = os.path.join(str(tmp), "demo.out")
        self.out = open(self.out_path, "wb")
        env = dict(os.environ)
        self.proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "tools", "demo.py"), "--port",
                                      str(self.port)], stdout=self.out, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        deadline = time.monotonic() + 180
        while "Dashboard:" not in self.output():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("the demo did not start:\n" + self.output())
            time.sleep(0.2)
        self.url = re.search(r"Dashboard: (\S+)", self.output()).group(1).rstrip("/")
        self.operator, self.password = re.search(r"Log in as (\S+), password (\S+)", self.output()).groups()
        self.pids = {m.group(1): int(m.group(2)) for m in re.finditer(r"(02:de:00:00:00:0\d), pid (\d+)",
                                                                      self.output())}

    def output(self):
        with open(self.out_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # Ctrl-C, as a person stops it
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # the demo's own group: what this test started
                self.proc.wait(5)
        self.out.close()


@pytest.fixture
def demo(tmp_path):
    d = DemoProcess(tmp_path)
    yield d
    d.stop()
    assert "stopping..." in d.output()
    for pid in d.pids.values():  # Ctrl-C stopped every agent too
        assert not os.path.exists("/proc/%d" % pid) or open("/proc/%d/stat" % pid).read().split()[2] == "Z"


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for f in FLAGS + ["--user-data-dir=" + str(tmp_path / "chromium-profile")]:
        opts.add_argument(f)
    # Service(path) names the driver: Selenium then fetches nothing.
    b = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    b.set_page_load_timeout(30)
    yield b
    b.quit()


def login(browser, url, name, password):
    """Log in on the dashboard's login form as a person does; lands on the
    fleet page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    browser.get(url + "/")
    WebDriverWait(browser, 10).until(lambda b: "/login" in b.current_url, message="the login page")
    browser.find_element(By.ID, "login-name").send_keys(name)
    browser.find_element(By.ID, "login-password").send_keys(password)
    browser.find_element(By.ID, "login-send").click()
    WebDriverWait(browser, 10).until(lambda b: b.find_elements(By.ID, "fleet-rows"), message="the fleet page")


def shot(browser, name):
    os.makedirs(SHOTS, exist_ok=True)
    browser.save_screenshot(os.path.join(SHOTS, name + ".png"))


def test_demo_in_a_browser(demo, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    # live.js swaps the rows every 2 s: read them in one go in the page.
    def states():
        return browser.execute_script(
            "var o = {}; document.querySelectorAll('#fleet-rows tr.device').forEach(function (r) {"
            " o[r.dataset.mac] = r.querySelector('.state').textContent; }); return o;")

    def results():
        return browser.execute_script(
            "return Array.from(document.querySelectorAll('#job-results tr.result')).map(function (r) {"
            " var td = r.querySelectorAll('td'); return [r.dataset.state, td[2].textContent.trim(),"
            " r.querySelector('pre.out').textContent]; });")

    login(browser, demo.url, demo.operator, demo.password)
    # The page is not reloaded: live.js fills the rows in as devices come.
    WebDriverWait(browser, 60, 0.2).until(
        lambda b: len(states()) == 3 and set(states().values()) == {"online"}, message="three devices online")
    online_after = time.monotonic() - demo.started
    assert online_after < 60
    shot(browser, "1-fleet-online")
    assert "Raspberry Pi 4" in browser.page_source and "COVR-X1860" in browser.page_source

    browser.find_element(By.ID, "fleet-command").send_keys("uptime")
    browser.find_element(By.ID, "fleet-send").click()
    WebDriverWait(browser, 10).until(lambda b: "/fleet-jobs/" in b.current_url, message="the fleet job page")

    WebDriverWait(browser, 60, 0.2).until(lambda b: [r[0] for r in results()] == ["PROCESSED"] * 3,
                                          message="three PROCESSED results")
    got = results()
    assert all("load average" in out for _, _, out in got), got
    assert [code for _, code, _ in got] == ["0", "0", "0"]
    shot(browser, "2-fleet-job-results")

    # The third router got its config from the init URL.
    browser.get(demo.url + "/provisioning")
    row = browser.find_element(By.CSS_SELECTOR, 'tr.device[data-mac="02:DE:00:00:00:03"]')
    assert "not yet" not in row.find_elements(By.TAG_NAME, "td")[2].text

    browser.get(demo.url + "/devices/02-DE-00-00-00-02")
    WebDriverWait(browser, 20).until(
        lambda b: b.execute_script("return document.querySelectorAll('svg.chart polyline').length") >= 3,
        message="charts with lines")
    assert "Mesh AP" in browser.page_source  # an SSID of the COVR's capture
    shot(browser, "3-device")

    browser.get(demo.url)
    WebDriverWait(browser, 20).until(lambda b: len(states()) == 3)
    os.kill(demo.pids["02:de:00:00:00:01"], signal.SIGKILL)  # its connection dies: the broker sends the will
    WebDriverWait(browser, 30, 0.2).until(lambda b: states().get("02:DE:00:00:00:01") == "offline",
                                          message="the killed device offline")
    assert states()["02:DE:00:00:00:02"] == "online" and states()["02:DE:00:00:00:03"] == "online"
    shot(browser, "4-one-offline")
    print("three devices online %.1f s after `tools/demo.py` started (bundle build included)" % online_after)
