# Entry point and wiring: options and config, then the parts, each handed
# the callbacks it needs, and the loop. Nothing here decides anything.
# The MQTT session and the job flow come first; the monitor cycle (status,
# recovery, stats, config watch) is imported and started once the session
# is online, so start-up work does not delay the first CONNECT. With -b, a
# config that is missing, empty or has no token comes from the init server
# first (provision.py), in the same process.
import random
import sys

from . import VERSION, dns, fs, http, log, proc, rt
from .inflight import InFlight
from .jobs.dispatch import Dispatcher
from .loop import Loop
from .ping import Pinger
from .session import Session

INIT_WAIT_MS = 1000
STOP_TUNNELS_MS = 2000


def _fail(msg):
    sys.stderr.write("socketman: %s\n" % msg)
    return 2


def _nowhere(kind, payload, qos, retain=False, keep=True):
    """publish() when there is no MQTT broker configured."""


class Agent:
    """The running agent: the loop and the parts wired into it (PROTOCOL 2).
    cfg is the checked config (config.check), opts the command line (cli.parse)."""
    def __init__(self, cfg, opts):
        self.cfg = cfg
        self.opts = opts
        self.loop = Loop()
        self.session = None
        self.jobs = None
        self.stats = None
        self.bus = None       # ubus.Client when ubus_socket is set (PROTOCOL 12)
        self.facts = None     # ubusstatus.Status: what `ubus call socketman status` answers
        self.reprovision = False  # a 401 from the stats API asked for a new config (with -b)
        self.restart = False      # stopped for main.py to run another version (PROTOCOL 10)
        self.then = None          # f() run at the end of that stop
        self.bell = None
        self.trial = None         # jobs.trial.Trial where an update left a state
        self.interrupted = False  # stopped by Ctrl-C or SIGTERM (set here: no allocation later)

    def start(self):
        """Build the parts and their loop tasks; OSError when cache_dir cannot be made."""
        cfg, loop = self.cfg, self.loop
        fs.makedirs(cfg["cache_dir"])
        log.info("socketman %s starting (mac %s)" % (VERSION, cfg["mac"]))
        if cfg["unknown_keys"]:
            import json  # the names as JSON strings: a key holding a newline cannot forge a log line
            keys = cfg["unknown_keys"]
            log.warn("config: unknown keys ignored (misspelt?): %s%s" % (
                json.dumps([k[:40] for k in keys[:10]]), " and %d more" % (len(keys) - 10) if len(keys) > 10 else ""))
        used = rt.heap_used()
        if used is not None:  # after an update, what the version before left (bench/update_bench.py)
            log.debug("heap: %d bytes in use at start" % used)
        http.set_default_tls(cfg["cacrt"], cfg["insecure"])
        dns.setup(cfg["cache_dir"] + "/dns")
        # Background commands ring this bell when they end, and the OpenWRT
        # launcher writes "q" to it to stop us: see proc.Bell. Opened after
        # the first CONNECT (making the FIFO forks a shell), or now when the
        # FIFO is there (a version before ran in this process: a "q" sent
        # while no one has it open is lost).
        self.bell = proc.Bell(proc.getenv("SOCKETMAN_CONTROL") or cfg["cache_dir"] + "/bell", loop.wake,
                              self._asked_to_stop)
        st = fs.stat(self.bell.path)
        if st is not None and not st[2] and not st[4] and self.bell.open():
            loop.add_source(self.bell)
        self.calls = InFlight(loop, "http")
        self.bell.waiting.append(self.calls.task)  # a name lookup's end
        publish = _nowhere
        if cfg["mqtt_host"]:
            ctx = None
            if cfg["tls"]:
                from . import tls  # only a TLS broker loads it (or https, or client_cert)
                ctx = tls.context(cfg["cacrt"], cfg["insecure"])
            self.session = Session(cfg, ctx)
            loop.add_source(self.session)
            mqtt_task = loop.every(1000, self.session.tick, name="mqtt")
            self.bell.waiting.append(mqtt_task)  # a name lookup's end
            self.session.wake = lambda in_ms: loop.wake(mqtt_task, in_ms)
            self.session.on_online = lambda: loop.wake(self.init_task)
            publish = self.session.publish
        self.jobs = Dispatcher(cfg, publish, self.calls.start, self._wake_jobs)
        self.jobs.loop = loop  # tunnels run in it (PROTOCOL 11); a name lookup's end wakes them
        self.jobs.on_tunnels = lambda tunnels: self.bell.waiting.append(tunnels.task)
        self.jobs_task = loop.every(1000, self.jobs.tick, name="jobs")
        self.bell.waiting.append(self.jobs_task)
        if self.session is not None:
            self.session.on_message = self.jobs.on_message
        report = loop.every(30000, self.jobs.reporter.tick, name="report")
        self.jobs.reporter.wake = lambda in_ms: loop.wake(report, in_ms)
        self.jobs.on_switch = self._switch
        if fs.stat(cfg["update_dir"] + "/state.json"):
            from .jobs.trial import Trial  # only where an update left a state (PROTOCOL 10)
            self.trial = self.jobs.trial = Trial(cfg, self.jobs.reporter, self._connected,
                                                 lambda: self.session is None or self.session.online,
                                                 self._switch)
            loop.every(250, self.trial.tick, name="update")
        self.jobs.recover()
        if not cfg["no-ping"]:
            period = cfg["ping-interval"] * 1000
            pinger = Pinger(cfg, self.session and publish, self.calls.start)
            # At a random phase: a fleet that powers up together spreads its pings.
            loop.every(period, pinger.tick, first_ms=1 + int(random.random() * period), name="ping")
        if cfg["ubus_socket"]:
            self._start_bus()
        self.init_task = loop.every(INIT_WAIT_MS, self._start_cycle, first_ms=INIT_WAIT_MS, name="init")

    def _start_bus(self):
        """ubus (PROTOCOL 12): the client, and the object `socketman`."""
        from .ubus import Client
        from .ubusstatus import NAME, Status
        loop = self.loop
        self.bus = Client(self.cfg["ubus_socket"])
        loop.add_source(self.bus)
        task = loop.every(1000, self.bus.tick, name="ubus")
        self.bus.wake = lambda in_ms: loop.wake(task, in_ms)
        self.facts = Status(self.cfg["mac"])
        self.facts.mqtt = lambda: self.session is not None and self.session.online
        self.facts.jobs_queued = lambda: len(self.jobs.queue)
        self.facts.tunnels = self.jobs.tunnels_open
        self.facts.update = self._update_state
        self.bus.add_object(NAME, self.facts.methods())

    def _update_state(self):
        """What `status` says of updates (PROTOCOL 10, 12)."""
        if self.trial is not None and self.trial.on_trial():
            return "on trial"
        return "under way" if self.jobs.update is not None else ""

    def _wake_jobs(self):
        self.loop.wake(self.jobs_task)

    def _start_cycle(self):
        """Once the session is online (or after a second, whichever comes
        first: the session wakes this task): the monitor cycle with
        recovery, the config watch and stats, then the boot URL and command."""
        self.loop.cancel(self.init_task)
        if self.session is not None:
            self.session.on_online = None  # once: the task is gone
        from .cycle import Cycle
        from .monitor import Monitor
        from .recovery import Recoverer
        from .stats.pipeline import Stats
        from .watch import Watch
        cfg, loop = self.cfg, self.loop
        if self.bell.f is not None:
            pass
        elif self.bell.open():
            loop.add_source(self.bell)
        else:
            log.warn("cannot make the FIFO %s: background commands are polled" % self.bell.path)
        publish = self.session.publish if self.session is not None else _nowhere
        monitor = Monitor(cfg, loop)
        self.bell.waiting.append(monitor.task)  # a name lookup's end
        self.jobs.start_check = monitor.check
        recoverer = Recoverer(cfg, loop, self.jobs.network_job)
        watch = Watch(cfg["config_dir"], publish)
        start_call = self.calls.start
        if self.trial is not None and self.session is None:
            start_call = self.trial.watch(start_call)  # a 2xx upload is the trial's proof without MQTT
        self.stats = Stats(cfg, loop, start_call, self._unauthorized if self.opts["init_url"] else None,
                           self.bus)
        checked = [self.stats.status_known, recoverer.status]
        if self.facts is not None:
            self.facts.spool_bytes = self.stats.spool_bytes
            self.facts.last_upload = self.stats.last_upload
            checked.append(self.facts.checked)
        self.bell.waiting.extend(t for t in (self.stats.collect_task, self.stats.upload_task,
                                             self.stats.survey_task, recoverer.task) if t)
        Cycle(loop, cfg["monitor"], [self.stats.collect, watch.check], monitor.check, checked)
        self.boot = None
        if cfg["boot_url"] or cfg["boot_cmd"]:
            from .provision import boot  # not loaded by an agent that has neither
            self.boot = boot(cfg, self.calls.start)

    def _connected(self):
        return self.session is not None and self.session.client.connected()

    def _switch(self, then=None):
        """Stop cleanly for main.py to run another version: a new one on
        trial, or the one before after a rollback (PROTOCOL 10); then() at
        the end of the clean stop, once our sockets are closed."""
        self.restart = True
        self.then = then
        self.loop.stop()

    def _asked_to_stop(self):
        log.info("stop asked through %s" % self.bell.path)
        self.interrupted = True  # a clean stop, not a call for provisioning
        self.loop.stop()

    def _unauthorized(self):
        """The stats API answered 401 and -b was given: stop, and provision
        again (PROTOCOL 3); the documents stay in the spool."""
        log.warn("stats: the API answered 401 unauthorized: asking the init server for a new config")
        self.reprovision = True
        self.loop.stop()

    def stop(self):
        """The clean stop (PROTOCOL 2): tunnels closed (2 s at most), wait up
        to 3 s for an upload's answer, then retained online "0" and DISCONNECT."""
        self.loop.stop()
        tunnels = self.jobs.tunnels if self.jobs is not None else None
        if tunnels is not None:  # close frames out, results reported (PROTOCOL 11)
            tunnels.stop()
            self.loop.drain(tunnels.busy, STOP_TUNNELS_MS)
            tunnels.kill()
        if self.stats is not None and self.stats.uploading():
            # The server may have taken the batch: wait for its answer, or
            # the next start sends those lines again.
            self.loop.drain(self.stats.uploading, 3000)
        if self.session is not None:
            self.session.stop()
        if self.bell is not None:
            self.bell.close()  # the next version in this process opens it again
        if self.bus is not None:
            self.bus.close()  # ubusd removes our object with the connection
        if self.then is not None:
            self.then()  # the update's watchdog: started now, it inherits no socket of ours
            self.then = None
        log.info("socketman stopped")


