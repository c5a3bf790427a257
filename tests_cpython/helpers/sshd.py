"""Debian's dropbear (the SSH server OpenWRT ships) on a loopback port as a
device's SSH server, for the tunnel tests and `make demo`, and the OpenSSH
options to log in to it with a key of its own.

dropbear finds authorized_keys in the home directory /etc/passwd gives the
user. It runs in a mount namespace of its own (unshare) where /etc/passwd
(and /etc/shadow) are copies in its directory that put that home there, so
the machine's /root, home directories and account files are never touched:
as root, it logs in root; as another user (the demo), in a user namespace
that keeps that user's id, it logs in that user (dropbear can only log in
the user it runs as)."""
import os
import pwd
import shutil
import subprocess

from helpers import net


def missing():
    """Why dropbear cannot run here, or None."""
    if not (shutil.which("dropbear") or os.path.exists("/usr/sbin/dropbear")) or not shutil.which("ssh"):
        return ("dropbear or the OpenSSH client is missing (Debian packages dropbear-bin and openssh-client; "
                "tools/need_system.sh installs them as root)")
    if not shutil.which("unshare"):
        return "unshare(1) (util-linux) is missing: dropbear needs a mount namespace of its own"
    return None


class Dropbear:
    """dropbear on 127.0.0.1:port (a free one unless given), public-key
    login only, with a host key and a client key (self.key) of its own in
    directory tmp/<name>. self.user: the user it logs in."""

    def __init__(self, tmp, port=None, name="dropbear"):
        self.dir = os.path.join(str(tmp), name)
        home = os.path.join(self.dir, "home")
        os.makedirs(os.path.join(home, ".ssh"), mode=0o700)
        os.chmod(home, 0o700)
        self.key = os.path.join(self.dir, "id_ed25519")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "socketman-test", "-f", self.key],
                       check=True, timeout=30)
        auth_keys = os.path.join(home, ".ssh", "authorized_keys")
        shutil.copy(self.key + ".pub", auth_keys)
        os.chmod(auth_keys, 0o600)
        host_key = os.path.join(self.dir, "host_key")
        subprocess.run(["dropbearkey", "-t", "ed25519", "-f", host_key], check=True, capture_output=True, timeout=30)
        uid = os.getuid()
        self.user = pwd.getpwuid(uid).pw_name
        with open("/etc/passwd") as f:
            lines = [ln for ln in f.read().splitlines() if ln.split(":")[2:3] != [str(uid)]]
        with open(os.path.join(self.dir, "passwd"), "w") as f:
            f.write("%s:x:%d:%d:%s:%s:/bin/sh\n%s\n" % (self.user, uid, os.getgid(), self.user, home,
                                                         "\n".join(lines)))
        mounts = "mount --bind {d}/passwd /etc/passwd"
        if uid == 0:
            with open(os.path.join(self.dir, "shadow"), "w") as f:
                f.write("root:*:19000:0:99999:7:::\n")  # no password: keys only
            mounts += " && mount --bind {d}/shadow /etc/shadow"
            unshare = ["unshare", "--mount", "--propagation", "private"]
        else:
            # A user namespace where we keep our own id (dropbear then logs in
            # only us) and the capability to mount in our mount namespace.
            unshare = ["unshare", "--map-current-user", "--keep-caps", "--mount", "--propagation", "private"]
        self.port = port or net.free_port()
        dropbear = shutil.which("dropbear") or "/usr/sbin/dropbear"
        script = (mounts + " && exec {b} -F -E -s -m -r {k} -p 127.0.0.1:{p} -P {d}/pid").format(
            d=self.dir, b=dropbear, k=host_key, p=self.port)
        self.log_path = os.path.join(self.dir, "dropbear.log")
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(unshare + ["sh", "-c", script], stdout=self.log, stderr=subprocess.STDOUT)
        try:
            net.wait_listening(self.port)
        except BaseException:
            self.stop()
            raise

    def output(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def ssh_args(self, port=None):
        """OpenSSH options to log in with this server's key, without the
        machine's or the user's ssh config and known hosts; port: ssh's -p."""
        return ["-F", "/dev/null", "-i", self.key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                "-o", "ConnectTimeout=30"] + (["-p", str(port)] if port else [])

    def ssh(self, port, command, timeout=120, **kw):
        """ssh to 127.0.0.1:port (a tunnel's local end) running command."""
        return subprocess.run(["ssh"] + self.ssh_args(port) + ["%s@127.0.0.1" % self.user, command],
                              capture_output=True, timeout=timeout, **kw)

    def scp(self, port, src, dst, timeout=300):
        """scp -O (the SCP protocol: OpenWRT's dropbear has no SFTP server)
        of src to dst on 127.0.0.1:port."""
        return subprocess.run(["scp", "-O", "-q"] + self.ssh_args() + ["-P", str(port), src,
                                                                         "%s@127.0.0.1:%s" % (self.user, dst)],
                              capture_output=True, timeout=timeout)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()
