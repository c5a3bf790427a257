"""Sign a SocketMan job for devices that have `job_key` set (PROTOCOL 9) and
print it as one line of JSON, ready for the device's sub/ topic:

    python3 tools/sign_job.py --key-file fleet.key --id job-42 -- uptime
    mosquitto_pub -h BROKER -t sub/<topic>/<key>/<mac> -q 1 \\
        -m "$(python3 tools/sign_job.py --key-file fleet.key --id job-43 --type network -- 'wifi up')"

The key file holds the fleet's job_key on its first line, UTF-8, without
the spaces around it (as the reference server's --job-key-file). The job's timestamp is now unless --timestamp says
otherwise; a device runs it only within job_max_age seconds of that (300
by default), and a given id only once. CPython's standard library only:
this is the operator's side and does not go on the router. Exit status 2
for a bad argument or an unreadable key file.
"""
import argparse
import hashlib
import hmac
import json
import sys
import time

ID_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
TYPES = ("cmd", "network")


def signature(key, job_id, timestamp, kind, msg):
    """Lowercase hex HMAC-SHA256 (PROTOCOL 9) of "<id>\\n<timestamp>\\n<type>\\n<msg>"
    (UTF-8) under key (str, the job_key, used as its UTF-8 bytes)."""
    text = "%s\n%d\n%s\n%s" % (job_id, timestamp, kind, msg)
    return hmac.new(key.encode(), text.encode(), hashlib.sha256).hexdigest()


def signed_job(key, job_id, msg, kind="cmd", timestamp=None):
    """The job (a dict of PROTOCOL 4.1 plus "sig") for the device's sub/ topic."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return {"id": job_id, "timestamp": ts, "meta": {"msg": msg, "type": kind},
            "sig": signature(key, job_id, ts, kind, msg)}


def read_key(path):
    """The job_key in the file at path: its first line (UTF-8), stripped.
    ValueError when it cannot be read, is not UTF-8 or the line is empty."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ValueError("cannot read the key file %s: %s" % (path, e.strerror or e))
    try:
        key = data.decode("utf-8").split("\n", 1)[0].strip()
    except UnicodeDecodeError:
        raise ValueError("the key file %s is not UTF-8 text" % path)
    if not key:
        raise ValueError("the key file %s has no key on its first line" % path)
    return key


def main(argv):
    p = argparse.ArgumentParser(prog="sign_job.py", description="Sign a SocketMan job (PROTOCOL 9).")
    p.add_argument("--key-file", required=True, help="file holding the fleet's job_key")
    p.add_argument("--id", required=True, help="job id: 1..64 of A-Z a-z 0-9 . _ -, new for every job")
    p.add_argument("--type", default="cmd", choices=TYPES, help="job type (default cmd)")
    p.add_argument("--timestamp", type=int, help="Unix seconds to sign (default: now)")
    p.add_argument("command", nargs="+", help="the shell command (several words are joined by spaces)")
    a = p.parse_args(argv)
    if not 1 <= len(a.id) <= 64 or not set(a.id) <= ID_CHARS:
        p.error("--id must be 1..64 of A-Z a-z 0-9 . _ -")
    msg = " ".join(a.command)
    if not msg.strip() or "\0" in msg:
        p.error("the command must be non-empty text")
    try:
        key = read_key(a.key_file)
    except ValueError as e:
        sys.stderr.write("sign_job.py: %s\n" % e)
        return 2
    print(json.dumps(signed_job(key, a.id, msg, a.type, a.timestamp), separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
