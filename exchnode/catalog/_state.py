"""The catalog one node holds, and what it says to its neighbours (SPEC §18.5-§18.12).

Theory of operation
-------------------
**Merging** (§18.5).  A node holds, per (provider, code), the newest signed
record it has seen.  The provider alone orders its records by ``version``: a
higher version replaces a lower one whatever order copies arrive in, a lower
one is ignored; a withdrawal is a record like any other (a tombstone), kept so
that a late copy of an older version cannot bring the entry back; the same
version with other content is equivocation: the first held stays, the pair is
kept as evidence and :class:`EquivocationError` is raised.  The merge is a
join, so what a node ends with does not depend on the order of arrival.

**A catalog at every level** (§18.6).  Records flow *up* only:

* A node holds its **subtree's** records -- a hub its level's catalog (the
  county hub the county's, the national platform the nation's), a department
  its own -- and takes them only from the child that covers their provider.
  They are numbered in the node's change feed (:class:`ChangeFeed`), which its
  parent pulls, so one changed record costs one page per link it climbs.
* Whatever lies outside its subtree a node holds only because it asked for it
  (a lookup or a search, answered by its parent; the refresh of what it holds
  so): a **cache** of at most ``max_cached`` records, least recently used
  first out, refreshed while it is held (:meth:`cached_versions`).  A node
  takes from its parent nothing else.
* A lookup a node cannot answer from its subtree or its cache goes to its
  parent (:meth:`answer`), and so on up: it is answered at the lowest hub whose
  subtree holds the provider, which holds every record of it.

So a node's state grows with its subtree and what it uses, never with the
network.  Configured links carry envelopes, not the catalog: the catalog
travels along the tree, and records offered by a link are out of scope.

**Format 1** (§18.7: summaries, versions, wanted lists) remains for
neighbours of the previous version, within the same scope: ``summary``,
``versions`` and ``entries_for`` serve what a node may send (its subtree to
its parent; what it holds to a child of format 1); ``diff`` and ``wanted``
take only what the new scope accepts.  An answer beyond format 1's limits
raises ``TooLargeError`` saying to upgrade.

**Rows.**  Every change is noted as the store rows it touches
(:meth:`take_rows`, ``_rows``), so the node writes O(change), and
:meth:`from_rows` rebuilds the state (and its feed) from them.  Nothing here
does I/O, reads a clock or draws randomness: the feed id is an argument.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import NamedTuple

from exchnode.catalog._entry import CatalogRecord, CatalogVerifier, ShareType, Status, decode_record
from exchnode.catalog._pages import (
    MAX_PAGE_RECORDS,
    CatalogQuery,
    FeedRequest,
    LookupAnswer,
    LookupRequest,
    RecordPage,
    fit_records,
)
from exchnode.catalog._rows import (
    CACHED,
    CONFLICT,
    HEADER_KEY,
    POSITION,
    SUBTREE,
    cached_key,
    conflict_key,
    decode_header,
    decode_row,
    encode_header,
    subtree_key,
)
from exchnode.catalog._sync import (
    MAX_SYNC_ITEMS,
    ProviderDigest,
    Summary,
    Version,
    Wanted,
    provider_digest,
)
from exchnode.core import Level, NodeName, division_scope, pack, unpack
from exchnode.errors import (
    EquivocationError,
    MalformedError,
    TooLargeError,
    UnsupportedVersionError,
    UsageError,
)
from exchnode.federation import ChangeFeed, FeedPosition, Neighbour, Relation

__all__ = [
    "DEFAULT_CACHED_DEPARTMENT",
    "DEFAULT_CACHED_HUB",
    "MAX_CONFLICTS",
    "CatalogState",
    "Conflict",
    "Outcome",
    "Plan",
    "accepts_from",
    "sends_to",
    "within_subtree",
]

MAX_CONFLICTS = 1024
#: Records from above a department keeps (what it subscribes to and looks up).
DEFAULT_CACHED_DEPARTMENT = 256
#: Records from above a hub keeps for the lookups of its subtree.
DEFAULT_CACHED_HUB = 4096
_SNAPSHOT_FORMAT = 1
_FORMAT1_UPGRADE = "upgrade to catalog format 2 (SPEC §18.10)"

Key = tuple[str, str]


class Outcome(enum.Enum):
    NEW = "new"
    UPDATED = "updated"
    SAME = "same"
    STALE = "stale-ignored"
    OUT_OF_SCOPE = "out-of-scope"


class Plan(NamedTuple):
    """A lookup as one node sees it: what it answers itself and what it asks its parent."""

    request: LookupRequest
    here: list[CatalogRecord]  # keys answered from the subtree or the cache
    found: list[CatalogRecord]  # the query's results, if this node's subtree covers it
    more: bool
    ask: LookupRequest | None  # what goes up, or None


class Conflict(NamedTuple):
    """Equivocation evidence: two records the provider signed with one version."""

    held: CatalogRecord
    offered: CatalogRecord


# --- scope (SPEC §18.6) -------------------------------------------------------------


def within_subtree(node: NodeName, provider: str) -> bool:
    """True if ``provider`` lies in ``node``'s subtree (a department's is itself)."""
    return Neighbour(node, Relation.CHILD).covers(NodeName.parse(provider))


def accepts_from(neighbour: Neighbour, provider: str) -> bool:
    """Whether a node takes ``provider``'s records from ``neighbour`` at all.

    From a child, what lies in the child's subtree.  From the parent, what it
    was asked for (the caller's business: a node asks its parent only through
    its own requests) -- into the cache, or, for its own subtree, the echo that
    lets a node that lost its disk recover its records.  From a link, nothing.
    """
    if neighbour.relation is Relation.CHILD:
        return within_subtree(neighbour.name, provider)
    return neighbour.relation is Relation.PARENT


def sends_to(me: NodeName, neighbour: Neighbour, provider: str) -> bool:
    """Whether ``me`` offers ``provider``'s records to ``neighbour`` unasked (its feed, §18.7).

    Up only: to the parent, its own subtree's records.  A child gets what it
    asks for (a lookup); a child of format 1 what this node holds (§18.10).
    """
    if neighbour.relation is Relation.PARENT:
        return within_subtree(me, provider)
    return neighbour.relation is Relation.CHILD


# --- the state ----------------------------------------------------------------------


class CatalogState:
    """The catalog a node holds: its subtree's newest records and a cache of what it asked for."""

    def __init__(
        self, me: NodeName | str, *, feed_id: bytes, max_cached: int | None = None
    ) -> None:
        self.me = me if isinstance(me, NodeName) else NodeName.parse(me)
        if max_cached is None:
            max_cached = DEFAULT_CACHED_HUB if self.me.is_hub else DEFAULT_CACHED_DEPARTMENT
        if type(max_cached) is not int or max_cached < 0:
            raise UsageError(f"max_cached is a non-negative int, got {max_cached!r}")
        self.max_cached = max_cached
        self.scope = division_scope(self.me.division) if self.me.is_hub else None
        self._feed: ChangeFeed[Key] = ChangeFeed(feed_id)
        self._records: dict[str, dict[str, CatalogRecord]] = {}
        self._cached: OrderedDict[Key, None] = OrderedDict()  # least recently used first
        self._digests: dict[str, ProviderDigest] = {}
        self._conflicts: OrderedDict[tuple[str, str, int, bytes], Conflict] = OrderedDict()
        self._rows: dict[str, bytes | None] = {HEADER_KEY: encode_header(feed_id)}

    @property
    def feed_id(self) -> bytes:
        return self._feed.feed_id

    def holds_subtree(self, provider: str) -> bool:
        """Whether ``provider``'s records are this node's to hold (its subtree), not cached."""
        return within_subtree(self.me, provider)

    # --- merging (SPEC §18.5) -------------------------------------------------------

    def apply(self, record: CatalogRecord, source: Neighbour | None = None) -> Outcome:
        """Merge one verified record; ``source`` is the neighbour it came from (None: local).

        A record of this node's subtree is kept and numbered in its feed;
        another (from the parent, or applied locally) goes to the cache.
        Raises ``EquivocationError`` (after recording the evidence) when the
        provider signed other content under the version held.
        """
        if source is not None and not accepts_from(source, record.provider):
            return Outcome.OUT_OF_SCOPE
        key = (record.provider, record.code)
        mine = self.holds_subtree(record.provider)
        if not mine and self.max_cached == 0:
            return Outcome.OUT_OF_SCOPE
        codes = self._records.setdefault(record.provider, {})
        held = codes.get(record.code)
        if not mine and held is not None:
            self._cached.move_to_end(key)
        if held is None or record.version > held.version:
            codes[record.code] = record
            self._digests.pop(record.provider, None)
            if mine:
                seq = self._feed.touch(key)
                self._rows[subtree_key(*key)] = pack([seq, record.data])
            else:
                self._cache(key, record)
            return Outcome.NEW if held is None else Outcome.UPDATED
        if record.version < held.version:
            return Outcome.STALE
        if record.content_digest == held.content_digest:
            return Outcome.SAME
        self._remember(Conflict(held, record))
        raise EquivocationError(
            f"{record.provider} signed two different versions {record.version} of {record.code}; "
            "the first one held stays",
            held=held.data,
            offered=record.data,
        )

    def _cache(self, key: Key, record: CatalogRecord) -> None:
        self._cached[key] = None
        self._cached.move_to_end(key)
        self._rows[cached_key(*key)] = pack([0, record.data])
        while len(self._cached) > self.max_cached:
            old, _ = self._cached.popitem(last=False)
            self._drop(old)

    def _drop(self, key: Key) -> None:
        provider, code = key
        codes = self._records.get(provider, {})
        codes.pop(code, None)
        if not codes:
            self._records.pop(provider, None)
        self._digests.pop(provider, None)
        self._rows[cached_key(*key)] = None

    def _remember(self, conflict: Conflict) -> None:
        offered = conflict.offered
        key = (offered.provider, offered.code, offered.version, offered.content_digest)
        self._conflicts[key] = conflict
        self._conflicts.move_to_end(key)
        self._rows[conflict_key(*key)] = pack([conflict.held.data, offered.data])
        while len(self._conflicts) > MAX_CONFLICTS:
            old, _ = self._conflicts.popitem(last=False)
            self._rows[conflict_key(*old)] = None

    @property
    def conflicts(self) -> tuple[Conflict, ...]:
        return tuple(self._conflicts.values())

    # --- reading --------------------------------------------------------------------

    def get(self, provider: str, code: str) -> CatalogRecord | None:
        """The record held (the subtree's, or cached: then it counts as used)."""
        record = self._records.get(provider, {}).get(code)
        if record is not None and (provider, code) in self._cached:
            self._cached.move_to_end((provider, code))
        return record

    def version(self, provider: str, code: str) -> int:
        """The version held, 0 if none."""
        held = self._records.get(provider, {}).get(code)
        return 0 if held is None else held.version

    def next_version(self, code: str) -> int:
        """The version this node, as provider, signs its next change of ``code`` with."""
        return self.version(str(self.me), code) + 1

    def records(self) -> Iterator[CatalogRecord]:
        """Every record held, tombstones included, by (provider, code)."""
        for provider in sorted(self._records):
            codes = self._records[provider]
            for code in sorted(codes):
                yield codes[code]

    def subtree(self) -> Iterator[CatalogRecord]:
        """The records of this node's subtree (its level's catalog), by (provider, code)."""
        return (r for r in self.records() if (r.provider, r.code) not in self._cached)

    def __len__(self) -> int:
        return sum(len(codes) for codes in self._records.values())

    @property
    def cached(self) -> int:
        return len(self._cached)

    def search(
        self,
        *,
        code: str | None = None,
        provider: str | None = None,
        classification: str | None = None,
        share_type: ShareType | None = None,
        keyword: str | None = None,
        level: Level | None = None,
        status: Status | None = Status.PUBLISHED,
    ) -> list[CatalogRecord]:
        """Records held matching every criterion given, sorted by (code, provider).

        ``classification`` is a prefix of the classification code (``"1"``:
        every base resource).  ``keyword`` matches the name, the summary or a
        data item's name, ignoring case.  ``status=None`` includes tombstones,
        which match no entry field criterion (share type, keyword).
        """
        found = [
            record
            for record in self.records()
            if _matches(record, code, provider, classification, share_type, keyword, level, status)
        ]
        found.sort(key=lambda r: (r.code, r.provider))
        return found

    def find(self, query: CatalogQuery) -> tuple[list[CatalogRecord], bool]:
        """``query`` over what this node holds: one page of results, and whether more follow."""
        return _page(
            (
                r
                for r in self.records()
                if NodeName.parse(r.provider).within(query.scope) and query_matches(query, r)
            ),
            query,
        )

    def covers(self, query: CatalogQuery) -> bool:
        """Whether this node's subtree holds every record ``query`` can find (no need to ask up)."""
        if query.provider is not None and self.holds_subtree(query.provider):
            return True
        return self.scope is not None and query.scope.startswith(self.scope)

    # --- feeds (SPEC §18.11): the server's side ---------------------------------------

    @property
    def feed_position(self) -> FeedPosition:
        return self._feed.position

    def feed_page(self, request: FeedRequest, to: Neighbour) -> RecordPage:
        """The next page of this node's feed for its parent: its subtree's changed records."""
        if to.relation is not Relation.PARENT:
            return RecordPage(False, self._feed.position, False, ())
        page = self._feed.page(request.position, request.limit, listing=request.listing)
        records = [self._records[p][c].data for p, c in page.keys]
        fitted = fit_records(records, request.limit)
        if len(fitted) == len(records):
            return RecordPage(page.reset, page.next, page.more, tuple(records))
        seq = self._feed.seq_of(page.keys[len(fitted) - 1])
        assert seq is not None  # a key the page listed is in the feed
        return RecordPage(page.reset, FeedPosition(self.feed_id, seq), True, tuple(fitted))

    # --- lookups (SPEC §18.12) ------------------------------------------------------

    def answer(self, request: LookupRequest) -> Plan:
        """What this node answers from what it holds, and what it must ask its parent.

        A key of this node's subtree, or cached, is answered here (the record,
        if newer than the version the asker holds); any other is asked of the
        parent.  A query this node's subtree covers is answered here; any other
        goes up whole (the parent's subtree contains this one's).
        """
        here: list[CatalogRecord] = []
        up: list[Wanted] = []
        for provider, code, version in request.keys:
            held = self._records.get(provider, {}).get(code)
            if held is not None and (provider, code) in self._cached:
                self._cached.move_to_end((provider, code))
            if held is not None or self.holds_subtree(provider):
                if held is not None and held.version > version:
                    here.append(held)
            else:
                up.append(Wanted(provider, code, 0))
        query = request.query
        found: list[CatalogRecord] = []
        more = False
        if query is not None and self.covers(query):
            found, more = self.find(query)
            query = None
        ask = LookupRequest(tuple(up), query) if up or query is not None else None
        return Plan(request, here, found, more, ask)

    def finish(
        self, plan: Plan, above: Sequence[CatalogRecord] = (), *, complete: bool, more: bool = False
    ) -> LookupAnswer:
        """The answer to ``plan``'s request once the parent answered its part (verified ``above``).

        ``complete``: whether the parent answered (ignored if nothing was
        asked).  The caller merged ``above`` into this state first
        (``merge_verified``), so what is passed on is also cached here and
        refreshed while it is used.
        """
        answer: dict[Key, CatalogRecord] = {}
        for record in plan.here:
            answer[(record.provider, record.code)] = record
        if plan.ask is not None:
            newest = _newest(above)
            for provider, code, _ in plan.ask.keys:
                held = newest.get((provider, code))
                if held is not None:
                    answer[(provider, code)] = held
            versions = {(p, c): v for p, c, v in plan.request.keys}
            for key in [k for k in answer if k in versions]:
                if answer[key].version <= versions[key]:
                    del answer[key]
        found, ahead = plan.found, plan.more or (plan.ask is not None and more)
        query = plan.request.query
        if plan.ask is not None and plan.ask.query is not None and query is not None:
            found, further = merge_results(query, [above, self.find(query)[0]])
            ahead = ahead or further
        for record in found:
            answer[(record.provider, record.code)] = record
        records = fit_records(r.data for r in answer.values())
        return LookupAnswer(
            complete or plan.ask is None, ahead or len(records) < len(answer), tuple(records)
        )

    def cached_versions(self) -> list[Wanted]:
        """(provider, code, version) of every cached record: the refresh asked of the parent."""
        return sorted(Wanted(p, c, self.version(p, c)) for p, c in self._cached)

    # --- format 1 (SPEC §18.7), within the new scope ----------------------------------

    def _digest(self, provider: str) -> ProviderDigest:
        cached = self._digests.get(provider)
        if cached is None:
            codes = self._records[provider]
            if len(codes) > MAX_SYNC_ITEMS:
                raise TooLargeError(
                    "catalog.summary",
                    f"{provider} has {len(codes)} records, over format 1's limit of "
                    f"{MAX_SYNC_ITEMS}; {_FORMAT1_UPGRADE}",
                )
            cached = provider_digest(
                Version(r.code, r.version, r.content_digest) for r in codes.values()
            )
            self._digests[provider] = cached
        return cached

    def _providers(self, include: Iterable[str]) -> dict[str, ProviderDigest]:
        return {p: self._digest(p) for p in include if self._records.get(p)}

    def summary(self, to: Neighbour | None = None) -> Summary:
        """Step 1: digests of what ``to`` may receive from this node (None: everything).

        Raises ``TooLargeError`` (saying to upgrade) beyond format 1's limits.
        """
        providers = [p for p in self._records if self._may_send(to, p)]
        if len(providers) > MAX_SYNC_ITEMS:
            raise TooLargeError(
                "catalog.summary",
                f"{len(providers)} providers exceed format 1's limit of {MAX_SYNC_ITEMS}; "
                f"{_FORMAT1_UPGRADE}",
            )
        return Summary.of(self._providers(providers))

    def diff(
        self,
        theirs: Summary,
        source: Neighbour | None = None,
        *,
        asked: Iterable[Key] = (),
    ) -> tuple[str, ...]:
        """Step 1, the puller's side: providers whose digests differ from ``source``'s.

        From a parent, only providers this node has records of (its subtree,
        its cache) or ``asked`` keys of: nothing else is taken from above.
        """
        wanted_from = {p for p, _ in asked}
        accepted = [
            p
            for p in theirs.providers
            if self._may_take(source, p)
            and (
                source is None
                or source.relation is not Relation.PARENT
                or p in self._records
                or p in wanted_from
                or self.holds_subtree(p)
            )
        ]
        mine = self._providers(accepted)
        if theirs.top == Summary.of(mine).top:
            return ()
        return tuple(sorted(p for p in accepted if mine.get(p) != theirs.providers[p]))

    def versions(
        self, providers: Iterable[str], to: Neighbour | None = None
    ) -> dict[str, tuple[Version, ...]]:
        """Step 2: the (code, version, content digest) lists of ``providers``."""
        listed = {}
        for provider in sorted(set(providers)):
            codes = self._records.get(provider)
            if codes and self._may_send(to, provider):
                self._digest(provider)  # the limit check
                listed[provider] = tuple(
                    Version(code, r.version, r.content_digest) for code, r in sorted(codes.items())
                )
        return listed

    def wanted(
        self,
        theirs: Mapping[str, Sequence[Version]],
        source: Neighbour | None = None,
        *,
        asked: Iterable[Key] = (),
    ) -> tuple[Wanted, ...]:
        """Step 2, the puller's side: records it lacks, holds older, or has not seen conflict.

        From a parent, only records of this node's subtree (the echo) and those
        it caches.  An equal version with another content digest is fetched
        once, so the equivocation is detected and kept as evidence.
        """
        wanted = []
        asked = set(asked)
        for provider, versions in sorted(theirs.items()):
            if not self._may_take(source, provider):
                continue
            mine = self.holds_subtree(provider)
            codes = self._records.get(provider, {})
            for code, version, digest in versions:
                held = codes.get(code)
                if (
                    held is None
                    and not mine
                    and source is not None
                    and (provider, code) not in asked
                ):
                    continue  # from a parent: only what this node asked for
                if (
                    held is None
                    or version > held.version
                    or (
                        version == held.version
                        and digest != held.content_digest
                        and (provider, code, version, digest) not in self._conflicts
                    )
                ):
                    wanted.append(Wanted(provider, code, version))
        return tuple(sorted(wanted))

    def entries_for(self, wanted: Iterable[Wanted], to: Neighbour | None = None) -> list[bytes]:
        """Step 3: the signed records asked for, or newer ones where this node has them."""
        records = []
        for provider, code, version in sorted(set(wanted)):
            held = self._records.get(provider, {}).get(code)
            if held is not None and held.version >= version and self._may_send(to, provider):
                records.append(held.data)
        return records

    def _may_send(self, to: Neighbour | None, provider: str) -> bool:
        return to is None or sends_to(self.me, to, provider)

    def _may_take(self, source: Neighbour | None, provider: str) -> bool:
        return source is None or accepts_from(source, provider)

    # --- persistence (rows) -----------------------------------------------------------

    def take_rows(self) -> dict[str, bytes | None]:
        """The store rows changed since the last call (None: delete), to write in one go."""
        rows, self._rows = self._rows, {}
        return rows

    def all_rows(self) -> dict[str, bytes]:
        """Every row of this state: for a first write (a migration) and for measuring it."""
        rows = {HEADER_KEY: encode_header(self.feed_id)}
        for record in self.records():
            key = (record.provider, record.code)
            if key in self._cached:
                rows[cached_key(*key)] = pack([0, record.data])
            else:
                rows[subtree_key(*key)] = pack([self._feed.seq_of(key) or 0, record.data])
        for (provider, code, version, digest), conflict in self._conflicts.items():
            rows[conflict_key(provider, code, version, digest)] = pack(
                [conflict.held.data, conflict.offered.data]
            )
        return rows

    def stored_bytes(self) -> int:
        """Bytes of every row (keys and values): the state this node keeps."""
        return sum(len(k) + len(v) for k, v in self.all_rows().items())

    @classmethod
    def from_rows(
        cls,
        rows: Iterable[tuple[str, bytes]],
        me: NodeName | str,
        *,
        verifier: CatalogVerifier | None = None,
        max_cached: int | None = None,
    ) -> CatalogState:
        """Rebuild a state, and its feed, from its rows (``catalog.`` keys; others are ignored).

        Every record is decoded and checked again; pass a ``verifier`` to check
        the signatures again too (the rows come from the node's own store).
        Raises ``RejectedError`` naming the first bad row.
        """
        read = decode_record if verifier is None else verifier.verify
        feed_id: bytes | None = None
        subtree: list[tuple[int, CatalogRecord]] = []
        cached: list[CatalogRecord] = []
        conflicts: list[Conflict] = []
        for key, value in rows:
            if key == HEADER_KEY:
                feed_id = decode_header(value)
            elif key.startswith(SUBTREE):
                seq, data = decode_row(key, value)
                if type(seq) is not int or seq < 1:
                    raise MalformedError(key, "seq must be a positive integer")
                subtree.append((seq, _row_record(read, key, data)))
            elif key.startswith(CACHED):
                cached.append(_row_record(read, key, decode_row(key, value)[1]))
            elif key.startswith(CONFLICT):
                held, offered = decode_row(key, value)
                if type(held) is not bytes:
                    raise MalformedError(key, "expected [held, offered]")
                conflicts.append(Conflict(read(held), read(offered)))
            elif not key.startswith(POSITION) and key.startswith("catalog."):
                raise MalformedError(key, "not a catalog row")
        if feed_id is None:
            raise MalformedError(HEADER_KEY, "missing: the rows have no header")
        state = cls(me, feed_id=feed_id, max_cached=max_cached)
        for _seq, record in subtree:
            if not state.holds_subtree(record.provider):
                raise MalformedError(subtree_key(record.provider, record.code), "not in subtree")
            state._records.setdefault(record.provider, {})[record.code] = record
        try:
            state._feed = ChangeFeed(feed_id, (((r.provider, r.code), seq) for seq, r in subtree))
        except UsageError as exc:
            raise MalformedError("catalog.r", f"feed numbers: {exc}") from None
        for record in cached:
            state.apply(record)
        for conflict in conflicts:
            state._remember(conflict)
        state._rows = {}
        return state

    @classmethod
    def from_snapshot(
        cls,
        data: bytes,
        me: NodeName | str,
        *,
        feed_id: bytes,
        verifier: CatalogVerifier | None = None,
        max_cached: int | None = None,
    ) -> CatalogState:
        """Migrate format 1's single stored value ``[1, [record], [[held, offered]]]``.

        Keeps the node's subtree (numbered afresh in a new feed) and the
        evidence; records from outside the subtree are not kept (a node of
        format 2 asks for what it uses).  ``all_rows`` then gives what to store.
        """
        what = "catalog.snapshot"
        value = unpack(data, what=what, max_size=len(data), max_array=max(len(data), 64))
        if type(value) is not list or len(value) != 3 or type(value[0]) is not int:
            raise MalformedError(what, "expected [format, records, conflicts]")
        if value[0] != _SNAPSHOT_FORMAT:
            raise UnsupportedVersionError(f"{what} format {value[0]} is not supported (only 1)")
        _, records, conflicts = value
        if type(records) is not list or type(conflicts) is not list:
            raise MalformedError(what, "records and conflicts must be arrays")
        read = decode_record if verifier is None else verifier.verify
        state = cls(me, feed_id=feed_id, max_cached=max_cached)
        for i, item in enumerate(records):
            if type(item) is not bytes:
                raise MalformedError(f"{what}.records[{i}]", "must be bytes")
            record = read(item)
            if state.holds_subtree(record.provider):
                state.apply(record)
        for i, pair in enumerate(conflicts):
            if type(pair) is not list or len(pair) != 2 or not all(type(x) is bytes for x in pair):
                raise MalformedError(f"{what}.conflicts[{i}]", "expected [held, offered]")
            state._remember(Conflict(read(pair[0]), read(pair[1])))
        state._rows = {}
        return state


