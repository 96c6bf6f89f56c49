"""The signed, expiring node directory (pure; federation layer, SPEC §14).

Theory of operation
-------------------
Sealing needs the recipient's encryption key and opening needs the sender's
signing key.  Certificates bind both to a node's name, so what nodes must
learn from each other is only *which certificates exist* and where to reach
their holders.  Hubs gather that for their subtree and share it up and down:
every node signs a **snapshot** of what it knows -- each node's certificate
chain and address, and the newest CRL of every CA -- and its parent and
children pull it.  Transport (a GET over mutual TLS) is the node's business;
this module holds everything below it: the wire form, verification, merging
and the lookups.

Trust comes from the certificates, never from the relay.  A snapshot is
signed by its issuer so that a pull cannot be tampered with or replayed out
of date, but every entry still carries its full chain and is verified
against the local roots, as a TLS peer would be.  An entry that fails
(revoked, expired, outside its CA's names) is dropped and reported; only a
bad issuer -- its chain or its signature -- rejects the whole snapshot, so a
hub that relays one revoked node does not cut its neighbours off.

Scope keeps each neighbour in its place, like ``routing.Router.accept`` does
for envelopes: a child speaks only for the names it covers (a hub for its
division prefix, a department for itself), the parent only for names outside
this node's own subtree, and nobody for this node.  The certificate already
binds names to keys; scope also stops a neighbour from shadowing another
node's *address*, and it discards the echo of what a neighbour learned from
us.

Expiry is what makes a cache safe to use while a hub is unreachable.  Each
entry carries ``valid_until``: the origin sets it to its own snapshot's
expiry, and every relay keeps ``min(valid_until, expires)`` of what it
received.  Re-signing never extends an entry, so an entry learned from a
partitioned province still dies on time downstream, however often the city
hub re-signs; echoes cannot revive anything.  Once an entry's time has
passed, lookups **fail closed** with :class:`DirectoryExpiredError`, naming
the node, the time and the source.

Revocation travels the same way: CRLs ride in snapshots, are accepted only
when they verify under a verified CA certificate, the newest per CA wins,
and every entry whose chain holds a listed serial vanishes from the
directory at once, whichever source it came from.

Nothing here reads a clock: ``now`` (seconds since 1970) is an argument, and
:class:`NodeDirectory` takes a ``clock`` callable only because the
``Directory`` protocol's lookups have no ``now`` of their own.

    snapshot = [format=1, body: bin, signature: bin(64)]
    body     = [issuer: str, issuer_key_id: bin(16), issued_ms: uint,
                expires_ms: uint, entries: [entry], crls: [bin]]
    entry    = [name: str, chain: [bin], address: str, valid_until_ms: uint]
    signature = Ed25519(issuer, "exchnode/v1 directory" 0x00 || body)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple, NoReturn

import msgpack
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import ExtensionOID

from exchnode.core import (
    KEY_ID_LENGTH,
    LocalIdentity,
    NodeName,
    PeerIdentity,
    check_name,
    check_time,
    division_scope,
    key_id,
    pack,
    require_canonical,
    unpack,
)
from exchnode.errors import (
    BadSignatureError,
    CertificateError,
    CertificateExpiredError,
    DirectoryExpiredError,
    LifetimeTooLongError,
    MalformedCertificateError,
    MalformedError,
    NotYetValidError,
    RejectedError,
    ReplayError,
    TooLargeError,
    UnknownSignerError,
    UnsupportedVersionError,
    UsageError,
    WrongIssuerError,
)
from exchnode.federation._routing import Neighbour, Relation
from exchnode.pki import (
    MAX_CHAIN_LENGTH,
    TrustStore,
    VerifiedCA,
    read_node_certificate,
    verify_ca_certificate,
    verify_node_certificate,
)

__all__ = [
    "DEFAULT_DIRECTORY_POLICY",
    "DIRECTORY_FORMAT",
    "DIRECTORY_LABEL",
    "DirectoryEntry",
    "DirectoryPolicy",
    "DirectorySnapshot",
    "Dropped",
    "NodeDirectory",
    "RestoreOutcome",
    "UpdateReport",
    "VerifiedEntry",
    "VerifiedSnapshot",
    "decode_cache",
    "decode_snapshot",
    "sign_snapshot",
    "verify_snapshot",
]

DIRECTORY_FORMAT = 1
DIRECTORY_LABEL = b"exchnode/v1 directory\x00"
SIGNATURE_LENGTH = 64
# Leaf and CAs, the root excluded: the root is configured, never received (SPEC §3.1).
MAX_ENTRY_CHAIN = MAX_CHAIN_LENGTH - 1
MAX_ADDRESS_LENGTH = 256
_ADDRESS = re.compile(rf"https://[\x21-\x7e]{{1,{MAX_ADDRESS_LENGTH - 8}}}\Z")
_BODY_FIELDS = 6
_ENTRY_FIELDS = 4
_MAX_TIME_MS = (1 << 53) - 1
_CACHE_VERSION = 1
_MAX_CACHED_SOURCES = 4096

# What `cryptography` raises while lazily decoding hostile DER (as in pki_verify);
# Warning only where warnings are errors, as in the test suite.
_DECODE_ERRORS = (
    Warning,
    ValueError,
    TypeError,
    UnsupportedAlgorithm,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
    x509.InvalidVersion,
)
_KNOWN_CRL_EXTENSIONS = frozenset({ExtensionOID.CRL_NUMBER, ExtensionOID.AUTHORITY_KEY_IDENTIFIER})


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


# --- values -----------------------------------------------------------------------


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
        return cls(str(identity.name), _own_chain_der(identity), address, _MAX_TIME_MS)


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
    #: The snapshot's CRLs that verified under a verified CA, newest per CA.
    crls: tuple[x509.CertificateRevocationList, ...]
    dropped: tuple[Dropped, ...]
    #: Names left unverified because the caller's ``wanted`` filter declined them.
    skipped: tuple[str, ...]
    data: bytes


# --- the wire form ------------------------------------------------------------------


def _own_chain_der(identity: LocalIdentity) -> tuple[bytes, ...]:
    certificate = identity.peer.certificate
    if certificate is None:
        raise UsageError(f"{identity.name} has no certificate: a directory entry needs its chain")
    # A chain file may end with the root; the root is configured everywhere, never sent.
    cas = [cert for cert in identity.chain if cert.subject != cert.issuer]
    return tuple(cert.public_bytes(serialization.Encoding.DER) for cert in (certificate, *cas))


def _check_address(value: object, field: str) -> str:
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
    own_leaf = _own_chain_der(identity)[0]
    if not 0 < lifetime <= policy.max_lifetime:
        raise UsageError(
            f"directory lifetime must be in (0, {policy.max_lifetime:.0f}] seconds, got {lifetime}"
        )
    issued = int(now * 1000)
    expires = issued + int(lifetime * 1000)
    if not 0 <= issued < expires <= _MAX_TIME_MS:
        raise UsageError("now and now + lifetime must be times between 1970 and 2^53 - 1 ms")
    rows: dict[tuple[str, bytes], list[object]] = {}
    for entry in entries:
        _check_entry_to_sign(entry, policy)
        if entry.name == issuer:
            valid_until = expires
        elif entry.valid_until_ms <= issued:
            raise UsageError(
                f"entry {entry.name} expired at {_iso(entry.valid_until_ms)}: "
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
        _check_address(entry.address, f"entry {entry.name} address")
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


def decode_snapshot(
    data: bytes, policy: DirectoryPolicy = DEFAULT_DIRECTORY_POLICY
) -> DirectorySnapshot:
    """Parse and shape-check a snapshot (SPEC §14.2, §14.5 steps 1-3); raise ``RejectedError``."""
    if isinstance(data, bytearray | memoryview):
        data = bytes(data)
    outer = unpack(data, what="directory", max_size=policy.max_snapshot_bytes, max_array=3)
    if type(outer) is not list or len(outer) != 3:
        raise MalformedError("directory", "expected an array of 3 elements")
    version, body, signature = outer
    if type(version) is not int:
        raise MalformedError("directory.format", "must be an integer")
    if version != DIRECTORY_FORMAT:
        raise UnsupportedVersionError(f"directory format {version} is not supported (only 1)")
    if type(body) is not bytes:
        raise MalformedError("directory.body", "must be bytes")
    if type(signature) is not bytes or len(signature) != SIGNATURE_LENGTH:
        raise MalformedError("directory.signature", f"must be {SIGNATURE_LENGTH} bytes")
    require_canonical(outer, data, what="directory")

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
        address = _check_address(reader.value(f"{field}.address"), f"{field}.address")
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


# --- verification -------------------------------------------------------------------


def _instant(now: float) -> datetime:
    return datetime.fromtimestamp(now, UTC)


def _iso(ms: int) -> str:
    try:
        return f"{datetime.fromtimestamp(ms / 1000, UTC):%Y-%m-%dT%H:%M:%SZ}"
    except (OverflowError, ValueError, OSError):
        return f"{ms} ms after 1970"


def _der(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.DER)


class _Certificates:
    """DER to certificates, each parsed once per verification."""

    def __init__(self) -> None:
        self._parsed: dict[bytes, x509.Certificate | MalformedCertificateError] = {}

    def get(self, der: bytes, field: str) -> x509.Certificate:
        parsed = self._parsed.get(der)
        if parsed is None:
            try:
                parsed = x509.load_der_x509_certificate(der)
            except _DECODE_ERRORS as exc:
                parsed = MalformedCertificateError(f"{field} is not a DER certificate: {exc}")
            self._parsed[der] = parsed
        if isinstance(parsed, MalformedCertificateError):
            raise parsed
        return parsed

    def chain(self, entry: DirectoryEntry, field: str) -> tuple[x509.Certificate, ...]:
        return tuple(self.get(der, f"{field}.chain[{j}]") for j, der in enumerate(entry.chain))


def _parse_crls(
    ders: Sequence[bytes], field: str
) -> tuple[list[tuple[str, x509.CertificateRevocationList]], list[Dropped]]:
    crls: list[tuple[str, x509.CertificateRevocationList]] = []
    dropped: list[Dropped] = []
    for i, der in enumerate(ders):
        try:
            crl = x509.load_der_x509_crl(der)
            # Decode now whatever is read later, so that a bad CRL fails here, as data.
            _ = (crl.issuer, crl.extensions, crl.last_update_utc, crl.next_update_utc)
            for revoked in crl:
                _ = revoked.serial_number
        except _DECODE_ERRORS as exc:
            dropped.append(
                Dropped(
                    f"{field}[{i}]",
                    "",
                    MalformedCertificateError.code,
                    f"CRL does not decode: {exc}",
                )
            )
            continue
        crls.append((f"{field}[{i}]", crl))
    return crls, dropped


def _crl_authority(crl: x509.CertificateRevocationList) -> tuple[bytes, bytes]:
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


def _crl_order(crl: x509.CertificateRevocationList) -> tuple[int, datetime]:
    try:
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        number = -1
    return number, crl.last_update_utc


def _newest(
    crls: Iterable[x509.CertificateRevocationList],
) -> dict[tuple[bytes, bytes], x509.CertificateRevocationList]:
    """The newest CRL per CA (SPEC §14.6): the highest cRLNumber, then the latest thisUpdate.

    Only genuine CRLs may be passed: a forgery with a huge number would
    otherwise displace the real one.  Keeping one suffices because a CA's
    CRLs only grow (SPEC §3.6: entries are never removed).
    """
    newest: dict[tuple[bytes, bytes], x509.CertificateRevocationList] = {}
    for crl in crls:
        authority = _crl_authority(crl)
        held = newest.get(authority)
        if held is None or _crl_order(crl) > _crl_order(held):
            newest[authority] = crl
    return newest


def _crl_problem(crl: x509.CertificateRevocationList, ca: VerifiedCA) -> str | None:
    # SPEC §3.7 step 6's definition of a genuine CRL.
    try:
        usage = ca.certificate.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.crl_sign:
            return f"CA {ca.division} may not sign CRLs (KeyUsage lacks cRLSign)"
    except x509.ExtensionNotFound:
        return f"CA {ca.division} has no KeyUsage, so may not sign CRLs"
    if not crl.is_signature_valid(ca.public_key):
        return f"the CRL is not signed by the key of CA {ca.division}"
    for extension in crl.extensions:
        if extension.critical and extension.oid not in _KNOWN_CRL_EXTENSIONS:
            return f"the CRL has an unrecognised critical extension {extension.oid.dotted_string}"
    return None


def _dn(name: x509.Name) -> str:
    try:
        return name.rfc4514_string()
    except _DECODE_ERRORS:
        return "(a name that does not decode)"


def _genuine_crls(
    crls: Sequence[tuple[str, x509.CertificateRevocationList]],
    cas: Iterable[x509.Certificate],
    trust: TrustStore,
    when: datetime,
) -> tuple[list[x509.CertificateRevocationList], list[Dropped]]:
    """The CRLs that verify under a CA certificate whose own chain verifies (SPEC §14.6).

    ``cas`` are candidate CA certificates (any, unverified: the CAs of the
    chains received); the trusted roots are candidates too.
    """
    pool: dict[bytes, x509.Certificate] = {}
    for cert in (*trust.roots, *cas):
        pool.setdefault(cert.public_bytes(serialization.Encoding.DER), cert)
    by_subject: dict[x509.Name, list[x509.Certificate]] = {}
    for cert in pool.values():
        try:
            by_subject.setdefault(cert.subject, []).append(cert)
        except _DECODE_ERRORS:
            continue
    verified: dict[int, VerifiedCA | CertificateError] = {}
    accepted: list[x509.CertificateRevocationList] = []
    dropped: list[Dropped] = []
    for field, crl in crls:
        problem = f"no CA certificate {_dn(crl.issuer)!r} in the snapshot or the roots"
        code = "untrusted"
        for candidate in by_subject.get(crl.issuer, ()):
            ca = verified.get(id(candidate))
            if ca is None:
                try:
                    ca = verify_ca_certificate(candidate, pool.values(), trust, when)
                except CertificateError as exc:
                    ca = exc
                verified[id(candidate)] = ca
            if isinstance(ca, CertificateError):
                problem, code = f"its CA certificate does not verify: {ca}", ca.code
                continue
            try:
                found = _crl_problem(crl, ca)
            except _DECODE_ERRORS as exc:
                found = f"the CRL does not decode: {exc}"
            if found is None:
                accepted.append(crl)
                break
            problem, code = found, "bad-certificate-signature"
        else:
            dropped.append(Dropped(field, "", code, problem))
    return accepted, dropped


def _check_freshness(snapshot: DirectorySnapshot, now: float, policy: DirectoryPolicy) -> None:
    # SPEC §14.5 step 5, in the order of §8.2.
    now_ms = int(now * 1000)
    what = f"directory snapshot of {snapshot.issuer}"
    if snapshot.expires_ms - snapshot.issued_ms > policy.max_lifetime * 1000:
        raise LifetimeTooLongError(
            f"{what} lives {(snapshot.expires_ms - snapshot.issued_ms) / 1000:.0f} s, beyond "
            f"the maximum of {policy.max_lifetime:.0f} s"
        )
    if now_ms >= snapshot.expires_ms:
        raise DirectoryExpiredError(
            f"{what} expired at {_iso(snapshot.expires_ms)} "
            f"({(now_ms - snapshot.expires_ms) / 1000:.0f} s ago)",
            source=snapshot.issuer,
            expired_ms=snapshot.expires_ms,
        )
    if snapshot.issued_ms > now_ms + policy.clock_skew * 1000:
        raise NotYetValidError(
            f"{what} is issued {(snapshot.issued_ms - now_ms) / 1000:.0f} s in the future, "
            f"beyond the allowed clock skew of {policy.clock_skew:.0f} s"
        )


def _issuer_entry(snapshot: DirectorySnapshot, certificates: _Certificates) -> int:
    """The index of the entry certifying the key the issuer says it signed with."""
    for i, entry in enumerate(snapshot.entries):
        if entry.name != snapshot.issuer:
            continue
        try:
            key = certificates.get(entry.chain[0], "leaf").public_key()
        except (MalformedCertificateError, *_DECODE_ERRORS):
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
    if str(peer.name) != entry.name:
        raise MalformedError(
            f"{field}.name", f"is {entry.name}, but the certificate names {peer.name}"
        )
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
    _check_freshness(snapshot, now, policy)
    when = _instant(now)
    now_ms = int(now * 1000)
    parsed, dropped = _parse_crls(snapshot.crls, "directory.body.crls")
    crls = [crl for _, crl in parsed]
    # The snapshot's CRLs serve before they are authenticated: pki_verify counts
    # only CRLs that verify under the issuing CA, so a forgery cannot revoke,
    # and an older genuine one cannot un-revoke (revocation is final).
    everything = TrustStore(trust.roots, _union(trust.crls, crls))
    certificates = _Certificates()
    index = _issuer_entry(snapshot, certificates)
    issuer_peer, issuer_chain = _verify_entry(
        snapshot.entries[index], f"directory.body.entries[{index}]", certificates, everything, when
    )
    try:
        issuer_peer.signing_key.verify(snapshot.signature, DIRECTORY_LABEL + snapshot.body)
    except InvalidSignature:
        raise BadSignatureError(
            f"signature on the directory snapshot of {snapshot.issuer} does not verify"
        ) from None

    cas = []
    for entry in snapshot.entries:
        for der in entry.chain[1:]:
            try:
                cas.append(certificates.get(der, "CA"))
            except MalformedCertificateError:
                continue
    genuine, refused = _genuine_crls(parsed, cas, everything, when)
    dropped.extend(refused)
    newest = tuple(_newest(genuine).values())
    lean = TrustStore(trust.roots, _union(trust.crls, newest))

    verified, skipped = [], []
    for i, entry in enumerate(snapshot.entries):
        field = f"directory.body.entries[{i}]"
        if wanted is not None and not wanted(NodeName.parse(entry.name)):
            skipped.append(entry.name)
            continue
        valid_until = min(entry.valid_until_ms, snapshot.expires_ms)
        try:
            if i == index:
                peer, chain = issuer_peer, issuer_chain
            else:
                peer, chain = _verify_entry(entry, field, certificates, lean, when)
            if valid_until <= now_ms:
                raise DirectoryExpiredError(
                    f"{field} ({entry.name}) expired at {_iso(valid_until)}",
                    source=snapshot.issuer,
                    expired_ms=valid_until,
                )
        except RejectedError as exc:
            dropped.append(Dropped(field, entry.name, exc.code, str(exc)))
            continue
        verified.append(VerifiedEntry(peer, chain, entry.address, valid_until))
    return VerifiedSnapshot(
        snapshot.issuer,
        snapshot.issued_ms,
        snapshot.expires_ms,
        tuple(verified),
        tuple(sorted(newest, key=_der)),
        tuple(dropped),
        tuple(skipped),
        bytes(data),
    )


def _union(
    first: Iterable[x509.CertificateRevocationList],
    second: Iterable[x509.CertificateRevocationList],
) -> list[x509.CertificateRevocationList]:
    seen: dict[bytes, x509.CertificateRevocationList] = {}
    for crl in (*first, *second):
        seen.setdefault(_der(crl), crl)
    return list(seen.values())


# --- the directory of one node -------------------------------------------------------

_SELF = "self"
_STATIC = "static"


@dataclass(frozen=True, slots=True, eq=False)
class _Record:
    """One certificate of one node as this node holds it, and where it came from."""

    entry: VerifiedEntry
    source: str
    #: The leaf's DER (the raw signing key for a certificate-less static peer).
    leaf: bytes
    rank: tuple[float, int]
    not_after_ms: int
    #: (issuer DN, serial) of every certificate of the chain, for revocation.
    serials: tuple[tuple[bytes, int], ...]

    @classmethod
    def of(cls, entry: VerifiedEntry, source: str) -> _Record:
        leaf = entry.identity.certificate
        if leaf is None:
            return cls(
                entry,
                source,
                entry.identity.signing_key_raw,
                (float("-inf"), 0),
                _MAX_TIME_MS,
                (),
            )
        return cls(
            entry,
            source,
            leaf.public_bytes(serialization.Encoding.DER),
            (leaf.not_valid_before_utc.timestamp(), leaf.serial_number),
            int(leaf.not_valid_after_utc.timestamp() * 1000),
            tuple((cert.issuer.public_bytes(), cert.serial_number) for cert in entry.certificates),
        )

    def live(self, now_ms: int) -> bool:
        # X.509 notAfter is inclusive (SPEC §3.7 step 2); directory expiry is not (§14.9).
        return now_ms < self.entry.valid_until_ms and now_ms <= self.not_after_ms


def _certificates_of(peer: PeerIdentity) -> tuple[x509.Certificate, ...]:
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


@dataclass(frozen=True, slots=True)
class _Tombstone:
    """What an expired cached snapshot spoke for: names for error messages only, never keys."""

    expired_ms: int
    names: frozenset[str]


class NodeDirectory:
    """This node's view of the federation: itself, static peers, and each neighbour's snapshot.

    Implements the ``Directory`` protocol.  Its lookups read ``clock()``;
    the ``*_at`` variants and everything else take ``now`` explicitly.
    """

    def __init__(
        self,
        identity: LocalIdentity,
        *,
        clock: Callable[[], float],
        address: str = "",
        neighbours: Iterable[Neighbour] = (),
        static: Iterable[PeerIdentity] = (),
        previous: Iterable[Sequence[x509.Certificate]] = (),
        policy: DirectoryPolicy = DEFAULT_DIRECTORY_POLICY,
    ) -> None:
        """``static``: identities the caller has verified itself; used here, never re-served.
        ``previous``: this node's earlier chains (leaf first), still published so that
        envelopes signed before a key rotation keep verifying until they expire.
        """
        self.identity = identity
        self.me = identity.name
        self._scope = division_scope(self.me.division) if self.me.is_hub else None
        self._clock = clock
        self.policy = policy
        try:
            _check_address(address, "address")
        except MalformedError as exc:
            raise UsageError(str(exc)) from None
        self._neighbours: dict[str, Neighbour] = {}
        for neighbour in neighbours:
            name = str(neighbour.name)
            if neighbour.name == self.me or name in self._neighbours:
                raise UsageError(f"{name} is this node or listed twice as a neighbour")
            self._neighbours[name] = neighbour
        own_chain = tuple(x509.load_der_x509_certificate(der) for der in _own_chain_der(identity))
        self._own = [
            _Record.of(VerifiedEntry(identity.peer, own_chain, address, _MAX_TIME_MS), _SELF)
        ]
        for chain in previous:
            certs = (chain[0], *(c for c in chain[1:] if c.subject != c.issuer))
            contents = read_node_certificate(certs[0])
            if contents.name != self.me:
                raise UsageError(f"a previous chain of {self.me} certifies {contents.name}")
            peer = PeerIdentity(
                contents.name, contents.signing_key, contents.encryption_key, certs[0]
            )
            self._own.append(_Record.of(VerifiedEntry(peer, certs, address, _MAX_TIME_MS), _SELF))
        self._static = [
            _Record.of(VerifiedEntry(peer, _certificates_of(peer), "", _MAX_TIME_MS), _STATIC)
            for peer in static
        ]
        if any(record.entry.name == str(self.me) for record in self._static):
            raise UsageError(f"a static peer cannot stand in for this node ({self.me})")
        self._snapshots: dict[str, VerifiedSnapshot] = {}
        self._records: dict[str, tuple[_Record, ...]] = {}
        self._cache: dict[str, bytes] = {}
        self._tombstones: dict[str, _Tombstone] = {}
        self._local_crls: tuple[x509.CertificateRevocationList, ...] = ()
        self._crls: dict[tuple[bytes, bytes], x509.CertificateRevocationList] = {}
        self._index: dict[str, tuple[_Record, ...]] = {}
        self._rebuild()

    # --- scope (SPEC §14.7) ---------------------------------------------------------

    def _neighbour(self, source: str) -> Neighbour:
        try:
            return self._neighbours[source]
        except KeyError:
            raise UsageError(f"{source} is not a neighbour of {self.me}") from None

    def _within_me(self, name: NodeName) -> bool:
        if self._scope is None:
            return name == self.me
        return name.within(self._scope)

    def accepts_from(self, source: str) -> Callable[[NodeName], bool]:
        """Which names ``source`` may speak for; pass it to ``verify_snapshot(wanted=...)``."""
        neighbour = self._neighbour(source)
        me = self.me
        if neighbour.relation is Relation.PARENT:
            return lambda name: not self._within_me(name)
        # A child, or a configured link: what it covers, as in routing.
        return lambda name: name != me and neighbour.covers(name)

    # --- feeding it -----------------------------------------------------------------

    def update(self, source: str, snapshot: VerifiedSnapshot, now: float) -> UpdateReport:
        """Take ``source``'s newest verified snapshot in place of its previous one.

        Entries outside the source's scope are ignored and listed in the
        report, not raised: every snapshot echoes what its issuer learned
        from us, so they are the normal case, not an attack.
        """
        self._neighbour(source)
        if snapshot.issuer != source:
            raise UsageError(f"a snapshot issued by {snapshot.issuer} cannot stand for {source}")
        held = self._snapshots.get(source)
        if held is not None and snapshot.issued_ms < held.issued_ms:
            raise ReplayError(
                f"directory snapshot of {source} issued at {_iso(snapshot.issued_ms)} is older "
                f"than the one held (issued at {_iso(held.issued_ms)})"
            )
        accepts = self.accepts_from(source)
        records, out_of_scope = [], []
        for entry in snapshot.entries:
            if accepts(entry.identity.name):
                records.append(_Record.of(entry, source))
            else:
                out_of_scope.append(entry.name)
        retained = self._retain(self._records.get(source, ()), records, int(now * 1000))
        self._snapshots[source] = snapshot
        self._records[source] = (*records, *retained)
        self._cache[source] = snapshot.data
        self._tombstones.pop(source, None)
        self._rebuild()
        return UpdateReport(
            source,
            tuple(record.entry.name for record in records),
            tuple(out_of_scope),
            tuple(record.entry.name for record in retained),
            snapshot.dropped,
        )

    @staticmethod
    def _retain(old: Sequence[_Record], new: Sequence[_Record], now_ms: int) -> list[_Record]:
        """Superseded certificates stay until their entry expires (SPEC §14.7, §14.9).

        An envelope signed just before a key rotation must still verify, and
        its signer's old entry was vouched for until ``valid_until`` anyway.
        A name that vanished from the snapshot altogether is not kept.
        """
        newest: dict[str, tuple[float, int]] = {}
        leaves = set()
        for record in new:
            leaves.add(record.leaf)
            name = record.entry.name
            newest[name] = max(newest.get(name, record.rank), record.rank)
        return [
            record
            for record in old
            if record.leaf not in leaves
            and record.entry.name in newest
            and record.rank < newest[record.entry.name]
            and record.live(now_ms)
        ]

    def add_crls(
        self,
        crls: Iterable[x509.CertificateRevocationList],
        trust: TrustStore,
        now: float,
    ) -> tuple[Dropped, ...]:
        """CRLs from local configuration (a CA's fresh CRL): verified, then served onwards.

        This is where revocations enter the directory; from here they travel
        in every snapshot this node signs.  They are not part of ``encode``:
        they are configuration, to be added again after a restart.
        """
        given = list(crls)
        cas = [
            cert
            for records in (self._own, *self._records.values())
            for record in records
            for cert in record.entry.certificates[1:]
        ]
        everything = TrustStore(trust.roots, _union(trust.crls, given))
        numbered = [(f"crls[{i}]", crl) for i, crl in enumerate(given)]
        genuine, dropped = _genuine_crls(numbered, cas, everything, _instant(now))
        self._local_crls = tuple(_newest((*self._local_crls, *genuine)).values())
        self._rebuild()
        return tuple(dropped)

    def _rebuild(self) -> None:
        # Revocation is immediate (SPEC §14.6): a serial listed by any CRL kept, from
        # whichever source, removes every entry whose chain holds it.
        sources = [snapshot.crls for snapshot in self._snapshots.values()]
        self._crls = _newest(crl for crls in (*sources, self._local_crls) for crl in crls)
        revoked = {
            (crl.issuer.public_bytes(), entry.serial_number)
            for crl in self._crls.values()
            for entry in crl
        }
        index: dict[str, list[_Record]] = {}
        for records in (self._own, self._static, *self._records.values()):
            for record in records:
                if not any(serial in revoked for serial in record.serials):
                    index.setdefault(record.entry.name, []).append(record)
        self._index = {
            name: tuple(sorted(records, key=lambda r: r.rank, reverse=True))
            for name, records in index.items()
        }

    # --- persistence ------------------------------------------------------------------

    def encode(self) -> bytes:
        """Each source's last snapshot, as received, for the store (``restore`` re-verifies)."""
        return pack(
            [_CACHE_VERSION, [[source, data] for source, data in sorted(self._cache.items())]]
        )

    def restore(self, data: bytes, trust: TrustStore, now: float) -> tuple[RestoreOutcome, ...]:
        """Re-verify and apply what ``encode`` stored, as after a restart.

        A cached snapshot that has expired is not used, but the names it spoke
        for are remembered, so that looking them up says "expired" (with when
        and from whom) rather than "unknown".  Those names are read from the
        unverified bytes and go only into error messages.
        """
        outcomes = []
        for source, snapshot_bytes in decode_cache(data):
            if source not in self._neighbours:
                outcomes.append(
                    RestoreOutcome(
                        source, None, RejectedError(f"{source} is no longer a neighbour")
                    )
                )
                continue
            try:
                verified = verify_snapshot(
                    snapshot_bytes,
                    trust,
                    now,
                    source,
                    policy=self.policy,
                    wanted=self.accepts_from(source),
                )
                report = self.update(source, verified, now)
            except DirectoryExpiredError as exc:
                snapshot = decode_snapshot(snapshot_bytes, self.policy)
                accepts = self.accepts_from(source)
                names = frozenset(
                    e.name for e in snapshot.entries if accepts(NodeName.parse(e.name))
                )
                self._tombstones[source] = _Tombstone(snapshot.expires_ms, names)
                self._cache[source] = snapshot_bytes
                outcomes.append(RestoreOutcome(source, None, exc))
            except RejectedError as exc:
                outcomes.append(RestoreOutcome(source, None, exc))
            else:
                outcomes.append(RestoreOutcome(source, report, None))
        return tuple(outcomes)

    # --- what this node serves --------------------------------------------------------

    def snapshot_entries(self, now: float) -> list[DirectoryEntry]:
        """Everything this node re-serves: its own entries and every live relayed one.

        Static peers are local configuration and are not passed on.  Each
        relayed entry keeps its ``valid_until`` (SPEC §14.8).
        """
        now_ms = int(now * 1000)
        chosen: dict[tuple[str, bytes], _Record] = {}
        for record in self._own[:1]:
            chosen[(record.entry.name, record.leaf)] = record
        for records in self._index.values():
            for record in records:
                if record.source == _STATIC or not record.live(now_ms):
                    continue
                key = (record.entry.name, record.leaf)
                held = chosen.get(key)
                if held is None or record.entry.valid_until_ms > held.entry.valid_until_ms:
                    chosen[key] = record
        return [chosen[key].entry.to_entry() for key in sorted(chosen)]

    def sign(self, now: float, lifetime: float) -> bytes:
        """This node's snapshot: what it serves, signed, for its neighbours to pull."""
        return sign_snapshot(
            self.identity,
            self.snapshot_entries(now),
            self.crls(),
            now,
            lifetime,
            policy=self.policy,
        )

    def crls(self) -> tuple[x509.CertificateRevocationList, ...]:
        """The newest genuine CRL per CA from every source (for snapshots and the TLS bundle)."""
        return tuple(sorted(self._crls.values(), key=_der))

    def names(self, now: float) -> list[str]:
        """The names with a live entry: whom this node can seal to now."""
        now_ms = int(now * 1000)
        return sorted(
            name for name, records in self._index.items() if any(r.live(now_ms) for r in records)
        )

    def sources(self) -> Mapping[str, VerifiedSnapshot]:
        """The snapshot in use from each source, by source name."""
        return dict(self._snapshots)

    # --- lookups (SPEC §14.9) -----------------------------------------------------------

    def recipient(self, name: str) -> PeerIdentity:
        return self.recipient_at(name, self._clock())

    def signer(self, name: str, key_id: bytes) -> PeerIdentity:
        return self.signer_at(name, key_id, self._clock())

    def recipient_at(self, name: str, now: float) -> PeerIdentity:
        """The newest live certificate of ``name``: the key to encrypt to now."""
        return self._choose(name, None, int(now * 1000), "encrypt to it").entry.identity

    def signer_at(self, name: str, key_id: bytes, now: float) -> PeerIdentity:
        """Any live certificate of ``name`` with signing key ``key_id``, the superseded included."""
        return self._choose(name, key_id, int(now * 1000), "verify its signatures").entry.identity

    def address(self, name: str, now: float) -> str:
        """Where to reach ``name`` ("" if it accepts no connections), from its newest live entry."""
        return self._choose(name, None, int(now * 1000), "connect to it").entry.address

    def _choose(self, name: str, key_id: bytes | None, now_ms: int, purpose: str) -> _Record:
        records = self._index.get(name, ())
        if key_id is not None:
            records = tuple(r for r in records if r.entry.identity.signing_key_id == key_id)
        for record in records:
            if record.live(now_ms):
                return record
        self._refuse(name, key_id, records, now_ms, purpose)

    def _describe(self, source: str) -> str:
        neighbour = self._neighbours.get(source)
        if neighbour is None:
            return {_SELF: "this node's own configuration", _STATIC: "static configuration"}.get(
                source, source
            )
        return f"{neighbour.relation.value} {source}"

    def _refuse(
        self, name: str, key_id: bytes | None, records: Sequence[_Record], now_ms: int, purpose: str
    ) -> NoReturn:
        """Fail closed, saying why: expired directory data, an expired certificate, or nothing."""
        # Each entry ended by whichever expiry came first; the latest such end decides.
        reasons: list[tuple[int, bool, str]] = []  # (when, directory?, source)
        for record in records:
            ends = []
            if now_ms >= record.entry.valid_until_ms:
                ends.append((record.entry.valid_until_ms, True))
            if now_ms > record.not_after_ms:
                ends.append((record.not_after_ms, False))
            when, directory = min(ends)  # not live, so at least one has passed
            reasons.append((when, directory, record.source))
        if not records:
            for source, tombstone in self._tombstones.items():
                if name in tombstone.names:
                    reasons.append((tombstone.expired_ms, True, source))
        if not reasons:
            if key_id is not None:
                raise UnknownSignerError(
                    f"no verified signing key {key_id.hex()} for sender {name}"
                )
            raise UsageError(f"{name} is not in the directory: no key to {purpose}")
        when, directory, source = max(reasons)
        ago = f"{(now_ms - when) / 1000:.0f} s ago"
        if directory:
            raise DirectoryExpiredError(
                f"directory data for {name} expired at {_iso(when)} ({ago}); it came from "
                f"{self._describe(source)}; refusing to {purpose} until a fresh directory "
                "arrives from there",
                source=source if source in self._neighbours else "",
                expired_ms=when,
            )
        raise CertificateExpiredError(
            f"the certificate of {name} (from {self._describe(source)}) expired at "
            f"{_iso(when)} ({ago}); refusing to {purpose}"
        )


def decode_cache(data: bytes) -> tuple[tuple[str, bytes], ...]:
    """The (source, snapshot) pairs ``NodeDirectory.encode`` wrote, or ``RejectedError``."""
    value = unpack(
        data,
        what="directory cache",
        max_size=_MAX_CACHED_SOURCES * DEFAULT_DIRECTORY_POLICY.max_snapshot_bytes,
        max_array=_MAX_CACHED_SOURCES,
    )
    if type(value) is not list or len(value) != 2:
        raise MalformedError("directory cache", "expected [version, sources]")
    version, items = value
    if type(version) is not int or version != _CACHE_VERSION:
        raise UnsupportedVersionError(f"directory cache version {version!r} is not supported")
    if type(items) is not list:
        raise MalformedError("directory cache.sources", "must be an array")
    pairs: list[tuple[str, bytes]] = []
    for i, item in enumerate(items):
        field = f"directory cache.sources[{i}]"
        if type(item) is not list or len(item) != 2 or type(item[1]) is not bytes:
            raise MalformedError(field, "expected [source, snapshot]")
        source = check_name(item[0], f"{field}.source")
        if pairs and source <= pairs[-1][0]:
            raise MalformedError(field, "sources must be sorted and unique")
        pairs.append((source, item[1]))
    require_canonical(value, data, what="directory cache")
    return tuple(pairs)
