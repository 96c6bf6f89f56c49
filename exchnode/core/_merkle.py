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
from collections.abc import Callable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "HASH_LENGTH",
    "MerkleBatch",
    "MerkleLog",
    "NodeReader",
    "completed_count",
    "frontier_length",
    "inclusion_path_length",
    "leaf_hash",
    "node_hash",
    "root_from_frontier",
    "root_from_inclusion",
    "verify_consistency",
    "verify_inclusion",
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


# --- the append-only log: inclusion and consistency proofs (RFC 9162 §2.1.3-§2.1.4) ---
#
# ``MerkleLog`` keeps, per level k, the hashes of the complete, aligned subtrees
# of 2**k leaves: level 0 holds the leaves, level k entry j covers leaves
# [j * 2**k, (j+1) * 2**k).  An append adds one leaf and completes at most
# log2(n) subtrees, so it costs O(log n) hashes (O(1) amortised).  Any
# subtree hash the RFC's recursive definitions need is a complete subtree
# (one lookup) or splits into O(log n) of them, so a root at any size costs
# O(log n) and a proof O(log^2 n) hash operations.
#
# Pruning (retention): a log restored from a *frontier* -- the complete
# subtrees of the binary decomposition of its size n, at most log2(n)+1
# hashes -- knows nothing below n but those subtrees.  That is enough for
# every root of a size >= n, every consistency proof from a size >= n, and
# the inclusion proof of every leaf >= n (the compact-range property: each
# node these need either lies wholly within one frontier subtree, and is
# then that subtree, or is built from frontier subtrees and later leaves).
# Anything else raises ``LookupError``.
#
# Bounded memory (issue 13): a log need not hold every hash.  ``settle()``
# drops every hash but the frontier once the caller has stored the interior
# nodes elsewhere (the audit log keeps them in its store, written in the same
# transaction as the records they cover), and ``reader`` -- (level, index) ->
# hash, raising ``LookupError`` for one it does not have -- supplies any node
# of the settled part on demand.  A settled log holds O(log n) hashes plus
# what was appended since (a batch); roots and proofs at past sizes read the
# O(log n) complete subtrees they need through ``reader``.  ``completed(index)``
# names the subtrees the append of leaf ``index`` completed: what the caller
# stores with that leaf.

EMPTY_ROOT = _sha256(b"").digest()  # RFC 9162 §2.1.1: MTH({}) = HASH()


