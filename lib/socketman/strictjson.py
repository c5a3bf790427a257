# json.loads that refuses what JSON refuses, the same on both runtimes.
# MicroPython's json takes missing and trailing commas, leading zeros and
# unknown escapes, and 1.23 (what OpenWRT ships) even a document cut short:
# '{"id": "j1"' gives {'id': 'j1'}. A truncated job or config file must be
# refused, not half-read. Strings are skipped with find(), so a big payload
# costs a few steps per token, not per character.
import json

_WS = b" \t\n\r"
_PUNCT = b"{}[]:,"
_END = b" \t\n\r,:[]{}\""   # what ends a number or true/false/null
_ESCAPES = b'"\\/bfnrt'
_HEX = b"0123456789abcdefABCDEF"
_CONTROL = [bytes([c]) for c in range(32)]
_Q, _BS = 34, 92  # '"' and '\\'
MAX_DEPTH = 32  # jobs and configs nest 3 deep; deeper ran CPython out of stack, MicroPython out of heap


class TooDeep(ValueError):
    """Valid JSON, but nested deeper than MAX_DEPTH: refused the same on
    both runtimes (CPython's json raised RecursionError at about 1000,
    MicroPython's ran out of heap at a size that depends on -X heapsize)."""


def loads(s):
    """json.loads(s) for a str (or UTF-8 bytes) that is exactly one JSON
    text; ValueError otherwise."""
    check(s.encode() if isinstance(s, str) else s)
    return json.loads(s)


def check(b):
    """ValueError unless the bytes b are one JSON text. Bytes, not str:
    MicroPython indexes a str by walking its UTF-8 from the start."""
    stack = []
    want = "value"   # value, key, colon, next (',' or a close), end
    fresh = False    # just after '{' or '[': a close is fine too
    i, n = 0, len(b)
    while True:
        while i < n and b[i] in _WS:
            i += 1
        if i == n:
            break
        c = b[i]
        if c in _PUNCT:
            want = _punct(c, stack, want, fresh, i)
            fresh = c in b"{["
            i += 1
            continue
        if want == "key" and c == _Q:
            want = "colon"
        elif want == "value":
            want = "next" if stack else "end"
        else:
            _bad(i)
        i = _string(b, i) if c == _Q else _literal(b, i)
        fresh = False
    if want != "end":
        raise ValueError("JSON text ends early")


def _punct(c, stack, want, fresh, i):
    """What may follow the structural character c at b[i]."""
    if c in b"{[":
        if want != "value":
            _bad(i)
        stack.append(c)
        if len(stack) > MAX_DEPTH:
            raise TooDeep("JSON nested deeper than %d levels" % MAX_DEPTH)
        return "key" if c == 123 else "value"
    if c in b"}]":
        empty = fresh and want == ("key" if c == 125 else "value")
        if not stack or stack[-1] != c - 2 or not (want == "next" or empty):  # '}' - 2 is '{'
            _bad(i)
        stack.pop()
        return "next" if stack else "end"
    if c == 58:  # ':'
        if want != "colon":
            _bad(i)
        return "value"
    if want != "next":  # ','
        _bad(i)
    return "key" if stack[-1] == 123 else "value"


def _bad(i):
    raise ValueError("JSON syntax error at byte %d" % i)


def _string(b, i):
    """Index after the string that starts at b[i]."""
    j = i + 1
    q = b.find(b'"', j)
    while True:
        if q < 0:
            raise ValueError("JSON string not closed")
        x = b.find(b"\\", j, q)
        if x < 0:
            _no_control(b, i + 1, q)
            return q + 1
        j = _escape(b, x)
        if j > q:  # the quote was escaped: look for the next one
            q = b.find(b'"', j)


def _no_control(b, start, end):
    for ch in _CONTROL:  # find() with bounds: no copy of a big string
        if b.find(ch, start, end) >= 0:
            raise ValueError("control character in a JSON string near byte %d" % (start - 1))


def _escape(b, x):
    """Index after the escape at b[x] (a backslash)."""
    e = b[x + 1:x + 2]
    if e and e in _ESCAPES:
        return x + 2
    if e != b"u":
        _bad(x)
    cp = _hex4(b, x + 2)
    if 0xDC00 <= cp <= 0xDFFF:
        _bad(x)  # a low surrogate alone: no character
    if 0xD800 <= cp <= 0xDBFF:
        # Only a pair makes a character; a lone half cannot be written out.
        if b[x + 6:x + 8] != b"\\u" or not 0xDC00 <= _hex4(b, x + 8) <= 0xDFFF:
            _bad(x)
        return x + 12
    return x + 6


def _hex4(b, at):
    h = b[at:at + 4]
    if len(h) != 4 or not all(ch in _HEX for ch in h):
        _bad(at)
    return int(bytes(h), 16)  # MicroPython's int() takes no bytearray


def _literal(b, i):
    j = i
    n = len(b)
    while j < n and b[j] not in _END:
        j += 1
    word = b[i:j]
    if word not in (b"true", b"false", b"null") and not _number(word):
        _bad(i)
    return j


def _number(w):
    # -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
    if w[:1] == b"-":
        w = w[1:]
    w = w.replace(b"E", b"e")
    mant, e, exp = w.partition(b"e")
    if e:
        if exp[:1] in (b"+", b"-"):
            exp = exp[1:]
        if not _digits(exp):
            return False
    whole, dot, frac = mant.partition(b".")
    if not _digits(whole) or (len(whole) > 1 and whole[:1] == b"0"):
        return False
    return not dot or _digits(frac)


def _digits(w):
    return bool(w) and all(48 <= ch <= 57 for ch in w)
