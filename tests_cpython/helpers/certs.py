"""Test certificates made with openssl at test time."""
import os
import subprocess


def _run(*args, cwd):
    subprocess.run(args, cwd=cwd, check=True, capture_output=True, timeout=60)


def make(directory):
    """CA + server cert (SAN DNS:localhost only), an unrelated CA, and
    client certificates (paths by name: client_ec, client_ec_key, ...)."""
    d = str(directory)
    os.makedirs(d, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _run("openssl", "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
         "-subj", "/CN=SocketMan Test CA", cwd=d)
    _run("openssl", "req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost", cwd=d)
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n")
    _run("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf", cwd=d)
    _run("openssl", "req", "-x509", *ec, "-keyout", "other.key", "-out", "other-ca.pem", "-days", "2",
         "-subj", "/CN=Some Other CA", cwd=d)
    # Device (client) certificates, PROTOCOL 9: EC and RSA keys as OpenSSL 3
    # writes them (PKCS#8), the same EC key in SEC1 form, one from the other
    # CA (a broker must refuse it), and an Ed25519 one (Mbed TLS has no Ed25519).
    with open(os.path.join(d, "client.cnf"), "w") as f:
        f.write("basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    rsa = ["-newkey", "rsa:2048", "-nodes"]
    clients = (("client-ec", ec, "ca.pem", "ca.key"), ("client-rsa", rsa, "ca.pem", "ca.key"),
               ("client-other", ec, "other-ca.pem", "other.key"))
    for name, newkey, ca, ca_key in clients:
        _run("openssl", "req", *newkey, "-keyout", name + ".key", "-out", name + ".csr",
             "-subj", "/CN=" + name, cwd=d)
        _run("openssl", "x509", "-req", "-in", name + ".csr", "-CA", ca, "-CAkey", ca_key,
             "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile", "client.cnf", cwd=d)
    _run("openssl", "ec", "-in", "client-ec.key", "-out", "client-ec-sec1.key", cwd=d)
    _run("openssl", "genpkey", "-algorithm", "ed25519", "-out", "client-ed.key", cwd=d)
    _run("openssl", "req", "-new", "-key", "client-ed.key", "-out", "client-ed.csr", "-subj", "/CN=client-ed", cwd=d)
    _run("openssl", "x509", "-req", "-in", "client-ed.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "client-ed.pem", "-days", "2", "-extfile", "client.cnf", cwd=d)
    # A bundle with the right CA second, to check that every cert of a PEM counts.
    with open(os.path.join(d, "bundle.pem"), "w") as out:
        for name in ("other-ca.pem", "ca.pem"):
            with open(os.path.join(d, name)) as f:
                out.write(f.read())
    return {k: os.path.join(d, v) for k, v in (
        ("ca", "ca.pem"), ("cert", "server.pem"), ("key", "server.key"),
        ("other_ca", "other-ca.pem"), ("bundle", "bundle.pem"),
        ("client_ec", "client-ec.pem"), ("client_ec_key", "client-ec.key"),
        ("client_ec_sec1_key", "client-ec-sec1.key"),
        ("client_rsa", "client-rsa.pem"), ("client_rsa_key", "client-rsa.key"),
        ("client_other", "client-other.pem"), ("client_other_key", "client-other.key"),
        ("client_ed", "client-ed.pem"), ("client_ed_key", "client-ed.key"))}
