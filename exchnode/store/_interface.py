"""The node's durable store: the interface, its records, and the dedup rule (federation layer).

Theory of operation
-------------------
The store is what makes *custody transfer* possible.  A node acknowledges an
envelope to the previous hop only once the store has durably recorded it;
from that instant the envelope is this node's responsibility and the
previous hop may forget it.  So the contract of :meth:`Store.accept` is:

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
the targets that copy carries (``routing.Route``), so a node can legitimately
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
itself (``audit_log.AuditLogState``) is pure and numbers, chains and encodes
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
log exactly: the first row's seq is :meth:`Store.audit_size` and each next
one is one more.  A gap or a repeat is refused with :class:`UsageError` and
nothing of the call is stored, so a bug (e.g. a log state that advanced in a
transaction that then rolled back) stops the node instead of silently
forking its log; the caller rebuilds its state from the store
(``AuditLogState.resume``).  Heads and the checkpoint are given with the
tree size they cover, which the store checks against the records it holds.

The log is append-only by construction: no method updates or deletes a
record, a head or a checkpoint, except ``prune_audit``, which deletes the
oldest records below the checkpoint's size and nothing else (the SQLite
store also refuses any other change with triggers).  A checkpoint only
moves forward and never past the records stored; a head never covers
records not stored, nor fewer than the head before it.

**Threads.**  The API is synchronous; a node runs it in a worker thread
(``asyncio.to_thread`` or, better, one dedicated thread so that calls queue
in order).  Every implementation serialises calls with an internal lock, so
an instance is safe to use from any thread, one call at a time.

**Implementations.**  :class:`~exchnode.store.MemoryStore` (tests and
simulations; not durable) and :class:`~exchnode.store.SqliteStore`
(WAL, ``synchronous=FULL``).  One test suite runs against both.  A server
store (PostgreSQL) implements the same :class:`Store` protocol: one
transaction per call, ``SELECT … FOR UPDATE`` on the dedup row, sequences
from a ``bigserial``, and the same outcomes.  ``after=`` paging assumes that
sequence order is commit order -- true with one writer per store, as here;
a store with concurrent writers must keep it so (allocate sequence numbers
under the commit's lock) or a pager could skip an entry committed late.

This module is pure: records, the protocol, argument checks and the dedup
rule.  No I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import NamedTuple, Protocol, TypeAlias, TypeVar, runtime_checkable

from exchnode.errors import UsageError
from exchnode.federation import PeerState, Route

__all__ = [
    "DIGEST_LENGTH",
    "MAX_CHECKPOINT_BYTES",
    "MESSAGE_ID_LENGTH",
    "AcceptItem",
    "AcceptOutcome",
    "AcceptStatus",
    "AuditHook",
    "AuditRow",
    "ExpiredEntry",
    "ExpiryAuditHook",
    "InboundEntry",
    "OutboundEntry",
    "PeerState",
    "QueueDepth",
    "QueueDepths",
    "SeenRecord",
    "Store",
    "check_audit_rows",
    "check_checkpoint_update",
    "check_count",
    "check_items",
    "check_limit",
    "check_page",
    "check_prune_audit",
    "check_seqs",
    "check_time",
    "check_tree_head",
    "classify",
    "take_within",
]

MESSAGE_ID_LENGTH = 16
DIGEST_LENGTH = 32
_MAX_INT64 = (1 << 63) - 1


def _check_target(value: object, what: str) -> str:
    # Targets are node names (SPEC §2: digits, lower-case letters, '.', '-').
    # The store only insists on what its encodings need: non-empty, no spaces.
    if not isinstance(value, str) or not value or " " in value:
        raise UsageError(f"{what} must be a non-empty name without spaces, got {value!r}")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class AcceptItem:
    """One verified envelope offered for custody, with the routing decision for its targets.

    ``local``: targets this node delivers to its own application (the inbox).
    ``forward``: next hop → the targets the copy for that hop carries; the
    same ``data`` goes to every hop.  A target appears at most once overall.
    ``came_from``: the neighbour that handed it over ("" for this node's
    own); the store keeps nothing of it, the audit log names it.
    The caller has verified the envelope and routed it; the store checks
    only shapes and raises :class:`UsageError` on a malformed item.
    """

    sender: str
    message_id: bytes
    digest: bytes
    data: bytes
    expires_ms: int
    local: tuple[str, ...] = ()
    forward: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    came_from: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.sender, str) or not self.sender:
            raise UsageError(f"sender must be a non-empty string, got {self.sender!r}")
        if not isinstance(self.message_id, bytes) or len(self.message_id) != MESSAGE_ID_LENGTH:
            raise UsageError(f"message_id must be {MESSAGE_ID_LENGTH} bytes")
        if not isinstance(self.digest, bytes) or len(self.digest) != DIGEST_LENGTH:
            raise UsageError(f"digest must be {DIGEST_LENGTH} bytes")
        if not isinstance(self.data, bytes) or not self.data:
            raise UsageError("data must be non-empty bytes")
        check_time(self.expires_ms, "expires_ms")
        local = tuple(_check_target(t, "a local target") for t in self.local)
        forward: dict[str, tuple[str, ...]] = {}
        for hop, targets in self.forward.items():
            _check_target(hop, "a next hop")
            forward[hop] = tuple(_check_target(t, f"a target via {hop}") for t in targets)
            if not forward[hop]:
                raise UsageError(f"next hop {hop} is given no targets")
        everything = [*local, *(t for ts in forward.values() for t in ts)]
        if not everything:
            raise UsageError("an envelope offered for custody needs at least one target")
        if len(set(everything)) != len(everything):
            raise UsageError(f"a target is routed twice: {sorted(everything)}")
        object.__setattr__(self, "local", local)
        object.__setattr__(self, "forward", forward)

    @classmethod
    def from_route(
        cls,
        *,
        sender: str,
        message_id: bytes,
        digest: bytes,
        data: bytes,
        expires_ms: int,
        route: Route,
        came_from: str = "",
    ) -> AcceptItem:
        """The item for ``route``'s local and forwarded targets.

        ``route.unroutable`` targets are not taken into custody: the caller
        refuses or reports them before offering the rest.
        """
        return cls(
            sender=sender,
            message_id=message_id,
            digest=digest,
            data=data,
            expires_ms=expires_ms,
            local=route.local,
            forward=route.forward,
            came_from=came_from,
        )

    @property
    def targets(self) -> frozenset[str]:
        return frozenset(self.local).union(*self.forward.values())


class AcceptStatus(enum.Enum):
    """What became of one offered copy; see the module docstring."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True, kw_only=True)
