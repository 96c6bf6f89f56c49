"""The node's durable store: its interfaces and what they promise (federation layer).

Theory of operation
-------------------
The store is what makes *custody transfer* possible.  A node acknowledges an
envelope to the previous hop only once the store has durably recorded it;
from that instant the envelope is this node's responsibility and the
previous hop may forget it.  So the contract of :meth:`CustodyStore.accept` is:

* **returned ⇒ durable.**  When ``accept`` returns, every item whose outcome
  is ``ACCEPTED`` or ``DUPLICATE`` survives a crash or power loss, and may be
  acknowledged.  Nothing may be acknowledged before ``accept`` returns.
* **raised ⇒ acknowledge nothing.**  A failing ``accept`` takes none of its
  batch (one transaction), or -- if the failure hit the commit itself, e.g.
  an I/O error after the log was written -- possibly all of it.  Either way
  the previous hop, hearing no acknowledgement, sends again, and the dedup
  rule below turns the repeat into a ``DUPLICATE``.  At-least-once per hop
  plus dedup is exactly-once custody.

**Group commit.**  Durability costs a flush to stable storage per
transaction, not per row: on this kind of machine SQLite manages 0.4-3k
flushing commits per second, but ~30k rows per second when a thousand share
a commit (``../shared/FACTS.md``).  So ``accept`` takes a *batch* -- whatever
arrived from one or several peers while the previous commit was running --
and commits it as one transaction.  ``forwarded``, ``delivered`` and
``take_expired`` likewise take or return many entries per transaction.

**Never delete on dequeue.**  Reading work (``pending``, ``inbox``) changes
nothing.  An entry leaves the outbound queue only when the next hop has
acknowledged custody (``forwarded``) and leaves the inbox only when the
application has acknowledged it (``delivered``).  A crash between reading and
acknowledging therefore re-offers the entry after restart instead of losing
it.  ``after=`` lets a caller page past entries it already has in flight
without removing them.

**Dedup** (SPEC §8.3).  The store remembers, per (sender, message id), the
envelope's digest and the set of *targets* it has taken custody for, until
the envelope expires.  A multi-recipient envelope travels once per link with
the targets that copy carries (:class:`exchnode.federation.Route`), so a node can legitimately
receive the same envelope twice for different targets (a configured link and
the hierarchy).  A copy is classified (:func:`classify`):

* ``EXPIRED``   -- ``expires_ms <= now_ms``: refused, nothing recorded.  The
  caller refuses it (``expired``); the previous hop keeps custody and reports
  the non-delivery when its own ``take_expired`` finds it.
* ``CONFLICT``  -- the same (sender, id) with a different digest: the sender
  reused an id (SPEC §5.2 wants ids unique per sender).  Nothing is stored;
  the caller refuses it (``replayed``).  The first envelope wins.
* ``DUPLICATE`` -- every target already held: nothing stored; acknowledge.
* ``ACCEPTED``  -- some targets new: only those are stored (the outcome says
  which, per next hop); acknowledge.

The key includes the sender, as the replay window's does, so that a hub that
sees ids in transit cannot block a genuine message by using its id first.
Records outlive their queue entries: an envelope already forwarded or
delivered and then re-sent is still a ``DUPLICATE``.  ``prune`` forgets
records whose envelopes have expired; a copy arriving after that is
``EXPIRED`` anyway, so forgetting never re-opens the window -- provided
``now_ms`` does not go backwards by more than the clock skew the freshness
policy allows (pass a wall clock that is kept in step, not one that jumps).
At a final recipient this record *is* the replay window of SPEC §8.3,
persisted across restarts as §8.3 requires.

**Delivery to the application: exactly once, given its acknowledgement.**
Dedup at custody plus removal from the inbox only on ``delivered`` gives the
application each envelope once -- with one precise exception: an entry
handed to the application but not yet acknowledged when the node crashes is
offered again after restart (at-least-once at that single step).  An
application that acknowledges only after its own durable processing, and
uses (sender, message id) to recognise the rare repeat, sees every envelope
exactly once.  Within one run, ``inbox`` is a pure read that returns an
unacknowledged entry on every call; a caller that hands each entry to the
application once pages with ``after=``.

**Expiry.**  Expired entries are skipped by ``pending`` and ``inbox`` and
removed, with what the caller needs for a non-delivery report, by
``take_expired`` (one transaction).  The report itself is best effort: if
the node crashes after ``take_expired`` returns and before the report is
accepted for sending, that report is lost (the envelope is not: it had
expired).

**The audit log** (issue 5, SPEC §20.6).  The store keeps the node's audit
records, the tree heads it signs (in order) and its checkpoint; the log
itself (:class:`exchnode.audit.AuditLogState`) is pure and numbers, chains and encodes
the records.  ``accept(items, now_ms, audit=…)`` calls ``audit(outcomes)``
*inside* the custody transaction, once the outcomes are known, and stores
the encoded records it returns in that same transaction: an accepted
envelope and its audit record are durable together, under one flush, or
neither is; if the callback raises, the whole batch rolls back.
``append_audit`` stores records of events outside custody, in a
transaction of their own.

A record is given as an :class:`AuditRow`, its ``seq`` and its encoded
bytes, both from the log (``AuditLogState.append``).  The store never parses
a record, a head or a checkpoint: what they mean is the audit layer's, and a
row stored under a seq other than the one its record says is a finding of
``audit verify`` like any other change.  Each batch must continue the stored
log exactly: the first row's seq is :meth:`AuditStore.audit_size` and each next
one is one more.  A gap or a repeat is refused with :class:`UsageError` and
nothing of the call is stored, so a bug (e.g. a log state that advanced in a
transaction that then rolled back) stops the node instead of silently
forking its log; the caller rebuilds its state from the store
(``AuditLogState.resume``).  Heads and the checkpoint are given with the
tree size they cover, which the store checks against the records it holds.

**The seal** (issue 12, SPEC §20.6).  Heads are signed every few seconds,
so records stored since the last one would be under no signature -- a crash
would leave them so, and anyone who can write the file could forge them.  So
the audit log registers a sealer (:meth:`AuditStore.set_audit_sealer`), and
every transaction that appends records or moves the checkpoint also replaces
the one stored **seal**: a head the node signs over the whole log as it is
in that transaction.  Records are never durable without a signed head over
them, and the seal written with a new checkpoint is the head that names it.

**The tree** (issue 13).  So that the log need not hold its Merkle tree in
memory, the store keeps its interior nodes: the log registers a tree source
(:meth:`AuditStore.set_audit_tree`), and every transaction that appends
records also stores their tree rows (``_audit_tree``: one row per odd seq,
the hashes of the subtrees that record completes), under the same rules as
the records -- appended in order, never changed, pruned with the records
below the checkpoint.  Records stored while no source was set (before
schema 6) get their rows derived by the log (:meth:`AuditStore.add_audit_nodes`).

The log is append-only by construction: no method updates or deletes a
record, a head or a checkpoint, except ``prune_audit``, which deletes the
oldest records below the checkpoint's size and nothing else (the SQLite and
PostgreSQL stores also refuse any other change with triggers, ``INSERT OR
REPLACE``, ``ON CONFLICT DO UPDATE`` and ``TRUNCATE`` included).  A checkpoint only
moves forward and never past the records stored; a head never covers
records not stored, nor fewer than the head before it.

**Threads.**  The API is synchronous; a node runs it in a worker thread
(``asyncio.to_thread`` or, better, one dedicated thread so that calls queue
in order).  Every implementation serialises calls with an internal lock, so
an instance is safe to use from any thread, one call at a time.

**Implementations.**  :class:`~exchnode.store.MemoryStore` (tests and
simulations; not durable), :class:`~exchnode.store.SqliteStore` (WAL,
``synchronous=FULL``, one process) and :class:`~exchnode.store.PostgresStore`
(``synchronous_commit=on``; several workers may share one database).  One
test suite runs against all three.  ``after=`` paging assumes that a queue's
sequence order is its commit order -- true with one writer per store; the
PostgreSQL store keeps it so under concurrent writers by drawing a queue's
numbers only under the lock of that queue's row, held until commit (its
module docstring says what else is safe across workers).

**The interfaces, by responsibility.**  :class:`CustodyStore` is custody:
``accept`` and ``seen``, the outbound queues and the inbox, expiry and the
dedup records.  :class:`AuditStore` is the audit log: records, heads, the
checkpoint and retention.  :class:`MetaStore` is small persistent state: a
peer's backoff and the services' state by key (``meta``).  :class:`Store` is
all three plus the life cycle (``close``, a context manager): what a backend
implements and what a :class:`~exchnode.aio.Node` takes.  The parts are not
separate stores -- custody's ``audit=`` arguments continue the very log that
:class:`AuditStore` reads, in the same transaction -- but a component that
needs only one of them says so by its annotation (the audit service uses an
:class:`AuditStore`), so what depends on what stays visible.

This module holds the protocols; the records and the dedup rule are in
``_records``, the argument checks every implementation shares in
``_checks``.  Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Protocol, runtime_checkable

from exchnode.federation import PeerState
from exchnode.store._audit_tree import AuditTreeSource
from exchnode.store._records import (
    AcceptItem,
    AcceptOutcome,
    AuditHook,
    AuditRow,
    AuditSealer,
    ExpiredEntry,
    ExpiryAuditHook,
    InboundEntry,
    OutboundEntry,
    QueueDepth,
    SeenRecord,
)

__all__ = ["AuditStore", "CustodyStore", "MetaStore", "Store"]


@runtime_checkable
class CustodyStore(Protocol):
    """Custody: envelopes taken, queued per next hop or for the application, expired.

    See the module docstring for the semantics.  Every method is synchronous
    and atomic: it happens entirely or not at all.  Misuse raises
    :class:`UsageError`; a failure of the storage itself raises
    :class:`~exchnode.errors.StoreError`.  The ``audit`` arguments store
    records that continue the log of :class:`AuditStore`, in the custody
    transaction.
    """

    # custody in
    def accept(
        self, items: Iterable[AcceptItem], now_ms: int, *, audit: AuditHook | None = None
    ) -> list[AcceptOutcome]:
        """Take a batch into custody in one transaction; one outcome per item, in order.

        ``audit``, if given, is called once, inside that transaction, with the
        outcomes (not for an empty batch); the records it returns must
        continue the log (see the module docstring) and are stored in the
        same transaction.  If it raises, or its records do not continue the
        log, nothing of the batch is stored and the error propagates.
        """
        ...

    def seen(self, sender: str, message_id: bytes) -> SeenRecord | None:
        """The dedup record, if any (e.g. to skip verifying an exact duplicate)."""
        ...

    # outbound: one FIFO queue per next hop
    def pending(
        self, next_hop: str, now_ms: int, max_count: int, max_bytes: int, *, after: int = 0
    ) -> list[OutboundEntry]:
        """Unexpired entries for ``next_hop`` with ``seq > after``, oldest first, not removed.

        At most ``max_count`` entries and ``max_bytes`` of data -- but at
        least one entry if any is waiting, so that one envelope larger than
        ``max_bytes`` cannot block its queue forever.
        """
        ...

    def forwarded(
        self, next_hop: str, seqs: Iterable[int], *, audit: Sequence[AuditRow] = ()
    ) -> int:
        """``next_hop`` took custody: remove those entries (one transaction); how many were.

        ``audit``: encoded records that continue the log, stored in the same
        transaction (the relay's own record of the handover).
        """
        ...

    def next_hops(self) -> list[str]:
        """Next hops with entries stored, sorted (serve a reconnecting peer at once)."""
        ...

    def queue_depth(self, next_hop: str) -> QueueDepth: ...

    # inbox: delivery to the local application
    def inbox(
        self, now_ms: int, max_count: int, *, max_bytes: int | None = None, after: int = 0
    ) -> list[InboundEntry]:
        """Unexpired inbox entries with ``seq > after``, oldest first, not removed.

        ``max_bytes`` limits the data returned as ``pending`` does (at least one entry).
        """
        ...

    def delivered(self, seqs: Iterable[int], *, audit: Sequence[AuditRow] = ()) -> int:
        """The application acknowledged: remove those entries; how many were.

        ``audit`` as in ``forwarded``.
        """
        ...

    def inbox_depth(self) -> QueueDepth: ...

    def totals(self) -> QueueDepth:
        """Everything queued, outbound and inbox: for node-wide back-pressure."""
        ...

    # expiry
    def take_expired(
        self, now_ms: int, max_count: int, *, audit: ExpiryAuditHook | None = None
    ) -> list[ExpiredEntry]:
        """Remove up to ``max_count`` expired entries, earliest expiry first, and return them.

        ``audit``, if given, is called inside the transaction with the entries
        taken (not when none expired), as ``accept``'s is with its outcomes.
        """
        ...

    def prune(self, now_ms: int, max_count: int = 10_000) -> int:
        """Forget up to ``max_count`` dedup records of expired envelopes; how many were."""
        ...


@runtime_checkable
class AuditStore(Protocol):
    """The audit log's storage (SPEC §20.6, §20.9): records, signed heads, the checkpoint.

    Append-only but for retention below the checkpoint; the store never
    parses what it keeps (see the module docstring).  Atomic, and with the
    same errors, as :class:`CustodyStore`.
    """

    def append_audit(self, records: Sequence[AuditRow]) -> None:
        """Store records that continue the log, in one transaction of their own."""
        ...

    def audit_records(self, from_seq: int = 0, limit: int = 10_000) -> list[AuditRow]:
        """Up to ``limit`` stored records ``(seq, record)`` with ``seq >= from_seq``, in seq order.

        Page with ``from_seq`` = the last seq + 1.  Records pruned below the
        checkpoint are gone; what is returned is what ``AuditLogState.resume``
        and :func:`exchnode.audit.verify_log` read.
        """
        ...

    def audit_size(self) -> int:
        """The number of records ever appended: the seq the next record must have."""
        ...

    def add_tree_head(self, size: int, data: bytes) -> None:
        """Store a signed tree head after those stored (it must not cover records not stored)."""
        ...

    def tree_heads(self, limit: int | None = None) -> list[bytes]:
        """The stored heads in the order stored: all, or the last ``limit`` of them."""
        ...

    def tree_heads_from(self, position: int, limit: int = 10_000) -> list[tuple[int, bytes]]:
        """Up to ``limit`` stored heads ``(position, head)`` at ``position`` or after, in order.

        Positions grow with every head stored and are never reused; page with
        ``position`` = the last one + 1 (a verifier reads a node's heads so,
        however many months of them are kept).
        """
        ...

    def audit_heads_end(self) -> int:
        """The position after the last stored head: the heads stored so far lie below it."""
        ...

    def tree_head_at_most(self, size: int) -> bytes | None:
        """The last stored head covering at most ``size`` records (retention's checkpoint).

        Heads are stored in order of size, so this is a search, not a scan:
        a node signs a head every few seconds for months.
        """
        ...

    def set_audit_checkpoint(self, size: int, data: bytes) -> None:
        """Store the checkpoint (SPEC §20.9), replacing the previous one; sizes only grow."""
        ...

    def audit_checkpoint(self) -> bytes | None: ...

    def set_audit_sealer(self, sealer: AuditSealer | None) -> None:
        """From now on, seal every transaction that appends records or moves the checkpoint.

        The store calls ``sealer(size, checkpoint_size)`` inside that transaction
        and keeps its result as the stored seal (:data:`~exchnode.store.AuditSealer`,
        SPEC §20.6): a crash can never leave records without a signed head over them.
        """
        ...

    def audit_seal(self) -> bytes | None:
        """The newest seal (a signed head over every record stored), None before the first."""
        ...

    def audit_ordered_from(self) -> int:
        """The seq from which record times never go back (records of older software: below)."""
        ...

    def prune_audit(self, below_seq: int, max_count: int = 10_000) -> int:
        """Delete up to ``max_count`` of the oldest records with ``seq < below_seq``; how many were.

        Refuses (:class:`UsageError`) unless the stored checkpoint covers
        ``below_seq`` (its size >= ``below_seq``).  Call until it returns 0.
        """
        ...

    def prune_heads(self, below_size: int, max_count: int = 10_000) -> int:
        """Delete up to ``max_count`` of the oldest heads of size < ``below_size``; how many were.

        The checkpoint must cover ``below_size``, as for ``prune_audit``: a
        verifier ignores heads below the checkpoint, whose own head it keeps.
        """
        ...

    def set_audit_tree(self, source: AuditTreeSource | None) -> None:
        """From now on, store the tree's interior nodes in every transaction that appends records.

        The store calls ``source(first, end)`` inside that transaction and
        keeps the rows it returns (:data:`~exchnode.store.AuditTreeSource`) with
        the records: one row per odd seq, the hashes of the subtrees that
        record completes.  Refused (:class:`UsageError`, nothing stored) if
        rows of earlier records are missing: derive them first.
        """
        ...

    def add_audit_nodes(self, rows: Sequence[tuple[int, bytes]]) -> None:
        """Store tree rows ``(seq, hashes)`` for records already stored, in one transaction.

        For records appended while no tree source was set (a log from before
        schema 6): the log derives them from the records.  The first row's seq
        is :meth:`audit_nodes_due`, and each next one two more.
        """
        ...

    def audit_nodes_due(self) -> int:
        """The seq of the next tree row the store expects: rows are stored for every record
        below it from the checkpoint on (it may lie beyond the records: nothing is due)."""
        ...

    def audit_node(self, level: int, index: int) -> bytes | None:
        """The hash of the complete subtree of ``2**level`` leaves at ``index * 2**level``.

        ``level`` >= 1 (leaves are the records' own hashes).  None if not
        stored: pruned below the checkpoint, not derived yet, or beyond the log.
        """
        ...


@runtime_checkable
class MetaStore(Protocol):
    """Small persistent state: a peer's backoff, and the services' state by key.

    Each call is its own transaction.  The keys of ``meta`` are the
    services' (e.g. ``catalog``, ``witness``); the values are opaque bytes.
    """

    def peer_state(self, name: str) -> PeerState: ...

    def set_peer_state(self, name: str, state: PeerState) -> None: ...

    def get_meta(self, key: str) -> bytes | None: ...

    def set_meta(self, key: str, value: bytes) -> None: ...

    def delete_meta(self, key: str) -> None: ...

    def update_meta(self, changes: Mapping[str, bytes | None]) -> None:
        """Set each key given bytes and delete each key given None, in one transaction.

        The way a service keeps its state as rows (one key per request,
        grant, entry...) and writes only what a change touched: either every
        change is stored or, on any failure, none is.
        """
        ...

    def meta_range(
        self, prefix: str, *, after: str = "", limit: int = 1000
    ) -> list[tuple[str, bytes]]:
        """Keys starting with ``prefix``, sorting after ``after``, in key order, at most ``limit``.

        Key order is code-point order (the same in every backend), so a
        service pages through its rows with ``after`` = the last key read.
        """
        ...


@runtime_checkable
class Store(CustodyStore, AuditStore, MetaStore, Protocol):
    """What the node needs from durable storage: custody, the audit log, small state.

    What a backend implements and what a :class:`~exchnode.aio.Node` takes;
    one instance holds the three parts, which share its transactions and its
    lock.  See the module docstring for the semantics.
    """

    def close(self) -> None:
        """Release the storage; further calls raise UsageError.  Idempotent."""
        ...

    def __enter__(self) -> Store: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
