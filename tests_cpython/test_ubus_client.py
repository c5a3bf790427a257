"""The agent's ubus client (PROTOCOL 12) under each runtime, as a program
(ubus_client_run.py): against OpenWRT's real ubusd with the Lua publisher of
real captures it decodes every answer exactly as the real `ubus` CLI does,
and the CLI calls an object the client serves, with values of every kind
both ways; against a fake ubusd that sends malformed messages (lengths that
lie, truncation, deep nesting, unknown types, oversize, a header out of
step, silence, random damage) every call ends with an error for that call
and the client goes on, reconnecting when the stream cannot be trusted."""
import json
import os
import socket
import struct
import subprocess
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DRIVER = os.path.join(HERE, "ubus_client_run.py")
RUNTIMES = ("cpython", "mpy1.23", "mpy1.23-bundle", "mips1.23-bundle")
OK, METHOD_NOT_FOUND, NOT_FOUND, UNKNOWN_ERROR, NO_OBJECT, DOWN, BAD = 0, 3, 4, 9, -1, -2, -3

CALLS = [
    ["system", "board", None], ["system", "info", None], ["network.interface", "dump", None],
    ["iwinfo", "devices", None], ["iwinfo", "info", {"device": "mesh0"}], ["hostapd.wlan1", "get_clients", None],
    ["iwinfo", "info", {"device": "wlan1"}], ["no.such.object", "x", None], ["iwinfo", "no_such_method", None],
]
ARGS = {"a": 1, "neg": -7, "big": 123456789012, "d": 1.5, "t": True, "n": None, "s": "\u00e9/\\\"",
        "arr": [1, "x", {"k": []}], "tbl": {}}



def _driver(runtime_argv, runtime, bundles, tmp_path, sock, name, seconds, calls, env=None):
    from helpers import runtimes
    path = os.path.join(str(tmp_path), "calls.json")
    with open(path, "w") as f:
        json.dump(calls, f)
    e = dict(os.environ, **(env or {}))
    version = runtimes.RUNTIMES[runtime][2]
    if version:
        e["SOCKETMAN_LIB"] = os.path.join(bundles(version), "lib")
    argv = runtime_argv(runtime) + [DRIVER, sock, name, str(seconds), path]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e)


def _results(p, n):
    """The first n result lines, then "ready"."""
    out = []
    for _ in range(n + 1):
        line = p.stdout.readline()
        assert line, "the client ended early: %s" % p.stderr.read()
        out.append(line.strip())
    assert out[-1] == "ready", out
    return [json.loads(x) for x in out[:-1]]


def test_real_ubusd_both_ways(runtime, runtime_argv, bundles, tmp_path, shared_bus):
    name = "smtest-" + runtime
    timeout = 3000 if runtime.startswith("mips") else 1000
    p = _driver(runtime_argv, runtime, bundles, tmp_path, shared_bus.sock, name, 60,
                [c + [timeout] for c in CALLS])
    try:
        got = _results(p, len(CALLS))
        for (path, method, args), r in zip(CALLS[:6], got):
            cli = shared_bus.call(path, method, args)
            assert r == {"status": OK, "data": cli}, (path, method)
        assert [r["status"] for r in got[6:]] == [NOT_FOUND, NO_OBJECT, METHOD_NOT_FOUND]
        # The CLI calls our object: its JSON becomes blobmsg (libubox), we
        # decode, answer, encode; the CLI decodes and prints.
        assert '"echo"' in shared_bus.cli("list", "-v", name).stdout
        answer = shared_bus.call(name, "echo", ARGS)
        assert answer["args"] == ARGS
        assert answer["sample"] == {"i32": -55, "i64": 1 << 40, "neg64": -(1 << 40), "d": 2.25, "t": True,
                                    "f": False, "n": None, "s": "r\u00e9seau", "l": [1, [2, {}]],
                                    "tbl": {"a": {"b": []}}}
        r = shared_bus.cli("call", name, "broken")
        assert r.returncode != 0 and "Unknown error" in r.stderr
        r = shared_bus.cli("call", name, "nothing")
        assert r.returncode != 0 and "Method not found" in r.stderr
    finally:
        p.kill()
        _, err = p.communicate(timeout=10)
    assert "Traceback" not in err.replace("a handler's bug", ""), err


