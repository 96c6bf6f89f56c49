"""Directory format 2 on the wire: signed pages of changes, lookups (SPEC §14.13-§14.17).

Why a module of its own: format 1 (``_directory_wire``) ships a node's whole
snapshot on every pull, which at a province hub is a gigabyte a minute and
past its own entry limit.  Format 2 ships *changes*: a server numbers every
change of a row it serves (``_feed``), and a neighbour asks for what changed
after its position, one bounded **page** at a time.  A lookup for a few
names is answered with a page of the same form.  This module is the bytes
and nothing else: trusting a page is ``_directory_verify``, holding what was
trusted is ``_directory``.

    page      = [format=2, body: bin, signature: bin(64)]
    body      = [issuer: str, issuer_key_id: bin(16), issuer_chain: [bin],
                 issued: uint, expires: uint, audience: uint,
                 since: [feed: bin, seq: uint], next: [feed: bin, seq: uint],
                 reset: bool, more: bool,
                 entries: [[name, chain: [bin], address, valid_until]],
                 removed: [[name, leaf_digest: bin(32)]],
                 crls: [[crl: bin, ca_chain: [bin]]],
                 unknown: [name]]
    signature = Ed25519(issuer, "exchnode/v1 directory page" 0x00 || body)
    lookup    = [format=2, names: [name]]

Every page carries the chain that certifies its signing key (``issuer_chain``),
so that it verifies on its own, whatever the asker holds; a chain is verified
once and remembered by its digest, so this costs a hash, not a verification.
An entry's ``valid_until`` is the row's own cap, ``MAX_TIME_MS`` when it has
none: the page's ``expires`` vouches for every row the asker holds from that
feed (SPEC §14.15), so a change-only exchange never has to re-send a row to
extend its life.  A CRL travels with its CA's chain, so that a node holding
no entry under that CA can still check it: revocations reach every node.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from exchnode.core import (
    KEY_ID_LENGTH,
    LocalIdentity,
    check_name,
    check_time,
    pack,
    require_canonical,
    unpack,
)
from exchnode.errors import MalformedError, UnsupportedVersionError, UsageError
from exchnode.federation._directory_wire import (
    MAX_ENTRY_CHAIN,
    MAX_TIME_MS,
    DirectoryEntry,
    _bin,
    _Reader,
    check_address,
    own_chain_der,
    signed_frame,
)
from exchnode.federation._feed import FeedPosition, check_feed_position

__all__ = [
    "DEFAULT_PAGE_POLICY",
    "LEAF_DIGEST_BYTES",
    "MAX_LOOKUP_NAMES",
    "PAGE_FORMAT",
    "PAGE_LABEL",
    "Audience",
    "CrlRow",
    "DirectoryPage",
    "PagePolicy",
    "Removed",
    "chain_digest",
    "decode_lookup",
    "decode_page",
    "encode_lookup",
    "leaf_digest",
    "sign_page",
]

PAGE_FORMAT = 2
PAGE_LABEL = b"exchnode/v1 directory page\x00"
LEAF_DIGEST_BYTES = 32
MAX_LOOKUP_NAMES = 64
_BODY_FIELDS = 14
_NO_POSITION = FeedPosition(b"", 0)


class Audience(enum.IntEnum):
    """Whom a page speaks to; a page for one audience is refused as another's."""

    #: What a node says to its parent: its subtree (itself and what its children said).
    UP = 0
    #: What a node says to its children: its path (itself and its ancestors).
    DOWN = 1
    #: An answer to a lookup (SPEC §14.16).
    LOOKUP = 2


@dataclass(frozen=True, slots=True)
class PagePolicy:
    """Bounds of one page (SPEC §14.14).  There is no bound on a feed: it is paged."""

    max_page_bytes: int = 8 * 1024 * 1024
    max_entries: int = 1024
    max_removed: int = 4096
    max_crls: int = 256
    max_certificate_bytes: int = 4096
    max_crl_bytes: int = 1024 * 1024

    def __post_init__(self) -> None:
        if (
            min(
                self.max_page_bytes,
                self.max_entries,
                self.max_removed,
                self.max_crls,
                self.max_certificate_bytes,
                self.max_crl_bytes,
            )
            < 1
        ):
            raise UsageError("page limits must be positive")


