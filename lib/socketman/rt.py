# The only module that knows CPython from MicroPython. Everything else calls
# these helpers and behaves the same on both runtimes.
import errno
import os
import select
import socket
import sys
import time

MPY = sys.implementation.name == "micropython"
EAGAIN = (errno.EAGAIN, 11, errno.EINPROGRESS)

# A clock the tests can drive: SOCKETMAN_TIME_SCALE=N makes every interval
# and deadline of the agent pass N times faster. 1 (the default) is real time.
try:
    SCALE = max(1, int(os.getenv("SOCKETMAN_TIME_SCALE") or 1))
except ValueError:
    SCALE = 1

if MPY:
    _ticks = time.ticks_ms
    _tdiff = time.ticks_diff
    _sleep_ms = time.sleep_ms
else:
    def _ticks():
        return int(time.monotonic() * 1000)

    def _tdiff(a, b):
        return a - b

    def _sleep_ms(ms):
        time.sleep(ms / 1000)

# MicroPython's ticks wrap after days; fold them into a counter that does not,
# so callers can subtract plain ints. ms() must run at least every few days,
# which the loop does.
_last = _ticks()
_mono = 0


def ms():
    global _last, _mono
    t = _ticks()
    _mono += _tdiff(t, _last)
    _last = t
    return _mono * SCALE


def now():
    """Unix time in whole seconds (real time, also under a test clock)."""
    return int(time.time())


