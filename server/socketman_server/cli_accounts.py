"""The operators' commands (issue 26), on the server's database:

    socketman-server operator add NAME --role viewer|operator|admin [--password-file F | --generate-password]
    socketman-server operator list
    socketman-server operator password NAME [--password-file F | --generate-password]
    socketman-server operator role NAME ROLE
    socketman-server operator logout NAME          (ends every session)
    socketman-server operator remove NAME
    socketman-server token add OPERATOR NAME [--role ROLE] [--out FILE]
    socketman-server token list [--operator NAME] [--all]
    socketman-server token revoke ID
    socketman-server audit [--operator N] [--action A] [--target T] [--outcome O] [--hours H] [--limit N] [--json]
    socketman-server whoami [--server URL] [--token-file FILE]   (over HTTP, with an API token)

Without a file or --generate-password, a password is asked twice on the
terminal. Every change is in the audit log as done by "cli:<unix user>".
"""
import getpass
import json
import os
import sys
import time

from . import auth, client
from .protocol import BadInput


def add_parsers(sub, common):
    o = sub.add_parser("operator", help="add, list, change and remove dashboard operators")
    osub = o.add_subparsers(dest="action", required=True)
    p = osub.add_parser("add", help="add an operator")
    common(p)
    p.add_argument("name")
    p.add_argument("--role", required=True, choices=auth.ROLES)
    _password_args(p)
    p = osub.add_parser("list", help="list the operators")
    common(p)
    p = osub.add_parser("password", help="set an operator's password (their sessions end)")
    common(p)
    p.add_argument("name")
    _password_args(p)
    p = osub.add_parser("role", help="change an operator's role")
    common(p)
    p.add_argument("name")
    p.add_argument("role", choices=auth.ROLES)
    p = osub.add_parser("logout", help="end every session of an operator")
    common(p)
    p.add_argument("name")
    p = osub.add_parser("remove", help="remove an operator with their sessions and API tokens")
    common(p)
    p.add_argument("name")

    t = sub.add_parser("token", help="API tokens for scripts and the command line")
    tsub = t.add_subparsers(dest="action", required=True)
    p = tsub.add_parser("add", help="make an API token (printed once)")
    common(p)
    p.add_argument("operator")
    p.add_argument("name")
    p.add_argument("--role", choices=auth.ROLES, help="at most the operator's (default: theirs)")
    p.add_argument("--out", metavar="FILE", help="write it to FILE (mode 600) instead of printing it")
    p = tsub.add_parser("list", help="list API tokens")
    common(p)
    p.add_argument("--operator")
    p.add_argument("--all", action="store_true", help="revoked ones too")
    p = tsub.add_parser("revoke", help="revoke an API token (refused from its next request on)")
    common(p)
    p.add_argument("id", type=int)

    a = sub.add_parser("audit", help="print the audit log, newest first")
    common(a)
    for k in ("operator", "action", "target", "outcome"):
        a.add_argument("--" + k)
    a.add_argument("--hours", type=float, default=0)
    a.add_argument("--limit", type=client.whole_number(1, 1000), default=50, help="at most this many rows (1 to 1000)")
    a.add_argument("--json", action="store_true")

    w = sub.add_parser("whoami", help="ask the server who an API token stands for")
    w.add_argument("--server", help="the dashboard's URL (default $%s or %s)" % (client.SERVER_ENV,
                                                                              client.DEFAULT_SERVER))
    w.add_argument("--token-file", help="default: $%s, then %s" % (client.TOKEN_ENV, client.TOKEN_FILE))
    w.add_argument("--debug", action="store_true")


def _password_args(p):
    g = p.add_mutually_exclusive_group()
    g.add_argument("--password-file", metavar="FILE", help="the password is the first line of FILE")
    g.add_argument("--generate-password", action="store_true", help="make one and print it once")


def cli_operator():
    """Who the audit log says did what the command line did."""
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in this environment (a container)
        user = str(os.getuid())
    return auth.Operator(None, ("cli:" + user)[:64], "admin", "cli")


def recorder(store):
    """audit(action, target, outcome, detail) for the command line."""
    op = cli_operator()
    return lambda action, target="", outcome="ok", detail="": store.audit(op, action, target, outcome, detail)


def _password(args):
    """(password, generated?) from --password-file, --generate-password or
    the terminal."""
    if args.password_file:
        try:
            with open(args.password_file, encoding="utf-8") as f:
                return f.readline().rstrip("\r\n"), False
        except (OSError, UnicodeDecodeError) as e:
            raise BadInput("cannot read the password file %s: %s" % (args.password_file, e))
    if args.generate_password:
        return auth.new_password(), True
    if not sys.stdin.isatty():
        raise BadInput("no terminal to ask for the password: give --password-file FILE or --generate-password")
    first = getpass.getpass("password for %s: " % args.name)
    if first != getpass.getpass("again: "):
        raise BadInput("the two passwords differ")
    return first, False


def _when(ts):
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "never"


