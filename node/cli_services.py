"""``catalog`` and ``sub`` verbs: the resource catalog and subscriptions from the shell.

Each verb is one call of the operator API (``node.client``) of the node named
by ``--config`` (default ``$EXCHNODE_CONFIG``, else ``./node.toml``).  Output
is a readable table by default and the API's JSON with ``--json``.  Decisions
name the person acting with ``--operator`` (default ``$EXCHNODE_OPERATOR``,
else the login name); it becomes the actor of the step's audit event.
Errors follow ``node.cli``'s policy: one line, exit status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from exchnode.errors import UsageError

from .cli_common import add_verb_group, ask, common_options, person, show
from .client import OperatorClient

__all__ = ["Column", "parse_mask", "register", "render_listing", "render_table", "value_of"]

_STATES: tuple[str, ...] = ("pending", "granted", "refused", "not_shared", "expired")
_STATES += ("escalated", "closed", "revoked", "lapsed", "sent")


# --- output ------------------------------------------------------------------------------


def _width(text: str) -> int:
    """Display width in a terminal: CJK characters take two columns."""
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if _width(text) <= limit:
        return text
    out = ""
    for char in text:
        if _width(out + char) > limit - 1:
            break
        out += char
    return out + "…"


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [_width(h) for h in headers]
    for row in rows:
        widths = [max(w, _width(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        padded = [cell + " " * (w - _width(cell)) for cell, w in zip(cells, widths, strict=True)]
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers), *(line(row) for row in rows)])


def _date(iso: str | None) -> str:
    """ISO 8601 to the minute, with the offset: ``2026-12-07T22:10+08:00``."""
    if not iso:
        return ""
    offset = iso[-6:] if len(iso) > 16 and iso[-6] in "+-" else ""
    return iso[:16] + offset


#: A column of a listing: its header, and its cell for one item of the API's answer.
Column = tuple[str, Callable[[dict[str, Any]], str]]


def render_listing(items: Sequence[dict[str, Any]], columns: Sequence[Column], empty: str) -> str:
    """A table of ``items``, one row each; ``empty`` says what an empty listing means.

    The listings of several verbs show the same fields the same way (an id, a
    state, a resource code, a time); declaring each column once lets them agree.
    """
    if not items:
        return empty
    rows = [[cell(item) for _, cell in columns] for item in items]
    return render_table([header for header, _ in columns], rows)


def value_of(key: str) -> Callable[[dict[str, Any]], str]:
    """The cell that shows ``item[key]`` as it is."""
    return lambda item: str(item[key])


def _date_of(key: str) -> Callable[[dict[str, Any]], str]:
    return lambda item: _date(item[key])


def _clipped(text: Callable[[dict[str, Any]], str]) -> Callable[[dict[str, Any]], str]:
    """A free-text cell, cut to 30 columns so that the table stays one line a row."""
    return lambda item: _clip(text(item), 30)


def _listed(key: str) -> Callable[[dict[str, Any]], str]:
    return lambda item: ",".join(item[key])


# --- parsing helpers ---------------------------------------------------------------------


def parse_mask(text: str) -> tuple[str, dict[str, Any]]:
    """``ITEM=keep:6:4[:C]``, ``ITEM=redact[:TEXT]``, ``ITEM=hash``, ``ITEM=year_only``."""
    item, sep, spec = text.rpartition("=")
    if not sep or not item or not spec:
        raise argparse.ArgumentTypeError(f"expected ITEM=RULE, got {text!r}")
    name, _, params = spec.partition(":")
    if name == "keep":
        parts = params.split(":") if params else []
        if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts[:2]):
            raise argparse.ArgumentTypeError(f"keep is keep:FIRST:LAST[:CHAR], got {spec!r}")
        rule: dict[str, Any] = {"rule": "keep", "first": int(parts[0]), "last": int(parts[1])}
        if len(parts) == 3:
            rule["char"] = parts[2]
        return item, rule
    if name == "redact":
        return item, {"rule": "redact", "replacement": params if params else "***"}
    if name in ("hash", "year_only") and not params:
        return item, {"rule": name}
    raise argparse.ArgumentTypeError(
        f"unknown mask rule {spec!r}: keep:FIRST:LAST, redact[:TEXT], hash or year_only"
    )


def _items(text: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError("name at least one data item: --items a,b")
    return items


def _run(args: argparse.Namespace, call: Callable[[OperatorClient], Awaitable[Any]]) -> Any:
    if hasattr(args, "operator"):  # a verb that changes something names the person acting
        args.operator = person(args, "operator")
    return ask(args, call)


# --- catalog -----------------------------------------------------------------------------


def _records_table(records: list[dict[str, Any]]) -> str:
    if not records:
        return "(no catalog entries)"
    rows = []
    for record in records:
        entry = record["entry"] or {}
        rows.append(
            [
                record["provider"],
                record["code"],
                str(record["version"]),
                record["status"],
                entry.get("share_type", ""),
                entry.get("update_cycle", ""),
                _clip(entry.get("name", record["reason"]), 40),
            ]
        )
    return render_table(["PROVIDER", "CODE", "V", "STATUS", "SHARE", "UPDATE", "NAME"], rows)


def _record_text(record: dict[str, Any]) -> str:
    lines = [
        f"provider       {record['provider']}",
        f"code           {record['code']}",
        f"version        {record['version']} ({record['status']}, "
        f"signed {_date(record['issued'])})",
    ]
    entry = record["entry"]
    if entry is None:
        lines.append(f"reason         {record['reason']}")
        return "\n".join(lines)
    lines += [
        f"name           {entry['name']}",
        f"classification {entry['classification']}",
        f"provider code  {entry['provider_code']}",
        f"summary        {_clip(entry['summary'], 200)}",
        f"format         {entry['format']}",
        f"share type     {entry['share_type']}",
    ]
    if entry["share_conditions"]:
        lines.append(f"conditions     {_clip(entry['share_conditions'], 200)}")
    lines += [
        f"share methods  {', '.join(entry['share_methods']) or '-'}",
        f"openness       {entry['openness']}"
        + (f" ({entry['open_conditions']})" if entry["open_conditions"] else ""),
        f"update cycle   {entry['update_cycle']}",
        f"published      {entry['publish_date']}",
    ]
    if entry["related"]:
        lines.append(f"related        {', '.join(entry['related'])}")
    items = [[i["name"], i["type"], _clip(i["description"], 50)] for i in entry["data_items"]]
    if items:
        lines += ["", render_table(["DATA ITEM", "TYPE", "DESCRIPTION"], items)]
    return "\n".join(lines)


def _read_json(source: str) -> Any:
    where = "stdin" if source == "-" else source
    text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{where} is not JSON: {exc}") from None


def _catalog_publish(args: argparse.Namespace) -> int:
    document = _read_json(args.file)
    if isinstance(document, dict) and "entries" in document:
        document = document["entries"]
    entries = document if isinstance(document, list) else [document]
    records = _run(args, lambda c: c.catalog_publish(entries, args.operator))
    return show(args, records, _records_table)


def _catalog_withdraw(args: argparse.Namespace) -> int:
    record = _run(args, lambda c: c.catalog_withdraw(args.code, args.reason, args.operator))
    return show(args, record, _record_text)


def _catalog_list(args: argparse.Namespace) -> int:
    criteria = {
        "provider": args.provider,
        "code": args.code,
        "classification": args.classification,
        "share_type": args.share_type,
        "keyword": args.keyword,
        "level": args.level,
        "status": args.status,
        "beyond": "1" if args.beyond or args.scope is not None else None,
        "scope": args.scope,
    }
    records = _run(args, lambda c: c.catalog_search(**criteria))
    return show(args, records, _records_table)


def _catalog_show(args: argparse.Namespace) -> int:
    record = _run(args, lambda c: c.catalog_show(args.provider, args.code))
    return show(args, record, _record_text)


# --- subscriptions -----------------------------------------------------------------------


_REQUEST: Column = ("REQUEST", value_of("request_id"))
_STATE: Column = ("STATE", value_of("state"))
_PROVIDER: Column = ("PROVIDER", value_of("provider"))
_CODE: Column = ("CODE", value_of("resource_code"))

_SENT_REQUESTS: tuple[Column, ...] = (
    _REQUEST,
    _STATE,
    _PROVIDER,
    _CODE,
    ("ITEMS", lambda r: ",".join(r["grant"]["items"] if r.get("grant") else r["items"])),
    ("SENT", _date_of("at")),
    ("REASON", _clipped(lambda r: r.get("reason", ""))),
)
_INCOMING_REQUESTS: tuple[Column, ...] = (
    _REQUEST,
    _STATE,
    ("REQUESTER", value_of("requester")),
    _CODE,
    ("ITEMS", _listed("items")),
    ("RECEIVED", _date_of("at")),
    ("PURPOSE", _clipped(value_of("purpose"))),
)


def _sent_table(requests: list[dict[str, Any]]) -> str:
    return render_listing(requests, _SENT_REQUESTS, "(no requests)")


def _incoming_table(requests: list[dict[str, Any]]) -> str:
    return render_listing(requests, _INCOMING_REQUESTS, "(no requests)")


def _one_request(request: dict[str, Any]) -> str:
    incoming = "requester" in request
    text = (_incoming_table if incoming else _sent_table)([request])
    grant = request.get("grant")
    if grant:
        masks = ", ".join(f"{item}={_mask_text(rule)}" for item, rule in grant["masks"].items())
        text += f"\ngranted items {', '.join(grant['items'])}"
        text += f"; masks {masks or 'none'}; expires {_date(grant['expires']) or 'never'}"
    return text


def _mask_text(rule: dict[str, Any]) -> str:
    if rule["rule"] == "keep":
        return f"keep:{rule['first']}:{rule['last']}"
    if rule["rule"] == "redact":
        return f"redact:{rule['replacement']}"
    return str(rule["rule"])


_CASES: tuple[Column, ...] = (
    _REQUEST,
    ("REQUESTER", value_of("requester")),
    _PROVIDER,
    _CODE,
    ("GROUNDS", value_of("grounds")),
    ("ROUND", value_of("round")),
    ("ESCALATED", _date_of("at")),
    ("REASON", _clipped(value_of("reason"))),
)


def _cases_table(cases: list[dict[str, Any]]) -> str:
    return render_listing(cases, _CASES, "(no open cases)")


def _sub_request(args: argparse.Namespace) -> int:
    answer = _run(
        args,
        lambda c: c.sub_request(
            args.provider,
            args.code,
            purpose=args.purpose,
            scope=args.scope,
            items=args.items,
            operator=args.operator,
        ),
    )
    return show(args, answer, _one_request)


def _sub_list(args: argparse.Namespace) -> int:
    requests = _run(args, lambda c: c.sub_list(incoming=args.incoming, state=args.state))
    return show(args, requests, _incoming_table if args.incoming else _sent_table)


def _sub_show(args: argparse.Namespace) -> int:
    return show(args, _run(args, lambda c: c.sub_show(args.request_id)), _one_request)


def _decide(where: str, step: str) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        args.operator = person(args, "operator")
        body: dict[str, Any] = {"operator": args.operator}
        if step == "approve":
            if args.items is not None:
                body["items"] = args.items
            if args.mask:
                masks = dict(args.mask)
                if len(masks) != len(args.mask):
                    raise UsageError("--mask names a data item twice")
                body["masks"] = masks
            if args.expires is not None:
                body["expires"] = args.expires
        else:
            body["reason"] = args.reason
        answer = _run(args, lambda c: c.sub_decide(where, args.request_id, step, body))
        if where == "cases":
            show(args, answer, lambda a: f"{a['request_id']}: {a['outcome']}")
        else:
            show(args, answer, _one_request)
        return 0

    return handler


def _read_jsonl(source: str) -> list[Any]:
    where = "stdin" if source == "-" else source
    text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError as exc:
            raise UsageError(f"{where}, line {number}: not JSON: {exc}") from None
    if not records:
        raise UsageError(f"{where} holds no records (one JSON object per line)")
    return records


def _sub_publish(args: argparse.Namespace) -> int:
    records = _read_jsonl(args.file)
    answer = _run(args, lambda c: c.sub_publish(args.code, records, args.operator))
    return show(
        args,
        answer,
        lambda a: (
            f"{a['code']}: records {a['first_seq']}..{a['last_seq']} sent to "
            f"{a['subscribers']} subscriber(s) in {a['envelopes']} envelope(s)"
        ),
    )


def _sub_cases(args: argparse.Namespace) -> int:
    return show(args, _run(args, lambda c: c.sub_cases()), _cases_table)


# --- corrections (校核) and gaps -----------------------------------------------------------


def _seq(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a record number is an integer from 1, got {text!r}")
    return int(text)


def _answer_text(correction: dict[str, Any]) -> str:
    answer = correction.get("answer")
    if not answer:
        return ""
    return f"{answer['outcome']}: {answer['text']}"


_CORRECTION: tuple[Column, ...] = (
    ("CORRECTION", value_of("correction_id")),
    _STATE,
)
_CORRECTED: tuple[Column, ...] = (_CODE, ("SEQ", value_of("seq")), ("ITEMS", _listed("items")))
_INCOMING_CORRECTIONS: tuple[Column, ...] = (
    *_CORRECTION,
    ("SUBSCRIBER", value_of("subscriber")),
    *_CORRECTED,
    ("RECEIVED", _date_of("at")),
    ("TEXT", _clipped(value_of("text"))),
)
_REPORTED_CORRECTIONS: tuple[Column, ...] = (
    *_CORRECTION,
    _PROVIDER,
    *_CORRECTED,
    ("SENT", _date_of("at")),
    ("ANSWER", _clipped(_answer_text)),
)


def _incoming_corrections_table(corrections: list[dict[str, Any]]) -> str:
    return render_listing(corrections, _INCOMING_CORRECTIONS, "(no open corrections)")


def _reported_corrections_table(corrections: list[dict[str, Any]]) -> str:
    return render_listing(corrections, _REPORTED_CORRECTIONS, "(no corrections reported)")


def _correction_text(c: dict[str, Any]) -> str:
    lines = [f"correction  {c['correction_id']}", f"state       {c['state']}"]
    if "provider" in c:  # else listed no more: the node knows its state and answer only
        lines += [
            f"subscriber  {c['subscriber']}",
            f"provider    {c['provider']}",
            f"record      {c['resource_code']} #{c['seq']}",
            f"items       {', '.join(c['items'])}",
            f"text        {_clip(c['text'], 200)}",
            f"reported    {_date(c['at'])}" + (f" by {c['operator']}" if c.get("operator") else ""),
        ]
    answer = c.get("answer")
    if answer:
        when = f" ({_date(answer['at'])})" if answer.get("at") else ""
        lines.append(f"answer      {answer['outcome']}{when}: {_clip(answer['text'], 200)}")
    else:
        lines.append("answer      (none yet)")
    return "\n".join(lines)


def _sub_correct(args: argparse.Namespace) -> int:
    answer = _run(
        args,
        lambda c: c.sub_correct(
            args.provider,
            args.code,
            args.seq,
            items=args.items,
            text=args.text,
            operator=args.operator,
        ),
    )
    return show(args, answer, _correction_text)


def _sub_corrections(args: argparse.Namespace) -> int:
    if args.state is not None and not args.reported:
        raise UsageError("--state filters the corrections this node reported: add --reported")
    found = _run(args, lambda c: c.sub_corrections(reported=args.reported, state=args.state))
    return show(
        args,
        found,
        _reported_corrections_table if args.reported else _incoming_corrections_table,
    )


def _sub_correction(args: argparse.Namespace) -> int:
    return show(args, _run(args, lambda c: c.sub_correction(args.correction_id)), _correction_text)


def _sub_answer(args: argparse.Namespace) -> int:
    answer = _run(
        args,
        lambda c: c.sub_answer(
            args.correction_id, accepted=args.accepted, text=args.text, operator=args.operator
        ),
    )
    return show(args, answer, _correction_text)


def _gaps_text(answer: dict[str, Any]) -> str:
    where = f"{answer['resource_code']} of {answer['provider']}"
    if not answer["asked"]:
        return f"{where}: nothing to ask (no gap, or no live grant)"
    ranges = ", ".join(f"{low}..{high}" for low, high in answer["asked"])
    return f"{where}: asked again for records {ranges}"


def _sub_fill_gaps(args: argparse.Namespace) -> int:
    answer = _run(args, lambda c: c.sub_fill_gaps(args.provider, args.code, args.operator))
    return show(args, answer, _gaps_text)


# --- the parsers -------------------------------------------------------------------------


def register(verbs: Any, prog: str) -> None:
    reads, acts = common_options(), common_options("operator")

    group = add_verb_group(
        verbs,
        "catalog",
        "the resource catalog: publish, withdraw, list, show",
        f"""Examples:
  {prog} catalog publish --config node.toml entry.json
  {prog} catalog list --provider 522301.minzheng --share-type conditional --keyword 人口
  {prog} catalog show 522301.minzheng 101001/000001
  {prog} catalog withdraw 101001/000001 --reason "superseded by 101001/000002"

