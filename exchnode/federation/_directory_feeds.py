"""Format 2's change feeds: what a node says to each audience and takes (SPEC §14.13-§14.15).

Why a module of its own: serving and pulling pages is the part of the
directory that grows with the network's size and churn, and the part that
format 2 added.  :class:`FeedExchange` turns the state of
:class:`~exchnode.federation._directory_core.DirectoryCore` into each
audience's feed (its subtree up, its path down, CRLs as
``_directory_crls`` decides), answers a format-1 puller from the same rows
(§14.17), and applies a neighbour's pages row by row, with the chain memo,
and takes stored rows back after a restart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from exchnode.core import (
    pack,
)
from exchnode.errors import (
    MalformedError,
    RejectedError,
    ReplayError,
    TooLargeError,
    UsageError,
)
from exchnode.federation._directory_core import DirectoryCore
from exchnode.federation._directory_pages import (
    Audience,
    CrlRow,
    Removed,
    leaf_digest,
    sign_page,
)
from exchnode.federation._directory_rows import (
    PageReport,
    PullState,
    Record,
    decode_pull_state,
    decode_row,
    encode_row,
    row_size,
)
from exchnode.federation._directory_serving import RowKey
from exchnode.federation._directory_trust import verify_page
from exchnode.federation._directory_verify import (
    Dropped,
    VerifiedEntry,
    instant,
)
from exchnode.federation._directory_wire import (
    MAX_TIME_MS,
    DirectoryEntry,
    iso_ms,
    sign_snapshot,
)
from exchnode.federation._feed import FeedPage, FeedPosition
from exchnode.federation._routing import Relation
from exchnode.pki import (
    TrustStore,
    load_crl_der,
)

__all__ = ["FeedExchange"]


class FeedExchange(DirectoryCore):
    """The change feeds of format 2, served and pulled: see the module docstring."""

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
        if audience is Audience.DOWN and not self._has_children:
            return rows  # said to no one: the CRLs kept without their chains stay out
        children = set(self._sources_for(Audience.UP))
        crl_rows = self._crls.served(
            up=audience is Audience.UP,
            from_children=(s for source, s in self._snapshots.items() if source in children),
            held=self._held_chains,
        )
        for crl_key, crl_row in crl_rows:
            rows[("c", "", crl_key)] = crl_row
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

    def pull_position(self, source: str, now: float) -> tuple[FeedPosition | None, bool]:
        """Where to ask ``source``'s feed from next, and whether in a reset's listing.

        A listing begun more than half of ``L_dir`` ago starts over (SPEC §14.13).
        """
        self._neighbour(source)
        pull = self._pulls.get(source)
        if pull is None:
            return None, False
        pull.cursor.abandon_listing_before(int(now * 1000 - self.policy.max_lifetime * 500))
        return pull.cursor.position, pull.cursor.resetting

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
            revoked=self._crls.revoked_serials.__contains__,
            cas=self.identity.chain,
            known_crls=self._crls.known,
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
        pull.cursor.begin(feed_page, pull.records, int(now * 1000))
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
        crl_rows = self._crls.take(
            verified.crls,
            verified.revoking,
            keep_chains=self._keeps_chains(source),
            from_below=self._neighbours[source].relation is Relation.CHILD,
        )
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
        pull.crl_rows, refused = self._crls.restore(
            crl_rows,
            self.identity.chain,
            self._working_trust(trust),
            instant(now),
            from_below=self._neighbours[source].relation is Relation.CHILD,
        )
        dropped.extend(refused)
        self._crls.rebuild(self._snapshots.values())
        lean = self._working_trust(trust)
        accepts = self.accepts_from(source)
        for i, data in enumerate(rows):
            try:
                entry = decode_row(data)
                peer, certificates = self.memo.verify(
                    entry.chain, lean, now, self._crls.revoked_serials.__contains__, f"row {i}"
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