class AcceptOutcome:
    """The outcome for one item; ``local`` and ``forward`` are the targets newly taken."""

    status: AcceptStatus
    local: tuple[str, ...] = ()
    forward: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def acknowledge(self) -> bool:
        """True if the previous hop may be told "in custody" (once ``accept`` has returned)."""
        return self.status in (AcceptStatus.ACCEPTED, AcceptStatus.DUPLICATE)


_DUPLICATE = AcceptOutcome(status=AcceptStatus.DUPLICATE)
_CONFLICT = AcceptOutcome(status=AcceptStatus.CONFLICT)
_EXPIRED = AcceptOutcome(status=AcceptStatus.EXPIRED)


@dataclass(frozen=True, slots=True, kw_only=True)
class SeenRecord:
    """The dedup record of one (sender, message id): kept until ``expires_ms``."""

    digest: bytes
    expires_ms: int
    targets: frozenset[str]


def classify(item: AcceptItem, seen: SeenRecord | None, now_ms: int) -> AcceptOutcome:
    """The dedup rule, shared by every store: what of ``item`` is new given ``seen``.

    A record whose envelope has expired no longer counts (SPEC §8.3 keeps
    ids only until expiry); an item that is itself expired is refused.
    """
    if item.expires_ms <= now_ms:
        return _EXPIRED
    if seen is None or seen.expires_ms <= now_ms:
        return AcceptOutcome(status=AcceptStatus.ACCEPTED, local=item.local, forward=item.forward)
    if seen.digest != item.digest:
        return _CONFLICT
    held = seen.targets
    local = tuple(t for t in item.local if t not in held)
    forward: dict[str, tuple[str, ...]] = {}
    for hop, targets in item.forward.items():
        new = tuple(t for t in targets if t not in held)
        if new:
            forward[hop] = new
    if not local and not forward:
        return _DUPLICATE
    return AcceptOutcome(status=AcceptStatus.ACCEPTED, local=local, forward=forward)


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundEntry:
    """An envelope waiting in the inbox for the local application's acknowledgement."""

    seq: int
    sender: str
    message_id: bytes
    digest: bytes
    targets: tuple[str, ...]
    expires_ms: int
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboundEntry:
    """A copy waiting for ``next_hop`` to take custody of it, for ``targets``."""

    seq: int
    next_hop: str
    sender: str
    message_id: bytes
    digest: bytes
    targets: tuple[str, ...]
    expires_ms: int
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpiredEntry:
    """An entry removed because it expired: what a non-delivery report needs.

    ``next_hop`` is where it was waiting; None means the local inbox.
    ``data`` is the envelope: the reporter reads its kind from it, so that it
    never reports on a report.
    """

    seq: int
    next_hop: str | None
    sender: str
    message_id: bytes
    digest: bytes
    targets: tuple[str, ...]
    expires_ms: int
    data: bytes


