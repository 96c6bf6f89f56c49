"""Subscriptions under the sharing rules: requests, decisions, grants (pure).

Theory of operation
-------------------
A department subscribes to another's resource by sending a *request*
(purpose, scope, data items) to the resource's provider.  What happens next
is fixed by the catalog entry's share type (政务数据共享条例, protocol draft
§19):

* **unconditional**: the provider's node grants it on arrival;
* **conditional**: it waits for the provider's operator, who approves (all or
  some of the requested items, with masks and an optional expiry) or refuses
  with a reason, within a deadline of N working days (``workdays``); past the
  deadline it is **expired** and the requester is told;
* **not shared**: refused on arrival, citing the catalog's legal basis.

A refused or expired conditional request can be **escalated** to the
same-level sharing authority, which this protocol takes to be the hub of the
*provider's* division (:func:`sharing_authority`): only an authority over
the provider can direct it to look again.  The authority either directs a
**re-review** (pending again, with a fresh deadline) or **upholds**.

A grant lasts until the provider **revokes** it or its expiry passes
(**lapse**).  Revocation takes effect for the next record published.

Every state change is one row of :data:`TRANSITIONS` (as in h11's
``_state.py``); anything not in the table is refused.  Each one emits exactly
one :class:`~exchnode.events.AuditEvent`.

The messages (:class:`SubscriptionRequest`, :class:`Decision`,
:class:`Revocation`, :class:`Expiry`, :class:`Escalation`, :class:`Review`)
are frozen values with one canonical encoding each.  They travel as node
messages of kinds ``sub.*`` inside signed, end-to-end encrypted envelopes,
which is what keeps a hub from forging or altering a grant.  The envelope's
authenticated sender is passed to every ``on_*`` method and must be the
party the message claims to come from.  Provider statements about one
request carry an increasing ``version``, so a late-arriving older statement
never overrides a newer one (store-and-forward may reorder).

Nothing here reads a clock or draws randomness on its own: ``now_ms`` and
``random`` are arguments, and :meth:`SubscriptionBook.next_timer` says when
``expire_due`` next has work.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, NamedTuple, Self

from exchnode.encoding import pack, require_canonical, unpack
from exchnode.envelope import check_bytes, check_name, check_time
from exchnode.errors import (
    ExchnodeError,
    InvalidTransitionError,
    MalformedError,
    NotAuthorisedError,
    RequestConflictError,
    UnexpectedMessageError,
    UnknownItemError,
    UnknownRequestError,
    UnknownResourceError,
    UnsupportedVersionError,
    UsageError,
)
from exchnode.events import AuditEvent, EventSink
from exchnode.masking import MaskSet, Projection, Record, Value, check_item_name, grant_hash_key
from exchnode.names import NodeName, parent_hub
from exchnode.workdays import DEFAULT_ANSWER_DAYS, WorkCalendar

__all__ = [
    "CONTENT_TYPE",
    "KINDS",
    "TRANSITIONS",
    "Action",
    "AuthorityDesk",
    "Decision",
    "Escalation",
    "Expiry",
    "GapTracker",
    "Grant",
    "Outgoing",
    "RecordDelivery",
    "RecordStream",
    "RequestState",
    "ResourceTerms",
    "Review",
    "ReviewOutcome",
    "Revocation",
    "Seen",
    "ShareType",
    "SubMessage",
    "SubscriberView",
    "SubscriptionBook",
    "SubscriptionRequest",
    "decode_message",
    "sharing_authority",
]

CONTENT_TYPE = "application/vnd.exchnode.subscription+msgpack"
MESSAGE_VERSION = 1
REQUEST_ID_LENGTH = 16
MAX_ITEMS = 1024
MAX_TEXT = 2048
MAX_CODE = 128
MAX_BODY = 256 * 1024
_MAX_COUNTER = 2**63 - 1


# --- catalog terms and states -----------------------------------------------------


class ShareType(enum.Enum):
    UNCONDITIONAL = "unconditional"  # 无条件共享
    CONDITIONAL = "conditional"  # 有条件共享
    NOT_SHARED = "not_shared"  # 不予共享


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourceTerms:
    """What the sharing rules need of one catalog entry; the catalog builds it.

    ``conditions`` is the catalog's share-conditions text: the conditions of a
    conditional resource, the legal basis of a not-shared one.
    """

    code: str
    provider: str
    share_type: ShareType
    conditions: str
    items: frozenset[str]


class RequestState(enum.Enum):
    PENDING = "pending"
    GRANTED = "granted"
    REFUSED = "refused"
    NOT_SHARED = "not_shared"
    EXPIRED = "expired"
    ESCALATED = "escalated"
    CLOSED = "closed"  # escalation upheld: final
    REVOKED = "revoked"
    LAPSED = "lapsed"  # the grant's expiry passed


class Action(enum.Enum):
    REQUEST = "request"
    GRANT = "grant"
    REFUSE = "refuse"
    EXPIRE = "expire"
    ESCALATE = "escalate"
    RE_REVIEW = "re-review"
    UPHOLD = "uphold"
    REVOKE = "revoke"
    LAPSE = "lapse"


_S = RequestState
# Where a request lands on arrival, by the catalog's share type.
ARRIVAL: Mapping[ShareType, RequestState] = {
    ShareType.UNCONDITIONAL: _S.GRANTED,
    ShareType.CONDITIONAL: _S.PENDING,
    ShareType.NOT_SHARED: _S.NOT_SHARED,
}
# Every other change of state.  Not-shared refusals are not escalated here: the
# dispute is with the catalog entry's legal basis, which the catalog's review handles.
TRANSITIONS: Mapping[RequestState, Mapping[Action, RequestState]] = {
    _S.PENDING: {Action.GRANT: _S.GRANTED, Action.REFUSE: _S.REFUSED, Action.EXPIRE: _S.EXPIRED},
    _S.REFUSED: {Action.ESCALATE: _S.ESCALATED},
    _S.EXPIRED: {Action.ESCALATE: _S.ESCALATED},
    _S.ESCALATED: {Action.RE_REVIEW: _S.PENDING, Action.UPHOLD: _S.CLOSED},
    _S.GRANTED: {Action.REVOKE: _S.REVOKED, Action.LAPSE: _S.LAPSED},
}


def _next_state(
    state: RequestState, action: Action, request_id: bytes, error: type[ExchnodeError]
) -> RequestState:
    following = TRANSITIONS.get(state, {}).get(action)
    if following is None:
        raise error(f"request {request_id.hex()} is {state.value}: cannot {action.value}")
    return following


def sharing_authority(provider: str) -> str:
    """The hub that hears escalations against ``provider``: the hub of its own division.

    A provider that is itself a hub answers to the hub above it.
    """
    name = NodeName.parse(provider)
    if not name.is_hub:
        return name.division
    above = parent_hub(provider)
    if above is None:
        raise UsageError("the national hub has no sharing authority above it")
    return above


# --- field codecs: one check for construction and decoding ------------------------


class _Codec(NamedTuple):
    check: Callable[[object, str], Any]  # wire value -> Python value, or MalformedError
    out: Callable[[Any], Any]  # Python value -> wire value


def _same(value: Any) -> Any:
    return value


def _text(limit: int, *, empty: bool) -> _Codec:
    def check(value: object, what: str) -> str:
        if type(value) is not str or len(value) > limit or (not empty and not value):
            least = 0 if empty else 1
            raise MalformedError(what, f"must be a text of {least}..{limit} characters")
        return value

    return _Codec(check, _same)


def _counter(value: object, what: str) -> int:
    if type(value) is not int or not 0 <= value <= _MAX_COUNTER:
        raise MalformedError(what, "must be a non-negative integer")
    return value


def _optional_time(value: object, what: str) -> int | None:
    return None if value is None else check_time(value, what)


def _items(*, empty: bool) -> _Codec:
    def check(value: object, what: str) -> tuple[str, ...]:
        least = 0 if empty else 1
        if type(value) is not list or not least <= len(value) <= MAX_ITEMS:
            raise MalformedError(what, f"must be an array of {least}..{MAX_ITEMS} data items")
        names = tuple(check_item_name(v, f"{what}[{i}]") for i, v in enumerate(value))
        if list(names) != sorted(set(names)):
            raise MalformedError(what, "data items must be unique and sorted")
        return names

    return _Codec(check, sorted)


def _enum(kind: type[enum.Enum], allowed: Iterable[Any]) -> _Codec:
    values = {member.value: member for member in allowed}

    def check(value: object, what: str) -> Any:
        if type(value) is not str or value not in values:
            raise MalformedError(what, f"must be one of {sorted(values)}")
        return values[value]

    return _Codec(check, lambda member: member.value)


_ID = _Codec(lambda value, what: check_bytes(value, what, REQUEST_ID_LENGTH), _same)
_NAME = _Codec(check_name, _same)
_TIME = _Codec(check_time, _same)
_OPTIONAL_TIME = _Codec(_optional_time, _same)
_COUNTER = _Codec(_counter, _same)
_CODE = _text(MAX_CODE, empty=False)
_TEXT = _text(MAX_TEXT, empty=True)
_REQUIRED_TEXT = _text(MAX_TEXT, empty=False)
_MASKS = _Codec(MaskSet.from_wire, MaskSet.to_wire)
_DECISION_STATUS = _enum(RequestState, (_S.PENDING, _S.GRANTED, _S.REFUSED, _S.NOT_SHARED))
_GROUNDS = _enum(RequestState, (_S.REFUSED, _S.EXPIRED))


class ReviewOutcome(enum.Enum):
    RE_REVIEW = "re-review"
    UPHOLD = "uphold"


_OUTCOME = _enum(ReviewOutcome, ReviewOutcome)


# --- messages ---------------------------------------------------------------------


class _Message:
    """Shared codec of the ``sub.*`` messages: ``[version=1, field, ...]`` in field order."""

    __slots__ = ()
    KIND: ClassVar[str]
    CODECS: ClassVar[Mapping[str, _Codec]]

    def __post_init__(self) -> None:
        # Construction runs the decoder's checks, so a value that exists encodes
        # and decodes back to itself; normalised forms (sorted items) are stored.
        for name, codec in self.CODECS.items():
            try:
                value = codec.check(codec.out(getattr(self, name)), f"{self.KIND}.{name}")
            except MalformedError as exc:
                raise UsageError(str(exc)) from None
            object.__setattr__(self, name, value)
        problem = self._inconsistency()
        if problem is not None:
            raise UsageError(f"{self.KIND}: {problem}")

    def _inconsistency(self) -> str | None:
        return None

    def encode(self) -> bytes:
        values = [codec.out(getattr(self, name)) for name, codec in self.CODECS.items()]
        return pack([MESSAGE_VERSION, *values])

    @classmethod
    def decode(cls, data: bytes) -> Self:
        """Parse and check every field; a ``RejectedError`` names the field."""
        what = cls.KIND
        value = unpack(data, what=what, max_size=MAX_BODY, max_array=MAX_ITEMS + 1)
        count = len(cls.CODECS) + 1
        if type(value) is not list or len(value) != count:
            raise MalformedError(what, f"expected an array of {count} elements")
        if type(value[0]) is not int:
            raise MalformedError(f"{what}.version", "must be an integer")
        if value[0] != MESSAGE_VERSION:
            raise UnsupportedVersionError(f"{what} version {value[0]} is not supported (only 1)")
        checked = {
            name: codec.check(item, f"{what}.{name}")
            for (name, codec), item in zip(cls.CODECS.items(), value[1:], strict=True)
        }
        message = cls.__new__(cls)
        for name, item in checked.items():
            object.__setattr__(message, name, item)
        problem = message._inconsistency()
        if problem is not None:
            raise MalformedError(what, problem)
        require_canonical(value, data, what=what)
        return message


def _codecs(cls: type[_Message], **codecs: _Codec) -> None:
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    if names != list(codecs):
        raise AssertionError(f"{cls.__name__}: codecs {list(codecs)} do not match {names}")
    cls.CODECS = codecs


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriptionRequest(_Message):
    """``sub.request``, requester → provider: what is asked for, why and for what scope."""

    KIND: ClassVar[str] = "sub.request"
    request_id: bytes
    requester: str
    provider: str
    resource_code: str
    purpose: str
    scope: str
    items: tuple[str, ...]
    at_ms: int


_codecs(
    SubscriptionRequest,
    request_id=_ID,
    requester=_NAME,
    provider=_NAME,
    resource_code=_CODE,
    purpose=_REQUIRED_TEXT,
    scope=_REQUIRED_TEXT,
    items=_items(empty=False),
    at_ms=_TIME,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision(_Message):
    """``sub.decision``, provider → requester: pending (with its deadline), granted, refused.

    A grant's terms (items, masks, expiry, first record) are set only when
    ``status`` is granted; ``reason`` is required for a refusal and holds the
    catalog's legal basis for a not-shared one.
    """

    KIND: ClassVar[str] = "sub.decision"
    request_id: bytes
    provider: str
    requester: str
    resource_code: str
    version: int
    at_ms: int
    status: RequestState
    answer_by_ms: int | None = None
    reason: str = ""
    items: tuple[str, ...] = ()
    masks: MaskSet = field(default_factory=MaskSet)
    expires_ms: int | None = None
    first_seq: int = 0

    def _inconsistency(self) -> str | None:
        granted = self.status is _S.GRANTED
        if granted != bool(self.items):
            return "data items are given exactly when the status is granted"
        if not granted and (self.masks.rules or self.expires_ms is not None or self.first_seq):
            return "masks, expiry and first_seq belong to a grant"
        if granted and self.first_seq < 1:
            return "a grant's first_seq is at least 1"
        if (self.status is _S.PENDING) != (self.answer_by_ms is not None):
            return "answer_by is given exactly when the status is pending"
        if self.status in (_S.REFUSED, _S.NOT_SHARED) and not self.reason:
            return "a refusal states its reason"
        if not self.masks.items <= set(self.items):
            return f"mask on data item {min(self.masks.items - set(self.items))!r} not granted"
        return None

    def grant(self) -> Grant:
        if self.status is not _S.GRANTED:
            raise UsageError(f"request {self.request_id.hex()} is {self.status.value}, not granted")
        return Grant(
            request_id=self.request_id,
            resource_code=self.resource_code,
            provider=self.provider,
            subscriber=self.requester,
            version=self.version,
            items=self.items,
            masks=self.masks,
            granted_ms=self.at_ms,
            expires_ms=self.expires_ms,
            first_seq=self.first_seq,
        )


_codecs(
    Decision,
    request_id=_ID,
    provider=_NAME,
    requester=_NAME,
    resource_code=_CODE,
    version=_COUNTER,
    at_ms=_TIME,
    status=_DECISION_STATUS,
    answer_by_ms=_OPTIONAL_TIME,
    reason=_TEXT,
    items=_items(empty=True),
    masks=_MASKS,
    expires_ms=_OPTIONAL_TIME,
    first_seq=_COUNTER,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Revocation(_Message):
    """``sub.revoke``, provider → subscriber: no record after ``last_seq`` is for this grant."""

    KIND: ClassVar[str] = "sub.revoke"
    request_id: bytes
    provider: str
    subscriber: str
    resource_code: str
    version: int
    at_ms: int
    reason: str
    last_seq: int


_codecs(
    Revocation,
    request_id=_ID,
    provider=_NAME,
    subscriber=_NAME,
    resource_code=_CODE,
    version=_COUNTER,
    at_ms=_TIME,
    reason=_REQUIRED_TEXT,
    last_seq=_COUNTER,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Expiry(_Message):
    """``sub.expired``, provider → requester: the deadline passed unanswered."""

    KIND: ClassVar[str] = "sub.expired"
    request_id: bytes
    provider: str
    requester: str
    resource_code: str
    version: int
    at_ms: int
    deadline_ms: int


_codecs(
    Expiry,
    request_id=_ID,
    provider=_NAME,
    requester=_NAME,
    resource_code=_CODE,
    version=_COUNTER,
    at_ms=_TIME,
    deadline_ms=_TIME,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Escalation(_Message):
    """``sub.escalate``, requester → authority and provider: dispute round ``round`` (1, 2, …)."""

    KIND: ClassVar[str] = "sub.escalate"
    request_id: bytes
    requester: str
    provider: str
    authority: str
    resource_code: str
    round: int
    at_ms: int
    grounds: RequestState
    reason: str

    def _inconsistency(self) -> str | None:
        return None if self.round >= 1 else "round starts at 1"


_codecs(
    Escalation,
    request_id=_ID,
    requester=_NAME,
    provider=_NAME,
    authority=_NAME,
    resource_code=_CODE,
    round=_COUNTER,
    at_ms=_TIME,
    grounds=_GROUNDS,
    reason=_REQUIRED_TEXT,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Review(_Message):
    """``sub.review``, authority → provider and requester: re-review or uphold."""

    KIND: ClassVar[str] = "sub.review"
    request_id: bytes
    authority: str
    requester: str
    provider: str
    resource_code: str
    round: int
    at_ms: int
    outcome: ReviewOutcome
    reason: str

    def _inconsistency(self) -> str | None:
        return None if self.round >= 1 else "round starts at 1"


_codecs(
    Review,
    request_id=_ID,
    authority=_NAME,
    requester=_NAME,
    provider=_NAME,
    resource_code=_CODE,
    round=_COUNTER,
    at_ms=_TIME,
    outcome=_OUTCOME,
    reason=_TEXT,
)

SubMessage = SubscriptionRequest | Decision | Revocation | Expiry | Escalation | Review
_BY_KIND: Mapping[str, type[SubMessage]] = {
    cls.KIND: cls for cls in (SubscriptionRequest, Decision, Revocation, Expiry, Escalation, Review)
}
KINDS = frozenset(_BY_KIND)


def decode_message(kind: str, data: bytes) -> SubMessage:
    """The message of an envelope of one of the :data:`KINDS`."""
    cls = _BY_KIND.get(kind)
    if cls is None:
        raise UsageError(f"{kind!r} is not a subscription kind")
    return cls.decode(data)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message to send, in an envelope of kind ``message.KIND``, to every recipient."""

    recipients: tuple[str, ...]
    message: SubMessage

    @property
    def kind(self) -> str:
        return self.message.KIND

    def payload(self) -> bytes:
        return self.message.encode()


