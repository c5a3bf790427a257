"""A real RabbitMQ node (Debian's `rabbitmq-server`) with its MQTT plugin,
private to a test module: the second broker kind the server and the agent
are tested against (issue 25), beside helpers/broker.py's Mosquitto.

Everything it uses is its own: node name, data/log/config folders under the
test's tmp dir, an Erlang port mapper (epmd) started here on a free
loopback port (never the machine's shared 4369), a free distribution port
bound to loopback, AMQP off, MQTT on a free loopback port. The same users
as the Mosquitto helper (device and controller), loaded from a definitions
file at boot. It runs as whoever runs the tests (root in CI): the Debian
wrapper /usr/sbin/rabbitmq-server would switch to the `rabbitmq` user, who
cannot read pytest's root-only tmp dir, so the real script under
/usr/lib/rabbitmq/bin is started instead."""
import base64
import glob
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time

from helpers import net
from helpers.broker import CTRL_PASSWORD, CTRL_USER, PASSWORD, USER

SCRIPT = "/usr/lib/rabbitmq/bin/rabbitmq-server"


class Missing(Exception):
    """RabbitMQ or Erlang is not installed; str() says what and how."""


def need():
    """The rabbitmq-server start script and epmd; Missing names the package."""
    epmd = shutil.which("epmd") or next(iter(sorted(glob.glob("/usr/lib/erlang/erts-*/bin/epmd"))), None)
    if not os.access(SCRIPT, os.X_OK) or not epmd:
        raise Missing("RabbitMQ is not installed (%s%s): install Debian's rabbitmq-server "
                      "(tools/need_system.sh does it as root; `make test` runs it)"
                      % (SCRIPT, "" if epmd else " and epmd"))
    return SCRIPT, epmd