def run(store, args):
    """One operator/token/audit command. Exit status; BadInput -> exit 2."""
    record = recorder(store)
    if args.cmd == "operator":
        return _operator(store, args, record)
    if args.cmd == "token":
        return _token(store, args, record)
    if args.cmd == "audit":
        return _audit(store, args)
    raise BadInput("unknown command %s" % args.cmd)


def _operator(store, args, record):
    a = args.action
    if a == "add":
        password, generated = _password(args)
        op = store.add_operator(args.name, args.role, password)
        record("operator.add", op["name"], "ok", "role %s" % op["role"])
        print("added operator %s (%s)" % (op["name"], op["role"]))
        if generated:
            print("password: %s" % password)
    elif a == "list":
        rows = store.operators()
        print("%-24s %-9s %-17s %-17s %8s %6s" % ("NAME", "ROLE", "MADE", "LAST LOGIN", "SESSIONS", "TOKENS"))
        for o in rows:
            print("%-24s %-9s %-17s %-17s %8d %6d" % (o["name"], o["role"], _when(o["created_at"]),
                                                     _when(o["last_login_at"]), o["sessions"], o["tokens"]))
        if not rows:
            print("(none: add one with `socketman-server operator add NAME --role admin`)")
    elif a == "password":
        if store.operator(args.name) is None:
            raise BadInput("no operator named %s" % args.name)
        password, generated = _password(args)
        store.set_password(args.name, password)
        record("operator.password", args.name, "ok", "set from the command line; their sessions ended")
        print("new password set for %s; their sessions ended" % args.name)
        if generated:
            print("password: %s" % password)
    elif a == "role":
        store.set_role(args.name, args.role)
        record("operator.role", args.name, "ok", "now %s" % args.role)
        print("%s is now %s" % (args.name, args.role))
    elif a == "logout":
        n = store.end_sessions(args.name)
        record("operator.logout", args.name, "ok", "%d sessions ended" % n)
        print("%d sessions of %s ended" % (n, args.name))
    elif a == "remove":
        store.remove_operator(args.name)
        record("operator.remove", args.name, "ok", "with their sessions and API tokens")
        print("removed %s" % args.name)
    return 0


def _token(store, args, record):
    a = args.action
    if a == "add":
        token, row = store.add_token(args.operator, args.name, args.role)
        record("token.add", "%s/%s" % (row["operator"], row["name"]), "ok", "role %s, id %d" % (row["role"], row["id"]))
        if args.out:
            path = os.path.expanduser(args.out)
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(token + "\n")
            print("token %d (%s, %s) written to %s" % (row["id"], row["name"], row["role"], path), file=sys.stderr)
        else:
            print("token %d (%s, %s); it is not shown again:" % (row["id"], row["name"], row["role"]),
                  file=sys.stderr)
            print(token)
    elif a == "list":
        print("%4s %-20s %-20s %-9s %-11s %-17s %-17s %s" % ("ID", "OPERATOR", "NAME", "ROLE", "STARTS", "MADE",
                                                            "LAST USED", "REVOKED"))
        for t in store.tokens(args.operator, revoked=args.all):
            print("%4d %-20s %-20s %-9s %-11s %-17s %-17s %s" % (
                t["id"], t["operator"], t["name"], t["role"], t["prefix"], _when(t["created_at"]),
                _when(t["last_used_at"]), _when(t["revoked_at"]) if t["revoked_at"] else ""))
    elif a == "revoke":
        t = store.revoke_token(args.id)
        if t is None:
            raise BadInput("no live token with id %d" % args.id)
        record("token.revoke", "%s/%s" % (t["operator"], t["name"]), "ok", "id %d" % t["id"])
        print("revoked token %d (%s/%s)" % (t["id"], t["operator"], t["name"]))
    return 0


def _audit(store, args):
    since = int(time.time() - args.hours * 3600) if args.hours > 0 else None
    rows = store.audit_log(operator=args.operator, action=args.action, target=args.target, outcome=args.outcome,
                           since=since, limit=args.limit)
    for r in rows:
        if args.json:
            print(json.dumps(r))
        else:
            print("%s  %-16s %-18s %-24s %-10s %s" % (_when(r["ts"]), r["operator"] or "(nobody)", r["action"],
                                                      r["target"], r["outcome"], r["detail"]))
    return 0


def whoami(args):
    """GET /whoami.json with the API token: prints NAME ROLE (via ...)."""
    try:
        token = client.load_token(args.token_file)
        server = client.server_url(args.server)
        status, body = client.call(server, "/whoami.json", token)
    except BadInput as e:
        print("socketman-server: %s" % e, file=sys.stderr)
        return 2
    except OSError as e:
        print("socketman-server: cannot reach %s: %s" % (args.server or client.server_url(), e), file=sys.stderr)
        return 1
    if status != 200 or not isinstance(body, dict):
        print("socketman-server: the server said %d: %s" % (status, (body or {}).get("error", "")), file=sys.stderr)
        return 1
    print("%s %s (%s)" % (body["name"], body["role"], body["via"]))
    return 0
