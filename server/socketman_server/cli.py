"""Command line: serve, admit, device-config, the operators' commands of
cli_accounts.py (operator, token, audit, whoami) and the tunnels of
cli_tunnel.py (ssh, forward).

    python3 server/main.py serve --db sqlite:///fleet.db --mqtt-host 127.0.0.1 \
        --device-config device.json --init-secret-file secret --listen 127.0.0.1:8080
    python3 server/main.py operator add alice --role admin
    python3 server/main.py admit AA:BB:CC:DD:EE:FF --name lobby
    python3 server/main.py device-config AA:BB:CC:DD:EE:FF > config.json
"""
import argparse
import ipaddress
import json
import logging
import sys

from . import cli_accounts, cli_releases, cli_tunnel
from .protocol import BadInput
from .settings import Settings, read_device_config, read_secret

log = logging.getLogger("socketman_server")
UI_PASSWORD_GONE = ("--ui-password-file is gone: the dashboard has operator accounts now; add one with "
                    "`socketman-server operator add NAME --role admin` (same --db as serve)")


def common(p):
    p.add_argument("--db", default="sqlite:///socketman-server.db",
                   help="database URL: sqlite:///PATH (default: ./socketman-server.db) or "
                        "postgresql://user:password@host:port/dbname")
    p.add_argument("--debug", action="store_true")


def _device_args(p):
    p.add_argument("--device-config", metavar="FILE",
                   help="JSON template of the config devices get (mqtt_host, port, username, password, topic, key...)")
    p.add_argument("--public-url", default="", help="how devices reach this server (default http://LISTEN)")
    p.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT for the dashboard and the device API")
    p.add_argument("--job-key-file", metavar="FILE", help="sign every job with the key on its first line (PROTOCOL 9)")


def parse(argv):
    ap = argparse.ArgumentParser(prog="socketman-server", description="SocketMan reference fleet server")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the device API, the MQTT bridge and the dashboard")
    common(s)
    _device_args(s)
    s.add_argument("--mqtt-host", default="127.0.0.1")
    s.add_argument("--mqtt-port", type=int, default=1883)
    s.add_argument("--mqtt-username", default="")
    s.add_argument("--mqtt-password-file", metavar="FILE")
    s.add_argument("--mqtt-tls", action="store_true")
    s.add_argument("--mqtt-cafile", default="")
    s.add_argument("--mqtt-shared-group", default="",
                   help="share the event stream with other servers of this group ($share/GROUP/...)")
    s.add_argument("--mqtt-retained-per-device", action="store_true",
                   help="also subscribe to each device's own status topic: for a broker that gives retained "
                        "messages only to subscriptions without wildcards (RabbitMQ)")
    s.add_argument("--qos", type=int, default=1)
    s.add_argument("--init-secret-file", metavar="FILE", help="the Bearer secret of /api/init (PROTOCOL 3)")
    s.add_argument("--auto-admit", action="store_true",
                   help="admit any device that calls /api/init with the right secret")
    s.add_argument("--ui-password-file", help=argparse.SUPPRESS)  # gone: says so (exit 2)
    s.add_argument("--max-body", type=int, default=1024 * 1024, help="bytes of a request body")
    s.add_argument("--stale-after", type=int, default=900,
                   help="seconds without news after which an online device shows as silent")
    s.add_argument("--retention-hours", type=float, default=48)
    s.add_argument("--session-hours", type=float, default=12, help="a dashboard login lasts at most this long")
    s.add_argument("--session-idle-minutes", type=float, default=60,
                   help="a dashboard login ends after this long without a request")
    s.add_argument("--audit-retention-days", type=float, default=365, help="how long the audit log is kept")
    s.add_argument("--behind-proxy", type=int, default=0, metavar="N",
                   help="N reverse proxies in front set X-Forwarded-For/-Proto/-Host (default 0: not believed)")
    s.add_argument("--threads", type=int, default=8, help="threads for the HTTP requests of devices and the dashboard")
    s.add_argument("--tunnel-wait", type=int, default=60, metavar="SECONDS",
                   help="a device must connect its tunnel within this long (default 60)")
    s.add_argument("--tunnel-url", default="", metavar="URL",
                   help="ws:// or wss:// base of this process's /tunnel/ for devices (default: --public-url)")
    cli_releases.data_args(s)
    a = sub.add_parser("admit", help="admit a device by MAC before it first calls")
    common(a)
    _device_args(a)
    a.add_argument("mac")
    a.add_argument("--name", default="")
    a.add_argument("--config-json", default=None, help="this device's own config keys, a JSON object")
    c = sub.add_parser("device-config", help="print the config a device gets (admits it if needed)")
    common(c)
    _device_args(c)
    c.add_argument("mac")
    cli_accounts.add_parsers(sub, common)
    cli_releases.add_parsers(sub, common)
    cli_tunnel.add_parsers(sub)
    return ap.parse_args(argv)


