"""Test doubles that ship with the library: reproducible keys and randomness.

Integrators' tests, our own tests, the protocol's test vectors and the
benchmarks all need identities and "random" bytes that are the same on every
run.  Nothing here is fit for production: a :class:`SeededRandom` is a
public function of its seed.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from exchnode.directory import StaticDirectory
from exchnode.identity import LocalIdentity

__all__ = ["SeededRandom", "seeded_directory", "seeded_identity"]


class SeededRandom:
    """Reproducible bytes: SHA-256 over (seed, counter).  For tests and vectors only."""

    def __init__(self, seed: bytes | str) -> None:
        self._seed = seed.encode() if isinstance(seed, str) else seed
        self._counter = 0
        self._buffer = b""

    def __call__(self, size: int) -> bytes:
        while len(self._buffer) < size:
            block = hashlib.sha256(self._seed + self._counter.to_bytes(8, "big")).digest()
            self._buffer += block
            self._counter += 1
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out


def seeded_identity(name: str, seed: bytes | str | None = None) -> LocalIdentity:
    """An identity whose keys are a function of ``seed`` (default: the name)."""
    label = seed if seed is not None else name
    text = label.decode() if isinstance(label, bytes) else label
    material = SeededRandom(f"exchnode test identity {text}")
    return LocalIdentity.from_keys(
        name,
        Ed25519PrivateKey.from_private_bytes(material(32)),
        X25519PrivateKey.from_private_bytes(material(32)),
    )


def seeded_directory(*identities: LocalIdentity) -> StaticDirectory:
    return StaticDirectory(identity.peer for identity in identities)
