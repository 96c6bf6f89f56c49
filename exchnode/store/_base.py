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
* :class:`CustodyChecks`: the argument checks of ``accept``, ``take_expired``
  and ``prune``, made before a backend does its part.
* :class:`DepthsInMemory`: the depth calls of a backend that counts its
  queues in memory (memory, SQLite: each alone on its data).
* :class:`SharedSql`: the calls both database backends answer with the
  same statement (the audit log's reads, the dedup record, the small
  persistent state, pruning), written once with ``?`` placeholders that each
  backend puts in its own style (``_statement``).

Pure: no I/O.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from exchnode.federation import PeerState
from exchnode.store._audit_tree import AuditTreeSource, node_key
from exchnode.store._checks import (
    check_count,
    check_limit,
    check_meta_range,
    check_time,
    prefix_end,
)
from exchnode.store._records import (
    AcceptItem,
    AcceptOutcome,
    AcceptStatus,
    AuditHook,
    AuditRow,
    AuditSealer,
    ExpiredEntry,
    ExpiryAuditHook,
    QueueDepth,
    QueueDepths,
    SeenRecord,
    SendRecord,
    check_items,
    classify,
    classify_send,
    join_targets,
    row_fields,
    split_targets,
)

__all__ = [
    "SELECT_SEEN",
    "AcceptPlan",
    "CustodyChecks",
    "DepthsInMemory",
    "SharedSql",
    "StoreLifeCycle",
    "expired_in_order",
    "plan_accept",
    "queue_rows",
    "seen_record",
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


SELECT_SEEN = "SELECT digest, expires_ms, targets FROM dedup WHERE sender = ? AND message_id = ?"
"""A dedup record by (sender, message id), in ``?`` placeholders: :func:`seen_record` reads it."""


def seen_record(row: Sequence[Any] | None) -> SeenRecord | None:
    """The dedup record of a database row (digest, expiry, targets joined), None for no row."""
    if row is None:
        return None
    digest, expires_ms, targets = row
    return SeenRecord(
        digest=bytes(digest), expires_ms=expires_ms, targets=frozenset(split_targets(targets))
    )


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


class CustodyChecks(ABC):
    """Custody's calls that change the queues, their arguments checked once for every backend.

    Misuse is refused before the backend is asked (an empty batch is taken
    at once, even by a closed store); the backend gives the checked call's
    work: ``_accept``, ``_take_expired``, ``_prune``.
    """

    def accept(
        self, items: Iterable[AcceptItem], now_ms: int, *, audit: AuditHook | None = None
    ) -> list[AcceptOutcome]:
        batch = check_items(items)
        check_time(now_ms)
        return self._accept(batch, now_ms, audit) if batch else []

    def take_expired(
        self, now_ms: int, max_count: int, *, audit: ExpiryAuditHook | None = None
    ) -> list[ExpiredEntry]:
        check_time(now_ms)
        check_limit(max_count, "max_count")
        return self._take_expired(now_ms, max_count, audit)

    def prune(self, now_ms: int, max_count: int = 10_000) -> int:
        check_time(now_ms)
        check_limit(max_count, "max_count")
        return self._prune(now_ms, max_count)

    @abstractmethod
    def _accept(
        self, batch: list[AcceptItem], now_ms: int, audit: AuditHook | None
    ) -> list[AcceptOutcome]:
        """Take a checked, non-empty batch, in one transaction."""

    @abstractmethod
    def _take_expired(
        self, now_ms: int, max_count: int, audit: ExpiryAuditHook | None
    ) -> list[ExpiredEntry]:
        """Remove and return up to ``max_count`` entries expired at ``now_ms``."""

    @abstractmethod
    def _prune(self, now_ms: int, max_count: int) -> int:
        """Forget up to ``max_count`` dedup records (and send keys) expired at ``now_ms``."""


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


class SharedSql(StoreLifeCycle):
    """The calls that are one and the same statement in SQLite and PostgreSQL.

    The audit log's reads, custody's dedup record, the small persistent
    state, and pruning's deletes (in the caller's transaction).  Statements
    are written here once, with ``?`` placeholders; a backend gives
    ``_statement`` (a statement in its own placeholder style), ``_reading``
    (its connection for one read, its errors as StoreError) and
    ``_open_conn`` (raising once closed); the attributes are the backend's.
    """

    _lock: threading.Lock
    _sealer: AuditSealer | None
    _tree_source: AuditTreeSource | None
    _ordered_from: int  # record times are checked from this seq on
    _has_seal = True  # False for an older SQLite schema read read-only
    _has_nodes = True  # False for a SQLite schema before version 6 read read-only
    _no_limit: int | None = None  # the LIMIT that means "all rows" (PostgreSQL's NULL)

    @abstractmethod
    def _open_conn(self) -> object:
        """The backend's open connection (raising once the store is closed)."""

    @abstractmethod
    def _statement(self, sql: str) -> Any:
        """``sql``, written with ``?`` placeholders, as the backend's driver takes it."""

    @abstractmethod
    def _reading(self, what: str) -> AbstractContextManager[Any]:
        """The open connection for one read; the driver's errors become StoreError."""

    def _execute(self, conn: Any, sql: str, params: Sequence[object] = ()) -> Any:
        """Run ``sql`` (``?`` placeholders) on ``conn``: the backend's cursor."""
        return conn.execute(self._statement(sql), params)

    def _first_row(
        self, what: str, sql: str, params: Sequence[object] = ()
    ) -> tuple[Any, ...] | None:
        """One statement's first row, under the store's lock, its errors as StoreError."""
        with self._lock, self._reading(what) as conn:
            row: tuple[Any, ...] | None = self._execute(conn, sql, params).fetchone()
        return row

    def _all_rows(self, what: str, sql: str, params: Sequence[object]) -> list[tuple[Any, ...]]:
        """Every row of one statement, under the store's lock, its errors as StoreError."""
        with self._lock, self._reading(what) as conn:
            rows: list[tuple[Any, ...]] = self._execute(conn, sql, params).fetchall()
        return rows

    # --- custody and the small persistent state ---------------------------------------

    def seen(self, sender: str, message_id: bytes) -> SeenRecord | None:
        return seen_record(self._first_row("seen", SELECT_SEEN, (sender, message_id)))

    def peer_state(self, name: str) -> PeerState:
        row = self._first_row(
            "peer_state",
            "SELECT failures, next_attempt_ms, last_ok_ms FROM peers WHERE name = ?",
            (name,),
        )
        if row is None:
            return PeerState()
        return PeerState(failures=row[0], next_attempt_ms=row[1], last_ok_ms=row[2])

    def get_meta(self, key: str) -> bytes | None:
        row = self._first_row("get_meta", "SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else bytes(row[0])

    def meta_range(
        self, prefix: str, *, after: str = "", limit: int = 1000
    ) -> list[tuple[str, bytes]]:
        check_meta_range(prefix, after, limit)
        end = prefix_end(prefix)
        select = "SELECT key, value FROM meta WHERE key >= ? AND key > ?"
        if end is None:
            rows = self._all_rows(
                "meta_range", select + " ORDER BY key LIMIT ?", (prefix, after, limit)
            )
        else:
            rows = self._all_rows(
                "meta_range",
                select + " AND key < ? ORDER BY key LIMIT ?",
                (prefix, after, end, limit),
            )
        return [(str(key), bytes(value)) for key, value in rows]

    # --- the audit log ----------------------------------------------------------------

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

    def audit_records(self, from_seq: int = 0, limit: int = 10_000) -> list[AuditRow]:
        check_time(from_seq, "from_seq")
        check_limit(limit, "limit")
        rows = self._all_rows(
            "audit_records",
            "SELECT seq, data FROM audit_records WHERE seq >= ? ORDER BY seq LIMIT ?",
            (from_seq, limit),
        )
        return [AuditRow(seq, bytes(data)) for seq, data in rows]

    def tree_heads(self, limit: int | None = None) -> list[bytes]:
        if limit is not None:
            check_limit(limit, "limit")
        rows = self._all_rows(
            "tree_heads",
            "SELECT data FROM (SELECT position, data FROM audit_heads"
            " ORDER BY position DESC LIMIT ?) AS last ORDER BY position",
            (self._no_limit if limit is None else limit,),
        )
        return [bytes(data) for (data,) in rows]

    def tree_heads_from(self, position: int, limit: int = 10_000) -> list[tuple[int, bytes]]:
        check_count(position, "position")
        check_limit(limit, "limit")
        rows = self._all_rows(
            "tree_heads_from",
            "SELECT position, data FROM audit_heads WHERE position >= ? ORDER BY position LIMIT ?",
            (position, limit),
        )
        return [(at, bytes(data)) for at, data in rows]

    def audit_heads_end(self) -> int:
        row = self._first_row("audit_heads_end", "SELECT max(position) FROM audit_heads")
        return 0 if row is None or row[0] is None else int(row[0]) + 1

    def audit_node(self, level: int, index: int) -> bytes | None:
        seq, offset = node_key(level, index)
        if not self._has_nodes:
            with self._lock:
                self._open_conn()
                return None
        row = self._first_row(
            "audit_node",
            "SELECT substr(hashes, ?, 32) FROM audit_nodes WHERE seq = ?",
            (offset + 1, seq),
        )
        if row is None or len(row[0]) != 32:
            return None
        return bytes(row[0])

    def _prune_records(self, conn: Any, below: int, max_count: int) -> int:
        """Delete the oldest records below ``below``, at most ``max_count``, and their tree rows
        (in the transaction under way, ``below`` checked against the checkpoint)."""
        row = self._execute(conn, "SELECT min(seq) FROM audit_records").fetchone()
        first = None if row is None else row[0]
        if first is None or first >= below:
            return 0
        # The kept records are contiguous: the oldest max_count are one range.
        end = min(below, first + max_count)
        # Their tree rows go with them: a row covers only records before its seq.
        self._execute(conn, "DELETE FROM audit_nodes WHERE seq < ?", (end,))
        deleted: int = self._execute(
            conn, "DELETE FROM audit_records WHERE seq < ?", (end,)
        ).rowcount
        return deleted

    def _prune_heads(self, conn: Any, below: int, max_count: int) -> int:
        """Delete the oldest heads over fewer than ``below`` records, at most ``max_count``
        (in the transaction under way, ``below`` checked against the checkpoint)."""
        deleted: int = self._execute(
            conn,
            "DELETE FROM audit_heads WHERE position IN (SELECT position FROM audit_heads"
            " WHERE tree_size < ? ORDER BY position LIMIT ?)",
            (below, max_count),
        ).rowcount
        return deleted
