"""The operator API's audit endpoints (``/v1/audit``), and the JSON forms of the audit log.

Theory of operation
-------------------
The node's :class:`~exchnode.aio.AuditService` keeps the audit log
in the node's store: the catalog's and subscriptions' events as records, with
a signed tree head every ``[audit] head_interval`` seconds.  Two reads:

* ``GET /v1/audit/verify`` stores what is pending and signs a head over it
  (``AuditService.sync``: the auditor's "now"), then checks the stored log end
  to end (``AuditService.verify``, i.e. ``audit_verify.verify_log``).  The
  answer is the report: ``ok``, the counts, the last head, and each finding
  with its ``kind``, ``seq`` and ``range`` (``[first, end)``) and ``head``.
  A log with findings is still a 200: the check worked, the log did not.
  ``GET /v1/audit/verify?witnessed=HEAD`` (repeatable, each a base64url head)
  does the same against heads of this node its parent keeps (``kept_head`` of
  the parent's ``/v1/audit/witnessed``): what the parent saw must be in the
  log.  Still a GET: the auditor's area writes nothing.
* ``GET /v1/audit/records?from=SEQ&limit=N`` pages through the stored
  records, decoded: ``seq``, ``time``, ``category``, ``action``, ``actor``
  (role and name), ``subject`` (kind and value; ids as hex), ``outcome``
  (status and code) and ``detail`` (bytes as hex).  Records reach the store
  within ``[audit] flush`` seconds of their event.  A stored record that no
  longer decodes is listed with its ``error`` rather than failing the page.

Two more for ``exchnode audit report`` (``node.audit_report``), which counts
from the records themselves and must not depend on a JSON rendering of them:

* ``GET /v1/audit/export?from=SEQ&limit=N``: the same pages, each record as
  it is stored (``[seq, base64 of the canonical encoding]``), to be decoded
  with ``audit_records.decode_record``.  The report reads the records below
  the ``verified_size`` that ``/v1/audit/verify`` answered: those under a
  signed head whose root they reproduce.
* ``GET /v1/audit/catalog``: the catalog this node holds, tombstones
  included, as ``/v1/catalog?status=all`` gives it (``forms.record_json``), so
  the auditor's credential suffices for a report.  It is read from the
  catalog service's stored snapshot (written before every change is
  announced), the same bytes a stopped node's store holds.

:func:`report_json` and :func:`record_json` are also what ``exchnode audit``
prints for a log read from the store while the daemon is stopped
(``node.audit_offline``), so both ways answer alike.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web

from exchnode.aio import STATE_KEY, AuditService, WitnessService, WitnessStatus
from exchnode.audit import DetailValue, VerificationReport, decode_record, decode_tree_head
from exchnode.catalog import ROWS_PREFIX, CatalogState
from exchnode.errors import RejectedError, UsageError

from .api import HTTPProblem, checked_params
from .forms import iso_ms
from .forms import record_json as catalog_record_json

if TYPE_CHECKING:
    from exchnode.aio import Node
    from exchnode.store import MetaStore

__all__ = [
    "CATALOG_META",
    "DEFAULT_RECORDS",
    "MAX_RECORDS",
    "AuditApi",
    "catalog_json",
    "export_json",
    "head_json",
    "record_json",
    "report_json",
    "witnessed_heads",
]

DEFAULT_RECORDS = 100
MAX_RECORDS = 10_000
MAX_WITNESSED = 4  # heads of this node a verify may be given (a parent keeps one)
CATALOG_META = STATE_KEY  # where exchnode.aio keeps its state in the store's meta
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _iso(ms: int) -> str:
    return iso_ms(ms, timespec="milliseconds") or ""


def _value(value: DetailValue) -> str | int | list[str]:
    if isinstance(value, tuple):  # message ids of a custody batch
        return [item.hex() for item in value]
    return value.hex() if isinstance(value, bytes) else value


def witness_json(status: WitnessStatus) -> dict[str, Any]:
    """What a hub knows of one child's log: the head it keeps, its last verdict and problem."""
    head = status.head

    def when(ms: int | None) -> str | None:
        return _iso(ms) if ms else None

    return {
        "child": status.child,
        "kept_size": status.size,
        "kept_root": head.root.hex() if head is not None else None,
        "kept_time": when(head.timestamp_ms) if head is not None else None,
        "accepted": when(status.accepted_ms),
        "verdict": status.verdict,
        "verdict_ok": status.verdict_ok,
        "verdict_time": when(status.verdict_ms),
        "checked": when(status.checked_ms),
        "error": status.error,
        "failures": status.failures,
        "unanswered": status.unanswered,
        "kept_head": base64.b64encode(head.data).decode("ascii") if head is not None else None,
    }