# --- grants and records -------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Grant:
    """A grant as both sides hold it: the first record it covers, and until when."""

    request_id: bytes
    resource_code: str
    provider: str
    subscriber: str
    version: int
    items: tuple[str, ...]
    masks: MaskSet
    granted_ms: int
    expires_ms: int | None
    first_seq: int

    def live(self, now_ms: int) -> bool:
        return self.expires_ms is None or now_ms < self.expires_ms


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordDelivery:
    """One record for one subscriber, projected and masked under its grant."""

    subscriber: str
    request_id: bytes
    resource_code: str
    seq: int
    fields: Mapping[str, Value]


class RecordStream:
    """Provider side: record sequence numbers per resource, 1, 2, 3, …

    Per resource rather than per subscriber, so one publication is one number
    for everyone and a grant can say which record it starts with.
    """

    __slots__ = ("_last",)

    def __init__(self, last: Mapping[str, int] | None = None) -> None:
        self._last = dict(last or {})

    def last(self, resource_code: str) -> int:
        return self._last.get(resource_code, 0)

    def assign(self, resource_code: str) -> int:
        seq = self.last(resource_code) + 1
        self._last[resource_code] = seq
        return seq


class Seen(enum.Enum):
    NEW = "new"
    DUPLICATE = "duplicate"


