"""A settled ``MerkleLog`` (issue 13): the frontier in memory, every other hash read on demand.

The reader here is a dict filled, as the audit store is, with exactly what
``completed(index)`` names at each append (plus the leaves): a settled log
must give every root and proof a log holding everything gives, and hold no
more than its frontier and what was appended since.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchnode.core import MerkleLog, completed_count, leaf_hash


def leaves(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


class Stored:
    """What a store keeps of a log: each leaf, and the subtrees each append completed."""

    def __init__(self) -> None:
        self.hashes: dict[tuple[int, int], bytes] = {}
        self.reads = 0

    def keep(self, log: MerkleLog, index: int, leaf: bytes) -> None:
        self.hashes[(0, index)] = leaf
        for level, node in enumerate(log.completed(index), start=1):
            self.hashes[(level, ((index + 1) >> level) - 1)] = node

    def append(self, log: MerkleLog, appended: list[bytes]) -> None:
        """Append each leaf to ``log``, keeping what it completed."""
        for leaf in appended:
            self.keep(log, log.append(leaf), leaf)

    def read(self, level: int, index: int) -> bytes:
        self.reads += 1
        try:
            return self.hashes[(level, index)]
        except KeyError:
            raise LookupError(f"no subtree ({level}, {index})") from None


def held(log: MerkleLog) -> int:
    """How many hashes the log holds in memory (its levels' lists)."""
    return sum(len(level) for level in log._levels)


def test_completed_names_the_subtrees_whose_last_leaf_it_is() -> None:
    log, all_leaves = MerkleLog(), leaves(16)
    for index, leaf in enumerate(all_leaves):
        log.append(leaf)
        done = log.completed(index)
        assert len(done) == completed_count(index) == (index ^ (index + 1)).bit_length() - 1
        for level, node in enumerate(done, start=1):
            subtree = MerkleLog()  # the subtree of 2**level leaves ending at ``index``, alone
            subtree.extend(all_leaves[index + 1 - (1 << level) : index + 1])
            assert node == subtree.root()
    assert log.completed(15)[-1] == log.root(16)
    assert log.completed(14) == []
    with pytest.raises(IndexError):
        log.completed(16)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 300), st.lists(st.integers(1, 40), min_size=1, max_size=12))
def test_a_settled_log_proves_everything_a_full_log_proves(n: int, batches: list[int]) -> None:
    full, stored = MerkleLog(), Stored()
    settled = MerkleLog(stored.read)
    appended = 0
    for batch in batches:
        for leaf in leaves(n)[appended : appended + batch]:
            full.append(leaf)
            index = settled.append(leaf)
            stored.keep(settled, index, leaf)
        appended = settled.size
        settled.settle()
        assert held(settled) <= settled.size.bit_length()  # the frontier, nothing else
    size = settled.size
    for m in range(size + 1):
        assert settled.root(m) == full.root(m)
        assert settled.consistency_proof(m) == full.consistency_proof(m)
        if m:
            assert settled.frontier(m) == full.frontier(m)
    for index in range(size):
        assert settled.inclusion_proof(index) == full.inclusion_proof(index)
        assert settled.leaf(index) == full.leaf(index)


def test_a_settled_log_reads_log_n_hashes_per_proof() -> None:
    stored = Stored()
    log = MerkleLog(stored.read)
    stored.append(log, leaves(1000))
    log.settle()
    stored.reads = 0
    log.root()
    assert stored.reads == 0  # the root of the whole log is its frontier's
    log.consistency_proof(377)
    log.inclusion_proof(377)
    assert 0 < stored.reads <= 4 * 10  # O(log n) lookups, not O(n)


def test_appends_after_settling_continue_exactly() -> None:
    stored = Stored()
    log, full = MerkleLog(stored.read), MerkleLog()
    for index, leaf in enumerate(leaves(77)):
        log.append(leaf)
        full.append(leaf)
        stored.keep(log, index, leaf)
        if index % 5 == 0:
            log.settle()
            assert log.settled_size == index + 1
        assert log.root() == full.root()


def test_truncate_stops_at_what_was_settled() -> None:
    stored = Stored()
    log = MerkleLog(stored.read)
    stored.append(log, leaves(10))
    log.settle()
    root = log.root()
    log.extend(leaves(13)[10:])
    log.truncate(10)
    assert log.root() == root
    with pytest.raises(ValueError, match="settled"):
        log.truncate(9)


def test_without_a_reader_settled_hashes_are_gone() -> None:
    log = MerkleLog()
    log.extend(leaves(9))
    root = log.root()
    log.settle()
    assert log.root() == root  # the frontier stays
    with pytest.raises(LookupError):
        log.root(5)
    with pytest.raises(LookupError):
        log.inclusion_proof(0)


def test_a_restored_frontier_with_a_reader_reads_the_rest() -> None:
    stored, full = Stored(), MerkleLog()
    stored.append(full, leaves(21))
    log = MerkleLog.from_frontier(21, full.frontier(), reader=stored.read)
    assert log.pruned_below == 0
    assert log.inclusion_proof(3, 17) == full.inclusion_proof(3, 17)
    assert log.consistency_proof(6) == full.consistency_proof(6)
    log.append(leaves(22)[21])
    full.append(leaves(22)[21])
    assert log.root() == full.root()
