"""The node directory's snapshot on the wire: its form, signing, decoding (SPEC §14.2-14.4).

Why a module of its own: this is the part of the directory that is protocol
bytes and nothing else.  :func:`sign_snapshot` writes what a node serves and
:func:`decode_snapshot` reads what a neighbour served, both bounded by one
:class:`DirectoryPolicy`; neither looks at a certificate's meaning.  Trusting
a snapshot is ``_directory_verify``; holding what was trusted is
``_directory``.

Every node signs a **snapshot** of what it knows -- each node's certificate
chain and address, and the newest CRL of every CA -- and its parent and
children pull it.  It is signed by its issuer so that a pull cannot be
tampered with or replayed out of date.  Each entry carries ``valid_until``:
the issuer stamps its own entries with the snapshot's expiry (this signature
vouches for them anew) and caps every relayed one at it, so re-signing never
lengthens an entry's life (SPEC §14.8).  Whatever peers would refuse, signing
refuses as a ``UsageError``, so a node never serves what its neighbours must
reject.  Decoding checks counts before it builds arrays, and names the field
that breaks a limit (SPEC §14.4).

    snapshot = [format=1, body: bin, signature: bin(64)]
    body     = [issuer: str, issuer_key_id: bin(16), issued_ms: uint,
                expires_ms: uint, entries: [entry], crls: [bin]]
    entry    = [name: str, chain: [bin], address: str, valid_until_ms: uint]
    signature = Ed25519(issuer, "exchnode/v1 directory" 0x00 || body)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

import msgpack
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from exchnode.core import (
    KEY_ID_LENGTH,
    LocalIdentity,
    check_name,
    check_time,
    pack,
    require_canonical,
    unpack,
)
from exchnode.errors import MalformedError, TooLargeError, UnsupportedVersionError, UsageError
from exchnode.pki import MAX_CHAIN_LENGTH

__all__ = [
    "DEFAULT_DIRECTORY_POLICY",
    "DIRECTORY_FORMAT",
    "DIRECTORY_LABEL",
    "MAX_ADDRESS_LENGTH",
    "MAX_ENTRY_CHAIN",
    "MAX_TIME_MS",
    "SIGNATURE_LENGTH",
    "DirectoryEntry",
    "DirectoryPolicy",
    "DirectorySnapshot",
    "check_address",
    "decode_snapshot",
    "iso_ms",
    "own_chain_der",
    "sign_snapshot",
]

DIRECTORY_FORMAT = 1
DIRECTORY_LABEL = b"exchnode/v1 directory\x00"
SIGNATURE_LENGTH = 64
# Leaf and CAs, the root excluded: the root is configured, never received (SPEC §3.1).
MAX_ENTRY_CHAIN = MAX_CHAIN_LENGTH - 1
MAX_ADDRESS_LENGTH = 256
#: The latest time the wire form holds: "no expiry of its own" for local entries.
MAX_TIME_MS = (1 << 53) - 1
_ADDRESS = re.compile(rf"https://[\x21-\x7e]{{1,{MAX_ADDRESS_LENGTH - 8}}}\Z")
_BODY_FIELDS = 6
_ENTRY_FIELDS = 4


@dataclass(frozen=True, slots=True)
class DirectoryPolicy:
    """Bounds on what a node parses and how stale a snapshot it accepts (SPEC §14.4).

    ``max_lifetime`` also bounds how long a node keeps working from a cache
    while its hub is unreachable; it matches the CRL validity (SPEC §3.9), so
    directory data never outlives the revocation data it travels with.
    """

    max_snapshot_bytes: int = 32 * 1024 * 1024
    max_entries: int = 16384
    max_crls: int = 1024
    max_certificate_bytes: int = 4096
    max_crl_bytes: int = 1024 * 1024
    clock_skew: float = 300.0
    max_lifetime: float = 7 * 86400.0

    def __post_init__(self) -> None:
        sizes = (
            self.max_snapshot_bytes,
            self.max_entries,
            self.max_crls,
            self.max_certificate_bytes,
            self.max_crl_bytes,
        )
        if min(sizes) < 1 or self.clock_skew < 0 or self.max_lifetime <= 0:
            raise UsageError("directory limits must be positive and clock_skew non-negative")


DEFAULT_DIRECTORY_POLICY = DirectoryPolicy()


# --- values --------------------------------------------------------------------------


class DirectoryEntry(NamedTuple):
    """One node as a snapshot carries it: not verified, not yet trusted."""

    name: str
    #: DER certificates, leaf first, then its CAs up to but excluding the root.
    chain: tuple[bytes, ...]
    #: ``https://...`` where the node accepts connections, or "" if it accepts none.
    address: str
    valid_until_ms: int

    @classmethod
    def for_identity(cls, identity: LocalIdentity, address: str = "") -> DirectoryEntry:
        """This node's own entry; ``sign_snapshot`` stamps its ``valid_until``."""
        return cls(str(identity.name), own_chain_der(identity), address, MAX_TIME_MS)


