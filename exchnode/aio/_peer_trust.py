"""The trust a node checks its peers against: certificates, CRLs and the TLS contexts (I/O edge).

:class:`PeerTrust` is the part of a :class:`~exchnode.aio.Node` that says
who a peer is.  A peer's certificate is verified with the name constraints
(``pki.verify_node_certificate``) and the answer kept for a minute, so a
busy link does not verify its chain on every request.  The same roots, CRLs
and CA bundle make the TLS contexts the links use, and a CRL applied while
the node runs reaches both layers at once: the trust store (and the cache,
cleared) and every live TLS context.  The node puts each change on its
audit record; this module keeps the state.
"""

from __future__ import annotations

import ssl
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from exchnode.aio._static_revocation import revoke_static
from exchnode.aio._tls import TlsFiles, make_context
from exchnode.core import LocalIdentity, PeerIdentity, StaticDirectory
from exchnode.errors import RejectedError
from exchnode.pki import CrlCheck, TrustStore, check_crls, verify_node_certificate

__all__ = ["PeerTrust"]

_AUTH_CACHE_SECONDS = 60.0
# Certificates remembered, least recently used out: more than a province hub's neighbours, so
# that a thousand children do not push each other out and re-verify their chains every time.
_AUTH_CACHE_SIZE = 16_384
#: Certificate objects held with their digest: the streams' (an HTTP request parses its own).
_FINGERPRINTS_HELD = 4_096
_SHA256 = hashes.SHA256()


class PeerTrust:
    """Who a peer is, under the roots, CRLs and CA bundle the node runs with now."""

    def __init__(
        self,
        identity: LocalIdentity,
        trust: TrustStore,
        ca_bundle: Sequence[x509.Certificate],
        tls: TlsFiles | None,
        clock: Callable[[], float],
    ) -> None:
        self.trust = trust
        self.ca_bundle = tuple(ca_bundle)
        self._identity = identity
        self._tls = tls
        self._clock = clock
        self._auth_cache: OrderedDict[bytes, tuple[str, float]] = OrderedDict()
        self._fingerprints: OrderedDict[int, tuple[x509.Certificate, bytes]] = OrderedDict()
        self._contexts: list[ssl.SSLContext] = []
        # The CRLs the node starts with are in its trust store and its TLS files already.
        self._crls_applied: set[bytes] = {crl.fingerprint(_SHA256) for crl in trust.crls}
        #: signing key ids of identities a CRL took out of a static directory, by name
        self.static_revoked: dict[str, set[bytes]] = {}

    def authenticate(self, certificate: x509.Certificate) -> str:
        """The peer's node name, from its certificate verified with the name constraints."""
        fingerprint = self._fingerprint(certificate)
        now = self._clock()
        cached = self._auth_cache.get(fingerprint)
        if cached is not None and now - cached[1] < _AUTH_CACHE_SECONDS:
            self._auth_cache.move_to_end(fingerprint)
            return cached[0]
        moment = datetime.fromtimestamp(now, UTC)
        peer = verify_node_certificate(certificate, self.ca_bundle, self.trust, moment)
        name = str(peer.name)
        self._auth_cache[fingerprint] = (name, now)
        self._auth_cache.move_to_end(fingerprint)
        if len(self._auth_cache) > _AUTH_CACHE_SIZE:
            self._auth_cache.popitem(last=False)
        return name

    def _fingerprint(self, certificate: x509.Certificate) -> bytes:
        """The certificate's SHA-256, taken once per certificate object.

        A link stream authenticates its one certificate object again before
        every frame (a CRL may have revoked it since): at a hub with many quiet
        children, hashing it each time cost as much as the cache lookup saves.
        The object is held with its digest, so its ``id`` cannot be reused.
        """
        held = self._fingerprints.get(id(certificate))
        if held is not None and held[0] is certificate:
            self._fingerprints.move_to_end(id(certificate))
            return held[1]
        fingerprint = certificate.fingerprint(_SHA256)
        self._fingerprints[id(certificate)] = (certificate, fingerprint)
        if len(self._fingerprints) > _FINGERPRINTS_HELD:
            self._fingerprints.popitem(last=False)
        return fingerprint

    def refused_now(self, certificate: x509.Certificate) -> bool:
        """Whether a peer certificate seen earlier fails now (revoked since: cut its link)."""
        try:
            self.authenticate(certificate)
        except RejectedError:
            return True
        return False

    def tls_context(self, *, server: bool) -> ssl.SSLContext:
        """A TLS context from the node's files, kept so that later CRLs reach it."""
        assert self._tls is not None  # checked by the node: no network, so TLS files
        context = make_context(self._tls, server=server)
        self._contexts.append(context)
        return context

    def apply_crls(
        self, crls: Sequence[x509.CertificateRevocationList]
    ) -> list[x509.CertificateRevocationList]:
        """Add the CRLs not applied yet to the trust store and every TLS context; those added."""
        new = [crl for crl in crls if crl.fingerprint(_SHA256) not in self._crls_applied]
        if not new:
            return new
        self.trust = self.trust.with_crls((*self.trust.crls, *new))
        self._auth_cache.clear()
        if self._contexts:  # none on a simulated network
            pem = b"".join(crl.public_bytes(Encoding.PEM) for crl in new)
            with tempfile.NamedTemporaryFile(suffix=".pem") as bundle:
                bundle.write(pem)
                bundle.flush()
                for context in self._contexts:
                    # Adds to the live X509 store; OpenSSL prefers the newest CRL of an issuer.
                    context.load_verify_locations(cafile=bundle.name)
        self._crls_applied.update(crl.fingerprint(_SHA256) for crl in new)
        return new

    def check_crls(self, crls: Sequence[x509.CertificateRevocationList]) -> CrlCheck:
        """The one CRL check (``pki.check_crls``) of ``crls``, now; nothing is applied.

        Candidate CAs: the CA bundle, the node's own chain and the trusted
        roots; the CAs are verified under the trust store with ``crls`` added.
        """
        given = list(crls)
        trust = self.trust
        return check_crls(
            given,
            (*self.ca_bundle, *self._identity.chain),
            trust.with_crls((*trust.crls, *given)),
            datetime.fromtimestamp(self._clock(), UTC),
        )

    def revoke_static(self, directory: StaticDirectory) -> list[PeerIdentity]:
        """Drop from a static directory what the CRLs now revoke; the identities dropped."""
        now = datetime.fromtimestamp(self._clock(), UTC)
        dropped = revoke_static(directory, self.ca_bundle, self.trust, now)
        for peer in dropped:
            self.static_revoked.setdefault(str(peer.name), set()).add(peer.signing_key_id)
        return dropped
