"""What the sharing service keeps: its machines, what it received, and its outbox (as rows).

:class:`SharingState` is everything :class:`~exchnode.aio.SharingService`
keeps in the node's meta table: the provider's book, the requester's view,
the authority's desk, the two correction machines, the gap trackers of the
resources subscribed to, the *outbox* of messages changes produced and that
were not yet handed to the node, and the *parked* messages the node refused
for good.

**Rows.**  The state is stored as one row per item, under ``sharing/``, and
a change writes only the rows it touched (issue 13): each machine remembers
which of its rows its steps changed (``take_changes``), and
:meth:`SharingState.take_changes` puts them under the machine's prefix with
the trackers and outbox rows the change touched.  The service writes them in
one ``update_meta`` transaction, before it sends anything.  The key scheme:

=================================================  ===========================================
``sharing/book/entry/<request id hex>``              a request to this provider, with its grant
``sharing/book/stream/last/<code hex>``              a resource's last record number
``sharing/book/stream/window/<code hex>/<seq hex>``  a record kept for resends (sealed)
``sharing/view/held/<request id hex>``               a request this node made, with its grant
``sharing/desk/case/<request id hex>``               an escalation heard as sharing authority
``sharing/corrections-in/case/<id hex>``             a correction reported to this provider
``sharing/corrections-out/case/<id hex>``            a correction this node reported
``sharing/tracker/<provider>/<code hex>``            which record numbers arrived (subscriber)
``sharing/outbox/<n, 16 hex>``                       a message stored, not yet handed over
``sharing/parked/<n, 16 hex>``                       a message the node refused for good
=================================================  ===========================================

An outbox or parked message's payload (records, among others) is stored
sealed under a key from the masking secret
(:class:`~exchnode.sharing.AtRestCipher`), as the resend window is, so the
store file holds no record in clear.  Each carries a random *tag*: the
message's idempotency key at the node, so handing it over again after a
crash (before its row was deleted) returns the first message instead of
sending a second.

**Before rows.**  A node of an older release kept the whole state as one
value under ``sharing`` (formats 1 and 2); :meth:`SharingState.restore_whole`
reads it and :meth:`SharingState.rows` gives every row, which the service
writes in one transaction that also deletes the old value.

:meth:`SharingState.fresh` is a new node's: a hub is only a sharing
authority, a department is requester, provider and both ends of
corrections.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from exchnode.core import EventSink, NodeName, pack, unpack
from exchnode.errors import MalformedError
from exchnode.sharing import (
    AtRestCipher,
    AuthorityDesk,
    CorrectionDesk,
    CorrectionTracker,
    GapTracker,
    ResourceTerms,
    SubscriberView,
    SubscriptionBook,
    WorkCalendar,
)

__all__ = [
    "LEGACY_KEY",
    "ROW_PREFIX",
    "STATE_FORMAT",
    "Parked",
    "Queued",
    "Send",
    "SharingState",
    "StateContext",
    "terms_of",
]

#: the whole value of an older release (format 1: outbox in clear; 2: outbox sealed)
LEGACY_KEY = "sharing"
ROW_PREFIX = "sharing/"
#: the last whole-value format; rows replaced it
STATE_FORMAT = 2
TAG_LENGTH = 16
_OUTBOX = b"sharing-outbox"
_ROW_FORMAT = 1
_QUEUED = ROW_PREFIX + "outbox/"
_PARKED = ROW_PREFIX + "parked/"
_TRACKER = ROW_PREFIX + "tracker/"


class Send(NamedTuple):
    """One message a change produced: to whom, of which kind, and its payload."""

    recipients: tuple[str, ...]
    kind: str
    payload: bytes


class Queued(NamedTuple):
    """A message of the outbox, with the tag that makes handing it over idempotent."""

    send: Send
    tag: bytes

    @property
    def idempotency_key(self) -> str:
        return "sharing-" + self.tag.hex()


class Parked(NamedTuple):
    """A message the node refused for good: kept for the operator, not retried every second."""

    queued: Queued
    code: str  # the node's error code
    reason: str  # the node's error message: names, limits, never payload bytes
    at_ms: int


class _Machine(Protocol):
    def take_changes(self) -> dict[str, bytes | None]: ...

    def rows(self) -> dict[str, bytes]: ...

    def load_rows(self, rows: Iterable[tuple[str, bytes]]) -> None: ...


@dataclass(frozen=True, slots=True)
class StateContext:
    """What the machines are built with, besides their stored state."""

    terms: Callable[[str], ResourceTerms | None]  # this node's resource -> its sharing terms
    sink: EventSink
    masking_secret: bytes = field(repr=False)
    calendar: WorkCalendar
    answer_days: int
    random: Callable[[int], bytes]


@dataclass(slots=True)
class SharingState:
    """The sharing service's state; the machines a node's place does not have are None."""

    book: SubscriptionBook | None = None
    view: SubscriberView | None = None
    desk: AuthorityDesk | None = None
    corrections_in: CorrectionDesk | None = None
    corrections_out: CorrectionTracker | None = None
    trackers: dict[tuple[str, str], GapTracker] = field(default_factory=dict)  # (provider, code)
    outbox: dict[int, Queued] = field(default_factory=dict)  # by row number, in order
    parked: dict[int, Parked] = field(default_factory=dict)
    _next: int = 1
    _changed_trackers: set[tuple[str, str]] = field(default_factory=set)
    _changed_queued: set[int] = field(default_factory=set)
    _changed_parked: set[int] = field(default_factory=set)

    @classmethod
    def fresh(cls, me: str, context: StateContext) -> SharingState:
        """A new node's: a hub is the sharing authority of its division, nothing else."""
        events, random = context.sink, context.random
        if NodeName.parse(me).is_hub:
            return cls(desk=AuthorityDesk(me, sink=events))
        return cls(
            book=SubscriptionBook(
                me,
                context.terms,
                sink=events,
                masking_secret=context.masking_secret,
                calendar=context.calendar,
                answer_days=context.answer_days,
            ),
            view=SubscriberView(me, sink=events, random=random),
            corrections_in=CorrectionDesk(me, sink=events),
            corrections_out=CorrectionTracker(me, sink=events, random=random),
        )

    # --- what changed ------------------------------------------------------------------------

    def tracker(self, provider: str, code: str, *, after: int) -> GapTracker:
        """The tracker of ``provider``'s ``code``, new (starting after ``after``) if none yet."""
        key = (provider, code)
        found = self.trackers.get(key)
        if found is None:
            found = self.trackers[key] = GapTracker(after)
        self._changed_trackers.add(key)
        return found

    def touched(self, provider: str, code: str) -> None:
        """A tracker the caller changed: its row is written with the change."""
        if (provider, code) in self.trackers:
            self._changed_trackers.add((provider, code))

    def queue(self, sends: Sequence[Send], random: Callable[[int], bytes]) -> list[int]:
        numbers = []
        for send in sends:
            number = self._next
            self._next += 1
            self.outbox[number] = Queued(send, random(TAG_LENGTH))
            self._changed_queued.add(number)
            numbers.append(number)
        return numbers

    def handed_over(self, number: int) -> None:
        """The node took the message: its row goes with the next change (idempotent if sent
        again meanwhile, by its tag)."""
        if self.outbox.pop(number, None) is not None:
            self._changed_queued.add(number)

    def park(self, number: int, code: str, reason: str, at_ms: int) -> Parked:
        parked = self.parked[number] = Parked(self.outbox.pop(number), code, reason, at_ms)
        self._changed_queued.add(number)
        self._changed_parked.add(number)
        return parked

    def unpark(self, number: int) -> None:
        """A parked message the node took after all, or the operator dropped."""
        if self.parked.pop(number, None) is not None:
            self._changed_parked.add(number)

    def pending_deletions(self) -> bool:
        return any(n not in self.outbox for n in self._changed_queued) or any(
            n not in self.parked for n in self._changed_parked
        )

    def take_changes(self, cipher: AtRestCipher) -> dict[str, bytes | None]:
        """The rows changed since the last call, by key (None: delete), and forget them."""
        changes: dict[str, bytes | None] = {}
        for prefix, machine in self._machines():
            changes.update({prefix + k: v for k, v in machine.take_changes().items()})
        for key in self._changed_trackers:
            changes[_tracker_key(*key)] = self.trackers[key].encode()
        for number in self._changed_queued:
            queued = self.outbox.get(number)
            changes[_QUEUED + f"{number:016x}"] = (
                None if queued is None else _queued_row(queued, cipher)
            )
        for number in self._changed_parked:
            parked = self.parked.get(number)
            changes[_PARKED + f"{number:016x}"] = (
                None if parked is None else _parked_row(parked, cipher)
            )
        self._changed_trackers.clear()
        self._changed_queued.clear()
        self._changed_parked.clear()
        return changes

    def rows(self, cipher: AtRestCipher) -> dict[str, bytes]:
        """Every row (to convert a whole value once); what changed is forgotten."""
        rows: dict[str, bytes] = {}
        for prefix, machine in self._machines():
            rows.update({prefix + k: v for k, v in machine.rows().items()})
            machine.take_changes()
        rows.update({_tracker_key(*key): t.encode() for key, t in self.trackers.items()})
        rows.update({_QUEUED + f"{n:016x}": _queued_row(q, cipher) for n, q in self.outbox.items()})
        rows.update({_PARKED + f"{n:016x}": _parked_row(p, cipher) for n, p in self.parked.items()})
        self._changed_trackers.clear()
        self._changed_queued.clear()
        self._changed_parked.clear()
        return rows

    def _machines(self) -> list[tuple[str, _Machine]]:
        parts: list[tuple[str, _Machine | None]] = [
            ("book/", self.book),
            ("view/", self.view),
            ("desk/", self.desk),
            ("corrections-in/", self.corrections_in),
            ("corrections-out/", self.corrections_out),
        ]
        return [(ROW_PREFIX + prefix, m) for prefix, m in parts if m is not None]

    # --- restoring ---------------------------------------------------------------------------

    @classmethod
    def load(
        cls, me: str, rows: Iterable[tuple[str, bytes]], context: StateContext
    ) -> SharingState:
        """The state of ``rows`` (every ``sharing/`` row, as ``meta_range`` pages them)."""
        state = cls.fresh(me, context)
        cipher = AtRestCipher(context.masking_secret)
        machines = state._machines()
        parts: dict[str, list[tuple[str, bytes]]] = {prefix: [] for prefix, _ in machines}
        for key, value in rows:
            prefix = next((p for p in parts if key.startswith(p)), None)
            if prefix is not None:
                parts[prefix].append((key[len(prefix) :], value))
            elif key.startswith(_TRACKER):
                provider, code, tracker = _tracker_from_row(key, value)
                state.trackers[(provider, code)] = tracker
            elif key.startswith(_QUEUED):
                number = _number(key, _QUEUED)
                state.outbox[number] = _queued_from_row(key, value, cipher)
            elif key.startswith(_PARKED):
                number = _number(key, _PARKED)
                state.parked[number] = _parked_from_row(key, value, cipher)
            else:
                raise MalformedError(key, f"is no row of {me}'s sharing state (hub or department)")
        for prefix, machine in machines:
            machine.load_rows(parts[prefix])
        state._next = max([*state.outbox, *state.parked, 0]) + 1
        return state

    @classmethod
    def restore_whole(cls, data: bytes, context: StateContext) -> SharingState:
        """The one value an older release stored under ``sharing`` (formats 1 and 2)."""
        what = "sharing-state"
        value = unpack(data, what=what, max_size=len(data), max_array=max(len(data), 64))
        if type(value) is not list or len(value) != 9 or value[0] not in (1, STATE_FORMAT):
            raise MalformedError(what, f"expected format 1 or {STATE_FORMAT} with 9 fields")
        fmt, book, view, desk, c_in, c_out, _requests, trackers, outbox = value
        # The requests received as provider were a copy of the book's: the book has them.
        events, random = context.sink, context.random
        state = cls()
        if book is not None:
            state.book = SubscriptionBook.restore(
                book,
                context.terms,
                sink=events,
                masking_secret=context.masking_secret,
                calendar=context.calendar,
                answer_days=context.answer_days,
            )
        if view is not None:
            state.view = SubscriberView.restore(view, sink=events, random=random)
        if desk is not None:
            state.desk = AuthorityDesk.restore(desk, sink=events)
        if c_in is not None:
            state.corrections_in = CorrectionDesk.restore(c_in, sink=events)
        if c_out is not None:
            state.corrections_out = CorrectionTracker.restore(c_out, sink=events, random=random)
        for provider, code, tracker in trackers:
            state.trackers[(provider, code)] = GapTracker.restore(tracker)
        cipher = AtRestCipher(context.masking_secret)
        sends = []
        for recipients, kind, sealed in outbox:
            send = Send(tuple(recipients), kind, b"")
            payload = sealed if fmt == 1 else cipher.open(_OUTBOX, sealed, *_place(send))
            if payload is None:
                raise MalformedError(
                    f"{what}.outbox", "was sealed under another masking secret: restore the secret"
                )
            sends.append(send._replace(payload=payload))
        state.queue(sends, random)
        return state


