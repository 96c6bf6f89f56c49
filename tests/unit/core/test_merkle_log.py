"""The incremental log (``MerkleLog``): RFC 9162 proofs, checked against the CT test vectors.

The vectors are the standard 8-leaf tree of Certificate Transparency's Go
implementation: leaf inputs, roots for every size, inclusion and consistency
proofs from ``google/certificate-transparency-go`` ``merkletree/merkle_verifier_test.go``
(the same values as ``transparency-dev/merkle`` ``testonly/constants.go``).
"""

from __future__ import annotations

import pytest

from exchnode.core import (
    EMPTY_ROOT,
    MerkleLog,
    leaf_hash,
    root_from_frontier,
    verify_consistency,
    verify_inclusion,
)
from exchnode.core._merkle import frontier_length

h = bytes.fromhex

INPUTS = [
    h(""),
    h("00"),
    h("10"),
    h("2021"),
    h("3031"),
    h("40414243"),
    h("5051525354555657"),
    h("606162636465666768696a6b6c6d6e6f"),
]
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# (leaf index, tree size, proof), 0-based indexes.
INCLUSION = [
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
# (old size, new size, proof)
CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]


def vector_log() -> MerkleLog:
    log = MerkleLog()
    log.extend([leaf_hash(data) for data in INPUTS])
    return log


def test_ct_roots_for_every_size() -> None:
    log = vector_log()
    assert h(ROOTS[0]) == EMPTY_ROOT
    for size, root in enumerate(ROOTS):
        assert log.root(size) == h(root), size
    grown = MerkleLog()
    assert grown.root() == EMPTY_ROOT
    for size, data in enumerate(INPUTS, start=1):
        grown.append(leaf_hash(data))
        assert grown.root() == h(ROOTS[size])


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_ct_inclusion_vectors(index: int, size: int, proof: list[str]) -> None:
    log = vector_log()
    expected = [h(p) for p in proof]
    assert log.inclusion_proof(index, size) == expected
    leaf = leaf_hash(INPUTS[index])
    root = h(ROOTS[size])
    assert verify_inclusion(leaf, index, size, expected, root)
    # The CT verifier's negative checks: wrong index, size, leaf, root, path.
    assert not verify_inclusion(leaf, index ^ 1, size, expected, root)
    assert not verify_inclusion(leaf, index, size * 2, expected, root)
    assert not verify_inclusion(leaf_hash(b"WrongLeaf"), index, size, expected, root)
    assert not verify_inclusion(leaf, index, size, expected, EMPTY_ROOT)
    assert not verify_inclusion(leaf, index, size, [*expected, root], root)
    assert not verify_inclusion(leaf, index, size, expected[:-1], root)
    assert not verify_inclusion(leaf, index, size, [b"", *expected], root)
    for i in range(len(expected)):
        broken = list(expected)
        broken[i] = EMPTY_ROOT
        assert not verify_inclusion(leaf, index, size, broken, root)


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY)
def test_ct_consistency_vectors(old: int, new: int, proof: list[str]) -> None:
    log = vector_log()
    expected = [h(p) for p in proof]
    assert log.consistency_proof(old, new) == expected
    old_root, new_root = h(ROOTS[old]), h(ROOTS[new])
    assert verify_consistency(old, new, old_root, new_root, expected)
    if not expected:
        return
    assert not verify_consistency(old - 1, new, old_root, new_root, expected)
    assert not verify_consistency(old + 1, new, old_root, new_root, expected)
    assert not verify_consistency(old, new * 2, old_root, new_root, expected)
    assert not verify_consistency(old, new, new_root, old_root, expected)
    assert not verify_consistency(old, new, old_root, EMPTY_ROOT, expected)
    assert not verify_consistency(old, new, old_root, new_root, [])
    assert not verify_consistency(old, new, old_root, new_root, expected[:-1])
    assert not verify_consistency(old, new, old_root, new_root, [*expected, old_root])
    assert not verify_consistency(old, new, old_root, new_root, [expected[0], *expected])
    for i in range(len(expected)):
        broken = list(expected)
        broken[i] = EMPTY_ROOT
        assert not verify_consistency(old, new, old_root, new_root, broken)


