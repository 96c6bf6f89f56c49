"""Batch signatures: one Ed25519 signature over a Merkle root of many leaves (SPEC §6).

Why: an Ed25519 verification costs about as much as sealing and opening
twenty 1 KiB messages, so a node that signs and verifies every message is
bound by signatures, not by its links or its disk.  A sender signs the root of
a Merkle tree over a batch of envelopes (or receipts); each item carries its
leaf index, the batch size, its inclusion path and the shared signature, so it
still verifies on its own, wherever it travels and in whatever order.

What it keeps: each item remains individually attributable and
non-repudiable, since anyone with the signer's certificate can verify it
alone.  What it costs: an item carries log2(batch) extra hashes, and a verifier
learns nothing about the other items of the batch beyond their leaf hashes
and count.

The verifier remembers, per (signer key, signature), the root and every
interior node it has authenticated.  Checking the next item of the same batch
then walks up its path only until it meets an authenticated node: sound,
because reaching a known node means the leaf hashes into a tree the
signature already covers, and finding a second path to it would need a
SHA-256 second preimage.  The memory is bounded (LRU over batches) and
partitioned by signer, so a hostile signer can only evict, never pollute,
another signer's entries.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from hashlib import sha256
from typing import NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from exchnode.core._merkle import HASH_LENGTH, MerkleBatch
from exchnode.errors import BadSignatureError, MalformedError, TooLargeError

__all__ = [
    "MAX_BATCH",
    "SIGNATURE_LENGTH",
    "Seal",
    "SealVerifier",
    "sign_leaves",
    "signature_input",
]

SIGNATURE_CONTEXT = b"exchnode/v1 batch root\x00"
SIGNATURE_LENGTH = 64
MAX_BATCH = 1 << 16
MAX_PATH = 16  # log2(MAX_BATCH)


def _weak_signing_keys() -> frozenset[bytes]:
    """Ed25519 public keys no signature may be accepted under (SPEC §6.3).

    OpenSSL (through ``cryptography``) verifies cofactorless and requires a
    canonical S and R, but decodes the public key leniently: it accepts a key
    of small order -- under the identity point, ``R`` = identity and ``S`` = 0
    verify for every message -- and a key whose ``y`` is not reduced mod p.
    Such a key gives no non-repudiation, so the seal check refuses it.  The
    list is libsodium's: ``y`` of each point of order 1, 2, 4 and 8, and every
    ``y`` >= p, each with either sign bit.
    """
    p = 2**255 - 19
    order_8 = (
        0x7A03AC9277FDC74EC6CC392CFA53202A0F67100D760B3CBA4FD84D3D706A17C7,
        0x05FC536D880238B13933C6D305ACDFD5F098EFF289F4C345B027B2C28F95E826,
    )
    ys = (0, 1, p - 1, *order_8, *range(p, 2**255))
    return frozenset((y | sign << 255).to_bytes(32, "little") for y in ys for sign in (0, 1))


WEAK_SIGNING_KEYS = _weak_signing_keys()


class Seal(NamedTuple):
    """The unsigned trailer proving one item's membership in a signed batch (SPEC §5.1).

    ``path`` is the RFC 9162 inclusion path, bottom-up, as the concatenation
    of its 32-byte hashes.
    """

    leaf_index: int
    leaf_count: int
    path: bytes
    signature: bytes

    def to_wire(self) -> list[object]:
        return [self.leaf_index, self.leaf_count, self.path, self.signature]

    @classmethod
    def from_wire(cls, value: object, item: str) -> Seal:
        """Check the shape of the decoded seal of ``item``; the cryptography comes later."""
        if type(value) is not list or len(value) != 4:
            raise MalformedError(f"{item}.seal", "expected an array of 4 elements")
        index, count, path, signature = value
        if type(count) is int and count > MAX_BATCH:  # a limit of SPEC §4.3: too-large
            raise TooLargeError(f"{item}.seal.count", f"exceeds the limit of {MAX_BATCH}")
        if type(count) is not int or not 1 <= count <= MAX_BATCH:
            raise MalformedError(f"{item}.seal.count", f"must be an integer in 1..{MAX_BATCH}")
        if type(index) is not int or not 0 <= index < count:
            raise MalformedError(f"{item}.seal.index", "must be an integer in 0..count-1")
        if type(path) is bytes and len(path) > MAX_PATH * HASH_LENGTH:
            raise TooLargeError(f"{item}.seal.path", f"exceeds the limit of {MAX_PATH} hashes")
        if type(path) is not bytes or len(path) % HASH_LENGTH:
            raise MalformedError(
                f"{item}.seal.path", f"must be at most {MAX_PATH} concatenated 32-byte hashes"
            )
        if type(signature) is not bytes or len(signature) != SIGNATURE_LENGTH:
            raise MalformedError(f"{item}.seal.signature", f"must be {SIGNATURE_LENGTH} bytes")
        return cls(index, count, path, signature)


def signature_input(suite: int, count: int, root: bytes) -> bytes:
    """The exact bytes signed for a batch (SPEC §6.2)."""
    return SIGNATURE_CONTEXT + bytes([suite]) + count.to_bytes(4, "big") + root


def sign_leaves(key: Ed25519PrivateKey, suite: int, leaves: Sequence[bytes]) -> list[Seal]:
    if not 1 <= len(leaves) <= MAX_BATCH:
        raise ValueError(f"a batch holds 1..{MAX_BATCH} items, got {len(leaves)}")
    tree = MerkleBatch(leaves)
    count = tree.size
    signature = key.sign(signature_input(suite, count, tree.root))
    return [Seal(i, count, path, signature) for i, path in enumerate(tree.paths())]


class _Batch:
    __slots__ = ("count", "nodes")

    def __init__(self, count: int, nodes: set[bytes]) -> None:
        self.count = count
        self.nodes = nodes


class SealVerifier:
    """Checks seals, remembering authenticated batches (see the module docstring)."""

    def __init__(self, capacity: int = 256) -> None:
        self._capacity = capacity
        self._batches: OrderedDict[tuple[bytes, bytes], _Batch] = OrderedDict()

    def verify(
        self,
        signer: Ed25519PublicKey,
        signer_raw: bytes,
        suite: int,
        leaf: bytes,
        seal: Seal,
        what: Callable[[], str],
    ) -> None:
        """Raise ``BadSignatureError`` unless ``leaf`` is covered by ``seal`` under ``signer``.

        ``what`` describes the item for the error message; it is only called
        on failure, so the common path formats nothing.
        """
        index, count, path, signature = seal
        cache_key = (signer_raw, signature)
        batch = self._batches.get(cache_key)
        known = batch.nodes if batch is not None and batch.count == count else None
        if known is not None and leaf in known:
            self._batches.move_to_end(cache_key)
            return
        # RFC 9162 §2.1.3.2, walking up from the leaf.  With a cached batch
        # the walk stops at the first node already authenticated under this
        # signature; without one it must end exactly at the root (sn == 0).
        seen = [leaf]
        r, fn, sn = leaf, index, count - 1
        for offset in range(0, len(path), HASH_LENGTH):
            if not sn:
                raise BadSignatureError(f"{what()}: inclusion path longer than the batch allows")
            p = path[offset : offset + HASH_LENGTH]
            if fn & 1 or fn == sn:
                r = sha256(b"\x01" + p + r).digest()
                while not fn & 1 and fn:
                    fn >>= 1
                    sn >>= 1
            else:
                r = sha256(b"\x01" + r + p).digest()
            fn >>= 1
            sn >>= 1
            if known is not None and r in known:
                known.update(seen)
                self._batches.move_to_end(cache_key)
                return
            seen.append(r)
        if known is not None:
            raise BadSignatureError(f"{what()}: not covered by the batch signature it carries")
        if sn:
            raise BadSignatureError(f"{what()}: inclusion path shorter than the batch requires")
        if signer_raw in WEAK_SIGNING_KEYS:
            raise BadSignatureError(f"{what()}: the signing key is of small order or not canonical")
        try:
            signer.verify(signature, signature_input(suite, count, r))
        except InvalidSignature:
            raise BadSignatureError(f"{what()}: batch signature does not verify") from None
        self._batches[cache_key] = _Batch(count, set(seen))
        if len(self._batches) > self._capacity:
            self._batches.popitem(last=False)
