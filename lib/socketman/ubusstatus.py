# The agent's own ubus object (PROTOCOL 12): `ubus call socketman status`
# answers at once with what the agent already knows, so a LuCI page or a
# script can ask it how it is, as every OpenWRT daemon answers for itself.
# Nothing here waits on the network; the wiring hands each fact over as a
# function, so a part added later (tunnels) plugs its own in.
from . import VERSION, rt

NAME = "socketman"


def _zero():
    return 0


def _no():
    return False


class Status:
    """The facts `status` answers with. Each is a function the wiring sets;
    until it does, the fact reads as nothing (0, False):
      mqtt()         True while the MQTT session is up (subscribed, announced)
      spool_bytes()  bytes of documents waiting in the spool
      jobs_queued()  jobs waiting behind the one that runs
      tunnels()      tunnels open now (PROTOCOL 11)
      last_upload()  Unix time of the last stats upload the server took, or 0
    checked(status) is given every monitor cycle's status (7.1)."""

    def __init__(self, mac):
        self.mac = mac
        self.started = rt.now()
        self.mqtt = _no
        self.spool_bytes = _zero
        self.jobs_queued = _zero
        self.tunnels = _zero
        self.last_upload = _zero
        self.last_status = None  # None (JSON null) until the first check

    def checked(self, status):
        """The status (int, PROTOCOL 7.1) of the monitor cycle that just ran."""
        self.last_status = status

    def status(self, args):
        """The method `status` (PROTOCOL 12), whatever its arguments: (0,
        {"version", "mac", "mqtt": "connected"|"disconnected", "status",
        "spool_bytes", "jobs_queued", "tunnels", "last_upload", "uptime"
        (seconds the agent has run)})."""
        return 0, {
            "version": VERSION,
            "mac": self.mac,
            "mqtt": "connected" if self.mqtt() else "disconnected",
            "status": self.last_status,
            "spool_bytes": self.spool_bytes(),
            "jobs_queued": self.jobs_queued(),
            "tunnels": self.tunnels(),
            "last_upload": self.last_upload(),
            "uptime": max(0, rt.now() - self.started),
        }

    def methods(self):
        """{method name: handler} for ubus.Client.add_object."""
        return {"status": self.status}
