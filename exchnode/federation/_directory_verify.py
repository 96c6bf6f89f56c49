"""Trusting a node directory snapshot: its issuer, every entry's chain, its CRLs (SPEC §14.5).

Why a module of its own: verification is where the directory meets the PKI,
and it is the only way a snapshot's content becomes something a node may
hold.  The wire form (``_directory_wire``) knows nothing of certificates; the
node's state (``_directory``) takes only the :class:`VerifiedSnapshot` made
here.

Trust comes from the certificates, never from the relay.  A snapshot is
signed by its issuer so that a pull cannot be tampered with or replayed out
of date, but every entry still carries its full chain and is verified
against the local roots, as a TLS peer would be.  An entry that fails
(revoked, expired, outside its CA's names) is dropped and reported; only a
bad issuer -- its chain or its signature -- rejects the whole snapshot, so a
hub that relays one revoked node does not cut its neighbours off.

CRLs ride in snapshots.  Which of them count is not decided here but by the
PKI's one rule (:func:`exchnode.pki.check_crls`): a CRL is kept when it is
genuine under a CA certificate that verifies and current, the newest per CA;
that is also what the chain verifier counts and what a node hands its TLS
layer, so the three agree by construction.  A genuine CRL that is stale or
not yet valid is not kept, but what it lists is revoked all the same.

Nothing here reads a clock: ``now`` (seconds since 1970) is an argument.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from exchnode.core import NodeName, PeerIdentity, key_id
from exchnode.errors import (
    BadSignatureError,
    DirectoryExpiredError,
    LifetimeTooLongError,
    MalformedCertificateError,
    MalformedError,
    NotYetValidError,
    RejectedError,
    UnknownSignerError,
    WrongIssuerError,
)
from exchnode.federation._directory_wire import (
    DEFAULT_DIRECTORY_POLICY,
    DIRECTORY_LABEL,
    DirectoryEntry,
    DirectoryPolicy,
    DirectorySnapshot,
    decode_snapshot,
    iso_ms,
)
from exchnode.pki import (
    CrlCheck,
    TrustStore,
    check_crls,
    load_certificate_der,
    load_crl_der,
    verify_node_certificate,
)

__all__ = [
    "Dropped",
    "VerifiedEntry",
    "VerifiedSnapshot",
    "accept_crls",
    "check_entry_name",
    "check_signature",
    "entry_expired",
    "instant",
    "trust_with",
    "verify_listed",
    "verify_snapshot",
]

_CRL = x509.CertificateRevocationList


class Dropped(NamedTuple):
    """Something verification left out, and why; the rest of the snapshot stands."""

    field: str
    name: str
    code: str
    reason: str


@dataclass(frozen=True, slots=True, eq=False)
class VerifiedEntry:
    """An entry whose chain verified: who the node is, where it is, until when."""

    identity: PeerIdentity
    #: Leaf first, then its CAs as received (root excluded); re-served verbatim.
    certificates: tuple[x509.Certificate, ...]
    address: str
    valid_until_ms: int

    @property
    def name(self) -> str:
        return str(self.identity.name)

    def to_entry(self) -> DirectoryEntry:
        chain = tuple(cert.public_bytes(serialization.Encoding.DER) for cert in self.certificates)
        return DirectoryEntry(self.name, chain, self.address, self.valid_until_ms)


@dataclass(frozen=True, slots=True, eq=False)
class VerifiedSnapshot:
    """What ``verify_snapshot`` vouches for, with what it dropped and the exact bytes."""

    issuer: str
    issued_ms: int
    expires_ms: int
    entries: tuple[VerifiedEntry, ...]
    #: The snapshot's CRLs that are genuine under a verified CA and current, newest per CA.
    crls: tuple[_CRL, ...]
    dropped: tuple[Dropped, ...]
    #: Names left unverified because the caller's ``wanted`` filter declined them.
    skipped: tuple[str, ...]
    data: bytes
    #: The snapshot's genuine CRLs whatever their dates, newest per CA: not kept or served
    #: unless current, but whatever they list is revoked (revocation is final, SPEC §3.6).
    revoking: tuple[_CRL, ...] = ()


def instant(now: float) -> datetime:
    return datetime.fromtimestamp(now, UTC)


def trust_with(trust: TrustStore, *more: Iterable[_CRL]) -> TrustStore:
    """The local roots and CRLs with ``more`` CRLs, each CRL once."""
    seen: dict[bytes, _CRL] = {}
    for crl in itertools.chain(trust.crls, *more):
        seen.setdefault(crl.public_bytes(serialization.Encoding.DER), crl)
    return TrustStore(trust.roots, tuple(seen.values()))


def accept_crls(
    crls: Sequence[tuple[str, _CRL]],
    cas: Iterable[x509.Certificate],
    trust: TrustStore,
    when: datetime,
) -> tuple[CrlCheck, list[Dropped]]:
    """The PKI's CRL check (SPEC §14.6) on (field, CRL) pairs, its refusals as ``Dropped``."""
    checked = check_crls([crl for _, crl in crls], cas, trust, when)
    dropped = [
        Dropped(crls[refused.position][0], "", refused.code, refused.reason)
        for refused in checked.refused
    ]
    return checked, dropped