class DirectorySnapshot(NamedTuple):
    """A decoded, shape-checked snapshot: not yet authenticated (``verify_snapshot``)."""

    issuer: str
    issuer_key_id: bytes
    issued_ms: int
    expires_ms: int
    entries: tuple[DirectoryEntry, ...]
    crls: tuple[bytes, ...]
    body: bytes
    signature: bytes


# --- the wire form ------------------------------------------------------------------


def iso_ms(ms: int) -> str:
    """A time in ms for a message, whatever it is."""
    try:
        return f"{datetime.fromtimestamp(ms / 1000, UTC):%Y-%m-%dT%H:%M:%SZ}"
    except (OverflowError, ValueError, OSError):
        return f"{ms} ms after 1970"


def own_chain_der(identity: LocalIdentity) -> tuple[bytes, ...]:
    certificate = identity.peer.certificate
    if certificate is None:
        raise UsageError(f"{identity.name} has no certificate: a directory entry needs its chain")
    # A chain file may end with the root; the root is configured everywhere, never sent.
    cas = [cert for cert in identity.chain if cert.subject != cert.issuer]
    return tuple(cert.public_bytes(serialization.Encoding.DER) for cert in (certificate, *cas))


def check_address(value: object, field: str) -> str:
    if type(value) is not str or (value and not _ADDRESS.match(value)):
        raise MalformedError(
            field,
            f'must be "" or an https:// URL of at most {MAX_ADDRESS_LENGTH} printable characters',
        )
    return value


def sign_snapshot(
    identity: LocalIdentity,
    entries: Iterable[DirectoryEntry],
    crls: Iterable[x509.CertificateRevocationList],
    now: float,
    lifetime: float,
    *,
    policy: DirectoryPolicy = DEFAULT_DIRECTORY_POLICY,
) -> bytes:
    """Sign what this node serves (SPEC §14.2, §14.3, §14.10).

    The issuer's own entries (its name) are stamped with the snapshot's
    expiry: this signature is what vouches for them anew.  Every other entry
    keeps its ``valid_until``, capped at the expiry, so re-signing never
    lengthens an entry's life (SPEC §14.8).  Whatever peers would refuse is
    refused here as a ``UsageError``, so a node never serves a snapshot that
    its neighbours must reject.
    """
    issuer = str(identity.name)
    own_leaf = own_chain_der(identity)[0]
    if not 0 < lifetime <= policy.max_lifetime:
        raise UsageError(
            f"directory lifetime must be in (0, {policy.max_lifetime:.0f}] seconds, got {lifetime}"
        )
    issued = int(now * 1000)
    expires = issued + int(lifetime * 1000)
    if not 0 <= issued < expires <= MAX_TIME_MS:
        raise UsageError("now and now + lifetime must be times between 1970 and 2^53 - 1 ms")
    rows: dict[tuple[str, bytes], list[object]] = {}
    for entry in entries:
        _check_entry_to_sign(entry, policy)
        if entry.name == issuer:
            valid_until = expires
        elif entry.valid_until_ms <= issued:
            raise UsageError(
                f"entry {entry.name} expired at {iso_ms(entry.valid_until_ms)}: "
                "a snapshot re-serves live entries only"
            )
        else:
            valid_until = min(entry.valid_until_ms, expires)
        key = (entry.name, entry.chain[0])
        if key in rows:
            raise UsageError(f"entry {entry.name} appears twice with the same certificate")
        rows[key] = [entry.name, list(entry.chain), entry.address, valid_until]
    if (issuer, own_leaf) not in rows:
        raise UsageError(
            f"the snapshot must carry its issuer's own entry with its current certificate "
            f"(DirectoryEntry.for_identity({issuer}))"
        )
    if len(rows) > policy.max_entries:
        raise UsageError(f"{len(rows)} entries exceed the limit of {policy.max_entries}")
    crl_ders = sorted({crl.public_bytes(serialization.Encoding.DER) for crl in crls})
    if len(crl_ders) > policy.max_crls:
        raise UsageError(f"{len(crl_ders)} CRLs exceed the limit of {policy.max_crls}")
    if any(len(der) > policy.max_crl_bytes for der in crl_ders):
        raise UsageError(f"a CRL exceeds the limit of {policy.max_crl_bytes} bytes")
    body = pack(
        [
            issuer,
            identity.peer.signing_key_id,
            issued,
            expires,
            [rows[key] for key in sorted(rows)],
            crl_ders,
        ]
    )
    signature = identity.signing_private_key.sign(DIRECTORY_LABEL + body)
    data = pack([DIRECTORY_FORMAT, body, signature])
    if len(data) > policy.max_snapshot_bytes:
        raise UsageError(
            f"the snapshot is {len(data)} bytes, beyond the limit of {policy.max_snapshot_bytes}"
        )
    return data


