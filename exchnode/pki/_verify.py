"""Pure verification of exchnode certificate chains (SPEC §3.7).

Theory of operation
-------------------
``cryptography.x509.verification`` refuses Ed25519 CAs and has no revocation
hook, so the chain is checked here, link by link, with
``Certificate.verify_directly_issued_by`` and ``CRL.is_signature_valid``.
The algorithm is SPEC §3.7, in its order; every step raises its own subclass
of :class:`~exchnode.errors.CertificateError`, so a log line (and a test)
says *which* check failed:

0. decode every certificate handed in into the profile's shape
   (``MalformedCertificateError``) -- hostile bytes stop here, as a typed
   error, before any rule looks at them;
1. build a path from the leaf to a trusted root (``UntrustedError``);
2. check every certificate's validity period (``CertificateNotYetValidError``,
   ``CertificateExpiredError``);
3. check every issuer is a CA and the root is self-issued (``NotACAError``);
4. check every signature, the root's own included (``CertificateSignatureError``);
5. check every subject lies in its issuer's scope (``NameConstraintError``);
6. check revocation against the CRLs of the trust store
   (``CertificateRevokedError``, ``RevocationUnavailableError``); which CRLs
   count is the one rule of ``_crl``, the directory's too;
7. check the leaf is the kind of certificate the caller asked for.

Steps 2-6 walk the path from the root down, so a revoked or expired CA is
reported before the certificates beneath it.

Nothing here reads a clock: ``now`` is an argument, as in aioquic.  The
loaders at the bottom are the only functions that take raw bytes; they raise
``MalformedCertificateError`` on anything that is not a PEM bundle or DER.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.x509.oid import ExtensionOID, SignatureAlgorithmOID

from exchnode.core import NodeName, PeerIdentity
from exchnode.errors import (
    CertificateExpiredError,
    CertificateNotYetValidError,
    CertificateRevokedError,
    CertificateSignatureError,
    InvalidNameError,
    MalformedCertificateError,
    NameConstraintError,
    NotACAError,
    RevocationUnavailableError,
    UntrustedError,
    UsageError,
)
from exchnode.pki._crl import crl_problem, decode_crl
from exchnode.pki._hostile import DECODE_ERRORS, hostile_input, utc_text
from exchnode.pki._profile import (
    ENCRYPTION_KEY_OID,
    MAX_CHAIN_LENGTH,
    CertKind,
    ca_issuance_problem,
    encryption_key_value,
    node_issuance_problem,
    parse_subject,
)
from exchnode.pki._trust import TrustStore, VerifiedCA

__all__ = [
    "NodeCertificateContents",
    "load_certificate_der",
    "load_certificates_pem",
    "load_crl_der",
    "load_crl_pem",
    "load_crls_pem",
    "read_node_certificate",
    "verify_ca_certificate",
    "verify_chain",
    "verify_node_certificate",
]

# RFC 5280 §4.2: a certificate with a critical extension we do not process is rejected.
_KNOWN_CRITICAL = frozenset({ExtensionOID.BASIC_CONSTRAINTS, ExtensionOID.KEY_USAGE})


_E = TypeVar("_E", bound=x509.ExtensionType)


# --- step 0: decoding ---------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class _Cert:
    """The fields of one certificate the algorithm reads, decoded once."""

    cert: x509.Certificate
    kind: CertKind
    name: str
    subject: x509.Name
    issuer: x509.Name
    public_key: Ed25519PublicKey
    constraints: x509.BasicConstraints | None
    key_usage: x509.KeyUsage | None
    ski: bytes | None
    aki: bytes | None
    encryption_spki: bytes | None

    @property
    def label(self) -> str:
        return f"{'CA' if self.kind is CertKind.CA else 'node'} certificate {self.name}"

    @property
    def is_ca(self) -> bool:
        return (
            self.kind is CertKind.CA
            and self.constraints is not None
            and self.constraints.ca
            and self.key_usage is not None
            and self.key_usage.key_cert_sign
        )


def _optional(extensions: x509.Extensions, kind: type[_E]) -> _E | None:
    try:
        return extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _decode(cert: x509.Certificate, role: str) -> _Cert:
    """SPEC §3.7 step 0: read ``cert`` into the profile's shape or raise Malformed."""
    if not isinstance(cert, x509.Certificate):
        raise UsageError(f"{role} must be an x509.Certificate, got {type(cert).__name__}")
    try:
        subject, issuer = cert.subject, cert.issuer
        try:
            kind, name = parse_subject(subject)
        except (ValueError, InvalidNameError) as exc:
            raise MalformedCertificateError(f"{role}: {exc}") from None
        label = f"{role} {name}"
        if cert.serial_number <= 0:
            raise MalformedCertificateError(f"{label} has a serial number that is not positive")
        if cert.version is not x509.Version.v3:
            raise MalformedCertificateError(f"{label} is not an X.509 v3 certificate")
        if cert.signature_algorithm_oid != SignatureAlgorithmOID.ED25519:
            raise MalformedCertificateError(f"{label} is not signed with Ed25519")
        public_key = cert.public_key()
        if not isinstance(public_key, Ed25519PublicKey):
            raise MalformedCertificateError(f"{label} does not certify an Ed25519 key")
        extensions = cert.extensions
        for extension in extensions:
            if extension.critical and extension.oid not in _KNOWN_CRITICAL:
                raise MalformedCertificateError(
                    f"{label} has an unrecognised critical extension {extension.oid.dotted_string}"
                )
        ski = _optional(extensions, x509.SubjectKeyIdentifier)
        aki = _optional(extensions, x509.AuthorityKeyIdentifier)
        try:
            encryption = extensions.get_extension_for_oid(ENCRYPTION_KEY_OID).value
        except x509.ExtensionNotFound:
            encryption = None
        return _Cert(
            cert=cert,
            kind=kind,
            name=name,
            subject=subject,
            issuer=issuer,
            public_key=public_key,
            constraints=_optional(extensions, x509.BasicConstraints),
            key_usage=_optional(extensions, x509.KeyUsage),
            ski=None if ski is None else ski.digest,
            aki=None if aki is None else aki.key_identifier,
            encryption_spki=encryption.value
            if isinstance(encryption, x509.UnrecognizedExtension)
            else None,
        )
    except DECODE_ERRORS as exc:
        raise MalformedCertificateError(f"{role} does not decode: {exc}") from None