def _tracker_key(provider: str, code: str) -> str:
    return f"{_TRACKER}{provider}/{code.encode('utf-8').hex()}"


def _tracker_from_row(key: str, value: bytes) -> tuple[str, str, GapTracker]:
    provider, _, code_hex = key[len(_TRACKER) :].partition("/")
    try:
        code = bytes.fromhex(code_hex).decode("utf-8")
        NodeName.parse(provider)
    except ValueError:
        raise MalformedError(
            key, "is no tracker row: sharing/tracker/<provider>/<code hex>"
        ) from None
    return provider, code, GapTracker.restore(value)


def _number(key: str, prefix: str) -> int:
    digits = key[len(prefix) :]
    if len(digits) != 16 or not all(c in "0123456789abcdef" for c in digits):
        raise MalformedError(key, f"is no message row: {prefix}<16 hex digits>")
    return int(digits, 16)


def _place(send: Send, tag: bytes = b"") -> tuple[bytes, ...]:
    # What the sealed payload is bound to: its kind, its recipients and (rows) its tag.
    place = (send.kind.encode("utf-8"), *(r.encode("utf-8") for r in send.recipients))
    return (*place, tag) if tag else place


def _queued_row(queued: Queued, cipher: AtRestCipher) -> bytes:
    return pack(_queued_wire(queued, cipher))


