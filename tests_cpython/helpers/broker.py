"""A real Mosquitto broker on loopback: password file, plain and TLS
listeners, and a TLS listener that requires a client certificate from the
test CA (PROTOCOL 9)."""
import getpass
import os
import shutil
import subprocess
import time

from helpers import certs, net

USER, PASSWORD = "device", "s3cret-pw"
CTRL_USER, CTRL_PASSWORD = "controller", "ctrl-pw"


def mosquitto_bin():
    return shutil.which("mosquitto") or "/usr/sbin/mosquitto"


class Broker:
    def __init__(self, tmp, tls_certs=None, extra=""):
        self.dir = os.path.join(str(tmp), "broker")
        os.makedirs(self.dir, exist_ok=True)
        self.port = net.free_port()
        self.tls_port = net.free_port()
        self.mtls_port = net.free_port()
        self.certs = tls_certs or certs.make(os.path.join(self.dir, "certs"))
        pw = os.path.join(self.dir, "passwd")
        open(pw, "w").close()
        for user, password in ((USER, PASSWORD), (CTRL_USER, CTRL_PASSWORD)):
            subprocess.run(["mosquitto_passwd", "-b", pw, user, password], check=True, capture_output=True)
        self.conf = os.path.join(self.dir, "mosquitto.conf")
        with open(self.conf, "w") as f:
            # As root, mosquitto would switch to its own user, who cannot read
            # the test's files; stay who we are.
            f.write("user %s\n" % getpass.getuser())
            f.write("per_listener_settings false\nallow_anonymous false\npassword_file %s\n"
                    "persistence false\nlog_dest file %s\nlog_type all\n"
                    "listener %d 127.0.0.1\n"
                    "listener %d 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\n"
                    % (pw, os.path.join(self.dir, "mosquitto.log"), self.port, self.tls_port,
                       self.certs["ca"], self.certs["cert"], self.certs["key"]))
            f.write(extra)  # more settings, e.g. "max_packet_size 16384\n"
            f.write("listener %d 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate true\n"
                    % (self.mtls_port, self.certs["ca"], self.certs["cert"], self.certs["key"]))
        self.log_path = os.path.join(self.dir, "mosquitto.log")  # written by mosquitto itself
        self.proc = None
        self.start()

    def start(self):
        self.log = open(os.path.join(self.dir, "stdout.log"), "ab")
        self.proc = subprocess.Popen([mosquitto_bin(), "-c", self.conf], stdout=self.log, stderr=subprocess.STDOUT)
        try:
            net.wait_listening(self.port)
            net.wait_listening(self.tls_port)
            net.wait_listening(self.mtls_port)
        except BaseException:  # a slow start must not leave a Mosquitto behind
            self.stop()
            raise

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()

    def restart(self, down_s=0.0):
        self.stop()
        time.sleep(down_s)
        self.start()

    def output(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")
