"""Freshness: validity windows and the replay window (SPEC §8).

An envelope is acceptable between its ``created`` time (less a clock-skew
allowance) and its ``expires`` time, and its lifetime may not exceed a
policy maximum.  That bound is what makes replay detection cheap and total:
an id needs remembering only until its envelope expires, because after that
the envelope is refused as expired anyway.  So the window holds at most
(arrival rate × maximum lifetime) ids, and pruning is by expiry, oldest
first.

Ids are remembered per sender.  A hub sees every id it relays; keyed by id
alone, a hostile node could copy a genuine id into its own envelope, get it
recorded first and so have the genuine message refused as a replay.

Pure: ``now`` is an argument (seconds since 1970, float).  The node layer
persists what it records (the store's dedup table), so a restart does not
reopen the window.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from exchnode.errors import (
    ExpiredError,
    LifetimeTooLongError,
    NotYetValidError,
    ReplayError,
    UsageError,
)

__all__ = ["DEFAULT_FRESHNESS", "FreshnessPolicy", "ReplayWindow", "check_freshness"]


@dataclass(frozen=True, slots=True)
class FreshnessPolicy:
    """How much clock disagreement and how long a lifetime a node tolerates."""

    clock_skew: float = 300.0
    max_lifetime: float = 30 * 86400.0

    def __post_init__(self) -> None:
        if self.clock_skew < 0 or self.max_lifetime <= 0:
            raise UsageError("clock_skew must be >= 0 and max_lifetime > 0 (seconds)")


DEFAULT_FRESHNESS = FreshnessPolicy()


def check_freshness(
    created_ms: int, expires_ms: int, now: float, policy: FreshnessPolicy, what: str
) -> None:
    """Raise the typed error for an envelope outside its validity window."""
    now_ms = int(now * 1000)
    if expires_ms - created_ms > policy.max_lifetime * 1000:
        raise LifetimeTooLongError(
            f"{what} lifetime of {(expires_ms - created_ms) / 1000:.0f} s exceeds the "
            f"maximum of {policy.max_lifetime:.0f} s"
        )
    if now_ms >= expires_ms:
        raise ExpiredError(f"{what} expired {(now_ms - expires_ms) / 1000:.3f} s ago")
    if created_ms > now_ms + policy.clock_skew * 1000:
        raise NotYetValidError(
            f"{what} is created {(created_ms - now_ms) / 1000:.3f} s in the future, beyond "
            f"the allowed clock skew of {policy.clock_skew:.0f} s"
        )


class ReplayWindow:
    """Remembers (sender, message id) pairs until the envelopes carrying them expire."""

    __slots__ = ("_expiry_heap", "_seen", "policy")

    def __init__(self, policy: FreshnessPolicy | None = None) -> None:
        self.policy = policy or FreshnessPolicy()
        self._seen: dict[tuple[str, bytes], int] = {}
        self._expiry_heap: list[tuple[int, str, bytes]] = []

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, key: tuple[str, bytes]) -> bool:
        return key in self._seen

    def check(
        self, sender: str, message_id: bytes, created_ms: int, expires_ms: int, now: float
    ) -> None:
        """Raise if the envelope is stale, from the future or already seen."""
        check_freshness(created_ms, expires_ms, now, self.policy, "envelope")
        if (sender, message_id) in self._seen:
            raise ReplayError(f"message {message_id.hex()} from {sender} was already accepted")

    def record(self, sender: str, message_id: bytes, expires_ms: int, now: float) -> None:
        """Remember an accepted envelope; call only after it has been fully verified."""
        self.prune(now)
        key = (sender, message_id)
        if key not in self._seen:
            self._seen[key] = expires_ms
            heapq.heappush(self._expiry_heap, (expires_ms, sender, message_id))

    def check_and_record(
        self, sender: str, message_id: bytes, created_ms: int, expires_ms: int, now: float
    ) -> None:
        self.check(sender, message_id, created_ms, expires_ms, now)
        self.record(sender, message_id, expires_ms, now)

    def prune(self, now: float) -> int:
        """Forget ids whose envelopes have expired; returns how many were dropped."""
        now_ms = int(now * 1000)
        heap, seen, dropped = self._expiry_heap, self._seen, 0
        while heap and heap[0][0] <= now_ms:
            _, sender, message_id = heapq.heappop(heap)
            del seen[(sender, message_id)]
            dropped += 1
        return dropped
