"""One message's custody, hop by hop, across the nodes the operator can reach (``audit trace``).

Theory of operation
-------------------
Every node logs custody per batch (``exchnode.audit``'s ``CustodyRecorder``):
``accept`` names the neighbour that handed the envelope over (the node itself
for its own messages), ``relay`` the next hop and whether it took custody,
``deliver`` the application's acknowledgement (``delivered``) or a service's
(``consumed``), ``expire`` and ``drop`` where custody ended otherwise; each
record lists the message ids it covers (``messages``).  So a message's path
is in the logs of the nodes it crossed, each naming the next.

:func:`trace` starts at one node, finds the records that name the message,
and follows every hop they name -- forward to a ``relay``'s next hop, back to
an ``accept``'s neighbour -- to each node the caller holds access to (its
auditor's token: a node folder, or an entry of a reach file).  Where a hop
leads to a node it cannot reach, the trace says so: that is where access
ends.  For the node that sent the message (its ``accept`` names itself), the
receipts and reports come from its message status, when the operator's token
is held too.

Finding the records reads the log newest first, a page at a time through
``/v1/audit/records`` (the auditor's read, no load on the node's store thread
beyond a page), and stops at the record where custody began at that node
(``accept ... accepted``) or after ``scan`` records.

A reach file (TOML) names nodes beyond the local folders::

    [[node]]
    name = "520102"
    url = "http://10.1.0.2:8080"
    auditor_token_file = "/etc/exchnode/reach/520102.auditor"
    operator_token_file = "/etc/exchnode/reach/520102.operator"  # optional
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exchnode.audit import Role
from exchnode.errors import UsageError

from .client import OperatorClient, OperatorError
from .config import DaemonConfig

__all__ = ["Access", "Hop", "Trace", "access_from_config", "read_reach_file", "trace"]

PAGE = 2_000
DEFAULT_SCAN = 200_000


@dataclass(frozen=True, slots=True)
class Access:
    """How to reach one node's API: its URL and the token files of the roles held."""

    name: str
    url: str
    tokens: dict[Role, Path]

    def client(self) -> OperatorClient:
        return OperatorClient(self.url, credentials=dict(self.tokens), timeout=120.0)


def access_from_config(config: DaemonConfig) -> Access:
    return Access(config.name, config.operator.url, dict(config.operator.token_files()))


def read_reach_file(path: Path) -> list[Access]:
    """``[[node]]`` entries: name, url, auditor_token_file, optional operator_token_file."""
    try:
        document = tomllib.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise UsageError(f"--reach: cannot read {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"--reach: {path} is not TOML: {exc}") from None
    nodes = document.get("node")
    if not isinstance(nodes, list) or not nodes:
        raise UsageError(f"--reach: {path} has no [[node]] entries")
    out = []
    for i, entry in enumerate(nodes):
        where = f"--reach: {path}: node[{i}]"
        if not isinstance(entry, dict):
            raise UsageError(f"{where} is not a table")
        for key in ("name", "url", "auditor_token_file"):
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise UsageError(f"{where}: {key} is missing (a text)")
        tokens = {Role.AUDITOR: path.parent / entry["auditor_token_file"]}
        if isinstance(entry.get("operator_token_file"), str):
            tokens[Role.OPERATOR] = path.parent / entry["operator_token_file"]
        out.append(Access(entry["name"], entry["url"], tokens))
    return out


@dataclass(frozen=True, slots=True)
class Event:
    """One custody record that names the message, at one node."""

    node: str
    seq: int
    time: str
    time_ms: int
    action: str
    peer: str | None  # the neighbour it came from (accept) or went to (relay, expire, drop)
    status: str
    code: str

    def describe(self) -> str:
        if self.action == "accept":
            source = "its own sender" if self.peer == self.node else self.peer
            what = {"accepted": "accepted", "duplicate": "accepted again (a duplicate)"}.get(
                self.code, f"{self.status} {self.code}".strip()
            )
            return f"{what} from {source}"
        if self.action == "relay":
            if self.status == "ok":
                return f"forwarded to {self.peer} (it took custody)"
            return f"forwarding to {self.peer} refused: {self.code}"
        if self.action == "deliver":
            if self.code == "delivered":
                return "delivered: the application acknowledged it"
            return "consumed by the node (a receipt, report or service message)"
        if self.action == "expire":
            return f"expired waiting for {self.peer or 'the application'}"
        if self.action == "drop":
            return f"dropped ({self.code}) waiting for {self.peer}"
        return f"{self.action} {self.status} {self.code}".strip()

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "seq": self.seq,
            "time": self.time,
            "event": self.action,
            "peer": self.peer,
            "outcome": self.status,
            "code": self.code,
            "what": self.describe(),
        }


@dataclass(slots=True)
class Hop:
    """What one node's log says of the message; or why it could not be asked."""

    node: str
    events: list[Event] = field(default_factory=list)
    error: str | None = None
    searched: int = 0
    complete: bool = True  # False: stopped after ``scan`` records without custody's start