An entry file holds one entry object, a list of them, or {{"entries": [...]}}
(node/README.md describes the fields).""",
    )
    p = group.add_parser("publish", parents=[acts], help="publish entries of this node")
    p.add_argument("file", metavar="FILE", help="entries as JSON, or - for stdin")
    p.set_defaults(handler=_catalog_publish)
    p = group.add_parser("withdraw", parents=[acts], help="withdraw an entry of this node")
    p.add_argument("code", metavar="CODE")
    p.add_argument("--reason", required=True)
    p.set_defaults(handler=_catalog_withdraw)
    p = group.add_parser("list", parents=[reads], help="search the catalog this node holds")
    p.add_argument("--provider")
    p.add_argument("--code")
    p.add_argument("--classification", help="a prefix: 1 base, 2 theme, 3 department, 101...")
    p.add_argument("--share-type", choices=["unconditional", "conditional", "not_shared"])
    p.add_argument("--keyword", help="in the name, summary or data item names")
    p.add_argument("--level", choices=["national", "province", "city", "county"])
    p.add_argument("--status", choices=["published", "withdrawn", "all"], default="published")
    p.add_argument(
        "--beyond", action="store_true", help="ask the hubs up the tree, not only this node"
    )
    p.add_argument(
        "--scope", help="with --beyond: a division prefix (52: the province; default all)"
    )
    p.set_defaults(handler=_catalog_list)
    p = group.add_parser("show", parents=[reads], help="one entry in full")
    p.add_argument("provider", metavar="PROVIDER")
    p.add_argument("code", metavar="CODE")
    p.set_defaults(handler=_catalog_show)

    group = add_verb_group(
        verbs,
        "sub",
        "subscriptions: request, list, approve, refuse, revoke, escalate, cases, publish, "
        "fill-gaps, correct, corrections, answer, correction",
        f"""Examples:
  {prog} sub request 522301.minzheng 101001/000001 --purpose "低保核验" \\
      --scope "本县申请人" --items 身份证号,姓名
  {prog} sub list                       # requests this node sent, with their states
  {prog} sub list --incoming --state pending
  {prog} sub approve 5f0c... --items 身份证号,姓名 --mask 身份证号=keep:6:4 --expires 2026-12-31
  {prog} sub refuse 5f0c... --reason "purpose not covered by the conditions"
  {prog} sub escalate 5f0c... --reason "no answer within the deadline"
  {prog} sub publish 101001/000001 records.jsonl   # as provider: to every live grant
  {prog} sub cases                      # at the provider's division hub
  {prog} sub re-review 5f0c... --reason "..."   |   {prog} sub uphold 5f0c... --reason "..."
  {prog} sub fill-gaps 522301.minzheng 101001/000001   # ask again for missing records
  {prog} sub correct 522301.minzheng 101001/000001 17 --items 姓名 --text "姓名与户籍不符"
  {prog} sub corrections                # open corrections received, as provider
  {prog} sub answer 9a41... --accept --text "已更正，将重新推送"
  {prog} sub correction 9a41...         # its state and the provider's answer

