"""The exchnode certificate profile: names, OIDs and issuance rules (SPEC §3).

Theory of operation
-------------------
Issuance (:mod:`exchnode.pki`) and verification
(:mod:`exchnode.pki`) must agree on one profile, so both import it from
here and neither re-states it.  The profile is small on purpose:

* every certificate names its holder with exactly ``O=exchnode, OU=<kind>,
  CN=<name>`` where ``kind`` is ``ca`` or ``node`` (SPEC §3.2).  CA and node
  distinguished names must never coincide: OpenSSL treats a hub's node
  certificate ``CN=520100`` issued by a CA with the identical DN as
  self-signed and fails the TLS handshake;
* a CA is named by a division code; what it may certify is a plain string
  prefix test on that code's *scope* (:func:`exchnode.core.division_scope`),
  which is how a county CA is kept from speaking for another county
  (SPEC §3.5);
* the node's X25519 encryption key rides in one private, non-critical
  extension whose OID is derived from a UUID (ITU-T X.667), so it can never
  collide with anybody else's (SPEC §3.3).

The rule predicates return the *reason* a rule fails (or ``None``): the issuer
turns that reason into a :class:`~exchnode.errors.UsageError`, the verifier into
a :class:`~exchnode.errors.NameConstraintError`, and both say the same thing.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from datetime import timedelta

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.x509.oid import NameOID

from exchnode.core import NodeName, division_level, division_scope
from exchnode.errors import InvalidNameError, MalformedCertificateError

__all__ = [
    "CA_VALIDITY",
    "CLOCK_SKEW_ALLOWANCE",
    "CRL_VALIDITY",
    "ENCRYPTION_KEY_OID",
    "MAX_CHAIN_LENGTH",
    "MAX_SERIAL_BITS",
    "NODE_VALIDITY",
    "ORGANIZATION",
    "ROOT_VALIDITY",
    "CertKind",
    "ca_issuance_problem",
    "ca_subject",
    "encryption_key_value",
    "node_issuance_problem",
    "node_subject",
    "parse_subject",
]

#: The exchnode encryption-key extension (SPEC §3.3): ``2.25.<UUID as integer>.1``.
ENCRYPTION_KEY_OID = x509.ObjectIdentifier("2.25.94333907179797405902471640745814667606.1")


def encryption_key_value(
    spki: bytes, where: str, wrong_type: Callable[[object], str]
) -> X25519PublicKey:
    """The X25519 key an encryption-key extension holds (SPEC §3.3: its extnValue is the DER
    SubjectPublicKeyInfo of the key), in a certificate or a request alike.

    ``where`` begins the refusal of bytes that are no SubjectPublicKeyInfo;
    ``wrong_type`` says what is wrong with a key of another type.
    """
    try:
        key = serialization.load_der_public_key(spki)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise MalformedCertificateError(
            f"{where}encryption-key extension is not a SubjectPublicKeyInfo: {exc}"
        ) from None
    if not isinstance(key, X25519PublicKey):
        raise MalformedCertificateError(wrong_type(key))
    return key


#: Longest accepted chain, root and leaf included: national → province → city
#: → county → department node (SPEC §3.5).
MAX_CHAIN_LENGTH = 5

#: RFC 5280 §4.1.2.2 allows 20 octets; a positive DER INTEGER of 20 octets
#: carries at most 159 value bits.
MAX_SERIAL_BITS = 159

ORGANIZATION = "exchnode"

# Recommended lifetimes (SPEC §3.9); the pure builders take explicit times.
ROOT_VALIDITY = timedelta(days=3650)
CA_VALIDITY = timedelta(days=1825)
NODE_VALIDITY = timedelta(days=365)
CRL_VALIDITY = timedelta(days=7)
#: Issuers backdate notBefore / thisUpdate by this much so that a peer whose
#: clock lags slightly does not see a fresh certificate as not yet valid.
CLOCK_SKEW_ALLOWANCE = timedelta(minutes=5)


class CertKind(enum.Enum):
    """The two kinds of certificate, told apart by the OU attribute (SPEC §3.2)."""

    CA = "ca"
    NODE = "node"


def _dn(kind: CertKind, common_name: str) -> x509.Name:
    # SPEC §3.2: exactly these three attributes, one per RDN, in this order.
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, kind.value),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def ca_subject(division: str) -> x509.Name:
    """``O=exchnode, OU=ca, CN=<division>``; raises InvalidNameError on a bad code."""
    division_level(division)  # validates the code
    return _dn(CertKind.CA, division)


def node_subject(name: NodeName | str) -> x509.Name:
    """``O=exchnode, OU=node, CN=<name>``; raises InvalidNameError on a bad name."""
    node = name if isinstance(name, NodeName) else NodeName.parse(name)
    return _dn(CertKind.NODE, str(node))


def parse_subject(name: x509.Name) -> tuple[CertKind, str]:
    """Return ``(kind, common name)`` of a DN in the profile's exact shape.

    Raises :class:`ValueError` (with a readable reason) when the DN has any
    other shape, and :class:`InvalidNameError` when the CN is not a valid
    division (for CAs) or node name (for nodes).  Callers translate these into
    their own error class.
    """
    rdns = list(name.rdns)
    expected = [NameOID.ORGANIZATION_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME, NameOID.COMMON_NAME]
    if len(rdns) != len(expected) or any(len(rdn) != 1 for rdn in rdns):
        raise ValueError(f"distinguished name {name.rfc4514_string()!r} is not O=, OU=, CN=")
    attributes = [next(iter(rdn)) for rdn in rdns]
    if [attribute.oid for attribute in attributes] != expected:
        raise ValueError(f"distinguished name {name.rfc4514_string()!r} is not O=, OU=, CN=")
    organization, unit, common_name = (attribute.value for attribute in attributes)
    if organization != ORGANIZATION:
        raise ValueError(f"distinguished name {name.rfc4514_string()!r} has O other than exchnode")
    if not isinstance(common_name, str):  # pragma: no cover - CN is always a string type
        raise ValueError("common name is not a string")
    try:
        kind = CertKind(unit)
    except ValueError:
        raise ValueError(
            f"distinguished name {name.rfc4514_string()!r} has OU other than 'ca' or 'node'"
        ) from None
    if kind is CertKind.CA:
        division_level(common_name)
    else:
        NodeName.parse(common_name)
    return kind, common_name


def node_issuance_problem(issuer_division: str, node: NodeName) -> str | None:
    """Why CA ``issuer_division`` may not certify ``node``, or None if it may (SPEC §3.5)."""
    scope = division_scope(issuer_division)
    if not node.within(scope):
        return (
            f"CA {issuer_division} (scope {scope or '<all>'}) may not certify node {node}: "
            f"{node.division} lies outside its scope"
        )
    return None


def ca_issuance_problem(issuer_division: str, sub_division: str) -> str | None:
    """Why CA ``issuer_division`` may not certify sub-CA ``sub_division``, or None (SPEC §3.5)."""
    scope = division_scope(issuer_division)
    try:
        sub_level = division_level(sub_division)
    except InvalidNameError as exc:
        return str(exc)
    if not sub_division.startswith(scope):
        return (
            f"CA {issuer_division} (scope {scope or '<all>'}) may not certify CA {sub_division}: "
            "it lies outside its scope"
        )
    issuer_level = division_level(issuer_division)
    if sub_level <= issuer_level:
        return (
            f"CA {issuer_division} ({issuer_level.name.lower()} level) may not certify CA "
            f"{sub_division} ({sub_level.name.lower()} level): a sub-CA must be at a strictly "
            "lower level"
        )
    return None