# ---- a fake ubusd --------------------------------------------------------

def _battr(aid, payload):
    raw = 4 + len(payload)
    return struct.pack(">I", aid << 24 | raw) + payload + b"\0" * (-raw % 4)


def _bmsg(typ, name, payload, ext=True):
    nb = name.encode()
    hdr = struct.pack(">H", len(nb)) + nb + b"\0"
    hdr += b"\0" * (-len(hdr) % 4)
    raw = 4 + len(hdr) + len(payload)
    return struct.pack(">I", 0x80000000 | typ << 24 | raw) + hdr + payload + b"\0" * (-raw % 4)


def _msg(typ, seq_peer, attrs, version=0):
    return bytes([version, typ]) + seq_peer + struct.pack(">I", 4 + len(attrs)) + attrs


def _data(seq_peer, blob):
    return _msg(2, seq_peer, _battr(3, struct.pack(">I", 0x10)) + _battr(7, blob))


def _status(seq_peer, st=0):
    return _msg(1, seq_peer, _battr(1, struct.pack(">i", st)) + _battr(3, struct.pack(">I", 0x10)))


def _nested(depth):
    b = _bmsg(3, "", b"x\0")
    for _ in range(depth):
        b = _bmsg(1, "", b)
    return _bmsg(1, "deep", b)


EVERY_WIDTH = (_bmsg(6, "i16", struct.pack(">h", -2)) + _bmsg(7, "b", b"\1") + _bmsg(4, "i64", struct.pack(">q", -5))
               + _bmsg(8, "d", struct.pack(">d", 0.1)) + _bmsg(0, "u", b"") + _bmsg(5, "i32", struct.pack(">i", 7)))


