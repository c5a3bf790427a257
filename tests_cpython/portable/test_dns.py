# The pure parts of name lookups (PROTOCOL 5): which hosts are addresses
# (never looked up) and which address a lookup's output gives.
from socketman import dns


def test_addresses_are_never_names():
    for a in ("127.0.0.1", "0.0.0.0", "255.255.255.255", "192.0.2.10", "::1", "::", "fe80::1%eth0",
              "2001:db8::8:800:200c:417a", "::ffff:192.0.2.1", "FE80::ABCD"):
        assert dns.is_address(a), a
    for h in ("localhost", "example.com", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.-4", "1..2.3",
              "01234.1.1.1", "a:b", "[::1]", "1.2.3.4.example.com", "", "x::y", "1.2.3.4 "):
        assert not dns.is_address(h), h


def test_order_puts_ipv4_first_then_the_families_take_turns():
    # issue 24, item 7: every address is handed out, in the order to try
    # them; a dead first address is followed by the other family at once.
    assert dns.order(b"::1\n127.0.0.1\n") == ["127.0.0.1", "::1"]
    assert dns.order(b"2001:db8::1\n2001:db8::2\n") == ["2001:db8::1", "2001:db8::2"]
    assert dns.order(b"192.0.2.1\n192.0.2.2\n") == ["192.0.2.1", "192.0.2.2"]
    assert dns.order(b"2001:db8::1\n192.0.2.1\n2001:db8::2\n192.0.2.2\n192.0.2.3\n192.0.2.1\n") == \
        ["192.0.2.1", "2001:db8::1", "192.0.2.2", "2001:db8::2", "192.0.2.3"]  # each once
    assert dns.order(b"") is None and dns.order(None) is None
    # Anything that is not an address (a traceback, a cut line) is skipped.
    assert dns.order(b"Traceback (most recent call last):\n\xff\xfe\n192.0.2\n10.0.0.7") == ["10.0.0.7"]


def test_the_address_that_answered_goes_first_and_stays_first():
    r = dns.Resolver("/nonexistent/never-used")
    r._store("api.test", ["192.0.2.1", "2001:db8::1", "192.0.2.2"], "")
    assert r.addresses("api.test") == ["192.0.2.1", "2001:db8::1", "192.0.2.2"]
    assert r.resolve("api.test") == "192.0.2.1"
    r.prefer("api.test", "2001:db8::1")
    assert r.addresses("api.test") == ["2001:db8::1", "192.0.2.1", "192.0.2.2"]
    r.addresses("api.test").pop()  # a copy: the cache does not change
    r._store("api.test", ["192.0.2.2", "2001:db8::1"], "")  # looked up again: still has it
    assert r.addresses("api.test") == ["2001:db8::1", "192.0.2.2"]
    r.prefer("api.test", "192.0.2.99")  # not one of them: nothing changes
    assert r.addresses("api.test") == ["2001:db8::1", "192.0.2.2"]


def test_an_address_is_its_own_answer_without_a_lookup():
    r = dns.Resolver("/nonexistent/never-used")
    assert r.resolve("192.0.2.7") == "192.0.2.7"
    assert r.resolve("::1") == "::1" and r.addresses("::1") == ["::1"]
    assert not r.busy() and r.cache == {}