class GapTracker:
    """Subscriber side: which sequence numbers of one stream have arrived.

    ``high_water`` is the last number up to which nothing is missing; what
    arrived beyond it is held until the gap closes, so memory grows with
    records received out of order, not with the size of a gap.  After
    downtime, ``missing()`` is what to ask the provider to resend.
    """

    __slots__ = ("_ahead", "high_water")

    def __init__(self, after: int = 0) -> None:
        if type(after) is not int or after < 0:
            raise UsageError(f"a stream starts after a non-negative number, got {after!r}")
        self.high_water = after
        self._ahead: set[int] = set()

    def observe(self, seq: int) -> Seen:
        if type(seq) is not int or seq < 1:
            raise UsageError(f"sequence numbers start at 1, got {seq!r}")
        if seq <= self.high_water or seq in self._ahead:
            return Seen.DUPLICATE
        self._ahead.add(seq)
        while self.high_water + 1 in self._ahead:
            self.high_water += 1
            self._ahead.remove(self.high_water)
        return Seen.NEW

    def missing(self) -> list[tuple[int, int]]:
        """Inclusive ranges not yet seen, below the highest number seen."""
        gaps = []
        expected = self.high_water + 1
        for seq in sorted(self._ahead):
            if seq > expected:
                gaps.append((expected, seq - 1))
            expected = seq + 1
        return gaps


