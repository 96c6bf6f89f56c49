"""The ``sub.*`` messages of the subscription life cycle, and what a node sends (pure).

The six life-cycle messages (:class:`SubscriptionRequest`, :class:`Decision`,
:class:`Revocation`, :class:`Expiry`, :class:`Escalation`, :class:`Review`)
are frozen values with one canonical encoding each (protocol draft §19.3).
They travel as node messages of kinds ``sub.*`` inside signed, end-to-end
encrypted envelopes.  :func:`decode_message` also decodes the record,
resend and correction messages (``record_messages``, ``correction_messages``),
so a node dispatches every ``sub.*`` kind through one function.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, ClassVar

from exchnode.errors import UsageError
from exchnode.sharing._codecs import (
    DECISION_STATUS,
    GROUNDS,
    OUTCOME,
    Code,
    Counter,
    Items,
    Masks,
    Message,
    Name,
    OptionalTime,
    RequestId,
    RequiredText,
    SomeItems,
    Text,
    Time,
    wire_message,
)
from exchnode.sharing._correction_messages import Correction, CorrectionAnswer
from exchnode.sharing._masking import MaskSet
from exchnode.sharing._record_messages import RecordBatch, RecordGap, Resend, terms_fingerprint
from exchnode.sharing._states import RequestState, ReviewOutcome

__all__ = [
    "KINDS",
    "LIFECYCLE_KINDS",
    "Decision",
    "Escalation",
    "Expiry",
    "Grant",
    "Outgoing",
    "Review",
    "Revocation",
    "SubMessage",
    "SubscriptionRequest",
    "decode_message",
]

_S = RequestState


@wire_message
@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriptionRequest(Message):
    """``sub.request``, requester → provider: what is asked for, why and for what scope."""

    KIND: ClassVar[str] = "sub.request"
    request_id: RequestId
    requester: Name
    provider: Name
    resource_code: Code
    purpose: RequiredText
    scope: RequiredText
    items: SomeItems
    at_ms: Time


@wire_message
@dataclass(frozen=True, slots=True, kw_only=True)
class Decision(Message):
    """``sub.decision``, provider → requester: pending (with its deadline), granted, refused.

    A grant's terms (items, masks, expiry, first record) are set only when
    ``status`` is granted; ``reason`` is required for a refusal and holds the
    catalog's legal basis for a not-shared one.
    """

    KIND: ClassVar[str] = "sub.decision"
    request_id: RequestId
    provider: Name
    requester: Name
    resource_code: Code
    version: Counter
    at_ms: Time
    status: Annotated[RequestState, DECISION_STATUS]
    answer_by_ms: OptionalTime = None
    reason: Text = ""
    items: Items = ()
    masks: Masks = field(default_factory=MaskSet)
    expires_ms: OptionalTime = None
    first_seq: Counter = 0

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


@wire_message
@dataclass(frozen=True, slots=True, kw_only=True)
class Revocation(Message):
    """``sub.revoke``, provider → subscriber: no record after ``last_seq`` is for this grant."""

    KIND: ClassVar[str] = "sub.revoke"
    request_id: RequestId
    provider: Name
    subscriber: Name
    resource_code: Code
    version: Counter
    at_ms: Time
    reason: RequiredText
    last_seq: Counter


@wire_message
@dataclass(frozen=True, slots=True, kw_only=True)
class Expiry(Message):
    """``sub.expired``, provider → requester: the deadline passed unanswered."""

    KIND: ClassVar[str] = "sub.expired"
    request_id: RequestId
    provider: Name
    requester: Name
    resource_code: Code
    version: Counter
    at_ms: Time
    deadline_ms: Time


@wire_message
@dataclass(frozen=True, slots=True, kw_only=True)
class Escalation(Message):
    """``sub.escalate``, requester → authority and provider: dispute round ``round`` (1, 2, …)."""

    KIND: ClassVar[str] = "sub.escalate"
    request_id: RequestId
    requester: Name
    provider: Name
    authority: Name
    resource_code: Code
    round: Counter
    at_ms: Time
    grounds: Annotated[RequestState, GROUNDS]
    reason: RequiredText

    def _inconsistency(self) -> str | None:
        return None if self.round >= 1 else "round starts at 1"


@wire_message
@dataclass(frozen=True, slots=True, kw_only=True)
class Review(Message):
    """``sub.review``, authority → provider and requester: re-review or uphold."""

    KIND: ClassVar[str] = "sub.review"
    request_id: RequestId
    authority: Name
    requester: Name
    provider: Name
    resource_code: Code
    round: Counter
    at_ms: Time
    outcome: Annotated[ReviewOutcome, OUTCOME]
    reason: Text

    def _inconsistency(self) -> str | None:
        return None if self.round >= 1 else "round starts at 1"


LifecycleMessage = SubscriptionRequest | Decision | Revocation | Expiry | Escalation | Review
SubMessage = LifecycleMessage | RecordBatch | Resend | RecordGap | Correction | CorrectionAnswer
_LIFECYCLE: tuple[type[LifecycleMessage], ...] = (
    SubscriptionRequest,
    Decision,
    Revocation,
    Expiry,
    Escalation,
    Review,
)
_BY_KIND: Mapping[str, type[SubMessage]] = {
    cls.KIND: cls
    for cls in (*_LIFECYCLE, RecordBatch, Resend, RecordGap, Correction, CorrectionAnswer)
}
LIFECYCLE_KINDS = frozenset(cls.KIND for cls in _LIFECYCLE)
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

    @property
    def fingerprint(self) -> bytes:
        """The grant's terms (items and masks) as ``sub.records`` names them: no party in it."""
        return terms_fingerprint(self.items, self.masks)
