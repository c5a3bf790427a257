import socket

from portable.support import tmpdir
from socketman import log, rt


def test_redacts_registered_secrets_and_url_tokens():
    log.secret("hunter2")
    log.secret("tok-123")
    assert log.redact("pw hunter2 here") == "pw *** here"
    assert log.redact("http://h/s?access_token=abc&mac=x") == "http://h/s?access_token=***&mac=x"
    assert "tok-123" not in log.redact("token tok-123")


def test_syslog_datagrams():
    d = tmpdir()
    path = d + "/log.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(rt.unix_addr(path))
    try:
        log.setup(verbose=False, terminal=False, syslog_path=path)
        log.secret("s3cret")
        log.info("hello s3cret")
        log.debug("not shown")
        got = srv.recv(512)
        assert got == b"<30>socketman: hello ***", got
        log.setup(verbose=True, terminal=False, syslog_path=path)
        log.debug("shown")
        assert srv.recv(512) == b"<31>socketman: shown"
    finally:
        srv.close()
        log.setup(verbose=True, terminal=True)
