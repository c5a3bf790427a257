"""Every table of the server's database (SQLAlchemy Core), in one MetaData
that Alembic's migrations (migrations/) must match. Times are Unix seconds
(BigInteger); MACs are AA:BB:CC:DD:EE:FF."""
import sqlalchemy as sa

metadata = sa.MetaData()

devices = sa.Table(
    "devices", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("mac", sa.String(17), nullable=False, unique=True),   # AA:BB:CC:DD:EE:FF
    sa.Column("mac_written", sa.String(17)),                        # as the device writes it
    sa.Column("name", sa.String(200), nullable=False, server_default=""),
    sa.Column("token", sa.String(64), unique=True),                 # null: not admitted
    sa.Column("base", sa.String(400)),                              # <topic>/<key>/<mac> seen on MQTT
    sa.Column("admitted_at", sa.BigInteger),
    sa.Column("provisioned_at", sa.BigInteger),                     # last config handed out
    sa.Column("first_seen", sa.BigInteger),
    sa.Column("last_seen", sa.BigInteger),
    sa.Column("online", sa.Boolean),                                # retained CONNECT / last will
    sa.Column("online_changed_at", sa.BigInteger),
    sa.Column("model", sa.String(200)),
    sa.Column("firmware", sa.String(200)),
    sa.Column("agent_version", sa.String(50)),
    sa.Column("wan_ip", sa.String(64)),
    sa.Column("stations", sa.Integer),
    sa.Column("status", sa.Integer),                                # PROTOCOL 7.1
    sa.Column("last_doc", sa.Text),                                 # the latest stats document
    sa.Column("last_doc_at", sa.BigInteger),
    sa.Column("boot_at", sa.BigInteger),
    sa.Column("config_json", sa.Text),                              # this device's own config keys
    sa.Column("version", sa.String(50)),                            # the agent's, from its last CONNECT
    sa.Column("version_at", sa.BigInteger),                         # (PROTOCOL 10) and when it said so
)

samples = sa.Table(
    "samples", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("device_id", sa.Integer, sa.ForeignKey("devices.id", ondelete="CASCADE"), nullable=False),
    sa.Column("ts", sa.BigInteger, nullable=False),
    sa.Column("load_1", sa.Float),
    sa.Column("total_ram", sa.BigInteger),
    sa.Column("free_ram", sa.BigInteger),
    sa.Column("rx_bytes", sa.BigInteger),
    sa.Column("tx_bytes", sa.BigInteger),
    sa.Column("stations", sa.Integer),
    sa.Column("status", sa.Integer),
    sa.Index("ix_samples_device_ts", "device_id", "ts"),
)

fleet_jobs = sa.Table(
    "fleet_jobs", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("command", sa.Text, nullable=False),
    sa.Column("type", sa.String(20), nullable=False),
    sa.Column("target", sa.String(20), nullable=False),             # all | selected | one
    sa.Column("created_by", sa.String(64)),                         # the operator who sent it
)