# --- the provider's book -------------------------------------------------------------


@dataclass(slots=True)
class _Entry:
    request: SubscriptionRequest
    terms: ResourceTerms
    state: RequestState
    version: int = 0
    deadline_ms: int | None = None
    grant: Grant | None = None
    round: int = 0


def _unknown_items(wanted: Iterable[str], allowed: frozenset[str]) -> list[str]:
    return sorted(set(wanted) - allowed)


def _check_reason(reason: str, what: str) -> None:
    # Checked before the state changes, so a bad reason leaves nothing half done.
    if type(reason) is not str or not 0 < len(reason) <= MAX_TEXT:
        raise UsageError(f"{what} states its reason in 1..{MAX_TEXT} characters")


class SubscriptionBook:
    """The provider's table of requests and grants for its resources.

    ``resources`` looks a resource code up in the provider's catalog (None if
    unknown).  Operations return the messages to send; every state change is
    emitted to ``sink``.
    """

    def __init__(
        self,
        provider: str,
        resources: Callable[[str], ResourceTerms | None],
        *,
        sink: EventSink,
        masking_secret: bytes,
        calendar: WorkCalendar | None = None,
        answer_days: int = DEFAULT_ANSWER_DAYS,
    ) -> None:
        self.provider = check_name(provider, "provider")
        self.authority = sharing_authority(provider)
        self.calendar = calendar or WorkCalendar()
        self.calendar.deadline(0, answer_days)  # fail now on a bad answer_days
        self.answer_days = answer_days
        self._resources = resources
        self._sink = sink
        self._secret = masking_secret
        grant_hash_key(masking_secret, bytes(REQUEST_ID_LENGTH))  # fail now on a short secret
        self._entries: dict[bytes, _Entry] = {}
        self._stream = RecordStream()

    # -- queries

    def state(self, request_id: bytes) -> RequestState:
        return self._local(request_id).state

    def deadline(self, request_id: bytes) -> int | None:
        return self._local(request_id).deadline_ms

    def grant(self, request_id: bytes) -> Grant | None:
        return self._local(request_id).grant

    def live_grants(self, resource_code: str, now_ms: int) -> list[Grant]:
        return [
            entry.grant
            for entry in self._entries.values()
            if entry.state is _S.GRANTED
            and entry.grant is not None
            and entry.grant.resource_code == resource_code
            and entry.grant.live(now_ms)
        ]

    def next_timer(self) -> int | None:
        """When ``expire_due`` next has something to do (ms), or None."""
        due = [when for _, when in self._timers()]
        return min(due, default=None)

    # -- incoming

    def on_request(
        self, request: SubscriptionRequest, *, sender: str, now_ms: int
    ) -> list[Outgoing]:
        if sender != request.requester:
            raise NotAuthorisedError(f"{sender} sent a request in the name of {request.requester}")
        if request.provider != self.provider:
            raise NotAuthorisedError(
                f"request for provider {request.provider} sent to {self.provider}"
            )
        held = self._entries.get(request.request_id)
        if held is not None:
            if held.request == request:
                return []  # the same request again: already answered
            raise RequestConflictError(f"request id {request.request_id.hex()} reused")
        terms = self._terms(request.resource_code)
        unknown = _unknown_items(request.items, terms.items)
        if unknown:
            raise UnknownItemError(unknown[0], f"is not an item of resource {terms.code}")
        entry = _Entry(request, terms, ARRIVAL[terms.share_type])
        self._entries[request.request_id] = entry
        if entry.state is _S.GRANTED:
            entry.grant = self._new_grant(entry, request.items, MaskSet(), None, now_ms)
            message = self._decision(entry, now_ms)
        elif entry.state is _S.PENDING:
            entry.deadline_ms = self.calendar.deadline(now_ms, self.answer_days)
            message = self._decision(entry, now_ms)
        else:
            message = self._decision(entry, now_ms, reason=terms.conditions or "not shared")
        self._emit(entry, Action.REQUEST, request.requester, now_ms)
        return [Outgoing((request.requester,), message)]

    def on_escalation(self, escalation: Escalation, *, sender: str, now_ms: int) -> list[Outgoing]:
        entry = self._remote(escalation.request_id)
        request = entry.request
        if sender != request.requester or escalation.requester != request.requester:
            raise NotAuthorisedError(
                f"{sender} may not escalate request {request.request_id.hex()}"
            )
        if escalation.authority != self.authority or escalation.provider != self.provider:
            raise NotAuthorisedError(
                f"escalation not addressed to {self.authority} about {self.provider}"
            )
        if escalation.round <= entry.round:
            return []  # an earlier round again
        if escalation.round != entry.round + 1:
            raise UnexpectedMessageError(f"escalation round {escalation.round} skips a round")
        # The requester may count the deadline out before this node's expire_due has run.
        state = _S.EXPIRED if self._past_deadline(entry, now_ms) else entry.state
        if escalation.grounds is not state:
            raise UnexpectedMessageError(
                f"escalation of a {escalation.grounds.value} request that is {state.value}"
            )
        _next_state(state, Action.ESCALATE, request.request_id, UnexpectedMessageError)
        out = self._expire_if_due(entry, now_ms)
        self._move(entry, Action.ESCALATE, request.requester, now_ms, UnexpectedMessageError)
        entry.round = escalation.round
        return out

    def on_review(self, review: Review, *, sender: str, now_ms: int) -> list[Outgoing]:
        entry = self._remote(review.request_id)
        if sender != self.authority or review.authority != self.authority:
            raise NotAuthorisedError(f"{sender} is not the sharing authority {self.authority}")
        if review.round > entry.round:
            raise UnexpectedMessageError(
                f"review of round {review.round} before its escalation (round {entry.round})"
            )
        if review.round < entry.round or entry.state is not _S.ESCALATED:
            return []  # this round's review again, already applied
        if review.outcome is ReviewOutcome.UPHOLD:
            self._move(entry, Action.UPHOLD, sender, now_ms, UnexpectedMessageError)
            return []
        self._move(entry, Action.RE_REVIEW, sender, now_ms, UnexpectedMessageError)
        entry.deadline_ms = self.calendar.deadline(now_ms, self.answer_days)
        return [Outgoing((entry.request.requester,), self._decision(entry, now_ms))]

    # -- the operator's decisions

    def approve(
        self,
        request_id: bytes,
        *,
        operator: str,
        now_ms: int,
        items: Iterable[str] | None = None,
        masks: MaskSet | None = None,
        expires_ms: int | None = None,
    ) -> list[Outgoing]:
        """Grant all requested items, or a subset; the catalog's conditions are the ceiling."""
        entry = self._local(request_id)
        self._before_deadline(entry, now_ms)
        granted = entry.request.items if items is None else tuple(sorted(set(items)))
        beyond = _unknown_items(granted, frozenset(entry.request.items))
        if not granted or beyond:
            raise UsageError(f"granted items must be requested items; not requested: {beyond}")
        if expires_ms is not None and expires_ms <= now_ms:
            raise UsageError("a grant's expiry must be after the time of granting")
        _next_state(entry.state, Action.GRANT, request_id, InvalidTransitionError)
        entry.grant = self._new_grant(entry, granted, masks or MaskSet(), expires_ms, now_ms)
        self._move(entry, Action.GRANT, operator, now_ms)
        return [Outgoing((entry.request.requester,), self._decision(entry, now_ms))]

    def refuse(
        self, request_id: bytes, *, operator: str, reason: str, now_ms: int
    ) -> list[Outgoing]:
        entry = self._local(request_id)
        _check_reason(reason, "a refusal")
        self._before_deadline(entry, now_ms)
        self._move(entry, Action.REFUSE, operator, now_ms)
        return [Outgoing((entry.request.requester,), self._decision(entry, now_ms, reason=reason))]

    def revoke(
        self, request_id: bytes, *, operator: str, reason: str, now_ms: int
    ) -> list[Outgoing]:
        """End a grant now: the next record published is no longer sent under it."""
        entry = self._local(request_id)
        if entry.grant is not None and not entry.grant.live(now_ms) and entry.state is _S.GRANTED:
            raise InvalidTransitionError(f"grant {request_id.hex()} has lapsed; run expire_due")
        _check_reason(reason, "a revocation")
        self._move(entry, Action.REVOKE, operator, now_ms)
        entry.version += 1
        message = Revocation(
            request_id=request_id,
            provider=self.provider,
            subscriber=entry.request.requester,
            resource_code=entry.terms.code,
            version=entry.version,
            at_ms=now_ms,
            reason=reason,
            last_seq=self._stream.last(entry.terms.code),
        )
        return [Outgoing((entry.request.requester,), message)]

    def expire_due(self, now_ms: int) -> list[Outgoing]:
        """Expire unanswered requests and lapse grants whose time is up."""
        out: list[Outgoing] = []
        for request_id, when in sorted(self._timers(), key=lambda pair: (pair[1], pair[0])):
            if when <= now_ms:
                entry = self._entries[request_id]
                if entry.state is _S.PENDING:
                    out += self._expire_if_due(entry, now_ms)
                else:
                    self._move(entry, Action.LAPSE, self.provider, now_ms)
        return out

    # -- records

    def publish(self, resource_code: str, record: Record, now_ms: int) -> list[RecordDelivery]:
        """Number one record and project it for every grant live at ``now_ms``."""
        seq = self._stream.assign(resource_code)
        return [
            RecordDelivery(
                subscriber=grant.subscriber,
                request_id=grant.request_id,
                resource_code=resource_code,
                seq=seq,
                fields=self._projection(grant).apply(record),
            )
            for grant in self.live_grants(resource_code, now_ms)
        ]

    # -- internals

    def _terms(self, resource_code: str) -> ResourceTerms:
        terms = self._resources(resource_code)
        if terms is None:
            raise UnknownResourceError(f"{self.provider} lists no resource {resource_code!r}")
        if terms.provider != self.provider or terms.code != resource_code:
            raise UsageError(f"the catalog lookup for {resource_code!r} returned another entry")
        return terms

    def _local(self, request_id: bytes) -> _Entry:
        entry = self._entries.get(request_id)
        if entry is None:
            raise UsageError(f"no request {request_id.hex()} at {self.provider}")
        return entry

    def _remote(self, request_id: bytes) -> _Entry:
        entry = self._entries.get(request_id)
        if entry is None:
            raise UnknownRequestError(f"no request {request_id.hex()} at {self.provider}")
        return entry

    def _timers(self) -> Iterable[tuple[bytes, int]]:
        for request_id, entry in self._entries.items():
            if entry.state is _S.PENDING and entry.deadline_ms is not None:
                yield request_id, entry.deadline_ms
            elif entry.state is _S.GRANTED and entry.grant and entry.grant.expires_ms is not None:
                yield request_id, entry.grant.expires_ms

    @staticmethod
    def _past_deadline(entry: _Entry, now_ms: int) -> bool:
        deadline = entry.deadline_ms
        return entry.state is _S.PENDING and deadline is not None and now_ms >= deadline

    def _before_deadline(self, entry: _Entry, now_ms: int) -> None:
        # The rules set a time limit: an answer at or after it is too late,
        # even if expire_due has not run yet.
        if self._past_deadline(entry, now_ms):
            raise InvalidTransitionError(
                f"request {entry.request.request_id.hex()} passed its deadline; run expire_due"
            )

    def _expire_if_due(self, entry: _Entry, now_ms: int) -> list[Outgoing]:
        deadline = entry.deadline_ms
        if deadline is None or not self._past_deadline(entry, now_ms):
            return []
        self._move(entry, Action.EXPIRE, self.provider, now_ms)
        entry.version += 1
        message = Expiry(
            request_id=entry.request.request_id,
            provider=self.provider,
            requester=entry.request.requester,
            resource_code=entry.terms.code,
            version=entry.version,
            at_ms=now_ms,
            deadline_ms=deadline,
        )
        return [Outgoing((entry.request.requester,), message)]

    def _new_grant(
        self,
        entry: _Entry,
        items: tuple[str, ...],
        masks: MaskSet,
        expires_ms: int | None,
        now_ms: int,
    ) -> Grant:
        grant = Grant(
            request_id=entry.request.request_id,
            resource_code=entry.terms.code,
            provider=self.provider,
            subscriber=entry.request.requester,
            version=entry.version + 1,
            items=items,
            masks=masks,
            granted_ms=now_ms,
            expires_ms=expires_ms,
            first_seq=self._stream.last(entry.terms.code) + 1,
        )
        self._projection(grant)  # masks must fit the granted items before anything is sent
        return grant

    def _projection(self, grant: Grant) -> Projection:
        key = grant_hash_key(self._secret, grant.request_id)
        return Projection(frozenset(grant.items), grant.masks, key)

    def _decision(self, entry: _Entry, now_ms: int, *, reason: str = "") -> Decision:
        entry.version += 1
        request = entry.request
        grant = entry.grant if entry.state is _S.GRANTED else None
        return Decision(
            request_id=request.request_id,
            provider=self.provider,
            requester=request.requester,
            resource_code=entry.terms.code,
            version=entry.version,
            at_ms=now_ms,
            status=entry.state,
            answer_by_ms=entry.deadline_ms if entry.state is _S.PENDING else None,
            reason=reason[:MAX_TEXT],
            items=grant.items if grant else (),
            masks=grant.masks if grant else MaskSet(),
            expires_ms=grant.expires_ms if grant else None,
            first_seq=grant.first_seq if grant else 0,
        )

    def _move(
        self,
        entry: _Entry,
        action: Action,
        actor: str,
        now_ms: int,
        error: type[ExchnodeError] = InvalidTransitionError,
    ) -> None:
        entry.state = _next_state(entry.state, action, entry.request.request_id, error)
        self._emit(entry, action, actor, now_ms)

    def _emit(self, entry: _Entry, action: Action, actor: str, now_ms: int) -> None:
        self._sink.emit(
            AuditEvent(
                at_ms=now_ms,
                actor=actor,
                action=action.value,
                resource_code=entry.terms.code,
                request_id=entry.request.request_id,
                outcome=entry.state.value,
                counterpart=entry.request.requester,
            )
        )