def _unload(*names):
    """Forget modules only the start needed (the command line, the config
    checks, provisioning): on MicroPython a module's code lives in the heap, and these hold some 15 KiB of it. They
    are imported again if a new round of provisioning needs them."""
    import socketman
    for name in names:
        sys.modules.pop("socketman." + name, None)
        try:
            delattr(socketman, name)
        except (AttributeError, KeyError):  # MicroPython says KeyError
            pass
    import gc
    gc.collect()


def _cache_dir_problem(path):
    """Why cache_dir cannot hold the agent's files (jobs, spool, state), or
    None: said at start with the key's name, not as a bare errno later."""
    probe = path + "/.socketman-probe"
    try:
        fs.makedirs(path)
        fs.write_atomic(probe, b"")
        fs.remove(probe)
    except OSError as e:
        return "cannot create or write in it (%s)" % (e,)
    return None


def _startup_config(opts):
    """The config to start with, or None when it must come from the init
    server first (-b, and the file is missing, empty or has no token).
    ConfigError for a bad config."""
    from . import config
    path = opts["config"]
    if not opts["init_url"]:
        return config.load(path)
    data = fs.read_file(path)
    if data is None or not data.strip() or not config.parse(data, need_mac=False)["token"]:
        return None
    return config.parse(data)


