"""Retry timing: exponential growth, the cap, full jitter, success and "came back"."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchnode.errors import UsageError
from exchnode.federation import DEFAULT_BACKOFF, BackoffPolicy, came_back, due, failed, succeeded
from exchnode.store import PeerState
from exchnode.testing import SeededRandom

NOW = 1_795_000_000_000
POLICY = BackoffPolicy(base_ms=100, cap_ms=10_000)


def fixed(value: int) -> SeededRandom:
    """'Randomness' that always returns the same 8 bytes (0 = lowest, 2^64-1 = highest)."""

    class Fixed(SeededRandom):
        def __call__(self, size: int) -> bytes:
            return value.to_bytes(size, "big")

    return Fixed(b"")


LOWEST, HIGHEST = fixed(0), fixed((1 << 64) - 1)


def test_ceiling_doubles_from_base_up_to_the_cap() -> None:
    assert [POLICY.ceiling_ms(n) for n in range(9)] == [
        0,
        100,
        200,
        400,
        800,
        1600,
        3200,
        6400,
        10_000,
    ]
    assert POLICY.ceiling_ms(10_000) == 10_000  # no huge integers, no overflow


def test_full_jitter_spans_zero_to_the_ceiling() -> None:
    assert POLICY.delay_ms(3, LOWEST) == 0
    assert POLICY.delay_ms(3, HIGHEST) == 400
    random = SeededRandom("jitter")
    delays = [POLICY.delay_ms(4, random) for _ in range(2000)]
    assert min(delays) >= 0
    assert max(delays) <= 800
    assert len(set(delays)) > 500  # spread out, not a few fixed values


def test_jitter_is_reproducible_from_the_injected_randomness() -> None:
    first, second = SeededRandom("x"), SeededRandom("x")
    one = [POLICY.delay_ms(5, first) for _ in range(10)]
    two = [POLICY.delay_ms(5, second) for _ in range(10)]
    assert one == two
    assert len(set(one)) > 1


@given(failures=st.integers(0, 200), word=st.integers(0, (1 << 64) - 1))
def test_delay_is_always_within_zero_and_the_ceiling(failures: int, word: int) -> None:
    delay = DEFAULT_BACKOFF.delay_ms(failures, fixed(word))
    assert 0 <= delay <= DEFAULT_BACKOFF.ceiling_ms(failures) <= DEFAULT_BACKOFF.cap_ms


def test_failures_push_the_next_attempt_out() -> None:
    state = PeerState(last_ok_ms=NOW - 1)
    state = failed(state, NOW, HIGHEST, POLICY)
    assert state == PeerState(failures=1, next_attempt_ms=NOW + 100, last_ok_ms=NOW - 1)
    assert not due(state, NOW + 99)
    assert due(state, NOW + 100)
    state = failed(state, NOW + 100, HIGHEST, POLICY)
    assert (state.failures, state.next_attempt_ms) == (2, NOW + 300)


def test_success_resets_everything() -> None:
    state = PeerState(failures=7, next_attempt_ms=NOW + 9000)
    assert succeeded(state, NOW) == PeerState(failures=0, next_attempt_ms=0, last_ok_ms=NOW)
    assert due(succeeded(state, NOW), NOW)


def test_a_peer_that_came_back_is_served_at_once() -> None:
    """Not after its backoff runs out; and if it fails again, the backoff resumes."""
    state = PeerState(failures=6, next_attempt_ms=NOW + 60_000)
    back = came_back(state, NOW)
    assert due(back, NOW)
    assert back.failures == 6
    again = failed(back, NOW, HIGHEST, POLICY)
    assert again.failures == 7
    assert again.next_attempt_ms == NOW + 6400
    # A peer already due stays due at its own time (came_back never delays).
    assert came_back(PeerState(next_attempt_ms=NOW - 5), NOW).next_attempt_ms == NOW - 5


@pytest.mark.parametrize(("base", "cap"), [(0, 10), (10, 5), (-1, 10)])
def test_policy_must_be_sane(base: int, cap: int) -> None:
    with pytest.raises(UsageError):
        BackoffPolicy(base_ms=base, cap_ms=cap)