# --- step 1: path building ------------------------------------------------------------


def _may_have_issued(candidate: _Cert, child: _Cert) -> bool:
    """Issuer DN matches, and key identifiers agree where both are present."""
    if candidate.subject != child.issuer:
        return False
    return child.aki is None or candidate.ski is None or child.aki == candidate.ski


def _is_self_signed(cert: _Cert) -> bool:
    if cert.subject != cert.issuer:
        return False
    try:
        cert.cert.verify_directly_issued_by(cert.cert)
    except (InvalidSignature, *DECODE_ERRORS):
        return False
    return True


@dataclass(slots=True)
class _PathSearch:
    roots: tuple[_Cert, ...]
    pool: tuple[_Cert, ...]
    too_long: bool = False
    loop: _Cert | None = None
    dead_end: _Cert | None = None
    dead_end_depth: int = -1

    def extend(self, path: list[_Cert]) -> list[_Cert] | None:
        current = path[-1]
        for root in self.roots:
            if _may_have_issued(root, current):
                if len(path) + 1 > MAX_CHAIN_LENGTH:
                    self.too_long = True
                    continue
                return [*path, root]
        for candidate in self.pool:
            # A self-signed certificate is only ever a trust anchor: one that is not
            # among the roots (an impostor's "root") leads nowhere.
            if not _may_have_issued(candidate, current) or _is_self_signed(candidate):
                continue
            if any(candidate.cert == seen.cert for seen in path):
                self.loop = candidate
                continue
            if len(path) + 2 > MAX_CHAIN_LENGTH:  # the candidate, then at least a root
                self.too_long = True
                continue
            found = self.extend([*path, candidate])
            if found is not None:
                return found
        if len(path) > self.dead_end_depth:
            self.dead_end, self.dead_end_depth = current, len(path)
        return None


def _build_path(leaf: _Cert, pool: tuple[_Cert, ...], roots: tuple[_Cert, ...]) -> list[_Cert]:
    """SPEC §3.7 step 1: leaf first, trusted root last."""
    for root in roots:
        if root.cert == leaf.cert:
            return [root]
    search = _PathSearch(roots=roots, pool=pool)
    path = search.extend([leaf])
    if path is not None:
        return path
    if search.too_long:
        raise UntrustedError(
            f"no path to a trusted root for {leaf.label} within {MAX_CHAIN_LENGTH} certificates"
        )
    if search.loop is not None:
        raise UntrustedError(f"certificate chain of {leaf.label} loops at {search.loop.label}")
    stuck = search.dead_end or leaf
    raise UntrustedError(
        f"no path to a trusted root for {leaf.label}: issuer "
        f"{stuck.issuer.rfc4514_string()!r} of {stuck.label} is not among the intermediates "
        "or the trusted roots"
    )


