"""The store's records: what goes into custody and comes out of the queues (federation layer).

An :class:`AcceptItem` is offered for custody and answered with an
:class:`AcceptOutcome` (its :class:`AcceptStatus`); :func:`classify` is the
dedup rule every store applies to it against the :class:`SeenRecord` of the
same (sender, message id).  The queues hand out :class:`OutboundEntry` and
:class:`InboundEntry` values and ``take_expired`` :class:`ExpiredEntry`
ones; :class:`QueueDepth` is a queue's size.  The audit log is kept as
:class:`AuditRow` values, encoded by the audit layer; the hooks
(:data:`AuditHook`, :data:`ExpiryAuditHook`) let a custody transaction store
its own records.  What each means, and what a store promises about it, is
in ``exchnode.store._interface``'s docstring (the semantics of
:class:`~exchnode.store.Store`).

Also here, shared by the implementations: the in-memory queue counters
(:class:`QueueDepths`), the paging rule (:func:`take_within`), the fields
of a queue entry from an envelope or a database row (:func:`entry_fields`,
:func:`row_fields`) and the targets' text form, and the checks of whole
batches of records (:func:`check_items`, :func:`check_audit_rows`).  Pure:
no I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeAlias, TypeVar

from exchnode.errors import UsageError
from exchnode.federation import Route
from exchnode.store._checks import MAX_AUDIT_RECORD_BYTES, check_target, check_time, describe

__all__ = [
    "DIGEST_LENGTH",
    "MESSAGE_ID_LENGTH",
    "AcceptItem",
    "AcceptOutcome",
    "AcceptStatus",
    "AuditHook",
    "AuditRow",
    "AuditSealer",
    "ExpiredEntry",
    "ExpiryAuditHook",
    "InboundEntry",
    "OutboundEntry",
    "QueueDepth",
    "QueueDepths",
    "QueuedEnvelope",
    "SeenRecord",
    "SendKey",
    "SendRecord",
    "check_audit_rows",
    "check_items",
    "classify",
    "classify_send",
    "entry_fields",
    "join_targets",
    "row_fields",
    "split_targets",
    "take_within",
]

MESSAGE_ID_LENGTH = 16
DIGEST_LENGTH = 32


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
    send_key: SendKey | None = None

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
        local = tuple(check_target(t, "a local target") for t in self.local)
        forward: dict[str, tuple[str, ...]] = {}
        for hop, targets in self.forward.items():
            check_target(hop, "a next hop")
            forward[hop] = tuple(check_target(t, f"a target via {hop}") for t in targets)
            if not forward[hop]:
                raise UsageError(f"next hop {hop} is given no targets")
        everything = [*local, *(t for ts in forward.values() for t in ts)]
        if not everything:
            raise UsageError("an envelope offered for custody needs at least one target")
        if len(set(everything)) != len(everything):
            raise UsageError(f"a target is routed twice: {sorted(everything)}")
        object.__setattr__(self, "local", local)
        object.__setattr__(self, "forward", forward)
        if self.send_key is not None:
            if not isinstance(self.send_key, SendKey):
                raise UsageError("send_key must be a SendKey")
            if self.came_from:
                raise UsageError("only this node's own messages carry a send key")

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
        send_key: SendKey | None = None,
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
            send_key=send_key,
        )

    @property
    def targets(self) -> frozenset[str]:
        return frozenset(self.local).union(*self.forward.values())


class AcceptStatus(enum.Enum):
    """What became of one offered copy: the dedup rule's verdict (:func:`classify`).

    ``REPEATED`` and ``KEY_REUSED`` are for this node's own messages sent with a
    client's idempotency key (:class:`SendKey`, :func:`classify_send`): the
    same send again (nothing stored; ``original`` is the first message), or
    the key already naming a different message (refused).
    """

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    EXPIRED = "expired"
    REPEATED = "repeated"
    KEY_REUSED = "key-reused"


@dataclass(frozen=True, slots=True)
class SendKey:
    """A client's idempotency key on a send, as the store keeps it (both SHA-256 digests).

    ``key`` names the send (the client's key text, hashed: the store never
    holds it), ``request`` what was asked (recipients, kind, content type,
    receipt flag and payload), so a retry is told the first message's id and
    a key reused for something else is refused, until the first expires.
    """

    key: bytes
    request: bytes

    def __post_init__(self) -> None:
        for name in ("key", "request"):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != DIGEST_LENGTH:
                raise UsageError(f"a send key's {name} is {DIGEST_LENGTH} bytes")


@dataclass(frozen=True, slots=True, kw_only=True)
class SendRecord:
    """What a send key names until its message expires: the first message."""

    request: bytes
    message_id: bytes
    digest: bytes
    expires_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AcceptOutcome:
    """The outcome for one item; ``local`` and ``forward`` are the targets newly taken.

    ``original``: for ``REPEATED``, the message the send key named first.

    ``seqs`` and ``inbox_seq``: where an ``ACCEPTED`` item's new copies were
    queued (the ``seq`` of its entry per next hop, and of its inbox entry),
    when the store says so -- ``SqliteStore`` does, so that the node can hand
    what it just committed to its forwarders and inbox without reading it
    back; a store that does not leaves them empty, and the node reads its
    queues.  Not part of an outcome's value (equality ignores them).
    """

    status: AcceptStatus
    local: tuple[str, ...] = ()
    forward: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    original: SendRecord | None = None
    seqs: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)
    inbox_seq: int | None = field(default=None, compare=False, repr=False)

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


_KEY_REUSED = AcceptOutcome(status=AcceptStatus.KEY_REUSED)


def classify_send(item: AcceptItem, record: SendRecord | None, now_ms: int) -> AcceptOutcome | None:
    """The idempotency rule: None if ``item`` is a new send (then :func:`classify` decides).

    A live record for the item's send key makes it the same send again
    (``REPEATED``, nothing stored) or, if it asked for something else,
    ``KEY_REUSED``.  A record whose message has expired no longer counts.
    """
    if item.send_key is None or record is None or record.expires_ms <= now_ms:
        return None
    if record.request != item.send_key.request:
        return _KEY_REUSED
    return AcceptOutcome(status=AcceptStatus.REPEATED, original=record)


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
class QueuedEnvelope:
    """What every queue entry says of its envelope: the fields the three kinds share.

    One definition, so that the inbox, the outbound queues and what
    ``take_expired`` returns cannot drift apart.
    """

    seq: int
    sender: str
    message_id: bytes
    digest: bytes
    targets: tuple[str, ...]
    expires_ms: int
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundEntry(QueuedEnvelope):
    """An envelope waiting in the inbox for the local application's acknowledgement."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboundEntry(QueuedEnvelope):
    """A copy waiting for ``next_hop`` to take custody of it, for ``targets``."""

    next_hop: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpiredEntry(QueuedEnvelope):
    """An entry removed because it expired: what a non-delivery report needs.

    ``next_hop`` is where it was waiting; None means the local inbox.
    ``data`` is the envelope: the reporter reads its kind from it, so that it
    never reports on a report.
    """

    next_hop: str | None


