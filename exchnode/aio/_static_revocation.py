"""Revocation for a node given a static directory (a closed setup: chains verified at load).

The signed node directory drops a revoked node itself (SPEC §14.6).  A
static one was verified once, when it was built, so without this a CRL
applied later would reach TLS and the peer checks but not the keys: a
revoked department's envelopes would still verify at every hop and
messages would still be sealed to it.  Fail closed: an identity whose
certificate a CRL now lists leaves the directory.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from cryptography import x509

from exchnode.core import PeerIdentity, StaticDirectory
from exchnode.errors import CertificateRevokedError, ExchnodeError
from exchnode.pki import TrustStore, verify_node_certificate

__all__ = ["revoke_static"]


def revoke_static(
    directory: StaticDirectory,
    ca_bundle: Sequence[x509.Certificate],
    trust: TrustStore,
    now: datetime,
) -> list[PeerIdentity]:
    """Take out of ``directory`` every identity ``trust``'s CRLs revoke; the ones taken."""
    dropped = []
    for peer in directory.peers():
        if peer.certificate is None:
            continue  # built without a certificate (tests): nothing to check it against
        try:
            verify_node_certificate(peer.certificate, ca_bundle, trust, now)
        except CertificateRevokedError:
            directory.discard(peer)
            dropped.append(peer)
        except ExchnodeError:
            continue  # not revoked: whatever else, it was accepted when the directory was built
    return dropped