# --- steps 2-6 ------------------------------------------------------------------------


def _check_validity(cert: _Cert, now: datetime) -> None:
    # SPEC §3.7 step 2.
    not_before, not_after = cert.cert.not_valid_before_utc, cert.cert.not_valid_after_utc
    if now < not_before:
        raise CertificateNotYetValidError(
            f"{cert.label} is not valid before {utc_text(not_before)} (now {utc_text(now)})"
        )
    if now > not_after:
        raise CertificateExpiredError(
            f"{cert.label} expired at {utc_text(not_after)} (now {utc_text(now)})"
        )


def _check_issuer_is_ca(issuer: _Cert, child: _Cert) -> None:
    # SPEC §3.7 step 3.
    if not issuer.is_ca:
        raise NotACAError(
            f"{issuer.label} issued {child.label} but is not a CA certificate "
            "(needs OU=ca, BasicConstraints cA=TRUE and KeyUsage keyCertSign)"
        )


def _check_signature(cert: _Cert, issuer: _Cert) -> None:
    # SPEC §3.7 step 4.
    try:
        cert.cert.verify_directly_issued_by(issuer.cert)
    except (InvalidSignature, *DECODE_ERRORS) as exc:
        detail = f": {exc}" if str(exc) else ""
        raise CertificateSignatureError(
            f"signature on {cert.label} does not verify with the key of {issuer.label}{detail}"
        ) from None


def _check_name_constraints(cert: _Cert, issuer: _Cert) -> None:
    # SPEC §3.7 step 5 (the issuance rules of SPEC §3.5, re-checked).
    if cert.kind is CertKind.NODE:
        problem = node_issuance_problem(issuer.name, NodeName.parse(cert.name))
    else:
        problem = ca_issuance_problem(issuer.name, cert.name)
    if problem is not None:
        raise NameConstraintError(problem)


def _reason(entry: x509.RevokedCertificate) -> str:
    try:
        reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    except (x509.ExtensionNotFound, *DECODE_ERRORS):
        return "unspecified"
    return reason.name.replace("_", "-")


def _check_not_listed(crl: x509.CertificateRevocationList, cert: _Cert, ca: VerifiedCA) -> None:
    """Raise if ``crl`` lists ``cert``; ``crl`` is genuine, current or not (revocation is final)."""
    entry = crl.get_revoked_certificate_by_serial_number(cert.cert.serial_number)
    if entry is None:
        return
    try:
        when = f"on {utc_text(entry.revocation_date_utc)}"
    except DECODE_ERRORS:
        when = "on a date that does not decode"
    raise CertificateRevokedError(
        f"{cert.label} (serial {cert.cert.serial_number}) was revoked by CA {ca.division} "
        f"{when}, reason {_reason(entry)}"
    )


def _check_revocation(
    cert: _Cert, ca: VerifiedCA, trust: TrustStore, now: datetime, require: bool
) -> None:
    # SPEC §3.7 step 6: which CRLs count is the one rule of _crl, as for the directory.
    problems: dict[str, None] = {}  # in order, each once
    fresh = False
    for crl in trust.crls_issued_by(ca.certificate.subject):
        problem = crl_problem(crl, ca, now)
        reason = None if problem is None else problem.reason
        if problem is None or problem.genuine:
            try:
                _check_not_listed(crl, cert, ca)
            except DECODE_ERRORS as exc:
                reason = f"a CRL does not decode: {exc}"
        if reason is None:
            fresh = True
        else:
            problems[reason] = None
    if not require or fresh:
        return
    if not problems:
        raise RevocationUnavailableError(
            f"no CRL from CA {ca.division} in the trust store to check {cert.label}"
        )
    raise RevocationUnavailableError(
        f"no usable CRL from CA {ca.division} to check {cert.label}: " + "; ".join(problems)
    )


