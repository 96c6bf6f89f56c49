"""Merkle trees as Certificate Transparency defines them (RFC 9162 §2.1).

Two users: batch signatures (one Ed25519 signature over the root of many
envelopes, each envelope carrying its inclusion path, SPEC §6) and, later,
the tamper-evident audit log.  Both need exactly RFC 9162's hashing --
``leaf = H(0x00 || data)``, ``node = H(0x01 || left || right)`` -- whose
domain separation stops a leaf from being passed off as an interior node.

The tree of ``n`` leaves is built level by level, pairing neighbours and
promoting an unpaired last node unchanged; that yields the same root and
the same audit paths as RFC 9162's recursive split at the largest power of
two below ``n`` (checked against the recursive definition in the tests).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = [
    "HASH_LENGTH",
    "MerkleBatch",
    "inclusion_path_length",
    "leaf_hash",
    "node_hash",
    "root_from_inclusion",
]

HASH_LENGTH = 32
_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


class MerkleBatch:
    """All levels of one tree, kept so that every leaf's path is a slice away."""

    __slots__ = ("_levels",)

    def __init__(self, leaves: Sequence[bytes]) -> None:
        if not leaves:
            raise ValueError("a Merkle tree needs at least one leaf")
        levels = [list(leaves)]
        level = levels[0]
        while len(level) > 1:
            paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                paired.append(level[-1])
            levels.append(paired)
            level = paired
        self._levels = levels

    @property
    def size(self) -> int:
        return len(self._levels[0])

    @property
    def root(self) -> bytes:
        return self._levels[-1][0]

    def paths(self) -> list[bytes]:
        """Every leaf's inclusion path, as concatenated hashes, in one pass.

        Leaves under the same subtree share the upper part of their paths,
        so the paths are built top-down as suffixes: about 2n concatenations
        instead of n log n steps.  Equal to ``b"".join(self.path(i))``.
        """
        suffixes = [b""]
        for level in reversed(self._levels[:-1]):
            width = len(level)
            suffixes = [
                (level[j ^ 1] if j ^ 1 < width else b"") + suffixes[j >> 1] for j in range(width)
            ]
        return suffixes

    def path(self, index: int) -> list[bytes]:
        """The inclusion path of leaf ``index``, bottom-up (RFC 9162 §2.1.3.1)."""
        if not 0 <= index < self.size:
            raise IndexError(f"leaf {index} outside a tree of {self.size}")
        path = []
        for level in self._levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                path.append(level[sibling])
            index >>= 1
        return path


def inclusion_path_length(index: int, size: int) -> int:
    """How many hashes the inclusion path of leaf ``index`` in a tree of ``size`` holds.

    Follows the index arithmetic of RFC 9162 §2.1.3.2, so a path of any
    other length fails that algorithm; -1 if the index is outside the tree.
    """
    if not 0 <= index < size:
        return -1
    fn, sn, length = index, size - 1, 0
    while sn:
        length += 1
        if not fn & 1 and fn == sn:
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        fn >>= 1
        sn >>= 1
    return length


def root_from_inclusion(leaf: bytes, index: int, size: int, path: Sequence[bytes]) -> bytes | None:
    """The root that ``path`` proves ``leaf`` to be under (RFC 9162 §2.1.3.2), or ``None``."""
    if inclusion_path_length(index, size) != len(path):
        return None
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r