# What an entry copies from the envelope it queues (an AcceptItem, or another entry).
_ENVELOPE_FIELDS = ("sender", "message_id", "digest", "expires_ms", "data")


def entry_fields(
    envelope: AcceptItem | QueuedEnvelope, seq: int, targets: tuple[str, ...]
) -> dict[str, Any]:
    """The fields of a queue entry for ``envelope``, numbered ``seq``, for ``targets``."""
    fields: dict[str, Any] = {name: getattr(envelope, name) for name in _ENVELOPE_FIELDS}
    fields["seq"] = seq
    fields["targets"] = targets
    return fields


def row_fields(row: Sequence[Any]) -> dict[str, Any]:
    """The fields of a queue entry from a database row.

    The row's columns: ``seq, sender, message_id, digest, targets, expires_ms,
    data``, in that order, targets joined by :func:`join_targets`.
    """
    seq, sender, message_id, digest, targets, expires_ms, data = row
    return {
        "seq": seq,
        "sender": sender,
        "message_id": bytes(message_id),
        "digest": bytes(digest),
        "targets": split_targets(targets),
        "expires_ms": expires_ms,
        "data": bytes(data),
    }


def join_targets(targets: Iterable[str]) -> str:
    """Targets as the database backends keep them: one text, space-separated.

    Names never hold a space (``check_target``), so the encoding is exact.
    """
    return " ".join(targets)