# --- the requester's view ------------------------------------------------------------


@dataclass(slots=True)
class _Held:
    request: SubscriptionRequest
    state: RequestState | None = None  # None: sent, not answered yet
    version: int = 0
    answer_by_ms: int | None = None
    grant: Grant | None = None
    last_seq: int | None = None  # set by a revocation: the grant's last record
    round: int = 0
    reason: str = ""
    history: list[RequestState] = field(default_factory=list)


class SubscriberView:
    """The requester's side: its requests, what the provider said, the grants it holds.

    The provider is the authority on its own decisions: statements apply in
    ``version`` order and older ones are ignored (``on_*`` then return False).
    The requester's own steps are sending, escalating and counting a silent
    provider's deadline out (:meth:`expire_due`), so a provider that never
    answers cannot keep a request from being escalated.
    """

    def __init__(self, requester: str, *, sink: EventSink, random: Callable[[int], bytes]) -> None:
        self.requester = check_name(requester, "requester")
        self._sink = sink
        self._random = random
        self._held: dict[bytes, _Held] = {}

    # -- queries

    def state(self, request_id: bytes) -> RequestState | None:
        return self._local(request_id).state

    def answer_by(self, request_id: bytes) -> int | None:
        return self._local(request_id).answer_by_ms

    def reason(self, request_id: bytes) -> str:
        return self._local(request_id).reason

    def held(self, now_ms: int) -> list[Grant]:
        """The grants this node holds and may receive records under at ``now_ms``."""
        return [
            held.grant
            for held in self._held.values()
            if held.state is _S.GRANTED and held.grant is not None and held.grant.live(now_ms)
        ]

    def covers(self, request_id: bytes, seq: int) -> bool:
        """True if record ``seq`` was sent under this request's grant (not before, not after)."""
        held = self._local(request_id)
        if held.grant is None or seq < held.grant.first_seq:
            return False
        return held.last_seq is None or seq <= held.last_seq

    # -- own steps

    def request(
        self,
        terms: ResourceTerms,
        *,
        purpose: str,
        scope: str,
        items: Iterable[str],
        operator: str,
        now_ms: int,
    ) -> list[Outgoing]:
        wanted = tuple(sorted(set(items)))
        unknown = _unknown_items(wanted, terms.items)
        if unknown:
            raise UsageError(f"data item {unknown[0]!r} is not an item of resource {terms.code}")
        request = SubscriptionRequest(
            request_id=self._random(REQUEST_ID_LENGTH),
            requester=self.requester,
            provider=terms.provider,
            resource_code=terms.code,
            purpose=purpose,
            scope=scope,
            items=wanted,
            at_ms=now_ms,
        )
        if request.request_id in self._held:
            raise UsageError("the random source repeated a request id")
        held = _Held(request)
        self._held[request.request_id] = held
        self._emit(held, Action.REQUEST.value, operator, now_ms)
        return [Outgoing((terms.provider,), request)]

    def escalate(
        self, request_id: bytes, *, operator: str, reason: str, now_ms: int
    ) -> list[Outgoing]:
        """Take a refused or expired request to the provider's sharing authority."""
        held = self._local(request_id)
        grounds = held.state
        if grounds not in (_S.REFUSED, _S.EXPIRED):
            state = "unanswered" if grounds is None else grounds.value
            raise InvalidTransitionError(f"request {request_id.hex()} is {state}: cannot escalate")
        following = _next_state(grounds, Action.ESCALATE, request_id, InvalidTransitionError)
        request = held.request
        escalation = Escalation(
            request_id=request_id,
            requester=self.requester,
            provider=request.provider,
            authority=sharing_authority(request.provider),
            resource_code=request.resource_code,
            round=held.round + 1,
            at_ms=now_ms,
            grounds=grounds,
            reason=reason,
        )
        held.state, held.round = following, escalation.round
        self._emit(held, Action.ESCALATE.value, operator, now_ms)
        return [Outgoing((escalation.authority, request.provider), escalation)]

    def expire_due(self, now_ms: int) -> list[bytes]:
        """Count out unanswered requests' deadlines and grants' expiries; the ids that changed.

        Neither needs a message from the provider: both times were in its
        signed statements already.
        """
        changed = []
        for request_id, held in sorted(self._held.items()):
            answer_by = held.answer_by_ms
            expires = held.grant.expires_ms if held.grant is not None else None
            if held.state is _S.PENDING and answer_by is not None and now_ms >= answer_by:
                action = Action.EXPIRE
            elif held.state is _S.GRANTED and expires is not None and now_ms >= expires:
                action = Action.LAPSE
            else:
                continue
            held.state = _next_state(held.state, action, request_id, InvalidTransitionError)
            self._emit(held, action.value, self.requester, now_ms)
            changed.append(request_id)
        return changed

    # -- the provider's and the authority's statements

    def on_decision(self, decision: Decision, *, sender: str, now_ms: int) -> bool:
        held = self._from_provider(decision.request_id, sender, decision)
        if decision.version <= held.version:
            return False
        if decision.status is _S.GRANTED:
            beyond = _unknown_items(decision.items, frozenset(held.request.items))
            if beyond:
                raise UnknownItemError(beyond[0], "was granted but never requested")
        held.version = decision.version
        held.state = decision.status
        held.answer_by_ms = decision.answer_by_ms
        held.reason = decision.reason
        if decision.status is _S.GRANTED:
            held.grant = decision.grant()
        self._emit(held, decision.KIND, sender, now_ms)
        return True

    def on_expiry(self, expiry: Expiry, *, sender: str, now_ms: int) -> bool:
        held = self._from_provider(expiry.request_id, sender, expiry)
        if expiry.version <= held.version:
            return False
        held.version = expiry.version
        if held.state in (None, _S.PENDING):
            held.state = _S.EXPIRED
        # Otherwise this node counted the deadline out itself and may have escalated already.
        self._emit(held, expiry.KIND, sender, now_ms)
        return True

    def on_revocation(self, revocation: Revocation, *, sender: str, now_ms: int) -> bool:
        held = self._from_provider(revocation.request_id, sender, revocation)
        if revocation.version <= held.version:
            return False
        held.version = revocation.version
        held.state = _S.REVOKED
        held.last_seq = revocation.last_seq
        held.reason = revocation.reason
        self._emit(held, revocation.KIND, sender, now_ms)
        return True

    def on_review(self, review: Review, *, sender: str, now_ms: int) -> bool:
        held = self._remote(review.request_id)
        authority = sharing_authority(held.request.provider)
        if sender != authority or review.authority != authority:
            raise NotAuthorisedError(f"{sender} is not the sharing authority {authority}")
        if review.round != held.round or held.state is not _S.ESCALATED:
            return False
        action = Action.UPHOLD if review.outcome is ReviewOutcome.UPHOLD else Action.RE_REVIEW
        held.state = _next_state(held.state, action, review.request_id, UnexpectedMessageError)
        held.answer_by_ms = None  # the provider's new pending decision carries the new deadline
        held.reason = review.reason
        self._emit(held, review.KIND, sender, now_ms)
        return True

    # -- internals

    def _local(self, request_id: bytes) -> _Held:
        held = self._held.get(request_id)
        if held is None:
            raise UsageError(f"{self.requester} sent no request {request_id.hex()}")
        return held

    def _remote(self, request_id: bytes) -> _Held:
        held = self._held.get(request_id)
        if held is None:
            raise UnknownRequestError(f"{self.requester} sent no request {request_id.hex()}")
        return held

    def _from_provider(
        self, request_id: bytes, sender: str, message: Decision | Expiry | Revocation
    ) -> _Held:
        held = self._remote(request_id)
        request = held.request
        addressee = message.subscriber if isinstance(message, Revocation) else message.requester
        if sender != request.provider or message.provider != request.provider:
            raise NotAuthorisedError(f"{sender} is not the provider of request {request_id.hex()}")
        if addressee != self.requester or message.resource_code != request.resource_code:
            raise UnexpectedMessageError(
                f"{message.KIND} does not match request {request_id.hex()}"
            )
        return held

    def _emit(self, held: _Held, action: str, actor: str, now_ms: int) -> None:
        outcome = "sent" if held.state is None else held.state.value
        if held.state is not None:
            held.history.append(held.state)
        self._sink.emit(
            AuditEvent(
                at_ms=now_ms,
                actor=actor,
                action=action,
                resource_code=held.request.resource_code,
                request_id=held.request.request_id,
                outcome=outcome,
                counterpart=held.request.provider,
            )
        )