class _Certificates:
    """DER to certificates, each parsed once per verification."""

    def __init__(self) -> None:
        self._parsed: dict[bytes, x509.Certificate | MalformedCertificateError] = {}

    def get(self, der: bytes, field: str) -> x509.Certificate:
        parsed = self._parsed.get(der)
        if parsed is None:
            try:
                parsed = load_certificate_der(der)
            except MalformedCertificateError as exc:
                parsed = MalformedCertificateError(f"{field}: {exc}")
            self._parsed[der] = parsed
        if isinstance(parsed, MalformedCertificateError):
            raise parsed
        return parsed

    def chain(self, entry: DirectoryEntry, field: str) -> tuple[x509.Certificate, ...]:
        return tuple(self.get(der, f"{field}.chain[{j}]") for j, der in enumerate(entry.chain))


def _parse_crls(ders: Sequence[bytes], field: str) -> tuple[list[tuple[str, _CRL]], list[Dropped]]:
    # SPEC §14.5 step 6: a CRL that does not decode is left out and reported.
    crls: list[tuple[str, _CRL]] = []
    dropped: list[Dropped] = []
    for i, der in enumerate(ders):
        try:
            crls.append((f"{field}[{i}]", load_crl_der(der)))
        except MalformedCertificateError as exc:
            dropped.append(Dropped(f"{field}[{i}]", "", exc.code, str(exc)))
    return crls, dropped


def check_freshness(
    what: str, issuer: str, issued_ms: int, expires_ms: int, now: float, policy: DirectoryPolicy
) -> None:
    """A signed directory answer's times (SPEC §14.5 step 5, §14.15 step 4), in the order of §8.2.

    One rule for format 1's snapshot and format 2's page: ``what`` names which.
    """
    now_ms = int(now * 1000)
    if expires_ms - issued_ms > policy.max_lifetime * 1000:
        raise LifetimeTooLongError(
            f"{what} lives {(expires_ms - issued_ms) / 1000:.0f} s, beyond "
            f"the maximum of {policy.max_lifetime:.0f} s"
        )
    if now_ms >= expires_ms:
        raise DirectoryExpiredError(
            f"{what} expired at {iso_ms(expires_ms)} ({(now_ms - expires_ms) / 1000:.0f} s ago)",
            source=issuer,
            expired_ms=expires_ms,
        )
    if issued_ms > now_ms + policy.clock_skew * 1000:
        raise NotYetValidError(
            f"{what} is issued {(issued_ms - now_ms) / 1000:.0f} s in the future, "
            f"beyond the allowed clock skew of {policy.clock_skew:.0f} s"
        )


def check_signature(signer: PeerIdentity, signature: bytes, signed: bytes, what: str) -> None:
    """The issuer's signature over a snapshot or a page (its label and body), else
    :class:`BadSignatureError` naming ``what`` (SPEC §14.5 step 4, §14.15 step 7)."""
    try:
        signer.signing_key.verify(signature, signed)
    except InvalidSignature:
        raise BadSignatureError(f"signature on the {what} does not verify") from None


def check_entry_name(field: str, name: str, peer: PeerIdentity) -> None:
    """An entry's chain must certify the name the entry lists."""
    if str(peer.name) != name:
        raise MalformedError(f"{field}.name", f"is {name}, but the certificate names {peer.name}")


def entry_expired(field: str, name: str, cap: int, source: str) -> DirectoryExpiredError:
    """The refusal of an entry whose validity ended at ``cap`` (``source`` issued it)."""
    return DirectoryExpiredError(
        f"{field} ({name}) expired at {iso_ms(cap)}", source=source, expired_ms=cap
    )


def verify_listed(
    entries: Sequence[DirectoryEntry],
    prefix: str,
    wanted: Callable[[NodeName], bool] | None,
    verify: Callable[[int, str, DirectoryEntry], VerifiedEntry],
    dropped: list[Dropped],
) -> tuple[list[VerifiedEntry], list[str], list[int]]:
    """Every entry of a snapshot or a page on its own: those ``wanted`` declines are skipped
    unverified, the others verified by ``verify`` (index, field, entry); one it rejects is
    left out and reported in ``dropped``, the rest of the answer standing.

    Returns the entries verified, the names skipped and the indexes refused, in order.
    """
    verified: list[VerifiedEntry] = []
    skipped: list[str] = []
    refused: list[int] = []
    for i, entry in enumerate(entries):
        field = f"{prefix}[{i}]"
        if wanted is not None and not wanted(NodeName.parse(entry.name)):
            skipped.append(entry.name)
            continue
        try:
            verified.append(verify(i, field, entry))
        except RejectedError as exc:
            dropped.append(Dropped(field, entry.name, exc.code, str(exc)))
            refused.append(i)
    return verified, skipped, refused


