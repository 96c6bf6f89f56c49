"""What every store backend shares beyond the argument checks (federation layer).

Three backends (memory, SQLite, PostgreSQL) implement one contract, so what
does not depend on where the rows live is here, once:

* :func:`plan_accept` applies the dedup rule (``classify``) and the
  idempotency rule (``classify_send``) to a whole batch, each item against
  the records as the items before it in the same batch left them.  The
  backend only says how to look a record up and then writes the plan: the
  dedup records (and whether one was stored before, so a database knows
  INSERT from UPDATE), the send keys, and the entries of the items taken.
  A backend that must guard against concurrent writers (PostgreSQL) looks the
  batch's records up under lock first and plans against what it read.
* :func:`queue_rows` and :func:`expired_in_order`: the rows a planned
  batch adds to the database queues, and the expired entries read from them
  put in the one order every backend takes them in.
* :class:`StoreLifeCycle`: a store is its own context manager, closed on exit.
* :class:`DepthsInMemory`: the depth calls of a backend that counts its
  queues in memory (memory, SQLite: each alone on its data).
* :class:`SqlAuditReads`: the audit calls both database backends answer
  with the same statement (no parameters, so no placeholder style to differ
  in), over the one primitive each backend gives (``_first_row``).

Pure: no I/O.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from exchnode.store._audit_tree import AuditTreeSource
from exchnode.store._records import (
    AcceptItem,
    AcceptOutcome,
    AcceptStatus,
    AuditSealer,
    ExpiredEntry,
    QueueDepth,
    QueueDepths,
    SeenRecord,
    SendRecord,
    classify,
    classify_send,
    join_targets,
    row_fields,
)

__all__ = [
    "AcceptPlan",
    "DepthsInMemory",
    "SqlAuditReads",
    "StoreLifeCycle",
    "expired_in_order",
    "plan_accept",
    "queue_rows",
]

DedupKey = tuple[str, bytes]  # (sender, message id)


@dataclass(slots=True)
class AcceptPlan:
    """What an accepted batch changes: computed before anything is written.

    ``seen``: per (sender, message id), the dedup record to store and whether
    a record (live or expired) was stored before.  ``sends``: the send keys
    to store (a key's record replaces an expired one).  ``taken``: the items
    with new targets and their outcomes, in batch order (their queue entries).
    """

    outcomes: list[AcceptOutcome] = field(default_factory=list)
    seen: dict[DedupKey, tuple[SeenRecord, bool]] = field(default_factory=dict)
    sends: dict[bytes, SendRecord] = field(default_factory=dict)
    taken: list[tuple[AcceptItem, AcceptOutcome]] = field(default_factory=list)


def plan_accept(
    batch: Iterable[AcceptItem],
    now_ms: int,
    seen: Callable[[DedupKey], SeenRecord | None],
    sent: Callable[[bytes], SendRecord | None],
) -> AcceptPlan:
    """The outcome of every item of ``batch`` and what storing them changes.

    ``seen`` and ``sent`` look up the stored dedup record of a key and the
    stored record of a send key (expired ones included); records the batch
    itself writes take precedence, so a copy repeated within one batch is a
    duplicate and a second send under one key a repeat.
    """
    plan = AcceptPlan()
    for item in batch:
        if item.send_key is not None:
            send = item.send_key.key
            known = plan.sends[send] if send in plan.sends else sent(send)
            repeated = classify_send(item, known, now_ms)
            if repeated is not None:
                plan.outcomes.append(repeated)
                continue
        key = (item.sender, item.message_id)
        if key in plan.seen:
            before: SeenRecord | None
            before, stored = plan.seen[key]
        else:
            before = seen(key)
            stored = before is not None
        outcome = classify(item, before, now_ms)
        plan.outcomes.append(outcome)
        if outcome.status is not AcceptStatus.ACCEPTED:
            continue
        # ACCEPTED means: no live record, or a live one with the same digest.
        held = before.targets if before is not None and before.expires_ms > now_ms else frozenset()
        new = frozenset(outcome.local).union(*outcome.forward.values())
        record = SeenRecord(digest=item.digest, expires_ms=item.expires_ms, targets=held | new)
        plan.seen[key] = (record, stored)
        plan.taken.append((item, outcome))
        if item.send_key is not None:
            plan.sends[item.send_key.key] = SendRecord(
                request=item.send_key.request,
                message_id=item.message_id,
                digest=item.digest,
                expires_ms=item.expires_ms,
            )
    return plan


InboxRow = tuple[str, bytes, bytes, str, int, int, bytes]
"""An inbox row: sender, message id, digest, targets (joined), expiry, size, data."""
OutboundRow = tuple[str, str, bytes, bytes, str, int, int, bytes]
"""An outbound row: the next hop, then an inbox row's columns."""


def queue_rows(plan: AcceptPlan) -> tuple[list[InboxRow], list[OutboundRow]]:
    """The rows the plan's taken items add: an inbox row each, then a row per next hop."""
    inbox: list[InboxRow] = []
    outbound: list[OutboundRow] = []
    for item, outcome in plan.taken:
        size = len(item.data)
        envelope = (item.sender, item.message_id, item.digest)
        if outcome.local:
            local = join_targets(outcome.local)
            inbox.append((*envelope, local, item.expires_ms, size, item.data))
        for hop, targets in outcome.forward.items():
            joined = join_targets(targets)
            outbound.append((hop, *envelope, joined, item.expires_ms, size, item.data))
    return inbox, outbound


def expired_in_order(
    outbound: Iterable[Sequence[Any]], inbox: Iterable[Sequence[Any]], max_count: int
) -> list[tuple[ExpiredEntry, int]]:
    """The first ``max_count`` expired entries and their sizes, earliest expiry first.

    ``outbound`` rows are ``next_hop, size`` then an entry's columns
    (``row_fields``), ``inbox`` rows ``size`` then those: each queue's
    expired entries up to the bound, merged in the order MemoryStore takes
    them (expiry, the inbox before next hops, hop, seq).
    """
    found: list[tuple[tuple[int, int, str, int], ExpiredEntry, int]] = []
    for hop, size, *row in outbound:
        entry = ExpiredEntry(next_hop=hop, **row_fields(row))
        found.append(((entry.expires_ms, 1, hop, entry.seq), entry, size))
    for size, *row in inbox:
        entry = ExpiredEntry(next_hop=None, **row_fields(row))
        found.append(((entry.expires_ms, 0, "", entry.seq), entry, size))
    found.sort(key=lambda f: f[0])
    return [(entry, size) for _, entry, size in found[:max_count]]


class StoreLifeCycle(ABC):
    """A store as a context manager: ``with Store(...) as store:`` closes it on the way out."""

    @abstractmethod
    def close(self) -> None:
        """Release the store; every backend says what that means for it."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class DepthsInMemory(ABC):
    """The queue depth calls answered from counters kept in memory.

    For the backends alone on their data (memory, SQLite), which count every
    change after it is committed; PostgreSQL, shared by workers, reads rows.
    A backend gives ``_check_open`` (raising once closed) and the attributes.
    """

    _lock: threading.Lock
    _depths: QueueDepths

    @abstractmethod
    def _check_open(self) -> None:
        """Raise once the store is closed."""

    def next_hops(self) -> list[str]:
        with self._lock:
            self._check_open()
            return self._depths.next_hops()

    def queue_depth(self, next_hop: str) -> QueueDepth:
        with self._lock:
            self._check_open()
            return self._depths.outbound(next_hop)

    def inbox_depth(self) -> QueueDepth:
        with self._lock:
            self._check_open()
            return self._depths.inbox()

    def totals(self) -> QueueDepth:
        with self._lock:
            self._check_open()
            return self._depths.totals()


class SqlAuditReads(StoreLifeCycle):
    """The audit log's calls that are one and the same statement in SQLite and PostgreSQL.

    A backend gives ``_open_conn`` (raising once closed) and ``_first_row``
    (one statement's first row, under its lock, its errors as StoreError);
    the attributes are the backend's.
    """

    _lock: threading.Lock
    _sealer: AuditSealer | None
    _tree_source: AuditTreeSource | None
    _ordered_from: int  # record times are checked from this seq on
    _has_seal = True  # False for an older SQLite schema read read-only

    @abstractmethod
    def _open_conn(self) -> object:
        """The backend's open connection (raising once the store is closed)."""

    @abstractmethod
    def _first_row(self, what: str, query: str) -> tuple[Any, ...] | None:
        """One statement's first row, under the store's lock, its errors as StoreError."""

    def set_audit_sealer(self, sealer: AuditSealer | None) -> None:
        with self._lock:
            self._sealer = sealer

    def set_audit_tree(self, source: AuditTreeSource | None) -> None:
        with self._lock:
            self._tree_source = source

    def audit_ordered_from(self) -> int:
        with self._lock:
            self._open_conn()
            return self._ordered_from

    def audit_seal(self) -> bytes | None:
        if not self._has_seal:
            with self._lock:
                self._open_conn()
                return None
        row = self._first_row("audit_seal", "SELECT data FROM audit_seal")
        return None if row is None else bytes(row[0])

    def audit_checkpoint(self) -> bytes | None:
        row = self._first_row("audit_checkpoint", "SELECT data FROM audit_checkpoint")
        return None if row is None else bytes(row[0])