class Fake(threading.Thread):
    """A ubusd that says HELLO, answers LOOKUP and ADD_OBJECT well, and
    answers the n-th INVOKE with scenarios[n](seq_peer) (bytes to send;
    None: close the connection). After the calls it sends the client's
    object an INVOKE with a malformed argument and keeps what it answers."""

    def __init__(self, path, scenarios):
        super().__init__(daemon=True)
        self.path = path
        self.scenarios = list(scenarios)
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        self.srv.listen(4)
        self.replies = []   # (type, status) of what the client sent for our INVOKE
        self.connections = 0
        self.start()

    def run(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            self.connections += 1
            self.serve(c)

    def serve(self, c):
        c.sendall(_msg(0, b"\0\0\0\0\0\x2a", b""))
        buf = b""
        while True:
            try:
                more = c.recv(65536)
            except OSError:
                more = b""
            if not more:
                c.close()
                return
            buf += more
            while len(buf) >= 12:
                n = 8 + (struct.unpack(">I", buf[8:12])[0] & 0xFFFFFF)
                if len(buf) < n:
                    break
                m, buf = buf[:n], buf[n:]
                if not self.handle(c, m):
                    c.close()
                    return

    def handle(self, c, m):
        typ, ref = m[1], m[2:8]
        if typ == 4:  # LOOKUP
            c.sendall(_msg(2, ref, _battr(2, b"x\0\0\0") + _battr(3, struct.pack(">I", 0x10))) + _status(ref))
        elif typ == 6:  # ADD_OBJECT
            c.sendall(_msg(2, ref, _battr(3, struct.pack(">I", 0x20))) + _status(ref))
        elif typ == 5:  # INVOKE
            if not self.scenarios:
                return True
            out = self.scenarios.pop(0)(ref)
            if out is None:
                return False
            c.sendall(out)
            if not self.scenarios:  # the last call: now a malformed call of the client's object
                bad = _battr(3, struct.pack(">I", 0x20)) + _battr(4, b"echo\0\0\0\0") + _battr(7, b"\x85\0\0\xff")
                c.sendall(_msg(5, b"\x77\x77\0\0\0\x01", bad))
        elif typ in (1, 2) and m[2:4] == b"\x77\x77":
            attrs = m[12:]
            st = struct.unpack(">i", attrs[4:8])[0] if attrs[0] == 1 else None
            self.replies.append((typ, st))
        return True

    def close(self):
        self.srv.close()


def _fine(ref):
    return _data(ref, _bmsg(3, "ok", b"yes\0")) + _status(ref)


SCENARIOS = [
    # (what the fake sends, the status the call must end with)
    (lambda r: _data(r, struct.pack(">I", 0x83000000 | 40) + b"\0\0\0\0") + _status(r), BAD),   # a length that lies
    (lambda r: _data(r, _bmsg(3, "s", b"no nul")) + _status(r), BAD),                          # a string cut off
    (lambda r: _data(r, _nested(40)) + _status(r), BAD),                                     # nested too deep
    (lambda r: _data(r, _bmsg(12, "what", b"\0\0\0\0")) + _status(r), BAD),                  # an unknown type
    (lambda r: _msg(42, r, b"") + _fine(r), OK),                                           # an unknown message type
    (lambda r: _msg(1, r, _battr(3, struct.pack(">I", 0x10))), BAD),                          # a STATUS without status
    (lambda r: _msg(2, r, b"\0\0\0\x20" + bytes(300000)) + _status(r), BAD),                # oversize
    (lambda r: _data(r, EVERY_WIDTH) + _status(r), OK),                                    # every width, well formed
    (lambda r: _msg(2, r, bytes(100))[:40], DOWN),                                        # a message cut off, silence
    (_fine, OK),                                                                          # ... a new connection
    (lambda r: _msg(2, r, b"", version=7), DOWN),                                          # a header out of step
    (_fine, OK),
    (lambda r: None, DOWN),                                                                # ubusd closes
    (_fine, OK),
]


def _damaged(seed):
    def send(ref):
        b = bytearray(_data(ref, EVERY_WIDTH + _bmsg(2, "t", _bmsg(1, "a", _bmsg(3, "", b"s\0")))))
        x = seed
        for _ in range(1 + seed % 4):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF
            b[12 + x % (len(b) - 12)] = x >> 8 & 0xFF
        return bytes(b) + _status(ref)
    return send


def test_malformed_messages_end_one_call_never_the_client(runtime, runtime_argv, bundles, tmp_path):
    sock = os.path.join(str(tmp_path), "fake.sock")
    damaged = [_damaged(s) for s in range(25)]
    fake = Fake(sock, [s for s, _ in SCENARIOS] + damaged + [_fine])
    n = len(SCENARIOS) + len(damaged) + 1
    timeout = 3000 if runtime.startswith("mips") else 1000
    p = _driver(runtime_argv, runtime, bundles, tmp_path, sock, "smfuzz", 120,
                [["x", "m", {"i": i}, timeout] for i in range(n)], env={"SOCKETMAN_TIME_SCALE": "10"})
    try:
        got = _results(p, n)
        end = time.monotonic() + 10
        while not fake.replies and time.monotonic() < end:
            time.sleep(0.05)
    finally:
        p.kill()
        _, err = p.communicate(timeout=10)
        fake.close()
    statuses = [r["status"] for r in got]
    assert statuses[:len(SCENARIOS)] == [want for _, want in SCENARIOS], statuses
    assert got[7]["data"] == {"i16": -2, "b": True, "i64": -5, "d": 0.1, "u": None, "i32": 7}
    assert all(s in (OK, BAD, DOWN) for s in statuses[len(SCENARIOS):]), statuses
    assert statuses[-1] == OK and got[-1]["data"] == {"ok": "yes"}
    assert fake.connections >= 4  # cut off, out of step, closed: each a new connection
    assert (1, 2) in fake.replies  # our object answered the malformed call INVALID_ARGUMENT
    assert "Traceback" not in err, err