def split_targets(text: str) -> tuple[str, ...]:
    return tuple(text.split(" "))


@dataclass(frozen=True, slots=True)
class QueueDepth:
    """Entries stored (expired ones included until taken) and their envelope bytes."""

    count: int = 0
    bytes: int = 0


class QueueDepths:
    """Count and bytes of every outbound queue and of the inbox, kept in memory.

    The memory and SQLite stores keep one, and update it only after their
    change has taken effect (committed, for SQLite), so it never counts what a
    rolled-back transaction wrote. Back-pressure decisions read it without
    touching the database.  (The PostgreSQL store, shared by workers, keeps
    its depths in rows instead.)
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


# --- the audit log's rows, and the hooks that store them with custody ---------------


class AuditRow(NamedTuple):
    """One audit record as the store keeps it: the seq the log gave it and its encoding."""

    seq: int
    data: bytes


AuditHook: TypeAlias = Callable[[list[AcceptOutcome]], Sequence[AuditRow]]
"""``accept``'s audit callback: the batch's outcomes → the encoded records to store with it.

It runs inside the store's transaction and under its lock: it must not call
the store.  Whatever it raises rolls the whole batch back and propagates.
"""

AuditSealer: TypeAlias = Callable[[int, int], bytes]
"""The audit log's seal (SPEC §20.6): ``(tree size, checkpoint size)`` → a signed head's bytes.

Given to :meth:`~exchnode.store.AuditStore.set_audit_sealer`.  The store calls
it inside every transaction that appends audit records (with the log's size
after them) or moves the checkpoint (with the new checkpoint's size), and
keeps what it returns as the one stored seal, in that same transaction: no
record is ever durable without a signed head over it.  Like the hooks, it
runs under the store's lock and must not call the store; a raise rolls the
transaction back.
"""

ExpiryAuditHook: TypeAlias = Callable[[list[ExpiredEntry]], Sequence[AuditRow]]
"""``take_expired``'s audit callback: the entries taken → the records to store with them.

Called only when something expired, inside the transaction, like ``AuditHook``.
"""


# --- checks of whole batches, shared by the implementations -------------------------


def check_items(items: Iterable[AcceptItem]) -> list[AcceptItem]:
    out = list(items)
    for item in out:
        if not isinstance(item, AcceptItem):
            raise UsageError(f"accept() takes AcceptItem values, got {type(item).__name__}")
    return out


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
            raise UsageError(f"an audit record is an AuditRow (seq, data), got {describe(row)}")
        seq, data = row
        if not isinstance(data, bytes) or not 0 < len(data) <= MAX_AUDIT_RECORD_BYTES:
            raise UsageError(
                f"an audit record is 1..{MAX_AUDIT_RECORD_BYTES} bytes, got {describe(data)}"
            )
        if type(seq) is not int or seq != expected:
            problem = (
                "is not an integer"
                if type(seq) is not int
                else "repeats a stored seq"
                if seq < expected
                else "leaves a gap"
            )
            raise UsageError(
                f"audit record {seq!r} does not continue the stored log, whose next seq is "
                f"{expected}: it {problem}; nothing of this batch was stored (rebuild the "
                f"log state from the store)"
            )
        out.append(AuditRow(seq, data))
        expected += 1
    return out
