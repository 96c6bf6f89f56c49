"""``exchnode node|send|receive|catalog|sub|audit``: handed to ``python -m node`` unread."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from exchnode.cli import launcher, main

REPO = Path(__file__).resolve().parents[2]


def test_source_tree_is_the_checkout() -> None:
    assert launcher.source_tree() == REPO


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
    assert command == [sys.executable, "-m", "node", *expected]
    assert env["PYTHONPATH"].split(os.pathsep) == [str(REPO), "/elsewhere"]


def test_without_node_directory_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(launcher, "source_tree", lambda: None)
    monkeypatch.setattr(launcher, "_execve", lambda *call: pytest.fail("must not launch"))
    assert main(["node", "run", "--config", "x.toml"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "node/ of the exchnode source tree" in err
