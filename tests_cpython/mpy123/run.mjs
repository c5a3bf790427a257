// Runs one portable test file under MicroPython 1.23, the release OpenWRT
// ships, through its WebAssembly port (npm @micropython/micropython-
// webassembly-pyscript@1.23.0; `make test` installs it in .venv/mpy123).
//   node run.mjs PACKAGE_DIR REPO_ROOT FILE.py [BUNDLE_LIB]
// With BUNDLE_LIB (the lib/ of tools/build_mpy.sh's output) the tests import
// the compiled .mpy modules instead of lib/'s sources.
// That port has the 1.23 core (str, bytes, json, struct, ...) but no sockets,
// no shell and an in-memory file system, so only the pure-logic files run
// here (test_portable_mpy123.py picks them) and the unix port runs them all.
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [pkg, root, file, bundleLib] = process.argv.slice(2);
const { loadMicroPython } = await import(pathToFileURL(path.join(pkg, "micropython.mjs")).href);
const mp = await loadMicroPython({
  heapsize: 64 * 1024 * 1024,
  stdout: (line) => process.stdout.write(line + "\n"),
  stderr: (line) => process.stderr.write(line + "\n"),
});

function mkdirs(p) {
  let cur = "";
  for (const part of p.split("/").filter(Boolean)) {
    cur += "/" + part;
    try { mp.FS.mkdir(cur); } catch (e) { /* exists */ }
  }
}

// The repository files the tests read, at the same absolute paths.
function copy(src) {
  if (fs.statSync(src).isDirectory()) {
    mkdirs(src);
    for (const name of fs.readdirSync(src)) {
      if (name !== "__pycache__") copy(path.join(src, name));
    }
  } else {
    mp.FS.writeFile(src, fs.readFileSync(src));
  }
}
for (const p of ["tests_cpython/portable", "tests_cpython/fixtures", "tests_cpython/mp_run.py",
                 "config.example.json"]) {
  copy(path.join(root, p));
}
// Only one socketman package is there to import: the sources or the bundle.
copy(bundleLib || path.join(root, "lib"));
mkdirs("/tmp");
mkdirs("/mpy123");
// Names rt.py and the test helpers import that this port lacks; the files
// run here never call them.
mp.FS.writeFile("/mpy123/socket.py", "AF_INET = 2\nAF_INET6 = 10\nSOCK_STREAM = 1\nSOCK_DGRAM = 2\n");

const runner = path.join(root, "tests_cpython/mp_run.py");
const target = path.join(root, "tests_cpython/portable", file);
let code = 0;
try {
  mp.runPython(`
import os, random, sys
sys.path.insert(0, "/mpy123")
sys.path.append(${JSON.stringify(bundleLib || path.join(root, "lib"))})
os.getenv = lambda name, default=None: {"TMPDIR": "/tmp"}.get(name, default)
os.urandom = lambda n: bytes(random.getrandbits(8) for _ in range(n))
print("runtime:", sys.implementation.name, ".".join(str(v) for v in sys.implementation.version[:3]))
import socketman
print("socketman from:", socketman.__file__)
# This port has no sys.argv to set: hand the file to mp_run.py directly.
_src = open(${JSON.stringify(runner)}).read().replace("sys.argv[1]", ${JSON.stringify(JSON.stringify(target))})
exec(_src, {"__file__": ${JSON.stringify(runner)}, "__name__": "__main__"})
`);
} catch (e) {
  const text = String(e);
  const m = text.match(/SystemExit: (\d+)/);
  if (m) {
    code = Number(m[1]);
  } else {
    process.stdout.write(text + "\n");
    code = 1;
  }
}
process.exit(code);