DEFAULT_PAGE_POLICY = PagePolicy()


class Removed(NamedTuple):
    """A row the server no longer serves: the name and the SHA-256 of the leaf's DER."""

    name: str
    leaf_digest: bytes


class CrlRow(NamedTuple):
    """A CRL and the chain of its CA (the CA first, up to but excluding the root)."""

    crl: bytes
    ca_chain: tuple[bytes, ...]


class DirectoryPage(NamedTuple):
    """A decoded, shape-checked page: not yet authenticated (``verify_page``)."""

    issuer: str
    issuer_key_id: bytes
    issuer_chain: tuple[bytes, ...]
    issued_ms: int
    expires_ms: int
    audience: Audience
    since: FeedPosition
    next: FeedPosition
    reset: bool
    more: bool
    entries: tuple[DirectoryEntry, ...]
    removed: tuple[Removed, ...]
    crls: tuple[CrlRow, ...]
    unknown: tuple[str, ...]
    body: bytes
    signature: bytes


def leaf_digest(leaf_der: bytes) -> bytes:
    """How a removal names a row: SHA-256 of its leaf certificate's DER."""
    return hashlib.sha256(leaf_der).digest()


def chain_digest(chain: Sequence[bytes]) -> bytes:
    """What a verified chain is remembered by: SHA-256 of the canonical array of its DERs."""
    return hashlib.sha256(pack(list(chain))).digest()


# --- signing ---------------------------------------------------------------------------


def sign_page(
    identity: LocalIdentity,
    *,
    issued_ms: int,
    expires_ms: int,
    audience: Audience,
    since: FeedPosition | None,
    next: FeedPosition | None,
    reset: bool,
    more: bool,
    entries: Iterable[DirectoryEntry],
    removed: Iterable[Removed] = (),
    crls: Iterable[CrlRow] = (),
    unknown: Iterable[str] = (),
    policy: PagePolicy = DEFAULT_PAGE_POLICY,
) -> bytes:
    """Sign one page (SPEC §14.14); whatever an asker would refuse is a ``UsageError`` here."""
    if not 0 <= issued_ms < expires_ms <= MAX_TIME_MS:
        raise UsageError("a page needs 0 <= issued < expires <= 2^53 - 1 ms")
    rows = sorted({(e.name, e.chain[0]): e for e in entries}.items())
    gone = sorted(set(removed))
    crl_rows = sorted({row.crl: row for row in crls}.values())
    names = sorted(set(unknown))
    if len(rows) > policy.max_entries or len(gone) > policy.max_removed:
        raise UsageError(f"a page holds at most {policy.max_entries} entries and removals")
    if len(crl_rows) > policy.max_crls or len(names) > MAX_LOOKUP_NAMES:
        raise UsageError(f"a page holds at most {policy.max_crls} CRLs, {MAX_LOOKUP_NAMES} unknown")
    if audience is not Audience.LOOKUP and names:
        raise UsageError("only a lookup answer lists unknown names")
    for _, entry in rows:
        if not 1 <= len(entry.chain) <= MAX_ENTRY_CHAIN:
            raise UsageError(f"entry {entry.name}: a chain of 1..{MAX_ENTRY_CHAIN} certificates")
    body = pack(
        [
            str(identity.name),
            identity.peer.signing_key_id,
            list(own_chain_der(identity)),
            issued_ms,
            expires_ms,
            int(audience),
            list(since or _NO_POSITION),
            list(next or _NO_POSITION),
            reset,
            more,
            [[e.name, list(e.chain), e.address, e.valid_until_ms] for _, e in rows],
            [[r.name, r.leaf_digest] for r in gone],
            [[r.crl, list(r.ca_chain)] for r in crl_rows],
            names,
        ]
    )
    data = pack([PAGE_FORMAT, body, identity.signing_private_key.sign(PAGE_LABEL + body)])
    if len(data) > policy.max_page_bytes:
        raise UsageError(f"the page is {len(data)} bytes, beyond {policy.max_page_bytes}")
    return data


