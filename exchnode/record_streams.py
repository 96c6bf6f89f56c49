"""Record sequence numbers: the provider's counter per resource, the gap tracker (pure).

The provider numbers the records of each resource 1, 2, 3, ... (one number
per publication, the same for every subscriber, draft §19.6); a subscriber
tracks per grant which numbers arrived, to find what it missed while down.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from exchnode.errors import UsageError
from exchnode.masking import Value

__all__ = ["GapTracker", "RecordDelivery", "RecordStream", "Seen"]


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
