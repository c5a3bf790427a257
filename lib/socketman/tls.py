# All of TLS but the connection itself (conn.py wraps the socket): client
# contexts that verify the server against a CA file (PROTOCOL 1 cacrt,
# insecure) and present the device's own certificate (9 client_cert,
# client_key), PEM files and the DER inside them, and how a server's
# refusal of our certificate shows. Loaded only when something uses TLS. MicroPython's ssl
# takes DER only (its Mbed TLS has no PEM parser), and MicroPython 1.23's
# refuses a key in a PKCS#8 container ("BEGIN PRIVATE KEY", what OpenSSL 3
# writes for RSA and EC alike) while it loads the same key in its
# traditional form (PKCS#1 "RSA PRIVATE KEY", SEC1 "EC PRIVATE KEY"): keys
# are unwrapped here, with a few lines of DER. No text made here ever holds
# key material.
import binascii
import errno

from . import fs, rt, text

_RSA_OID = b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01"   # 1.2.840.113549.1.1.1 rsaEncryption
_EC_OID = b"\x2a\x86\x48\xce\x3d\x02\x01"             # 1.2.840.10045.2.1 id-ecPublicKey
SEQUENCE, INTEGER, OCTETS, OID = 0x30, 0x02, 0x04, 0x06
EC_PARAMS, EC_PUBLIC = 0xA0, 0xA1


def blocks(pem):
    """[(label str, DER bytes or None, problem)] of the PEM text pem (bytes),
    in order; text outside the blocks is ignored. problem is None, or why
    the DER is None: a block with headers (Proc-Type: an encrypted
    traditional key) or bad base64. Never raises."""
    out, cur, label, headers = [], None, "", False
    for line in pem.split(b"\n"):
        line = line.strip()
        if line.startswith(b"-----BEGIN ") and line.endswith(b"-----"):
            cur, label, headers = [], text.utf8(line[11:-5]), False
        elif line.startswith(b"-----END ") and cur is not None:
            if headers:
                out.append((label, None, "its %s is encrypted" % label))
            else:
                try:
                    out.append((label, binascii.a2b_base64(b"".join(cur)), None))
                except Exception:  # ValueError; a pure-Python binascii raises Exception
                    out.append((label, None, "bad base64 in its %s" % label))
            cur = None
        elif cur is not None and line:
            if b":" in line:  # base64 has no ":"; a PEM header has
                headers = True
            else:
                cur.append(line)
    return out


def certificates(pem):
    """Each certificate of a PEM text (bytes) as DER bytes; [] when none. A
    damaged block is left out, the others count."""
    return [der for label, der, bad in blocks(pem) if label == "CERTIFICATE" and not bad]


def private_key(pem):
    """The first private key of a PEM text (bytes) -> (kind, DER) with kind
    "rsa" (DER: PKCS#1), "ec" (DER: SEC1, with its curve) or "other" (DER:
    PKCS#8 of another algorithm, or another label's DER). ValueError: no
    key, a damaged one, or an encrypted one (the agent has no passphrase to
    give)."""
    for label, der, bad in blocks(pem):
        if not label.endswith("PRIVATE KEY"):
            continue
        if label == "ENCRYPTED PRIVATE KEY" or (bad and "encrypted" in bad):
            raise ValueError("its private key is encrypted: the agent has no passphrase to give, "
                             "it needs the key unencrypted")
        if bad:
            raise ValueError(bad)
        if label == "RSA PRIVATE KEY":
            return "rsa", der
        if label == "EC PRIVATE KEY":
            return "ec", der
        if label == "PRIVATE KEY":
            return unwrap_pkcs8(der)
        return "other", der
    raise ValueError("no PEM private key in it")


def unwrap_pkcs8(der):
    """A PKCS#8 PrivateKeyInfo (DER) -> (kind, DER) as private_key() says:
    RSA's inner PKCS#1 key as it is; EC's inner SEC1 key with the curve
    copied in from the algorithm (PKCS#8 leaves it out there, and Mbed TLS
    cannot load SEC1 without it). ValueError when the DER is not PKCS#8."""
    try:
        top = _items(der, 0, len(der))
        if len(top) != 1 or top[0][0] != SEQUENCE:
            raise ValueError
        info = _items(der, top[0][1], top[0][2])
        if len(info) < 3 or info[0][0] != INTEGER or info[1][0] != SEQUENCE or info[2][0] != OCTETS:
            raise ValueError
        alg = _items(der, info[1][1], info[1][2])
        if not alg or alg[0][0] != OID:
            raise ValueError
        oid = der[alg[0][1]:alg[0][2]]
        inner = der[info[2][1]:info[2][2]]
        if oid == _RSA_OID:
            return "rsa", inner
        if oid != _EC_OID:
            return "other", der
        if len(alg) < 2 or alg[1][0] != OID:
            raise ValueError  # explicit curve parameters: not for a client key
        return "ec", _sec1_with_curve(inner, der[alg[1][3]:alg[1][2]])
    except (ValueError, IndexError):
        raise ValueError("its PRIVATE KEY is not a PKCS#8 key")