jobs = sa.Table(
    "jobs", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("job_id", sa.String(64), nullable=False, unique=True),  # the wire id (PROTOCOL 4.1)
    sa.Column("fleet_job_id", sa.Integer, sa.ForeignKey("fleet_jobs.id", ondelete="CASCADE")),
    sa.Column("device_id", sa.Integer, sa.ForeignKey("devices.id", ondelete="CASCADE"), nullable=False),
    sa.Column("command", sa.Text, nullable=False),
    sa.Column("type", sa.String(20), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("state", sa.String(20), nullable=False),              # SENT DELIVERED PROCESSED REJECTED
    sa.Column("delivered_at", sa.BigInteger),
    sa.Column("finished_at", sa.BigInteger),
    sa.Column("success", sa.Boolean),
    sa.Column("exit_code", sa.Integer),
    sa.Column("output", sa.Text),
    sa.Column("reason", sa.Text),
    sa.Column("duration_ms", sa.Integer),
    sa.Column("via", sa.String(10)),                                # mqtt | rest
    sa.Index("ix_jobs_device", "device_id", "id"),
    sa.Index("ix_jobs_fleet", "fleet_job_id"),
)

events = sa.Table(
    "events", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("device_id", sa.Integer, sa.ForeignKey("devices.id", ondelete="CASCADE"), nullable=False),
    sa.Column("ts", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
    sa.Index("ix_events_device", "device_id", "id"),
)

# ---- operators, their sessions and API tokens, the audit log (issue 26) ----

operators = sa.Table(
    "operators", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("role", sa.String(20), nullable=False),               # viewer | operator | admin
    sa.Column("password_hash", sa.String(200), nullable=False),     # Argon2id, PHC string (argon2-cffi)
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("password_changed_at", sa.BigInteger),
    sa.Column("last_login_at", sa.BigInteger),
)

# A login: the browser holds the random id (in the signed session cookie),
# the database only its SHA-256, so a copy of the database logs nobody in.
sessions = sa.Table(
    "sessions", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("sid_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("operator_id", sa.Integer, sa.ForeignKey("operators.id", ondelete="CASCADE"), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("last_seen_at", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),         # absolute end, whatever the activity
    sa.Column("address", sa.String(64), nullable=False, server_default=""),
    sa.Column("user_agent", sa.String(200), nullable=False, server_default=""),
    sa.Index("ix_sessions_operator", "operator_id"),
)

api_tokens = sa.Table(
    "api_tokens", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("operator_id", sa.Integer, sa.ForeignKey("operators.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),               # capped by the operator's own role
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),  # SHA-256 hex of the token
    sa.Column("prefix", sa.String(16), nullable=False),             # its first characters, to recognise it
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("last_used_at", sa.BigInteger),
    sa.Column("last_used_address", sa.String(64)),
    sa.Column("revoked_at", sa.BigInteger),                         # set: refused from then on
    sa.Index("ix_api_tokens_operator", "operator_id"),
)

# Written by the server only (Store.audit), never changed or deleted but by
# the retention prune. `operator` is a name, not a key: the record outlives
# the account.
audit = sa.Table(
    "audit", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("ts", sa.BigInteger, nullable=False),
    sa.Column("operator", sa.String(64), nullable=False, server_default=""),   # "" : nobody logged in
    sa.Column("via", sa.String(120), nullable=False, server_default=""),       # password | token NAME | cli
    sa.Column("address", sa.String(64), nullable=False, server_default=""),
    sa.Column("action", sa.String(40), nullable=False),
    sa.Column("target", sa.String(200), nullable=False, server_default=""),
    sa.Column("outcome", sa.String(40), nullable=False),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
    sa.Index("ix_audit_ts", "ts"),
    sa.Index("ix_audit_action_target", "action", "target", "ts"),
    sa.Index("ix_audit_action_address", "action", "address", "ts"),
)

# Secrets the server makes for itself and every server process shares
# (several processes behind one load balancer): the session signing key.
server_keys = sa.Table(
    "server_keys", metadata,
    sa.Column("name", sa.String(40), primary_key=True),
    sa.Column("value", sa.String(200), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)


# ---- releases of the agent and rollouts (issue 23, PROTOCOL 10) ----

# An update archive the server keeps (releases.py checks it) in its data
# folder as <sha256>.tar.gz and serves at /api/releases/socketman-<version>.tar.gz.
releases = sa.Table(
    "releases", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("version", sa.String(50), nullable=False, unique=True),  # VERSION read from the archive
    sa.Column("sha256", sa.String(64), nullable=False),             # lowercase hex of the archive
    sa.Column("size", sa.BigInteger, nullable=False),               # bytes of the archive
    sa.Column("form", sa.String(40), nullable=False),               # "mpy v6" | "py"
    sa.Column("files", sa.Integer, nullable=False),                 # regular files in it
    sa.Column("filename", sa.String(200), nullable=False, server_default=""),  # as uploaded
    sa.Column("uploaded_by", sa.String(64), nullable=False, server_default=""),
    sa.Column("uploaded_at", sa.BigInteger, nullable=False),
)

# A rollout of a release to devices in waves. State: running | paused |
# stopped (a wave failed; resumable) | aborted | done. The scheduler that
# moves it on holds a lease (lease_owner until lease_until): one server
# process drives a rollout at a time.
rollouts = sa.Table(
    "rollouts", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("release_id", sa.Integer, sa.ForeignKey("releases.id"), nullable=False),
    sa.Column("created_by", sa.String(64), nullable=False, server_default=""),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("target", sa.String(200), nullable=False),            # all | selected | on version X
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("reason", sa.Text, nullable=False, server_default=""),  # why it stopped, was aborted...
    sa.Column("wave_spec", sa.String(200), nullable=False),         # as given: "1,10%,rest"
    sa.Column("threshold_spec", sa.String(200), nullable=False),    # as given: "0" or "0,1,5%"
    sa.Column("waves", sa.Text, nullable=False),                    # JSON [devices in each wave]
    sa.Column("allowed", sa.Text, nullable=False),                  # JSON [failures each wave may have]
    sa.Column("trial_s", sa.Integer, nullable=False),               # the devices' update_trial
    sa.Column("margin_s", sa.Integer, nullable=False),              # added to it: a device's deadline
    sa.Column("offline_wait_s", sa.Integer, nullable=False),        # an offline device is waited for
    sa.Column("wave", sa.Integer, nullable=False),                  # the current wave, from 1
    sa.Column("wave_started_at", sa.BigInteger),
    sa.Column("accepted_wave", sa.Integer, nullable=False, server_default="0"),  # resumed past its failures
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Column("finished_at", sa.BigInteger),
    sa.Column("lease_owner", sa.String(100)),
    sa.Column("lease_until", sa.BigInteger),
    sa.Index("ix_rollouts_state", "state"),
)

# One device of a rollout. State: waiting | sent | updated | rolled back |
# failed | skipped (the rollout was aborted before it was sent).
rollout_devices = sa.Table(
    "rollout_devices", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("rollout_id", sa.Integer, sa.ForeignKey("rollouts.id", ondelete="CASCADE"), nullable=False),
    sa.Column("device_id", sa.Integer, sa.ForeignKey("devices.id", ondelete="CASCADE"), nullable=False),
    sa.Column("wave", sa.Integer, nullable=False),
    sa.Column("position", sa.Integer, nullable=False),              # order within the rollout
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("job_id", sa.String(64)),                             # the update job's wire id (jobs.job_id)
    sa.Column("sent_at", sa.BigInteger),
    sa.Column("finished_at", sa.BigInteger),
    sa.Column("old_version", sa.String(50)),                        # when it was chosen
    sa.Column("new_version", sa.String(50)),                        # what it said after the update
    sa.Column("reason", sa.Text, nullable=False, server_default=""),
    sa.UniqueConstraint("rollout_id", "device_id"),
    sa.Index("ix_rollout_devices_state", "rollout_id", "state"),
    sa.Index("ix_rollout_devices_device", "device_id"),
)


# ---- tunnels (issue 22, PROTOCOL 11) -----------------------------------------

# One row per tunnel an operator asked for: who, to which device and port,
# when, how it went and the bytes each way. `server` names the process that
# relays it (it writes updated_at every few seconds while the tunnel lives;
# a row left open by a process that died is closed as "lost" by the next).
tunnels = sa.Table(
    "tunnels", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tunnel_id", sa.String(64), nullable=False, unique=True),   # the one-time id in the device's URL
    sa.Column("device_id", sa.Integer, sa.ForeignKey("devices.id", ondelete="CASCADE"), nullable=False),
    sa.Column("mac", sa.String(17), nullable=False),
    sa.Column("port", sa.Integer, nullable=False),                  # TCP port on the device's 127.0.0.1
    sa.Column("job_id", sa.String(64)),                             # the tunnel job's wire id (jobs.job_id)
    sa.Column("operator", sa.String(64), nullable=False, server_default=""),
    sa.Column("via", sa.String(120), nullable=False, server_default=""),     # password | token NAME
    sa.Column("address", sa.String(64), nullable=False, server_default=""),  # the operator's client address
    sa.Column("server", sa.String(100), nullable=False, server_default=""),  # host:pid:instance relaying it
    sa.Column("state", sa.String(20), nullable=False),              # waiting | open | closed
    sa.Column("opened_at", sa.BigInteger, nullable=False),          # asked for
    sa.Column("connected_at", sa.BigInteger),                       # the device connected
    sa.Column("closed_at", sa.BigInteger),
    sa.Column("updated_at", sa.BigInteger, nullable=False),         # the relaying process's last word
    sa.Column("bytes_to_device", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("bytes_from_device", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("outcome", sa.String(40)),                            # closed | expired | refused | failed | ...
    sa.Column("detail", sa.Text),
    sa.Column("close_requested_at", sa.BigInteger),                 # "Close" on the dashboard
    sa.Column("close_requested_by", sa.String(64)),
    sa.Index("ix_tunnels_device", "device_id", "id"),
    sa.Index("ix_tunnels_state", "state", "updated_at"),
)
