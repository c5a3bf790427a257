"""PEM blocks, private key forms and PKCS#8 unwrapping (tls.py, PROTOCOL
9), on made-up DER: the structure is what counts here. Real keys made by
openssl are checked in test_tls_openssl.py."""
import binascii

from portable.support import raises, tmpdir, write
from socketman import tls as certs

P256 = b"\x06\x08\x2a\x86\x48\xce\x3d\x03\x01\x07"   # OID prime256v1, whole TLV
EC_ALG = b"\x06\x07\x2a\x86\x48\xce\x3d\x02\x01"
RSA_ALG = b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01"
ED25519_ALG = b"\x06\x03\x2b\x65\x70"


def tlv(tag, body):
    return certs._tlv(tag, body)


def pem(label, der, headers=b""):
    b64 = binascii.b2a_base64(der).replace(b"\n", b"")
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return (b"-----BEGIN " + label + b"-----\n" + headers + b"\n".join(lines)
            + b"\n-----END " + label + b"-----\n")


PRIV = tlv(0x04, bytes(range(32)))
PUB = tlv(0xA1, tlv(0x03, b"\x00\x04" + bytes(range(64))))
SEC1_NO_CURVE = tlv(0x30, tlv(0x02, b"\x01") + PRIV + PUB)
SEC1 = tlv(0x30, tlv(0x02, b"\x01") + PRIV + tlv(0xA0, P256) + PUB)
PKCS1 = tlv(0x30, tlv(0x02, b"\x00") + tlv(0x02, b"\x00" + b"\xc3" * 300) + tlv(0x02, b"\x01\x00\x01"))


def pkcs8(alg, inner):
    return tlv(0x30, tlv(0x02, b"\x00") + tlv(0x30, alg) + tlv(0x04, inner))


def test_der_lengths_round_trip():
    for n in (0, 1, 127, 128, 255, 256, 1000, 70000):
        b = tlv(0x04, b"x" * n)
        items = certs._items(b, 0, len(b))
        assert items == [(0x04, len(b) - n, len(b), 0)], n
    assert raises(ValueError, certs._items, b"\x04\x05abc", 0, 5)
    assert raises(ValueError, certs._items, b"\x04\x85\x01\x01\x01\x01\x01", 0, 7)


def test_blocks_and_certificates():
    text = (b"junk before\n" + pem(b"CERTIFICATE", b"one") + b"# a comment\n"
            + pem(b"TRUSTED CERTIFICATE", b"other") + pem(b"CERTIFICATE", b"two")
            + b"-----BEGIN CERTIFICATE-----\n!!notbase64!!\n-----END CERTIFICATE-----\n")
    assert certs.certificates(text) == [b"one", b"two"]
    assert certs.certificates(text.replace(b"\n", b"\r\n")) == [b"one", b"two"]
    assert certs.certificates(b"") == [] and certs.certificates(b"no pem here") == []
    labels = [b[0] for b in certs.blocks(text)]
    assert labels == ["CERTIFICATE", "TRUSTED CERTIFICATE", "CERTIFICATE", "CERTIFICATE"]
    assert certs.blocks(text)[3][1] is None and "base64" in certs.blocks(text)[3][2]


def test_traditional_keys_pass_as_they_are():
    assert certs.private_key(pem(b"EC PRIVATE KEY", SEC1)) == ("ec", SEC1)
    assert certs.private_key(pem(b"RSA PRIVATE KEY", PKCS1)) == ("rsa", PKCS1)
    # openssl ecparam -genkey writes the curve first: skipped.
    both = pem(b"EC PARAMETERS", P256) + pem(b"EC PRIVATE KEY", SEC1)
    assert certs.private_key(both) == ("ec", SEC1)


