"""What makes a CRL count: one rule for the chain verifier, the directory and TLS.

Why a module of its own
-----------------------
A CRL is judged in three places: the chain verifier's revocation step (SPEC
§3.7 step 6), the node directory, which takes CRLs from its neighbours'
snapshots and from local configuration (§14.6), and, through the directory,
the node's TLS layer, which is handed exactly the CRLs the directory keeps.
Written separately, the tests drifted apart (the directory kept CRLs that
were stale or not yet valid, which the verifier would not count), and a node
could serve and hand to TLS a CRL its own verifier refuses.  So the rule is
written once, here, against a CA that has already been verified:

* :func:`crl_problem` -- is ``crl`` *genuine* under the CA (the CA may sign
  CRLs, the signature verifies with its key, no critical extension other than
  cRLNumber and authorityKeyIdentifier) and *current* at ``now``
  (``thisUpdate <= now < nextUpdate``, nextUpdate present)?  A genuine CRL
  that is not current vouches for nothing, yet whatever it lists is revoked
  all the same: revocation is final (§3.6).
* :func:`crl_problem_under_key` -- the same rule's signature, extension and
  date steps under a CA *key* alone, for a CRL a node verified under its CA
  once and kept with that key instead of the CA's chain (SPEC §14.15: a node
  that serves the CRL to no one, a department, keeps ~250 bytes a CA rather
  than ~1 KB; at 3,210 CAs that is what keeps its state under 1 MB).
* :class:`CrlSet` -- of several genuine CRLs of one CA, the newest: the
  greatest cRLNumber, then the latest thisUpdate (§14.6).

The chain verifier takes the CA from the path it has just verified; CRLs that
arrive with certificates (a snapshot, configuration) first need their CA found
and verified, which is :func:`~exchnode.pki.check_crls` (``_crl_acceptance``,
above the verifier it uses).  Nothing here reads a clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import ExtensionOID

from exchnode.errors import (
    CertificateSignatureError,
    MalformedCertificateError,
    RevocationUnavailableError,
    UntrustedError,
)
from exchnode.pki._hostile import DECODE_ERRORS, name_text, utc_text
from exchnode.pki._trust import VerifiedCA

__all__ = [
    "CrlProblem",
    "CrlSet",
    "crl_label",
    "crl_problem",
    "crl_problem_under_key",
    "decode_crl",
]

# RFC 5280 §5.2: a CRL with a critical extension we do not process is not used.
_KNOWN_CRL_EXTENSIONS = frozenset({ExtensionOID.CRL_NUMBER, ExtensionOID.AUTHORITY_KEY_IDENTIFIER})

_CRL = x509.CertificateRevocationList


class CrlProblem(NamedTuple):
    """Why a CRL cannot vouch for its CA's certificates now."""

    reason: str
    #: The code a caller reports the CRL with (SPEC §3.8, §14.6).
    code: str
    #: The CRL is the CA's own and only its dates are wrong: whatever it lists is revoked.
    genuine: bool


def crl_label(crl: _CRL) -> str:
    try:
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except (x509.ExtensionNotFound, *DECODE_ERRORS):
        return "CRL without a number"
    return f"CRL number {number}"


def decode_crl(crl: _CRL) -> None:
    """Read now every field the rule and :class:`CrlSet` read, so a bad CRL fails here, as data.

    Raises one of ``DECODE_ERRORS``; the callers say what it means for them.
    """
    _ = (crl.issuer, crl.last_update_utc, crl.next_update_utc)
    for extension in crl.extensions:
        _ = extension.value
    for revoked in crl:
        _ = revoked.serial_number


def crl_problem(crl: _CRL, ca: VerifiedCA, now: datetime) -> CrlProblem | None:
    """SPEC §3.7 step 6: why ``crl`` is not a genuine, current CRL of ``ca`` at ``now``, or None.

    ``ca`` must have been verified (its chain, its own revocation); ``now`` is a
    timezone-aware datetime.  Hostile input yields a problem, never an exception.
    """
    try:
        return _problem(crl, ca, now)
    except DECODE_ERRORS as exc:
        return CrlProblem(f"a CRL does not decode: {exc}", MalformedCertificateError.code, False)


def _not_genuine(reason: str) -> CrlProblem:
    return CrlProblem(reason, CertificateSignatureError.code, False)


def _not_current(reason: str) -> CrlProblem:
    return CrlProblem(reason, RevocationUnavailableError.code, True)


def _problem(crl: _CRL, ca: VerifiedCA, now: datetime) -> CrlProblem | None:
    label = crl_label(crl)
    if crl.issuer != ca.certificate.subject:
        return CrlProblem(
            f"{label} is issued by {name_text(crl.issuer)!r}, not by CA {ca.division}",
            UntrustedError.code,
            False,
        )
    try:
        usage = ca.certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is None or not usage.crl_sign:
        return _not_genuine(
            f"CA certificate {ca.division} may not sign CRLs (KeyUsage lacks cRLSign)"
        )
    return _signed_and_dated(crl, ca.public_key, f"CA {ca.division}", now, label)


