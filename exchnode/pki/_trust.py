"""What verification starts from and what it vouches for: the trust store and a verified CA.

Why a module of its own: the chain verifier (``_verify``) reads a
:class:`TrustStore` and returns a :class:`VerifiedCA`; the CRL rule
(``_crl``) judges a CRL against a :class:`VerifiedCA`, and the verifier applies
that rule in its revocation step.  Holding the two values below both keeps
the rule free of the verifier, so the verifier can use it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from exchnode.core import Level, division_level, division_scope
from exchnode.errors import MalformedCertificateError, UsageError
from exchnode.pki._hostile import DECODE_ERRORS, hostile_input

__all__ = ["TrustStore", "VerifiedCA"]


@dataclass(frozen=True, slots=True, eq=False)
class TrustStore:
    """The trusted roots and the CRLs known at verification time.

    Built from any iterables (stored as tuples).  CRLs are indexed by issuer
    DN; several CRLs of one issuer may coexist (an old one and its refresh),
    SPEC §3.7 step 6 says how they combine.
    """

    roots: Sequence[x509.Certificate]
    crls: Sequence[x509.CertificateRevocationList] = ()
    _crls_by_issuer: Mapping[x509.Name, tuple[x509.CertificateRevocationList, ...]] = field(
        init=False, repr=False
    )

    def __post_init__(self) -> None:
        roots = tuple(self.roots)
        crls = tuple(self.crls)
        if not all(isinstance(root, x509.Certificate) for root in roots):
            raise UsageError("TrustStore roots must be x509.Certificate objects")
        index: dict[x509.Name, list[x509.CertificateRevocationList]] = {}
        for crl in crls:
            if not isinstance(crl, x509.CertificateRevocationList):
                raise UsageError("TrustStore crls must be x509.CertificateRevocationList objects")
            try:
                with hostile_input():
                    issuer = crl.issuer
            except DECODE_ERRORS as exc:
                raise MalformedCertificateError(f"CRL issuer name does not decode: {exc}") from None
            index.setdefault(issuer, []).append(crl)
        object.__setattr__(self, "roots", roots)
        object.__setattr__(self, "crls", crls)
        object.__setattr__(
            self, "_crls_by_issuer", {issuer: tuple(group) for issuer, group in index.items()}
        )

    def crls_issued_by(self, issuer: x509.Name) -> tuple[x509.CertificateRevocationList, ...]:
        return self._crls_by_issuer.get(issuer, ())

    def with_crls(self, crls: Iterable[x509.CertificateRevocationList]) -> TrustStore:
        """The same roots with a new set of CRLs (the periodic refresh)."""
        return TrustStore(self.roots, tuple(crls))


@dataclass(frozen=True, slots=True, eq=False)
class VerifiedCA:
    """A CA certificate whose chain verified (:func:`verify_ca_certificate`)."""

    division: str
    public_key: Ed25519PublicKey
    certificate: x509.Certificate
    path: tuple[x509.Certificate, ...]

    @property
    def level(self) -> Level:
        return division_level(self.division)

    @property
    def scope(self) -> str:
        return division_scope(self.division)