# --- decoding --------------------------------------------------------------------------


def _chain(reader: _Reader, field: str, low: int, policy: PagePolicy) -> tuple[bytes, ...]:
    count = reader.array(field, low, MAX_ENTRY_CHAIN, limit=True)
    return tuple(
        _bin(reader.value(f"{field}[{j}]"), f"{field}[{j}]", policy.max_certificate_bytes)
        for j in range(count)
    )


def _position(reader: _Reader, field: str) -> FeedPosition:
    reader.array(field, 2, 2)
    return check_feed_position(reader.value(f"{field}.feed"), reader.value(f"{field}.seq"), field)


def _bool(value: object, field: str) -> bool:
    if type(value) is not bool:
        raise MalformedError(field, "must be a boolean")
    return value


def decode_page(data: bytes, policy: PagePolicy = DEFAULT_PAGE_POLICY) -> DirectoryPage:
    """Parse and shape-check a page (SPEC §14.14); raise only ``RejectedError``."""
    if isinstance(data, bytearray | memoryview):
        data = bytes(data)
    if type(data) is not bytes:
        raise MalformedError("directory page", "must be bytes")
    body, signature = signed_frame(
        data, "directory page", policy.max_page_bytes, PAGE_FORMAT, "(2)"
    )

    f = "page"
    reader = _Reader(body)
    reader.array(f, _BODY_FIELDS, _BODY_FIELDS)
    issuer = check_name(reader.value(f"{f}.issuer"), f"{f}.issuer")
    key = reader.value(f"{f}.issuer_key_id")
    if type(key) is not bytes or len(key) != KEY_ID_LENGTH:
        raise MalformedError(f"{f}.issuer_key_id", f"must be {KEY_ID_LENGTH} bytes")
    issuer_chain = _chain(reader, f"{f}.issuer_chain", 1, policy)
    issued = check_time(reader.value(f"{f}.issued"), f"{f}.issued")
    expires = check_time(reader.value(f"{f}.expires"), f"{f}.expires")
    if expires <= issued:
        raise MalformedError(f"{f}.expires", "must be after issued")
    audience_value = reader.value(f"{f}.audience")
    if type(audience_value) is not int or audience_value not in (0, 1, 2):
        raise MalformedError(f"{f}.audience", "must be 0 (up), 1 (down) or 2 (lookup)")
    audience = Audience(audience_value)
    since = _position(reader, f"{f}.since")
    next_position = _position(reader, f"{f}.next")
    reset = _bool(reader.value(f"{f}.reset"), f"{f}.reset")
    more = _bool(reader.value(f"{f}.more"), f"{f}.more")

    entries: list[DirectoryEntry] = []
    count = reader.array(f"{f}.entries", 0, policy.max_entries, limit=True)
    for i in range(count):
        field = f"{f}.entries[{i}]"
        reader.array(field, 4, 4)
        name = check_name(reader.value(f"{field}.name"), f"{field}.name")
        chain = _chain(reader, f"{field}.chain", 1, policy)
        address = check_address(reader.value(f"{field}.address"), f"{field}.address")
        valid_until = check_time(reader.value(f"{field}.valid_until"), f"{field}.valid_until")
        if entries and (name, chain[0]) <= (entries[-1].name, entries[-1].chain[0]):
            raise MalformedError(field, "entries must be sorted by (name, leaf) and unique")
        entries.append(DirectoryEntry(name, chain, address, valid_until))
    removed: list[Removed] = []
    count = reader.array(f"{f}.removed", 0, policy.max_removed, limit=True)
    for i in range(count):
        field = f"{f}.removed[{i}]"
        reader.array(field, 2, 2)
        name = check_name(reader.value(f"{field}.name"), f"{field}.name")
        digest = reader.value(f"{field}.leaf_digest")
        if type(digest) is not bytes or len(digest) != LEAF_DIGEST_BYTES:
            raise MalformedError(f"{field}.leaf_digest", f"must be {LEAF_DIGEST_BYTES} bytes")
        if removed and (name, digest) <= removed[-1]:
            raise MalformedError(field, "removals must be sorted and unique")
        removed.append(Removed(name, digest))
    crls: list[CrlRow] = []
    count = reader.array(f"{f}.crls", 0, policy.max_crls, limit=True)
    for i in range(count):
        field = f"{f}.crls[{i}]"
        reader.array(field, 2, 2)
        der = _bin(reader.value(f"{field}.crl"), f"{field}.crl", policy.max_crl_bytes)
        ca_chain = _chain(reader, f"{field}.ca_chain", 0, policy)
        if crls and der <= crls[-1].crl:
            raise MalformedError(field, "CRLs must be sorted and unique")
        crls.append(CrlRow(der, ca_chain))
    unknown: list[str] = []
    count = reader.array(f"{f}.unknown", 0, MAX_LOOKUP_NAMES, limit=True)
    for i in range(count):
        name = check_name(reader.value(f"{f}.unknown[{i}]"), f"{f}.unknown[{i}]")
        if unknown and name <= unknown[-1]:
            raise MalformedError(f"{f}.unknown[{i}]", "names must be sorted and unique")
        unknown.append(name)
    reader.end(f)
    if audience is not Audience.LOOKUP and unknown:
        raise MalformedError(f"{f}.unknown", "only a lookup answer lists unknown names")
    fields = [
        issuer,
        key,
        list(issuer_chain),
        issued,
        expires,
        audience_value,
        list(since),
        list(next_position),
        reset,
        more,
        [[e.name, list(e.chain), e.address, e.valid_until_ms] for e in entries],
        [list(r) for r in removed],
        [[r.crl, list(r.ca_chain)] for r in crls],
        unknown,
    ]
    require_canonical(fields, body, what="directory page.body")
    return DirectoryPage(
        issuer,
        key,
        issuer_chain,
        issued,
        expires,
        audience,
        since,
        next_position,
        reset,
        more,
        tuple(entries),
        tuple(removed),
        tuple(crls),
        tuple(unknown),
        body,
        signature,
    )


