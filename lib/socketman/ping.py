# Pings (PROTOCOL 4 and 5): every `ping-interval` seconds a PING event on
# status/<base> (QoS 0, not kept while offline: a late ping says nothing),
# and with rest = 1 a POST of the same to <api_url>/ping.
from . import events, http, log, rt, urls


class Pinger:
    """publish(kind, payload bytes, qos, keep) goes to MQTT
    (session.Session.publish); start_call(call, on_done) runs HTTP."""

    def __init__(self, cfg, publish, start_call):
        self.publish = publish
        self.start_call = start_call
        self.url = None
        if cfg["rest"] and cfg["api_url"]:
            self.url = urls.add_query(cfg["api_url"].rstrip("/") + "/ping",
                                      [("access_token", cfg["token"]), ("mac", cfg["mac"])])

    def ping(self):
        """The loop's task: one ping now."""
        if self.publish is not None:
            self.publish("status", events.ping(rt.now()), 0, keep=False)
        if self.url:
            call = http.Call("POST", self.url, events.ping(rt.now()), {"Content-Type": "application/json"})
            self.start_call(call, _ping_done)


def _ping_done(call):
    if call.error or call.response.status_code >= 300:
        log.warn("rest ping: %s" % (call.error or "HTTP %d" % call.response.status_code))
