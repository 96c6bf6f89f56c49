"""``exchnode node|send|receive|catalog|sub|audit``: handed to the daemon unread."""

from __future__ import annotations

import sys

import pytest

from exchnode.cli import launcher, main


def test_the_daemon_is_installed_with_the_library() -> None:
    assert launcher.daemon_installed()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["node", "init", "--name", "520100", "--help"], ["init", "--name", "520100", "--help"]),
        (["node", "--help"], ["--help"]),
        (["send", "--to", "520100", "-"], ["send", "--to", "520100", "-"]),
        (["receive", "-h"], ["receive", "-h"]),
        (["catalog", "list", "--json"], ["catalog", "list", "--json"]),
        (
            ["sub", "approve", "ab" * 16, "--mask", "x=hash"],
            ["sub", "approve", "ab" * 16, "--mask", "x=hash"],
        ),
        (
            ["audit", "verify", "--offline", "--config", "n.toml"],
            ["audit", "verify", "--offline", "--config", "n.toml"],
        ),
        (
            ["audit", "records", "--from", "5", "--json"],
            ["audit", "records", "--from", "5", "--json"],
        ),
    ],
)
def test_arguments_pass_through_unread(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], expected: list[str]
) -> None:
    calls: list[tuple[str, list[str], dict[str, str]]] = []
    monkeypatch.setattr(launcher, "_execve", lambda *call: calls.append(call))
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    assert main(argv) == 0
    ((path, command, env),) = calls
    assert path == sys.executable
    # -P: a node.py or exchnode/ in the current directory cannot stand in for the daemon
    assert command == [sys.executable, "-P", "-m", "exchnode.node", *expected]
    assert env["PYTHONPATH"] == "/elsewhere"  # untouched: the daemon is installed


def test_without_the_daemon_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(launcher, "daemon_installed", lambda: False)
    monkeypatch.setattr(launcher, "_execve", lambda *call: pytest.fail("must not launch"))
    assert main(["node", "run", "--config", "x.toml"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "exchnode.node" in err