def _queued_wire(queued: Queued, cipher: AtRestCipher) -> list[Any]:
    send = queued.send
    sealed = cipher.seal(_OUTBOX, send.payload, *_place(send, queued.tag))
    return [_ROW_FORMAT, list(send.recipients), send.kind, queued.tag, sealed]


def _parked_row(parked: Parked, cipher: AtRestCipher) -> bytes:
    return pack([*_queued_wire(parked.queued, cipher), parked.code, parked.reason, parked.at_ms])


def _queued_from_wire(key: str, value: list[Any], cipher: AtRestCipher) -> Queued:
    fmt, recipients, kind, tag, sealed = value[:5]
    if (
        fmt != _ROW_FORMAT
        or type(recipients) is not list
        or not recipients
        or not all(type(r) is str for r in recipients)
        or type(kind) is not str
        or type(tag) is not bytes
        or len(tag) != TAG_LENGTH
        or type(sealed) is not bytes
    ):
        raise MalformedError(key, "is no outbox row: [1, recipients, kind, tag, sealed payload]")
    send = Send(tuple(recipients), kind, b"")
    payload = cipher.open(_OUTBOX, sealed, *_place(send, tag))
    if payload is None:
        raise MalformedError(key, "was sealed under another masking secret: restore the secret")
    return Queued(send._replace(payload=payload), tag)


