"""``admin peers add|remove|list|reload``: a running node's neighbours changed without a restart.

``add`` takes a neighbour at once and keeps it in the node's store (a
neighbour again after a restart); ``remove`` ends one added that way or
admitted by ``[admission]`` (a name in ``node.toml`` is the file's: edit it
and ``reload``, or ``kill -HUP``); ``reload`` reads ``[[peers]]`` of
``node.toml`` again, all or nothing (``node.peers_admin``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from .cli_common import ask, person, show

__all__ = ["PEERS_EXAMPLES", "register_peer_verbs"]

PEERS_EXAMPLES = """Examples:
  {prog} admin peers                                  # every link: state, source, queue
  {prog} admin peers add 520102.minzheng --relation child \\
      --url https://10.1.2.7:7443 --administrator 张工      # at once, and after restarts
  {prog} admin peers remove 520102.minzheng --administrator 张工
  {prog} admin peers reload --administrator 张工   # [[peers]] of node.toml again (= kill -HUP)
"""


def _reloaded_text(body: dict[str, Any]) -> str:
    lines = [
        f"{what}: {', '.join(body[key]) if body[key] else 'none'}"
        for what, key in (("added", "added"), ("removed", "removed"), ("changed", "changed"))
    ]
    if body["next_start"]:
        lines.append(
            f"changed in node.toml, applied at the next start: {', '.join(body['next_start'])}"
        )
    return "\n".join(lines)


def register_peer_verbs(
    parser: argparse.ArgumentParser,
    reading: argparse.ArgumentParser,
    changing: argparse.ArgumentParser,
) -> None:
    """The sub-verbs of ``admin peers`` (``admin peers`` alone lists)."""
    verbs = parser.add_subparsers(title="peers verbs", metavar="VERB")
    verbs.required = False

    def listing(args: argparse.Namespace) -> int:
        handler: Callable[[argparse.Namespace], int] = parser.get_default("handler")
        return handler(args)

    p = verbs.add_parser("list", parents=[reading], help="every link and its state (the default)")
    p.set_defaults(handler=listing)

    def add(args: argparse.Namespace) -> int:
        who = person(args, "administrator")
        answer = ask(args, lambda c: c.admin_peer_add(args.name, args.relation, args.url, who))
        return show(args, answer, lambda a: f"{a['name']} ({a['relation']}) added: {a['url']}")

    p = verbs.add_parser(
        "add", parents=[changing], help="take a neighbour now, kept across restarts"
    )
    p.add_argument("name", metavar="NAME", help="the neighbour's node name")
    p.add_argument("--relation", choices=("parent", "child", "link"), required=True)
    p.add_argument("--url", required=True, help="https://host:port where it listens")
    p.set_defaults(handler=add)

    def remove(args: argparse.Namespace) -> int:
        who = person(args, "administrator")
        answer = ask(args, lambda c: c.admin_peer_remove(args.name, who))
        return show(args, answer, lambda a: f"{a['name']} removed (it was {a['was']})")

    p = verbs.add_parser(
        "remove", parents=[changing], help="end a neighbour added or admitted (queue kept)"
    )
    p.add_argument("name", metavar="NAME", help="the neighbour's node name")
    p.set_defaults(handler=remove)

    def reload(args: argparse.Namespace) -> int:
        who = person(args, "administrator")
        return show(args, ask(args, lambda c: c.admin_peers_reload(who)), _reloaded_text)

    p = verbs.add_parser(
        "reload", parents=[changing], help="read [[peers]] of node.toml again (= kill -HUP)"
    )
    p.set_defaults(handler=reload)
