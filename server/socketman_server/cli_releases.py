"""Releases and rollouts on the command line (issue 23), on the server's
database and data folder:

    socketman-server release add FILE [--data-dir DIR] [--release-max-bytes N]
    socketman-server release list [--json]
    socketman-server rollout start VERSION (--all | --mac MAC... | --on-version V)
                     [--waves 1,10%,rest] [--threshold 0] [--trial 300] [--margin 120] [--offline-wait 600]
    socketman-server rollout list [--json]
    socketman-server rollout show ID [--json]
    socketman-server rollout pause|resume|abort ID

A rollout started or changed here is moved on by the scheduler of a
running `serve` on the same database (it sends the jobs). Every change is
in the audit log as done by "cli:<unix user>"."""
import json
import sys

from . import releases as rel
from . import rollouts as ro
from .cli_accounts import cli_operator, recorder
from .protocol import BadInput

COMMANDS = ("release", "rollout")


def data_args(p):
    p.add_argument("--data-dir", metavar="DIR",
                   help="where release archives are kept (DIR/releases; default: the SQLite file's folder; "
                        "needed with PostgreSQL)")
    p.add_argument("--release-max-bytes", type=int, default=1024 * 1024, metavar="N",
                   help="the largest release archive taken (default 1 MiB, a device's default update_max_bytes)")


def add_parsers(sub, common):
    r = sub.add_parser("release", help="add and list releases of the agent (update archives, PROTOCOL 10)")
    rsub = r.add_subparsers(dest="action", required=True)
    p = rsub.add_parser("add", help="check an update archive (dist/socketman-VERSION.tar.gz) and keep it")
    common(p)
    data_args(p)
    p.add_argument("file")
    p = rsub.add_parser("list", help="list the releases")
    common(p)
    data_args(p)
    p.add_argument("--json", action="store_true")

    o = sub.add_parser("rollout", help="roll a release out to devices in waves")
    osub = o.add_subparsers(dest="action", required=True)
    p = osub.add_parser("start", help="start a rollout (a running server sends the jobs)")
    common(p)
    p.add_argument("version", help="the release's version")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--all", action="store_true", help="every device")
    g.add_argument("--mac", action="append", help="this device (repeat it)")
    g.add_argument("--on-version", metavar="V", help="the devices that run version V")
    for k, d in ro.DEFAULTS.items():
        p.add_argument("--" + k.replace("_", "-"), default=None, help="default %s" % d)
    p = osub.add_parser("list", help="list the rollouts")
    common(p)
    p.add_argument("--json", action="store_true")
    p = osub.add_parser("show", help="a rollout and each device's state")
    common(p)
    p.add_argument("id", type=int)
    p.add_argument("--json", action="store_true")
    for a in ("pause", "resume", "abort"):
        p = osub.add_parser(a, help="%s a rollout" % a)
        common(p)
        p.add_argument("id", type=int)