def _row_record(read: Callable[[bytes], CatalogRecord], key: str, data: bytes) -> CatalogRecord:
    record = read(data)
    if key.split(" ")[1:] != [record.provider, record.code]:
        raise MalformedError(key, "the row's key does not name its record")
    return record


# --- searching (SPEC §18.8) ----------------------------------------------------------


def query_matches(query: CatalogQuery, record: CatalogRecord) -> bool:
    """Whether ``record`` is one ``query`` finds (its scope aside)."""
    return _matches(
        record,
        query.code,
        query.provider,
        query.classification,
        query.share_type,
        query.keyword,
        query.level,
        query.status,
    )


def merge_results(
    query: CatalogQuery, groups: Iterable[Iterable[CatalogRecord]]
) -> tuple[list[CatalogRecord], bool]:
    """One page of ``query``'s results from several answers: newest per resource, sorted."""
    newest = _newest(record for group in groups for record in group)
    return _page(
        (
            r
            for r in newest.values()
            if NodeName.parse(r.provider).within(query.scope) and query_matches(query, r)
        ),
        query,
    )


def _newest(records: Iterable[CatalogRecord]) -> dict[Key, CatalogRecord]:
    newest: dict[Key, CatalogRecord] = {}
    for record in records:
        key = (record.provider, record.code)
        held = newest.get(key)
        if held is None or record.version > held.version:
            newest[key] = record
    return newest