def test_trivial_and_impossible_consistency() -> None:
    root = h(ROOTS[3])
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert verify_consistency(0, 3, EMPTY_ROOT, root, [])
    assert not verify_consistency(0, 0, EMPTY_ROOT, root, [])
    assert not verify_consistency(3, 3, root, EMPTY_ROOT, [])
    assert not verify_consistency(3, 3, root, root, [root])
    assert not verify_consistency(3, 2, root, root, [])  # time travel
    assert not verify_consistency(1, 2, h(ROOTS[1]), h(ROOTS[2]), [])


def test_ct_compact_frontiers() -> None:
    log = vector_log()
    for size in range(9):
        frontier = log.frontier(size)
        assert len(frontier) == frontier_length(size)
        assert root_from_frontier(size, frontier) == h(ROOTS[size])
    assert root_from_frontier(3, log.frontier(2)) is None


def test_bounds_are_checked() -> None:
    log = vector_log()
    with pytest.raises(ValueError):
        log.root(9)
    with pytest.raises(IndexError):
        log.inclusion_proof(8, 8)
    with pytest.raises(ValueError):
        log.consistency_proof(5, 4)
    with pytest.raises(ValueError):
        log.append(b"short")
    with pytest.raises(ValueError):
        MerkleLog.from_frontier(3, [EMPTY_ROOT])


def test_a_log_restored_from_its_frontier_continues_exactly() -> None:
    full = MerkleLog()
    leaves = [leaf_hash(i.to_bytes(2, "big")) for i in range(40)]
    full.extend(leaves)
    for n in (0, 1, 5, 6, 7, 8, 13, 16, 31):
        pruned = MerkleLog.from_frontier(n, full.frontier(n))
        pruned.extend(leaves[n:])
        assert pruned.pruned_below == n
        for m in range(n, 41):
            assert pruned.root(m) == full.root(m)
            for old in range(n, m + 1):
                assert pruned.consistency_proof(old, m) == full.consistency_proof(old, m)
            for i in range(n, m):
                assert pruned.inclusion_proof(i, m) == full.inclusion_proof(i, m)
        if n >= 2:  # below the checkpoint only the frontier is left
            with pytest.raises(LookupError):
                pruned.inclusion_proof(0, 40)


def test_forget_before_keeps_what_a_frontier_restore_keeps() -> None:
    leaves = [leaf_hash(i.to_bytes(2, "big")) for i in range(50)]
    full = MerkleLog()
    full.extend(leaves[:37])
    reference = MerkleLog()
    reference.extend(leaves[:37])
    full.forget_before(21)
    assert full.pruned_below == 21
    full.extend(leaves[37:])
    reference.extend(leaves[37:])
    for m in range(21, 51):
        assert full.root(m) == reference.root(m)
        assert full.consistency_proof(21, m) == reference.consistency_proof(21, m)
    assert full.inclusion_proof(30, 50) == reference.inclusion_proof(30, 50)


def test_truncate_gives_the_log_those_appends_would_have_built() -> None:
    leaves = [leaf_hash(i.to_bytes(2, "big")) for i in range(45)]
    other = [leaf_hash(b"x" + i.to_bytes(2, "big")) for i in range(45)]
    for pruned_at in (0, 7, 16):
        for keep in range(pruned_at, 41):
            log = MerkleLog.from_frontier(pruned_at, _frontier(leaves, pruned_at))
            log.extend(leaves[pruned_at:40])
            log.truncate(keep)
            assert log.size == keep
            log.extend(other[keep:45])  # a different continuation after the cut
            reference = MerkleLog()
            reference.extend(leaves[:keep] + other[keep:45])
            for m in range(max(pruned_at, 1), 46):
                assert log.root(m) == reference.root(m)
                assert log.consistency_proof(pruned_at, m) == reference.consistency_proof(
                    pruned_at, m
                )
            assert log.inclusion_proof(44, 45) == reference.inclusion_proof(44, 45)
    log = MerkleLog.from_frontier(16, _frontier(leaves, 16))
    with pytest.raises(ValueError, match="pruned"):
        log.truncate(15)


def _frontier(leaves: list[bytes], size: int) -> list[bytes]:
    log = MerkleLog()
    log.extend(leaves[:size])
    return log.frontier()