def _check_entry_to_sign(entry: DirectoryEntry, policy: DirectoryPolicy) -> None:
    try:
        check_name(entry.name, "entry.name")
        check_address(entry.address, f"entry {entry.name} address")
        check_time(entry.valid_until_ms, f"entry {entry.name} valid_until")
    except MalformedError as exc:
        raise UsageError(str(exc)) from None
    chain = entry.chain
    if (
        type(chain) is not tuple
        or not 1 <= len(chain) <= MAX_ENTRY_CHAIN
        or any(
            type(der) is not bytes or not 0 < len(der) <= policy.max_certificate_bytes
            for der in chain
        )
    ):
        raise UsageError(
            f"entry {entry.name}: chain must be 1..{MAX_ENTRY_CHAIN} DER certificates of at most "
            f"{policy.max_certificate_bytes} bytes"
        )


class _Reader:
    """Walks a body with a streaming unpacker, so counts are checked before arrays are built.

    ``encoding.unpack`` bounds every array by one number; a snapshot's arrays
    have limits of their own (entries, chain, CRLs), and each violation must
    name its field (SPEC §14.4).  Reading array headers one by one checks
    each count before anything is allocated for it.
    """

    def __init__(self, data: bytes) -> None:
        self._size = len(data)
        # Arrays are read through array(); one met where a scalar is due is
        # refused by max_array_len=0 (an empty one then fails its type check).
        self._unpacker = msgpack.Unpacker(
            max_buffer_size=max(self._size, 1), max_array_len=0, max_map_len=0, max_ext_len=0
        )
        self._unpacker.feed(data)

    def array(self, field: str, low: int, high: int, *, limit: bool = False) -> int:
        try:
            count: int = self._unpacker.read_array_header()
        except (ValueError, msgpack.UnpackException) as exc:
            raise MalformedError(field, f"must be an array ({type(exc).__name__})") from None
        if count > high and limit:
            raise TooLargeError(field, f"{count} elements exceed the limit of {high}")
        if not low <= count <= high:
            raise MalformedError(field, f"must be an array of {low}..{high} elements")
        return count

    def value(self, field: str) -> object:
        try:
            return self._unpacker.unpack()
        except (ValueError, msgpack.UnpackException) as exc:
            raise MalformedError(field, f"not valid msgpack ({type(exc).__name__})") from None

    def end(self, field: str) -> None:
        if self._unpacker.tell() != self._size:
            raise MalformedError(field, "trailing bytes after the value")


def _bin(value: object, field: str, limit: int) -> bytes:
    if type(value) is not bytes or not value:
        raise MalformedError(field, "must be non-empty bytes")
    if len(value) > limit:
        raise TooLargeError(field, f"{len(value)} bytes exceed the limit of {limit}")
    return value