def _queued_from_row(key: str, data: bytes, cipher: AtRestCipher) -> Queued:
    value = unpack(data, what=key, max_size=len(data), max_array=max(len(data), 64))
    if type(value) is not list or len(value) != 5:
        raise MalformedError(key, "is no outbox row: [1, recipients, kind, tag, sealed payload]")
    return _queued_from_wire(key, value, cipher)


def _parked_from_row(key: str, data: bytes, cipher: AtRestCipher) -> Parked:
    value = unpack(data, what=key, max_size=len(data), max_array=max(len(data), 64))
    if type(value) is not list or len(value) != 8:
        raise MalformedError(key, "is no parked row: an outbox row, code, reason, time")
    code, reason, at_ms = value[5:]
    if type(code) is not str or type(reason) is not str or type(at_ms) is not int:
        raise MalformedError(key, "is no parked row: an outbox row, code, reason, time")
    return Parked(_queued_from_wire(key, value, cipher), code, reason, at_ms)


def terms_of(entry: Any) -> ResourceTerms:
    """What the sharing rules need of a catalog entry."""
    return ResourceTerms(
        code=entry.code,
        provider=entry.provider,
        share_type=entry.share_type,
        conditions=entry.share_conditions,
        items=frozenset(item.name for item in entry.data_items),
    )
