# Bytes -> text that is always valid UTF-8. MicroPython's decode() has no
# errors="replace" and lets overlong forms through, and command output or
# files can hold any bytes, so validate here on both runtimes.

_REPL = "\ufffd"


def _valid_len(data, i, n):
    """Length of the valid UTF-8 sequence at data[i], 0 if there is none."""
    b0 = data[i]
    if b0 < 0x80:
        return 1
    if 0xC2 <= b0 <= 0xDF:
        k, lo, hi = 2, 0x80, 0xBF
    elif 0xE0 <= b0 <= 0xEF:
        k = 3
        lo = 0xA0 if b0 == 0xE0 else 0x80  # no overlong forms
        hi = 0x9F if b0 == 0xED else 0xBF  # no surrogates
    elif 0xF0 <= b0 <= 0xF4:
        k = 4
        lo = 0x90 if b0 == 0xF0 else 0x80
        hi = 0x8F if b0 == 0xF4 else 0xBF  # nothing above U+10FFFF
    else:
        return 0
    if i + k > n or not lo <= data[i + 1] <= hi:
        return 0
    for j in range(i + 2, i + k):
        if not 0x80 <= data[j] <= 0xBF:
            return 0
    return k


def utf8(data):
    """Decode bytes, replacing each byte that is not valid UTF-8 with U+FFFD."""
    n = len(data)
    if not n or max(data) < 0x80:
        return data.decode()
    out = []
    i = start = 0
    while i < n:
        k = _valid_len(data, i, n)
        if k:
            i += k
            continue
        out.append(data[start:i].decode())
        out.append(_REPL)
        i += 1
        start = i
    out.append(data[start:].decode())
    return "".join(out)


def cut(data, limit):
    """At most limit bytes of data, not splitting a UTF-8 sequence."""
    if len(data) <= limit:
        return data
    end = limit
    # Step back over continuation bytes to the start of a cut character.
    while end > 0 and limit - end < 3 and (data[end] & 0xC0) == 0x80:
        end -= 1
    return data[:end]