def witnessed_heads(document: Any, child: str) -> list[bytes]:
    """The heads of ``child`` in a parent's ``/v1/audit/witnessed`` answer (or its ``children``).

    Raises ``UsageError`` naming what is wrong with the document.
    """
    children = document.get("children") if isinstance(document, dict) else document
    if not isinstance(children, list):
        raise UsageError("witnessed heads: expected the JSON of 'audit witnessed --json'")
    heads: list[bytes] = []
    for i, item in enumerate(children):
        if not isinstance(item, dict) or not isinstance(item.get("child"), str):
            raise UsageError(f"witnessed heads: children[{i}] is not a child's entry")
        if item["child"] != child or item.get("kept_head") is None:
            continue
        try:
            heads.append(base64.b64decode(item["kept_head"], validate=True))
        except (TypeError, ValueError, binascii.Error):
            raise UsageError(f"witnessed heads: children[{i}].kept_head is not base64") from None
    return heads


def record_json(seq: int, data: bytes) -> dict[str, Any]:
    """One stored record, decoded for auditors; one that fails to decode says why."""
    try:
        record = decode_record(data)
    except RejectedError as exc:
        return {"seq": seq, "error": str(exc), "code": exc.code}
    entry = record.entry
    return {
        "seq": record.seq,
        "time_ms": entry.time_ms,
        "time": _iso(entry.time_ms),
        "node": record.node,
        "category": entry.category.value,
        "action": entry.action,
        "actor": {"role": entry.actor.role.value, "name": entry.actor.name},
        "subject": {"kind": entry.subject.kind.value, "value": _value(entry.subject.value)},
        "outcome": {"status": entry.outcome.status.value, "code": entry.outcome.code},
        "detail": {key: _value(value) for key, value in entry.detail},
    }


def head_json(encoded: bytes, timespec: str = "milliseconds") -> dict[str, Any]:
    """A stored signed tree head, decoded; one that no longer decodes is {error, code}.

    ``timespec`` of its ``time``: the auditor's report keeps milliseconds, the
    console shows seconds like its other times.
    """
    try:
        decoded = decode_tree_head(encoded)[0]
    except RejectedError as exc:
        return {"error": str(exc), "code": exc.code}
    return {
        "tree_size": decoded.tree_size,
        "root": decoded.root.hex(),
        "time_ms": decoded.timestamp_ms,
        "time": iso_ms(decoded.timestamp_ms, timespec=timespec) or "",
    }


def report_json(report: VerificationReport, size: int, last_head: bytes | None) -> dict[str, Any]:
    """The verification report, plus the log's ``size`` and its last stored head."""
    out = report.to_json()
    out["size"] = size
    for finding in out["findings"]:
        if "seq" in finding:
            finding["range"] = [finding["seq"], finding.get("end", finding["seq"] + 1)]
    out["last_head"] = None if last_head is None else head_json(last_head)
    return out


def export_json(size: int, rows: Sequence[tuple[int, bytes]]) -> dict[str, Any]:
    """A page of stored records as they are: ``[seq, base64]`` each, and the next seq."""
    following = rows[-1][0] + 1 if rows else None
    return {
        "size": size,
        "records": [[seq, base64.b64encode(data).decode("ascii")] for seq, data in rows],
        "next": following if following is not None and following < size else None,
    }