@dataclass(slots=True)
class Trace:
    message_id: str
    hops: list[Hop]
    unreachable: list[tuple[str, str]]  # (node, named by) where access ends
    status: dict[str, Any] | None = None  # the sender's receipts and reports
    status_from: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "hops": [
                {
                    "node": h.node,
                    "events": [e.to_json() for e in h.events],
                    "error": h.error,
                    "records_searched": h.searched,
                    "complete": h.complete,
                }
                for h in self.hops
            ],
            "access_ends": [{"node": n, "named_by": by} for n, by in self.unreachable],
            "status": self.status,
            "status_from": self.status_from,
        }

    def text(self) -> str:
        lines = [f"message {self.message_id}: custody hop by hop"]
        width = max((len(h.node) for h in self.hops), default=0)
        for hop in self.hops:
            if hop.error is not None:
                lines.append(f"  {'':29}  {hop.node:<{width}}  not asked: {hop.error}")
                continue
            if not hop.events:
                lines.append(
                    f"  {'':29}  {hop.node:<{width}}  no record of it in the newest "
                    f"{hop.searched} records"
                )
            for event in hop.events:
                lines.append(f"  {event.time:<29}  {hop.node:<{width}}  {event.describe()}")
            if not hop.complete:
                lines.append(
                    f"  {'':29}  {hop.node:<{width}}  (searched the newest {hop.searched} "
                    "records only: --scan to search further)"
                )
        if self.status is not None:
            for recipient in self.status.get("delivered_to", []):
                lines.append(f"  receipt from {recipient} (asked of {self.status_from})")
            for report in self.status.get("reports", []):
                lines.append(
                    f"  non-delivery report for {', '.join(report['targets'])}: "
                    f"{report['code']} ({report['reason']}), by {report['reporter']}"
                )
        for node, by in self.unreachable:
            lines.append(f"  access ends at {node} (named by {by}): no credential for it given")
        return "\n".join(lines)


def _events_of(node: str, records: Iterable[dict[str, Any]], message_id: str) -> list[Event]:
    found = []
    for record in records:
        if "error" in record or record.get("category") != "envelope":
            continue
        detail = record.get("detail", {})
        named = detail.get("messages", [])
        if message_id not in named and detail.get("message") != message_id:
            continue
        subject = record["subject"]
        found.append(
            Event(
                node=node,
                seq=record["seq"],
                time=record["time"],
                time_ms=record["time_ms"],
                action=record["action"],
                peer=subject["value"] if subject["kind"] == "node" else None,
                status=record["outcome"]["status"],
                code=record["outcome"]["code"] or "",
            )
        )
    return found


async def _search(client: OperatorClient, node: str, message_id: str, scan: int) -> Hop:
    """The node's records naming the message, newest page first, back to custody's start."""
    hop = Hop(node)
    first_page = await client.audit_records(0, 1)
    end = int(first_page["size"])
    while end > 0 and hop.searched < scan:
        start = max(end - PAGE, 0)
        page = await client.audit_records(start, end - start)
        records = [r for r in page["records"] if r.get("seq", end) < end]
        hop.searched += len(records) or (end - start)
        hop.events[:0] = _events_of(node, records, message_id)
        if any(e.action == "accept" and e.code in ("accepted", "repeated") for e in hop.events):
            return hop
        end = start
    hop.complete = end == 0
    return hop


async def trace(
    message_id: str, start: str, reachable: dict[str, Access], *, scan: int = DEFAULT_SCAN
) -> Trace:
    """The message's custody from node ``start`` through every node in ``reachable``."""
    message_id = message_id.lower()
    if len(message_id) != 32 or any(c not in "0123456789abcdef" for c in message_id):
        raise UsageError(f"MESSAGE_ID is 32 hex digits, as 'send' printed it; got {message_id!r}")
    hops: dict[str, Hop] = {}
    unreachable: dict[str, str] = {}
    to_visit = [(start, start)]
    while to_visit:
        node, named_by = to_visit.pop(0)
        if node in hops or node in unreachable:
            continue
        access = reachable.get(node)
        if access is None:
            unreachable[node] = named_by
            continue
        try:
            async with access.client() as client:
                hop = await _search(client, node, message_id, scan)
        except OperatorError as exc:
            hop = Hop(node, error=str(exc))
        hops[node] = hop
        for event in hop.events:
            if event.peer is None or event.peer == node:
                continue
            forward = event.action == "relay" and event.status == "ok"
            if forward or event.action == "accept":  # where it went, where it came from
                to_visit.append((event.peer, node))
    ordered = _in_path_order(hops)
    result = Trace(message_id, ordered, sorted(unreachable.items()))
    sender = next(
        (h.node for h in ordered for e in h.events if e.action == "accept" and e.peer == h.node),
        None,
    )
    if sender is not None and Role.OPERATOR in reachable[sender].tokens:
        try:
            async with reachable[sender].client() as client:
                result.status = await client.status(message_id)
            result.status_from = sender
        except OperatorError:
            pass  # the custody path stands without it
    return result


def _in_path_order(hops: dict[str, Hop]) -> list[Hop]:
    """The hops from where the message entered (as far as seen) along the relays."""
    came_from = {
        hop.node: e.peer
        for hop in hops.values()
        for e in hop.events
        if e.action == "accept" and e.peer not in (None, hop.node)
    }
    nexts: dict[str, list[str]] = {}
    for hop in hops.values():
        for e in hop.events:
            if e.action == "relay" and e.status == "ok" and e.peer in hops:
                nexts.setdefault(hop.node, []).append(e.peer)
    roots = [n for n in hops if came_from.get(n) not in hops]
    roots.sort(key=lambda n: min((e.time_ms for e in hops[n].events), default=0))
    ordered: list[str] = []
    stack = list(reversed(roots))
    while stack:
        node = stack.pop()
        if node in ordered:
            continue
        ordered.append(node)
        stack.extend(reversed(nexts.get(node, [])))
    ordered += [n for n in hops if n not in ordered]
    return [hops[n] for n in ordered]
