from socketman import rt
from socketman.loop import Loop


def run_for(loop, ms):
    loop.every(5, lambda: None, name="_tick")  # bounds each wait, so the test ends on time
    end = rt.ms() + ms
    while rt.ms() < end:
        loop.run_due()
        loop.wait()


def test_tasks_run_on_their_period():
    loop = Loop()
    hits = {"a": 0, "b": 0}

    def a():
        hits["a"] += 1

    def b():
        hits["b"] += 1

    loop.every(50, a)
    loop.every(1000, b, first_ms=1000)
    run_for(loop, 260)
    assert 4 <= hits["a"] <= 7, hits
    assert hits["b"] == 0


def test_a_failing_task_is_logged_and_retried_while_others_run():
    loop = Loop()
    calls = {"bad": 0, "good": 0}

    def bad():
        calls["bad"] += 1
        raise ValueError("boom")

    def good():
        calls["good"] += 1

    loop.every(10, bad)
    loop.every(20, good)
    loop.every(5, lambda: None, name="_tick")
    # Until good has run 5 times, within the 1 s bad waits after failing: a
    # slow runtime (MIPS under qemu on a loaded machine) gets the time it needs.
    end = rt.ms() + 900
    while calls["good"] < 5 and rt.ms() < end:
        loop.run_due()
        loop.wait()
    assert calls["bad"] == 1  # retried after max(period, 1 s), not in a hot loop
    assert calls["good"] >= 5


def test_task_can_choose_its_next_delay_and_be_woken():
    loop = Loop()
    calls = []

    def t():
        calls.append(rt.ms())
        return 10000

    task = loop.every(10, t)
    run_for(loop, 50)
    assert len(calls) == 1
    loop.wake(task)
    run_for(loop, 20)
    assert len(calls) == 2


def test_wait_is_bounded_by_the_next_task():
    loop = Loop()
    loop.every(100, lambda: None, first_ms=100)
    t0 = rt.ms()
    loop.wait()
    took = rt.ms() - t0
    assert 50 <= took <= 400, took


class _Src:
    def __init__(self, sock):
        self.sock = sock
        self.got = []

    def wants(self):
        return [(self.sock, rt.POLLIN)]

    def ready(self, sock, ev):
        self.got.append(rt.recv(sock, 100))


def test_sockets_wake_the_loop():
    import socket
    port = _free_port()  # MicroPython sockets have no getsockname()
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(rt.resolve("127.0.0.1", port)[1])
    srv.listen(1)
    c = rt.tcp_start("127.0.0.1", port)
    s, _ = srv.accept()
    loop = Loop()
    src = _Src(c)
    loop.add_source(src)
    loop.every(5000, lambda: None, first_ms=5000)
    s.send(b"hello")
    t0 = rt.ms()
    loop.wait()
    assert src.got == [b"hello"]
    assert rt.ms() - t0 < 1000
    for x in (s, c, srv):
        x.close()


def _free_port():
    import socket
    for port in range(39000 + (rt.ms() % 1000) * 7, 65000, 13):
        s = socket.socket()
        try:
            s.bind(rt.resolve("127.0.0.1", port)[1])
            return port
        except OSError:
            pass
        finally:
            s.close()
    raise AssertionError("no free port")


def test_an_unknown_task_handle_is_an_error():
    from portable.support import raises
    loop = Loop()
    task = loop.every(10, lambda: None)
    other = Loop().every(10, lambda: None)
    raises(ValueError, loop.wake, other)
    raises(ValueError, loop.cancel, other)
    loop.cancel(task)
    raises(ValueError, loop.wake, task)  # a cancelled task is gone
    raises(ValueError, loop.cancel, task)


def test_a_task_cancelled_by_another_in_the_same_round_does_not_run():
    loop = Loop()
    ran = []
    tasks = []

    def first():
        loop.cancel(tasks[1])

    tasks.append(loop.every(10, first))
    tasks.append(loop.every(10, lambda: ran.append(1)))
    loop.run_due()
    assert ran == []


class _Switch:
    """A source whose one socket and mask the test changes between waits."""

    def __init__(self):
        self.sock = None
        self.mask = rt.POLLIN
        self.got = []

    def wants(self):
        return [(self.sock, self.mask)] if self.sock is not None else []

    def ready(self, sock, ev):
        assert sock is self.sock
        self.got.append(rt.recv(sock, 100) if ev & rt.POLLIN else "out")


def test_one_poller_follows_the_sources_as_they_change():
    # Sockets come and go, masks change, and a new socket can get the fd of
    # one that was closed meanwhile: the loop's one poller keeps up.
    import socket
    port = _free_port()
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(rt.resolve("127.0.0.1", port)[1])
    srv.listen(2)
    loop = Loop()
    poller = loop.poller
    src = _Switch()
    loop.add_source(src)
    loop.every(5000, lambda: None, first_ms=5000)
    src.sock = rt.tcp_start("127.0.0.1", port)
    s1, _ = srv.accept()
    s1.send(b"one")
    loop.wait()
    assert src.got == [b"one"]
    src.mask = rt.POLLOUT  # changed in place
    loop.wait()
    assert src.got[-1] == "out"
    src.mask = rt.POLLIN
    src.sock.close()  # closed while registered; its fd goes to the next socket
    src.sock = rt.tcp_start("127.0.0.1", port)
    s2, _ = srv.accept()
    s2.send(b"two")
    t0 = rt.ms()
    loop.wait()
    assert src.got[-1] == b"two" and rt.ms() - t0 < 1000
    assert loop.poller is poller and len(loop.watched) == 1
    src.sock.close()
    src.sock = None
    loop.wait_cap = 10
    loop.wait()  # nothing wanted: dropped from the poller, and a plain sleep
    assert loop.watched == []
    for x in (s1, s2, srv):
        x.close()


class _Hungry:
    """A source whose wants() runs out of memory `fails` times (-1: always)."""

    def __init__(self, fails):
        self.fails = fails
        self.calls = 0

    def wants(self):
        self.calls += 1
        if self.fails < 0 or self.calls <= self.fails:
            raise MemoryError
        return []

    def ready(self, sock, events):
        pass


def test_out_of_memory_outside_a_task_pauses_then_goes_on():
    from socketman import log
    loop = Loop()
    src = _Hungry(3)
    loop.add_source(src)
    runs = []

    def task():
        runs.append(1)
        if len(runs) >= 5:
            loop.stop()
        return 10
    loop.every(10, task, name="t")
    before = log.ooms[0]
    t0 = rt.ms()
    loop.run()
    assert log.ooms[0] - before == 3 and len(runs) == 5
    # Paused between the failures (50, 100, 150 ms), not a tight loop.
    assert rt.ms() - t0 >= 300


def test_out_of_memory_every_round_ends_the_loop_with_memoryerror():
    from socketman import loop as loop_mod
    loop = Loop()
    loop.add_source(_Hungry(-1))
    loop.every(10, lambda: 10, name="t")
    old = loop_mod.OOM_ROUNDS
    loop_mod.OOM_ROUNDS = 4
    try:
        loop.run()
    except MemoryError:
        pass
    else:
        raise AssertionError("run() returned")
    finally:
        loop_mod.OOM_ROUNDS = old