def _largest_power_below(n: int) -> int:
    """The largest power of two strictly less than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


NodeReader = Callable[[int, int], bytes]
"""``(level, index) -> hash`` of a complete subtree held elsewhere; ``LookupError`` if absent."""


class MerkleLog:
    """An append-only RFC 9162 tree of leaf hashes with proofs at any past size."""

    __slots__ = ("_base", "_levels", "_pruned", "_reader", "_settled", "_size")

    def __init__(self, reader: NodeReader | None = None) -> None:
        self._levels: list[list[bytes]] = [[]]
        self._base: list[int] = [0]  # index, within its level, of each level's first hash
        self._size = 0
        self._pruned = 0
        self._settled = 0  # below this size, hashes not held come from ``_reader``
        self._reader = reader

    @classmethod
    def from_frontier(
        cls,
        size: int,
        frontier: Sequence[bytes],
        *,
        reader: NodeReader | None = None,
        pruned_below: int | None = None,
    ) -> MerkleLog:
        """A log of ``size`` leaves of which only the frontier is held (see above).

        Without ``reader`` nothing below ``size`` is known (a log restored from
        a checkpoint).  With one, the rest of the first ``size`` leaves' nodes
        are read through it, except below ``pruned_below`` (default: none pruned).
        """
        if size < 0:
            raise ValueError("a tree size is not negative")
        expected = frontier_length(size)
        if len(frontier) != expected or any(len(h) != HASH_LENGTH for h in frontier):
            raise ValueError(f"a tree of {size} needs a frontier of {expected} 32-byte hashes")
        log = cls(reader)
        height = size.bit_length()
        log._levels = [[] for _ in range(max(height, 1))]
        log._base = [size >> k for k in range(max(height, 1))]
        hashes = iter(frontier)
        for k in reversed(range(height)):
            if size >> k & 1:
                log._base[k] = (size >> k) - 1
                log._levels[k].append(next(hashes))
        log._size = log._settled = size
        log._pruned = size if reader is None else (pruned_below or 0)
        return log

    @property
    def size(self) -> int:
        return self._size

    @property
    def pruned_below(self) -> int:
        """The size below which only the frontier is known (0 unless pruned)."""
        return self._pruned

    def append(self, leaf: bytes) -> int:
        """Add one leaf hash; returns its index.  O(log n) hashes at worst."""
        if len(leaf) != HASH_LENGTH:
            raise ValueError("a leaf hash is 32 bytes")
        index = self._size
        node, k, j = leaf, 0, index
        while True:
            if k == len(self._levels):
                self._levels.append([])
                self._base.append(j)
            self._levels[k].append(node)
            if not j & 1:
                break
            node = node_hash(self._node(k, j - 1), node)
            k += 1
            j >>= 1
        self._size = index + 1
        return index

    def extend(self, leaves: Sequence[bytes]) -> None:
        for leaf in leaves:
            self.append(leaf)

    def _node(self, k: int, j: int) -> bytes:
        if k < len(self._levels):
            offset = j - self._base[k]
            level = self._levels[k]
            if 0 <= offset < len(level):
                return level[offset]
        if self._reader is not None and (j + 1) << k <= self._settled:
            return self._reader(k, j)
        raise LookupError(f"subtree of {1 << k} leaves at {j << k} is pruned or incomplete")

    def completed(self, index: int) -> list[bytes]:
        """The subtrees of 2, 4, ... leaves that the append of leaf ``index`` completed.

        Level k >= 1 for each k below the number of trailing one bits of
        ``index`` plus one: exactly the interior nodes whose last leaf it is
        (none for an even index).  Read from what the log holds (appended
        since the last ``settle``, or through the reader).
        """
        if not 0 <= index < self._size:
            raise IndexError(f"leaf {index} outside a tree of {self._size}")
        return [self._node(k, (index + 1 >> k) - 1) for k in range(1, completed_count(index) + 1)]

    @property
    def settled_size(self) -> int:
        """The size up to which hashes not held are read through the reader."""
        return self._settled

    def settle(self) -> None:
        """Drop every hash but the frontier: the caller has stored the rest (see above).

        Afterwards the log holds at most log2(n)+1 hashes; ``truncate`` may no
        longer go below the current size.  Without a reader, the dropped
        hashes are simply gone (roots and proofs at past sizes fail).
        """
        self._keep_from(self._size)
        self._settled = self._size

    def leaf(self, index: int) -> bytes:
        """The hash of leaf ``index``; ``LookupError`` if it was pruned."""
        if not 0 <= index < self._size:
            raise IndexError(f"leaf {index} outside a tree of {self._size}")
        return self._node(0, index)

    def _subtree(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for a subtree the RFC's recursion reaches (start aligned)."""
        width = end - start
        if width & (width - 1) == 0 and start % width == 0:
            return self._node(width.bit_length() - 1, start // width)
        k = _largest_power_below(width)
        return node_hash(self._subtree(start, start + k), self._subtree(start + k, end))

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self._size:
            raise ValueError(f"size {size} outside a log of {self._size}")

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (default: all of them)."""
        n = self._size if size is None else size
        self._check_size(n)
        return EMPTY_ROOT if n == 0 else self._subtree(0, n)

    def frontier(self, size: int | None = None) -> list[bytes]:
        """The complete subtrees of the binary decomposition of ``size``, largest first."""
        n = self._size if size is None else size
        self._check_size(n)
        hashes, start = [], 0
        for k in reversed(range(n.bit_length())):
            if n >> k & 1:
                hashes.append(self._node(k, start >> k))
                start += 1 << k
        return hashes

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[size]) of RFC 9162 §2.1.3.1, bottom-up."""
        n = self._size if size is None else size
        self._check_size(n)
        if not 0 <= index < n:
            raise IndexError(f"leaf {index} outside a tree of {n}")
        path: list[bytes] = []
        start, end = 0, n
        while end - start > 1:  # top-down, so the path comes out reversed
            k = _largest_power_below(end - start)
            if index < start + k:
                path.append(self._subtree(start + k, end))
                end = start + k
            else:
                path.append(self._subtree(start, start + k))
                start += k
        path.reverse()
        return path

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """PROOF(old_size, D[new_size]) of RFC 9162 §2.1.4.1 (empty if old_size is 0 or equal)."""
        n = self._size if new_size is None else new_size
        self._check_size(n)
        if not 0 <= old_size <= n:
            raise ValueError(f"old size {old_size} is not within 0..{n}")
        if old_size in (0, n):
            return []
        proof: list[bytes] = []
        m, start, end, complete = old_size, 0, n, True
        # SUBPROOF(m, D[start:end], complete), unrolled; appended top-down, reversed at the end.
        while m != end - start:
            k = _largest_power_below(end - start)
            if m <= k:
                proof.append(self._subtree(start + k, end))
                end = start + k
            else:
                proof.append(self._subtree(start, start + k))
                start, m, complete = start + k, m - k, False
        if not complete:
            proof.append(self._subtree(start, end))
        proof.reverse()
        return proof

    def truncate(self, size: int) -> None:
        """Drop every leaf from ``size`` on: undo appends a failed transaction did not store.

        Only complete subtrees are kept, so the log is exactly what ``size``
        appends would have built; ``size`` may not go below what was pruned.
        """
        self._check_size(size)
        if size < max(self._pruned, self._settled):
            raise ValueError(
                f"cannot truncate to {size}: leaves below {max(self._pruned, self._settled)} "
                "are pruned or settled"
            )
        for k, level in enumerate(self._levels):
            keep = (size >> k) - self._base[k]
            if keep < len(level):
                del level[max(keep, 0) :]
        self._size = size

    def forget_before(self, size: int) -> None:
        """Drop every hash not needed once leaves below ``size`` are pruned (keeps the frontier)."""
        self._check_size(size)
        self._keep_from(size)
        self._pruned = max(self._pruned, size)

    def _keep_from(self, size: int) -> None:
        """Drop the hashes of every level before those the frontier of ``size`` needs."""
        for k, level in enumerate(self._levels):
            keep_from = (size >> k) - 1 if size >> k & 1 else size >> k
            drop = keep_from - self._base[k]
            if drop > 0:
                del level[:drop]
                self._base[k] = keep_from


def completed_count(index: int) -> int:
    """How many interior nodes the append of leaf ``index`` completes: its trailing one bits."""
    return (~index & (index + 1)).bit_length() - 1


def frontier_length(size: int) -> int:
    """How many hashes the frontier of a tree of ``size`` leaves holds: its number of 1 bits."""
    return bin(size).count("1")


def root_from_frontier(size: int, frontier: Sequence[bytes]) -> bytes | None:
    """The root a frontier (largest subtree first) stands for, or ``None`` if malformed."""
    if len(frontier) != frontier_length(size) or any(len(h) != HASH_LENGTH for h in frontier):
        return None
    if not frontier:
        return EMPTY_ROOT
    root = frontier[-1]
    for h in reversed(frontier[:-1]):
        root = node_hash(h, root)
    return root


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2: does ``proof`` put ``leaf`` at ``index`` under ``root`` of ``size``?"""
    if any(len(h) != HASH_LENGTH for h in proof):
        return False
    return root_from_inclusion(leaf, index, size, proof) == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2: is the tree (new_size, new_root) an extension of (old_size, old_root)?

    Size 0 is the empty tree, which every tree extends (with an empty proof).
    """
    if not 0 <= old_size <= new_size or any(len(h) != HASH_LENGTH for h in proof):
        return False
    if old_size == 0:
        return not proof and (new_size > 0 or new_root == old_root == EMPTY_ROOT)
    if old_size == new_size:
        return not proof and old_root == new_root
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # step 2: a power of two
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:  # step 4
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0
