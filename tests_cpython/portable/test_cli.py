from portable.support import raises
from socketman import cli


def test_defaults():
    o = cli.parse([])
    assert o["config"] == cli.DEFAULT_CONFIG
    assert o["init_url"] == "" and o["secret_file"] == "" and not o["debug"] and not o["help"] and not o["version"]


def test_config_both_forms():
    assert cli.parse(["--config=/a.json"])["config"] == "/a.json"
    assert cli.parse(["--config", "/b.json"])["config"] == "/b.json"


def test_flags():
    o = cli.parse(["--debug", "--version", "--help", "-b", "http://127.0.0.1:1/init"])
    assert o["debug"] and o["version"] and o["help"]
    assert o["init_url"] == "http://127.0.0.1:1/init"


def test_errors():
    for argv in (["--nope"], ["-x"], ["--config"], ["--config="], ["-b"], ["-b", "notaurl"],
                 ["positional"], ["--debug=1"]):
        raises(cli.UsageError, cli.parse, argv)


def test_secret_file_with_b():
    o = cli.parse(["-b", "https://init.example/i", "--secret-file", "/etc/socketman/secret"])
    assert o["secret_file"] == "/etc/socketman/secret" and o["init_url"] == "https://init.example/i"
    assert cli.parse(["--secret-file=/s", "-b=http://127.0.0.1/i"])["secret_file"] == "/s"
    assert cli.parse([])["secret_file"] == ""
    for argv in (["--secret-file", "/s"], ["-b", "http://127.0.0.1/i", "--secret-file"],
                 ["-b", "http://127.0.0.1/i", "--secret-file="]):
        raises(cli.UsageError, cli.parse, argv)
