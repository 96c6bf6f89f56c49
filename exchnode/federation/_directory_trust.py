"""Trusting a format-2 page: its issuer, its entries' chains, its CRLs (SPEC §14.15).

Why a module of its own: it is where a page meets the PKI, as
``_directory_verify`` is for a format-1 snapshot, and it holds the one new
piece of state that verification keeps: the :class:`ChainMemo`.

A chain is verified once and remembered.  Format 1 re-verified every chain
of every snapshot every minute (12 s of CPU per pull at a department of a
10,000-node province); with changes only, a chain arrives once, but the
issuer's own chain rides on every page, and a restart or a reset lists rows
again.  The memo maps the chain's digest to what verification said (the
identity and the certificates), **until** the earliest of the chain's
notAfters and the nextUpdate of the CRLs that were current for its CAs when
it was verified: past that, it is verified again in full, so a CA whose CRL
went stale still fails closed as §3.7 step 6 requires.  Revocation is not
remembered: on every use a remembered chain's serials are checked against
the revocations the caller knows (the directory's kept CRLs) and the page's
own genuine CRLs.  The memo is bounded (least recently used out).

Trust never comes from the relay: the page's signature only protects the
pull; each entry stands on its own chain.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from exchnode.core import NodeName, PeerIdentity, key_id
from exchnode.errors import (
    CertificateRevokedError,
    MalformedCertificateError,
    MalformedError,
    ReplayError,
    UnknownSignerError,
    UsageError,
    WrongIssuerError,
)
from exchnode.federation._directory_pages import (
    DEFAULT_PAGE_POLICY,
    PAGE_LABEL,
    Audience,
    DirectoryPage,
    PagePolicy,
    Removed,
    chain_digest,
    decode_page,
    leaf_digest,
)
from exchnode.federation._directory_verify import (
    Dropped,
    VerifiedEntry,
    accept_crls,
    check_entry_name,
    check_freshness,
    check_signature,
    entry_expired,
    instant,
    trust_with,
    verify_listed,
)
from exchnode.federation._directory_wire import (
    DEFAULT_DIRECTORY_POLICY,
    DirectoryEntry,
    DirectoryPolicy,
)
from exchnode.federation._feed import FeedPosition
from exchnode.pki import (
    CrlSet,
    TrustStore,
    load_certificate_der,
    load_crl_der,
    verify_node_certificate,
)

__all__ = ["ChainMemo", "VerifiedCrl", "VerifiedPage", "verify_page"]

_CRL = x509.CertificateRevocationList
Serial = tuple[bytes, int]


@dataclass(frozen=True, slots=True)
class _Remembered:
    identity: PeerIdentity
    certificates: tuple[x509.Certificate, ...]
    serials: tuple[Serial, ...]
    good_until: float


class ChainMemo:
    """Verified chains by digest: see the module docstring."""

    def __init__(self, capacity: int = 65536) -> None:
        if capacity < 1:
            raise UsageError("a chain memo holds at least one chain")
        self.capacity = capacity
        self._chains: OrderedDict[bytes, _Remembered] = OrderedDict()
        #: How many chains were verified in full (a figure for the benchmark and the tests).
        self.verified = 0
        self._windows: tuple[TrustStore, datetime, dict[bytes, list[tuple[float, float]]]] | None
        self._windows = None

    def __len__(self) -> int:
        return len(self._chains)

    def verify(
        self,
        chain: Sequence[bytes],
        trust: TrustStore,
        now: float,
        revoked: Callable[[Serial], bool],
        field: str,
    ) -> tuple[PeerIdentity, tuple[x509.Certificate, ...]]:
        """The identity ``chain`` certifies (SPEC §3.7), from memory when it may be."""
        digest = chain_digest(chain)
        held = self._chains.get(digest)
        if held is not None and now <= held.good_until:
            self._chains.move_to_end(digest)
            for serial in held.serials:
                if revoked(serial):
                    raise CertificateRevokedError(
                        f"{field}: a certificate of the chain of {held.identity.name} is revoked"
                    )
            return held.identity, held.certificates
        certificates = []
        for j, der in enumerate(chain):
            try:
                certificates.append(load_certificate_der(der))
            except MalformedCertificateError as exc:
                raise MalformedCertificateError(f"{field}.chain[{j}]: {exc}") from None
        when = instant(now)
        peer = verify_node_certificate(certificates[0], certificates[1:], trust, when)
        self.verified += 1
        serials = tuple((c.issuer.public_bytes(), c.serial_number) for c in certificates)
        if self._windows is None or self._windows[0] is not trust or self._windows[1] != when:
            self._windows = (trust, when, _crl_windows(trust, when))
        self._chains[digest] = _Remembered(
            peer, tuple(certificates), serials, _good_until(certificates, self._windows[2])
        )
        if len(self._chains) > self.capacity:
            self._chains.popitem(last=False)
        return peer, tuple(certificates)


def _good_until(
    certificates: Sequence[x509.Certificate], updates: Mapping[bytes, list[tuple[float, float]]]
) -> float:
    """The earliest notAfter of the chain and nextUpdate of the CRLs that made it verify."""
    ends = [cert.not_valid_after_utc.timestamp() for cert in certificates]
    for cert in certificates:
        windows = updates.get(cert.issuer.public_bytes())
        if windows:
            ends.append(max(next_update for _, next_update in windows))
    return min(ends)


def _crl_windows(trust: TrustStore, when: datetime) -> dict[bytes, list[tuple[float, float]]]:
    """Per issuer DN, the (thisUpdate, nextUpdate) of its CRLs in ``trust`` current at ``when``."""
    windows: dict[bytes, list[tuple[float, float]]] = {}
    for crl in trust.crls:
        next_update = crl.next_update_utc
        if next_update is not None and crl.last_update_utc <= when < next_update:
            windows.setdefault(crl.issuer.public_bytes(), []).append(
                (crl.last_update_utc.timestamp(), next_update.timestamp())
            )
    return windows


@dataclass(frozen=True, slots=True)
class VerifiedCrl:
    """A CRL a page brought that passed the one CRL check, with its CA's chain to re-serve."""

    crl: _CRL
    ca_chain: tuple[bytes, ...]


