"""``completion-tree``: the daemon's verbs and options as JSON, for ``exchnode completion``.

``exchnode completion bash|zsh`` (``exchnode.cli.completion``) generates the
shell completion from the argparse trees; the library may not import the
daemon, so the daemon describes its own tree: one JSON array of ``[path,
verbs, options]`` per node of it, walked from the parser its verbs parse
with.  Not a verb for people: the completion does not offer it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from typing import Any

from .cli_common import add_verb

__all__ = ["describe", "register"]

TREE_VERB = "completion-tree"


def describe(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], list[str], list[str]]]:
    """Every node of the tree under ``parser``: its path, the verbs under it, its options."""
    children: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            children.update({k: v for k, v in action.choices.items() if k != TREE_VERB})
    options = sorted(
        option
        for action in parser._actions
        for option in action.option_strings
        if option.startswith("--") or option == "-h"
    )
    yield path, sorted(children), options
    for name, child in sorted(children.items()):
        yield from describe(child, (*path, name))


def _print_tree(args: argparse.Namespace) -> int:
    from .cli import build_parser  # the tree this verb is part of

    print(
        json.dumps(
            [[list(path), verbs, options] for path, verbs, options in describe(build_parser())]
        )
    )
    return 0


def register(verbs: Any, prog: str) -> None:
    add_verb(
        verbs,
        TREE_VERB,
        _print_tree,
        "this daemon's verbs and options as JSON, for 'exchnode completion'",
        f"""Example:
  {prog} {TREE_VERB} | jq '.[0]'      # what 'exchnode completion bash' reads""",
    )