@dataclass(frozen=True, slots=True)
class QueueDepth:
    """Entries stored (expired ones included until taken) and their envelope bytes."""

    count: int = 0
    bytes: int = 0


class QueueDepths:
    """Count and bytes of every outbound queue and of the inbox, kept in memory.

    Both stores keep one, and update it only after their change has taken
    effect (committed, for SQLite), so it never counts what a rolled-back
    transaction wrote. Back-pressure decisions read it without touching the
    database.
    """

    __slots__ = ("_hops", "_inbox")

    def __init__(
        self,
        hops: Mapping[str, tuple[int, int]] | None = None,
        inbox: tuple[int, int] = (0, 0),
    ) -> None:
        self._hops: dict[str, tuple[int, int]] = dict(hops or {})
        self._inbox = inbox

    def add_outbound(self, hop: str, size: int) -> None:
        count, total = self._hops.get(hop, (0, 0))
        self._hops[hop] = (count + 1, total + size)

    def remove_outbound(self, hop: str, size: int) -> bool:
        """Count one entry of ``hop`` gone; True when that queue is now empty."""
        count, total = self._hops[hop]
        if count == 1:
            del self._hops[hop]
            return True
        self._hops[hop] = (count - 1, total - size)
        return False

    def add_inbound(self, size: int) -> None:
        count, total = self._inbox
        self._inbox = (count + 1, total + size)

    def remove_inbound(self, size: int) -> None:
        count, total = self._inbox
        self._inbox = (count - 1, total - size)

    def next_hops(self) -> list[str]:
        return sorted(self._hops)

    def outbound(self, hop: str) -> QueueDepth:
        return QueueDepth(*self._hops.get(hop, (0, 0)))

    def inbox(self) -> QueueDepth:
        return QueueDepth(*self._inbox)

    def totals(self) -> QueueDepth:
        count, total = self._inbox
        for hop_count, hop_total in self._hops.values():
            count += hop_count
            total += hop_total
        return QueueDepth(count, total)


_Entry = TypeVar("_Entry", "OutboundEntry", "InboundEntry")


def take_within(entries: Iterable[_Entry], max_count: int, max_bytes: int) -> list[_Entry]:
    """Entries in order while count and bytes fit; at least one if any is offered.

    The one-entry floor keeps a single envelope larger than ``max_bytes``
    from wedging its queue.
    """
    out: list[_Entry] = []
    total = 0
    for entry in entries:
        total += len(entry.data)
        if out and total > max_bytes:
            break
        out.append(entry)
        if len(out) >= max_count:
            break
    return out