Masks: ITEM=keep:FIRST:LAST[:CHAR], ITEM=redact[:TEXT], ITEM=hash, ITEM=year_only.
Records: one JSON object per line, data item -> value (bytes as {{"base64": "..."}});
subscribers take them with 'receive', which shows them decoded.""",
    )
    p = group.add_parser("request", parents=[acts], help="ask a provider for a resource")
    p.add_argument("provider", metavar="PROVIDER")
    p.add_argument("code", metavar="CODE")
    p.add_argument("--purpose", required=True, help="what the data is for")
    p.add_argument("--scope", required=True, help="whom or what it covers")
    p.add_argument("--items", required=True, type=_items, help="data items, comma-separated")
    p.set_defaults(handler=_sub_request)
    p = group.add_parser("list", parents=[reads], help="requests sent (or --incoming received)")
    p.add_argument("--incoming", action="store_true", help="requests received as provider")
    p.add_argument("--state", choices=_STATES)
    p.set_defaults(handler=_sub_list)
    p = group.add_parser("show", parents=[reads], help="one request this node sent")
    p.add_argument("request_id", metavar="REQUEST_ID")
    p.set_defaults(handler=_sub_show)
    p = group.add_parser("approve", parents=[acts], help="grant a pending request")
    p.add_argument("request_id", metavar="REQUEST_ID")
    p.add_argument("--items", type=_items, help="grant only these (default: all requested)")
    p.add_argument("--mask", type=parse_mask, action="append", metavar="ITEM=RULE")
    p.add_argument("--expires", help="ISO date or date-time (a date: the end of that day, CST)")
    p.set_defaults(handler=_decide("incoming", "approve"))
    for step, where, text in (
        ("refuse", "incoming", "refuse a pending request, with the reason"),
        ("revoke", "incoming", "end a grant (from the next record on)"),
        ("escalate", "requests", "take a refused or expired request to the sharing authority"),
        ("re-review", "cases", "direct the provider to look again (at the hub)"),
        ("uphold", "cases", "uphold the provider's answer (at the hub)"),
    ):
        p = group.add_parser(step, parents=[acts], help=text)
        p.add_argument("request_id", metavar="REQUEST_ID")
        p.add_argument("--reason", required=True)
        p.set_defaults(handler=_decide(where, step))
    p = group.add_parser(
        "publish", parents=[acts], help="push records of a resource to its live grants"
    )
    p.add_argument("code", metavar="CODE")
    p.add_argument("file", metavar="FILE", help="one JSON record per line (.jsonl), or - for stdin")
    p.set_defaults(handler=_sub_publish)
    p = group.add_parser("cases", parents=[reads], help="open escalations (at a hub)")
    p.set_defaults(handler=_sub_cases)
    p = group.add_parser(
        "fill-gaps", parents=[acts], help="ask the provider again for records this node misses"
    )
    p.add_argument("provider", metavar="PROVIDER")
    p.add_argument("code", metavar="CODE")
    p.set_defaults(handler=_sub_fill_gaps)
    p = group.add_parser("correct", parents=[acts], help="report a record as wrong (校核)")
    p.add_argument("provider", metavar="PROVIDER")
    p.add_argument("code", metavar="CODE")
    p.add_argument("seq", metavar="SEQ", type=_seq, help="the record's number")
    p.add_argument("--items", required=True, type=_items, help="data items in doubt, a,b")
    p.add_argument("--text", required=True, help="what looks wrong")
    p.set_defaults(handler=_sub_correct)
    p = group.add_parser(
        "corrections",
        parents=[reads],
        help="open corrections received as provider (or --reported: those this node sent)",
    )
    p.add_argument("--reported", action="store_true", help="corrections this node reported")
    p.add_argument("--state", choices=["open", "accepted", "rejected", "sent"])
    p.set_defaults(handler=_sub_corrections)
    p = group.add_parser("answer", parents=[acts], help="answer a correction, as provider")
    p.add_argument("correction_id", metavar="CORRECTION_ID")
    decision = p.add_mutually_exclusive_group(required=True)
    decision.add_argument(
        "--accept", dest="accepted", action="store_const", const=True, help="the record is wrong"
    )
    decision.add_argument(
        "--reject", dest="accepted", action="store_const", const=False, help="the record stands"
    )
    p.add_argument("--text", required=True, help="the answer, for the subscriber")
    p.set_defaults(handler=_sub_answer)
    p = group.add_parser(
        "correction", parents=[reads], help="one correction this node reported, with its answer"
    )
    p.add_argument("correction_id", metavar="CORRECTION_ID")
    p.set_defaults(handler=_sub_correction)
