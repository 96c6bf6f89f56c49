"""Retry timing for unreachable peers: capped exponential backoff with full jitter (pure).

Theory of operation
-------------------
After the n-th consecutive failure to reach a peer, the next attempt waits a
delay drawn uniformly from ``[0, min(cap, base · 2^(n-1))]`` ("full jitter").
Exponential growth keeps a dead peer from costing anything; the cap bounds
how stale a recovered peer's queue can get; the jitter spreads the retries
of the many children of a hub that went down together, so that they do not
all come back in the same millisecond.

Waiting out a backoff is wrong once the peer is known to be back: federations
that do (Matrix) do not catch up until new traffic arrives.  So
:func:`came_back` -- called when the peer reaches *us*, or an operator says
so -- makes the next attempt due at once, keeping the failure count, so that
if that attempt fails too, the backoff resumes where it was instead of
hammering from the bottom.  Only a success (:func:`succeeded`) resets it.

The state is a :class:`PeerState`, persisted by the store
(``set_peer_state``) so that a restarted node neither forgets a dead peer's
backoff nor hammers it.  Pure: time (``now_ms``) and randomness
(``random(n) -> n bytes``, as elsewhere in exchnode) are arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from exchnode.errors import UsageError

__all__ = [
    "DEFAULT_BACKOFF",
    "BackoffPolicy",
    "PeerState",
    "came_back",
    "due",
    "failed",
    "succeeded",
]

_MAX_SHIFT = 62  # 2^62 ms is beyond any cap; avoids building huge integers


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerState:
    """Persisted retry state of one peer (the policy is :class:`BackoffPolicy`; the store keeps it).

    ``next_attempt_ms`` 0 means "now"; ``last_ok_ms`` None means "never".
    """

    failures: int = 0
    next_attempt_ms: int = 0
    last_ok_ms: int | None = None

    def __post_init__(self) -> None:
        _check_count(self.failures, "failures")
        _check_count(self.next_attempt_ms, "next_attempt_ms")
        if self.last_ok_ms is not None:
            _check_count(self.last_ok_ms, "last_ok_ms")


def _check_count(value: object, what: str) -> None:
    if type(value) is not int or value < 0:
        raise UsageError(f"{what} must be a non-negative integer, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class BackoffPolicy:
    """Delays in ms: the first retry waits up to ``base_ms``, none more than ``cap_ms``."""

    base_ms: int = 500
    cap_ms: int = 60_000

    def __post_init__(self) -> None:
        if not (isinstance(self.base_ms, int) and isinstance(self.cap_ms, int)):
            raise UsageError("base_ms and cap_ms must be integers (milliseconds)")
        if not 0 < self.base_ms <= self.cap_ms:
            raise UsageError(f"need 0 < base_ms <= cap_ms, got {self.base_ms}, {self.cap_ms}")

    def ceiling_ms(self, failures: int) -> int:
        """The largest delay after ``failures`` consecutive failures (0 after none)."""
        if failures <= 0:
            return 0
        return min(self.cap_ms, self.base_ms << min(failures - 1, _MAX_SHIFT))

    def delay_ms(self, failures: int, random: Callable[[int], bytes]) -> int:
        """A delay drawn uniformly from ``[0, ceiling_ms(failures)]``."""
        ceiling = self.ceiling_ms(failures)
        # 64 random bits scaled onto 0..ceiling: each value's odds are off by < 2^-30.
        return (int.from_bytes(random(8), "big") * (ceiling + 1)) >> 64


DEFAULT_BACKOFF = BackoffPolicy()


def failed(
    state: PeerState,
    now_ms: int,
    random: Callable[[int], bytes],
    policy: BackoffPolicy = DEFAULT_BACKOFF,
) -> PeerState:
    """An attempt failed at ``now_ms``: count it and schedule the next one."""
    failures = state.failures + 1
    return replace(
        state, failures=failures, next_attempt_ms=now_ms + policy.delay_ms(failures, random)
    )


def succeeded(state: PeerState, now_ms: int) -> PeerState:
    """The peer took a batch (or answered): no backoff, due at any time."""
    return PeerState(failures=0, next_attempt_ms=0, last_ok_ms=now_ms)


def came_back(state: PeerState, now_ms: int) -> PeerState:
    """The peer is evidently up (it reached us): attempt now, keep the failure count."""
    return replace(state, next_attempt_ms=min(state.next_attempt_ms, now_ms))


def due(state: PeerState, now_ms: int) -> bool:
    """Whether an attempt may be made at ``now_ms``."""
    return now_ms >= state.next_attempt_ms
