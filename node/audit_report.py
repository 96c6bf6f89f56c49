"""The oversight report of a set of nodes: their verified logs and catalogs, fetched and counted.

Theory of operation
-------------------
``exchnode audit report`` (``node.cli_audit``) and the federation demo both
call :func:`collect`; the counting is ``exchnode.audit``'s.  Per node,
through its local API with the auditor's credential (every path is under
``/v1/audit``):

1. ``GET /v1/audit/verify``: the node stores and signs what is pending, then
   checks its stored log end to end.  ``verified_size`` is the largest signed
   head whose root the stored records reproduce.
2. ``GET /v1/audit/export`` pages, from the checkpoint (``first_seq``) up to
   ``verified_size``: the records as stored, decoded here with
   ``decode_record`` (the same checks as every other reader).  Only records
   under a verified signed head are counted.
3. ``GET /v1/audit/catalog``: the catalog the node holds.  Copies from every
   node merge by version (``OversightBuilder.add_resources``).

A node is never dropped.  One that cannot be reached, or that answers under
another name, is ``unreachable`` with the reason; one whose log has findings
is ``failed``, named with its findings, and only its records below
``verified_size`` count; one whose reading stopped part way is ``failed`` too,
with what was read.  Nodes are read a few at a time; ``progress`` gets a line
per page and per node.

``--offline`` (:func:`collect_offline`) reads stopped nodes' stores instead
(``node.audit_offline``), each under the daemon's own lock, verified here
with the daemon's own trust and directory loaders.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from exchnode.audit import AuditRecord, LogStatus, OversightBuilder, Resource, decode_record
from exchnode.catalog import ShareType, UpdateCycle
from exchnode.errors import ExchnodeError, RejectedError, UsageError

from .audit_offline import export_offline
from .client import OperatorClient
from .config import DaemonConfig
from .operator_audit import MAX_RECORDS

__all__ = [
    "PAGE",
    "Progress",
    "collect",
    "collect_configs",
    "collect_offline",
    "resource_from_json",
]

PAGE = MAX_RECORDS  # records per /v1/audit/export call
PARALLEL = 4  # nodes read at once
Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def resource_from_json(document: Mapping[str, Any]) -> Resource:
    """A catalog record as the API gives it (``forms.record_json``) → what the report needs."""
    try:
        entry = document.get("entry")
        withdrawn = document["status"] == "withdrawn" or entry is None
        return Resource(
            provider=str(document["provider"]),
            code=str(document["code"]),
            version=int(document["version"]),
            updated_ms=int(document["issued_ms"]),
            name=str(entry["name"]) if entry else "",
            share_type=ShareType(entry["share_type"]) if entry else None,
            update_cycle=UpdateCycle(entry["update_cycle"]) if entry else None,
            withdrawn=withdrawn,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"a catalog record the report cannot read: {exc!r}") from None


def _findings(report: Mapping[str, Any]) -> str:
    """One line naming a failed log's findings (the first three, and how many more)."""
    findings = report.get("findings", [])
    parts = []
    for finding in findings[:3]:
        where = finding.get("range")
        seqs = ""
        if where:
            first, end = where
            seqs = f" at seq {first}" if end == first + 1 else f" at seqs {first}..{end - 1}"
        parts.append(f"{finding['kind']}{seqs}")
    more = f" and {len(findings) - 3} more" if len(findings) > 3 else ""
    return "; ".join(parts) + more


def _decode(rows: Iterable[Sequence[Any]]) -> list[AuditRecord]:
    records = []
    for seq, text in rows:
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise UsageError(f"record {seq} is not base64") from None
        records.append(decode_record(data))
    return records


def _start(builder: OversightBuilder, name: str, report: Mapping[str, Any]) -> tuple[int, int]:
    """The node's verdict into the builder; the range of seqs to read, [first, end)."""
    if report.get("node") != name:
        raise UsageError(f"the node answers as {report.get('node')!r}, not {name}")
    if report["ok"]:
        builder.set_status(name, LogStatus.VERIFIED)
    else:
        builder.set_status(name, LogStatus.FAILED, _findings(report))
    return int(report["first_seq"]), int(report["verified_size"])


