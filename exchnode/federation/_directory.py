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
import hashlib
import itertools
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn

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
    ExchnodeError,
    MalformedError,
    RejectedError,
    ReplayError,
    TooLargeError,
    UnknownSignerError,
    UnsupportedVersionError,
    UsageError,
)
from exchnode.federation._directory_pages import (
    DEFAULT_PAGE_POLICY,
    Audience,
    CrlRow,
    PagePolicy,
    Removed,
    leaf_digest,
    sign_page,
)
from exchnode.federation._directory_rows import (
    Expiry,
    LookupReport,
    PageReport,
    PullState,
    Record,
    RestoreOutcome,
    UpdateReport,
    ancestors,
    authority_key,
    ca_chain,
    certificates_of,
    decode_crl_row,
    decode_pull_state,
    decode_row,
    encode_row,
    row_size,
)
from exchnode.federation._directory_serving import AudienceFeed, RowKey
from exchnode.federation._directory_trust import ChainMemo, VerifiedCrl, verify_page
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
from exchnode.federation._feed import FEED_ID_BYTES, FeedPage, FeedPosition
from exchnode.federation._routing import Neighbour, Relation
from exchnode.pki import (
    CrlSet,
    TrustStore,
    load_certificate_der,
    load_crl_der,
    read_node_certificate,
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

_SELF = "self"
_NO_KEYS: frozenset[bytes] = frozenset()
_STATIC = "static"


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
        page_policy: PagePolicy = DEFAULT_PAGE_POLICY,
        feed_ids: tuple[bytes, bytes] | None = None,
        lookup_capacity: int = 4096,
        memo: ChainMemo | None = None,
    ) -> None:
        """``static``: identities the caller has verified itself; used here, never re-served.
        ``previous``: this node's earlier chains (leaf first), still published so that
        envelopes signed before a key rotation keep verifying until they expire.
        ``feed_ids``: the ids of the feeds this node serves its parent and its children
        (format 2); a running node draws them at random at each start, so its pullers
        reset rather than trust positions of a state it no longer has.  ``lookup_capacity``:
        how many names looked up on demand are kept (least recently used out).
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
            Record.of(VerifiedEntry(identity.peer, own_chain, address, MAX_TIME_MS), _SELF)
        ]
        for chain in previous:
            certs = (chain[0], *(c for c in chain[1:] if c.subject != c.issuer))
            contents = read_node_certificate(certs[0])
            if contents.name != self.me:
                raise UsageError(f"a previous chain of {self.me} certifies {contents.name}")
            peer = PeerIdentity(
                contents.name, contents.signing_key, contents.encryption_key, certs[0]
            )
            self._own.append(Record.of(VerifiedEntry(peer, certs, address, MAX_TIME_MS), _SELF))
        self._static = [
            Record.of(VerifiedEntry(peer, certificates_of(peer), "", MAX_TIME_MS), _STATIC)
            for peer in static
        ]
        if any(record.entry.name == str(self.me) for record in self._static):
            raise UsageError(f"a static peer cannot stand in for this node ({self.me})")
        self._snapshots: dict[str, VerifiedSnapshot] = {}
        self._records: dict[str, tuple[Record, ...]] = {}
        self._cache: dict[str, bytes] = {}
        self._tombstones: dict[str, _Tombstone] = {}
        # From local configuration: genuine and current (kept, served), genuine at all (revoking).
        self._local_crls = CrlSet()
        self._local_revoking = CrlSet()
        self._crls = CrlSet()
        self._index: dict[str, tuple[Record, ...]] = {}
        self._revoked: dict[str, frozenset[bytes]] = {}
        self._revoked_serials: frozenset[tuple[bytes, int]] = frozenset()
        # Format 2 (SPEC §14.13-§14.17): what is pulled by feed, looked up, and served.
        self.page_policy = page_policy
        self.memo = ChainMemo() if memo is None else memo
        self._pulls: dict[str, PullState] = {}
        if lookup_capacity < 1:
            raise UsageError("the lookup cache holds at least one name")
        self._lookup_capacity = lookup_capacity
        self._lookups: OrderedDict[str, tuple[Record, ...]] = OrderedDict()
        # CRLs taken from pages and lookup answers (never removed: a CA's CRL only grows).
        self._lookup_crls = CrlSet()
        self._lookup_revoking = CrlSet()
        self._known_crls: set[bytes] = set()
        self._crl_chains: dict[bytes, tuple[bytes, ...]] = {}
        if feed_ids is None:  # deterministic for tests; a running node passes random ones
            seed = hashlib.sha256(b"exchnode feed ids\x00" + self._own[0].leaf).digest()
            feed_ids = (seed[:FEED_ID_BYTES], seed[FEED_ID_BYTES:])
        self._serving = {
            Audience.UP: AudienceFeed(feed_ids[0]),
            Audience.DOWN: AudienceFeed(feed_ids[1]),
        }
        self._dirty = True
        self._stale: dict[str, int | None] = {}
        self._recheck_ms = 0
        self._working: tuple[int, int, TrustStore] | None = None
        self._generation = 0
        self._path = frozenset(ancestors(self.me))
        #: Called with a name a lookup found nothing live for, outside this node's subtree:
        #: the node's resolver asks the hierarchy for it (``DirectoryService``).
        self.on_miss: Callable[[str], None] | None = None
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
        for crl in checked.genuine:  # its CA's chain travels with it (SPEC §14.14)
            der = crl.public_bytes(serialization.Encoding.DER)
            chain = ca_chain(crl.issuer, cas)
            if chain:
                self._crl_chains[der] = chain
        self._local_crls = self._local_crls.with_crls(checked.current)
        self._local_revoking = self._local_revoking.with_crls(checked.genuine)
        self._rebuild()
        return tuple(dropped)

    def _rebuild(self, *, crls: bool = True) -> None:
        """The index of live records; with ``crls``, the CRLs kept first (they changed)."""
        # Revocation is immediate (SPEC §14.6): a serial listed by any genuine CRL, from
        # whichever source, removes every entry whose chain holds it.
        if crls:
            snapshots = self._snapshots.values()
            # Pages' and lookups' CRLs are in the lookup sets: kept once, whoever brought them.
            self._crls = self._local_crls.with_crls(
                itertools.chain((crl for s in snapshots for crl in s.crls), self._lookup_crls)
            )
            revoking = self._local_revoking.with_crls(
                itertools.chain(
                    (crl for s in snapshots for crl in s.revoking), self._lookup_revoking
                )
            )
            self._revoked_serials = self._crls.revoked() | revoking.revoked()
        revoked = self._revoked_serials
        self._generation += 1
        self._dirty = True
        index: dict[str, list[Record]] = {}
        # What was in the directory until now counts too: the snapshot that brings a CRL
        # usually no longer carries the entry it revokes.
        before = (record for records in self._index.values() for record in records)
        looked_up = (record for records in self._lookups.values() for record in records)
        for records in (before, self._own, self._static, looked_up, *self._records.values()):
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
        chosen: dict[tuple[str, bytes], Record] = {}
        for record in self._own[:1]:
            chosen[(record.entry.name, record.leaf)] = record
        for records in self._index.values():
            for record in records:
                if record.source == _STATIC or not record.live(now_ms):
                    continue
                key = (record.entry.name, record.leaf)
                held = chosen.get(key)
                if held is None or record.valid_until_ms > held.valid_until_ms:
                    chosen[key] = record
        return [
            DirectoryEntry(
                key[0],
                chosen[key].chain,
                chosen[key].entry.address,
                min(chosen[key].valid_until_ms, MAX_TIME_MS),
            )
            for key in sorted(chosen)
        ]

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

    def cached_snapshots(self) -> dict[str, bytes]:
        """Each format-1 source's last snapshot as received (SPEC §14.11), by source."""
        return dict(self._cache)

    def sources(self) -> Mapping[str, VerifiedSnapshot]:
        """The snapshot in use from each source, by source name."""
        return dict(self._snapshots)

    # --- format 2: serving changes by audience (SPEC §14.13-§14.15) ------------------------

    @property
    def parent(self) -> str | None:
        """The neighbour lookups go up to (None at the top of the hierarchy)."""
        for name, neighbour in self._neighbours.items():
            if neighbour.relation is Relation.PARENT:
                return name
        return None

    def neighbours(self) -> Mapping[str, Neighbour]:
        return dict(self._neighbours)

    def positions(self, now: float, lifetime: float) -> dict[Audience, int]:
        """The last change number of each audience's feed: what to announce when it moves."""
        self._refresh_serving(int(now * 1000), int(lifetime * 1000))
        return {audience: serving.feed.last for audience, serving in self._serving.items()}

    def audience_of(self, neighbour: str) -> Audience:
        """What this node says to ``neighbour``: its path to a child, its subtree otherwise."""
        relation = self._neighbour(neighbour).relation
        return Audience.DOWN if relation is Relation.CHILD else Audience.UP

    def _expects_from(self, source: str) -> Audience:
        # A parent says its path to us; a child or a link, its subtree.
        relation = self._neighbour(source).relation
        return Audience.DOWN if relation is Relation.PARENT else Audience.UP

    def _sources_for(self, audience: Audience) -> list[str]:
        # Rows a node says upwards come from its children; downwards, from its parent.
        # A link's rows are answered to lookups, never relayed in a feed.
        wanted = Relation.CHILD if audience is Audience.UP else Relation.PARENT
        return [name for name, n in self._neighbours.items() if n.relation is wanted]

    def _source_expiry(self, source: str) -> int:
        pull = self._pulls.get(source)
        if pull is not None:
            return pull.expiry.ms
        snapshot = self._snapshots.get(source)
        return 0 if snapshot is None else snapshot.expires_ms

    def _stale_caps(self, now_ms: int, lifetime_ms: int) -> dict[str, int | None]:
        """Per source, the cap its rows get while it is stale (None: current).

        A source is *current* while its feed is vouched for at least half this
        node's lifetime ahead; a stale one (its pulls failing) must not hold
        back everything else this node says, so instead of lowering the page's
        ``expires`` its own rows are capped at its expiry: a change of those
        rows only, once when it goes stale and once when it comes back.
        """
        caps: dict[str, int | None] = {}
        for source in self._neighbours:
            expiry = self._source_expiry(source)
            caps[source] = expiry if expiry < now_ms + lifetime_ms // 2 else None
        return caps

    def _serve_expires(self, audience: Audience, now_ms: int, lifetime_ms: int) -> int:
        """A page's ``expires``: this node's lifetime, and every current source's feed."""
        expires = now_ms + lifetime_ms
        for source in self._sources_for(audience):
            if self._stale.get(source) is None and source in self._stale:
                expires = min(expires, self._source_expiry(source))
        return expires

    def _crl_chain(self, crl: x509.CertificateRevocationList, der: bytes) -> tuple[bytes, ...]:
        """The chain of a CRL's CA (root excluded), found among the chains this node holds."""
        chain = self._crl_chains.get(der)
        if chain is not None:
            return chain
        found: tuple[bytes, ...] = ()
        records = itertools.chain(self._own, *self._records.values())
        for record in records:
            certificates = record.entry.certificates
            for j, cert in enumerate(certificates[1:], start=1):
                if cert.subject == crl.issuer:
                    found = record.chain[j:]
                    break
            if found:
                break
        self._crl_chains[der] = found
        return found

    def _served_rows(
        self, audience: Audience, now_ms: int, caps: Mapping[str, int | None], horizon: int
    ) -> dict[RowKey, DirectoryEntry | CrlRow]:
        """What this node says to ``audience`` now.

        A row past its cap is still said, dead, for ``horizon`` ms, so that
        downstream lookups fail with "expired, from there" rather than
        "unknown" (SPEC §14.9); then it becomes a removal.
        """
        rows: dict[RowKey, DirectoryEntry | CrlRow] = {}
        sources = set(self._sources_for(audience))
        for record in self._own:
            digest = leaf_digest(record.leaf)
            rows[("e", record.entry.name, digest)] = DirectoryEntry(
                record.entry.name, record.chain, record.entry.address, MAX_TIME_MS
            )
        for name, records in self._index.items():
            if audience is Audience.DOWN and name not in self._path:
                continue
            for record in records:
                if record.source not in sources or now_ms > record.not_after_ms:
                    continue
                if record.valid_until_ms + horizon <= now_ms:
                    continue
                cap = record.entry.valid_until_ms
                stale = caps.get(record.source)
                if stale is not None:
                    cap = min(cap, stale)
                key: RowKey = ("e", name, leaf_digest(record.leaf))
                held = rows.get(key)
                if isinstance(held, DirectoryEntry) and held.valid_until_ms >= cap:
                    continue
                rows[key] = DirectoryEntry(name, record.chain, record.entry.address, cap)
        for crl in self._crls:
            der = crl.public_bytes(serialization.Encoding.DER)
            rows[("c", "", authority_key(crl))] = CrlRow(der, self._crl_chain(crl, der))
        return rows

    def _refresh_serving(self, now_ms: int, lifetime_ms: int) -> None:
        caps = self._stale_caps(now_ms, lifetime_ms)
        if not self._dirty and caps == self._stale and now_ms < self._recheck_ms:
            return
        self._stale = caps
        horizon = int(self.policy.max_lifetime * 1000)
        recheck = MAX_TIME_MS
        for audience, serving in self._serving.items():
            rows = self._served_rows(audience, now_ms, caps, horizon)
            serving.replace(rows, now_ms, horizon)
            for row in rows.values():
                if isinstance(row, DirectoryEntry):
                    end = row.valid_until_ms
                    recheck = min(recheck, end if end > now_ms else end + horizon)
        for source, expiry in self._pulled_expiries():
            if caps.get(source) is None:  # when a current source would turn stale
                recheck = min(recheck, expiry - lifetime_ms // 2)
        for records in self._index.values():
            for record in records:
                recheck = min(recheck, record.not_after_ms + 1)
        self._recheck_ms = recheck
        self._dirty = False

    def _pulled_expiries(self) -> list[tuple[str, int]]:
        return [(source, self._source_expiry(source)) for source in self._neighbours]

    def feed_page(
        self,
        audience: Audience,
        since: FeedPosition | None,
        now: float,
        lifetime: float,
        *,
        listing: bool = False,
    ) -> bytes:
        """The next page of what changed for ``audience`` after ``since``, signed (SPEC §14.14).

        At most ``page_policy.max_entries`` rows and about half its byte
        limit; ``more`` tells the asker to ask again at once from ``next``.
        """
        if audience is Audience.LOOKUP:
            raise UsageError("a lookup is answered by lookup_answer, not from a feed")
        if not 0 < lifetime <= self.policy.max_lifetime:
            raise UsageError(f"directory lifetime must be in (0, {self.policy.max_lifetime:.0f}] s")
        now_ms = int(now * 1000)
        lifetime_ms = int(lifetime * 1000)
        self._refresh_serving(now_ms, lifetime_ms)
        serving = self._serving[audience]
        policy = self.page_policy
        page = serving.feed.page(since, policy.max_entries, listing=listing)
        entries: list[DirectoryEntry] = []
        removed: list[Removed] = []
        crls: list[CrlRow] = []
        budget = policy.max_page_bytes // 2
        next_position, more = page.next, page.more
        for i, key in enumerate(page.keys):
            row = serving.rows.get(key)
            size = 64 if row is None else row_size(row)
            if i and (budget < size or (isinstance(row, CrlRow) and len(crls) == policy.max_crls)):
                seq = serving.feed.seq_of(page.keys[i - 1])
                next_position, more = FeedPosition(serving.feed.feed_id, seq or 0), True
                break
            budget -= size
            if isinstance(row, DirectoryEntry):
                entries.append(row)
            elif isinstance(row, CrlRow):
                crls.append(row)
            else:
                removal = serving.removal(key)
                if removal is not None:
                    removed.append(removal)
        return sign_page(
            self.identity,
            issued_ms=now_ms,
            expires_ms=self._serve_expires(audience, now_ms, lifetime_ms),
            audience=audience,
            since=since,
            next=next_position,
            reset=page.reset,
            more=more,
            entries=entries,
            removed=removed,
            crls=crls,
            policy=policy,
        )

    def snapshot_for(self, neighbour: str, now: float, lifetime: float) -> bytes:
        """A format-1 snapshot of what this node says to ``neighbour`` (SPEC §14.17).

        For a neighbour that has not moved to format 2.  Raises ``TooLargeError``
        when that does not fit format 1's limits: the caller says so to the
        neighbour (``413``) rather than serve a part of it.
        """
        audience = self.audience_of(neighbour)
        now_ms = int(now * 1000)
        lifetime_ms = int(lifetime * 1000)
        self._refresh_serving(now_ms, lifetime_ms)
        rows = self._serving[audience].rows.values()
        entries = [row for row in rows if isinstance(row, DirectoryEntry)]
        crls = [load_crl_der(row.crl) for row in rows if isinstance(row, CrlRow)]
        if len(entries) > self.policy.max_entries or len(crls) > self.policy.max_crls:
            raise TooLargeError(
                "directory",
                f"what {self.me} says to {neighbour} is {len(entries)} entries and {len(crls)} "
                f"CRLs, beyond format 1's limits of {self.policy.max_entries} and "
                f"{self.policy.max_crls}: upgrade to directory format 2",
            )
        expires = self._serve_expires(audience, now_ms, lifetime_ms)
        try:
            return sign_snapshot(
                self.identity,
                entries,
                crls,
                now,
                min(lifetime, (expires - now_ms) / 1000),
                policy=self.policy,
            )
        except UsageError as exc:
            raise TooLargeError("directory", f"{exc}: upgrade to directory format 2") from None

    # --- format 2: pulling by feed ------------------------------------------------------

    def pull_position(self, source: str) -> tuple[FeedPosition | None, bool]:
        """Where to ask ``source``'s feed from next, and whether in a reset's listing."""
        self._neighbour(source)
        pull = self._pulls.get(source)
        if pull is None:
            return None, False
        return pull.cursor.position, pull.cursor.resetting

    def _working_trust(self, trust: TrustStore) -> TrustStore:
        # The local roots and CRLs with every CRL kept: a page brings only the changed ones.
        held = self._working
        crls = (*self._crls, *self._revoking())
        key = hash((id(trust), *map(id, crls)))  # CRL objects outlive the sets that hold them
        if held is None or held[0] != key:
            held = (key, 0, trust_with(trust, crls))
            self._working = held
        return held[2]

    def _revoking(self) -> list[x509.CertificateRevocationList]:
        return [*self._local_revoking, *self._lookup_revoking]

    def apply_page(self, source: str, data: bytes, trust: TrustStore, now: float) -> PageReport:
        """Verify one page of ``source``'s feed and apply it (SPEC §14.15).

        Raises a ``RejectedError`` if the page as a whole is refused; the
        position does not move then, and the next pull asks again.
        """
        self._neighbour(source)
        pull = self._pulls.get(source)
        if pull is None:
            pull = PullState(self._records.get(source, ()))
        verified = verify_page(
            data,
            self._working_trust(trust),
            now,
            source,
            self._expects_from(source),
            memo=self.memo,
            since=pull.cursor.position,
            revoked=self._revoked_serials.__contains__,
            cas=self.identity.chain,
            known_crls=self._known_crls,
            wanted=self.accepts_from(source),
            policy=self.page_policy,
            freshness=self.policy,
        )
        if verified.issued_ms < pull.issued_ms:
            raise ReplayError(
                f"directory page of {source} issued at {iso_ms(verified.issued_ms)} is older than "
                f"the last one taken (issued at {iso_ms(pull.issued_ms)})"
            )
        keys = [*verified.listed, *((r.name, r.leaf_digest) for r in verified.removed)]
        feed_page = FeedPage(keys, verified.reset, verified.next, verified.more)
        pull.cursor.begin(feed_page, pull.records)
        set_rows: list[tuple[str, bytes, bytes]] = []
        gone: list[tuple[str, bytes]] = []
        accepted = []
        for removal in verified.removed:
            if pull.records.pop((removal.name, removal.leaf_digest), None) is not None:
                gone.append((removal.name, removal.leaf_digest))
        for key in verified.refused:  # a row changed into one we refuse: not held either
            if pull.records.pop(key, None) is not None:
                gone.append(key)
        for entry in verified.entries:
            record = Record.of(entry, source, pull.expiry)
            digest = leaf_digest(record.chain[0])
            pull.records[(entry.name, digest)] = record
            set_rows.append((entry.name, digest, encode_row(record)))
            accepted.append(entry.name)
        crl_rows = []
        for verified_crl in verified.crls:
            der = verified_crl.crl.public_bytes(serialization.Encoding.DER)
            self._crl_chains.setdefault(der, verified_crl.ca_chain)
            crl_rows.append(
                (authority_key(verified_crl.crl), pack([der, list(verified_crl.ca_chain)]))
            )
        self._take_crls(verified.crls, verified.revoking)
        pull.crl_rows.update(dict(crl_rows))
        for key in pull.cursor.end(feed_page):
            if pull.records.pop(key, None) is not None:
                gone.append(key)
        if not verified.more:  # the run is complete: the page vouches for all it said
            pull.expiry.ms = verified.expires_ms
        pull.issued_ms = verified.issued_ms
        self._pulls[source] = pull
        self._snapshots.pop(source, None)
        self._cache.pop(source, None)
        self._tombstones.pop(source, None)
        self._records[source] = tuple(pull.records.values())
        new_crls = bool(verified.crls or verified.revoking)
        if set_rows or gone or new_crls:
            self._rebuild(crls=new_crls)
        else:  # nothing but the feed's expiry: no index to rebuild, but serve anew
            self._dirty = True
        return PageReport(
            source,
            verified.more,
            tuple(accepted),
            tuple(verified.skipped),
            verified.dropped,
            tuple(set_rows),
            tuple(gone),
            tuple(crl_rows),
            self._pull_state_bytes(pull),
        )

    def _pull_state_bytes(self, pull: PullState) -> bytes | None:
        position = pull.cursor.stored_position
        if position is None:
            return None
        return pack([1, position.feed, position.seq, pull.expiry.ms, pull.issued_ms])

    def restore_pull(
        self,
        source: str,
        state: bytes | None,
        rows: Iterable[bytes],
        crl_rows: Iterable[bytes],
        trust: TrustStore,
        now: float,
    ) -> tuple[Dropped, ...]:
        """Take back what ``apply_page`` had stored for ``source``, each chain verified again.

        Only local bytes; still, nothing unverified enters: each row's chain
        and each CRL pass the same checks as from a page.  A row that fails
        is left out (and reported); the feed position is kept only with the
        state, else the next pull resets.
        """
        self._neighbour(source)
        pull = PullState(())
        dropped: list[Dropped] = []
        when = instant(now)
        crls = []
        chains: list[x509.Certificate] = list(self.identity.chain)
        for i, data in enumerate(crl_rows):
            try:
                der, ca_chain = decode_crl_row(data)
                crl = load_crl_der(der)
                pull.crl_rows[authority_key(crl)] = bytes(data)
                chains.extend(load_certificate_der(c) for c in ca_chain)
            except RejectedError as exc:
                dropped.append(Dropped(f"crl row {i}", "", exc.code, str(exc)))
                continue
            crls.append((f"crl row {i}", crl))
            self._crl_chains.setdefault(der, ca_chain)
        working = self._working_trust(trust)
        checked, refused = accept_crls(
            crls, chains, trust_with(working, (c for _, c in crls)), when
        )
        dropped.extend(refused)
        self._lookup_crls = self._lookup_crls.with_crls(checked.current)
        self._lookup_revoking = self._lookup_revoking.with_crls(checked.genuine)
        self._known_crls.update(c.public_bytes(serialization.Encoding.DER) for c in checked.current)
        lean = trust_with(working, checked.current, checked.genuine)
        accepts = self.accepts_from(source)
        for i, data in enumerate(rows):
            try:
                entry = decode_row(data)
                peer, certificates = self.memo.verify(
                    entry.chain, lean, now, self._revoked_serials.__contains__, f"row {i}"
                )
                if str(peer.name) != entry.name or not accepts(peer.name):
                    raise MalformedError(f"row {i}", f"{entry.name} does not belong here")
            except RejectedError as exc:
                dropped.append(Dropped(f"row {i}", "", exc.code, str(exc)))
                continue
            verified = VerifiedEntry(peer, certificates, entry.address, entry.valid_until_ms)
            pull.records[(entry.name, leaf_digest(entry.chain[0]))] = Record.of(
                verified, source, pull.expiry
            )
        if state is not None:
            try:
                position, expires_ms, issued_ms = decode_pull_state(state)
            except RejectedError as exc:
                dropped.append(Dropped("state", "", exc.code, str(exc)))
            else:
                pull.cursor.position = position
                pull.expiry.ms = expires_ms
                pull.issued_ms = issued_ms
        self._pulls[source] = pull
        self._records[source] = tuple(pull.records.values())
        self._rebuild()
        return tuple(dropped)

    # --- format 2: lookups on demand (SPEC §14.16) ----------------------------------------

    def wants(self, name: str) -> bool:
        """Whether asking the hierarchy for ``name`` could help: outside this node's subtree."""
        try:
            parsed = NodeName.parse(name)
        except ExchnodeError:
            return False
        return parsed != self.me and not self._within_me(parsed)

    def has_live(self, name: str, now: float) -> bool:
        now_ms = int(now * 1000)
        return any(record.live(now_ms) for record in self._index.get(name, ()))

    def lookup_split(self, names: Iterable[str], now: float) -> tuple[list[str], list[str]]:
        """The names this node answers itself, and those to ask its parent first."""
        has_parent = self.parent is not None
        local, forward = [], []
        for name in names:
            if has_parent and self.wants(name) and not self.has_live(name, now):
                forward.append(name)
            else:
                local.append(name)
        return local, forward

    def lookup_answer(self, names: Iterable[str], now: float, lifetime: float) -> bytes:
        """A signed answer with every live entry of ``names`` held; the rest unknown.

        Unknown is authoritative for a name in this node's subtree (its
        children tell it everything there) and for a hub with no parent;
        otherwise it means only that the hierarchy above did not know it.
        """
        now_ms = int(now * 1000)
        entries: list[DirectoryEntry] = []
        unknown: list[str] = []
        cas: set[bytes] = set()
        for name in sorted(set(names)):
            live = [r for r in self._index.get(name, ()) if r.source != _STATIC and r.live(now_ms)]
            if not live:
                unknown.append(name)
            for record in live:
                entries.append(
                    DirectoryEntry(name, record.chain, record.entry.address, record.valid_until_ms)
                )
                cas.update(cert.issuer.public_bytes() for cert in record.entry.certificates)
        crls = [
            CrlRow(der, self._crl_chain(crl, der))
            for crl in self._crls
            if crl.issuer.public_bytes() in cas
            for der in (crl.public_bytes(serialization.Encoding.DER),)
        ]
        return sign_page(
            self.identity,
            issued_ms=now_ms,
            expires_ms=now_ms + int(lifetime * 1000),
            audience=Audience.LOOKUP,
            since=None,
            next=None,
            reset=False,
            more=False,
            entries=entries,
            crls=crls,
            unknown=unknown,
            policy=self.page_policy,
        )

    def _take_crls(
        self,
        crls: Iterable[VerifiedCrl],
        revoking: Iterable[x509.CertificateRevocationList],
    ) -> None:
        taken = [c.crl for c in crls]
        revoking = list(revoking)
        if taken:
            self._lookup_crls = self._lookup_crls.with_crls(taken)
        if revoking:
            self._lookup_revoking = self._lookup_revoking.with_crls(revoking)
        self._known_crls.update(crl.public_bytes(serialization.Encoding.DER) for crl in taken)

    def apply_lookup(
        self, source: str, data: bytes, asked: Iterable[str], trust: TrustStore, now: float
    ) -> LookupReport:
        """Keep what ``source`` answered to a lookup for ``asked``, until each entry expires."""
        asked_names = set(asked)
        accepts = self.accepts_from(source)
        verified = verify_page(
            data,
            self._working_trust(trust),
            now,
            source,
            Audience.LOOKUP,
            memo=self.memo,
            revoked=self._revoked_serials.__contains__,
            cas=self.identity.chain,
            wanted=lambda name: str(name) in asked_names and accepts(name),
            policy=self.page_policy,
            freshness=self.policy,
        )
        by_name: dict[str, list[Record]] = {}
        for entry in verified.entries:
            by_name.setdefault(entry.name, []).append(Record.of(entry, source))
        rows = []
        for name, records in by_name.items():
            self._lookups[name] = tuple(records)
            self._lookups.move_to_end(name)
            for record in records:
                row = pack([source, encode_row(record)])
                rows.append((name, leaf_digest(record.leaf), row))
        evicted = []
        while len(self._lookups) > self._lookup_capacity:
            evicted.append(self._lookups.popitem(last=False)[0])
        for verified_crl in verified.crls:
            der = verified_crl.crl.public_bytes(serialization.Encoding.DER)
            self._crl_chains.setdefault(der, verified_crl.ca_chain)
        self._take_crls(verified.crls, verified.revoking)
        self._rebuild(crls=bool(verified.crls or verified.revoking))
        return LookupReport(
            source,
            tuple(sorted(by_name)),
            tuple(n for n in verified.unknown if n in asked_names),
            verified.dropped,
            tuple(rows),
            tuple(evicted),
        )

    def restore_lookups(
        self, rows: Iterable[bytes], trust: TrustStore, now: float
    ) -> tuple[Dropped, ...]:
        """Take back the looked-up entries ``apply_lookup`` had stored, each chain verified again.

        Kept dead or alive as stored: one past its expiry answers lookups with
        "expired" (and from where), as the cache of SPEC §14.11 does.
        """
        dropped: list[Dropped] = []
        working = self._working_trust(trust)
        by_name: dict[str, list[Record]] = {}
        for i, data in enumerate(rows):
            try:
                value = unpack(data, what="directory lookup row", max_size=64 * 1024, max_array=4)
                if type(value) is not list or len(value) != 2 or type(value[1]) is not bytes:
                    raise MalformedError("directory lookup row", "expected [source, row]")
                source = check_name(value[0], "directory lookup row.source")
                entry = decode_row(value[1])
                peer, certificates = self.memo.verify(
                    entry.chain, working, now, self._revoked_serials.__contains__, f"row {i}"
                )
                if str(peer.name) != entry.name or source not in self._neighbours:
                    raise MalformedError(f"row {i}", f"{entry.name} does not belong here")
                if not self.accepts_from(source)(peer.name):
                    raise MalformedError(f"row {i}", f"{source} may not speak for {entry.name}")
            except RejectedError as exc:
                dropped.append(Dropped(f"row {i}", "", exc.code, str(exc)))
                continue
            verified = VerifiedEntry(peer, certificates, entry.address, entry.valid_until_ms)
            by_name.setdefault(entry.name, []).append(Record.of(verified, source))
        for name, records in by_name.items():
            self._lookups[name] = tuple(records)
        while len(self._lookups) > self._lookup_capacity:
            self._lookups.popitem(last=False)
        self._rebuild()
        return tuple(dropped)

    def footprint(self, *, lookups: bool = True) -> int:
        """Bytes of the rows this node keeps in its store: entries, CRLs, lookups, old snapshots.

        What ``apply_page``, ``apply_lookup`` and format-1 updates hand to the
        store (values, not keys), for status and for the benchmark's per-node
        state figure; without ``lookups``, what its place in the hierarchy
        alone makes it hold (the cache of looked-up names depends on traffic).
        """
        size = sum(len(data) for data in self._cache.values())
        for pull in self._pulls.values():
            size += sum(len(encode_row(record)) for record in pull.records.values())
            size += sum(len(row) for row in pull.crl_rows.values())
            size += 40  # the feed position and expiry
        for name, records in self._lookups.items() if lookups else ():
            size += sum(len(pack([name, encode_row(record)])) for record in records)
        return size

    def held(self) -> dict[str, int]:
        """How many entries this node holds, by where they came from (for status and figures)."""
        counts = {"own": len(self._own), "looked-up": sum(map(len, self._lookups.values()))}
        for source, records in self._records.items():
            counts[source] = len(records)
        return counts

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
            return {_SELF: "this node's own configuration", _STATIC: "static configuration"}.get(
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
