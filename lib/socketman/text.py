# Bytes -> text that is always valid UTF-8. MicroPython's decode() has no
# errors="replace" and lets overlong forms through, and command output or
# files can hold any bytes, so validate here on both runtimes.

_REPL_BYTES = b"\xef\xbf\xbd"  # U+FFFD


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
    """Decode bytes, replacing each byte that is not valid UTF-8 with U+FFFD.
    Memory: the input, one bytearray of exactly the output's size and the
    str made from it, whatever the bytes are (a list of pieces cost two
    objects per bad byte and ran MicroPython's heap out on binary output)."""
    n = len(data)
    if not n or max(data) < 0x80:
        return bytes(data).decode()
    bad = 0
    i = 0
    while i < n:  # first pass: the output's size
        k = _valid_len(data, i, n)
        if k:
            i += k
        else:
            bad += 1
            i += 1
    if not bad:
        return bytes(data).decode()
    out = bytearray(n + 2 * bad)  # U+FFFD is 3 bytes where 1 bad byte was
    src = memoryview(data)
    i = start = pos = 0
    while i < n:
        k = _valid_len(data, i, n)
        if k:
            i += k
            continue
        out[pos:pos + i - start] = src[start:i]
        pos += i - start
        out[pos:pos + 3] = _REPL_BYTES
        pos += 3
        i += 1
        start = i
    out[pos:] = src[start:]
    return str(out, "utf-8")


def cut(data, limit):
    """At most limit bytes of data, not splitting a UTF-8 sequence."""
    if len(data) <= limit:
        return data
    end = limit
    # Step back over continuation bytes to the start of a cut character.
    while end > 0 and limit - end < 3 and (data[end] & 0xC0) == 0x80:
        end -= 1
    return data[:end]


def valid(data):
    """True when the bytes data are valid UTF-8 (no overlong forms, no
    surrogates). Allocates nothing, whatever the bytes."""
    n = len(data)
    if not n or max(data) < 0x80:
        return True
    i = 0
    while i < n:
        k = _valid_len(data, i, n)
        if not k:
            return False
        i += k
    return True


# JSON string escapes of the bytes that need one (RFC 8259 section 7).
_JSON_ESC = {0x22: b'\\"', 0x5C: b"\\\\", 0x0A: b"\\n", 0x0D: b"\\r", 0x09: b"\\t"}


def json_into(buf, pos, end, data):
    """Write the bytes data (any bytes) into buf[pos:end] (a bytearray) as
    the inside of a JSON string: valid UTF-8 as it is, U+FFFD for each byte
    that is not, the escapes JSON needs. Stops before a character that would
    pass end. -> (position after the last byte written, bytes of data
    written). Allocates nothing per byte: a router's heap holds the output
    and buf, whatever the bytes are (issue 16: the text, its JSON and their
    copies did not fit)."""
    n = len(data)
    src = memoryview(data)
    i = 0
    while i < n:
        j = i
        while j < n and 0x20 <= data[j] < 0x80 and data[j] != 0x22 and data[j] != 0x5C:
            j += 1
        if j > i:  # a run that needs no escape
            j = min(j, i + end - pos)
            buf[pos:pos + j - i] = src[i:j]
            pos += j - i
            i = j
            if i == n or pos == end:
                break
        c = data[i]
        step = 1
        if c < 0x80:
            w = _JSON_ESC.get(c) or b"\\u%04x" % c
        else:
            step = _valid_len(data, i, n)
            w = src[i:i + step] if step else _REPL_BYTES
            step = step or 1
        if pos + len(w) > end:
            break
        buf[pos:pos + len(w)] = w
        pos += len(w)
        i += step
    return pos, i
