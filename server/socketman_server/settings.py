"""What the server is told at start (command line, files). One object,
read-only after start."""
import dataclasses
import json
import os

from .protocol import BadInput, check_topic_part


@dataclasses.dataclass
class Settings:
    """Server settings. Sizes in bytes, times in seconds.

    device_config: the config template every provisioned device gets
    (PROTOCOL 1 keys: mqtt_host, port, username, password, topic, key, ...);
    the server adds mac, token, api_url, stats_url, boot_url and job_key.
    """
    db_url: str = "sqlite:///socketman-server.db"
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""              # how devices reach this server; default http://host:port
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_username: str = ""
    mqtt_password: str = ""
    mqtt_tls: bool = False
    mqtt_cafile: str = ""
    mqtt_shared_group: str = ""       # several servers share the event stream ($share/<group>/...)
    mqtt_retained_per_device: bool = False  # also status/<base> of each device (RabbitMQ: retained, no wildcards)
    qos: int = 1
    device_config: dict = dataclasses.field(default_factory=dict)
    init_secret: str = ""             # Bearer secret of the init URL (PROTOCOL 3); empty: nobody is let in
    auto_admit: bool = False          # a device with the right secret is admitted on its first call
    job_key: str = ""                 # signs every job (PROTOCOL 9); also handed out to devices
    max_body: int = 1024 * 1024       # a request body, as sent
    max_unpacked: int = 8 * 1024 * 1024  # a gzip stats archive once unpacked
    stale_after: int = 900            # "online" but not heard of for this long: shown as silent
    retention_s: int = 48 * 3600      # chart samples and events are kept this long
    threads: int = 8
    # Operators (issue 26, auth.py): a login lasts session_s at most, and
    # ends after session_idle_s without a request; audit records are kept
    # audit_retention_s. behind_proxy: how many reverse proxies in front of
    # the server set X-Forwarded-For/-Proto/-Host (0: none, the headers are
    # not believed).
    session_s: int = 12 * 3600
    session_idle_s: int = 3600
    audit_retention_s: int = 365 * 86400
    behind_proxy: int = 0
    # Releases (issue 23): archives are kept in <data_dir>/releases (default:
    # the SQLite file's folder; none for PostgreSQL: releases then need
    # --data-dir); release_max_bytes: the largest archive taken.
    data_dir: str = ""
    release_max_bytes: int = 1024 * 1024

    def data_folder(self):
        """The folder of the server's files (release archives): data_dir, or
        the SQLite database file's folder, or None (PostgreSQL or an
        in-memory database without data_dir)."""
        if self.data_dir:
            return os.path.abspath(self.data_dir)
        if self.db_url.startswith("sqlite:///"):
            path = self.db_url[len("sqlite:///"):].split("?", 1)[0]
            if path and path != ":memory:":
                return os.path.dirname(os.path.abspath(path))
        return None
    # Tunnels (issue 22, PROTOCOL 11): the device must connect within
    # tunnel_wait seconds; tunnel_url is the ws:// or wss:// base its
    # tunnel jobs name (default: public_url with ws/wss).
    tunnel_wait: int = 60
    tunnel_url: str = ""

    def base_url(self):
        return (self.public_url or "http://%s:%d" % (self.host, self.port)).rstrip("/")

    def tunnel_base(self):
        """The ws:// or wss:// URL the device's tunnel URLs start with (no
        trailing slash): tunnel_url, else the public URL with http -> ws."""
        url = (self.tunnel_url or self.base_url()).rstrip("/")
        for web, ws in (("http://", "ws://"), ("https://", "wss://")):
            if url.startswith(web):
                return ws + url[len(web):]
        return url

    def check(self):
        """BadInput naming the setting that cannot work."""
        for k in ("topic", "key"):
            if k in self.device_config:
                check_topic_part("device config " + k, self.device_config[k])
        if self.mqtt_shared_group:
            check_topic_part("mqtt shared group", self.mqtt_shared_group)
        if self.qos not in (0, 1, 2):
            raise BadInput("qos must be 0, 1 or 2")
        if self.session_s < 60 or not 10 <= self.session_idle_s <= self.session_s:
            raise BadInput("a session lasts at least a minute, and its idle time is at least 10 s and at most that")
        if self.audit_retention_s < 86400:
            raise BadInput("the audit log is kept at least a day")
        if not 64 * 1024 <= self.release_max_bytes <= 256 * 1024 * 1024:
            raise BadInput("--release-max-bytes: 64 KiB to 256 MiB")
        if not 0 <= self.behind_proxy <= 5:
            raise BadInput("--behind-proxy is a number of proxies, 0 to 5")
        if not 1 <= self.tunnel_wait <= 600:
            raise BadInput("--tunnel-wait is 1 to 600 seconds")
        if not self.tunnel_base().startswith(("ws://", "wss://")) or "?" in self.tunnel_base():
            raise BadInput("--tunnel-url must be a ws://, wss://, http:// or https:// URL without a query")
        return self


def read_secret(path):
    """The first line of a file, stripped (PROTOCOL 3's secret file shape)."""
    with open(path, encoding="utf-8") as f:
        return f.readline().strip()


def read_device_config(path):
    """The fleet's device config template (--device-config): a JSON object.
    BadInput naming the file when it cannot be read or is not one."""
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
    except OSError as e:
        raise BadInput("--device-config %s: %s" % (path, e.strerror or e))
    except ValueError as e:  # also UnicodeDecodeError
        raise BadInput("--device-config %s: not JSON (%s)" % (path, e))
    if not isinstance(cfg, dict):
        raise BadInput("%s: the device config template is not a JSON object" % path)
    return cfg