# --- the sharing authority -----------------------------------------------------------


@dataclass(slots=True)
class _Case:
    escalation: Escalation
    state: RequestState = _S.ESCALATED


class AuthorityDesk:
    """The same-level sharing authority: hears escalations, directs re-review or upholds."""

    def __init__(self, authority: str, *, sink: EventSink) -> None:
        self.authority = check_name(authority, "authority")
        self._sink = sink
        self._cases: dict[bytes, _Case] = {}

    def open_cases(self) -> list[Escalation]:
        return [case.escalation for case in self._cases.values() if case.state is _S.ESCALATED]

    def on_escalation(self, escalation: Escalation, *, sender: str, now_ms: int) -> list[Outgoing]:
        if sender != escalation.requester:
            raise NotAuthorisedError(f"{sender} escalated in the name of {escalation.requester}")
        if escalation.authority != self.authority:
            raise NotAuthorisedError(
                f"escalation for {escalation.authority} sent to {self.authority}"
            )
        if sharing_authority(escalation.provider) != self.authority:
            raise NotAuthorisedError(
                f"{self.authority} is not the authority over {escalation.provider}"
            )
        held = self._cases.get(escalation.request_id)
        if held is not None and held.escalation.round >= escalation.round:
            return []
        case = _Case(escalation)
        self._cases[escalation.request_id] = case
        self._emit(case, Action.ESCALATE, escalation.requester, now_ms)
        return []

    def re_review(
        self, request_id: bytes, *, operator: str, reason: str, now_ms: int
    ) -> list[Outgoing]:
        """Direct the provider to decide again, with a fresh deadline."""
        return self._review(request_id, ReviewOutcome.RE_REVIEW, operator, reason, now_ms)

    def uphold(
        self, request_id: bytes, *, operator: str, reason: str, now_ms: int
    ) -> list[Outgoing]:
        return self._review(request_id, ReviewOutcome.UPHOLD, operator, reason, now_ms)

    def _review(
        self, request_id: bytes, outcome: ReviewOutcome, operator: str, reason: str, now_ms: int
    ) -> list[Outgoing]:
        case = self._cases.get(request_id)
        if case is None:
            raise UsageError(f"no escalation of request {request_id.hex()} at {self.authority}")
        action = Action.UPHOLD if outcome is ReviewOutcome.UPHOLD else Action.RE_REVIEW
        following = _next_state(case.state, action, request_id, InvalidTransitionError)
        escalation = case.escalation
        review = Review(
            request_id=request_id,
            authority=self.authority,
            requester=escalation.requester,
            provider=escalation.provider,
            resource_code=escalation.resource_code,
            round=escalation.round,
            at_ms=now_ms,
            outcome=outcome,
            reason=reason,
        )
        case.state = following
        self._emit(case, action, operator, now_ms)
        return [Outgoing((escalation.provider, escalation.requester), review)]

    def _emit(self, case: _Case, action: Action, actor: str, now_ms: int) -> None:
        escalation = case.escalation
        self._sink.emit(
            AuditEvent(
                at_ms=now_ms,
                actor=actor,
                action=action.value,
                resource_code=escalation.resource_code,
                request_id=escalation.request_id,
                outcome=case.state.value,
                counterpart=escalation.requester,
            )
        )