def _page(found: Iterable[CatalogRecord], query: CatalogQuery) -> tuple[list[CatalogRecord], bool]:
    after = query.after
    ordered = sorted(
        (r for r in found if after is None or (r.code, r.provider) > after),
        key=lambda r: (r.code, r.provider),
    )
    limit = min(query.limit, MAX_PAGE_RECORDS)
    return ordered[:limit], len(ordered) > limit


def _matches(
    record: CatalogRecord,
    code: str | None,
    provider: str | None,
    classification: str | None,
    share_type: ShareType | None,
    keyword: str | None,
    level: Level | None,
    status: Status | None,
) -> bool:
    if status is not None and record.status is not status:
        return False
    if code is not None and record.code != code:
        return False
    if provider is not None and record.provider != provider:
        return False
    if classification is not None and not record.classification.startswith(classification):
        return False
    if level is not None and NodeName.parse(record.provider).level is not level:
        return False
    if share_type is None and keyword is None:
        return True
    return _entry_matches(record, share_type, None if keyword is None else keyword.casefold())


def _entry_matches(record: CatalogRecord, share_type: ShareType | None, needle: str | None) -> bool:
    entry = record.entry
    if entry is None:
        return False
    if share_type is not None and entry.share_type is not share_type:
        return False
    if needle is None:
        return True
    texts = (entry.name, entry.summary, *(item.name for item in entry.data_items))
    return any(needle in text.casefold() for text in texts)