def _run(agent):
    """Run the agent until Ctrl-C, SIGTERM or a call for provisioning, then
    stop it cleanly: the exit status (agent.interrupted tells Ctrl-C)."""
    status = 0
    try:
        agent.start()
        agent.loop.run()
    except KeyboardInterrupt:
        agent.interrupted = True
    except OSError as e:
        _fail("cannot run: %s" % e)
        status = 2
    # MicroPython can deliver one Ctrl-C twice, or raise it inside a garbage
    # collection (which leaves the heap locked): the clean stop is tried
    # again rather than dying with a traceback half-way, and nothing after
    # it allocates before the heap is unlocked once more.
    for _ in range(3):
        try:
            rt.after_interrupt()
            agent.stop()
            break
        except KeyboardInterrupt:
            agent.interrupted = True
    rt.after_interrupt()
    return status


def _provision(opts, secret, base, rounds):
    """A config from the init server (PROTOCOL 3): (config, None); (None,
    None) after Ctrl-C; (None, why) when it cannot be done."""
    from . import provision  # only a device being provisioned loads it
    from .config import ConfigError
    try:
        if base is None:
            base = provision.base_config(opts["config"])
        return provision.run(opts["config"], opts["init_url"], secret, base, rounds), None
    except KeyboardInterrupt:
        rt.after_interrupt()
        log.info("socketman stopped while provisioning")
        return None, None
    except (OSError, ConfigError) as e:
        return None, str(e)