def _verify_path(
    leaf: x509.Certificate,
    intermediates: Iterable[x509.Certificate],
    trust: TrustStore,
    now: datetime,
    require_revocation: bool,
) -> list[_Cert]:
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise UsageError("now must be a timezone-aware datetime")
    now = now.astimezone(UTC)
    decoded_leaf = _decode(leaf, "certificate")
    pool = tuple(
        _decode(cert, f"intermediate #{index}") for index, cert in enumerate(intermediates)
    )
    roots = tuple(_decode(cert, f"trusted root #{index}") for index, cert in enumerate(trust.roots))

    path = _build_path(decoded_leaf, pool, roots)
    links = list(itertools.pairwise(path))  # (subject, issuer), leaf first
    root = path[-1]

    for cert in reversed(path):
        _check_validity(cert, now)
    if root.subject != root.issuer:
        raise NotACAError(f"trusted root {root.label} is not self-issued")
    if not root.is_ca:
        raise NotACAError(f"trusted root {root.label} is not a CA certificate")
    for cert, issuer in reversed(links):
        _check_issuer_is_ca(issuer, cert)
    _check_signature(root, root)
    for cert, issuer in reversed(links):
        _check_signature(cert, issuer)
    for cert, issuer in reversed(links):
        _check_name_constraints(cert, issuer)
    for index in reversed(range(len(links))):
        # Root first, so every issuer is a verified CA, its own revocation checked, by now.
        cert, issuer = links[index]
        ca = VerifiedCA(
            issuer.name, issuer.public_key, issuer.cert, tuple(c.cert for c in path[index + 1 :])
        )
        _check_revocation(cert, ca, trust, now, require_revocation)
    return path


# --- the public verifiers ---------------------------------------------------------------


def verify_chain(
    leaf: x509.Certificate,
    intermediates: Iterable[x509.Certificate],
    trust: TrustStore,
    now: datetime,
    *,
    require_revocation: bool = True,
) -> tuple[x509.Certificate, ...]:
    """Steps 0-6 of SPEC §3.7; the verified path, leaf first and root last.

    Says nothing about what the leaf *is*: callers want
    :func:`verify_node_certificate` or :func:`verify_ca_certificate`.
    """
    with hostile_input():
        path = _verify_path(leaf, intermediates, trust, now, require_revocation)
    return tuple(cert.cert for cert in path)


def _encryption_key(leaf: _Cert) -> X25519PublicKey:
    # SPEC §3.3: extnValue is the DER SubjectPublicKeyInfo of an X25519 key.
    if leaf.encryption_spki is None:
        raise MalformedCertificateError(
            f"{leaf.label} lacks the exchnode encryption-key extension "
            f"({ENCRYPTION_KEY_OID.dotted_string})"
        )
    return encryption_key_value(
        leaf.encryption_spki,
        f"{leaf.label}: ",
        lambda key: (
            f"{leaf.label}: encryption-key extension holds a {type(key).__name__}, not X25519"
        ),
    )


class NodeCertificateContents(NamedTuple):
    """What a node certificate claims, read but NOT verified (see read_node_certificate)."""

    name: NodeName
    signing_key: Ed25519PublicKey
    encryption_key: X25519PublicKey


def _node_contents(leaf: _Cert) -> NodeCertificateContents:
    # SPEC §3.7 step 7, node form.
    if leaf.kind is not CertKind.NODE:
        raise MalformedCertificateError(f"{leaf.label} is not a node certificate (OU=ca)")
    if leaf.constraints is None or leaf.constraints.ca:
        raise MalformedCertificateError(f"{leaf.label} must carry BasicConstraints with cA=FALSE")
    usage = leaf.key_usage
    if usage is None or not usage.digital_signature or usage.key_cert_sign or usage.crl_sign:
        raise MalformedCertificateError(
            f"{leaf.label} must carry KeyUsage digitalSignature (and not keyCertSign/cRLSign)"
        )
    return NodeCertificateContents(
        NodeName.parse(leaf.name), leaf.public_key, _encryption_key(leaf)
    )


def read_node_certificate(cert: x509.Certificate) -> NodeCertificateContents:
    """The name and keys a node certificate claims, checked for shape (SPEC §3.7
    steps 0 and 7) but NOT for trust: no chain, no dates, no revocation.

    For a node's *own* certificate (matching it to its key files) and for
    display; a peer's certificate goes through :func:`verify_node_certificate`.
    """
    with hostile_input():
        return _node_contents(_decode(cert, "certificate"))