def password_hash(password):
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt + sha256(salt
    + password)) with a 4-byte salt (its definitions file format)."""
    salt = os.urandom(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def definitions():
    users = [{"name": n, "password_hash": password_hash(p), "hashing_algorithm": "rabbit_password_hashing_sha256",
              "tags": ""} for n, p in ((USER, PASSWORD), (CTRL_USER, CTRL_PASSWORD))]
    perms = [{"user": u["name"], "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"} for u in users]
    return {"users": users, "vhosts": [{"name": "/"}], "permissions": perms}


class PortTaken(Exception):
    """A port picked for the node was taken before the node bound it."""


def free_everywhere():
    """A loopback port no address of the machine holds (the Erlang
    distribution and epmd ports: RabbitMQ refuses a distribution port that
    anything listens on, on any address)."""
    for _ in range(50):
        port = net.free_port()
        s = socket.socket()
        try:
            s.bind(("", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise AssertionError("no port free on every address")


class RabbitMQ:
    """One RabbitMQ node with rabbitmq_mqtt on 127.0.0.1:`port` (MQTT
    3.1.1), users as helpers.broker's. Boots in about 5-15 s; stop() ends
    the node and its epmd (SIGTERM, then SIGKILL of their process groups)."""

    def __init__(self, tmp, boot_timeout=90.0, attempts=3):
        self.script, self.epmd_bin = need()
        self.dir = os.path.join(str(tmp), "rabbitmq")
        os.makedirs(self.dir, exist_ok=True)
        self.proc = self.epmd = self.stdout = None
        for attempt in range(attempts):
            try:
                self._start(boot_timeout)
                return
            except PortTaken:
                # Another process (on a shared machine, another test run's)
                # took a port we picked before the node bound it: new ports.
                self.stop()
                if attempt == attempts - 1:
                    raise
            except BaseException:
                self.stop()
                raise

    def _start(self, boot_timeout):
        self.port = net.free_port()
        self.epmd_port = free_everywhere()
        self.dist_port = free_everywhere()
        self.node = "smtest%d@localhost" % self.port
        defs = os.path.join(self.dir, "definitions.json")
        with open(defs, "w") as f:
            json.dump(definitions(), f)
        self.log_dir = os.path.join(self.dir, "log-%d" % self.port)  # this attempt's
        self.stdout_path = os.path.join(self.log_dir, "stdout.log")
        os.makedirs(self.log_dir, exist_ok=True)
        self.stdout = open(self.stdout_path, "ab")
        conf = os.path.join(self.dir, "rabbitmq.conf")
        with open(conf, "w") as f:
            f.write("listeners.tcp = none\n"              # no AMQP listener: MQTT only
                    "mqtt.listeners.tcp.1 = 127.0.0.1:%d\n"
                    "mqtt.allow_anonymous = false\n"
                    "load_definitions = %s\n"
                    "log.console = false\nlog.file.level = info\n"
                    "disk_free_limit.absolute = 10MB\n"   # a busy shared /tmp must not block publishers
                    % (self.port, defs))
        with open(os.path.join(self.dir, "enabled_plugins"), "w") as f:
            f.write("[rabbitmq_mqtt].\n")
        env_conf = os.path.join(self.dir, "rabbitmq-env.conf")
        open(env_conf, "w").close()
        erl_epmd = {"ERL_EPMD_PORT": str(self.epmd_port), "ERL_EPMD_ADDRESS": "127.0.0.1"}
        self.env = dict(os.environ, HOME=self.dir, **erl_epmd)
        self.env.update({
            "RABBITMQ_NODENAME": self.node, "RABBITMQ_CONF_ENV_FILE": env_conf,
            "RABBITMQ_CONFIG_FILE": conf, "RABBITMQ_ADVANCED_CONFIG_FILE": os.path.join(self.dir, "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": os.path.join(self.dir, "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": os.path.join(self.dir, "mnesia"), "RABBITMQ_LOG_BASE": self.log_dir,
            "RABBITMQ_PLUGINS_EXPAND_DIR": os.path.join(self.dir, "plugins-expand"),
            "RABBITMQ_PID_FILE": os.path.join(self.dir, "rabbit.pid"),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        })
        # Our own epmd, on our own port: the node registers there, and
        # nothing of the machine's (another test's, a system RabbitMQ's) is
        # touched. Its own session: stop() ends it by its process group.
        self.epmd = subprocess.Popen([self.epmd_bin, "-port", str(self.epmd_port), "-address", "127.0.0.1"],
                                     stdout=self.stdout, stderr=subprocess.STDOUT, env=self.env,
                                     start_new_session=True)
        net.wait_listening(self.epmd_port, timeout=10)
        if self.epmd.poll() is not None:
            raise PortTaken("epmd port %d" % self.epmd_port)
        self.proc = subprocess.Popen([self.script], stdout=self.stdout, stderr=subprocess.STDOUT, env=self.env,
                                     cwd=self.dir, start_new_session=True)
        self._wait_mqtt(boot_timeout)

    def _wait_mqtt(self, timeout):
        """Until the MQTT listener answers a CONNECT of the device user with
        CONNACK 0 (the plugin is up and the definitions are loaded)."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.output()
                if "already_used" in out or "eaddrinuse" in out:
                    raise PortTaken(out[-3000:])
                raise AssertionError("RabbitMQ exited (%s) while starting:\n%s" % (self.proc.returncode,
                                                                                   self.output()[-4000:]))
            try:
                last = self.connack()
                if last == 0:
                    return
            except OSError as e:
                last = e
            time.sleep(0.25)
        raise AssertionError("RabbitMQ's MQTT listener did not accept a CONNECT within %ss (last: %r):\n%s"
                             % (timeout, last, self.output()[-4000:]))

    def connack(self, user=USER, password=PASSWORD):
        """The return code of a raw MQTT 3.1.1 CONNECT (clean session, no
        will), then DISCONNECT. OSError when nothing answers."""
        def s(b):
            return len(b).to_bytes(2, "big") + b
        body = s(b"MQTT") + b"\x04\xc2" + (30).to_bytes(2, "big") + s(b"sm-probe") + s(user.encode()) \
            + s(password.encode())
        with socket.create_connection(("127.0.0.1", self.port), 2) as c:
            c.settimeout(5)
            c.sendall(bytes([0x10, len(body)]) + body)
            ack = c.recv(4)
            if len(ack) < 4 or ack[0] != 0x20:
                raise OSError("no CONNACK: %r" % ack)
            c.sendall(b"\xe0\x00")
            return ack[3]

    def output(self):
        """The node's log file and its start script's output."""
        text = ""
        for path in sorted(glob.glob(os.path.join(self.log_dir, "*.log"))):
            try:
                with open(path, "rb") as f:
                    text += "==> %s\n%s\n" % (os.path.basename(path), f.read().decode("utf-8", "replace"))
            except OSError:
                pass
        return text

    def stop(self):
        """SIGTERM to the start script (which stops the Erlang VM cleanly),
        then to epmd; SIGKILL to what is left of their process groups."""
        for p in (self.proc, self.epmd):
            if p is None:
                continue
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    pass
            try:  # the Erlang VM and its helpers (erl_child_setup, inet_gethost) are in the group
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self.proc = self.epmd = None
        if self.stdout:
            self.stdout.close()
            self.stdout = None
