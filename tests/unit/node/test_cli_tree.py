"""The command line as a whole: every leaf verb has an example, honours $EXCHNODE_CONFIG, and
is offered by the shell completion (bash, and zsh where it is installed).

These walk the argparse trees, so a verb added later is checked without being listed here.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from exchnode.cli import build_parser as exchnode_parser
from exchnode.cli.completion import describe, joined, script
from exchnode.node import completion as daemon_completion
from exchnode.node.cli import build_parser
from exchnode.node.cli_examples import leaves
from exchnode.node.content_types import content_type_of


def _own_leaves(
    parser: argparse.ArgumentParser,
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """The leaves that parse their own arguments (not the launcher's hand-overs to the daemon)."""
    return [(path, leaf) for path, leaf in leaves(parser) if "\x00" not in leaf.prefix_chars]


def test_every_leaf_verb_has_an_example_in_its_help() -> None:
    missing = [
        " ".join(("exchnode node", *path))
        for path, leaf in _own_leaves(build_parser())
        if "Example" not in (leaf.epilog or "") + (leaf.description or "")
    ]
    missing += [
        " ".join(("exchnode", *path))
        for path, leaf in _own_leaves(exchnode_parser())
        if "Example" not in (leaf.epilog or "") + (leaf.description or "")
    ]
    assert missing == [], f"leaf verbs without an example in --help: {missing}"
    assert len(_own_leaves(build_parser())) >= 40  # the walk found the tree, not a stub of it


def _config_leaves() -> list[tuple[str, ...]]:
    return [
        path
        for path, leaf in _own_leaves(build_parser())
        if any("--config" in action.option_strings for action in leaf._actions)
    ]


def _parse_config(path: tuple[str, ...], *extra: str) -> Path:
    """``--config`` as the verb at ``path`` reads it, with the fewest arguments it accepts."""
    parser = build_parser()
    leaf = dict(_own_leaves(parser))[path]
    positional = [
        "1" if action.choices is None else sorted(action.choices)[0]
        for action in leaf._actions
        if not action.option_strings
        and action.nargs not in ("?", "*", argparse.REMAINDER)
        and action.dest != "help"
    ]
    required: list[str] = []
    for action in leaf._actions:
        if action.option_strings and action.required:
            value = "1" if action.choices is None else sorted(action.choices)[0]
            required += [action.option_strings[0], value]
    for group in leaf._mutually_exclusive_groups:
        if group.required:
            required.append(group._group_actions[0].option_strings[0])
    args = parser.parse_args([*path, *required, *extra, *positional])
    return Path(args.config)


def test_every_verb_that_reads_a_config_honours_the_flag_then_the_environment() -> None:
    paths = _config_leaves()
    assert {("send",), ("receive",), ("status",), ("health",), ("run",)} <= set(paths)
    assert {("message", "status"), ("backup",), ("restore",)} <= set(paths)
    mp = pytest.MonkeyPatch()
    try:
        for path in paths:
            mp.delenv("EXCHNODE_CONFIG", raising=False)
            assert _parse_config(path) == Path("node.toml"), path
            mp.setenv("EXCHNODE_CONFIG", "/srv/from-env/node.toml")
            assert _parse_config(path) == Path("/srv/from-env/node.toml"), path
            assert _parse_config(path, "--config", "/srv/flag.toml") == Path("/srv/flag.toml"), path
    finally:
        mp.undo()


def _entries() -> list[tuple[tuple[str, ...], list[str], list[str]]]:
    """Both trees joined, the daemon's as it describes itself to ``exchnode completion``."""
    daemon = list(daemon_completion.describe(build_parser()))
    assert daemon == list(describe(build_parser()))  # the two walks agree
    return joined(list(describe(exchnode_parser())), daemon)


def test_the_completion_offers_every_verb_of_both_trees() -> None:
    entries = _entries()
    text = script("bash", entries)
    offered = {path: verbs for path, verbs, _ in entries}
    for path, _leaf in _own_leaves(build_parser()):
        if path == ("completion-tree",):
            continue  # for the completion itself, not offered
        assert path[-1] in offered[("node", *path[:-1])], path
        if path[0] in ("send", "receive", "catalog", "sub", "audit"):
            assert path[-1] in offered[path[:-1]], path  # exchnode sub approve = ... node sub ...
    for path, _leaf in _own_leaves(exchnode_parser()):
        assert path[-1] in offered[path[:-1]], path
    assert "completion-tree" not in offered[("node",)]
    # Each verb path is a key of the generated script.
    for path in offered:
        assert f"_exchnode_verbs[{'/'.join(('exchnode', *path))}]=" in text


def _complete(shell: str, words: list[str], script_path: Path) -> list[str]:
    """What the loaded completion offers for ``words`` (the last one being typed)."""
    quoted = " ".join(f"'{w}'" for w in words)
    body = (
        f"source {script_path}\n"
        + ("setopt ksharrays\n" if shell == "zsh" else "")
        + f"COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}\n"
        + "_exchnode\n"
        + 'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(
        [shell, "-c", body], capture_output=True, text=True, timeout=30, check=False, cwd="/"
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_bash_completes_verbs_and_options(tmp_path: Path) -> None:
    loaded = tmp_path / "exchnode.bash"
    loaded.write_text(script("bash", _entries()))
    assert _complete("bash", ["exchnode", "node", "ca"], loaded) == ["catalog"]
    assert _complete("bash", ["exchnode", "sub", "app"], loaded) == ["approve"]
    assert _complete("bash", ["exchnode", "node", "admin", "crl", ""], loaded) == [
        "add", "list", "reload",
    ]  # fmt: skip
    assert _complete("bash", ["exchnode", "node", "message", ""], loaded) == ["status"]
    assert _complete("bash", ["exchnode", "send", "--c"], loaded) == ["--config", "--content-type"]
    assert "--drain" in _complete("bash", ["exchnode", "receive", "--d"], loaded)
    assert "issue-node" in _complete("bash", ["exchnode", "pki", ""], loaded)
    assert _complete("bash", ["exchnode", "completion", ""], loaded) == ["bash", "zsh"]


def test_exchnode_completion_asks_the_daemon_for_its_verbs(tmp_path: Path) -> None:
    """The command as installed: ``exchnode completion bash`` runs the daemon's description."""
    done = subprocess.run(
        [sys.executable, "-P", "-m", "exchnode.cli", "completion", "bash"],
        capture_output=True, text=True, timeout=120, check=False, cwd="/",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == script("bash", _entries())


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_runs_the_same_completion_through_bashcompinit(tmp_path: Path) -> None:
    loaded = tmp_path / "exchnode.zsh"
    loaded.write_text(script("zsh", _entries()))
    # zsh's compgen hands every candidate to zsh, which matches the prefix itself: the verbs
    # under the path typed so far are what is offered.
    offered = _complete("zsh", ["exchnode", "node", "admin", "crl", "a"], loaded)
    assert offered == ["add", "list", "reload"]
    assert "approve" in _complete("zsh", ["exchnode", "sub", "ap"], loaded)


@pytest.mark.parametrize(
    ("file", "expected"),
    [
        ("report.json", "application/json"),
        ("/data/REPORT.JSON", "application/json"),
        ("rows.csv", "text/csv"),
        ("rows.csv.gz", "application/octet-stream"),
        ("scan.png", "image/png"),
        ("-", "application/octet-stream"),
        ("blob", "application/octet-stream"),
    ],
)
def test_content_type_follows_the_extension(file: str, expected: str) -> None:
    assert content_type_of(file) == expected
