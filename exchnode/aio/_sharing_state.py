"""What the sharing service keeps: its machines, what it received, and its outbox (one value).

:class:`SharingState` is everything :class:`~exchnode.aio.SharingService`
stores in the node's meta table under one key: the provider's book, the
requester's view, the authority's desk, the two correction machines, the
requests received as provider, the gap trackers of the resources subscribed
to, and the *outbox* of messages the last change produced and that were not
yet handed to the node.  The service stores it whole after every change,
before it sends anything (see the service's "Durability").  An outbox
message's payload (records, among others) is stored sealed under a key from
the masking secret (:class:`~exchnode.sharing.AtRestCipher`), as the resend
window is, so the store file holds no record in clear.

:meth:`SharingState.fresh` is a new node's: a hub is only a sharing
authority, a department is requester, provider and both ends of
corrections.  :meth:`SharingState.encode` and :meth:`SharingState.restore`
are its canonical form, format :data:`STATE_FORMAT`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

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
    SubscriptionRequest,
    WorkCalendar,
)

__all__ = ["STATE_FORMAT", "Send", "SharingState", "StateContext", "terms_of"]

#: 2: the outbox's payloads sealed at rest (1, an older node's, held them in clear; still read)
STATE_FORMAT = 2
_OUTBOX = b"sharing-outbox"


class Send(NamedTuple):
    """One message of the outbox: to whom, of which kind, and its payload."""

    recipients: tuple[str, ...]
    kind: str
    payload: bytes


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
    """The sharing service's stored value; the machines a node's place does not have are None."""

    book: SubscriptionBook | None = None
    view: SubscriberView | None = None
    desk: AuthorityDesk | None = None
    corrections_in: CorrectionDesk | None = None
    corrections_out: CorrectionTracker | None = None
    requests: dict[bytes, SubscriptionRequest] = field(default_factory=dict)  # as provider
    trackers: dict[tuple[str, str], GapTracker] = field(default_factory=dict)  # (provider, code)
    outbox: list[Send] = field(default_factory=list)

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

    def encode(self, cipher: AtRestCipher) -> bytes:
        def part(value: Any) -> bytes | None:
            return None if value is None else bytes(value.encode())

        return pack(
            [
                STATE_FORMAT,
                part(self.book),
                part(self.view),
                part(self.desk),
                part(self.corrections_in),
                part(self.corrections_out),
                [r.encode() for r in self.requests.values()],
                [[p, c, t.encode()] for (p, c), t in sorted(self.trackers.items())],
                [
                    [list(s.recipients), s.kind, cipher.seal(_OUTBOX, s.payload, *_place(s))]
                    for s in self.outbox
                ],
            ]
        )

    @classmethod
    def restore(cls, data: bytes, context: StateContext) -> SharingState:
        what = "sharing-state"
        value = unpack(data, what=what, max_size=len(data), max_array=max(len(data), 64))
        if type(value) is not list or len(value) != 9 or value[0] not in (1, STATE_FORMAT):
            raise MalformedError(what, f"expected format 1 or {STATE_FORMAT} with 9 fields")
        fmt, book, view, desk, c_in, c_out, requests, trackers, outbox = value
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
        for item in requests:
            request = SubscriptionRequest.decode(item)
            state.requests[request.request_id] = request
        for provider, code, tracker in trackers:
            state.trackers[(provider, code)] = GapTracker.restore(tracker)
        cipher = AtRestCipher(context.masking_secret)
        for recipients, kind, sealed in outbox:
            send = Send(tuple(recipients), kind, b"")
            payload = sealed if fmt == 1 else cipher.open(_OUTBOX, sealed, *_place(send))
            if payload is None:
                raise MalformedError(
                    f"{what}.outbox", "was sealed under another masking secret: restore the secret"
                )
            state.outbox.append(send._replace(payload=payload))
        return state


def _place(send: Send) -> tuple[bytes, ...]:
    return (send.kind.encode("utf-8"), *(r.encode("utf-8") for r in send.recipients))


def terms_of(entry: Any) -> ResourceTerms:
    """What the sharing rules need of a catalog entry."""
    return ResourceTerms(
        code=entry.code,
        provider=entry.provider,
        share_type=entry.share_type,
        conditions=entry.share_conditions,
        items=frozenset(item.name for item in entry.data_items),
    )
