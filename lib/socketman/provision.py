# Start-up from outside: provisioning from an init server (PROTOCOL 3, `-b
# INIT_URL`), and the boot URL and boot command (PROTOCOL 5). Imported only
# when one of them is needed: a provisioned agent without a boot URL or
# command never loads this module.
import json
import random

from . import answers, config, dns, fs, http, log, proc, rt, strictjson, text, urls
from .inflight import InFlight
from .loop import Loop
from .stats import system, wan
from .stats.values import load_json

FIRST_WAIT_MS = 15000     # the first request waits a random 0..15 s: a fleet back from a power cut
FIRST_RETRY_MS = 15000    # then backoff from 15 s ...
MAX_RETRY_MS = 300000     # ... up to 5 min
REFUSED_MS = 3600000      # 401/403: this device is refused; ask again in an hour
MAX_CONFIG = 65536        # bytes of a served config
IDENTIFY_MS = 20000       # the ubus calls that find the model and WAN device


# ---- what provisioning starts from --------------------------------------

def base_config(path):
    """The config provisioning starts from (a checked config dict, "mac"
    maybe empty): the file's keys when it has any, else the defaults. With
    SOCKETMAN_SYSROOT=DIR (a test hook) the defaults are those of a device
    whose root is DIR: sysroot, mac_file and cache_dir under DIR.
    ConfigError when the file holds a bad config."""
    data = fs.read_file(path)
    if data is not None and data.strip():
        return config.parse(data, need_mac=False)
    root = proc.getenv("SOCKETMAN_SYSROOT", "")
    obj = {"sysroot": root, "mac_file": root + "/etc/mac", "cache_dir": root + "/tmp/socketman"} if root else {}
    return config.check(obj, need_mac=False)


def read_secret(path):
    """The shared secret: the first line of the file at path, stripped.
    ValueError naming the problem when it cannot be read or is empty."""
    data = fs.read_file(path, 4096)
    if data is None:
        raise ValueError("--secret-file %s: cannot read it" % path)
    secret = text.utf8(data.split(b"\n")[0]).strip()
    if not secret:
        raise ValueError("--secret-file %s: its first line is empty" % path)
    for ch in secret:
        # It goes into an HTTP header: a CR or LF would end that line.
        if ord(ch) < 0x20 or ord(ch) == 0x7F:
            raise ValueError("--secret-file %s: its first line holds a control character (U+%04X)" % (path, ord(ch)))
    return secret


def wan_mac(root, wan_status):
    """The MAC of the WAN device: `device` of `ubus call network.interface.wan
    status` (bytes), else the interface of the default route, read from
    <root>/sys/class/net/<dev>/address. "" when there is none."""
    d = load_json(wan_status)
    dev = d.get("device") if d else ""
    if not isinstance(dev, str) or not dev:
        r = wan.default_route(fs.read_file(root + "/proc/net/route", 65536))
        dev = r[0] if r else ""
    if not dev or "/" in dev or dev.startswith("."):
        return ""
    line = text.utf8((fs.read_file(root + "/sys/class/net/" + dev + "/address", 64) or b"").split(b"\n")[0])
    mac = line.strip()
    return mac if config.is_mac(mac) and mac != "00:00:00:00:00:00" else ""


def served_config(body, mac):
    """An init server's answer body (bytes) -> (checked config, bytes to
    write). Checked like a config file (PROTOCOL 1); a config without "mac"
    gets the one the device asked with, so it runs as the device the
    server provisioned. ConfigError when it is not a usable config."""
    if not text.valid(body):  # checked on the bytes: MicroPython's decode() takes overlong forms
        raise config.ConfigError("", "not a JSON config (not UTF-8)")
    try:
        obj = strictjson.loads(body.decode("utf-8"))
    except (UnicodeError, ValueError) as e:
        raise config.ConfigError("", "not a JSON config (%s)" % (e,))
    if isinstance(obj, dict):
        for key in ("token", "password"):
            if isinstance(obj.get(key), str):
                log.secret(obj[key])  # even when the rest is refused, it is never logged
        if "mac" not in obj:
            obj["mac"] = mac
            body = json.dumps(obj).encode()
    return config.check(obj), body


# ---- the init server ----------------------------------------------------

