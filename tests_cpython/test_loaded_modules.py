"""What a running agent has loaded (issue 20): the agent runs as main.py
runs it, inside scenarios/loaded_modules.py, under the native MicroPython
1.23 with the .mpy bundle (and CPython), with a plain config (MQTT without
TLS, stats to an http URL, no job key, no boot URL), through a job and an
upload; after its clean stop the script lists the socketman modules it
holds. That set must be exactly the "always" and "once online" rows of the
table in lib/socketman/__init__.py: a module that starts loading in
another case, or stops being unloaded, shows here."""
import os
import re

from helpers import openwrt
from helpers.agent import Agent
from helpers.device import BASE, config

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SCRIPT = os.path.join(HERE, "scenarios", "loaded_modules.py")
RUNTIMES = ("cpython", "mpy1.23-bundle")


def table():
    """{row: set of module names} of the table in lib/socketman/__init__.py."""
    with open(os.path.join(ROOT, "lib", "socketman", "__init__.py")) as f:
        text = f.read()
    cells, row = {}, None
    for line in text.splitlines():
        m = re.match(r"#\s{0,3}(\w[\w ]*\w):\s*(.*)", line)
        if m and m.group(1) in ("always", "once online", "on demand", "at start then unloaded",
                                "never on a router"):
            row = m.group(1)
            cells[row] = m.group(2)
        elif row and re.match(r"#\s{4,}\S", line):
            cells[row] += " " + line[1:]
        else:
            row = None
    # "name" or "name (why)": the names are the words outside brackets
    return {r: set(re.findall(r"[a-z_][a-z_.]*", re.sub(r"\([^)]*\)", "", c))) for r, c in cells.items()}


def test_the_table_names_every_module_once():
    rows = table()
    assert set(rows) == {"always", "once online", "on demand", "at start then unloaded", "never on a router"}
    named = [m for r in rows.values() for m in r]
    assert len(named) == len(set(named)), "a module in two rows"
    lib = os.path.join(ROOT, "lib", "socketman")
    present = set()
    for d, _, files in os.walk(lib):
        for n in files:
            if n.endswith(".py") and n != "__init__.py":
                rel = os.path.relpath(os.path.join(d, n), lib)[:-3].replace(os.sep, ".")
                present.add(rel)
            elif n == "__init__.py" and d != lib:
                present.add(os.path.relpath(d, lib).replace(os.sep, "."))
    assert set(named) == present


def test_a_plain_agent_loads_what_the_table_says(runtime, runtime_argv, bundles, tmp_path, broker,
                                                 controllers, http_server):
    from helpers import runtimes
    version = runtimes.RUNTIMES[runtime][2]
    main_dir = bundles(version) if version else ROOT
    out = tmp_path / "modules.txt"
    api = http_server()
    env, fcfg = openwrt.make(tmp_path)
    env["SOCKETMAN_TIME_SCALE"] = "15"  # a document a second, an upload every 4 s
    cfg = config(tmp_path, broker, **dict(fcfg, stats_url=api.url("/stats"), token="tok"))
    ctrl = controllers(broker, BASE)
    a = Agent(runtime_argv(runtime) + [SCRIPT, main_dir, str(out)], cfg, tmp_path, env=env)
    try:
        ctrl.wait_event("CONNECT", online="1", timeout=30)
        ctrl.job("j1", "true")
        ctrl.wait_event("PROCESSED", "j1", timeout=30)
        api.wait("POST", "/stats", timeout=30)
        assert a.stop() == 0, a.output()
    finally:
        a.kill()
    loaded = {n[len("socketman."):] for n in out.read_text().split() if n.startswith("socketman.")}
    rows = table()
    want = rows["always"] | rows["once online"]
    assert loaded == want, "loaded but not in the table: %s; in the table, not loaded: %s" % (
        sorted(loaded - want), sorted(want - loaded))