def _sec1_with_curve(sec1, curve):
    """ECPrivateKey (DER) with [0] parameters = curve (an OID's whole DER)
    when it has none."""
    top = _items(sec1, 0, len(sec1))
    if len(top) != 1 or top[0][0] != SEQUENCE:
        raise ValueError
    parts = _items(sec1, top[0][1], top[0][2])
    if any(p[0] == EC_PARAMS for p in parts):
        return sec1
    out = []
    for tag, _, end, head in parts:
        if tag == EC_PUBLIC:
            out.append(_tlv(EC_PARAMS, curve))
        out.append(sec1[head:end])
    if not any(p[0] == EC_PUBLIC for p in parts):
        out.append(_tlv(EC_PARAMS, curve))
    return _tlv(SEQUENCE, b"".join(out))


def _items(b, pos, end):
    """The DER items between pos and end: [(tag, body start, body end,
    item start)]. ValueError when one runs past end."""
    out = []
    while pos < end:
        head = pos
        tag, n = b[pos], b[pos + 1]
        pos += 2
        if n & 0x80:
            k = n & 0x7F
            if not 1 <= k <= 4:
                raise ValueError
            n = 0
            for i in range(k):
                n = n << 8 | b[pos + i]
            pos += k
        if pos + n > end:
            raise ValueError
        out.append((tag, pos, pos + n, head))
        pos += n
    return out


def _tlv(tag, body):
    n = len(body)
    if n < 0x80:
        return bytes((tag, n)) + body
    size = b""
    while n:
        size = bytes((n & 0xFF,)) + size
        n >>= 8
    return bytes((tag, 0x80 | len(size))) + size + body


# ---- contexts ------------------------------------------------------------

SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"
_contexts = {}  # (cacrt, insecure) -> SSLContext


def context(cacrt, insecure):
    """A client SSLContext that verifies the server and its host name
    against cacrt (a PEM file), or the system bundle when cacrt is empty;
    with insecure, one that verifies nothing; both present the device's
    client certificate (use()). One per CA file, made on first use and
    shared by MQTT and HTTPS: loading a CA bundle is slow on a router.
    OSError when the CA file cannot be read or holds no certificate."""
    key = (cacrt, bool(insecure))
    ctx = _contexts.get(key)
    if ctx is None:
        ctx = _contexts[key] = _new_context(cacrt, insecure)
    return ctx


def _new_context(cacrt, insecure):
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if _client:  # the device's own certificate
        _load(ctx, _client)
    if insecure:
        if not rt.MPY:
            ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    ctx.verify_mode = ssl.CERT_REQUIRED
    path = cacrt or SYSTEM_CA
    pem = fs.read_file(path)
    if pem is None:
        if not cacrt and not rt.MPY:
            ctx.load_default_certs()
            return ctx
        raise OSError(errno.ENOENT, "cannot read CA file " + path)
    ders = certificates(pem)
    if not ders:
        raise OSError(errno.EINVAL, "no certificate in " + path)
    if rt.MPY:  # its Mbed TLS takes DER only
        for der in ders:
            ctx.load_verify_locations(cadata=der)
    else:
        ctx.load_verify_locations(cadata=pem.decode())
    return ctx


# ---- the device's certificate (PROTOCOL 9) ---------------------------------

# The device's certificate and key once use() took them: MicroPython
# [certificate DER, key DER], CPython [certificate path, key path] (its
# load_cert_chain reads files only). Empty: none is presented.
_client = []


def use(cert_path, key_path):
    """Present this certificate (PEM file; under MicroPython its first
    certificate only) and key (PEM file: RSA or EC as PKCS#1, SEC1 or
    PKCS#8, unencrypted) on every TLS connection made from now on, MQTT and
    HTTPS (PROTOCOL 9). Reads both files once, at start. ValueError
    "client_cert: <file>: <why>" or "client_key: ..." when a file holds no
    certificate or no usable key. None when the TLS library took them;
    else one line saying why this runtime cannot (none is presented then)."""
    kind, pair = client_pair(cert_path, key_path)
    if not rt.MPY:
        pair = [cert_path, key_path]
    import ssl
    try:
        _load(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), pair)
    except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
        return refused(kind, e)
    _client[:] = pair
    _contexts.clear()  # contexts made before this would go without it
    return None


