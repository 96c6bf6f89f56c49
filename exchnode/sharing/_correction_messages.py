"""Correction feedback (校核) on the wire: ``sub.correction`` and ``sub.correction-answer`` (pure).

"One source per datum": a subscriber that finds an error in a record reports
it back to the provider, who answers for its data.  The report names the
record by resource code and sequence number and the data items in doubt;
the answer accepts or rejects it, with a text.  Both are unicast between the
two parties, signed and encrypted end to end like every ``sub.*`` message.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Annotated, ClassVar

from exchnode.sharing._codecs import (
    Code,
    Counter,
    Message,
    Name,
    RequestId,
    RequiredText,
    SomeItems,
    Time,
    enum_codec,
    wire_message,
)

__all__ = ["Correction", "CorrectionAnswer", "CorrectionOutcome"]


class CorrectionOutcome(enum.Enum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"


_OUTCOME = enum_codec(CorrectionOutcome, CorrectionOutcome)


@wire_message
@dataclass(frozen=True, slots=True, kw_only=True)
class Correction(Message):
    """``sub.correction``, subscriber → provider: record ``seq`` looks wrong in these items."""

    KIND: ClassVar[str] = "sub.correction"
    correction_id: RequestId
    subscriber: Name
    provider: Name
    resource_code: Code
    seq: Counter
    items: SomeItems
    text: RequiredText
    at_ms: Time

    def _inconsistency(self) -> str | None:
        return None if self.seq >= 1 else "seq starts at 1"


@wire_message
@dataclass(frozen=True, slots=True, kw_only=True)
class CorrectionAnswer(Message):
    """``sub.correction-answer``, provider → subscriber: accepted or rejected, and why."""

    KIND: ClassVar[str] = "sub.correction-answer"
    correction_id: RequestId
    provider: Name
    subscriber: Name
    resource_code: Code
    at_ms: Time
    outcome: Annotated[CorrectionOutcome, _OUTCOME]
    text: RequiredText
