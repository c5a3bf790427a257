# Job signatures (PROTOCOL 9): HMAC-SHA256 of a job's id, timestamp, type
# and command under the fleet's job_key, and the age window. MicroPython has
# hashlib.sha256 but no hmac module, so HMAC (RFC 2104) is built on it here;
# CPython uses its own hmac. Nothing here ever puts the key in a text.
import binascii
import hashlib
import sys

# Before this (2024-01-01T00:00:00Z) the device clock is "not set yet": a
# router without RTC boots in 1970 until NTP answers (PROTOCOL 9).
CLOCK_SET = 1704067200
_BLOCK = 64  # SHA-256's block size in bytes


def _hmac(key, msg):
    """HMAC-SHA256 (RFC 2104) on hashlib.sha256 alone: key and msg bytes ->
    32 bytes. The runtime's own hmac, where there is one, gives the same."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key + b"\0" * (_BLOCK - len(key))
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    inner.update(msg)
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    outer.update(inner.digest())
    return outer.digest()


if sys.implementation.name == "micropython":
    hmac_sha256 = _hmac
else:
    import hmac as _hmac_mod

    def hmac_sha256(key, msg):
        """HMAC-SHA256: key and msg bytes -> 32 bytes."""
        return _hmac_mod.digest(key, msg, "sha256")


def equal(a, b):
    """a == b for two bytes (or two str) in a time that does not depend on
    where they first differ: a forger learns nothing from how fast a wrong
    signature is refused. Only the length may show."""
    if isinstance(a, str):
        a = a.encode()
    if isinstance(b, str):
        b = b.encode()
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0


def message(job_id, timestamp, kind, msg):
    """The signed bytes (PROTOCOL 9): id, timestamp (int, in decimal), type
    and command, joined by "\\n", in UTF-8."""
    return ("%s\n%d\n%s\n%s" % (job_id, timestamp, kind, msg)).encode()


def signature(key, job_id, timestamp, kind, msg):
    """The lowercase hex signature (64 characters) of a job; key is job_key
    (str, used as its UTF-8 bytes)."""
    mac = hmac_sha256(key.encode(), message(job_id, timestamp, kind, msg))
    return binascii.hexlify(mac).decode()


def check(job, key, max_age, now):
    """None when the job record (jobs.queue.parse: "id", "msg", "type",
    "timestamp" and "sig" as the payload had them, None when absent) is
    signed with key (job_key) and its timestamp is within max_age seconds of
    now (the device clock, Unix seconds; not checked while the clock is not
    set, before CLOCK_SET). Else the reason for the REJECTED event: it says
    "signature" or "expired", and never holds the key (PROTOCOL 9)."""
    sig, ts = job.get("sig"), job.get("timestamp")
    if sig is None:
        return "signature missing: this device runs only signed jobs"
    if not isinstance(sig, str):
        return "signature must be a string of 64 lowercase hex digits"
    if type(ts) is not int:  # bool is an int in Python, not in JSON
        return "signature needs an integer timestamp (seconds since 1970)"
    if not equal(sig, signature(key, job["id"], ts, job["type"], job["msg"])):
        return "signature does not match"
    if now >= CLOCK_SET and abs(now - ts) > max_age:
        return "expired: timestamp %d is %d s away from the device clock (job_max_age %d)" % (
            ts, now - ts, max_age)
    return None
