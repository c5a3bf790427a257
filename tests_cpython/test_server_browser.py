"""The dashboard in a real browser: headless Chromium (Debian's chromium,
driven through chromium-driver).

- `make demo`: log in with the password the demo prints, see the three
  devices online, send `uptime` as a fleet job, wait for three PROCESSED
  results to fill in on the page, roll the demo's second version out from
  the Rollouts page and see the three routers switch to it, kill one agent
  and see it go offline without reloading; no page breaks its
  Content-Security-Policy.
- Hostile pages (issue 26): while an operator is logged in, pages of
  another origin (same site on another port, and another site) submit a
  form to the dashboard, a sandboxed frame (Origin: null) does the same,
  and a page frames the dashboard: no job is sent.
- A viewer sees the fleet and cannot send a job, not even from the
  dashboard's own page with its CSRF token.

Screenshots go to tests_cpython/screenshots/ (ignored by git)."""
import html
import http.server
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from helpers import net
from helpers.fleet import FleetServer, password_of

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
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console: CSP violations show there
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


def csp_violations(browser):
    """Console messages since the last call that say a Content-Security-
    Policy refused something."""
    return [e["message"] for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]


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

    # The demo's second version (issue 23): rolled out from the Rollouts
    # page with its defaults (waves 1, 10 %, rest: one router each), the
    # three routers switch to it, commit and say so.
    from socketman import VERSION
    new = VERSION + ".1"
    deadline = time.monotonic() + 180
    while "version %s of the agent is a release" % new not in demo.output():
        assert time.monotonic() < deadline and "could not make the second version" not in demo.output(), \
            demo.output()[-3000:]
        time.sleep(0.5)
    browser.get(demo.url + "/rollouts")
    browser.find_element(By.CSS_SELECTOR, '#rollout-release option[value="%s"]' % new).click()
    browser.find_element(By.ID, "target-all").click()
    browser.find_element(By.ID, "rollout-send").click()
    WebDriverWait(browser, 10).until(lambda b: "/rollouts/" in b.current_url, message="the rollout page")
    WebDriverWait(browser, 180, 0.5).until(
        lambda b: b.execute_script("var e = document.getElementById('rollout-state'); return e && e.dataset.state;")
        == "done", message="the rollout done")
    got = browser.execute_script(
        "return Array.from(document.querySelectorAll('#rollout-rows tr.rdevice')).map(function (r) {"
        " return r.dataset.state; });")
    assert got == ["updated"] * 3, got
    shot(browser, "3b-rollout-done")
    browser.get(demo.url)
    WebDriverWait(browser, 30, 0.5).until(lambda b: b.execute_script(
        "return Array.from(document.querySelectorAll('#fleet-rows tr.device td.version')).map(function (t) {"
        " return t.textContent; });") == [new] * 3, message="the fleet page showing %s" % new)
    WebDriverWait(browser, 10, 0.5).until(lambda b: demo.output().count("now runs %s" % new) == 3,
                                          message="the demo saying each router switched")

    browser.get(demo.url)
    WebDriverWait(browser, 20).until(lambda b: len(states()) == 3)
    os.kill(demo.pids["02:de:00:00:00:01"], signal.SIGKILL)  # its connection dies: the broker sends the will
    WebDriverWait(browser, 30, 0.2).until(lambda b: states().get("02:DE:00:00:00:01") == "offline",
                                          message="the killed device offline")
    assert states()["02:DE:00:00:00:02"] == "online" and states()["02:DE:00:00:00:03"] == "online"
    shot(browser, "4-one-offline")
    for path in ("/fleet-jobs", "/audit", "/operators", "/account"):
        browser.get(demo.url + path)
    assert csp_violations(browser) == []
    print("three devices online %.1f s after `tools/demo.py` started (bundle build included)" % online_after)


# ---- hostile pages (issue 26) ---------------------------------------------------

class Hostile:
    """Another origin: a plain HTTP server on its own loopback port serving
    an attacker's pages ({path: html}); reached as 127.0.0.1 (same site as
    the dashboard, another origin) or as localhost (another site)."""

    def __init__(self, pages):
        pages = dict(pages)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = pages.get(self.path.split("?")[0], "no such page").encode()
                self.send_response(200 if self.path.split("?")[0] in pages else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.port = net.free_port()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path, host="127.0.0.1"):
        return "http://%s:%d%s" % (host, self.port, path)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def job_form(action):
    """A form that sends a fleet job to every device, submitted at once."""
    return ('<form method="post" action="%s"><input name="command" value="reboot"><input name="type" value="cmd">'
            '<input name="target" value="all"></form><script>document.forms[0].submit();</script>' % action)


@pytest.fixture(scope="module")
def dash(tmp_path_factory):
    """A fleet server (no broker needed: a job that cannot go out is still
    recorded, NOT SENT, so any job that got in would show) with a device."""
    srv = FleetServer(tmp_path_factory.mktemp("dash"), None)
    st = srv.store()
    st.admit("02:de:ad:00:00:01", "target")
    yield srv, st
    st.close()
    srv.stop()