def signed_frame(
    data: bytes, what: str, max_size: int, expected: int, supported: str
) -> tuple[bytes, bytes]:
    """The body and signature of a signed directory answer ``[format, body, signature]``.

    Format 1's snapshot and format 2's page share this frame (SPEC §14.2,
    §14.14): size limit, shape, format, canonical encoding, in that order;
    ``supported`` says in the error which formats this decoder reads.
    """
    outer = unpack(data, what=what, max_size=max_size, max_array=3)
    if type(outer) is not list or len(outer) != 3:
        raise MalformedError(what, "expected an array of 3 elements")
    version, body, signature = outer
    if type(version) is not int:
        raise MalformedError(f"{what}.format", "must be an integer")
    if version != expected:
        raise UnsupportedVersionError(f"{what} format {version} is not supported {supported}")
    if type(body) is not bytes:
        raise MalformedError(f"{what}.body", "must be bytes")
    if type(signature) is not bytes or len(signature) != SIGNATURE_LENGTH:
        raise MalformedError(f"{what}.signature", f"must be {SIGNATURE_LENGTH} bytes")
    require_canonical(outer, data, what=what)
    return body, signature


def decode_snapshot(
    data: bytes, policy: DirectoryPolicy = DEFAULT_DIRECTORY_POLICY
) -> DirectorySnapshot:
    """Parse and shape-check a snapshot (SPEC §14.2, §14.5 steps 1-3); raise ``RejectedError``."""
    if isinstance(data, bytearray | memoryview):
        data = bytes(data)
    body, signature = signed_frame(
        data, "directory", policy.max_snapshot_bytes, DIRECTORY_FORMAT, "(only 1)"
    )

    reader = _Reader(body)
    reader.array("directory.body", _BODY_FIELDS, _BODY_FIELDS)
    issuer = check_name(reader.value("directory.body.issuer"), "directory.body.issuer")
    issuer_key_id = reader.value("directory.body.issuer_key_id")
    if type(issuer_key_id) is not bytes or len(issuer_key_id) != KEY_ID_LENGTH:
        raise MalformedError("directory.body.issuer_key_id", f"must be {KEY_ID_LENGTH} bytes")
    issued = check_time(reader.value("directory.body.issued"), "directory.body.issued")
    expires = check_time(reader.value("directory.body.expires"), "directory.body.expires")
    if expires <= issued:
        raise MalformedError("directory.body.expires", "must be after issued")
    entries = []
    previous: tuple[str, bytes] | None = None
    count = reader.array("directory.body.entries", 1, policy.max_entries, limit=True)
    for i in range(count):
        field = f"directory.body.entries[{i}]"
        reader.array(field, _ENTRY_FIELDS, _ENTRY_FIELDS)
        name = check_name(reader.value(f"{field}.name"), f"{field}.name")
        links = reader.array(f"{field}.chain", 1, MAX_ENTRY_CHAIN, limit=True)
        chain = tuple(
            _bin(
                reader.value(f"{field}.chain[{j}]"),
                f"{field}.chain[{j}]",
                policy.max_certificate_bytes,
            )
            for j in range(links)
        )
        address = check_address(reader.value(f"{field}.address"), f"{field}.address")
        valid_until = check_time(reader.value(f"{field}.valid_until"), f"{field}.valid_until")
        key = (name, chain[0])
        if previous is not None and key <= previous:
            raise MalformedError(field, "entries must be sorted by (name, leaf) and unique")
        previous = key
        entries.append(DirectoryEntry(name, chain, address, valid_until))
    crls: list[bytes] = []
    count = reader.array("directory.body.crls", 0, policy.max_crls, limit=True)
    for i in range(count):
        der = _bin(
            reader.value(f"directory.body.crls[{i}]"),
            f"directory.body.crls[{i}]",
            policy.max_crl_bytes,
        )
        if crls and der <= crls[-1]:
            raise MalformedError(f"directory.body.crls[{i}]", "CRLs must be sorted and unique")
        crls.append(der)
    reader.end("directory.body")
    fields = [
        issuer,
        issuer_key_id,
        issued,
        expires,
        [[e.name, list(e.chain), e.address, e.valid_until_ms] for e in entries],
        crls,
    ]
    require_canonical(fields, body, what="directory.body")
    return DirectorySnapshot(
        issuer, issuer_key_id, issued, expires, tuple(entries), tuple(crls), body, signature
    )
