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
from typing import ClassVar

from exchnode.errors import UsageError
from exchnode.sharing._codecs import (
    CODE,
    COUNTER,
    DECISION_STATUS,
    GROUNDS,
    ID,
    MASKS,
    NAME,
    OPTIONAL_TIME,
    OUTCOME,
    REQUIRED_TEXT,
    TEXT,
    TIME,
    Message,
    items_codec,
    set_codecs,
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


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriptionRequest(Message):
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


set_codecs(
    SubscriptionRequest,
    request_id=ID,
    requester=NAME,
    provider=NAME,
    resource_code=CODE,
    purpose=REQUIRED_TEXT,
    scope=REQUIRED_TEXT,
    items=items_codec(empty=False),
    at_ms=TIME,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision(Message):
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


set_codecs(
    Decision,
    request_id=ID,
    provider=NAME,
    requester=NAME,
    resource_code=CODE,
    version=COUNTER,
    at_ms=TIME,
    status=DECISION_STATUS,
    answer_by_ms=OPTIONAL_TIME,
    reason=TEXT,
    items=items_codec(empty=True),
    masks=MASKS,
    expires_ms=OPTIONAL_TIME,
    first_seq=COUNTER,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Revocation(Message):
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


set_codecs(
    Revocation,
    request_id=ID,
    provider=NAME,
    subscriber=NAME,
    resource_code=CODE,
    version=COUNTER,
    at_ms=TIME,
    reason=REQUIRED_TEXT,
    last_seq=COUNTER,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Expiry(Message):
    """``sub.expired``, provider → requester: the deadline passed unanswered."""

    KIND: ClassVar[str] = "sub.expired"
    request_id: bytes
    provider: str
    requester: str
    resource_code: str
    version: int
    at_ms: int
    deadline_ms: int


set_codecs(
    Expiry,
    request_id=ID,
    provider=NAME,
    requester=NAME,
    resource_code=CODE,
    version=COUNTER,
    at_ms=TIME,
    deadline_ms=TIME,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Escalation(Message):
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


set_codecs(
    Escalation,
    request_id=ID,
    requester=NAME,
    provider=NAME,
    authority=NAME,
    resource_code=CODE,
    round=COUNTER,
    at_ms=TIME,
    grounds=GROUNDS,
    reason=REQUIRED_TEXT,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Review(Message):
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


set_codecs(
    Review,
    request_id=ID,
    authority=NAME,
    requester=NAME,
    provider=NAME,
    resource_code=CODE,
    round=COUNTER,
    at_ms=TIME,
    outcome=OUTCOME,
    reason=TEXT,
)


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
