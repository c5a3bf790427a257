"""Test certificates made with openssl at test time."""
import os
import subprocess


def _run(*args, cwd):
    subprocess.run(args, cwd=cwd, check=True, capture_output=True, timeout=60)


def make(directory):
    """CA + server cert (SAN DNS:localhost only) and an unrelated CA."""
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
    # A bundle with the right CA second, to check that every cert of a PEM counts.
    with open(os.path.join(d, "bundle.pem"), "w") as out:
        for name in ("other-ca.pem", "ca.pem"):
            with open(os.path.join(d, name)) as f:
                out.write(f.read())
    return {k: os.path.join(d, v) for k, v in (
        ("ca", "ca.pem"), ("cert", "server.pem"), ("key", "server.key"),
        ("other_ca", "other-ca.pem"), ("bundle", "bundle.pem"))}
