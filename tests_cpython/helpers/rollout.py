"""Helpers for releases and rollouts (issue 23, PROTOCOL 10), for the
server's tests and for the end-to-end rollout with real agents:

- `archive(tmp, version, source=True)`: an update archive of this tree with
  VERSION set to `version`, made by tools/package.py (.py files: what an
  agent under CPython runs; source=False: the .mpy bundle for MicroPython
  1.23). Made once per version and kind in the session's folder.
- `add_release(srv, path)`: `socketman-server release add` on a
  FleetServer's database, as an operator runs it.
- `FakeDevice` / `FakeFleet`: devices played by paho MQTT clients that
  answer `update` jobs as PROTOCOL 10 says: DELIVERED, download the
  archive from the job's URL and check its SHA-256 (and the job's
  signature when given the key), then, after `delay` seconds, per `mode`:
  "ok" (a new retained CONNECT with the new version, then PROCESSED
  success `updated <old> -> <new>`), "rollback" (PROCESSED false `rolled
  back: ...`), "fail" (PROCESSED false, nothing changed), "silent" (nothing
  after DELIVERED), "reject" (REJECTED). A wrong hash or signature is a
  PROCESSED false / REJECTED whatever the mode. A device's `gate` (a
  threading.Event, None: none) holds its answer, after the download, until
  the test sets it.
"""
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import paho.mqtt.client as paho

from helpers.broker import PASSWORD, USER
from helpers.fleet import KEY, SERVER_MAIN, TOPIC

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE = os.path.join(ROOT, "tools", "package.py")
_made = {}
_lock = threading.Lock()
URL_RE = re.compile(r"^(https?://\S+)#sha256=([0-9a-fA-F]{64})$")


def archive(tmp, version, source=True):
    """Path of dist/socketman-<version>.tar.gz made by tools/package.py
    --set-version (and --source) in a folder of tmp (a pytest tmp path
    factory's folder, or any folder); cached per (version, source)."""
    key = (version, source)
    with _lock:
        if key in _made and os.path.exists(_made[key]):
            return _made[key]
        out = tempfile.mkdtemp(prefix="release-%s-" % version, dir=str(tmp))
        argv = [sys.executable, PACKAGE, "--set-version", version, "--out", out] + (["--source"] if source else [])
        r = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        _made[key] = os.path.join(out, "socketman-%s.tar.gz" % version)
        return _made[key]


def add_release(srv, path, expect_ok=True):
    """`socketman-server release add PATH` on the FleetServer's database
    (and data folder, the database file's). Returns the CompletedProcess."""
    r = subprocess.run([sys.executable, SERVER_MAIN, "release", "add", path, "--db", srv.db_url]
                       + list(getattr(srv, "data_args", [])), capture_output=True, text=True, timeout=60)
    if expect_ok:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


def _tar_gz(members):
    """[(name, bytes | None for a directory | TarInfo ready to add)] -> .tar.gz bytes."""
    import gzip
    import io
    import tarfile
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as t:
        for name, data in members:
            if isinstance(data, tarfile.TarInfo):
                t.addfile(data)
                continue
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                t.addfile(info)
            else:
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue())


def _special(name, kind, link=""):
    import tarfile
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