def run(store, settings, args):
    """0 done, 1 a rollout action that does not apply, BadInput for bad input (exit 2)."""
    record = recorder(store)
    if args.cmd == "release":
        if args.action == "add":
            return _release_add(store, settings, args, record)
        rows = store.releases()
        if args.json:
            print(json.dumps([{k: r[k] for k in ("version", "sha256", "size", "form", "files", "filename",
                                                  "uploaded_by", "uploaded_at", "rollouts")} for r in rows], indent=2))
        for r in [] if args.json else rows:
            print("%-16s %8d bytes  %-7s sha256 %s  by %s  (%s)" % (r["version"], r["size"], r["form"], r["sha256"],
                                                                     r["uploaded_by"], r["filename"]))
        return 0
    if args.action == "start":
        return _rollout_start(store, args, record)
    if args.action == "list":
        rows = store.rollouts()
        if args.json:
            print(json.dumps([_plain(r) for r in rows], indent=2))
            return 0
        for r in rows:
            counts = ", ".join("%s %d" % kv for kv in sorted(r["counts"].items()))
            print("#%-4d %-8s %-12s wave %d of %d  %s  %s" % (r["id"], r["state"], r["version"], r["wave"],
                                                            len(r["waves"]), r["target"], counts))
        return 0
    r = store.rollout(args.id)
    if r is None:
        raise BadInput("no rollout #%d" % args.id)
    if args.action == "show":
        rows = store.rollout_devices(args.id)
        if args.json:
            print(json.dumps({"rollout": _plain(r), "devices": [
                {k: d[k] for k in ("mac", "name", "wave", "state", "reason", "old_version", "new_version", "job_id")}
                for d in rows]}, indent=2))
            return 0
        print("rollout #%d of %s: %s, wave %d of %d %s%s" % (r["id"], r["version"], r["state"], r["wave"],
                                                             len(r["waves"]), r["waves"],
                                                             " (%s)" % r["reason"] if r["reason"] else ""))
        for d in rows:
            print("  wave %d  %-17s %-12s %s" % (d["wave"], d["mac"], d["state"], d["reason"]))
        return 0
    done = {"pause": ro.pause, "resume": ro.resume}.get(args.action)
    ok = done(store, args.id) if done else ro.abort(store, args.id, "aborted by %s" % cli_operator().name)
    record("rollout." + args.action, "#%d" % args.id, "ok" if ok else "failed",
           "%s at wave %d (%s)" % (r["version"], r["wave"], r["state"]))
    if not ok:
        print("socketman-server: rollout #%d is %s: it cannot be %s" % (args.id, r["state"], args.action),
              file=sys.stderr)
        return 1
    print("rollout #%d: %s" % (args.id, store.rollout(args.id)["state"]))
    return 0


def _plain(r):
    return {k: r[k] for k in ("id", "version", "sha256", "state", "reason", "target", "created_by", "created_at",
                              "wave", "waves", "allowed", "trial_s", "margin_s", "offline_wait_s", "counts")
            if k in r}


def _release_add(store, settings, args, record):
    files = rel.ReleaseFiles(settings.data_folder())
    try:
        files.check()
        with open(args.file, "rb") as f:
            r = rel.add(store, files, f, args.file.rsplit("/", 1)[-1], cli_operator().name,
                            settings.release_max_bytes)
    except OSError as e:
        raise BadInput("cannot read %s: %s" % (args.file, e))
    except BadInput as e:
        record("release.add", args.file.rsplit("/", 1)[-1][:200], "failed", str(e))
        raise
    record("release.add", r["version"], "ok", "%s: %d bytes, %s, sha256 %s" % (r["filename"], r["size"], r["form"],
                                                                               r["sha256"]))
    print("release %s: %d bytes, %s, sha256 %s\nkept as %s\ndevices download it from "
          "<public URL>/api/releases/socketman-%s.tar.gz" % (r["version"], r["size"], r["form"], r["sha256"],
                                                            files.path(r["sha256"]), r["version"]))
    return 0


def _rollout_start(store, args, record):
    release = store.release(args.version)
    if release is None:
        raise BadInput("no release %s (see `release list`)" % args.version)
    settings = ro.settings_from({k: getattr(args, k) for k in ro.DEFAULTS})
    if args.all:
        target, devs = "all devices", ro.select_devices(store, "all")
    elif args.mac:
        target, devs = "%d selected devices" % len(set(args.mac)), ro.select_devices(store, "selected", args.mac)
    else:
        target, devs = "devices on %s" % args.on_version, ro.select_devices(store, "version", version=args.on_version)
    try:
        rid, left_out = ro.start(store, release, devs, settings, target, cli_operator().name)
    except BadInput as e:
        record("rollout.start", release["version"], "failed", str(e))
        raise
    r = store.rollout(rid)
    record("rollout.start", "#%d" % rid, "ok", "%s to %s: %d devices in waves %s (threshold %s)%s" % (
        release["version"], target, sum(r["waves"]), r["waves"], r["allowed"],
        "; %d already on it left out" % left_out if left_out else ""))
    print("rollout #%d of %s: %d devices in waves %s; a running server sends the jobs" % (
        rid, release["version"], sum(r["waves"]), r["waves"]))
    return 0
