"""The node's own earlier signing keys, so that its audit log still verifies after a rotation.

A node's tree heads are signed with its signing key.  When the key is
rotated (a new certificate with new keys), the heads signed before no longer
verify with the new key, and a node verifies its whole stored log at start:
it would refuse to start.  So the node keeps every certificate it has run
with (the store's meta, :data:`OWN_CERTIFICATES`), and at start accepts
heads signed by any of them that still verifies against its trust store: a
certificate its CAs issued to this node's name, not revoked.  One that has
expired since counts as it was when valid (the heads it signed were signed
then).  Whoever can write the store file cannot add a key this way: a
certificate that does not verify is ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from exchnode.core import PeerIdentity, pack, unpack
from exchnode.errors import CertificateExpiredError, ExchnodeError, RejectedError
from exchnode.pki import TrustStore, load_certificate_der, verify_node_certificate

__all__ = ["OWN_CERTIFICATES", "earlier_identities", "with_current"]

#: meta key: the DER certificates this node has run with, oldest first
OWN_CERTIFICATES = "audit.own-certificates"
_MAX_KEPT = 64  # rotations a node remembers; far more than six months of logs need


def _decode(stored: bytes | None) -> list[bytes]:
    if stored is None:
        return []
    try:
        value = unpack(stored, what="own-certificates", max_size=len(stored), max_array=_MAX_KEPT)
    except RejectedError:
        return []  # damaged: nothing is trusted from it (the current key still is)
    if type(value) is not list or not all(type(der) is bytes for der in value):
        return []
    return list(value)


def with_current(stored: bytes | None, current: x509.Certificate) -> bytes | None:
    """The meta value with ``current`` added, or None if it is there already."""
    kept = _decode(stored)
    der = current.public_bytes(Encoding.DER)
    if der in kept:
        return None
    return pack([*kept, der][-_MAX_KEPT:])


def earlier_identities(
    stored: bytes | None,
    name: str,
    ca_bundle: Sequence[x509.Certificate],
    trust: TrustStore,
    now: datetime,
) -> list[PeerIdentity]:
    """The identities of ``name`` from the kept certificates that still verify (see above)."""
    out = []
    for der in _decode(stored):
        try:
            leaf = load_certificate_der(der)
            peer = _verified(leaf, ca_bundle, trust, now)
        except ExchnodeError:
            continue
        if str(peer.name) == name:
            out.append(peer)
    return out


def _verified(
    leaf: x509.Certificate,
    ca_bundle: Sequence[x509.Certificate],
    trust: TrustStore,
    now: datetime,
) -> PeerIdentity:
    try:
        return verify_node_certificate(leaf, ca_bundle, trust, now)
    except CertificateExpiredError:
        pass
    # Expired since: as it was in its last second of validity.  No CRL need be current then,
    # but one that lists it still refuses it (the verifier's rule: revocation is final).
    last = leaf.not_valid_after_utc - timedelta(seconds=1)
    return verify_node_certificate(leaf, ca_bundle, trust, last, require_revocation=False)