async def _collect_one(
    builder: OversightBuilder, name: str, client: OperatorClient, progress: Progress
) -> None:
    try:
        report = await client.audit_verify()
        first, end = _start(builder, name, report)
    except (ExchnodeError, KeyError, TypeError, ValueError) as exc:
        builder.set_status(name, LogStatus.UNREACHABLE, _one_line(exc))
        progress(f"{name}: unreachable: {_one_line(exc)}")
        return
    seq = first
    try:
        while seq < end:
            page = await client.audit_export(seq, min(PAGE, end - seq))
            rows = [row for row in page["records"] if row[0] < end]
            if not rows:
                raise UsageError(f"the log ends at seq {seq}, before its verified size {end}")
            builder.add_records(name, _decode(rows))
            seq = int(rows[-1][0]) + 1
            if seq < end:
                progress(f"{name}: {seq - first} of {end - first} records")
        catalog = await client.audit_catalog()
        builder.add_resources(resource_from_json(r) for r in catalog["records"])
    except (ExchnodeError, KeyError, TypeError, ValueError, IndexError) as exc:
        problem = f"reading stopped at seq {seq}: {_one_line(exc)}"
        builder.set_status(name, LogStatus.FAILED, problem)
        progress(f"{name}: {problem}")
        return
    verdict = "verified" if report["ok"] else f"NOT verified ({_findings(report)})"
    progress(f"{name}: {end - first} records, {verdict}")


def _one_line(exc: BaseException) -> str:
    text = f"{exc} [{exc.code}]" if isinstance(exc, RejectedError) else str(exc)
    return " ".join(text.split()) or type(exc).__name__


async def collect(
    builder: OversightBuilder,
    clients: Mapping[str, OperatorClient],
    progress: Progress = _quiet,
) -> None:
    """Read every node's verified log and catalog into ``builder`` (clients already open)."""
    gate = asyncio.Semaphore(PARALLEL)

    async def one(name: str) -> None:
        async with gate:
            await _collect_one(builder, name, clients[name], progress)

    await asyncio.gather(*(one(name) for name in sorted(clients)))


async def collect_configs(
    builder: OversightBuilder,
    configs: Sequence[DaemonConfig],
    progress: Progress = _quiet,
    *,
    timeout: float = 120.0,
) -> None:
    """:func:`collect` over the nodes of these configs, each with the credentials it names."""
    names = [config.name for config in configs]
    if len(set(names)) != len(names):
        raise UsageError(f"a node is named twice: {', '.join(sorted(names))}")
    async with contextlib.AsyncExitStack() as stack:
        clients = {
            config.name: await stack.enter_async_context(
                OperatorClient.for_config(config, timeout=timeout)
            )
            for config in configs
        }
        await collect(builder, clients, progress)


def collect_offline(
    builder: OversightBuilder, configs: Sequence[DaemonConfig], progress: Progress = _quiet
) -> None:
    """The same, from stopped nodes' stores (``node.audit_offline``)."""
    for config in configs:
        name = config.name
        try:
            report, rows, catalog = export_offline(config)
            first, end = _start(builder, name, report)
            builder.add_records(
                name, [decode_record(data) for seq, data in rows if first <= seq < end]
            )
            builder.add_resources(resource_from_json(r) for r in catalog["records"])
        except (ExchnodeError, OSError) as exc:
            builder.set_status(name, LogStatus.UNREACHABLE, _one_line(exc))
            progress(f"{name}: unreadable: {_one_line(exc)}")
            continue
        verdict = "verified" if report["ok"] else f"NOT verified ({_findings(report)})"
        progress(f"{name}: {end - first} records (offline), {verdict}")
