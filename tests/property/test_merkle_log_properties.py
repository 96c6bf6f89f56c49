"""MerkleLog against a naive RFC 9162 reference, for any sizes, and after pruning."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from exchnode.core import (
    MerkleLog,
    leaf_hash,
    root_from_frontier,
    verify_consistency,
    verify_inclusion,
)
from tests.rfc9162 import mth, path, subproof

common = settings(max_examples=120, deadline=None)


sizes = st.integers(min_value=1, max_value=70)


def leaves_of(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


@common
@given(sizes, st.data())
def test_roots_and_proofs_equal_the_reference(n: int, data: st.DataObject) -> None:
    leaves = leaves_of(n)
    log = MerkleLog()
    log.extend(leaves)
    m = data.draw(st.integers(min_value=1, max_value=n))
    i = data.draw(st.integers(min_value=0, max_value=m - 1))
    old = data.draw(st.integers(min_value=1, max_value=m))
    assert log.root(m) == mth(leaves[:m])
    proof = log.inclusion_proof(i, m)
    assert proof == path(i, leaves[:m])
    assert verify_inclusion(leaves[i], i, m, proof, log.root(m))
    consistency = log.consistency_proof(old, m)
    assert consistency == ([] if old == m else subproof(old, leaves[:m], True))
    assert verify_consistency(old, m, log.root(old), log.root(m), consistency)
    assert root_from_frontier(m, log.frontier(m)) == log.root(m)


@common
@given(sizes, st.data())
def test_a_wrong_proof_never_verifies(n: int, data: st.DataObject) -> None:
    leaves = leaves_of(n + 1)
    log = MerkleLog()
    log.extend(leaves)
    m = n + 1
    old = data.draw(st.integers(min_value=1, max_value=n))
    proof = log.consistency_proof(old, m)
    flip = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
    broken = list(proof)
    broken[flip] = leaf_hash(broken[flip])
    assert not verify_consistency(old, m, log.root(old), log.root(m), broken)
    other = leaf_hash(b"other")
    assert not verify_consistency(old, m, other, log.root(m), proof)
    i = data.draw(st.integers(min_value=0, max_value=n))
    assert not verify_inclusion(other, i, m, log.inclusion_proof(i, m), log.root(m))


@common
@given(st.integers(min_value=1, max_value=60), st.integers(min_value=0, max_value=30))
def test_a_pruned_log_answers_everything_from_the_checkpoint_on(n: int, extra: int) -> None:
    leaves = leaves_of(n + extra)
    full = MerkleLog()
    full.extend(leaves)
    pruned = MerkleLog.from_frontier(n, full.frontier(n))
    pruned.extend(leaves[n:])
    for m in range(n, n + extra + 1):
        assert pruned.root(m) == full.root(m)
        assert pruned.consistency_proof(n, m) == full.consistency_proof(n, m)
    for i in range(n, n + extra):
        assert pruned.inclusion_proof(i, n + extra) == full.inclusion_proof(i, n + extra)
