# The blocking calls of umqtt.simple and urequests, for people who use the
# clients on their own, and for the tests and benchmarks. The agent never
# calls these (its loop drives the non-blocking clients), so this module
# stays out of the router bundle (tools/build_mpy.sh). Every wait still has
# a deadline.
import errno

from . import dns, http, mqtt, rt


class MQTTClient(mqtt.MQTTClient):
    """mqtt.MQTTClient plus umqtt.simple's connect(), wait_msg() and
    check_msg()."""

    def connect(self, clean_session=True, timeout=None):
        """Look the server up (waiting for it), connect and wait for CONNACK
        (timeout s, default the client's); True if the broker kept a
        session. MQTTException when it refuses or the deadline passes,
        OSError when the name cannot be looked up or the connect fails."""
        self.start(clean_session, dns.shared.addresses_now(self.server))
        present = []
        hook = self.on_connect

        def done(sp):
            present.append(sp)
            if hook:
                hook(sp)
        self.on_connect = done
        try:
            self._pump_until(lambda: present or self.state == mqtt.CLOSED, timeout)
        finally:
            self.on_connect = hook
        if not present:
            raise mqtt.MQTTException(self.error or "connect timed out")
        return present[0]

    def check_msg(self):
        """Handle whatever has arrived, without waiting. OSError when not
        connected."""
        if self.sock is None:
            raise OSError(errno.ENOTCONN, "not connected")
        self.step()
        self.service()

    def wait_msg(self, timeout=None):
        """Wait (timeout s, else the keepalive, else 30 s) for input and
        handle it. OSError when not connected or the connection closes."""
        if self.sock is None:
            raise OSError(errno.ENOTCONN, "not connected")
        seen = self.last_rx
        self._pump_until(lambda: self.last_rx != seen or self.state == mqtt.CLOSED,
                         timeout or (self.keepalive or 30))
        if self.state == mqtt.CLOSED:
            raise OSError(errno.ECONNRESET, self.error or "connection closed")

    def _pump_until(self, cond, timeout):
        end = rt.ms() + int((timeout or self.timeout_ms / 1000) * 1000)
        while not cond() and rt.ms() < end and self.sock is not None:
            w = self.wants()
            ev = rt.wait_io(w[0][0], w[0][1], min(100, max(0, end - rt.ms()))) if w else 0
            self.step(ev)
            self.service()


def request(method, url, data=None, json=None, headers=None, timeout=10, ctx=None):
    """urequests.request with deadlines (timeout s per connect and read),
    names looked up in-process (dns.shared): an http.Response once its
    status line arrived (its body_error says when the body is not whole);
    OSError when there is no response."""
    h = dict(headers or {})
    if json is not None:
        import json as _json
        data = _json.dumps(json)
        h.setdefault("Content-Type", "application/json")
    call = http.Call(method, url, data, h, timeout, ctx).start(dns.shared)
    while not call.done():
        w = call.wants()
        if not w:  # its host name is being looked up in the background
            rt.sleep_ms(5)
        ev = rt.wait_io(w[0][0], w[0][1], 50) if w else 0
        call.step(ev)
        call.service()
    if call.response is None:
        raise OSError(errno.EIO, call.error)
    return call.response


def get(url, **kw):
    """request("GET", url, ...)."""
    return request("GET", url, **kw)


def head(url, **kw):
    """request("HEAD", url, ...)."""
    return request("HEAD", url, **kw)


def post(url, **kw):
    """request("POST", url, ...)."""
    return request("POST", url, **kw)


def put(url, **kw):
    """request("PUT", url, ...)."""
    return request("PUT", url, **kw)


def patch(url, **kw):
    """request("PATCH", url, ...)."""
    return request("PATCH", url, **kw)


def delete(url, **kw):
    """request("DELETE", url, ...)."""
    return request("DELETE", url, **kw)
