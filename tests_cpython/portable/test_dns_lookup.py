# Name lookups in child processes (PROTOCOL 5): resolve() never waits, the
# answer is cached, a failed name is remembered for a while, and at most
# MAX_LOOKUPS children run at once. Needs a shell: not under WebAssembly.
from portable.support import raises, tmpdir
from socketman import dns, rt

# Names that do not resolve, without a question to any name server: a label
# over 63 characters is refused by the C library itself (the tests never
# leave the machine).
LONG = "x" * 70


def bad(i=0):
    return "%s%d.invalid" % (LONG, i)


def wait(r, host, limit_ms=20000):
    end = rt.ms() + limit_ms
    while rt.ms() < end:
        t0 = rt.ms()
        addr = r.resolve(host)
        assert rt.ms() - t0 < 500  # a look at the result files, never a wait
        if addr is not None:
            return addr
        rt.sleep_ms(5)
    raise AssertionError("no answer for %s" % host)


def test_background_lookup_of_localhost_then_cached():
    r = dns.Resolver(tmpdir())
    assert r.resolve("localhost") is None  # started, not waited for
    assert r.busy()
    assert r.poll_ms("localhost") == 10  # an answer is likely soon
    r.running["localhost"].started -= dns.QUICK_MS + 1
    assert r.poll_ms("localhost") == 100  # a slow name server: look less often
    assert wait(r, "localhost") == "127.0.0.1"
    assert not r.busy()
    assert r.resolve("localhost") == "127.0.0.1"  # from the cache: no new child
    assert not r.busy()


def test_a_name_that_does_not_resolve_is_remembered():
    r = dns.Resolver(tmpdir())
    host = bad()
    assert r.resolve(host) is None
    end = rt.ms() + 20000
    while rt.ms() < end:
        try:
            if r.resolve(host) is None:
                rt.sleep_ms(5)
                continue
        except OSError as e:
            assert "cannot resolve" in str(e)
            break
        raise AssertionError("a name that does not exist resolved")
    assert not r.busy()
    raises(OSError, r.resolve, host)  # remembered: no child for FAILED_MS
    assert not r.busy()


def test_an_old_answer_is_used_while_it_is_looked_up_again():
    r = dns.Resolver(tmpdir())
    r.cache["localhost"] = (["192.0.2.99"], rt.ms() - dns.TTL_MS - 1)
    assert r.resolve("localhost") == "192.0.2.99"  # stale, but given at once
    assert r.busy()
    end = rt.ms() + 20000
    while r.busy() and rt.ms() < end:
        rt.sleep_ms(5)
        r.poll()
    assert r.resolve("localhost") == "127.0.0.1"


def test_lookups_at_once_are_bounded():
    r = dns.Resolver(tmpdir())
    names = ["localhost"] + [bad(i) for i in range(dns.MAX_LOOKUPS + 2)]
    for n in names:
        assert r.resolve(n) is None
        assert len(r.running) <= dns.MAX_LOOKUPS  # the others wait (a fast child may be done already)
    assert len(r.running) + len(r.waiting) + len(r.cache) == len(names)
    end = rt.ms() + 30000
    while r.busy() and rt.ms() < end:
        assert len(r.running) <= dns.MAX_LOOKUPS
        rt.sleep_ms(5)
        r.poll()
    assert not r.busy()
    assert r.resolve("localhost") == "127.0.0.1"


def test_without_a_workdir_the_lookup_is_in_process():
    r = dns.Resolver()
    assert r.resolve("localhost") == "127.0.0.1"
    assert r.resolve_now("localhost") == "127.0.0.1"
    raises(OSError, r.resolve, bad())
