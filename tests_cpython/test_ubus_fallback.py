"""ubus end to end (PROTOCOL 12), when the bus is not all there: a missing
socket, or a missing object, is asked of the commands of PROTOCOL 7 (for
that part alone) and the socket is tried again later; after ubusd restarts
the agent is back on the bus with its object registered again. On CPython
and on the router's runtime (the 1.23 bundle); the documents are the ones
the command path makes of the same captures."""
import os

from helpers import ubus as hubus

RUNTIMES = ("cpython", "mpy1.23-bundle")


def test_a_missing_socket_or_object_is_asked_of_commands_and_the_socket_tried_again(
        runtime, agent_cmd, agents, tmp_path, tmp_path_factory):
    expected = hubus.expected_document(tmp_path_factory.mktemp("cmdpath"))
    sock = str(tmp_path / "bus" / "ubus.sock")
    a, env = hubus.start_agent(agents, agent_cmd, tmp_path, sock, commands=True)
    calls = os.path.join(env["FAKE_OPENWRT"], "calls.log")
    hubus.wait_for(lambda: len(hubus.spooled(tmp_path)) >= 2, 30, "documents")
    assert hubus.comparable(hubus.spooled(tmp_path)[-1]) == expected
    assert "collection uses commands" in a.output()
    # ubusd comes, with procd's `system` alone: that part comes from the
    # bus, the rest from commands.
    os.makedirs(os.path.dirname(sock))
    bus = hubus.Bus(tmp_path / "bus", {"system": hubus.objects()["system"]})
    try:
        a.wait_log("ubus: connected to " + sock, 30)
        n = len(hubus.spooled(tmp_path))
        # A cycle under way when it connected still asks its commands: the
        # second document after the connection comes from a cycle begun after it.
        hubus.wait_for(lambda: len(hubus.spooled(tmp_path)) >= n + 2, 30, "documents after the bus came")
        open(calls, "w").close()
        n = len(hubus.spooled(tmp_path))
        hubus.wait_for(lambda: len(hubus.spooled(tmp_path)) >= n + 2, 30, "documents after that")
        assert hubus.comparable(hubus.spooled(tmp_path)[-1]) == expected
        with open(calls) as f:
            ran = f.read()
        assert "call network.interface.wan status" in ran and "call iwinfo devices" in ran, ran
        assert "call hostapd.wlan1 get_clients" in ran and " call system " not in ran, ran
        assert a.stop() == 0
    finally:
        bus.stop()


def test_back_on_the_bus_after_ubusd_restarts(runtime, agent_cmd, agents, tmp_path, tmp_path_factory):
    expected = hubus.expected_document(tmp_path_factory.mktemp("cmdpath"))
    bus = hubus.Bus(tmp_path / "bus", hubus.objects())
    a, _ = hubus.start_agent(agents, agent_cmd, tmp_path, bus.sock)
    try:
        hubus.wait_for(lambda: hubus.status(bus), 20, "socketman object")
        bus.restart()
        hubus.wait_for(lambda: hubus.status(bus), 20, "socketman object after ubusd restarted")
        assert a.output().count("ubus: serving object socketman") == 2
        n = len(hubus.spooled(tmp_path))
        hubus.wait_for(lambda: len(hubus.spooled(tmp_path)) >= n + 2, 30, "documents after the restart")
        assert hubus.comparable(hubus.spooled(tmp_path)[-1]) == expected
        assert a.stop() == 0
    finally:
        bus.stop()
    out = a.output()
    assert "ubus: connection to %s lost" % bus.sock in out, out[-3000:]