def bad_archives(good):
    """Archives a server must refuse, made from a good one (its bytes, a
    .py release): [(file name, bytes, what the refusal says)]."""
    import gzip
    import io
    import tarfile
    with tarfile.open(fileobj=io.BytesIO(good), mode="r:gz") as t:
        files = [(m.name, t.extractfile(m).read() if m.isfile() else None) for m in t.getmembers()]
    init = "lib/socketman/__init__.py"

    def but(drop=(), add=(), change=None):
        out = [(n, change[n] if change and n in change else d) for n, d in files if n not in drop]
        return _tar_gz(out + list(add))
    return [
        ("socketman-0.4.0.tar.gz", b"PK\x03\x04 this is a zip" + b"\0" * 100, "not a gzip file"),
        ("socketman-0.4.0.tar.gz", gzip.compress(b"hello, not a tar " * 100), "not a tar archive"),
        ("socketman-0.4.0.tar.gz", good[:len(good) // 2], "cut short"),
        ("escape.tar.gz", but(add=[("../evil.py", b"x")]), "leaves its folder"),
        ("escape2.tar.gz", but(add=[("lib/../../evil.py", b"x")]), "leaves its folder"),
        ("absolute.tar.gz", but(add=[("/etc/cron.d/evil", b"x")]), "leaves its folder"),
        ("symlink.tar.gz", but(add=[("x", _special("lib/socketman/evil.py", tarfile.SYMTYPE, "/etc/passwd"))]),
         "is a link"),
        ("hardlink.tar.gz", but(add=[("x", _special("lib/socketman/evil.py", tarfile.LNKTYPE, "main.py"))]),
         "is a link"),
        ("device.tar.gz", but(add=[("x", _special("lib/socketman/null", tarfile.CHRTYPE))]), "is a device file"),
        ("fifo.tar.gz", but(add=[("x", _special("lib/socketman/pipe", tarfile.FIFOTYPE))]), "is a device file"),
        ("nomain.tar.gz", but(drop=["main.py"]), "no main.py"),
        ("noinit.tar.gz", but(drop=[init]), "no lib/socketman/__init__"),
        ("twice.tar.gz", but(add=[("main.py", b"print('again')")]), "main.py is in the archive twice"),
        ("noversion.tar.gz", but(change={init: b"X = 1\n"}), 'no VERSION = "..." line'),
        ("badversion.tar.gz", but(change={init: b'VERSION = "../../x"\n'}), "is not a version"),
        ("socketman-9.9.9.tar.gz", good, "the file name says version 9.9.9"),
        ("bomb.tar.gz", but(add=[("lib/zeros", b"\0" * (40 * 1024 * 1024))]), "unpacks to more than"),
    ]


def event(kind, job_id=None, **meta):
    e = {"app": "socketman", "timestamp": int(time.time()), "event_type": kind, "meta": meta}
    if job_id is not None or kind in ("DELIVERED", "PROCESSED", "REJECTED"):
        e["id"] = job_id
    return json.dumps(e)


class FakeDevice:
    """One device on the broker: retained CONNECT online "1" with its
    version, a last will, and answers to update jobs (module docstring)."""

    def __init__(self, broker, mac, version="0.1.0", mode="ok", delay=0.5, job_key=None, topic=TOPIC, key=KEY):
        self.mac, self.version, self.mode, self.delay, self.job_key = mac, version, mode, delay, job_key
        self.base = "%s/%s/%s" % (topic, key, mac)
        self.jobs, self.downloads, self.errors = [], [], []
        self.done = threading.Event()
        self.gate = None
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=("sm-" + mac)[:23], clean_session=True)
        self.c.username_pw_set(USER, PASSWORD)
        self.c.will_set("status/" + self.base, event("CONNECT", online="0", client_id="sm-" + mac), qos=1,
                        retain=True)
        self.c.on_message = self._on_message
        subscribed = threading.Event()
        self.c.on_subscribe = lambda *a: subscribed.set()
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe("sub/" + self.base, 1)
        self.c.connect("127.0.0.1", broker.port, 30)
        self.c.loop_start()
        assert subscribed.wait(10), "the fake device %s could not subscribe" % mac
        self._connect_event()

    def _connect_event(self):
        self.c.publish("status/" + self.base, event("CONNECT", online="1", client_id="sm-" + self.mac,
                                                    version=self.version), qos=1, retain=True).wait_for_publish(10)

    def _on_message(self, client, userdata, msg):
        try:
            job = json.loads(msg.payload)
        except ValueError:
            return
        self.jobs.append(job)
        threading.Thread(target=self._run, args=(job,), daemon=True).start()

    def _pub(self, kind, topic, job_id, **meta):
        self.c.publish("%s/%s" % (topic, self.base), event(kind, job_id, **meta), qos=1).wait_for_publish(10)

    def _run(self, job):
        jid, meta = job.get("id"), job.get("meta") or {}
        try:
            if meta.get("type") != "update":
                self._pub("REJECTED", "pub", jid, reason="the fake device only takes updates")
                return
            if self.job_key is not None:
                text = "%s\n%d\n%s\n%s" % (jid, job["timestamp"], meta["type"], meta["msg"])
                want = hmac.new(self.job_key.encode(), text.encode(), hashlib.sha256).hexdigest()
                if not hmac.compare_digest(want, job.get("sig", "")):
                    self._pub("REJECTED", "pub", jid, reason="bad signature")
                    return
            m = URL_RE.match(meta.get("msg", ""))
            if not m:
                self._pub("REJECTED", "pub", jid, reason="not a URL with #sha256=")
                return
            if self.mode == "reject":
                self._pub("REJECTED", "pub", jid, reason="busy")
                return
            self._pub("DELIVERED", "delivery", jid, delivered=True)
            with urllib.request.urlopen(m.group(1), timeout=30) as r:
                data = r.read()
            self.downloads.append((m.group(1), len(data)))
            if hashlib.sha256(data).hexdigest() != m.group(2).lower():
                self._pub("PROCESSED", "pub", jid, msg="sha256 mismatch", type="update", success=False, exit_code=1)
                return
            new = self._version(data)
            if self.gate is not None:
                assert self.gate.wait(120), "the test never opened the gate"
            time.sleep(self.delay)
            if self.mode == "ok":
                old, self.version = self.version, new
                self._connect_event()  # the new version's connection
                self._pub("PROCESSED", "pub", jid, msg="updated %s -> %s" % (old, new), type="update", success=True,
                          exit_code=0, duration_ms=int(self.delay * 1000))
            elif self.mode == "rollback":
                self._pub("PROCESSED", "pub", jid, msg="rolled back: the new version did not reach the broker "
                          "within 30 s", type="update", success=False, exit_code=1)
            elif self.mode == "fail":
                self._pub("PROCESSED", "pub", jid, msg="the new tree does not start here: --version failed",
                          type="update", success=False, exit_code=1)
        except Exception as e:  # noqa: BLE001 - recorded for the test to see
            self.errors.append(repr(e))
        finally:
            self.done.set()

    @staticmethod
    def _version(data):
        """VERSION of the archive's lib/socketman/__init__ (.py or .mpy)."""
        import io
        import tarfile

        from socketman_server.releases import version_of
        inits = {}
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as t:
            for name in ("lib/socketman/__init__.py", "lib/socketman/__init__.mpy"):
                try:
                    inits[name] = t.extractfile(name).read()
                except KeyError:
                    pass
        return version_of(inits)

    def stop(self, clean=True):
        """clean: retained online "0" first (a clean stop); else the
        connection just dies (the broker sends the will)."""
        if clean:
            self.c.publish("status/" + self.base, event("CONNECT", online="0", client_id="sm-" + self.mac),
                           qos=1, retain=True).wait_for_publish(10)
            self.c.disconnect()
        else:
            self.c.socket().close()
        self.c.loop_stop()


class FakeFleet:
    """N FakeDevices, MACs 02:f0:00:00:<n>:<i>; modes: {index: mode}."""

    def __init__(self, broker, n, version="0.1.0", modes=None, delay=0.5, job_key=None, prefix="02:f0:00:00:01"):
        self.devices = []
        try:
            for i in range(n):
                mac = "%s:%02x" % (prefix, i + 1)
                self.devices.append(FakeDevice(broker, mac, version, (modes or {}).get(i, "ok"), delay, job_key))
        except BaseException:
            self.stop()
            raise

    def __getitem__(self, i):
        return self.devices[i]

    def macs(self):
        return [d.mac.upper() for d in self.devices]

    def stop(self):
        for d in self.devices:
            try:
                d.stop()
            except Exception:  # noqa: BLE001 - stopping anyway
                pass