@dataclass(frozen=True, slots=True, eq=False)
class VerifiedPage:
    """What ``verify_page`` vouches for, and what it left out."""

    issuer: str
    issued_ms: int
    expires_ms: int
    audience: Audience
    since: FeedPosition
    next: FeedPosition
    reset: bool
    more: bool
    #: Each with ``valid_until_ms`` = the row's own cap (``MAX_TIME_MS``: none).
    entries: tuple[VerifiedEntry, ...]
    removed: tuple[Removed, ...]
    #: Genuine under a verified CA and current: kept and served.
    crls: tuple[VerifiedCrl, ...]
    #: Genuine whatever their dates: what they list is revoked (SPEC §3.6).
    revoking: tuple[_CRL, ...]
    unknown: tuple[str, ...]
    dropped: tuple[Dropped, ...]
    #: Names left unverified because the caller's ``wanted`` declined them.
    skipped: tuple[str, ...]
    #: (name, leaf digest) of every entry the page lists, whatever became of it.
    listed: tuple[tuple[str, bytes], ...] = ()
    #: (name, leaf digest) of the entries verification refused.
    refused: tuple[tuple[str, bytes], ...] = ()


def _issuer_identity(
    page: DirectoryPage,
    memo: ChainMemo,
    trust: TrustStore,
    now: float,
    revoked: Callable[[Serial], bool],
) -> PeerIdentity:
    try:
        leaf = load_certificate_der(page.issuer_chain[0])
    except MalformedCertificateError as exc:
        raise MalformedCertificateError(f"page.issuer_chain[0]: {exc}") from None
    key = leaf.public_key()
    if not isinstance(key, Ed25519PublicKey) or key_id(key) != page.issuer_key_id:
        raise UnknownSignerError(
            f"directory page of {page.issuer} is signed with key id {page.issuer_key_id.hex()}, "
            "which its issuer_chain does not certify"
        )
    peer, _ = memo.verify(page.issuer_chain, trust, now, revoked, "page.issuer_chain")
    if str(peer.name) != page.issuer:
        raise MalformedError("page.issuer_chain", f"certifies {peer.name}, not {page.issuer}")
    return peer


