"""tls.py on keys made by openssl (PROTOCOL 9): the PKCS#8 keys OpenSSL 3
writes unwrap into exactly the traditional DER `openssl ec` and `openssl rsa
-traditional` give, which MicroPython 1.23's ssl loads (its Mbed TLS
refuses the PKCS#8 form)."""
import subprocess

import pytest

from socketman import tls as agent_certs


def openssl_der(*args):
    return subprocess.run(["openssl", *args, "-outform", "DER"], check=True, capture_output=True,
                          timeout=30).stdout


@pytest.mark.parametrize("name", ["client_ec_key", "client_ec_sec1_key", "client_rsa_key"])
def test_unwrapped_keys_are_what_openssl_writes(certs, name):
    with open(certs[name], "rb") as f:
        kind, der = agent_certs.private_key(f.read())
    if kind == "ec":
        want = openssl_der("ec", "-in", certs[name])
    else:
        want = openssl_der("rsa", "-traditional", "-in", certs[name])
    assert kind == ("rsa" if "rsa" in name else "ec")
    assert der == want


def test_ed25519_stays_pkcs8(certs):
    with open(certs["client_ed_key"], "rb") as f:
        kind, der = agent_certs.private_key(f.read())
    assert kind == "other"
    assert der == openssl_der("pkey", "-in", certs["client_ed_key"])


def test_client_pair_takes_the_first_certificate(certs, tmp_path):
    chain = tmp_path / "chain.pem"
    with open(certs["client_ec"]) as leaf, open(certs["ca"]) as ca:
        chain.write_text(leaf.read() + ca.read())
    kind, (cert, key) = agent_certs.client_pair(str(chain), certs["client_ec_key"])
    assert kind == "ec"
    assert cert == openssl_der("x509", "-in", certs["client_ec"])
