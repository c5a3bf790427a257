# The session's reconnect backoff (PROTOCOL 4): capped exponential with full
# jitter, 1 s up to 120 s, back to 1 s after a connection that lasted 60 s.
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


def test_backoff_grows_with_full_jitter_and_is_capped():
    s = session()
    d = delays(s, 12)
    caps = [1, 2, 4, 8, 16, 32, 64, 120, 120, 120, 120, 120]
    for got, cap in zip(d, caps):
        assert 1.0 <= got <= cap + 0.05, (got, cap)
    many = [delays(session(), 8)[-1] for _ in range(20)]
    assert len(set(round(x, 2) for x in many)) > 10  # full jitter, not a fixed wait


def test_back_to_one_second_after_a_stable_connection():
    s = session()
    delays(s, 8)
    s.connected_at = rt.ms() - 61000  # connected for 61 s, then lost
    assert delays(s, 1)[0] <= 1.05
    s.connected_at = rt.ms() - 5000   # a short connection does not reset it
    delays(s, 3)
    assert s.failures == 4


def test_topics_and_client_id():
    s = session()
    assert s.sub_topic == "sub/t/k/aa:bb:cc:dd:ee:ff"
    assert s.status_topic == "status/t/k/aa:bb:cc:dd:ee:ff"
    assert s.cid == "sm-aa:bb:cc:dd:ee:ff"
