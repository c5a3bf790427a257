# Logging: syslog through /dev/log (ident "socketman"), or the terminal when
# DEBUG is set in the environment, or stderr when there is no syslog socket.
# Every line passes through redact(), so secrets never reach a log.
import os
import socket
import sys
import time

from . import rt

DEBUG, INFO, WARN, ERROR = 7, 6, 4, 3
_NAMES = {DEBUG: "debug", INFO: "info", WARN: "warn", ERROR: "error"}
_FACILITY_DAEMON = 3 << 3

_state = {"level": INFO, "sock": None, "terminal": True, "secrets": []}
# Said when the heap is full, so made now: writing them allocates nothing.
_OOM = "out of memory: the work that needed it is dropped or tried again later"
_OOM_SYSLOG = ("<%d>socketman: %s" % (_FACILITY_DAEMON | ERROR, _OOM)).encode()
_OOM_STDERR = "socketman: error: %s\n" % _OOM
ooms = [0]  # times oom() was called


def setup(verbose=False, terminal=None, syslog_path=None):
    """Where lines go: syslog_path (default /dev/log, or SOCKETMAN_SYSLOG), or
    the terminal with time stamps (default: when DEBUG is set). verbose
    includes debug lines."""
    syslog_path = syslog_path or os.getenv("SOCKETMAN_SYSLOG") or "/dev/log"
    if terminal is None:
        terminal = bool(os.getenv("DEBUG"))
    _state["level"] = DEBUG if (verbose or terminal) else INFO
    _state["terminal"] = terminal
    rt.close(_state["sock"])
    _state["sock"] = None
    if not terminal:
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            s.connect(rt.unix_addr(syslog_path))
            _state["sock"] = s
        except OSError:
            _state["sock"] = None  # no syslog: stderr, below


def secret(value):
    """Never print this value (password, token) in any log line."""
    if value and value not in _state["secrets"]:
        _state["secrets"].append(value)
        # Longest first, so a secret containing another is hidden whole.
        _state["secrets"].sort(key=len, reverse=True)


def redact(text):
    """text with every secret and every access_token= value replaced by ***."""
    for s in _state["secrets"]:
        if s in text:
            text = text.replace(s, "***")
    # Tokens in URLs we did not know about (e.g. from a server's redirect).
    i = text.find("access_token=")
    while i >= 0:
        j = i + 13
        k = j
        while k < len(text) and text[k] not in "& \t\"'":
            k += 1
        text = text[:j] + "***" + text[k:]
        i = text.find("access_token=", j + 3)
    return text


def _emit(level, msg):
    if level > _state["level"]:
        return
    try:
        _write(level, msg)
    except MemoryError:
        oom()
    except Exception:
        pass  # a log line is never worth stopping the agent for


def _write(level, msg):
    line = redact(str(msg)).replace("\n", " | ")
    s = _state["sock"]
    if s is not None:
        try:
            s.send(("<%d>socketman: %s" % (_FACILITY_DAEMON | level, line)).encode())
            return
        except OSError:
            pass  # syslogd restarting: fall through to stderr
    if _state["terminal"]:
        t = time.localtime()
        stamp = "%04d-%02d-%02d %02d:%02d:%02d" % t[:6]
        sys.stderr.write("%s %s %s\n" % (stamp, _NAMES[level], line))
    else:
        sys.stderr.write("socketman: %s: %s\n" % (_NAMES[level], line))


def debug(msg):
    """Log a debug line (shown with --debug or DEBUG=1)."""
    _emit(DEBUG, msg)


def info(msg):
    """Log an info line."""
    _emit(INFO, msg)


def warn(msg):
    """Log a warning line."""
    _emit(WARN, msg)


def error(msg):
    """Log an error line."""
    _emit(ERROR, msg)


def oom():
    """Out of memory: one line that needs no allocation (MicroPython's heap
    may be full while this runs), counted in ooms."""
    ooms[0] += 1
    try:
        if _state["sock"] is not None:
            _state["sock"].send(_OOM_SYSLOG)
        else:
            sys.stderr.write(_OOM_STDERR)
    except Exception:
        pass


def exc(where, e):
    """An unexpected exception: one line always, the traceback in debug. A
    MemoryError, or one while saying it, is oom()'s line."""
    if isinstance(e, MemoryError):
        oom()
        return
    try:
        _exc(where, e)
    except MemoryError:
        oom()


def _exc(where, e):
    _emit(ERROR, "%s: %s: %s" % (where, type(e).__name__, e))
    if _state["level"] >= DEBUG:
        _emit(DEBUG, rt.format_exc(e))
