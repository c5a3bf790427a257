"""Debian's dropbear (the SSH server OpenWRT ships) on a loopback port, as
the device's SSH server, and OpenSSH's ssh and scp as the operator's
client. Dropbear reads authorized keys from the user's home only, so it
runs in a private mount namespace (`unshare -m`, root) where /root is the
test's own directory: the machine's /root is never touched."""
import os
import shutil
import subprocess

from helpers import net


def missing():
    """Why these tests cannot run here, or None."""
    if not (shutil.which("dropbear") or os.path.exists("/usr/sbin/dropbear")) or not shutil.which("ssh"):
        return ("dropbear or the OpenSSH client is missing (Debian packages dropbear-bin and openssh-client; "
                "tools/need_system.sh installs them as root)")
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return "dropbear's login needs root and unshare(1) for a private /root"
    return None


class Dropbear:
    def __init__(self, tmp):
        self.dir = os.path.join(str(tmp), "sshd")
        home = os.path.join(self.dir, "home")
        os.makedirs(os.path.join(home, ".ssh"), mode=0o700)
        os.chmod(home, 0o700)
        self.key = os.path.join(self.dir, "id_ed25519")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", self.key], check=True, timeout=30)
        shutil.copy(self.key + ".pub", os.path.join(home, ".ssh", "authorized_keys"))
        os.chmod(os.path.join(home, ".ssh", "authorized_keys"), 0o600)
        self.port = net.free_port()
        dropbear = shutil.which("dropbear") or "/usr/sbin/dropbear"
        self.log = open(os.path.join(self.dir, "dropbear.log"), "wb")
        hostkey = os.path.join(self.dir, "hostkey")
        subprocess.run(["dropbearkey", "-t", "ed25519", "-f", hostkey], check=True, capture_output=True, timeout=30)
        self.proc = subprocess.Popen(
            ["unshare", "-m", "sh", "-c", 'mount --bind "$0" /root && exec "$@"', home,
             dropbear, "-F", "-E", "-s", "-m", "-p", "127.0.0.1:%d" % self.port, "-r", hostkey,
             "-P", os.path.join(self.dir, "pid")],
            stdout=self.log, stderr=subprocess.STDOUT)
        net.wait_listening(self.port)

    def ssh_args(self, port):
        """OpenSSH options to reach this server through a tunnel's local
        port (the operator's side)."""
        return ["-F", "/dev/null", "-i", self.key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                "-o", "ConnectTimeout=30"] + (["-p", str(port)] if port else [])

    def ssh(self, port, command, timeout=120, **kw):
        return subprocess.run(["ssh"] + self.ssh_args(port) + ["root@127.0.0.1", command],
                              capture_output=True, timeout=timeout, **kw)

    def scp(self, port, src, dst, timeout=300):
        """scp -O (the SCP protocol: OpenWRT's dropbear has no SFTP server)."""
        return subprocess.run(["scp", "-O", "-q"] + self.ssh_args(None) + ["-P", str(port), src,
                                                                             "root@127.0.0.1:" + dst],
                              capture_output=True, timeout=timeout)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()