def settings_from(args):
    if getattr(args, "ui_password_file", None):
        raise BadInput(UI_PASSWORD_GONE)
    s = Settings(db_url=args.db)
    if getattr(args, "data_dir", None):
        s.data_dir = args.data_dir
    if getattr(args, "release_max_bytes", None):
        s.release_max_bytes = args.release_max_bytes
    if hasattr(args, "listen"):
        host, _, port = args.listen.rpartition(":")
        # int() alone took "99999" (bind then raised OverflowError) and
        # named nothing for "nonsense"
        if not (port.isdigit() and port.isascii() and 1 <= int(port) <= 65535):
            raise BadInput("--listen wants HOST:PORT with a port 1 to 65535, e.g. 127.0.0.1:8080, not %r"
                           % args.listen)
        s.host, s.port, s.public_url = host.strip("[]") or "127.0.0.1", int(port), args.public_url
        if args.device_config:
            s.device_config = read_device_config(args.device_config)
        if args.job_key_file:
            s.job_key = read_secret(args.job_key_file)
    if args.cmd == "serve":
        s.mqtt_host, s.mqtt_port, s.mqtt_username = args.mqtt_host, args.mqtt_port, args.mqtt_username
        if args.mqtt_password_file:
            s.mqtt_password = read_secret(args.mqtt_password_file)
        s.mqtt_tls, s.mqtt_cafile, s.mqtt_shared_group, s.qos = (args.mqtt_tls, args.mqtt_cafile,
                                                                  args.mqtt_shared_group, args.qos)
        s.mqtt_retained_per_device = args.mqtt_retained_per_device
        if args.init_secret_file:
            s.init_secret = read_secret(args.init_secret_file)
        s.auto_admit, s.max_body, s.stale_after = args.auto_admit, args.max_body, args.stale_after
        s.retention_s, s.threads = int(args.retention_hours * 3600), args.threads
        s.session_s, s.session_idle_s = int(args.session_hours * 3600), int(args.session_idle_minutes * 60)
        s.audit_retention_s, s.behind_proxy = int(args.audit_retention_days * 86400), args.behind_proxy
        s.tunnel_wait, s.tunnel_url = args.tunnel_wait, args.tunnel_url
    if args.cmd == "release" and args.action == "add" and s.data_folder() is None:
        raise BadInput("release add: where should the archive be kept? give --data-dir DIR (a PostgreSQL database "
                       "has no folder of its own; use the same DIR as `serve`)")
    return s.check()


