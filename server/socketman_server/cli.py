"""Command line: serve, admit, device-config.

    python3 server/main.py serve --db sqlite:///fleet.db --mqtt-host 127.0.0.1 \
        --device-config device.json --init-secret-file secret --listen 127.0.0.1:8080
    python3 server/main.py admit AA:BB:CC:DD:EE:FF --name lobby
    python3 server/main.py device-config AA:BB:CC:DD:EE:FF > config.json
"""
import argparse
import json
import logging
import signal
import sys

from .protocol import BadInput
from .settings import Settings, read_device_config, read_secret

log = logging.getLogger("socketman_server")


def _common(p):
    p.add_argument("--db", default="sqlite:///socketman-server.db",
                   help="database URL: sqlite:///PATH (default: ./socketman-server.db) or "
                        "postgresql://user:password@host:port/dbname")
    p.add_argument("--device-config", metavar="FILE",
                   help="JSON template of the config devices get (mqtt_host, port, username, password, topic, key...)")
    p.add_argument("--public-url", default="", help="how devices reach this server (default http://LISTEN)")
    p.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT for the dashboard and the device API")
    p.add_argument("--job-key-file", metavar="FILE", help="sign every job with the key on its first line (PROTOCOL 9)")
    p.add_argument("--debug", action="store_true")


def parse(argv):
    ap = argparse.ArgumentParser(prog="socketman-server", description="SocketMan reference fleet server")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the device API, the MQTT bridge and the dashboard")
    _common(s)
    s.add_argument("--mqtt-host", default="127.0.0.1")
    s.add_argument("--mqtt-port", type=int, default=1883)
    s.add_argument("--mqtt-username", default="")
    s.add_argument("--mqtt-password-file", metavar="FILE")
    s.add_argument("--mqtt-tls", action="store_true")
    s.add_argument("--mqtt-cafile", default="")
    s.add_argument("--mqtt-shared-group", default="",
                   help="share the event stream with other servers of this group ($share/GROUP/...)")
    s.add_argument("--qos", type=int, default=1)
    s.add_argument("--init-secret-file", metavar="FILE", help="the Bearer secret of /api/init (PROTOCOL 3)")
    s.add_argument("--auto-admit", action="store_true",
                   help="admit any device that calls /api/init with the right secret")
    s.add_argument("--ui-password-file", metavar="FILE", help="HTTP Basic password (user admin) of the dashboard")
    s.add_argument("--max-body", type=int, default=1024 * 1024, help="bytes of a request body")
    s.add_argument("--stale-after", type=int, default=900,
                   help="seconds without news after which an online device shows as silent")
    s.add_argument("--retention-hours", type=float, default=48)
    s.add_argument("--threads", type=int, default=8)
    a = sub.add_parser("admit", help="admit a device by MAC before it first calls")
    _common(a)
    a.add_argument("mac")
    a.add_argument("--name", default="")
    a.add_argument("--config-json", default=None, help="this device's own config keys, a JSON object")
    c = sub.add_parser("device-config", help="print the config a device gets (admits it if needed)")
    _common(c)
    c.add_argument("mac")
    return ap.parse_args(argv)


def settings_from(args):
    host, _, port = args.listen.rpartition(":")
    s = Settings(db_url=args.db, host=host.strip("[]") or "127.0.0.1", port=int(port), public_url=args.public_url)
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
        if args.init_secret_file:
            s.init_secret = read_secret(args.init_secret_file)
        if args.ui_password_file:
            s.ui_password = read_secret(args.ui_password_file)
        s.auto_admit, s.max_body, s.stale_after = args.auto_admit, args.max_body, args.stale_after
        s.retention_s, s.threads = int(args.retention_hours * 3600), args.threads
    return s.check()


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)
    from .app import setup_logging
    setup_logging(args.debug)
    try:
        settings = settings_from(args)
    except (OSError, ValueError, BadInput) as e:
        print("socketman-server: %s" % e, file=sys.stderr)
        return 2
    from .db import Store
    store = Store(settings.db_url, settings.retention_s)
    try:
        if args.cmd == "admit":
            dev = store.admit(args.mac, args.name, args.config_json)
            print("admitted %s" % dev["mac"])
            return 0
        if args.cmd == "device-config":
            from .api import device_config
            dev = store.admit(args.mac)
            print(json.dumps(device_config(settings, dev, args.mac), indent=2))
            return 0
        return serve(settings, store)
    except BadInput as e:
        print("socketman-server: %s" % e, file=sys.stderr)
        return 2
    finally:
        store.close()


def serve(settings, store):
    import waitress

    from .app import create_app
    from .bridge import Bridge

    bridge = Bridge(settings, store)
    app = create_app(settings, store, bridge)
    server = waitress.create_server(app, host=settings.host, port=settings.port, threads=settings.threads,
                                    max_request_body_size=settings.max_body + 65536, ident="socketman-server")

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    bridge.start()
    print("socketman-server: dashboard on http://%s:%d/  device API on %s/api" %
          (settings.host, settings.port, settings.base_url()), flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        bridge.stop()
    return 0