def _issuer_entry(snapshot: DirectorySnapshot, certificates: _Certificates) -> int:
    """The index of the entry certifying the key the issuer says it signed with."""
    for i, entry in enumerate(snapshot.entries):
        if entry.name != snapshot.issuer:
            continue
        try:
            key = certificates.get(entry.chain[0], "leaf").public_key()
        except MalformedCertificateError:
            continue
        if isinstance(key, Ed25519PublicKey) and key_id(key) == snapshot.issuer_key_id:
            return i
    raise UnknownSignerError(
        f"directory snapshot of {snapshot.issuer} is signed with key id "
        f"{snapshot.issuer_key_id.hex()}, but no entry of {snapshot.issuer} certifies that key"
    )


def _verify_entry(
    entry: DirectoryEntry,
    field: str,
    certificates: _Certificates,
    trust: TrustStore,
    when: datetime,
) -> tuple[PeerIdentity, tuple[x509.Certificate, ...]]:
    chain = certificates.chain(entry, field)
    peer = verify_node_certificate(chain[0], chain[1:], trust, when)
    check_entry_name(field, entry.name, peer)
    return peer, chain


def verify_snapshot(
    data: bytes,
    trust: TrustStore,
    now: float,
    expected_issuer: str | None,
    *,
    policy: DirectoryPolicy = DEFAULT_DIRECTORY_POLICY,
    wanted: Callable[[NodeName], bool] | None = None,
) -> VerifiedSnapshot:
    """Authenticate a snapshot and verify each entry's chain (SPEC §14.5).

    Raises a ``RejectedError`` if the snapshot as a whole fails: its shape,
    its issuer, its freshness, the issuer's chain or its signature.  An entry
    or CRL that fails on its own is left out and listed in ``dropped``.
    ``wanted`` (``NodeDirectory.accepts_from``) skips entries the caller will
    not use anyway, before their chains cost anything.
    """
    snapshot = decode_snapshot(data, policy)
    if expected_issuer is not None and snapshot.issuer != expected_issuer:
        raise WrongIssuerError(
            f"directory fetched from {expected_issuer} is signed by {snapshot.issuer}"
        )
    what = f"directory snapshot of {snapshot.issuer}"
    check_freshness(what, snapshot.issuer, snapshot.issued_ms, snapshot.expires_ms, now, policy)
    when = instant(now)
    now_ms = int(now * 1000)
    parsed, dropped = _parse_crls(snapshot.crls, "directory.body.crls")
    # The snapshot's CRLs serve before they are authenticated: the chain verifier counts
    # only CRLs genuine under the issuing CA, so a forgery cannot revoke, and an older
    # genuine one cannot un-revoke (revocation is final).
    everything = trust_with(trust, (crl for _, crl in parsed))
    certificates = _Certificates()
    index = _issuer_entry(snapshot, certificates)
    issuer_peer, issuer_chain = _verify_entry(
        snapshot.entries[index], f"directory.body.entries[{index}]", certificates, everything, when
    )
    check_signature(issuer_peer, snapshot.signature, DIRECTORY_LABEL + snapshot.body, what)

    cas = []
    for entry in snapshot.entries:
        for der in entry.chain[1:]:
            try:
                cas.append(certificates.get(der, "CA"))
            except MalformedCertificateError:
                continue
    checked, refused = accept_crls(parsed, cas, everything, when)
    dropped.extend(refused)
    lean = trust_with(trust, checked.current, checked.genuine)

    def verify(i: int, field: str, entry: DirectoryEntry) -> VerifiedEntry:
        valid_until = min(entry.valid_until_ms, snapshot.expires_ms)
        if i == index:
            peer, chain = issuer_peer, issuer_chain
        else:
            peer, chain = _verify_entry(entry, field, certificates, lean, when)
        if valid_until <= now_ms:
            raise entry_expired(field, entry.name, valid_until, snapshot.issuer)
        return VerifiedEntry(peer, chain, entry.address, valid_until)

    verified, skipped, _ = verify_listed(
        snapshot.entries, "directory.body.entries", wanted, verify, dropped
    )
    return VerifiedSnapshot(
        snapshot.issuer,
        snapshot.issued_ms,
        snapshot.expires_ms,
        tuple(verified),
        checked.current.crls,
        tuple(dropped),
        tuple(skipped),
        bytes(data),
        checked.genuine.crls,
    )