def verify_page(
    data: bytes,
    trust: TrustStore,
    now: float,
    expected_issuer: str,
    audience: Audience,
    *,
    memo: ChainMemo,
    since: FeedPosition | None = None,
    revoked: Callable[[Serial], bool] = lambda serial: False,
    cas: Sequence[x509.Certificate] = (),
    known_crls: Collection[bytes] = (),
    wanted: Callable[[NodeName], bool] | None = None,
    policy: PagePolicy = DEFAULT_PAGE_POLICY,
    freshness: DirectoryPolicy = DEFAULT_DIRECTORY_POLICY,
) -> VerifiedPage:
    """Authenticate a page and verify each entry's chain (SPEC §14.15).

    ``trust``: the local roots and every CRL the caller keeps (a page brings
    only the CRLs that changed).  ``since``: the position the caller asked
    from; a page answering another is refused (``replayed``).  ``revoked``:
    whether the caller knows a (issuer DN, serial) revoked, for remembered
    chains.  ``cas``: more candidate CA certificates for the page's CRLs;
    ``known_crls``: the DER of CRLs the caller has accepted already, not
    checked again (they are in ``trust``).
    Raises a ``RejectedError`` if the page as a whole fails; an entry or CRL
    that fails on its own is left out and listed in ``dropped``.
    """
    page = decode_page(data, policy)
    if page.issuer != expected_issuer:
        raise WrongIssuerError(
            f"directory page fetched from {expected_issuer} is signed by {page.issuer}"
        )
    if page.audience is not audience:
        raise MalformedError(
            "page.audience", f"is {page.audience.name.lower()}, asked for {audience.name.lower()}"
        )
    if audience is not Audience.LOOKUP and page.since != (since or FeedPosition(b"", 0)):
        raise ReplayError(f"directory page of {page.issuer} answers another position than asked")
    what = f"directory page of {page.issuer}"
    check_freshness(what, page.issuer, page.issued_ms, page.expires_ms, now, freshness)
    parsed: list[tuple[str, _CRL, tuple[bytes, ...]]] = []
    dropped: list[Dropped] = []
    for i, row in enumerate(page.crls):
        if row.crl in known_crls:  # accepted before (a reset lists them again): not twice
            continue
        try:
            parsed.append((f"page.crls[{i}]", load_crl_der(row.crl), row.ca_chain))
        except MalformedCertificateError as exc:
            dropped.append(Dropped(f"page.crls[{i}]", "", exc.code, str(exc)))
    everything = trust_with(trust, (crl for _, crl, _ in parsed)) if parsed else trust
    issuer = _issuer_identity(page, memo, everything, now, revoked)
    check_signature(issuer, page.signature, PAGE_LABEL + page.body, what)

    # SPEC §14.15 step 8: each CRL under the CAs of its own chain (and the asker's and the
    # issuer's): a CA verified once per CRL, not once per certificate on the page.
    shared = [*cas, *_certificates(page.issuer_chain[1:])]
    accepted: list[_CRL] = []
    trusted: list[_CRL] = []
    for field, crl, ca_chain in parsed:
        checked, refused = accept_crls(
            [(field, crl)], [*shared, *_certificates(ca_chain)], everything, instant(now)
        )
        dropped.extend(refused)
        accepted.extend(checked.current)
        trusted.extend(checked.genuine)
    current, genuine = CrlSet(accepted), CrlSet(trusted)
    newly = genuine.revoked()

    def is_revoked(serial: Serial) -> bool:
        return serial in newly or revoked(serial)

    lean = trust_with(trust, current, genuine) if parsed else trust
    current_ders = {_der(crl) for crl in current}
    crls = tuple(VerifiedCrl(crl, chain) for _, crl, chain in parsed if _der(crl) in current_ders)
    # The issuer's own chain, against what this page revokes too (remembered by now).
    memo.verify(page.issuer_chain, lean, now, is_revoked, "page.issuer_chain")

    now_ms = int(now * 1000)
    listed = tuple((entry.name, leaf_digest(entry.chain[0])) for entry in page.entries)

    def verify(i: int, field: str, entry: DirectoryEntry) -> VerifiedEntry:
        peer, certificates = memo.verify(entry.chain, lean, now, is_revoked, field)
        check_entry_name(field, entry.name, peer)
        cap = (
            min(entry.valid_until_ms, page.expires_ms)
            if audience is Audience.LOOKUP
            else entry.valid_until_ms
        )
        # A feed's row past its cap is kept, dead, so that a lookup says "expired" and
        # from where (SPEC §14.9); a lookup answer has nothing to say for a dead entry.
        if cap <= now_ms and audience is Audience.LOOKUP:
            raise entry_expired(field, entry.name, cap, page.issuer)
        return VerifiedEntry(peer, certificates, entry.address, cap)

    verified, skipped, refused_at = verify_listed(
        page.entries, "page.entries", wanted, verify, dropped
    )
    refused_keys = [listed[i] for i in refused_at]
    return VerifiedPage(
        page.issuer,
        page.issued_ms,
        page.expires_ms,
        page.audience,
        page.since,
        page.next,
        page.reset,
        page.more,
        tuple(verified),
        page.removed,
        crls,
        genuine.crls,
        page.unknown,
        tuple(dropped),
        tuple(skipped),
        listed,
        tuple(refused_keys),
    )


def _certificates(ders: Sequence[bytes]) -> list[x509.Certificate]:
    """The certificates that parse; one that does not simply is no candidate."""
    certificates = []
    for der in ders:
        try:
            certificates.append(load_certificate_der(der))
        except MalformedCertificateError:
            continue
    return certificates


def _der(crl: _CRL) -> bytes:
    return crl.public_bytes(serialization.Encoding.DER)