def test_pkcs8_is_unwrapped():
    assert certs.private_key(pem(b"PRIVATE KEY", pkcs8(RSA_ALG + b"\x05\x00", PKCS1))) == ("rsa", PKCS1)
    # EC: PKCS#8 leaves the curve out of the inner key; it is put back.
    assert certs.private_key(pem(b"PRIVATE KEY", pkcs8(EC_ALG + P256, SEC1_NO_CURVE))) == ("ec", SEC1)
    assert certs.unwrap_pkcs8(pkcs8(EC_ALG + P256, SEC1)) == ("ec", SEC1)
    no_pub = tlv(0x30, tlv(0x02, b"\x01") + PRIV)
    assert certs.unwrap_pkcs8(pkcs8(EC_ALG + P256, no_pub)) == (
        "ec", tlv(0x30, tlv(0x02, b"\x01") + PRIV + tlv(0xA0, P256)))
    ed = pkcs8(ED25519_ALG, tlv(0x04, bytes(32)))
    assert certs.private_key(pem(b"PRIVATE KEY", ed)) == ("other", ed)
    assert certs.private_key(pem(b"DSA PRIVATE KEY", b"\x30\x00")) == ("other", b"\x30\x00")


def test_bad_keys_are_value_errors_without_key_material():
    secret = bytes(range(100, 140))
    cases = [
        (b"", "no PEM private key"),
        (pem(b"CERTIFICATE", b"x"), "no PEM private key"),
        (pem(b"ENCRYPTED PRIVATE KEY", secret), "encrypted"),
        (pem(b"RSA PRIVATE KEY", secret, b"Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\n"), "encrypted"),
        (pem(b"PRIVATE KEY", secret), "PKCS#8"),
        (pem(b"PRIVATE KEY", pkcs8(EC_ALG + b"\x30\x00", SEC1_NO_CURVE)), "PKCS#8"),
        (pem(b"PRIVATE KEY", pkcs8(EC_ALG + P256, tlv(0x04, b"")))[:-30] + b"\n-----END PRIVATE KEY-----\n",
         "PRIVATE KEY"),
    ]
    for text, word in cases:
        e = raises(ValueError, certs.private_key, text)
        assert word in str(e), (text[:40], e)
        assert binascii.hexlify(secret).decode()[:8] not in str(e)


def test_client_pair_names_the_key_and_the_file():
    d = tmpdir()
    cert = write(d + "/c.pem", pem(b"CERTIFICATE", b"leaf") + pem(b"CERTIFICATE", b"intermediate"))
    key = write(d + "/k.pem", pem(b"EC PRIVATE KEY", SEC1))
    assert certs.client_pair(cert, key) == ("ec", [b"leaf", SEC1])
    e = raises(ValueError, certs.client_pair, key, key)
    assert str(e).startswith("client_cert: %s: " % key) and "certificate" in str(e)
    e = raises(ValueError, certs.client_pair, cert, cert)
    assert str(e).startswith("client_key: %s: " % cert)
    e = raises(ValueError, certs.client_pair, cert, d + "/gone.pem")
    assert str(e).startswith("client_key: ")


def test_tls_notes():
    n = certs.tls_note
    assert n("connect timed out") == "connect timed out"
    assert n("broker refused: bad user name or password") == "broker refused: bad user name or password"
    v = "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"
    assert n(v) == v  # our check of the server, not its of us
    assert "requires a client certificate" in n(
        "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required (_ssl.c:2580)")
    assert "refused our client certificate" in n("[SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca")
    assert "refused our client certificate" in n("[SSL: SSLV3_ALERT_BAD_CERTIFICATE] sslv3 alert bad certificate")
    for r in ("(-30592, 'MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE')", "32", "104", "[Errno 32] EPIPE",
              "EOF occurred in violation of protocol (_ssl.c:2427)", "connection closed by broker"):
        assert "client certificate" in n(r) and n(r).startswith(r), r
    # MicroPython's Mbed TLS and a server chain over one record (issue 24)
    for r in ("(-28800, 'MBEDTLS_ERR_SSL_FEATURE_UNAVAILABLE')", "(-28928, 'MBEDTLS_ERR_SSL_BAD_INPUT_DATA')"):
        assert n(r).startswith(r) and "over one TLS record (16 KiB)" in n(r) and "client certificate" not in n(r)


def test_certificates_are_the_der_of_each_block():
    der1, der2 = b"\x30\x03\x02\x01\x01", b"\x30\x03\x02\x01\x02"
    pem = b"junk\n"
    for der in (der1, der2):
        pem += b"-----BEGIN CERTIFICATE-----\n" + binascii.b2a_base64(der) + b"-----END CERTIFICATE-----\n"
    assert certs.certificates(pem) == [der1, der2]
    assert certs.certificates(b"no certs") == []
