"""The Merkle tree is RFC 9162's, leaf for leaf and path for path."""

from __future__ import annotations

import hashlib

import pytest

from exchnode.core import leaf_hash
from exchnode.core._merkle import MerkleBatch, inclusion_path_length, node_hash, root_from_inclusion
from tests import rfc9162


def test_domain_separation() -> None:
    assert leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert node_hash(b"a", b"b") == hashlib.sha256(b"\x01ab").digest()


def test_empty_tree_is_refused() -> None:
    with pytest.raises(ValueError):
        MerkleBatch([])


@pytest.mark.parametrize("size", [*range(1, 34), 64, 65, 100])
def test_root_and_paths_match_the_rfc(size: int) -> None:
    data = [f"item {i}".encode() for i in range(size)]
    leaves = [leaf_hash(d) for d in data]
    tree = MerkleBatch(leaves)
    assert tree.root == rfc9162.mth(leaves)
    all_paths = tree.paths()
    for i in range(size):
        path = tree.path(i)
        assert all_paths[i] == b"".join(path)
        assert path == rfc9162.path(i, leaves)
        assert len(path) == inclusion_path_length(i, size)
        assert root_from_inclusion(leaves[i], i, size, path) == tree.root


def test_wrong_index_size_or_path_does_not_reach_the_root() -> None:
    leaves = [leaf_hash(bytes([i])) for i in range(11)]
    tree = MerkleBatch(leaves)
    path = tree.path(6)
    assert root_from_inclusion(leaves[6], 7, 11, path) != tree.root
    # A path alone does not fix the tree size (here 11 and 12 give the same
    # root): RFC 9162 verifies against a signed (root, size), and so do batch
    # signatures (SPEC §6.2; test_envelope.test_a_tampered_leaf_count_is_refused).
    assert root_from_inclusion(leaves[6], 6, 12, path) == tree.root
    assert root_from_inclusion(leaves[6], 6, 11, path[:-1]) is None
    assert root_from_inclusion(leaves[6], 11, 11, path) is None
    assert inclusion_path_length(5, 5) == -1
    with pytest.raises(IndexError):
        tree.path(11)
