"""The rows of the node directory: records as held, per-source expiry, rows as stored.

Why a module of its own: these are the values ``NodeDirectory`` (``_directory``)
keeps and hands to the store -- one record per certificate of a node, with
where it came from and the feed expiry that renews it (SPEC §14.15), the
state of one pulled feed, and the byte forms of the rows a node keeps per
entry and per CRL -- with none of the logic that decides what to hold.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from exchnode.core import NodeName, PeerIdentity, check_name, pack, parent_hub, unpack
from exchnode.errors import MalformedError, RejectedError
from exchnode.federation._directory_pages import CrlRow, leaf_digest
from exchnode.federation._directory_verify import Dropped, VerifiedEntry
from exchnode.federation._directory_wire import (
    MAX_ENTRY_CHAIN,
    MAX_TIME_MS,
    DirectoryEntry,
    check_address,
)
from exchnode.federation._feed import FeedCursor, FeedPosition

__all__ = [
    "FOREVER",
    "Expiry",
    "LookupReport",
    "PageReport",
    "PullState",
    "Record",
    "RestoreOutcome",
    "UpdateReport",
    "ancestors",
    "authority_key",
    "ca_chain",
    "certificates_of",
    "decode_crl_row",
    "decode_pull_state",
    "decode_row",
    "encode_crl_row",
    "encode_row",
    "row_size",
]


class Expiry:
    """How long a source's feed vouches for what it sent: its latest complete page's ``expires``.

    One per source, shared by the source's records, so that a page that
    renews the feed renews every row held from it without touching them
    (SPEC §14.15).
    """

    __slots__ = ("ms",)

    def __init__(self, ms: int) -> None:
        self.ms = ms


FOREVER = Expiry(MAX_TIME_MS)  # own, static and looked-up records: never changed


@dataclass(frozen=True, slots=True, eq=False)
class Record:
    """One certificate of one node as this node holds it, and where it came from."""

    entry: VerifiedEntry
    source: str
    #: The leaf's DER (the raw signing key for a certificate-less static peer).
    leaf: bytes
    rank: tuple[float, int]
    not_after_ms: int
    #: (issuer DN, serial) of every certificate of the chain, for revocation.
    serials: tuple[tuple[bytes, int], ...]
    #: The chain as DER, to re-serve without encoding it again.
    chain: tuple[bytes, ...]
    #: The source's feed expiry; the entry's own ``valid_until_ms`` is its cap.
    feed: Expiry

    @classmethod
    def of(cls, entry: VerifiedEntry, source: str, feed: Expiry = FOREVER) -> Record:
        leaf = entry.identity.certificate
        if leaf is None:
            return cls(
                entry,
                source,
                entry.identity.signing_key_raw,
                (float("-inf"), 0),
                MAX_TIME_MS,
                (),
                (),
                feed,
            )
        return cls(
            entry,
            source,
            leaf.public_bytes(serialization.Encoding.DER),
            (leaf.not_valid_before_utc.timestamp(), leaf.serial_number),
            int(leaf.not_valid_after_utc.timestamp() * 1000),
            tuple((cert.issuer.public_bytes(), cert.serial_number) for cert in entry.certificates),
            entry.to_entry().chain,
            feed,
        )

    @property
    def valid_until_ms(self) -> int:
        """The entry's effective expiry: its own cap and its source's feed (SPEC §14.15)."""
        return min(self.entry.valid_until_ms, self.feed.ms)

    def live(self, now_ms: int) -> bool:
        # X.509 notAfter is inclusive (SPEC §3.7 step 2); directory expiry is not (§14.9).
        return now_ms < self.valid_until_ms and now_ms <= self.not_after_ms


def certificates_of(peer: PeerIdentity) -> tuple[x509.Certificate, ...]:
    return () if peer.certificate is None else (peer.certificate,)


class UpdateReport(NamedTuple):
    """What one snapshot changed, for the node's log."""

    source: str
    #: Names taken from this source.
    accepted: tuple[str, ...]
    #: Names this source may not speak for (ignored); echoes of our own data land here.
    out_of_scope: tuple[str, ...]
    #: Names whose superseded certificate is kept until its entry expires (key rotation).
    retained: tuple[str, ...]
    #: What verification left out of the snapshot.
    dropped: tuple[Dropped, ...]


class RestoreOutcome(NamedTuple):
    """The fate of one cached snapshot at restart: applied (``report``) or not (``error``)."""

    source: str
    report: UpdateReport | None
    error: RejectedError | None


class PageReport(NamedTuple):
    """What one page of a source's feed changed: for the node's log and its store."""

    source: str
    #: Ask again at once: the feed has more after this page.
    more: bool
    accepted: tuple[str, ...]
    out_of_scope: tuple[str, ...]
    dropped: tuple[Dropped, ...]
    #: Rows to store: (name, leaf digest, row bytes for ``restore_pull``).
    rows: tuple[tuple[str, bytes, bytes], ...]
    #: Rows to delete: (name, leaf digest).
    gone: tuple[tuple[str, bytes], ...]
    #: CRL rows to store: (CA key, row bytes), one per CA (the newest replaces the older).
    crls: tuple[tuple[bytes, bytes], ...]
    #: The feed position and expiry to store (None in a reset's listing: keep none).
    state: bytes | None


