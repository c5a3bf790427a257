# What an HTTP answer means (PROTOCOL 5, failure table), decided once for
# every channel (stats, job results, pings, boot, provisioning): each
# receiver then does what the table says for its kind. Also the back-off
# every retry uses and the log lines of a channel that fails and recovers.
import random

from . import log

OK = "ok"                # 2xx: done
REFUSED = "refused"      # 400, 413, 422: this request will never be taken as it is
UNAUTHORIZED = "unauthorized"  # 401: the token is not (or no longer) accepted
GONE = "gone"            # 404, 410: the server does not know the URL or the thing
RETRY = "retry"          # 408, 429, 5xx, no answer, and any status the table does not name

_REFUSED = (400, 413, 422)
_GONE = (404, 410)


def classify(call):
    """An ended http.Call -> OK, REFUSED, UNAUTHORIZED, GONE or RETRY. An
    answer the table does not name (3xx, 403, 405 ...) is RETRY: nothing is
    lost to an answer that may change once the server is fixed."""
    r = call.response
    if r is None:
        return RETRY
    s = r.status_code
    if 200 <= s < 300:
        return OK
    if s in _REFUSED:
        return REFUSED
    if s == 401:
        return UNAUTHORIZED
    if s in _GONE:
        return GONE
    return RETRY


def why(call):
    """The answer in a few words for a log line: 'HTTP 503' (the status
    line, which judges the call), else the error."""
    return call.error if call.response is None else "HTTP %d" % call.response.status_code


def backoff_ms(tries, first_ms, cap_ms):
    """The wait before try number tries + 1 (tries >= 1 failed so far):
    first_ms doubled per failure up to cap_ms, each shortened by up to a
    fifth at random, so devices that failed together do not retry together."""
    d = min(cap_ms, first_ms << min(tries - 1, 20))
    return d - int(random.random() * d / 5)


class Channel:
    """The log lines of one channel (a URL the agent calls): one when it
    starts failing and one when it works again, with how many tries
    failed; the tries between are debug lines."""

    def __init__(self, name):
        self.name = name
        self.failures = 0

    def ok(self):
        """The channel answered as it should."""
        if self.failures:
            log.info("%s works again after %d failed tr%s" % (self.name, self.failures,
                                                                "y" if self.failures == 1 else "ies"))
        self.failures = 0

    def failed(self, what, then):
        """A try failed: what (e.g. 'HTTP 503'), then what happens now
        (e.g. 'documents are kept')."""
        self.failures += 1
        line = "%s failing: %s; %s" % (self.name, what, then)
        if self.failures == 1:
            log.warn(line)
        else:
            log.debug("%s (try %d)" % (line, self.failures))
