"""Witnessing: a hub checks that each child's new tree head extends the last one (pure).

A node holds its own signing key, so it *can* rewrite its log and sign new
heads over the rewritten history.  What it cannot do is make those heads
consistent with heads it signed before (RFC 9162 §2.1.4): a consistency proof
from the old head to the new one would need a SHA-256 collision.  So each
hub keeps the last head of each child, fetches the next one with a
consistency proof from the old size, and calls :func:`check_witness`; the
verdict is itself audited in the hub's log (:func:`witness_entry`), so a
rewrite is caught by the parent and the catch is on the record.

Both heads must already be verified (``audit_log.TreeHeadVerifier``): a head
whose signature fails is refused with its own code before witnessing.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from exchnode.audit._log import TreeHead
from exchnode.audit._records import (
    Actor,
    AuditEntry,
    Category,
    Outcome,
    Subject,
    SubjectKind,
    details,
)
from exchnode.core import verify_consistency

__all__ = ["WitnessReason", "WitnessResult", "check_witness", "witness_entry"]


class WitnessReason(enum.Enum):
    CONSISTENT = "consistent"  # the new head extends the previous one
    FIRST = "first-head"  # no previous head to compare with: accepted as the baseline
    OTHER_NODE = "other-node"  # the two heads are not of the same node
    SHRUNK = "shrunk"  # the new head covers fewer records: truncated
    TIME_WENT_BACK = "time-went-back"  # a later head with an earlier timestamp
    FORK = "fork"  # same size, different root: two histories signed
    INCONSISTENT = "inconsistent"  # the consistency proof fails: history rewritten


@dataclass(frozen=True, slots=True)
class WitnessResult:
    reason: WitnessReason
    node: str
    previous_size: int
    tree_size: int
    root: bytes

    @property
    def ok(self) -> bool:
        return self.reason in (WitnessReason.CONSISTENT, WitnessReason.FIRST)


def check_witness(
    previous: TreeHead | None, new: TreeHead, consistency_proof: Sequence[bytes]
) -> WitnessResult:
    """Is ``new`` an honest extension of ``previous``?  Never raises on hostile input."""

    def result(reason: WitnessReason) -> WitnessResult:
        size = previous.tree_size if previous is not None else 0
        return WitnessResult(reason, new.node, size, new.tree_size, new.root)

    if previous is None:
        return result(WitnessReason.FIRST)
    if previous.node != new.node:
        return result(WitnessReason.OTHER_NODE)
    if new.tree_size < previous.tree_size:
        return result(WitnessReason.SHRUNK)
    if new.timestamp_ms < previous.timestamp_ms:
        return result(WitnessReason.TIME_WENT_BACK)
    if new.tree_size == previous.tree_size and new.root != previous.root:
        return result(WitnessReason.FORK)
    if not verify_consistency(
        previous.tree_size, new.tree_size, previous.root, new.root, consistency_proof
    ):
        return result(WitnessReason.INCONSISTENT)
    return result(WitnessReason.CONSISTENT)


def witness_entry(hub: str, result: WitnessResult, now_ms: int) -> AuditEntry:
    """The record a hub appends to its own log for one witnessing (category ``witness``)."""
    return AuditEntry(
        time_ms=now_ms,
        category=Category.WITNESS,
        action="witness",
        actor=Actor.node(hub),
        subject=Subject(SubjectKind.NODE, result.node),
        outcome=(
            Outcome.ok(result.reason.value) if result.ok else Outcome.refused(result.reason.value)
        ),
        detail=details(
            previous_size=result.previous_size, tree_size=result.tree_size, root=result.root
        ),
    )