# --- argument checks shared by the implementations ------------------------------


def check_time(value: object, what: str = "now_ms") -> int:
    """A non-negative 64-bit integer (milliseconds since 1970, or a count)."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_INT64:
        raise UsageError(f"{what} must be a non-negative 64-bit integer, got {value!r}")
    return value


def check_limit(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UsageError(f"{what} must be a positive integer, got {value!r}")
    return value


def check_count(value: object, what: str) -> int:
    """A count that may be 0 (a log's size, a seq): a non-negative integer."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise UsageError(f"{what} must be a non-negative integer, got {value!r}")
    return value


NO_LIMIT = 1 << 62


def check_page(now_ms: int, max_count: int, max_bytes: int | None, after: int) -> int:
    """Check the arguments of a queue read (``pending``, ``inbox``); return the byte limit."""
    check_time(now_ms)
    check_limit(max_count, "max_count")
    check_time(after, "after")
    return NO_LIMIT if max_bytes is None else check_limit(max_bytes, "max_bytes")


def check_seqs(seqs: Iterable[int]) -> list[int]:
    """Distinct sequence numbers, as a list (unknown ones are the caller's to ignore)."""
    out = list(dict.fromkeys(seqs))
    for seq in out:
        if not isinstance(seq, int) or isinstance(seq, bool) or not 0 < seq <= _MAX_INT64:
            raise UsageError(f"sequence numbers are positive integers, got {seq!r}")
    return out


def check_items(items: Iterable[AcceptItem]) -> list[AcceptItem]:
    out = list(items)
    for item in out:
        if not isinstance(item, AcceptItem):
            raise UsageError(f"accept() takes AcceptItem values, got {type(item).__name__}")
    return out


# --- the audit log's checks, shared by the implementations ----------------------

AuditHook: TypeAlias = Callable[[list["AcceptOutcome"]], Sequence["AuditRow"]]
"""``accept``'s audit callback: the batch's outcomes → the encoded records to store with it.

It runs inside the store's transaction and under its lock: it must not call
the store.  Whatever it raises rolls the whole batch back and propagates.
"""

ExpiryAuditHook: TypeAlias = Callable[[list["ExpiredEntry"]], Sequence["AuditRow"]]
"""``take_expired``'s audit callback: the entries taken → the records to store with them.

Called only when something expired, inside the transaction, like ``AuditHook``.
"""

MAX_AUDIT_RECORD_BYTES = 2048  # SPEC §20.2's bound on an encoded record
MAX_TREE_HEAD_BYTES = 1024  # SPEC §20.4's bound on a signed head
MAX_CHECKPOINT_BYTES = 16 * 1024  # SPEC §20.9's bound on a checkpoint


class AuditRow(NamedTuple):
    """One audit record as the store keeps it: the seq the log gave it and its encoding."""

    seq: int
    data: bytes


def _describe(value: object) -> str:
    return f"{len(value)} bytes" if isinstance(value, bytes) else type(value).__name__


def check_audit_rows(rows: Iterable[AuditRow], next_seq: int) -> list[AuditRow]:
    """Rows that continue a log whose next seq is ``next_seq``; else raise :class:`UsageError`.

    Refused at the first row that does not: a gap (records missing) or a
    repeat (the log would fork).  Nothing is stored by the caller in that case.
    """
    if isinstance(rows, bytes | str):
        raise UsageError("audit records are a sequence of AuditRow values, not one record")
    out: list[AuditRow] = []
    expected = next_seq
    for row in rows:
        if not isinstance(row, tuple) or len(row) != 2:
            raise UsageError(f"an audit record is an AuditRow (seq, data), got {_describe(row)}")
        seq, data = row
        if not isinstance(data, bytes) or not 0 < len(data) <= MAX_AUDIT_RECORD_BYTES:
            raise UsageError(
                f"an audit record is 1..{MAX_AUDIT_RECORD_BYTES} bytes, got {_describe(data)}"
            )
        if type(seq) is not int or seq != expected:
            problem = (
                "is not an integer" if type(seq) is not int
                else "repeats a stored seq" if seq < expected else "leaves a gap"
            )
            raise UsageError(
                f"audit record {seq!r} does not continue the stored log, whose next seq is "
                f"{expected}: it {problem}; nothing of this batch was stored (rebuild the "
                f"log state from the store)"
            )
        out.append(AuditRow(seq, data))
        expected += 1
    return out


def check_tree_head(size: object, data: object, audit_size: int, last_head_size: int) -> int:
    """The tree size of a head that may be stored after one of ``last_head_size``; else raise.

    A head over records not stored, or smaller than the head before it, is a
    bug, and storing it would leave a log that does not verify.
    """
    if not isinstance(data, bytes) or not 0 < len(data) <= MAX_TREE_HEAD_BYTES:
        raise UsageError(f"a tree head is 1..{MAX_TREE_HEAD_BYTES} bytes, got {_describe(data)}")
    check_count(size, "a tree head's size")
    assert isinstance(size, int)
    if size > audit_size:
        raise UsageError(f"a tree head of size {size} covers records not stored ({audit_size})")
    if size < last_head_size:
        raise UsageError(f"a tree head of size {size} is smaller than the last ({last_head_size})")
    return size


def check_checkpoint_update(size: object, data: object, audit_size: int, current_size: int) -> int:
    """The size of a checkpoint that may replace one of ``current_size`` (0: none); else raise."""
    if not isinstance(data, bytes) or not 0 < len(data) <= MAX_CHECKPOINT_BYTES:
        raise UsageError(f"a checkpoint is 1..{MAX_CHECKPOINT_BYTES} bytes, got {_describe(data)}")
    check_count(size, "a checkpoint's size")
    assert isinstance(size, int)
    if size == 0:
        raise UsageError("a checkpoint of an empty log prunes nothing")
    if size > audit_size:
        raise UsageError(f"a checkpoint of size {size} covers records not stored ({audit_size})")
    if size < current_size:
        raise UsageError(
            f"a checkpoint of size {size} would move the checkpoint back from {current_size}"
        )
    return size


def check_prune_audit(below_seq: object, max_count: object, checkpoint_size: int) -> int:
    """Check ``prune_audit``'s arguments against the stored checkpoint's size; return below_seq."""
    below = check_time(below_seq, "below_seq")
    check_limit(max_count, "max_count")
    if below > checkpoint_size:
        have = f"the checkpoint covers {checkpoint_size}" if checkpoint_size else "no checkpoint"
        raise UsageError(
            f"refusing to prune audit records below {below}: {have} (SPEC §20.9 deletes "
            f"only records a checkpoint covers)"
        )
    return below


# --- the interface --------------------------------------------------------------


@runtime_checkable
class Store(Protocol):
    """What the node needs from durable storage.  See the module docstring for the semantics.

    Every method is synchronous and atomic: it happens entirely or not at
    all.  Misuse raises :class:`UsageError`; a failure of the storage itself
    raises :class:`~exchnode.errors.StoreError`.
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

    # the audit log (SPEC §20.6, §20.9)
    def append_audit(self, records: Sequence[AuditRow]) -> None:
        """Store records that continue the log, in one transaction of their own."""
        ...

    def audit_records(self, from_seq: int = 0, limit: int = 10_000) -> list[AuditRow]:
        """Up to ``limit`` stored records ``(seq, record)`` with ``seq >= from_seq``, in seq order.

        Page with ``from_seq`` = the last seq + 1.  Records pruned below the
        checkpoint are gone; what is returned is what ``AuditLogState.resume``
        and ``audit_verify.verify_log`` read.
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

    # small persistent state
    def peer_state(self, name: str) -> PeerState: ...

    def set_peer_state(self, name: str, state: PeerState) -> None: ...

    def get_meta(self, key: str) -> bytes | None: ...

    def set_meta(self, key: str, value: bytes) -> None: ...

    def delete_meta(self, key: str) -> None: ...

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
