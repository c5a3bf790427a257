# The session's reconnect backoff (PROTOCOL 4): capped exponential with
# jitter, 2.5..10 s first, at most 120 s, back to the first after a
# connection that lasted 60 s.
from socketman import config, rt
from socketman.session import Session


def session():
    cfg = config.check({"mac": "aa:bb:cc:dd:ee:ff", "mqtt_host": "127.0.0.1", "port": 1, "topic": "t",
                        "key": "k"})
    return Session(cfg)


def delays(s, n):
    out = []
    for _ in range(n):
        before = rt.ms()
        s._retry("test")
        out.append((s.next_try - before) / 1000.0)
    return out


def test_backoff_grows_with_jitter_over_the_top_three_quarters_and_is_capped():
    # A fleet that lost its broker together must not come back in one second
    # (issue 13): each wait is between a quarter of its cap and the cap.
    s = session()
    d = delays(s, 12)
    caps = [10, 20, 40, 80, 120, 120, 120, 120, 120, 120, 120, 120]
    for got, cap in zip(d, caps):
        assert cap / 4.0 - 0.05 <= got <= cap + 0.05, (got, cap)
    many = [delays(session(), 1)[0] for _ in range(40)]
    assert len(set(round(x, 2) for x in many)) > 20  # jitter, not a fixed wait
    assert min(many) < 5.0 < max(many)  # the first wait is spread over 2.5..10 s


def test_back_to_the_first_wait_after_a_stable_connection():
    s = session()
    delays(s, 8)
    s.connected_at = rt.ms() - 61000  # connected for 61 s, then lost
    assert delays(s, 1)[0] <= 10.05
    s.connected_at = rt.ms() - 5000   # a short connection does not reset it
    delays(s, 3)
    assert s.failures == 4


def test_a_lost_connection_wakes_the_session_at_its_next_try():
    # The next try waited for whatever timer was set (up to 10 s later).
    s = session()
    woken = []
    s.wake = woken.append
    delays(s, 1)
    assert len(woken) == 1 and 2400 <= woken[0] <= 10050


def test_topics_and_client_id():
    s = session()
    assert s.sub_topic == "sub/t/k/aa:bb:cc:dd:ee:ff"
    assert s.status_topic == "status/t/k/aa:bb:cc:dd:ee:ff"
    assert s.cid == "sm-aa:bb:cc:dd:ee:ff"
