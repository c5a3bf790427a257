"""The operator's side of the command line (`socketman-server whoami`,
`ssh`, `forward`): where the API token and the server's URL come from, one
authenticated REST call, and the argparse type of a bounded whole number.

    token:  --token-file FILE, else $SOCKETMAN_TOKEN, else the first line
            of ~/.config/socketman/token
    server: --server URL, else $SOCKETMAN_SERVER, else http://127.0.0.1:8080
"""
import argparse
import json
import os
import stat
import sys
import urllib.error
import urllib.parse
import urllib.request

from .protocol import BadInput

TOKEN_ENV = "SOCKETMAN_TOKEN"
SERVER_ENV = "SOCKETMAN_SERVER"
TOKEN_FILE = os.path.join("~", ".config", "socketman", "token")
DEFAULT_SERVER = "http://127.0.0.1:8080"


def load_token(token_file=None, environ=None):
    """The API token to send, from (in this order) token_file, the
    environment variable SOCKETMAN_TOKEN, or ~/.config/socketman/token.
    BadInput saying where it looked when there is none. A token file that
    others can read is used, with a warning on stderr (as ssh says of keys)."""
    environ = os.environ if environ is None else environ
    if token_file:
        return _read_token(token_file)
    if environ.get(TOKEN_ENV, "").strip():
        return environ[TOKEN_ENV].strip()
    path = os.path.expanduser(TOKEN_FILE)
    if os.path.exists(path):
        return _read_token(path)
    raise BadInput("no API token: give --token-file FILE, set $%s, or put it in %s "
                   "(make one on the dashboard's account page or with `socketman-server token add`)"
                   % (TOKEN_ENV, TOKEN_FILE))


def _read_token(path):
    try:
        st = os.stat(path)
        with open(path, encoding="utf-8") as f:
            token = f.readline().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput("cannot read the token file %s: %s" % (path, e))
    if not token:
        raise BadInput("the token file %s is empty" % path)
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        print("socketman-server: warning: %s can be read by others (chmod 600 it)" % path, file=sys.stderr)
    return token


def server_url(given=None, environ=None):
    """The dashboard's base URL: given, $SOCKETMAN_SERVER, or the default."""
    environ = os.environ if environ is None else environ
    url = (given or environ.get(SERVER_ENV) or DEFAULT_SERVER).rstrip("/")
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise BadInput("the server URL must be http:// or https://, not %r" % url[:100])
    return url


def call(server, path, token, method="GET", form=None, timeout=30):
    """One REST call as an operator: `Authorization: Bearer <token>`, JSON
    asked for. form: a dict sent as a form body. Returns (HTTP status,
    decoded JSON or None). OSError when the server cannot be reached."""
    data = urllib.parse.urlencode(form, doseq=True).encode() if form is not None else None
    req = urllib.request.Request(server + path, data=data, method=method,
                                 headers={"Authorization": "Bearer " + token, "Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, body = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read()
    try:
        return status, json.loads(body) if body else None
    except ValueError:
        return status, None


def whole_number(lo, hi):
    """An argparse type: text -> int in lo..hi; anything else is a bad
    command line (argparse prints the reason and exits 2)."""
    def parse(text):
        # ASCII digits only: int() would also take "+22", " 22", "2_2" and
        # other scripts' digits, none of which an operator means.
        n = int(text) if text.isascii() and text.isdigit() else None
        if n is None or not lo <= n <= hi:
            raise argparse.ArgumentTypeError("%r is not a whole number from %d to %d" % (text, lo, hi))
        return n
    return parse