def _load(ctx, pair):
    if rt.MPY:
        ctx.load_cert_chain(pair[0], pair[1])
    else:
        # An empty passphrase: OpenSSL would otherwise ask for one on the
        # terminal (private_key() refuses encrypted keys before this).
        ctx.load_cert_chain(pair[0], pair[1], password=lambda: b"")


def client_pair(cert_path, key_path):
    """Read a client certificate and key (PEM files) once -> (kind,
    [certificate DER, key DER]): the first certificate only (MicroPython's
    ssl takes one), the key in the form private_key() gives. ValueError
    "client_cert: <file>: <why>" or "client_key: ...": no certificate, no
    key, a damaged or an encrypted key."""
    ders = certificates(fs.read_file(cert_path) or b"")
    if not ders:
        raise ValueError("client_cert: %s: no PEM certificate in it" % cert_path)
    try:
        kind, key = private_key(fs.read_file(key_path) or b"")
    except ValueError as e:
        raise ValueError("client_key: %s: %s" % (key_path, e))
    return kind, [ders[0], key]


def refused(kind, e):
    """The one line for a key the TLS library refused (e from its
    load_cert_chain): which library, which kind of key, its reason."""
    import ssl
    lib = getattr(ssl, "MBEDTLS_VERSION", None) or getattr(ssl, "OPENSSL_VERSION", "?")
    name = {"rsa": "RSA", "ec": "EC"}.get(kind, "non-RSA, non-EC")
    return ("client_key: this runtime's TLS (%s) cannot use this %s key with client_cert (%s); "
            "no client certificate is presented" % (lib, name, getattr(e, "reason", None) or e))


# How a server's refusal of our client certificate shows: OpenSSL names the
# alert it got; Mbed TLS says only that a fatal alert came; a server that
# hangs up in the handshake is EPIPE, ECONNRESET or EOF.
_CERT_ALERTS = ("UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_UNKNOWN", "CERTIFICATE_EXPIRED",
                "CERTIFICATE_REVOKED", "UNSUPPORTED_CERTIFICATE", "ACCESS_DENIED", "DECRYPT_ERROR")
_HANGUPS = ("EOF OCCURRED", "ERRNO 32]", "ERRNO 104]", "BROKEN PIPE", "RESET BY PEER", "CLOSED BY")


# MicroPython's Mbed TLS (1.23 and 1.28) takes a handshake message in one
# TLS record only: a server whose certificate chain is over 16 KiB fails
# every handshake with MBEDTLS_ERR_SSL_FEATURE_UNAVAILABLE (Mbed-TLS #1840;
# the Mbed TLS of MicroPython 1.29 says MBEDTLS_ERR_SSL_BAD_INPUT_DATA).
CHAIN_NOTE = ("most likely the server's certificate chain is over one TLS record (16 KiB), more than "
              "this runtime's Mbed TLS takes: have the server send its certificate and intermediates "
              "only (no root, nothing extra), or use EC keys; see docs/CHOICES.md")


def tls_note(reason):
    """reason (the text of an error that ended a TLS connection before the
    server's first answer), with a note in brackets when it looks like the
    server refused our client certificate or wanted one, or sent a
    certificate chain too big for Mbed TLS; else reason as it is. Mbed TLS
    does not say which alert came, so there the note says what it most
    likely was."""
    up = reason.upper()
    likely = "as one does that refuses our client certificate" + ("" if _client else " or gets none")
    if "FEATURE_UNAVAILABLE" in up or "SSL_BAD_INPUT_DATA" in up:
        note = CHAIN_NOTE
    elif "CERTIFICATE_REQUIRED" in up:
        note = "the server requires a client certificate and got none"
    elif any(a in up for a in _CERT_ALERTS):
        note = "the server refused our client certificate"
    elif "FATAL_ALERT" in up:
        note = "the server ended the TLS handshake with an alert, " + likely
    elif reason in ("32", "104") or any(h in up for h in _HANGUPS):
        note = "the server hung up in the TLS handshake, " + likely
    else:
        return reason
    return "%s (%s)" % (reason, note)