class Provisioner:
    """Asks the init server until it serves a good config (PROTOCOL 3),
    as a loop task: tick() waits, finds the device's MAC, model and release
    in the background, then GETs init_url. path: where the config goes;
    secret: the Bearer token ("" for none); base: base_config(); done(cfg)
    is told once the config is written."""

    def __init__(self, path, init_url, secret, base, start_call, done):
        self.path = path
        self.url = init_url
        self.where = init_url.partition("?")[0]
        self.secret = secret
        self.base = base
        self.start_call = start_call
        self.done = done
        self.root = base["sysroot"]
        self.batch = proc.Batch(base["cache_dir"] + "/provision", "provision-" + rt.random_hex(4), IDENTIFY_MS)
        self.state = "wait"      # wait -> identify -> ask -> wait ... (or written)
        self.failures = 0
        self.last_problem = None
        self.cfg = None

    def tick(self):
        """The loop task: ms until it wants to run again."""
        if self.state == "wait":
            try:
                self.batch.start(["ubus -t 5 call system board > board 2>/dev/null",
                                  "ubus -t 5 call network.interface.wan status > wan 2>/dev/null"])
                self.state = "identify"
                return 10
            except OSError as e:  # cache_dir full or read-only: asked without what they say, not in an hour
                log.warn("provisioning: cannot run the commands that identify the device: %s" % e)
                self.state = "identify"
        if self.state == "identify":
            if self.batch.poll() is None and self.batch.running():
                return 10
            self._ask()
            if self.state == "wait":  # no MAC: nothing was asked
                return self.retry_ms
        return 3600000  # the answer wakes the task for the next try

    def _ask(self):
        board = system.board(self.batch.read("board", 65536))
        ident = system.identity(lambda p, n: fs.read_file(self.root + p, n), board)
        self.mac = self.base["mac"] or wan_mac(self.root, self.batch.read("wan", 65536))
        if not self.mac:
            self._retry("no MAC address: mac_file %s cannot be read and no WAN device has one"
                        % self.base["mac_file"], "no mac")
            return
        url = urls.add_query(self.url, [("mac", self.mac), ("machine", ident.get("machine_type", "")),
                                        ("firmware", ident.get("firmware", ""))])
        headers = {"Authorization": "Bearer " + self.secret} if self.secret else None
        self.state = "ask"
        log.debug("provisioning: asking %s as %s" % (self.where, self.mac))
        self.start_call(http.Call("GET", url, headers=headers, max_body=MAX_CONFIG), self._answered)

    def _answered(self, call):
        r = call.response
        if r is not None and r.status_code in (200, 201) and r.body_error is not None:
            # The config is the body: one that did not arrive whole is no config.
            self._retry("%s answered %d but the config did not arrive whole (%s)"
                        % (self.where, r.status_code, r.body_error), "cut")
            return
        if r is not None and r.status_code in (200, 201):
            try:
                cfg, data = served_config(r.content, self.mac)
            except Exception as e:  # ConfigError; also anything a hostile answer may raise: never stop asking
                self._retry("%s answered %d with something that is not a usable config: %s"
                            % (self.where, r.status_code, e), "bad config")
                return
            try:
                d = self.path.rpartition("/")[0]
                if d:
                    fs.makedirs(d)
                fs.write_atomic(self.path, data, sync=True)
            except OSError as e:
                self._retry("cannot write %s: %s" % (self.path, e), "write")
                return
            log.info("provisioning: config from %s written to %s%s" % (
                self.where, self.path, " after %d failed tries" % self.failures if self.failures else ""))
            self.cfg = cfg
            self.done(cfg)
            return
        if r is not None and r.status_code in (401, 403):
            self._retry("%s refuses this device (HTTP %d); asking again in an hour"
                        % (self.where, r.status_code), "refused", REFUSED_MS)
            return
        self._retry("%s: %s" % (self.where, answers.why(call)), "failed")

    def _retry(self, problem, kind, wait_ms=0):
        """Log the problem when it is a new kind of problem, then wait."""
        self.failures += 1
        wait_ms = wait_ms or answers.backoff_ms(self.failures, FIRST_RETRY_MS, MAX_RETRY_MS)
        line = "provisioning: %s; next try in %d s" % (problem, wait_ms // 1000)
        if kind != self.last_problem:
            log.warn(line)
        else:
            log.debug(line)
        self.last_problem = kind
        self.state = "wait"
        self.retry_ms = wait_ms
        self.wake(wait_ms)

    def wake(self, in_ms):
        """Set by run(): run tick() in in_ms."""


def run(path, init_url, secret, base, rounds=0):
    """Provision: ask init_url until it serves a good config, write it to
    path and return it (a checked config dict). rounds: how many times this
    process provisioned before (a 401 from the stats API sends it back
    here): the first round waits a random 0..15 s, later ones back off.
    KeyboardInterrupt (Ctrl-C) ends it; OSError when cache_dir cannot be
    made."""
    loop = Loop()
    calls = InFlight(loop, "http")
    http.set_default_tls(base["cacrt"], base["insecure"])
    dns.setup(base["cache_dir"] + "/dns")
    out = []

    def done(cfg):
        out.append(cfg)
        loop.stop()
    p = Provisioner(path, init_url, secret, base, calls.start, done)
    if rounds:
        first = answers.backoff_ms(rounds, FIRST_RETRY_MS, MAX_RETRY_MS)
    else:
        first = int(random.random() * FIRST_WAIT_MS)
    task = loop.every(3600000, p.tick, first_ms=first, name="provision")
    p.wake = lambda ms: loop.wake(task, ms)
    log.info("provisioning: asking %s for a config in %.1f s" % (p.where, first / 1000))
    loop.run()
    return out[0]


# ---- boot URL and boot command (PROTOCOL 5) --------------------------------

def boot(cfg, start_call):
    """Call boot_url and start boot_cmd, when set. start_call(call, on_done)
    runs an HTTP call. The Batch running boot_cmd, or None."""
    if cfg["boot_url"]:
        url = urls.add_query(cfg["boot_url"], [("access_token", cfg["token"]), ("mac", cfg["mac"])])
        start_call(http.Call("GET", url), _boot_done)
    if not cfg["boot_cmd"]:
        return None
    log.info("boot: running boot_cmd")
    try:
        batch = proc.Batch(cfg["cache_dir"] + "/boot", "boot-" + cfg["mac"].replace(":", ""), 3600000)
        batch.start(["{\n%s\n} > out 2>&1" % cfg["boot_cmd"]])
    except OSError as e:  # cache_dir full or read-only: said, and the agent runs on
        log.error("boot: cannot run boot_cmd: %s" % e)
        return None
    return batch


def _boot_done(call):
    # Whatever the answer, the boot call is not made again (PROTOCOL 5); its
    # body is not needed: the status line says it all.
    if call.response is None:
        log.warn("boot: %s" % call.error)
    else:
        log.info("boot: %s answered %d" % (call.url.partition("?")[0], call.response.status_code))
