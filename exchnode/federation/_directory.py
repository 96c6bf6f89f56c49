"""This node's directory: what it holds from whom, scope, expiry, revocation, its cache (SPEC §14).

Why a module of its own: :class:`NodeDirectory` is the directory's state --
the only part that changes over time.  It takes snapshots only as
``_directory_verify`` vouches for them, signs what it serves through
``_directory_wire``, and answers the ``Directory`` protocol's lookups.

Sealing needs the recipient's encryption key and opening needs the sender's
signing key.  Certificates bind both to a node's name, so what nodes must
learn from each other is only *which certificates exist* and where to reach
their holders.  Hubs gather that for their subtree and share it up and down.
Transport (a GET over mutual TLS) is the node's business; everything below
it is in this package.

Scope keeps each neighbour in its place, like ``Router.accept`` does for
envelopes: a child speaks only for the names it covers (a hub for its
division prefix, a department for itself), the parent only for names outside
this node's own subtree, and nobody for this node.  The certificate already
binds names to keys; scope also stops a neighbour from shadowing another
node's *address*, and it discards the echo of what a neighbour learned from
us.

Expiry is what makes a cache safe to use while a hub is unreachable.  Each
entry carries ``valid_until``, which never grows along a relay path (SPEC
§14.8), so an entry learned from a partitioned province still dies on time
downstream, however often the city hub re-signs; echoes cannot revive
anything.  Once an entry's time has passed, lookups **fail closed** with
:class:`DirectoryExpiredError`, naming the node, the time and the source.

Revocation is immediate: the CRLs kept (genuine and current, the newest per
CA, from every source and from local configuration) are what the node serves
and gives its TLS layer, and every entry whose chain holds a serial listed by
any genuine CRL vanishes from the directory at once, whichever source it came
from.  The directory remembers the signing keys of what vanished that way
(:meth:`NodeDirectory.revoked_keys`), so that a custodian holding envelopes
signed with one knows the signer is revoked, not merely unknown: they will
never verify again, anywhere.

Nothing here reads a clock: ``now`` (seconds since 1970) is an argument, and
:class:`NodeDirectory` takes a ``clock`` callable only because the
``Directory`` protocol's lookups have no ``now`` of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, NoReturn

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from exchnode.core import (
    LocalIdentity,
    NodeName,
    PeerIdentity,
    check_name,
    division_scope,
    pack,
    require_canonical,
    unpack,
)
from exchnode.errors import (
    CertificateExpiredError,
    DirectoryExpiredError,
    MalformedError,
    RejectedError,
    ReplayError,
    UnknownSignerError,
    UnsupportedVersionError,
    UsageError,
)
from exchnode.federation._directory_verify import (
    Dropped,
    VerifiedEntry,
    VerifiedSnapshot,
    accept_crls,
    instant,
    trust_with,
    verify_snapshot,
)
from exchnode.federation._directory_wire import (
    DEFAULT_DIRECTORY_POLICY,
    MAX_TIME_MS,
    DirectoryEntry,
    DirectoryPolicy,
    check_address,
    decode_snapshot,
    iso_ms,
    own_chain_der,
    sign_snapshot,
)
from exchnode.federation._routing import Neighbour, Relation
from exchnode.pki import CrlSet, TrustStore, read_node_certificate

__all__ = ["NodeDirectory", "RestoreOutcome", "UpdateReport", "decode_cache"]

_CACHE_VERSION = 1
_MAX_CACHED_SOURCES = 4096


# --- the directory of one node -------------------------------------------------------

_SELF = "self"
_NO_KEYS: frozenset[bytes] = frozenset()
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
                MAX_TIME_MS,
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
            check_address(address, "address")
        except MalformedError as exc:
            raise UsageError(str(exc)) from None
        self._neighbours: dict[str, Neighbour] = {}
        for neighbour in neighbours:
            name = str(neighbour.name)
            if neighbour.name == self.me or name in self._neighbours:
                raise UsageError(f"{name} is this node or listed twice as a neighbour")
            self._neighbours[name] = neighbour
        own_chain = tuple(x509.load_der_x509_certificate(der) for der in own_chain_der(identity))
        self._own = [
            _Record.of(VerifiedEntry(identity.peer, own_chain, address, MAX_TIME_MS), _SELF)
        ]
        for chain in previous:
            certs = (chain[0], *(c for c in chain[1:] if c.subject != c.issuer))
            contents = read_node_certificate(certs[0])
            if contents.name != self.me:
                raise UsageError(f"a previous chain of {self.me} certifies {contents.name}")
            peer = PeerIdentity(
                contents.name, contents.signing_key, contents.encryption_key, certs[0]
            )
            self._own.append(_Record.of(VerifiedEntry(peer, certs, address, MAX_TIME_MS), _SELF))
        self._static = [
            _Record.of(VerifiedEntry(peer, _certificates_of(peer), "", MAX_TIME_MS), _STATIC)
            for peer in static
        ]
        if any(record.entry.name == str(self.me) for record in self._static):
            raise UsageError(f"a static peer cannot stand in for this node ({self.me})")
        self._snapshots: dict[str, VerifiedSnapshot] = {}
        self._records: dict[str, tuple[_Record, ...]] = {}
        self._cache: dict[str, bytes] = {}
        self._tombstones: dict[str, _Tombstone] = {}
        # From local configuration: genuine and current (kept, served), genuine at all (revoking).
        self._local_crls = CrlSet()
        self._local_revoking = CrlSet()
        self._crls = CrlSet()
        self._index: dict[str, tuple[_Record, ...]] = {}
        self._revoked: dict[str, frozenset[bytes]] = {}
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
                f"directory snapshot of {source} issued at {iso_ms(snapshot.issued_ms)} is older "
                f"than the one held (issued at {iso_ms(held.issued_ms)})"
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
        cas: Iterable[x509.Certificate] = (),
    ) -> tuple[Dropped, ...]:
        """CRLs from local configuration (a CA's fresh CRL): checked, then served onwards.

        ``cas``: more candidate CA certificates (the federation's CA bundle), besides the
        CAs of the chains held, so that a CRL is taken before any entry under its CA arrives.

        This is where revocations enter the directory; from here they travel
        in every snapshot this node signs.  They pass the same check as the
        CRLs of a snapshot (``exchnode.pki.check_crls``); one that is genuine
        but not current is reported and not served, yet revokes what it lists.
        They are not part of ``encode``: they are configuration, to be added
        again after a restart.
        """
        given = list(crls)
        cas = [
            *cas,
            *(
                cert
                for records in (self._own, *self._records.values())
                for record in records
                for cert in record.entry.certificates[1:]
            ),
        ]
        numbered = [(f"crls[{i}]", crl) for i, crl in enumerate(given)]
        checked, dropped = accept_crls(numbered, cas, trust_with(trust, given), instant(now))
        self._local_crls = self._local_crls.with_crls(checked.current)
        self._local_revoking = self._local_revoking.with_crls(checked.genuine)
        self._rebuild()
        return tuple(dropped)

    def _rebuild(self) -> None:
        # Revocation is immediate (SPEC §14.6): a serial listed by any genuine CRL, from
        # whichever source, removes every entry whose chain holds it.
        snapshots = self._snapshots.values()
        self._crls = self._local_crls.with_crls(crl for s in snapshots for crl in s.crls)
        revoking = self._local_revoking.with_crls(crl for s in snapshots for crl in s.revoking)
        revoked = self._crls.revoked() | revoking.revoked()
        index: dict[str, list[_Record]] = {}
        # What was in the directory until now counts too: the snapshot that brings a CRL
        # usually no longer carries the entry it revokes.
        before = (record for records in self._index.values() for record in records)
        for records in (before, self._own, self._static, *self._records.values()):
            for record in records:
                if any(serial in revoked for serial in record.serials):
                    name, key_id = record.entry.name, record.entry.identity.signing_key_id
                    self._revoked[name] = self._revoked.get(name, _NO_KEYS) | {key_id}
                elif records is not before:
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
        """The CRLs kept from every source: genuine and current when they came, the newest
        per CA, sorted (for snapshots, the TLS layer and the chain verifier alike)."""
        return self._crls.crls

    def names(self, now: float) -> list[str]:
        """The names with a live entry: whom this node can seal to now."""
        now_ms = int(now * 1000)
        return sorted(
            name for name, records in self._index.items() if any(r.live(now_ms) for r in records)
        )

    def revoked_keys(self, name: str) -> frozenset[bytes]:
        """The signing key ids of ``name`` whose certificate this node has seen revoked.

        Seen: an entry this node held (or holds) for ``name`` has a certificate
        listed by a CRL it keeps (SPEC §14.6).  An envelope signed with one of
        these keys can never verify again, so a custodian ends its custody
        instead of waiting for the key to be known.  Kept in memory only: after
        a restart, what the cached snapshots still show.
        """
        return self._revoked.get(name, _NO_KEYS)

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
                f"directory data for {name} expired at {iso_ms(when)} ({ago}); it came from "
                f"{self._describe(source)}; refusing to {purpose} until a fresh directory "
                "arrives from there",
                source=source if source in self._neighbours else "",
                expired_ms=when,
            )
        raise CertificateExpiredError(
            f"the certificate of {name} (from {self._describe(source)}) expired at "
            f"{iso_ms(when)} ({ago}); refusing to {purpose}"
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
