"""The dashboard's tunnel panel (issue 22) in headless Chromium (the setup of
test_server_browser.py): "Open tunnel" gives the command to copy for the
port chosen or typed; a tunnel opened by the operator's client shows up on
the device page without a reload, with its bytes growing live; "Close"
closes both of its sides; a page of another origin cannot open a tunnel
with the operator's cookie; a viewer sees the list but neither the form
nor the button."""
import json
import time

import pytest
from test_server_browser import CHROMEDRIVER, CHROMIUM, Hostile, browser, csp_violations, login, shot  # noqa: F401

from helpers import tunnel
from helpers.broker import Broker
from helpers.fleet import FleetServer, password_of

MAC = "02:b0:00:00:00:01"
URL_MAC = MAC.upper().replace(":", "-")

pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="Chromium is not installed and could not be installed here (Debian packages "
                                       "chromium and chromium-driver; tools/need_system.sh installs them as root)")


def open_rows(b):
    """The open tunnels as the page shows them now: [(id, state, to, from)]."""
    return b.execute_script(
        "return Array.from(document.querySelectorAll('#tunnel-rows tr.tunnel')).map(function (r) {"
        " return [r.dataset.tunnel, r.dataset.state, r.querySelector('.bytes-to').textContent,"
        " r.querySelector('.bytes-from').textContent]; });")


def test_tunnel_panel(tmp_path, certs, browser):  # noqa: F811 - the fixture imported above
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    broker = Broker(tmp_path, certs)
    srv = FleetServer(tmp_path, broker)
    echo = tunnel.EchoServer()
    dev = tunnel.TunnelDevice(srv, broker, MAC, {22: echo.port}, name="attic")
    try:
        login(browser, srv.url(""), "oper", password_of("oper"))
        browser.get(srv.url("/devices/" + URL_MAC))
        assert browser.find_element(By.ID, "tunnel-rows").text.endswith("no tunnel open")
        browser.find_element(By.ID, "tunnel-open").click()  # 22 is the first choice
        WebDriverWait(browser, 10).until(lambda b: b.find_elements(By.ID, "tunnel-command"), message="the command")
        text = browser.find_element(By.ID, "tunnel-command-text").text
        assert text.splitlines() == [
            "export SOCKETMAN_SERVER=%s" % srv.url(""),
            "ssh -o ProxyCommand='socketman-server ssh %%h' root@%s" % URL_MAC.lower(),
            "scp -O -o ProxyCommand='socketman-server ssh %%h' FILE root@%s:/tmp/" % URL_MAC.lower()], text
        assert "does not set it" in browser.find_element(By.ID, "tunnel-command").text  # no tunnel_ports here
        Select(browser.find_element(By.ID, "tunnel-port")).select_by_value("")
        browser.find_element(By.ID, "tunnel-other").send_keys("8443")
        browser.find_element(By.ID, "tunnel-open").click()
        WebDriverWait(browser, 10).until(
            lambda b: "8443" in b.find_element(By.ID, "tunnel-command-text").text, message="the forward command")
        assert browser.find_element(By.ID, "tunnel-command-text").text.splitlines()[1] == \
            "socketman-server forward %s 8443 --listen 127.0.0.1:18443" % URL_MAC.lower()
        shot(browser, "9-tunnel-command")

        # A tunnel opened by the operator's client appears without a reload.
        ws = tunnel.operator(srv, srv.token("oper"), MAC, 22)
        tid = json.loads(ws.recv(10))["tunnel"]  # the first status: waiting
        WebDriverWait(browser, 10, 0.2).until(lambda b: [r[:2] for r in open_rows(b)] == [[tid, "open"]],
                                              message="the open tunnel on the page")
        for _ in range(3):
            ws.send(b"z" * 1024)
        got = b""
        while len(got) < 3072:
            msg = ws.recv(10)
            got += msg if isinstance(msg, bytes) else b""
        WebDriverWait(browser, 10, 0.2).until(lambda b: open_rows(b)[0][2:] == ["3.0 KiB", "3.0 KiB"],
                                              message="the bytes, live")
        shot(browser, "10-tunnel-open")
        browser.find_element(By.CSS_SELECTOR, "#tunnel-rows button.tunnel-close").click()
        from websockets.exceptions import ConnectionClosed
        with pytest.raises(ConnectionClosed):
            while True:
                ws.recv(10)
        assert (ws.close_code, ws.close_reason) == (4499, "closed on the dashboard by oper")
        srv.wait(lambda: dev.closes and dev.closes[-1][0] == 4499, 10, "the device's side closed")
        WebDriverWait(browser, 10, 0.2).until(lambda b: open_rows(b) == [], message="the list empty again")
        history = browser.find_element(By.ID, "tunnel-history").text
        assert "closed closed on the dashboard by oper" in history and "3.0 KiB" in history
        assert csp_violations(browser) == []

        # A page of another origin on the same site (127.0.0.1, another
        # port: the browser sends the SameSite=Strict cookie with its
        # WebSocket) tries to open a tunnel: the Origin check refuses it.
        evil = Hostile({"/ws": "<p id='r'>...</p><script>var w = new WebSocket('ws://127.0.0.1:%d/tunnel?device="
                               "%s&port=22'); w.onopen = function () { document.getElementById('r').textContent = "
                               "'open'; }; w.onclose = function (e) { if (document.getElementById('r').textContent "
                               "!== 'open') { document.getElementById('r').textContent = 'refused ' + e.code; } };"
                               "</script>" % (srv.port, URL_MAC)})
        try:
            st = srv.store()
            before = len(st.device_tunnels(st.device(MAC)["id"], closed_limit=50)[1])
            browser.get(evil.url("/ws"))
            WebDriverWait(browser, 10).until(lambda b: b.find_element(By.ID, "r").text != "...",
                                             message="the hostile page's WebSocket ended")
            assert browser.find_element(By.ID, "r").text == "refused 1006"  # the handshake got a 401
            assert "refused a tunnel to 127.0.0.1: not logged in" in srv.output()
            assert len(st.device_tunnels(st.device(MAC)["id"], closed_limit=50)[1]) == before
            st.close()
        finally:
            evil.stop()

        # A viewer sees the tunnels, not the form or the Close button.
        ws = tunnel.operator(srv, srv.token("oper"), MAC, 22)
        ws.recv(10)
        browser.delete_all_cookies()
        login(browser, srv.url(""), "viewer", password_of("viewer"))
        browser.get(srv.url("/devices/" + URL_MAC + "?tunnel_port=22"))
        WebDriverWait(browser, 10, 0.2).until(lambda b: len(open_rows(b)) == 1, message="the tunnel, for a viewer")
        assert browser.find_elements(By.ID, "tunnel-form") == []
        assert browser.find_elements(By.ID, "tunnel-command") == []
        assert browser.find_elements(By.CSS_SELECTOR, "button.tunnel-close") == []
        ws.close()
        time.sleep(0.1)
    finally:
        dev.close()
        echo.close()
        srv.stop()
        broker.stop()
