"""``audit`` verbs: the node's tamper-evident audit log from the shell.

``audit verify`` checks the log end to end and exits 1 on any finding (with
``--parent`` or ``--witnessed``, also against the heads of it the parent keeps);
``audit witnessed`` shows a hub's verdicts on its children and exits 1 if one
is flagged (a rewritten history, or a child silent for too many rounds);
``audit records`` lists its records decoded; ``audit report`` is the
oversight report of one or more nodes (``node.audit_report``,
``exchnode.audit``).  They ask the running node's
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
import base64
import datetime as dt
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from exchnode.audit import DEFAULT_ZOMBIE_AFTER_S, OversightBuilder, OversightReport
from exchnode.errors import UsageError
from exchnode.sharing import CHINA_STANDARD_TIME, DEFAULT_ANSWER_DAYS

from .audit_offline import read_records_offline, verify_offline
from .audit_report import collect_configs, collect_offline
from .cli_common import (
    add_other_nodes_option,
    add_verb_group,
    ask,
    common_options,
    node_config,
    show,
)
from .cli_services import render_table
from .cli_trace import register as register_trace
from .client import OperatorClient
from .config import DaemonConfig, load_config
from .operator_audit import DEFAULT_RECORDS, MAX_RECORDS, witnessed_heads

__all__ = ["register"]


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
                record["time"][:19] + record["time"][-6:],
                record["category"],
                record["action"],
                f"{record['actor']['role']}:{record['actor']['name']}",
                _short(about),
                outcome["status"] + (f":{outcome['code']}" if outcome["code"] else ""),
            ]
        )
    table = render_table(["SEQ", "TIME", "CATEGORY", "ACTION", "ACTOR", "SUBJECT", "OUTCOME"], rows)
    more = f"\n(more: --from {page['next']})" if page.get("next") is not None else ""
    return table + more


def _parent_heads(args: argparse.Namespace, config: DaemonConfig) -> list[bytes] | None:
    """The heads of this node its parent keeps: ``--witnessed FILE`` or ``--parent CONFIG``."""
    if args.witnessed is not None and args.parent is not None:
        raise UsageError("give --witnessed or --parent, not both")
    if args.witnessed is not None:
        where = "standard input" if str(args.witnessed) == "-" else str(args.witnessed)
        try:
            text = sys.stdin.read() if str(args.witnessed) == "-" else args.witnessed.read_text()
            document = json.loads(text)
        except OSError as exc:
            raise UsageError(f"--witnessed: cannot read {where}: {exc.strerror}") from None
        except ValueError as exc:
            raise UsageError(f"--witnessed: {where} is not JSON: {exc}") from None
    elif args.parent is not None:
        parent = node_config(args.parent)

        async def ask_parent() -> Any:
            async with OperatorClient.for_config(parent, timeout=120.0) as client:
                return await client.audit_witnessed()

        document = asyncio.run(ask_parent())
        where = f"the parent {parent.name}"
    else:
        return None
    heads = witnessed_heads(document, config.name)
    if not heads:
        raise UsageError(f"{where} keeps no witnessed head of {config.name}")
    return heads


def _verify(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    witnessed = _parent_heads(args, config)
    if args.offline:
        report = verify_offline(config, witnessed=witnessed or ())
    else:
        given = None
        if witnessed is not None:
            given = [base64.urlsafe_b64encode(head).decode("ascii") for head in witnessed]
        report = ask(args, lambda client: client.audit_verify(given), timeout=120.0)
    show(args, report, _report_text)
    return 0 if report["ok"] else 1


def _witnessed_text(children: list[dict[str, Any]]) -> str:
    if not children:
        return "no children witnessed (this node is not a hub)"
    lines = [f"{'CHILD':<22} {'KEPT':>8}  {'VERDICT':<14} {'CHECKED':<25} PROBLEM"]
    for c in children:
        verdict = c["verdict"] or "-"
        if c["verdict_ok"] is False:
            verdict += " !"
        problem = f"{c['error']} ({c['failures']} in a row)" if c["error"] else ""
        if c.get("verdict") == "silent":
            problem = f"no answer for {c.get('unanswered', 0)} rounds: {c['error'] or '-'}"
        lines.append(
            f"{c['child']:<22} {c['kept_size']:>8}  {verdict:<14} {c['checked'] or '-':<25} "
            f"{problem}"
        )
    return "\n".join(lines)


def _witnessed(args: argparse.Namespace) -> int:
    children = ask(args, lambda client: client.audit_witnessed(), timeout=120.0)
    show(args, children, _witnessed_text)
    return 1 if any(c["verdict_ok"] is False for c in children) else 0


def _records(args: argparse.Namespace) -> int:
    if args.limit < 1 or args.limit > MAX_RECORDS:
        raise UsageError(f"--limit must be 1..{MAX_RECORDS}, got {args.limit}")
    if args.offline:
        page = read_records_offline(load_config(args.config), args.first, args.limit)
    else:
        page = ask(args, lambda client: client.audit_records(args.first, args.limit), timeout=120.0)
    return show(args, page, _records_text)


# --- audit report -------------------------------------------------------------------------

_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)([smhd]?)\Z")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400}


def _duration(text: str) -> int:
    """``30d``, ``12h``, ``90m``, ``3600s`` or plain seconds → seconds."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"expected a duration like 30d, 12h or 90m, got {text!r}")
    seconds = int(float(match[1]) * _UNIT[match[2]])
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 s, got {text!r}")
    return seconds


