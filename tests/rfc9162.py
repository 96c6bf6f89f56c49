"""RFC 9162's Merkle tree definitions, written recursively as the RFC writes them.

The library computes trees, inclusion paths and consistency proofs
iteratively (``exchnode.core``); its unit tests and its properties compare
those with this reference, which follows §2.1 line by line.  Every function
takes the leaf hashes, D[n] already hashed.
"""

from __future__ import annotations

from exchnode.core._merkle import node_hash


def _split(n: int) -> int:
    """k, the largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves: list[bytes]) -> bytes:
    """§2.1.1: MTH(D[n])."""
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def path(m: int, leaves: list[bytes]) -> list[bytes]:
    """§2.1.3.1: PATH(m, D[n]), the inclusion path of leaf m."""
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if m < k:
        return [*path(m, leaves[:k]), mth(leaves[k:])]
    return [*path(m - k, leaves[k:]), mth(leaves[:k])]


def subproof(m: int, leaves: list[bytes], complete: bool) -> list[bytes]:
    """§2.1.4.1: SUBPROOF(m, D[n], b), the consistency proof from size m when b is true."""
    n = len(leaves)
    if m == n:
        return [] if complete else [mth(leaves)]
    k = _split(n)
    if m <= k:
        return [*subproof(m, leaves[:k], complete), mth(leaves[k:])]
    return [*subproof(m - k, leaves[k:], False), mth(leaves[:k])]
