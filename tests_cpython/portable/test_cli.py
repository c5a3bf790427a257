from portable.support import raises
from socketman import cli


def test_defaults():
    o = cli.parse([])
    assert o["config"] == cli.DEFAULT_CONFIG
    assert o["init_url"] == "" and not o["debug"] and not o["help"] and not o["version"]


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