def catalog_json(rows: Sequence[tuple[str, bytes]], node: str) -> dict[str, Any]:
    """The catalog a node stored, every record, tombstones included.

    ``rows`` are the store's ``catalog`` keys (``catalog_rows``): the per-record
    rows, or, from a store the node has not started on since, format 1's one value.
    """
    legacy = [value for key, value in rows if key == CATALOG_META]
    kept = [(key, value) for key, value in rows if key.startswith(ROWS_PREFIX)]
    if kept:
        state = CatalogState.from_rows(kept, node)
    elif legacy:
        state = CatalogState.from_snapshot(legacy[0], node, feed_id=bytes(16))
    else:
        return {"records": []}
    return {"records": [catalog_record_json(r) for r in state.records()]}


def catalog_rows(store: MetaStore) -> list[tuple[str, bytes]]:
    """Every ``catalog`` key of a (stopped) node's store, page by page."""
    rows: list[tuple[str, bytes]] = []
    after = ""
    while page := store.meta_range(CATALOG_META, after=after, limit=1000):
        rows.extend(page)
        after = page[-1][0]
    return rows


class AuditApi:
    """The audit endpoints of one node's operator API."""

    def __init__(self, node: Node, audit: AuditService, witness: WitnessService | None) -> None:
        self.node = node
        self.audit = audit
        self.witness = witness

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("GET", "/v1/audit/verify", self._verify),
            ("GET", "/v1/audit/records", self._records),
            ("GET", "/v1/audit/export", self._export),
            ("GET", "/v1/audit/catalog", self._catalog),
            ("GET", "/v1/audit/witnessed", self._witnessed),
        ]

    async def _verify(self, request: web.Request) -> web.Response:
        given = checked_params()["witnessed"]
        if len(given) > MAX_WITNESSED:
            raise HTTPProblem(400, f"witnessed: at most {MAX_WITNESSED} heads")
        heads = []
        for i, item in enumerate(given):
            try:
                heads.append(base64.urlsafe_b64decode(item.encode("ascii")))
            except (UnicodeEncodeError, ValueError, binascii.Error):
                raise HTTPProblem(400, f"witnessed[{i}]: not a base64url tree head") from None
        return await self._report(heads)

    async def _report(self, witnessed: Sequence[bytes]) -> web.Response:
        await self.audit.sync()
        report = await self.audit.verify(witnessed)
        store = self.node.store

        def facts() -> tuple[int, list[bytes]]:
            return store.audit_size(), store.tree_heads(1)

        size, heads = await self.node.run_in_store(facts)
        return web.json_response(report_json(report, size, heads[-1] if heads else None))

    async def _page(self, request: web.Request) -> tuple[int, Sequence[tuple[int, bytes]]]:
        """The log's size and the page of records ``?from=`` and ``?limit=`` ask for."""
        params = checked_params()  # checked: bounds (node.operations)
        first, limit = params["from"], params["limit"]
        store = self.node.store

        def page() -> tuple[int, Sequence[tuple[int, bytes]]]:
            return store.audit_size(), store.audit_records(first, limit)

        return await self.node.run_in_store(page)

    async def _records(self, request: web.Request) -> web.Response:
        size, rows = await self._page(request)
        records = [record_json(seq, data) for seq, data in rows]
        following = rows[-1][0] + 1 if rows else None
        return web.json_response(
            {
                "size": size,
                "records": records,
                "next": following if following is not None and following < size else None,
            }
        )

    async def _export(self, request: web.Request) -> web.Response:
        size, rows = await self._page(request)
        return web.json_response(export_json(size, rows))

    async def _witnessed(self, request: web.Request) -> web.Response:
        statuses = self.witness.witnessed() if self.witness is not None else {}
        return web.json_response(
            {"children": [witness_json(status) for _, status in sorted(statuses.items())]}
        )

    async def _catalog(self, request: web.Request) -> web.Response:
        rows = await self.node.run_in_store(catalog_rows, self.node.store)
        return web.json_response(catalog_json(rows, self.node.name))
