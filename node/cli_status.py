"""``status``, ``health`` and ``message status``: the node's state, and one message's.

``status`` is the node's status (``GET /health`` read for a person: phase,
queues, links, refusals); ``health`` the same body as JSON, exit 0 only while
serving (for probes).  A message this node sent has its own verb,
``message status ID`` (receipts and reports, ``GET /v1/status/ID``).  The old
``status ID`` still works and says on stderr that it is deprecated.  Errors
follow ``node.cli``'s policy: one line, exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from .cli_common import add_config_option, add_verb, add_verb_group
from .cli_services import render_table
from .client import OperatorClient
from .config import load_config
from .forms import iso_ms

__all__ = ["register"]


async def _health_of(args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    async with OperatorClient.for_config(load_config(args.config), timeout=60.0) as client:
        return await client.health()


def _node_text(body: dict[str, Any]) -> str:
    lines = [f"{body['name']}: {body['status']} for {body.get('uptime_s', 0):.0f} s"]
    if "queued" not in body:
        return lines[0]
    inbox, queued = body["inbox"], body["queued"]
    lines.append(
        f"inbox {inbox['count']} ({inbox['bytes']} bytes), queued to forward "
        f"{queued['count']} ({queued['bytes']} bytes); directory {body['directory']['mode']}, "
        f"{body['directory']['known']} nodes known"
    )
    rows = []
    for name, peer in body.get("peers", {}).items():
        out = body.get("outbound", {}).get(name, {"count": 0})
        last_ok = iso_ms(peer.get("last_ok_ms")) or "-"
        refusal = peer.get("refused") or {}
        rows.append(
            [
                name,
                peer["state"],
                str(peer.get("failures", 0)),
                str(out["count"]),
                last_ok,
                str(refusal.get("reason", "")),
            ]
        )
    if rows:
        lines.append(
            render_table(["PEER", "STATE", "FAILURES", "QUEUED", "LAST OK", "REFUSAL"], rows)
        )
    for refusal in body.get("refusals", []):
        lines.append(
            f"refused: {refusal['peer']} by {refusal['refused_by']}: {refusal['reason']} "
            f"({refusal['count']} times since {iso_ms(refusal['first_ms'])})"
        )
    return "\n".join(lines)


def _node_status(args: argparse.Namespace) -> int:
    if args.message_id is not None:
        print(
            f"note: 'status MESSAGE_ID' is deprecated; use 'message status {args.message_id}'",
            file=sys.stderr,
        )
        return _message_status(args)
    code, body = asyncio.run(_health_of(args))
    print(json.dumps(body, ensure_ascii=False, indent=2) if args.json else _node_text(body))
    return 0 if code == 200 else 1


def _health(args: argparse.Namespace) -> int:
    code, body = asyncio.run(_health_of(args))
    print(json.dumps(body, ensure_ascii=False, indent=2))
    return 0 if code == 200 else 1


def _message_status(args: argparse.Namespace) -> int:
    async def run() -> dict[str, Any]:
        config = load_config(args.config)
        async with OperatorClient.for_config(config, timeout=args.wait + 60.0) as client:
            return await client.status(args.message_id, wait=args.wait)

    print(json.dumps(asyncio.run(run()), ensure_ascii=False, indent=2))
    return 0


def register(verbs: Any, prog: str) -> None:
    p = add_verb(
        verbs,
        "status",
        _node_status,
        "the node's status: phase, queues, links, refusals (exit 0 only while serving)",
        f"""Examples:
  {prog} status --config node.toml
  {prog} status --json

A message's receipts and reports: '{prog} message status ID' ('status ID'
still works, deprecated).""",
    )
    add_config_option(p)
    p.add_argument("--json", action="store_true", help="print the JSON the API answers")
    p.add_argument("message_id", nargs="?", metavar="MESSAGE_ID", help=argparse.SUPPRESS)
    p.add_argument("--wait", type=float, default=0.0, help=argparse.SUPPRESS)

    p = add_verb(
        verbs,
        "health",
        _health,
        "the node's health as JSON (exit 0 only while serving): for probes",
        f"""Example:
  {prog} health --config node.toml || echo "not serving"
""",
    )
    add_config_option(p)

    group = add_verb_group(verbs, "message", "one message this node sent: status")
    p = add_verb(
        group,
        "status",
        _message_status,
        "receipts and non-delivery reports for a message this node sent",
        f"""Example:
  {prog} message status 5f0c2a... --wait 30

'settled' is true once every recipient sent a receipt (its application
acknowledged the message) or a non-delivery report came back.""",
    )
    add_config_option(p)
    p.add_argument("message_id", metavar="MESSAGE_ID", help="hex, as 'send' printed it")
    p.add_argument("--wait", type=float, default=0.0, help="wait up to this many seconds")