def encode_lookup(names: Iterable[str]) -> bytes:
    """A lookup request: 1..64 node names, sorted and unique."""
    wanted = sorted(set(names))
    if not 1 <= len(wanted) <= MAX_LOOKUP_NAMES:
        raise UsageError(f"a lookup names 1..{MAX_LOOKUP_NAMES} nodes")
    return pack([PAGE_FORMAT, wanted])


def decode_lookup(data: bytes) -> tuple[str, ...]:
    """The names a lookup asks for, or ``RejectedError``."""
    value = unpack(
        bytes(data), what="directory lookup", max_size=64 * 1024, max_array=MAX_LOOKUP_NAMES
    )
    if type(value) is not list or len(value) != 2 or type(value[1]) is not list:
        raise MalformedError("directory lookup", "expected [format, names]")
    if value[0] != PAGE_FORMAT or type(value[0]) is not int:
        raise UnsupportedVersionError(f"directory lookup format {value[0]!r} is not supported (2)")
    names: list[str] = []
    for i, name in enumerate(value[1]):
        checked = check_name(name, f"directory lookup.names[{i}]")
        if names and checked <= names[-1]:
            raise MalformedError(f"directory lookup.names[{i}]", "must be sorted and unique")
        names.append(checked)
    if not names:
        raise MalformedError("directory lookup.names", f"must hold 1..{MAX_LOOKUP_NAMES} names")
    require_canonical(value, bytes(data), what="directory lookup")
    return tuple(names)
