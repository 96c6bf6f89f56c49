"""``audit trace MESSAGE_ID``: one message's custody hop by hop, as far as access reaches.

``node.trace`` does the work; this is the verb.  The nodes it may ask: the
node of ``--config``, every ``--node DIR`` (a node folder or its node.toml:
its API address and token files) and every entry of ``--reach FILE``.  Exit
0 when the path was read to its end (delivered, or to a node beyond reach,
which the output names), 1 when no reachable node has a record of it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from .cli_common import RAW, add_other_nodes_option, common_options, node_config
from .config import load_config
from .trace import DEFAULT_SCAN, access_from_config, read_reach_file, trace

__all__ = ["register"]


def _trace(args: argparse.Namespace) -> int:
    local = load_config(args.config)
    reachable = {local.name: access_from_config(local)}
    for folder in args.nodes:
        config = node_config(folder)
        reachable[config.name] = access_from_config(config)
    if args.reach is not None:
        for access in read_reach_file(args.reach):
            reachable.setdefault(access.name, access)
    result = asyncio.run(trace(args.message_id, local.name, reachable, scan=args.scan))
    if args.json:
        print(json.dumps(result.to_json(), ensure_ascii=False, indent=2))
    else:
        print(result.text())
    return 0 if any(hop.events for hop in result.hops) else 1


def register(group: Any, prog: str) -> None:
    p = group.add_parser(
        "trace",
        parents=[common_options()],
        help="one message's custody hop by hop across the nodes you can reach",
        formatter_class=RAW,
        epilog=f"""Example:
  {prog} audit trace 5f0c2a9e... --config gongan/node.toml --node hub/ --node minzheng/

Starts at the node of --config and follows the hops its audit records name:
accepted from whom, forwarded to whom (and whether it took custody),
delivered (the application acknowledged it), expired or dropped; each
reachable node is asked in turn with its auditor's token.  Where the path
leads to a node you hold no access to, the output says that access ends
there.  Access: --node (a node folder or node.toml) or --reach FILE, a TOML
list of [[node]] name, url, auditor_token_file (optional operator_token_file:
the sender's receipts).  Times are ISO 8601 in China Standard Time (+08:00).""",
    )
    p.add_argument("message_id", metavar="MESSAGE_ID", help="hex, as 'send' printed it")
    add_other_nodes_option(p, "another node you may ask (its folder or node.toml); repeatable")
    p.add_argument("--reach", type=Path, metavar="FILE", help="a TOML list of nodes you may ask")
    p.add_argument(
        "--scan",
        type=int,
        default=DEFAULT_SCAN,
        metavar="N",
        help="read at most the newest N records per node (default %(default)s)",
    )
    p.set_defaults(handler=_trace)
