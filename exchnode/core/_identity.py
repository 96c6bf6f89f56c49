"""What a node is, cryptographically: a name bound to two keys by a certificate.

Every node holds a *signing* key (Ed25519: envelope batches, receipts, TLS)
and an *encryption* key (X25519: the recipients' side of the content-key
wrap).  Both are bound to the node's name by one certificate: the signing key
is the certificate's subject key, the encryption key travels in the exchnode
encryption-key extension (SPEC §3.3).  Splitting the roles keeps each key in a
single algorithm's use, as RFC 8410 asks of X25519/Ed25519 keys.

:class:`PeerIdentity` is what the network knows of another node once its
chain has been verified (``pki_verify``); :class:`LocalIdentity` adds the
private halves.  Both are plain values: loading them from files is
``keyfiles``' business, so the protocol core never touches a disk.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from exchnode.core._names import NodeName

__all__ = ["KEY_ID_LENGTH", "LocalIdentity", "PeerIdentity", "key_id"]

KEY_ID_LENGTH = 16


def key_id(public_key: Ed25519PublicKey | X25519PublicKey) -> bytes:
    """SHA-256 of the raw public key, truncated to 16 bytes (SPEC §3.4).

    A lookup hint, never a substitute for the key: a wrong or colliding id can
    only make a signature check or a key unwrap fail, not succeed.
    """
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:KEY_ID_LENGTH]


@dataclass(frozen=True, slots=True, eq=False)
class PeerIdentity:
    """A node whose certificate chain has been verified to a trusted root."""

    name: NodeName
    signing_key: Ed25519PublicKey
    encryption_key: X25519PublicKey
    certificate: x509.Certificate | None = None
    signing_key_id: bytes = field(init=False)
    encryption_key_id: bytes = field(init=False)
    signing_key_raw: bytes = field(init=False, repr=False)
    encryption_key_raw: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Derived once: the sealing hot path looks these up per message.
        object.__setattr__(self, "signing_key_id", key_id(self.signing_key))
        object.__setattr__(self, "encryption_key_id", key_id(self.encryption_key))
        object.__setattr__(
            self, "signing_key_raw", self.signing_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        )
        object.__setattr__(
            self,
            "encryption_key_raw",
            self.encryption_key.public_bytes(Encoding.Raw, PublicFormat.Raw),
        )


@dataclass(frozen=True, slots=True, eq=False)
class LocalIdentity:
    """This node: its verified public identity plus the two private keys."""

    peer: PeerIdentity
    signing_private_key: Ed25519PrivateKey = field(repr=False)
    encryption_private_key: X25519PrivateKey = field(repr=False)
    chain: tuple[x509.Certificate, ...] = ()

    @property
    def name(self) -> NodeName:
        return self.peer.name

    @classmethod
    def from_keys(
        cls,
        name: NodeName | str,
        signing_private_key: Ed25519PrivateKey,
        encryption_private_key: X25519PrivateKey,
        certificate: x509.Certificate | None = None,
        chain: tuple[x509.Certificate, ...] = (),
    ) -> LocalIdentity:
        """Bind keys to a name; callers that hold a certificate pass it for the record.

        The binding is only as good as the certificate that vouches for it:
        peers learn this identity through ``pki_verify``, never from here.
        """
        node = name if isinstance(name, NodeName) else NodeName.parse(name)
        peer = PeerIdentity(
            name=node,
            signing_key=signing_private_key.public_key(),
            encryption_key=encryption_private_key.public_key(),
            certificate=certificate,
        )
        return cls(
            peer=peer,
            signing_private_key=signing_private_key,
            encryption_private_key=encryption_private_key,
            chain=chain,
        )

    def __repr__(self) -> str:
        return f"LocalIdentity(name={self.name!s})"
