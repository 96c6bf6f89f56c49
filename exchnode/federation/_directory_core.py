"""The state every exchange of a node's directory shares (SPEC §14): who, what is held, scope.

Why a module of its own: :class:`~exchnode.federation.NodeDirectory` speaks
two formats and answers lookups, and each of those reads and changes the
same state -- this node's identity and neighbours, the records held from
each source with their index by name, the CRLs kept, the cache of what was
looked up.  :class:`DirectoryCore` holds that state and the rules every
exchange applies to it (scope: who may speak for which names; the index
rebuilt, revocations first, after any change); ``_directory_feeds`` (format
2's change feeds), ``_directory_lookups`` (lookups on demand) and
``_directory`` (format 1, and the ``Directory`` protocol) build on it.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509

from exchnode.core import (
    LocalIdentity,
    NodeName,
    PeerIdentity,
    division_scope,
    pack,
)
from exchnode.errors import (
    MalformedError,
    UsageError,
)
from exchnode.federation._directory_crls import KeptCrls
from exchnode.federation._directory_pages import (
    DEFAULT_PAGE_POLICY,
    Audience,
    PagePolicy,
)
from exchnode.federation._directory_rows import (
    PullState,
    Record,
    ancestors,
    certificates_of,
    encode_row,
)
from exchnode.federation._directory_serving import AudienceFeed
from exchnode.federation._directory_trust import ChainMemo
from exchnode.federation._directory_verify import (
    Dropped,
    VerifiedEntry,
    VerifiedSnapshot,
    instant,
    trust_with,
)
from exchnode.federation._directory_wire import (
    DEFAULT_DIRECTORY_POLICY,
    MAX_TIME_MS,
    DirectoryEntry,
    DirectoryPolicy,
    check_address,
    own_chain_der,
)
from exchnode.federation._feed import FEED_ID_BYTES
from exchnode.federation._routing import Neighbour, Relation
from exchnode.pki import (
    TrustStore,
    read_node_certificate,
)

__all__ = ["NO_KEYS", "SELF", "STATIC", "DirectoryCore", "Tombstone"]

#: The source of this node's own records, and of identities given to it verified (static).
SELF = "self"
STATIC = "static"
NO_KEYS: frozenset[bytes] = frozenset()


@dataclass(frozen=True, slots=True)
class Tombstone:
    """What an expired cached snapshot spoke for: names for error messages only, never keys."""

    expired_ms: int
    names: frozenset[str]


class DirectoryCore:
    """The state of one node's directory and the rules every exchange applies to it."""

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
        self._own = [Record.of(VerifiedEntry(identity.peer, own_chain, address, MAX_TIME_MS), SELF)]
        for chain in previous:
            certs = (chain[0], *(c for c in chain[1:] if c.subject != c.issuer))
            contents = read_node_certificate(certs[0])
            if contents.name != self.me:
                raise UsageError(f"a previous chain of {self.me} certifies {contents.name}")
            peer = PeerIdentity(
                contents.name, contents.signing_key, contents.encryption_key, certs[0]
            )
            self._own.append(Record.of(VerifiedEntry(peer, certs, address, MAX_TIME_MS), SELF))
        self._static = [
            Record.of(VerifiedEntry(peer, certificates_of(peer), "", MAX_TIME_MS), STATIC)
            for peer in static
        ]
        if any(record.entry.name == str(self.me) for record in self._static):
            raise UsageError(f"a static peer cannot stand in for this node ({self.me})")
        self._snapshots: dict[str, VerifiedSnapshot] = {}
        self._records: dict[str, tuple[Record, ...]] = {}
        self._cache: dict[str, bytes] = {}
        self._tombstones: dict[str, Tombstone] = {}
        self._crls = KeptCrls()
        self._has_children = any(n.relation is Relation.CHILD for n in self._neighbours.values())
        self._index: dict[str, tuple[Record, ...]] = {}
        self._revoked: dict[str, frozenset[bytes]] = {}
        # Format 2 (SPEC §14.13-§14.17): what is pulled by feed, looked up, and served.
        self.page_policy = page_policy
        self.memo = ChainMemo() if memo is None else memo
        self._pulls: dict[str, PullState] = {}
        if lookup_capacity < 1:
            raise UsageError("the lookup cache holds at least one name")
        self._lookup_capacity = lookup_capacity
        self._lookups: OrderedDict[str, tuple[Record, ...]] = OrderedDict()
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
        dropped = self._crls.add_local(given, cas, trust, instant(now))
        self._rebuild()
        return dropped

    def _rebuild(self, *, crls: bool = True) -> None:
        """The index of live records; with ``crls``, the CRLs kept first (they changed)."""
        # Revocation is immediate (SPEC §14.6): a serial listed by any genuine CRL, from
        # whichever source, removes every entry whose chain holds it.
        if crls:
            self._crls.rebuild(self._snapshots.values())
        revoked = self._crls.revoked_serials
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
                    self._revoked[name] = self._revoked.get(name, NO_KEYS) | {key_id}
                elif records is not before:
                    index.setdefault(record.entry.name, []).append(record)
        self._index = {
            name: tuple(sorted(records, key=lambda r: r.rank, reverse=True))
            for name, records in index.items()
        }

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
                if record.source == STATIC or not record.live(now_ms):
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

    def crls(self) -> tuple[x509.CertificateRevocationList, ...]:
        """The CRLs kept from every source: genuine and current when they came, the newest
        per CA, sorted (for snapshots, the TLS layer and the chain verifier alike)."""
        return self._crls.kept.crls

    def names(self, now: float) -> list[str]:
        """The names with a live entry: whom this node can seal to now."""
        now_ms = int(now * 1000)
        return sorted(
            name for name, records in self._index.items() if any(r.live(now_ms) for r in records)
        )

    @property
    def parent(self) -> str | None:
        """The neighbour lookups go up to (None at the top of the hierarchy)."""
        for name, neighbour in self._neighbours.items():
            if neighbour.relation is Relation.PARENT:
                return name
        return None

    def neighbours(self) -> Mapping[str, Neighbour]:
        return dict(self._neighbours)

    def add_neighbour(self, neighbour: Neighbour) -> None:
        """A neighbour added while the node runs (a child admitted): pulled from and served."""
        name = str(neighbour.name)
        if neighbour.name == self.me or name in self._neighbours:
            raise UsageError(f"{name} is this node or already a neighbour")
        self._neighbours[name] = neighbour
        self._has_children = any(n.relation is Relation.CHILD for n in self._neighbours.values())
        self._dirty = True

    def drop_neighbour(self, name: str) -> None:
        """A neighbour removed while the node runs: what came from it goes with it."""
        if self._neighbours.pop(name, None) is None:
            return
        self._records.pop(name, None)
        self._snapshots.pop(name, None)
        self._pulls.pop(name, None)
        self._has_children = any(n.relation is Relation.CHILD for n in self._neighbours.values())
        self._rebuild()

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

    def _held_chains(self) -> Iterator[tuple[Sequence[x509.Certificate], Sequence[bytes]]]:
        for record in itertools.chain(self._own, *self._records.values()):
            yield record.entry.certificates, record.chain

    def _keeps_chains(self, source: str) -> bool:
        """Whether CRLs from ``source`` may be served on (SPEC §14.13), so keep their chains."""
        return self._has_children or self._neighbours[source].relation is Relation.CHILD

    def _working_trust(self, trust: TrustStore) -> TrustStore:
        # The local roots and CRLs with every CRL kept: a page brings only the changed ones.
        held = self._working
        crls = (*self._crls.kept, *self._crls.revoking())
        key = hash((id(trust), *map(id, crls)))  # CRL objects outlive the sets that hold them
        if held is None or held[0] != key:
            held = (key, 0, trust_with(trust, crls))
            self._working = held
        return held[2]

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
