"""ubus end to end (PROTOCOL 12): the agent as a process on a fake router
whose ubus is OpenWRT's real ubusd with the Lua publisher of real captures
(helpers/ubus.py), and no ubus, iwinfo or iw command on its PATH, under
CPython, the native MicroPython 1.23 (sources and bundle) and the bundle on
32-bit MIPS: the documents it uploads are the ones the command path makes
of the same captures, no command is started for them, and `ubus call
socketman status` answers through the real CLI. test_ubus_fallback.py has
the rest. The test clock runs 15 times faster: a document a second."""
import time

from helpers import ubus as hubus
from helpers.device import MAC

RUNTIMES = ("cpython", "mpy1.23", "mpy1.23-bundle", "mips1.23-bundle")


def _documents(server):
    out = []
    for r in server.got("POST", "/stats"):
        if r.answered and r.answered // 100 == 2:
            out.extend(r.documents())
    return out


def test_documents_come_over_ubus_and_the_object_answers(runtime, agent_cmd, agents, tmp_path, http_server,
                                                         shared_bus, tmp_path_factory):
    expected = hubus.expected_document(tmp_path_factory.mktemp("cmdpath"))
    api = http_server()
    a, _ = hubus.start_agent(agents, agent_cmd, tmp_path, shared_bus.sock, stats_url=api.url("/stats"))
    slow = 3 if runtime.startswith("mips") else 1
    docs = hubus.wait_for(lambda: _documents(api), 40 * slow, "upload")
    assert hubus.comparable(docs[-1]) == hubus.comparable(docs[0]) == expected
    st = hubus.wait_for(lambda: hubus.status(shared_bus, lambda d: d["last_upload"] > 0), 20 * slow,
                        "status with last_upload")
    assert st["mac"] == MAC and st["mqtt"] == "disconnected"
    assert st["status"] == 6  # a default route, and the stats server reachable (PROTOCOL 7.1)
    assert st["jobs_queued"] == 0 and st["tunnels"] == 0 and isinstance(st["spool_bytes"], int)
    assert abs(st["last_upload"] - time.time()) < 120 and st["version"]
    assert a.stop() == 0
    out = a.output()
    assert "ubus: serving object socketman" in out and hubus.COMMANDS not in out, out[-3000:]
    assert hubus.status(shared_bus) is None  # gone with the agent's connection