def _since(text: str) -> int:
    """A date (YYYY-MM-DD, from 00:00 CST) → ms since 1970."""
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None
    start = dt.datetime(day.year, day.month, day.day, tzinfo=CHINA_STANDARD_TIME)
    return int(start.timestamp()) * 1000


class _Progress:
    """Progress on stderr: one line per node, the page counts rewritten on a terminal."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.started = time.monotonic()

    def __call__(self, line: str) -> None:
        partial = " of " in line and line.endswith(" records")
        if partial and not self.tty:
            return
        end = "\r" if partial else "\n"
        clear = "\x1b[K" if self.tty else ""
        sys.stderr.write(f"{clear}  {line}{end}")
        sys.stderr.flush()


def write_csv(report: OversightReport, target: Path) -> list[Path]:
    """``*.csv``: the long form, one file; otherwise a folder of one CSV per section.

    UTF-8 with a BOM, so that spreadsheets read the Chinese names.
    """
    if target.suffix.lower() == ".csv":
        target.write_text(report.csv_long(), encoding="utf-8-sig", newline="")
        return [target]
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in report.csv_tables().items():
        path = target / name
        path.write_text(text, encoding="utf-8-sig", newline="")
        written.append(path)
    return written


def _report(args: argparse.Namespace) -> int:
    if args.json and args.csv is not None:
        raise UsageError("give --json or --csv, not both")
    configs = [node_config(path) for path in args.nodes] or [load_config(args.config)]
    builder = OversightBuilder(
        calendar=configs[0].sharing.calendar,
        answer_days=args.answer_days,
        zombie_after_s=args.zombie_after,
        since_ms=args.since,
    )
    progress = _Progress()
    where = "stores" if args.offline else "operator APIs"
    print(f"reading {len(configs)} node(s) through their {where} ...", file=sys.stderr)
    if args.offline:
        collect_offline(builder, configs, progress)
    else:
        asyncio.run(collect_configs(builder, configs, progress))
    report = builder.build(int(time.time() * 1000))
    if args.csv is not None:
        written = write_csv(report, args.csv)
        print("\n".join(str(path) for path in written))
    elif args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
    else:
        print(report.table())
    return 1 if report.unread else 0


def _common() -> argparse.ArgumentParser:
    common = common_options()
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
    group = add_verb_group(
        verbs,
        "audit",
        "the node's tamper-evident audit log: verify, records",
        f"""Examples:
  {prog} audit verify --config node.toml            # the running node checks its log
  {prog} audit verify --offline --config node.toml  # the daemon stopped: read its store
  {prog} audit verify --parent ../520102/node.toml   # also against what the parent witnessed
  {prog} audit witnessed --json > witnessed.json    # at the parent: the heads it keeps
  {prog} audit verify --witnessed witnessed.json    # at the child, with the parent's file
  {prog} audit records --from 0 --limit 50
  {prog} audit records --json | jq '.records[] | select(.category == "subscription")'
  {prog} audit report --node nodes/520102.gongan --node nodes/520302.shebao
  {prog} audit report --node nodes/* --since 2026-11-01 --csv report-2026-11/

'audit verify' exits 0 when the log matches every signed tree head, 1 on any
finding (changed-record, deleted-record, inserted-record, reordered-record,
unsigned-records, unsigned-checkpoint, time-went-back, truncated, fork,
root-mismatch, bad-head, head-chain, ...), each with its seq.
'audit witnessed' exits 1 when a child's verdict is not ok: a rewritten
history, or 'silent' (no answer for [audit] witness_silent_rounds rounds).
'audit report' exits 1 when a node's log failed verification or could not be
read (the report still names it), 0 otherwise.""",
    )
    p = group.add_parser(
        "verify",
        parents=[common],
        help="check the log end to end against its signed heads (exit 1 on any finding)",
    )
    p.add_argument(
        "--witnessed",
        type=Path,
        metavar="FILE",
        help="also check against the heads of this node its parent keeps: the JSON of "
        "'audit witnessed --json' at the parent ('-': standard input)",
    )
    p.add_argument(
        "--parent",
        type=Path,
        metavar="DIR",
        help="also check against the heads its parent keeps, asked of the parent's API "
        "(its folder or node.toml: its auditor token)",
    )
    p.set_defaults(handler=_verify)
    p = group.add_parser(
        "witnessed",
        parents=[common],
        help="a hub's check of its children's logs: kept head, last verdict (exit 1 if any "
        "child's history was rewritten or it is silent)",
    )
    p.set_defaults(handler=_witnessed)
    p = group.add_parser("records", parents=[common], help="list the log's records, decoded")
    p.add_argument("--from", dest="first", type=_non_negative, default=0, metavar="SEQ")
    p.add_argument(
        "--limit", type=int, default=DEFAULT_RECORDS, help="at most (default %(default)s)"
    )
    p.set_defaults(handler=_records)
    p = group.add_parser(
        "report",
        parents=[common],
        help="the oversight report of one or more nodes: departments, levels, stale, zombies",
        description="Per department and level: resources catalogued by share type, requests "
        "granted/refused/expired/pending with answer times against the working-day rule, "
        "records provided and used; stale resources and zombie nodes. Counted from each "
        "node's verified audit log and its catalog (node/README.md §8).",
    )
    add_other_nodes_option(
        p, "a node folder (or its node.toml); repeat for every node (default: --config)"
    )
    p.add_argument(
        "--csv",
        type=Path,
        metavar="FILE_OR_DIR",
        help="write CSV: a folder of one table per section, or FILE.csv in long form",
    )
    p.add_argument(
        "--zombie-after",
        type=_duration,
        default=DEFAULT_ZOMBIE_AFTER_S,
        metavar="TIME",
        help="a node with no traffic for this long is a zombie (default 30d)",
    )
    p.add_argument(
        "--since",
        type=_since,
        metavar="DATE",
        help="count requests and records from this date (CST) on, e.g. a month's report",
    )
    p.add_argument(
        "--answer-days",
        type=int,
        default=DEFAULT_ANSWER_DAYS,
        metavar="N",
        help="the answer rule in working days (default %(default)s)",
    )
    p.set_defaults(handler=_report)
    register_trace(group, prog)
