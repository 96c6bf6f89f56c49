"""This node's directory: what it holds from whom, scope, expiry, revocation, its cache (SPEC §14).

Why a module of its own: :class:`NodeDirectory` is the directory's state --
the only part that changes over time.  It takes snapshots only as
``_directory_verify`` vouches for them, signs what it serves through
``_directory_wire``, and answers the ``Directory`` protocol's lookups.  The
state and the rules every exchange shares are ``_directory_core``; format
2's feeds are ``_directory_feeds``, lookups on demand ``_directory_lookups``,
the CRLs ``_directory_crls``; this module adds format 1 and the lookups a
sealer and an opener make.

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

Format 2 (SPEC §14.13-§14.17) is what makes this scale: a node holds its own
subtree, its path to the root, and the names it addresses, never the
network.  It serves each audience as a change feed (``_directory_serving``:
its subtree to its parent, its path to its children), takes its neighbours'
pages row by row (:meth:`NodeDirectory.apply_page`, chains verified once:
``_directory_trust``), lets a page's ``expires`` renew every row of its feed
(``_directory_rows.Expiry``) while a stale source's rows are capped, answers
lookups from what it holds (:meth:`NodeDirectory.lookup_answer`) and keeps
what it looked up in a bounded cache; a lookup that misses outside its
subtree calls :attr:`NodeDirectory.on_miss`, so the node's resolver asks the
hierarchy.  Format 1 stays for neighbours that have not moved.

Nothing here reads a clock: ``now`` (seconds since 1970) is an argument, and
:class:`NodeDirectory` takes a ``clock`` callable only because the
``Directory`` protocol's lookups have no ``now`` of their own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import NoReturn

from exchnode.core import (
    NodeName,
    PeerIdentity,
    check_name,
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
from exchnode.federation._directory_core import NO_KEYS, SELF, STATIC, Tombstone
from exchnode.federation._directory_feeds import FeedExchange
from exchnode.federation._directory_lookups import LookupExchange
from exchnode.federation._directory_rows import (
    Expiry,
    LookupReport,
    PageReport,
    Record,
    RestoreOutcome,
    UpdateReport,
)
from exchnode.federation._directory_verify import (
    VerifiedSnapshot,
    verify_snapshot,
)
from exchnode.federation._directory_wire import (
    DEFAULT_DIRECTORY_POLICY,
    MAX_TIME_MS,
    decode_snapshot,
    iso_ms,
    sign_snapshot,
)
from exchnode.pki import (
    TrustStore,
)

__all__ = [
    "LookupReport",
    "NodeDirectory",
    "PageReport",
    "RestoreOutcome",
    "UpdateReport",
    "decode_cache",
]

_CACHE_VERSION = 1
_MAX_CACHED_SOURCES = 4096


# --- the directory of one node -------------------------------------------------------


class NodeDirectory(FeedExchange, LookupExchange):
    """This node's view of the federation: itself, static peers, and each neighbour's snapshot.

    Implements the ``Directory`` protocol.  Its lookups read ``clock()``;
    the ``*_at`` variants and everything else take ``now`` explicitly.
    """

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
        # The snapshot's expiry is the feed's; an entry keeps a cap of its own only if lower.
        feed = Expiry(snapshot.expires_ms)
        for entry in snapshot.entries:
            if accepts(entry.identity.name):
                if entry.valid_until_ms >= snapshot.expires_ms:
                    entry = dataclasses.replace(entry, valid_until_ms=MAX_TIME_MS)
                records.append(Record.of(entry, source, feed))
            else:
                out_of_scope.append(entry.name)
        retained = self._retain(self._records.get(source, ()), records, int(now * 1000))
        self._snapshots[source] = snapshot
        self._pulls.pop(source, None)  # a neighbour back on format 1 (SPEC §14.17)
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
    def _retain(old: Sequence[Record], new: Sequence[Record], now_ms: int) -> list[Record]:
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
                self._tombstones[source] = Tombstone(snapshot.expires_ms, names)
                self._cache[source] = snapshot_bytes
                outcomes.append(RestoreOutcome(source, None, exc))
            except RejectedError as exc:
                outcomes.append(RestoreOutcome(source, None, exc))
            else:
                outcomes.append(RestoreOutcome(source, report, None))
        return tuple(outcomes)

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

    def revoked_keys(self, name: str) -> frozenset[bytes]:
        """The signing key ids of ``name`` whose certificate this node has seen revoked.

        Seen: an entry this node held (or holds) for ``name`` has a certificate
        listed by a CRL it keeps (SPEC §14.6).  An envelope signed with one of
        these keys can never verify again, so a custodian ends its custody
        instead of waiting for the key to be known.  Kept in memory only: after
        a restart, what the cached snapshots still show.
        """
        return self._revoked.get(name, NO_KEYS)

    def cached_snapshots(self) -> dict[str, bytes]:
        """Each format-1 source's last snapshot as received (SPEC §14.11), by source."""
        return dict(self._cache)

    def sources(self) -> Mapping[str, VerifiedSnapshot]:
        """The snapshot in use from each source, by source name."""
        return dict(self._snapshots)

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

    def _choose(self, name: str, key_id: bytes | None, now_ms: int, purpose: str) -> Record:
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
            return {SELF: "this node's own configuration", STATIC: "static configuration"}.get(
                source, source
            )
        return f"{neighbour.relation.value} {source}"

    def _refuse(
        self, name: str, key_id: bytes | None, records: Sequence[Record], now_ms: int, purpose: str
    ) -> NoReturn:
        """Fail closed, saying why: expired directory data, an expired certificate, or nothing."""
        # Each entry ended by whichever expiry came first; the latest such end decides.
        reasons: list[tuple[int, bool, str]] = []  # (when, directory?, source)
        for record in records:
            ends = []
            if now_ms >= record.valid_until_ms:
                ends.append((record.valid_until_ms, True))
            if now_ms > record.not_after_ms:
                ends.append((record.not_after_ms, False))
            when, directory = min(ends)  # not live, so at least one has passed
            reasons.append((when, directory, record.source))
        if not records:
            for source, tombstone in self._tombstones.items():
                if name in tombstone.names:
                    reasons.append((tombstone.expired_ms, True, source))
        if self.on_miss is not None and self.wants(name):
            self.on_miss(name)  # the resolver asks the hierarchy; this lookup still fails
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