def is_loopback(host):
    """True for 127.0.0.0/8, ::1 and "localhost": only this machine reaches it."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)
    from .app import setup_logging
    setup_logging(getattr(args, "debug", False))
    if args.cmd == "whoami":
        return cli_accounts.whoami(args)
    if args.cmd in ("ssh", "forward"):
        return cli_tunnel.run(args)
    try:
        settings = settings_from(args)
    except (OSError, ValueError, BadInput) as e:
        print("socketman-server: %s" % e, file=sys.stderr)
        return 2
    store = open_store(settings, args.cmd)
    if isinstance(store, int):
        return store
    try:
        if args.cmd == "serve":
            if not is_loopback(settings.host) and not store.has_operators():
                # Safe by default: a dashboard that reaches every router as
                # root is not put on the network before someone can log in.
                print("socketman-server: no operator exists and --listen %s is not loopback: add one first with "
                      "`socketman-server operator add NAME --role admin` (same --db)" % settings.host,
                      file=sys.stderr)
                return 2
            return serve(settings, store)
        if args.cmd == "admit":
            return _admit(store, args)
        if args.cmd == "device-config":
            from .api import device_config
            was = store.device(args.mac)
            dev = store.admit(args.mac)
            record = cli_accounts.recorder(store)
            if was is None or not was["token"]:
                record("device.admit", dev["mac"], "ok", "admitted to print its config")
            record("device.config-file", dev["mac"], "ok", "its config (with its token and secrets) was printed")
            print(json.dumps(device_config(settings, dev, args.mac), indent=2))
            return 0
        if args.cmd in cli_releases.COMMANDS:
            return cli_releases.run(store, settings, args)
        return cli_accounts.run(store, args)
    except BadInput as e:
        print("socketman-server: %s" % e, file=sys.stderr)
        return 2
    finally:
        store.close()


def open_store(settings, cmd):
    """The Store of --db, or the exit status after one line on stderr: 2 for
    a URL that names no database SQLAlchemy knows, 1 for a database that
    cannot be opened or reached (the password in the URL is not shown)."""
    import sqlalchemy as sa

    from .db import Store
    try:
        shown = sa.engine.make_url(settings.db_url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:  # shown as given unless it may hold a password
        shown = settings.db_url if "@" not in settings.db_url else "(a URL that cannot be parsed)"
    try:
        # A connection for each HTTP thread, the MQTT writer, the schedulers.
        return Store(settings.db_url, settings.retention_s, settings.audit_retention_s,
                     pool_size=settings.threads + 4 if cmd == "serve" else 2)
    except sa.exc.ArgumentError as e:  # also NoSuchModuleError: an unknown scheme
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        print("socketman-server: --db %s is not a database URL (sqlite:///PATH or "
              "postgresql://user:password@host:port/dbname): %s" % (shown, why), file=sys.stderr)
        return 2
    except (sa.exc.DBAPIError, OSError) as e:
        why = str(getattr(e, "orig", None) or e).strip().splitlines()
        print("socketman-server: cannot open the database %s: %s" % (shown, why[0] if why else type(e).__name__),
              file=sys.stderr)
        return 1


def _admit(store, args):
    from .ui import audit_admission
    was = store.device(args.mac)
    dev = store.admit(args.mac, args.name, args.config_json)
    audit_admission(cli_accounts.recorder(store), was, dev, args.name, args.config_json)
    print("admitted %s" % dev["mac"])
    return 0


def serve(settings, store):
    """The device API, the dashboard and the tunnels on one port (asgi.py:
    uvicorn), with the MQTT bridge, until SIGTERM or Ctrl-C."""
    from .app import create_app
    from .asgi import bind, run
    from .bridge import Bridge
    from .housekeeping import Pruner
    from .rollouts import Engine, Scheduler

    try:
        sock = bind(settings)
    except OSError as e:
        print("socketman-server: cannot listen on %s:%d: %s" % (settings.host, settings.port, e.strerror or e),
              file=sys.stderr)
        return 1
    store.prune_accounts()
    bridge = Bridge(settings, store)
    app = create_app(settings, store, bridge)
    scheduler = Scheduler(Engine(store, bridge, settings.base_url()))
    pruner = Pruner(store, settings.retention_s)
    bridge.start()
    scheduler.start()
    pruner.start()
    print("socketman-server: dashboard on http://%s:%d/  device API on %s/api  tunnels on %s/tunnel" %
          (settings.host, settings.port, settings.base_url(), settings.tunnel_base()), flush=True)
    if not store.has_operators():
        print("socketman-server: no operator exists yet: add one with "
              "`socketman-server operator add NAME --role admin` (same --db)", flush=True)
    try:
        return run(settings, store, bridge, app, sock)
    finally:
        pruner.stop()
        scheduler.stop()
        bridge.stop()
        sock.close()
