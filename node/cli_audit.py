"""``audit`` verbs: the node's tamper-evident audit log from the shell.

``audit verify`` checks the log end to end and exits 1 on any finding;
``audit records`` lists its records decoded.  Both ask the running node's
operator API (``/v1/audit``) of the node named by ``--config`` (default
``$EXCHNODE_CONFIG``, else ``./node.toml``); with ``--offline`` they read the
node's store while the daemon is stopped (``node.audit_offline``), which is
how a node that refuses to start because its log is inconsistent is examined.
Output is a readable table, or the JSON the API answers with ``--json``.
Errors follow ``node.cli``'s policy: one line, exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from exchnode.errors import UsageError
from node.audit_offline import read_records_offline, verify_offline
from node.cli_services import render_table
from node.client import OperatorClient
from node.config import load_config
from node.operator_audit import DEFAULT_RECORDS, MAX_RECORDS

__all__ = ["register"]

_RAW = argparse.RawDescriptionHelpFormatter


def _ask(args: argparse.Namespace, call: Callable[[OperatorClient], Awaitable[Any]]) -> Any:
    config = load_config(args.config)

    async def go() -> Any:
        async with OperatorClient.for_config(config, timeout=120.0) as client:
            return await call(client)

    return asyncio.run(go())


def _print(args: argparse.Namespace, data: Any, table: Callable[[Any], str]) -> None:
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        print(table(data))


def _seqs(finding: dict[str, Any]) -> str:
    if "range" not in finding:
        return ""
    first, end = finding["range"]
    return str(first) if end == first + 1 else f"{first}..{end - 1}"


def _report_text(report: dict[str, Any]) -> str:
    if report["ok"]:
        return f"log ok: {report['records']} records, {report['heads']} heads"
    findings = report["findings"]
    rows = [[f["kind"], _seqs(f), f.get("head", ""), f["message"]] for f in findings]
    return "\n".join(
        [
            f"log of {report['node']} NOT ok: {len(findings)} finding(s) in "
            f"{report['records']} records, {report['heads']} heads",
            render_table(["KIND", "SEQ", "HEAD", "WHAT"], rows),
        ]
    )


def _short(value: Any, limit: int = 34) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _records_text(page: dict[str, Any]) -> str:
    records = page["records"]
    if not records:
        return f"(no records; the log holds {page['size']})"
    rows = []
    for record in records:
        if "error" in record:
            rows.append([str(record["seq"]), "", "", "", "", "", f"undecodable: {record['code']}"])
            continue
        subject, outcome = record["subject"], record["outcome"]
        about = f"{subject['kind']}:{subject['value']}" if subject["kind"] != "none" else ""
        rows.append(
            [
                str(record["seq"]),
                record["time"][:19].replace("T", " "),
                record["category"],
                record["action"],
                f"{record['actor']['role']}:{record['actor']['name']}",
                _short(about),
                outcome["status"] + (f":{outcome['code']}" if outcome["code"] else ""),
            ]
        )
    table = render_table(
        ["SEQ", "TIME (UTC)", "CATEGORY", "ACTION", "ACTOR", "SUBJECT", "OUTCOME"], rows
    )
    more = f"\n(more: --from {page['next']})" if page.get("next") is not None else ""
    return table + more


def _verify(args: argparse.Namespace) -> int:
    if args.offline:
        report = verify_offline(load_config(args.config))
    else:
        report = _ask(args, lambda client: client.audit_verify())
    _print(args, report, _report_text)
    return 0 if report["ok"] else 1


def _records(args: argparse.Namespace) -> int:
    if args.limit < 1 or args.limit > MAX_RECORDS:
        raise UsageError(f"--limit must be 1..{MAX_RECORDS}, got {args.limit}")
    if args.offline:
        page = read_records_offline(load_config(args.config), args.first, args.limit)
    else:
        page = _ask(args, lambda client: client.audit_records(args.first, args.limit))
    _print(args, page, _records_text)
    return 0


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=Path(os.environ.get("EXCHNODE_CONFIG", "node.toml")),
        help="the node's node.toml (default: $EXCHNODE_CONFIG, else ./node.toml)",
    )
    common.add_argument("--json", action="store_true", help="print the JSON the API answers")
    common.add_argument(
        "--offline",
        action="store_true",
        help="read the node's store while the daemon is stopped, instead of asking it",
    )
    return common


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def register(verbs: Any, prog: str) -> None:
    common = _common()
    audit = verbs.add_parser(
        "audit",
        help="the node's tamper-evident audit log: verify, records",
        formatter_class=_RAW,
        epilog=f"""Examples:
  {prog} audit verify --config node.toml            # the running node checks its log
  {prog} audit verify --offline --config node.toml  # the daemon stopped: read its store
  {prog} audit records --from 0 --limit 50
  {prog} audit records --json | jq '.records[] | select(.category == "subscription")'

'audit verify' exits 0 when the log matches every signed tree head, 1 on any
finding (changed-record, deleted-record, inserted-record, reordered-record,
truncated, fork, root-mismatch, bad-head, head-chain, ...), each with its seq.""",
    )
    group = audit.add_subparsers(title="audit verbs", metavar="VERB")
    group.required = True
    p = group.add_parser(
        "verify",
        parents=[common],
        help="check the log end to end against its signed heads (exit 1 on any finding)",
    )
    p.set_defaults(handler=_verify)
    p = group.add_parser("records", parents=[common], help="list the log's records, decoded")
    p.add_argument("--from", dest="first", type=_non_negative, default=0, metavar="SEQ")
    p.add_argument(
        "--limit", type=int, default=DEFAULT_RECORDS, help="at most (default %(default)s)"
    )
    p.set_defaults(handler=_records)
