"""The shape rules of lib/ that reading the code would otherwise have to
check (GUIDE: no import cycles, no module over 400 lines; issue 20: rt.py
imports nothing of the package, the clients import no agent policy). Every
import counts, at module level or inside a function: a function-level
import that closes a cycle is a cycle all the same (rt <-> certs was one)."""
import ast
import os

HERE = os.path.dirname(os.path.abspath(__file__))
LIB = os.path.join(os.path.dirname(HERE), "lib")
PKG = os.path.join(LIB, "socketman")


def modules():
    """{dotted name: path} of every module of the package."""
    out = {}
    for d, dirs, files in os.walk(PKG):
        dirs[:] = [x for x in dirs if x != "__pycache__"]
        for n in files:
            if n.endswith(".py"):
                rel = os.path.relpath(os.path.join(d, n), LIB)[:-3].replace(os.sep, ".")
                out[rel[:-len(".__init__")] if rel.endswith(".__init__") else rel] = os.path.join(d, n)
    return out


def imports(name, path, known):
    """The package's modules that module name imports, anywhere in it."""
    pkg = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.ImportFrom):
            base = pkg
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            base = (base + "." + node.module if node.module else base) if node.level else node.module
            for a in node.names:
                full = base + "." + a.name
                out.add(full if full in known else base)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m in known and m != name}


def graph():
    known = modules()
    return {n: imports(n, p, known) for n, p in known.items()}


def test_the_import_graph_sees_imports():
    g = graph()
    assert "socketman.conn" in g["socketman.mqtt"]
    assert "socketman.jobs.sign" in g["socketman.jobs.dispatch"]  # a function-level import
    assert "socketman.rt" in g["socketman.loop"] and "socketman.jobs.queue" in g["socketman.jobs.dispatch"]


def test_no_import_cycles():
    g = graph()
    done, path, cycles = set(), [], []

    def visit(n):
        if n in path:
            cycles.append(path[path.index(n):] + [n])
            return
        if n in done:
            return
        path.append(n)
        for m in sorted(g[n]):
            # A package's __init__ is run by importing any of its modules:
            # that edge is not a cycle of the modules' own.
            if not n.startswith(m + "."):
                visit(m)
        path.pop()
        done.add(n)

    for n in sorted(g):
        visit(n)
    assert not cycles, " ; ".join(" -> ".join(c) for c in cycles)


def test_rt_imports_nothing_of_the_package():
    assert graph()["socketman.rt"] <= {"socketman"}


def test_the_protocol_clients_and_transport_import_no_agent_policy():
    # Name lookups are passed in (a resolver), reachability is the agent's
    # (inflight.py); TLS is loaded only for TLS (tls.py, on demand).
    g = graph()
    for client in ("socketman.conn", "socketman.http", "socketman.mqtt", "socketman.mqttpacket"):
        assert not g[client] & {"socketman.dns", "socketman.reach", "socketman.log", "socketman.session",
                                "socketman.agent"}, client
    with open(modules()["socketman.http"]) as f:
        tree = ast.parse(f.read())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert not any("tls" in [a.name for a in n.names] or getattr(n, "module", "") == "tls" for n in top)


def test_no_module_over_400_lines():
    over = []
    for name, path in modules().items():
        with open(path) as f:
            n = len(f.read().splitlines())
        if n > 400:
            over.append("%s: %d" % (name, n))
    assert not over, over