class LookupReport(NamedTuple):
    """What a lookup answer brought."""

    source: str
    found: tuple[str, ...]
    unknown: tuple[str, ...]
    dropped: tuple[Dropped, ...]
    #: Rows to store, (name, leaf digest, row bytes for ``restore_lookups``), replacing
    #: whatever was stored for those names.
    rows: tuple[tuple[str, bytes, bytes], ...] = ()
    #: Names that left the cache (least recently used): their stored rows go too.
    evicted: tuple[str, ...] = ()


class PullState:
    """This node's side of one source's feed: position, expiry, the rows and CRLs it said."""

    def __init__(self, held: Iterable[Record]) -> None:
        self.cursor: FeedCursor[tuple[str, bytes]] = FeedCursor()
        self.expiry = Expiry(0)
        self.issued_ms = 0
        self.records: dict[tuple[str, bytes], Record] = {
            (r.entry.name, leaf_digest(r.leaf)): r for r in held
        }
        #: The CRL rows this source sent (CA key → row), as stored: for the footprint only.
        self.crl_rows: dict[bytes, bytes] = {}


def ancestors(name: NodeName) -> list[str]:
    """The hubs above ``name`` in the plain hierarchy, its path to the root."""
    path = []
    parent = parent_hub(str(name))
    while parent is not None:
        path.append(parent)
        parent = parent_hub(parent)
    return path


def ca_chain(issuer: x509.Name, cas: Sequence[x509.Certificate]) -> tuple[bytes, ...]:
    """The chain of the CA named ``issuer`` among ``cas``, up to but excluding the root."""
    by_subject = {cert.subject: cert for cert in cas}
    chain: list[bytes] = []
    cert = by_subject.get(issuer)
    while cert is not None and cert.subject != cert.issuer and len(chain) < MAX_ENTRY_CHAIN:
        chain.append(cert.public_bytes(serialization.Encoding.DER))
        cert = by_subject.get(cert.issuer)
    return tuple(chain)


def authority_key(crl: x509.CertificateRevocationList) -> bytes:
    """Which CA a CRL is of, as the feed keys it: issuer DN and authority key id."""
    try:
        aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        key = aki.key_identifier or b""
    except x509.ExtensionNotFound:
        key = b""
    return hashlib.sha256(pack([crl.issuer.public_bytes(), key])).digest()


def row_size(row: DirectoryEntry | CrlRow) -> int:
    if isinstance(row, DirectoryEntry):
        return 64 + len(row.address) + sum(len(der) + 3 for der in row.chain)
    return 16 + len(row.crl) + sum(len(der) + 3 for der in row.ca_chain)


def encode_row(record: Record) -> bytes:
    entry = record.entry
    return pack([1, entry.name, list(record.chain), entry.address, entry.valid_until_ms])


def decode_row(data: bytes) -> DirectoryEntry:
    value = unpack(data, what="directory row", max_size=64 * 1024, max_array=8)
    if (
        type(value) is not list
        or len(value) != 5
        or value[0] != 1
        or type(value[2]) is not list
        or not all(type(der) is bytes for der in value[2])
        or not value[2]
        or type(value[4]) is not int
    ):
        raise MalformedError("directory row", "expected [1, name, chain, address, valid_until]")
    name = check_name(value[1], "directory row.name")
    address = check_address(value[3], "directory row.address")
    return DirectoryEntry(name, tuple(value[2]), address, value[4])


def encode_crl_row(der: bytes, ca_chain: tuple[bytes, ...], ca_key: bytes | None) -> bytes:
    """A CRL row as stored: with its CA's chain (re-served) or, kept for itself, its CA's key.

    ``[crl, ca_chain]`` when this node serves the CRL onwards (SPEC §14.14: the
    chain travels with it); ``[crl, [], ca_key]`` (the CA's raw Ed25519 key,
    32 bytes) when it serves it to no one, so a department keeps ~250 bytes a
    CA instead of ~1 KB (§14.15).  A root's CRL is ``[crl, []]``: the root is
    in the trust store.
    """
    if ca_key is None:
        return pack([der, list(ca_chain)])
    return pack([der, [], ca_key])


def decode_crl_row(data: bytes) -> tuple[bytes, tuple[bytes, ...], bytes | None]:
    """``encode_crl_row``'s ``(crl, ca_chain, ca_key)``; either the chain or the key is empty."""
    value = unpack(data, what="directory CRL row", max_size=2 * 1024 * 1024, max_array=8)
    if (
        type(value) is not list
        or len(value) not in (2, 3)
        or type(value[0]) is not bytes
        or type(value[1]) is not list
        or not all(type(der) is bytes for der in value[1])
    ):
        raise MalformedError("directory CRL row", "expected [crl, ca_chain] or [crl, [], ca_key]")
    if len(value) == 2:
        return value[0], tuple(value[1]), None
    if value[1] or type(value[2]) is not bytes or len(value[2]) != 32:
        raise MalformedError("directory CRL row", "expected [crl, [], 32-byte ca_key]")
    return value[0], (), value[2]


def decode_pull_state(data: bytes) -> tuple[FeedPosition, int, int]:
    value = unpack(data, what="directory pull state", max_size=256, max_array=8)
    if type(value) is not list or len(value) != 5 or value[0] != 1:
        raise MalformedError("directory pull state", "expected [1, feed, seq, expires, issued]")
    position = FeedPosition(value[1], value[2]) if type(value[1]) is bytes else None
    if position is None or type(value[2]) is not int or type(value[3]) is not int:
        raise MalformedError("directory pull state", "expected [1, feed, seq, expires, issued]")
    if type(value[4]) is not int:
        raise MalformedError("directory pull state.issued", "must be an integer")
    return position, value[3], value[4]