def crl_problem_under_key(
    crl: _CRL, public_key: Ed25519PublicKey, now: datetime
) -> CrlProblem | None:
    """Why ``crl`` is not genuine and current under the CA key it was once verified with.

    For a CRL kept with its CA's key in place of the CA's chain (SPEC
    §14.15): whose CA that key is was settled when the CRL was first
    accepted under a verified CA (:func:`crl_problem`), so only the steps that
    need the key and the clock are run again.  Hostile input yields a
    problem, never an exception.
    """
    try:
        return _signed_and_dated(
            crl, public_key, f"CA {name_text(crl.issuer)!r}", now, crl_label(crl)
        )
    except DECODE_ERRORS as exc:
        return CrlProblem(f"a CRL does not decode: {exc}", MalformedCertificateError.code, False)


def _signed_and_dated(
    crl: _CRL, public_key: Ed25519PublicKey, ca: str, now: datetime, label: str
) -> CrlProblem | None:
    """The rule's steps that need only the CA's key: signature, critical extensions, dates."""
    if not crl.is_signature_valid(public_key):
        return _not_genuine(f"{label} is not signed by the key of {ca}")
    for extension in crl.extensions:
        if extension.critical and extension.oid not in _KNOWN_CRL_EXTENSIONS:
            return _not_genuine(
                f"{label} of {ca} has an unrecognised critical extension "
                f"{extension.oid.dotted_string}"
            )
    last_update, next_update = crl.last_update_utc, crl.next_update_utc
    if next_update is None:
        return _not_current(f"{label} of {ca} has no nextUpdate")
    if now < last_update:
        return _not_current(f"{label} of {ca} is not valid before {utc_text(last_update)}")
    if now >= next_update:
        return _not_current(
            f"{label} of {ca} is stale: its next update was due {utc_text(next_update)}"
        )
    return None


# --- the newest per CA --------------------------------------------------------------------


def _authority(crl: _CRL) -> tuple[bytes, bytes]:
    """Which CA a (genuine) CRL speaks for: issuer DN and key identifier.

    Keyed by the key identifier too, so that a re-keyed CA's CRLs for its old
    and new key do not displace each other.
    """
    try:
        aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        key = aki.key_identifier or b""
    except x509.ExtensionNotFound:
        key = b""
    return crl.issuer.public_bytes(), key


def _rank(crl: _CRL, der: bytes) -> tuple[int, datetime, bytes]:
    try:
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        number = -1
    # The DER only separates two different CRLs one CA signed with the same number and
    # time, so that the choice never depends on the order they arrived in.
    return number, crl.last_update_utc, der


class CrlSet:
    """The newest CRL of each CA among genuine ones (SPEC §14.6); immutable.

    Per (issuer DN, keyIdentifier of the authorityKeyIdentifier or b"") the
    greatest cRLNumber (absent counts as -1), then the latest thisUpdate.
    Keeping one per CA loses nothing, since a CA's CRL only grows (§3.6): an
    older CRL than one held is simply not taken.

    Only CRLs that :func:`crl_problem` found genuine may go in (as
    :func:`~exchnode.pki.check_crls` returns them): a forgery with a huge
    number would otherwise displace the real one.
    """

    __slots__ = ("_crls",)

    def __init__(self, crls: Iterable[_CRL] = ()) -> None:
        newest: dict[tuple[bytes, bytes], tuple[tuple[int, datetime, bytes], _CRL]] = {}
        for crl in crls:
            authority = _authority(crl)
            rank = _rank(crl, crl.public_bytes(serialization.Encoding.DER))
            held = newest.get(authority)
            if held is None or rank > held[0]:
                newest[authority] = (rank, crl)
        ordered = sorted(newest.values(), key=lambda item: item[0][2])
        self._crls: tuple[_CRL, ...] = tuple(crl for _, crl in ordered)

    @property
    def crls(self) -> tuple[_CRL, ...]:
        """The newest CRL per CA, sorted by DER (the order a snapshot carries them in)."""
        return self._crls

    def with_crls(self, crls: Iterable[_CRL]) -> CrlSet:
        """These CRLs and the ones held, the newest per CA."""
        return CrlSet((*self._crls, *crls))

    def revoked(self) -> frozenset[tuple[bytes, int]]:
        """(issuer DN as DER, serial) of every certificate the CRLs list."""
        return frozenset(
            (crl.issuer.public_bytes(), entry.serial_number) for crl in self._crls for entry in crl
        )

    def __iter__(self) -> Iterator[_CRL]:
        return iter(self._crls)

    def __len__(self) -> int:
        return len(self._crls)

    def __repr__(self) -> str:
        return f"CrlSet({[crl_label(crl) for crl in self._crls]})"
