"""Accepting CRLs that arrive with certificates: find each one's CA, verify it, apply the rule.

Why a module of its own: the chain verifier judges a CRL against the CA of
the path it is walking, but CRLs that travel (in a directory snapshot, SPEC
§14.6) or come from local configuration arrive with no verified CA.  Their CA
must first be found among the certificates at hand and verified as a CA; only
then can the one rule of ``_crl`` judge them.  That needs the chain verifier
(``_verify``), which itself applies the rule, so this sits above both; the
rule itself is not repeated here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from exchnode.errors import (
    CertificateError,
    MalformedCertificateError,
    UntrustedError,
    UsageError,
)
from exchnode.pki._crl import CrlProblem, CrlSet, crl_problem, decode_crl
from exchnode.pki._hostile import DECODE_ERRORS, hostile_input, name_text
from exchnode.pki._trust import TrustStore, VerifiedCA
from exchnode.pki._verify import verify_ca_certificate

__all__ = ["CrlCheck", "RefusedCrl", "check_crls"]

_CRL = x509.CertificateRevocationList


class RefusedCrl(NamedTuple):
    """A CRL that :func:`check_crls` did not accept as current, and why."""

    #: Its index in the CRLs given.
    position: int
    code: str
    reason: str


class CrlCheck(NamedTuple):
    """What :func:`check_crls` made of some CRLs."""

    #: Genuine and current, the newest per CA: what a node keeps, serves and gives its TLS layer.
    current: CrlSet
    #: Genuine whatever their dates, the newest per CA: whatever they list is revoked, since
    #: revocation is final, though the stale and the early ones vouch for nothing.
    genuine: CrlSet
    #: Every CRL that is not both genuine and current, the genuine but ill-dated ones included.
    #: A CRL superseded by a newer one of its CA is in none of the three.
    refused: tuple[RefusedCrl, ...]


def check_crls(
    crls: Sequence[_CRL],
    cas: Iterable[x509.Certificate],
    trust: TrustStore,
    now: datetime,
) -> CrlCheck:
    """SPEC §14.6: each CRL judged by the rule of §3.7 step 6 under a CA that verifies.

    The candidate CAs of a CRL are the certificates of ``cas`` (unverified: say,
    the CA certificates of the chains received) and the trusted roots whose
    subject DN is the CRL's issuer DN.  A candidate counts once it verifies as a
    CA (:func:`verify_ca_certificate` with ``cas`` as intermediates, ``trust``
    and ``now``); each is verified at most once.  ``now`` is a timezone-aware
    datetime.  Hostile CRLs are refused, never raised.
    """
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise UsageError("now must be a timezone-aware datetime")
    candidates = _Candidates(cas, trust, now)
    current: list[_CRL] = []
    genuine: list[_CRL] = []
    refused: list[RefusedCrl] = []
    for index, crl in enumerate(crls):
        problem = candidates.judge(crl)
        if problem is None or problem.genuine:
            genuine.append(crl)
        if problem is None:
            current.append(crl)
        else:
            refused.append(RefusedCrl(index, problem.code, problem.reason))
    return CrlCheck(CrlSet(current), CrlSet(genuine), tuple(refused))


class _Candidates:
    """The candidate CA certificates by subject, each verified when first needed."""

    def __init__(self, cas: Iterable[x509.Certificate], trust: TrustStore, now: datetime) -> None:
        pool: dict[bytes, x509.Certificate] = {}
        for cert in (*trust.roots, *cas):
            pool.setdefault(cert.public_bytes(serialization.Encoding.DER), cert)
        self._pool = tuple(pool.values())
        self._by_subject: dict[x509.Name, list[x509.Certificate]] = {}
        for cert in self._pool:
            try:
                self._by_subject.setdefault(cert.subject, []).append(cert)
            except DECODE_ERRORS:
                continue
        self._verified: dict[int, VerifiedCA | CertificateError] = {}
        self._trust, self._now = trust, now

    def _verify(self, candidate: x509.Certificate) -> VerifiedCA | CertificateError:
        ca = self._verified.get(id(candidate))
        if ca is None:
            try:
                ca = verify_ca_certificate(candidate, self._pool, self._trust, self._now)
            except CertificateError as exc:
                ca = exc
            self._verified[id(candidate)] = ca
        return ca

    def judge(self, crl: _CRL) -> CrlProblem | None:
        """The rule's verdict under the first candidate CA the CRL is genuine under."""
        try:
            with hostile_input():
                decode_crl(crl)
        except (MalformedCertificateError, *DECODE_ERRORS) as exc:
            return CrlProblem(f"CRL does not decode: {exc}", MalformedCertificateError.code, False)
        problem = CrlProblem(
            f"no CA certificate {name_text(crl.issuer)!r} among the certificates received "
            "or the trusted roots",
            UntrustedError.code,
            False,
        )
        for candidate in self._by_subject.get(crl.issuer, ()):
            ca = self._verify(candidate)
            if isinstance(ca, CertificateError):
                problem = CrlProblem(f"its CA certificate does not verify: {ca}", ca.code, False)
                continue
            verdict = crl_problem(crl, ca, self._now)
            if verdict is None or verdict.genuine:
                return verdict
            problem = verdict
        return problem
