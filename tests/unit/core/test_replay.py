"""Freshness windows and the replay window (SPEC §8)."""

from __future__ import annotations

import pytest

from exchnode import errors
from exchnode.core import FreshnessPolicy, ReplayWindow
from exchnode.core._replay import check_freshness
from tests.cast import NOW

MS = int(NOW * 1000)


def test_freshness_boundaries() -> None:
    policy = FreshnessPolicy(clock_skew=10, max_lifetime=100)
    check_freshness(MS, MS + 100_000, NOW, policy, "e")
    check_freshness(MS + 10_000, MS + 20_000, NOW, policy, "e")  # at the skew limit
    with pytest.raises(errors.NotYetValidError):
        check_freshness(MS + 10_001, MS + 20_000, NOW, policy, "e")
    with pytest.raises(errors.ExpiredError):
        check_freshness(MS - 5_000, MS, NOW, policy, "e")  # expiry is exclusive
    with pytest.raises(errors.LifetimeTooLongError):
        check_freshness(MS, MS + 100_001, NOW, policy, "e")


def test_policy_refuses_nonsense() -> None:
    with pytest.raises(errors.UsageError):
        FreshnessPolicy(clock_skew=-1)
    with pytest.raises(errors.UsageError):
        FreshnessPolicy(max_lifetime=0)


def test_replay_is_per_sender() -> None:
    window = ReplayWindow()
    window.check_and_record("520102.gongan", b"i" * 16, MS, MS + 60_000, NOW)
    with pytest.raises(errors.ReplayError):
        window.check("520102.gongan", b"i" * 16, MS, MS + 60_000, NOW)
    # The same id from another sender is another message: a copied id cannot block it.
    window.check_and_record("520103.gongan", b"i" * 16, MS, MS + 60_000, NOW)
    assert len(window) == 2


def test_ids_are_forgotten_only_once_their_envelopes_expire() -> None:
    window = ReplayWindow()
    window.record("520102.gongan", b"1" * 16, MS + 1_000, NOW)
    window.record("520102.gongan", b"2" * 16, MS + 5_000, NOW)
    assert window.prune(NOW + 0.5) == 0
    assert window.prune(NOW + 1) == 1
    assert ("520102.gongan", b"1" * 16) not in window
    assert ("520102.gongan", b"2" * 16) in window
    # A forgotten id is refused anyway, as expired: there is no gap to replay through.
    with pytest.raises(errors.ExpiredError):
        window.check("520102.gongan", b"1" * 16, MS, MS + 1_000, NOW + 1)