def refusals(srv):
    return re.findall(r"refused POST /fleet-jobs from \S+: (.*)", srv.output())


def test_hostile_pages_cannot_send_a_job(dash, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    srv, st = dash
    target = srv.url("/fleet-jobs")
    evil = Hostile({"/form": job_form(target),
                    "/sandboxed": '<iframe sandbox="allow-forms allow-scripts" srcdoc="%s"></iframe>'
                                  % html.escape(job_form(target)),
                    "/frame": '<iframe id="dash" src="%s"></iframe><iframe id="own" src="/own"></iframe>'
                              % srv.url("/"),
                    "/own": '<p id="own-page">a frame of this site shows</p>'})
    try:
        login(browser, srv.url(""), "oper", password_of("oper"))
        before = len(st.audit_log(operator="oper", action="request", limit=1000))
        # (page, what the server sees: each attempt must reach it and be refused)
        attempts = [(evil.url("/form"), "Origin %s is another site" % evil.url("")),
                    (evil.url("/form", "localhost"), "Origin %s is another site" % evil.url("", "localhost")),
                    (evil.url("/sandboxed"), "Origin null is another site")]
        for page, why in attempts:
            n = len(refusals(srv))
            browser.get(page)
            srv.wait(lambda n=n: len(refusals(srv)) > n, 20, "the refusal of the POST from " + page)
            assert refusals(srv)[-1] == why, (page, refusals(srv)[-1])
            assert st.fleet_jobs(limit=10) == [], page
        shot(browser, "5-hostile-form-refused")
        # Same site (127.0.0.1, another port): the browser sent the session
        # cookie (SameSite=Strict only stops other sites), so the refusal is
        # in the audit log under the operator. From localhost (another site)
        # and from the sandboxed frame it sent none.
        recs = st.audit_log(operator="oper", action="request", limit=1000)
        assert len(recs) - before == 1 and recs[0]["outcome"] == "refused", recs[:3]
        assert "Origin %s" % evil.url("") in recs[0]["detail"]

        # A page that frames the dashboard: the browser refuses to show it
        # (frame-ancestors 'none', X-Frame-Options DENY), so there is no form
        # to trick the operator into clicking; a frame of its own site shows.
        browser.get(evil.url("/frame"))
        WebDriverWait(browser, 10).until(lambda b: b.execute_script(
            "var f = document.getElementById('own'); return f.contentDocument && "
            "f.contentDocument.getElementById('own-page') !== null;"), message="the hostile page's own frame")
        browser.switch_to.frame("dash")
        time.sleep(0.5)
        assert browser.find_elements(By.ID, "fleet-send") == [] and browser.find_elements(By.ID, "login-form") == []
        assert not browser.execute_script("return document.URL").startswith(srv.url(""))
        browser.switch_to.default_content()
        shot(browser, "6-hostile-frame-blocked")
        assert st.fleet_jobs(limit=10) == []

        # The harness itself works, and none of the above ended the operator's
        # session (an answer to another site writes only the login cookie):
        # on the dashboard, the operator sends one.
        browser.get(srv.url("/"))
        browser.find_element(By.ID, "fleet-command").send_keys("echo from the dashboard")
        browser.find_element(By.ID, "fleet-send").click()
        WebDriverWait(browser, 10).until(lambda b: "/fleet-jobs/" in b.current_url, message="the fleet job page")
        assert [(f["command"], f["created_by"]) for f in st.fleet_jobs(limit=10)] == [("echo from the dashboard",
                                                                                       "oper")]
        assert st.audit_log(operator="oper", action="fleet-job")[0]["detail"].endswith("echo from the dashboard")
    finally:
        evil.stop()


def test_a_viewer_cannot_send_a_job(dash, browser):
    from selenium.webdriver.common.by import By

    srv, st = dash
    jobs_before = st.fleet_jobs(limit=100)
    login(browser, srv.url(""), "viewer", password_of("viewer"))
    assert browser.find_elements(By.ID, "fleet-send") == [] and browser.find_elements(By.ID, "read-only")
    shot(browser, "7-viewer")
    # From the dashboard's own page, with its CSRF token: the role refuses.
    status = browser.execute_async_script(
        "var done = arguments[arguments.length - 1];"
        "var t = document.querySelector('meta[name=csrf-token]').content;"
        "fetch('/fleet-jobs', {method: 'POST', headers: {'X-CSRFToken': t, 'Content-Type': "
        "'application/x-www-form-urlencoded'}, body: 'command=reboot&target=all'})"
        ".then(function (r) { done(r.status); }, function (e) { done(String(e)); });")
    assert status == 403
    assert st.fleet_jobs(limit=100) == jobs_before
    rec = st.audit_log(operator="viewer", action="request")[0]
    assert (rec["target"], rec["outcome"]) == ("POST /fleet-jobs", "denied")
    for path in ("/", "/fleet-jobs", "/provisioning", "/account", "/devices/02-DE-AD-00-00-01", "/audit"):
        browser.get(srv.url(path))
    shot(browser, "8-audit-log")
    assert csp_violations(browser) == []