def verify_node_certificate(
    leaf: x509.Certificate,
    intermediates: Iterable[x509.Certificate],
    trust: TrustStore,
    now: datetime,
    *,
    require_revocation: bool = True,
) -> PeerIdentity:
    """Verify a node's certificate chain (SPEC §3.7) and return who it is.

    ``intermediates`` are the CA certificates the peer sent (order does not
    matter, extra ones are ignored, the root may be left out); ``now`` is a
    timezone-aware datetime.  Raises a :class:`~exchnode.errors.CertificateError`
    subclass naming the failed check.
    """
    with hostile_input():
        path = _verify_path(leaf, intermediates, trust, now, require_revocation)
        contents = _node_contents(path[0])
    return PeerIdentity(
        name=contents.name,
        signing_key=contents.signing_key,
        encryption_key=contents.encryption_key,
        certificate=path[0].cert,
    )


def verify_ca_certificate(
    cert: x509.Certificate,
    intermediates: Iterable[x509.Certificate],
    trust: TrustStore,
    now: datetime,
    *,
    require_revocation: bool = True,
) -> VerifiedCA:
    """Verify a CA certificate's own chain (SPEC §3.7 with the CA form of step 7).

    A trusted root verifies as itself.  A certificate that is not a CA raises
    :class:`~exchnode.errors.NotACAError`.
    """
    with hostile_input():
        path = _verify_path(cert, intermediates, trust, now, require_revocation)
    leaf = path[0]
    if not leaf.is_ca:
        raise NotACAError(f"{leaf.label} is not a CA certificate")
    return VerifiedCA(
        division=leaf.name,
        public_key=leaf.public_key,
        certificate=leaf.cert,
        path=tuple(cert.cert for cert in path),
    )


# --- loaders ------------------------------------------------------------------------------

_CRL_BLOCK = re.compile(rb"-----BEGIN X509 CRL-----.+?-----END X509 CRL-----", re.DOTALL)


def _check_bytes(data: object, what: str) -> bytes:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise UsageError(f"{what} data must be bytes")
    return bytes(data)


def load_certificates_pem(data: bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle, in order; MalformedCertificateError if none parse."""
    pem = _check_bytes(data, "PEM")
    try:
        with hostile_input():
            certificates = x509.load_pem_x509_certificates(pem)
    except DECODE_ERRORS as exc:
        raise MalformedCertificateError(f"not a PEM certificate bundle: {exc}") from None
    if not certificates:  # pragma: no cover - cryptography raises instead
        raise MalformedCertificateError("no certificate in the PEM data")
    return certificates


def load_certificate_der(data: bytes) -> x509.Certificate:
    """One DER certificate, its subject and key read now; MalformedCertificateError if not.

    For certificates received as bytes (a directory snapshot's chains); whether
    it fits the profile is the verifiers' business.
    """
    der = _check_bytes(data, "DER")
    try:
        with hostile_input():
            certificate = x509.load_der_x509_certificate(der)
            _ = (certificate.subject, certificate.public_key())
    except DECODE_ERRORS as exc:
        raise MalformedCertificateError(f"not a DER certificate: {exc}") from None
    return certificate


def load_crls_pem(data: bytes) -> list[x509.CertificateRevocationList]:
    """Every CRL of a PEM bundle, in order, each read in full now.

    ``load_pem_x509_crl`` silently reads only the first block of a bundle, and
    a dropped CRL would be a dropped revocation; so each block is loaded on its own.
    """
    blocks = _CRL_BLOCK.findall(_check_bytes(data, "PEM"))
    if not blocks:
        raise MalformedCertificateError("no PEM 'X509 CRL' block in the data")
    crls = []
    for index, block in enumerate(blocks):
        try:
            with hostile_input():
                crl = x509.load_pem_x509_crl(block)
                decode_crl(crl)  # now, not in the middle of a verification
        except DECODE_ERRORS as exc:
            raise MalformedCertificateError(f"CRL #{index} is malformed: {exc}") from None
        crls.append(crl)
    return crls


def load_crl_pem(data: bytes) -> x509.CertificateRevocationList:
    """Exactly one PEM CRL; a bundle of several is refused rather than half-read."""
    crls = load_crls_pem(data)
    if len(crls) != 1:
        raise MalformedCertificateError(f"expected one CRL, found {len(crls)}")
    return crls[0]


def load_crl_der(data: bytes) -> x509.CertificateRevocationList:
    """One DER CRL, read in full now; MalformedCertificateError if it does not decode."""
    der = _check_bytes(data, "DER")
    try:
        with hostile_input():
            crl = x509.load_der_x509_crl(der)
            decode_crl(crl)
    except DECODE_ERRORS as exc:
        raise MalformedCertificateError(f"CRL does not decode: {exc}") from None
    return crl
