# Pings (PROTOCOL 4 and 5): every `ping-interval` seconds a PING event on
# status/<base> (QoS 0, not kept while offline: a late ping says nothing),
# and with rest = 1 a POST of the same to <api_url>/ping. A failed REST
# ping is dropped whatever the answer (PROTOCOL 5): the next one is due soon.
from . import answers, events, http, rt, urls


class Pinger:
    """publish(kind, payload bytes, qos, keep) goes to MQTT
    (session.Session.publish); start_call(call, on_done) runs HTTP."""

    def __init__(self, cfg, publish, start_call):
        self.publish = publish
        self.start_call = start_call
        self.url = None
        self.channel = answers.Channel("rest ping")
        if cfg["rest"] and cfg["api_url"]:
            self.url = urls.add_query(cfg["api_url"].rstrip("/") + "/ping",
                                      [("access_token", cfg["token"]), ("mac", cfg["mac"])])

    def tick(self):
        """The loop's task: one ping now."""
        if self.publish is not None:
            self.publish("status", events.ping(rt.now()), 0, keep=False)
        if self.url:
            call = http.Call("POST", self.url, events.ping(rt.now()), {"Content-Type": "application/json"})
            self.start_call(call, self._done)

    def _done(self, call):
        if answers.classify(call) == answers.OK:
            self.channel.ok()
        else:
            self.channel.failed(answers.why(call), "pings are dropped until it answers")
