"""Device certificates end to end (PROTOCOL 9): a real Mosquitto whose
listener has `require_certificate true`, a real HTTPS server that requires
one too, certificates made by openssl at test time, the agent as a process
under CPython, MicroPython and the .mpy bundle."""
import json
import subprocess

import pytest

from helpers.device import BASE, config

CONNECT_S = 20


def key_lines(path):
    """The base64 lines of a PEM key: none may reach the agent's output."""
    with open(path) as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("-----")]


def mtls_config(tmp_path, broker, **kw):
    return config(tmp_path, broker, tls=1, port=broker.mtls_port, mqtt_host="localhost",
                  cacrt=broker.certs["ca"], **kw)


@pytest.mark.parametrize("case", ["ec", "ec-sec1", "rsa", "none", "other-ca"])
def test_broker_that_requires_a_certificate(agent_cmd, agents, tmp_path, broker, controllers, case):
    c = broker.certs
    pair = {"ec": ("client_ec", "client_ec_key"), "ec-sec1": ("client_ec", "client_ec_sec1_key"),
            "rsa": ("client_rsa", "client_rsa_key"), "other-ca": ("client_other", "client_other_key"),
            "none": None}[case]
    kw = {"client_cert": c[pair[0]], "client_key": c[pair[1]]} if pair else {}
    ctrl = controllers(broker, BASE)
    a = agents(agent_cmd, mtls_config(tmp_path, broker, **kw), tmp_path)
    if pair and case != "other-ca":
        ctrl.wait_event("CONNECT", online="1", timeout=CONNECT_S)
        ctrl.job("mtls", "echo mutual")
        assert ctrl.wait_event("PROCESSED", "mtls")["meta"]["msg"] == "mutual\n"
        assert "tls: client certificate %s" % c[pair[0]] in a.output()
    else:
        out = a.wait_log("next try in", timeout=CONNECT_S, count=2)
        line = [x for x in out.splitlines() if "connect to localhost:%d failed" % broker.mtls_port in x][0]
        assert "client certificate" in line, line
        assert ctrl.events("CONNECT") == []
        assert "as sm-" not in broker.output()  # the device never got as far as MQTT
        assert a.alive()
    out = a.output()
    assert "Traceback" not in out
    if pair:
        for line in key_lines(c[pair[1]]):
            assert line not in out


def test_a_key_this_runtime_cannot_load_is_one_line_at_start(agent_cmd, agents, tmp_path, broker, controllers,
                                                             runtime):
    # Ed25519: OpenSSL has it, Mbed TLS (MicroPython's ssl) has not.
    c = broker.certs
    ctrl = controllers(broker, BASE)
    a = agents(agent_cmd, mtls_config(tmp_path, broker, client_cert=c["client_ed"],
                                      client_key=c["client_ed_key"]), tmp_path)
    if runtime == "cpython":
        ctrl.wait_event("CONNECT", online="1", timeout=CONNECT_S)
    else:
        out = a.wait_log("next try in", timeout=CONNECT_S)
        lines = [x for x in out.splitlines() if "cannot use this" in x]
        assert len(lines) == 1, out
        assert "client_key: this runtime's TLS (Mbed TLS" in lines[0]
        assert "non-RSA, non-EC key" in lines[0] and "no client certificate is presented" in lines[0]
        assert "Traceback" not in out
        assert a.alive()
    for line in key_lines(c["client_ed_key"]):
        assert line not in a.output()


def test_https_with_a_client_certificate(agent_cmd, agents, tmp_path, http_server, certs):
    api = http_server(certs, client_ca=certs["ca"])
    boot = api.url("/boot", host="localhost")
    (tmp_path / "a").mkdir()
    with_cert = agents(agent_cmd, config(tmp_path / "a", boot_url=boot, cacrt=certs["ca"],
                                         client_cert=certs["client_ec"], client_key=certs["client_ec_key"]),
                       tmp_path / "a")
    r = api.wait("GET", "/boot", timeout=CONNECT_S)[0]
    assert r.peer_cn == "client-ec"
    assert with_cert.stop() == 0
    (tmp_path / "b").mkdir()
    without = agents(agent_cmd, config(tmp_path / "b", boot_url=boot, cacrt=certs["ca"]), tmp_path / "b")
    without.wait_log("boot: GET localhost", timeout=CONNECT_S)
    assert len(api.got("GET", "/boot")) == 1
    for line in key_lines(certs["client_ec_key"]):
        assert line not in with_cert.output()


def test_certificate_files_that_cannot_be_used_are_config_errors(agent_cmd, tmp_path, certs):
    enc = tmp_path / "encrypted.key"
    subprocess.run(["openssl", "pkcs8", "-topk8", "-in", certs["client_ec_key"], "-out", str(enc),
                    "-v2", "aes-256-cbc", "-passout", "pass:pw"], check=True, capture_output=True)
    trad_enc = tmp_path / "encrypted-trad.key"
    subprocess.run(["openssl", "ec", "-in", certs["client_ec_key"], "-out", str(trad_enc), "-aes128",
                    "-passout", "pass:pw"], check=True, capture_output=True)
    (tmp_path / "adir").mkdir()
    cert, key = certs["client_ec"], certs["client_ec_key"]
    cases = [
        ({"client_cert": cert}, "client_cert: set without client_key"),
        ({"client_key": key}, "client_key: set without client_cert"),
        ({"client_cert": str(tmp_path / "gone.pem"), "client_key": key}, "client_cert: cannot read"),
        ({"client_cert": cert, "client_key": str(tmp_path / "adir")}, "client_key: cannot read"),
        ({"client_cert": key, "client_key": key}, "client_cert: %s: no PEM certificate" % key),
        ({"client_cert": cert, "client_key": cert}, "client_key: %s: no PEM private key" % cert),
        ({"client_cert": cert, "client_key": str(enc)}, "client_key: %s: its private key is encrypted" % enc),
        ({"client_cert": cert, "client_key": str(trad_enc)}, "is encrypted"),
        ({"job_max_age": 10}, "job_max_age: 10 is out of range 30..86400"),
        ({"job_key": 5}, "job_key: must be a string"),
    ]
    for extra, want in cases:
        path = tmp_path / "config.json"
        path.write_text(json.dumps(config(tmp_path, **extra)))
        r = subprocess.run(agent_cmd + ["--config=" + str(path)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, (extra, r.stdout, r.stderr)
        assert want in r.stderr and r.stderr.count("\n") == 1, (extra, r.stderr)
        for line in key_lines(key):
            assert line not in r.stderr
