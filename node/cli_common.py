"""What every verb that talks to a running node shares: its options, the call, the output.

The ``catalog``, ``sub``, ``audit`` and ``admin`` verbs all take ``--config``
and ``--json``; the ones that change something name the person acting
(``--operator`` or ``--administrator``, for the audit log); they all reach
the node through ``OperatorClient.for_config``, which presents the role's
credential the path needs; and they print a table or the API's JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from exchnode.errors import UsageError

from .client import OperatorClient
from .config import DaemonConfig, load_config

__all__ = [
    "RAW",
    "add_config_option",
    "add_other_nodes_option",
    "add_verb",
    "add_verb_group",
    "ask",
    "common_options",
    "node_config",
    "person",
    "show",
]

RAW = argparse.RawDescriptionHelpFormatter


def add_verb(
    verbs: Any, name: str, handler: Callable[[argparse.Namespace], int], summary: str, epilog: str
) -> argparse.ArgumentParser:
    """Verb ``name`` that ``handler`` runs, its ``epilog`` (examples) printed as written."""
    parser: argparse.ArgumentParser = verbs.add_parser(
        name, help=summary, formatter_class=RAW, epilog=epilog
    )
    parser.set_defaults(handler=handler)
    return parser


def add_verb_group(verbs: Any, name: str, summary: str, epilog: str | None = None) -> Any:
    """Verb ``name`` of verbs (``catalog``, ``sub``, ``audit``, ...): where they are added."""
    parser = verbs.add_parser(name, help=summary, formatter_class=RAW, epilog=epilog)
    group = parser.add_subparsers(title=f"{name} verbs", metavar="VERB")
    group.required = True
    return group


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """``--config``: the flag, else ``$EXCHNODE_CONFIG``, else ``./node.toml`` -- every verb."""
    parser.add_argument(
        "--config",
        type=Path,
        default=Path(os.environ.get("EXCHNODE_CONFIG") or "node.toml"),
        help="the node's node.toml (default: $EXCHNODE_CONFIG, else ./node.toml)",
    )


def add_other_nodes_option(parser: argparse.ArgumentParser, help: str) -> None:
    """``--node DIR``, repeatable, into ``args.nodes``: the verbs that read several nodes."""
    parser.add_argument(
        "--node", dest="nodes", action="append", type=Path, default=[], metavar="DIR", help=help
    )


def node_config(path: Path) -> DaemonConfig:
    """``--node`` names a node folder (holding node.toml) or a node.toml itself."""
    return load_config(path / "node.toml" if path.is_dir() else path)


def common_options(acting: str | None = None) -> argparse.ArgumentParser:
    """``--config``, ``--json``, and for one who acts (``"operator"``) ``--<acting>``."""
    common = argparse.ArgumentParser(add_help=False)
    add_config_option(common)
    common.add_argument("--json", action="store_true", help="print the JSON the API answers")
    if acting is not None:
        common.add_argument(
            f"--{acting}",
            help=f"who is acting, for the audit log (default: $EXCHNODE_{acting.upper()}, "
            "else the login name)",
        )
    return common


def person(args: argparse.Namespace, acting: str) -> str:
    """``--<acting>``, else ``$EXCHNODE_<ACTING>``, else the login name: who the record names."""
    variable = f"EXCHNODE_{acting.upper()}"
    name: str | None = getattr(args, acting, None) or os.environ.get(variable)
    if not name:
        try:
            name = getpass.getuser()
        except (KeyError, OSError):  # no login name in this environment
            name = None
    if not name:
        raise UsageError(f"name the person acting: --{acting} NAME (or set {variable})")
    return name


def ask(
    args: argparse.Namespace,
    call: Callable[[OperatorClient], Awaitable[Any]],
    *,
    timeout: float = 60.0,
) -> Any:
    """One conversation with the running node that ``--config`` names."""
    config = load_config(args.config)

    async def go() -> Any:
        async with OperatorClient.for_config(config, timeout=timeout) as client:
            return await call(client)

    return asyncio.run(go())


def show(args: argparse.Namespace, data: Any, text: Callable[[Any], str]) -> int:
    """The API's JSON with ``--json``, else the readable form; the verb's exit status (0)."""
    print(json.dumps(data, ensure_ascii=False, indent=2) if args.json else text(data))
    return 0
