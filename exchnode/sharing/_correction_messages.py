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
from typing import ClassVar

from exchnode.sharing._codecs import (
    CODE,
    COUNTER,
    ID,
    NAME,
    TIME,
    Message,
    enum_codec,
    items_codec,
    set_codecs,
    text_codec,
)

__all__ = ["Correction", "CorrectionAnswer", "CorrectionOutcome"]


class CorrectionOutcome(enum.Enum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"


_TEXT = text_codec(2048, empty=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Correction(Message):
    """``sub.correction``, subscriber → provider: record ``seq`` looks wrong in these items."""

    KIND: ClassVar[str] = "sub.correction"
    correction_id: bytes
    subscriber: str
    provider: str
    resource_code: str
    seq: int
    items: tuple[str, ...]
    text: str
    at_ms: int

    def _inconsistency(self) -> str | None:
        return None if self.seq >= 1 else "seq starts at 1"


set_codecs(
    Correction,
    correction_id=ID,
    subscriber=NAME,
    provider=NAME,
    resource_code=CODE,
    seq=COUNTER,
    items=items_codec(empty=False),
    text=_TEXT,
    at_ms=TIME,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class CorrectionAnswer(Message):
    """``sub.correction-answer``, provider → subscriber: accepted or rejected, and why."""

    KIND: ClassVar[str] = "sub.correction-answer"
    correction_id: bytes
    provider: str
    subscriber: str
    resource_code: str
    at_ms: int
    outcome: CorrectionOutcome
    text: str


set_codecs(
    CorrectionAnswer,
    correction_id=ID,
    provider=NAME,
    subscriber=NAME,
    resource_code=CODE,
    at_ms=TIME,
    outcome=enum_codec(CorrectionOutcome, CorrectionOutcome),
    text=_TEXT,
)