def main(argv):
    """argv without the program name -> exit status: 0 after a clean stop, 2 for
    a bad command line or config (one line naming the problem on stderr);
    "restart" after a clean stop for main.py to run another version of the
    agent (PROTOCOL 10)."""
    from . import cli
    try:
        opts = cli.parse(argv)
    except cli.UsageError as e:
        _fail(str(e))
        sys.stderr.write(cli.USAGE)
        return 2
    if opts["help"]:
        sys.stdout.write(cli.USAGE)
        return 0
    if opts["version"]:
        print("socketman " + VERSION)
        return 0
    del cli
    from .config import ConfigError
    try:
        cfg = _startup_config(opts)
    except ConfigError as e:
        return _fail("%s: %s" % (opts["config"], e))
    del ConfigError
    secret = ""
    if opts["secret_file"]:
        from .provision import read_secret
        try:
            secret = read_secret(opts["secret_file"])
        except ValueError as e:
            if cfg is None:  # it is needed now
                return _fail(str(e))
            # A provisioned device keeps running; only a new provisioning
            # (after a 401) would need the secret.
            log.setup(verbose=opts["debug"])
            log.error("%s; the init server will be asked without it" % e)
    log.secret(secret)
    rt.on_sigterm()
    rt.seed_random()
    base = None   # what a new round of provisioning starts from (None: the config file)
    rounds = 0
    while True:
        if cfg is None:
            log.setup(verbose=opts["debug"])
            cfg, why = _provision(opts, secret, base, rounds)
            if why is not None:
                return _fail("cannot provision: %s" % why)
            if cfg is None:
                return 0
            rounds += 1
        log.setup(verbose=opts["debug"] or bool(cfg["debug"]))
        log.secret(cfg["password"])
        log.secret(cfg["token"])
        log.secret(cfg["job_key"])
        if cfg["client_cert"]:
            # The device's certificate, read once now (PROTOCOL 9); a key
            # this runtime cannot load is logged and the agent runs without.
            from .tls import use
            try:
                refused = use(cfg["client_cert"], cfg["client_key"])
            except ValueError as e:
                return _fail("%s: %s" % (opts["config"], e))
            if refused:
                log.error(refused)
            else:
                log.info("tls: client certificate %s" % cfg["client_cert"])
        why = _cache_dir_problem(cfg["cache_dir"])
        if why:
            return _fail("cache_dir %s: %s" % (cfg["cache_dir"], why))
        _unload("cli", "config", "provision")  # not tls: it keeps the device certificate
        agent = Agent(cfg, opts)
        status = _run(agent)
        if agent.restart and not agent.interrupted and not status:
            from .slots import RESTART, hook
            hook("switch")
            return RESTART  # main.py runs the version the update state names now
        if agent.interrupted or status or not agent.reprovision:
            return status
        base, cfg = cfg, None