def real_ms(agent_ms):
    """Agent milliseconds -> real milliseconds to wait."""
    return max(0, int(agent_ms) // SCALE)


def sleep_ms(agent_ms):
    _sleep_ms(real_ms(agent_ms))


def seed_random():
    import random
    b = os.urandom(4)
    random.seed(b[0] | b[1] << 8 | b[2] << 16 | b[3] << 24)


def random_hex(nbytes):
    import binascii
    return binascii.hexlify(os.urandom(nbytes)).decode()


def after_interrupt():
    """MicroPython can raise KeyboardInterrupt from inside a garbage
    collection, which then leaves the heap locked: every allocation after it
    fails. Unlock it, so the clean stop can run."""
    if MPY:
        import micropython
        micropython.heap_lock()
        depth = micropython.heap_unlock()
        while depth > 0:
            depth = micropython.heap_unlock()


def tune_heap():
    import gc
    if MPY:
        # Collect before the heap fills up: keeps pauses short on a router.
        gc.threshold(32 * 1024)
    gc.collect()


def format_exc(e):
    import io
    buf = io.StringIO()
    if MPY:
        sys.print_exception(e, buf)
    else:
        import traceback
        traceback.print_exception(type(e), e, e.__traceback__, file=buf)
    return buf.getvalue()


def in_process_gzip(method, data):
    """gzip bytes of data by "zlib" or "deflate", or None when this runtime
    cannot compress that way."""
    if method == "zlib":
        if MPY:
            return None
        import zlib
        c = zlib.compressobj(6, zlib.DEFLATED, 31)
        return c.compress(data) + c.flush()
    if method == "deflate":
        try:
            import io

            import deflate
            buf = io.BytesIO()
            with deflate.DeflateIO(buf, deflate.GZIP) as d:
                d.write(data)
            return buf.getvalue()
        except (ImportError, AttributeError, OSError):
            return None  # no module, or built without compression
    return None


# ---- files -------------------------------------------------------------

def read_file(path, limit=-1):
    """Bytes of a file, at most limit bytes; None when it cannot be read.
    Read in pieces: MicroPython's read(n) reserves all n bytes up front."""
    try:
        with open(path, "rb") as f:
            parts = []
            left = limit
            while left:
                piece = f.read(4096 if left < 0 else min(4096, left))
                if not piece:
                    break
                parts.append(piece)
                left -= len(piece) if left > 0 else 0
            return b"".join(parts)
    except (OSError, ValueError):
        return None


def stat(path):
    """(size, mtime, is_dir, inode, is_file) or None."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    kind = st[0] & 0o170000
    return st[6], st[8], kind == 0o040000, st[1], kind == 0o100000


def listdir(path):
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def makedirs(path):
    cur = ""
    for part in path.split("/"):
        cur = cur + part + "/" if cur or part else "/"
        if part:
            try:
                os.mkdir(cur)
            except OSError as e:
                if e.errno != errno.EEXIST:
                    raise


def remove(path):
    try:
        os.remove(path)
        return True
    except OSError:
        return False


def remove_dir(path):
    """Remove a directory and the files in it (one level)."""
    for name in listdir(path):
        remove(path + "/" + name)
    try:
        os.rmdir(path)
    except OSError:
        pass


def rename(src, dst):
    os.rename(src, dst)


def write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


def getenv(name, default=None):
    v = os.getenv(name)
    return default if v is None else v


# ---- shell commands ----------------------------------------------------

def shell_quote(s):
    return "'" + s.replace("'", "'\"'\"'") + "'"


def system(cmd):
    """Run a short shell command and wait: its exit status (0..255)."""
    st = os.system(cmd)
    # Both runtimes return the raw wait status from os.system.
    if st & 0x7F:
        return 128 + (st & 0x7F)
    return (st >> 8) & 0xFF


def spawn(script, workdir, marker):
    """Run the shell script in the background and return at once. Its output
    (stdout and stderr) goes to workdir/out, its exit status to workdir/rc
    (complete once it ends in a newline), the background shell's pid to
    workdir/pid. marker tags every process it starts, for kill_tree. Few
    processes on purpose: each fork costs milliseconds on a router."""
    w, q = shell_quote(workdir), shell_quote
    # The wrapper is exec'd with the tag in its environment, so kill_tree
    # finds it too and it cannot write an exit status for a killed job. The
    # script runs in a forked subshell (no exec: a process fewer), which
    # inherits the tag.
    inner = "( . %s ) > %s/out 2>&1 < /dev/null; echo $? > %s/rc" % (q(script), w, w)
    os.system("SOCKETMAN_TAG=%s exec sh -c %s > /dev/null 2>&1 < /dev/null & echo $! > %s/pid"
              % (q(marker), q(inner), w))


def exit_status(workdir):
    """The exit status spawn() wrote, or None while the command runs."""
    raw = read_file(workdir + "/rc", 16)
    if not raw or not raw.endswith(b"\n"):
        return None
    raw = raw.strip()
    return int(raw) if raw.isdigit() else 1


def tagged_pids(marker):
    """Pids of every process carrying marker in its environment (Linux /proc),
    which catches children that were re-parented after their parent died."""
    want = ("SOCKETMAN_TAG=" + marker).encode() + b"\0"
    pids = []
    for name in listdir("/proc"):
        if not name.isdigit():
            continue
        env = read_file("/proc/" + name + "/environ")
        if env and (b"\0" + env).find(b"\0" + want) >= 0:
            pids.append(name)
    return pids


def kill_tree(marker):
    """Kill every process tagged with marker; how many there were."""
    killed = set()
    for _ in range(5):  # again, for anything forked while we looked
        pids = [p for p in tagged_pids(marker) if p not in killed]
        if not pids:
            break
        # Stop them all first, so no shell lives to print "Killed" into
        # the job's output when its child dies.
        ids = " ".join(pids)
        os.system("kill -STOP %s 2>/dev/null; kill -KILL %s 2>/dev/null" % (ids, ids))
        killed.update(pids)
    return len(killed)


# ---- sockets -----------------------------------------------------------

def resolve(host, port, kind=None):
    """First address of host:port as (family, sockaddr); raises OSError."""
    ai = socket.getaddrinfo(host, port, 0, kind or socket.SOCK_STREAM)
    if not ai:
        raise OSError(errno.EHOSTUNREACH, "cannot resolve " + host)
    # Prefer IPv4 the way most OpenWRT uplinks are set up.
    ai.sort(key=lambda a: a[0] != socket.AF_INET)
    return ai[0][0], ai[0][-1]


def numeric_host(host):
    """host resolved to an address string ('192.0.2.1', '::1'); OSError if not."""
    fam, addr = resolve(host, 1)
    if MPY:
        return socket.inet_ntop(fam, socket.sockaddr(addr)[1])
    return addr[0]


def tcp_start(host, port):
    """A non-blocking TCP socket whose connect to host:port is under way."""
    fam, addr = resolve(host, port)
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        s.setsockopt(6, 1, 1)  # IPPROTO_TCP, TCP_NODELAY: one packet, one segment
    except (OSError, AttributeError):
        pass
    try:
        s.connect(addr)
    except OSError as e:
        if e.errno not in EAGAIN:
            s.close()
            raise
    return s


def quickack(sock):
    """Ack what was just read at once (Linux TCP_QUICKACK, which the kernel
    clears again by itself). Without it a broker that leaves Nagle on holds
    its next packet until our delayed ACK, 40 ms later."""
    try:
        sock.setsockopt(6, 12, 1)
    except (OSError, AttributeError):
        pass


POLLIN = select.POLLIN
POLLOUT = select.POLLOUT
POLLERR = select.POLLERR | select.POLLHUP


class Poller:
    """select.poll that answers with the registered objects on both runtimes."""

    def __init__(self):
        self.p = select.poll()
        self.objs = {}

    def register(self, obj, mask):
        self.p.register(obj, mask)
        if not MPY:
            self.objs[obj.fileno()] = obj

    def poll(self, agent_ms):
        try:
            evs = self.p.poll(real_ms(agent_ms))
        except OSError as e:
            if e.errno == errno.EINTR:
                return []
            raise
        if MPY:
            return [(e[0], e[1]) for e in evs]
        return [(self.objs[e[0]], e[1]) for e in evs]


def wait_io(sock, mask, agent_ms):
    """Block up to agent_ms for sock to become ready: the events, 0 if none."""
    p = Poller()
    p.register(sock, mask)
    evs = p.poll(agent_ms)
    return evs[0][1] if evs else 0


def connected(sock, events=0):
    """For a socket from tcp_start, given the poll events seen for it: True
    when connected, None while pending; raises OSError when it failed."""
    ev = events or wait_io(sock, POLLOUT, 0)
    if ev & POLLERR:
        raise OSError(errno.ECONNREFUSED, "connect failed")
    return True if ev & POLLOUT else None


if MPY:
    def recv(sock, n):
        """Up to n bytes; b'' at EOF; None when nothing is there yet."""
        try:
            return sock.read(n)
        except OSError as e:
            if e.errno in EAGAIN:
                return None
            raise
        except ValueError as e:  # mbedtls reports TLS failures this way
            raise OSError(errno.EIO, str(e).strip())

    def send(sock, data):
        """Bytes written (0 when the socket cannot take any now)."""
        try:
            n = sock.write(data)
        except OSError as e:
            if e.errno in EAGAIN:
                return 0
            raise
        except ValueError as e:
            raise OSError(errno.EIO, str(e).strip())
        return n or 0

    def unix_addr(path):
        import struct
        return struct.pack("H", socket.AF_UNIX) + path.encode() + b"\0"
else:
    import ssl as _ssl
    _WANT = (BlockingIOError, InterruptedError, _ssl.SSLWantReadError,
             _ssl.SSLWantWriteError)

    def recv(sock, n):
        try:
            return sock.recv(n)
        except _WANT:
            return None

    def send(sock, data):
        try:
            return sock.send(data)
        except _WANT:
            return 0

    def unix_addr(path):
        return path


def close(sock):
    if sock is not None:
        try:
            sock.close()
        except OSError:
            pass


# ---- TLS ---------------------------------------------------------------

def pem_to_der(pem):
    """Each certificate of a PEM text as DER bytes (MicroPython's ssl wants DER)."""
    import binascii
    out, cur = [], None
    for line in pem.split(b"\n"):
        line = line.strip()
        if line.startswith(b"-----BEGIN CERTIFICATE"):
            cur = []
        elif line.startswith(b"-----END CERTIFICATE"):
            if cur:
                out.append(binascii.a2b_base64(b"".join(cur)))
            cur = None
        elif cur is not None:
            cur.append(line)
    return out


SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"


def tls_context(cacrt, insecure):
    """A client SSLContext that verifies the peer and its host name against
    cacrt (PEM), or the system bundle when cacrt is empty."""
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if insecure:
        if not MPY:
            ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    ctx.verify_mode = ssl.CERT_REQUIRED
    path = cacrt or SYSTEM_CA
    pem = read_file(path)
    if pem is None:
        if not cacrt and not MPY:
            ctx.load_default_certs()
            return ctx
        raise OSError(errno.ENOENT, "cannot read CA file " + path)
    ders = pem_to_der(pem)
    if not ders:
        raise OSError(errno.EINVAL, "no certificate in " + path)
    if MPY:
        for der in ders:
            ctx.load_verify_locations(cadata=der)
    else:
        ctx.load_verify_locations(cadata=pem.decode())
    return ctx


def tls_wrap(ctx, sock, host):
    """Wrap a connected non-blocking socket; the handshake runs inside the
    first send/recv calls, so it never blocks."""
    return ctx.wrap_socket(sock, server_hostname=host,
                           do_handshake_on_connect=False)
