"""Change feeds: a node numbers each change to the rows it serves; neighbours pull only those.

Why a module of its own: the node directory (§14) and the resource catalog
(§18) have the same scale problem and the same cure.  Exchanging whole
snapshots or whole summaries costs O(everything a node serves) per pull, per
neighbour, per period; at a province hub that is hundreds of megabytes a
minute for no change at all.  A *change feed* makes a pull cost O(what changed
since the last pull):

* The server gives each change of a row (a row set, replaced or removed) the
  next number of its feed, ``seq``.  A row keeps only its latest number, so a
  row changed a thousand times is listed once.
* A puller remembers where it is, a :class:`FeedPosition` (the feed's random
  id and the last ``seq`` it has seen), and asks for what changed after it,
  one page at a time (:meth:`ChangeFeed.page`).  Two nodes in sync exchange
  one empty page.
* Removals are rows too (tombstones), so a puller learns of them like any
  change.  A server forgets a tombstone only once it is old (its own
  horizon, e.g. the directory's lifetime); forgetting raises the feed's
  *floor*, and a puller whose position is below the floor, or of another
  feed (the server lost its database, or is a new install), is told to
  **reset**: the pages then list every row, and once the last page is read
  the puller drops what it held from that server and no page listed
  (:class:`FeedCursor` keeps that account).
* A listing continues below the floor (it needs no removals: the sweep
  does their work), but a row it named may since have been removed *and*
  its tombstone forgotten; the sweep would then keep it.  Forgetting takes
  the horizon, so that needs a listing longer than the horizon: a puller
  starts over a listing begun more than half the horizon ago
  (:meth:`FeedCursor.abandon_listing_before`; half, for the clocks' skew).

The feed holds keys and numbers only; what a row *is* stays with its owner
(the directory's entries, the catalog's records), which stores each row's
``seq`` beside it and rebuilds the feed from its rows at start.  Nothing here
reads a clock or draws randomness: the feed id is an argument.
"""

from __future__ import annotations

import bisect
from collections.abc import Hashable, Iterable, Iterator
from typing import Generic, NamedTuple, TypeVar

from exchnode.errors import MalformedError, UsageError

__all__ = [
    "FEED_ID_BYTES",
    "ChangeFeed",
    "FeedCursor",
    "FeedPage",
    "FeedPosition",
    "check_feed_position",
]

K = TypeVar("K", bound=Hashable)

#: A feed id is 16 random bytes, drawn when the server's state is created.
FEED_ID_BYTES = 16


class FeedPosition(NamedTuple):
    """Where a puller is in a server's feed: the feed's id and the last number it has seen."""

    feed: bytes
    seq: int


def check_feed_position(feed: object, seq: object, field: str) -> FeedPosition:
    """A position decoded from the wire, or ``malformed`` naming ``field``."""
    if not isinstance(feed, bytes) or len(feed) not in (0, FEED_ID_BYTES):
        raise MalformedError(f"{field}.feed", f"must be empty or {FEED_ID_BYTES} bytes")
    if type(seq) is not int or seq < 0:
        raise MalformedError(f"{field}.seq", "must be an unsigned integer")
    return FeedPosition(feed, seq)


class FeedPage(NamedTuple, Generic[K]):
    """One answer to a pull: the keys changed after the asker's position, in change order.

    ``reset`` says the asker's position was of another feed or below the
    floor: the pages from this one on list *every* row, and the asker drops,
    after the last of them, whatever it held from this server that they did
    not list.  ``next`` is the position to ask from next; ``more`` whether a
    next page has something already.
    """

    keys: list[K]
    reset: bool
    next: FeedPosition
    more: bool


class ChangeFeed(Generic[K]):
    """The server's side: the latest change number of each row, in order, and the floor."""

    def __init__(
        self, feed_id: bytes, rows: Iterable[tuple[K, int]] = (), *, floor: int = 0
    ) -> None:
        """A feed named ``feed_id`` over stored ``rows`` (key, its latest seq); see the module."""
        if not isinstance(feed_id, bytes) or len(feed_id) != FEED_ID_BYTES:
            raise UsageError(f"a feed id is {FEED_ID_BYTES} bytes")
        if type(floor) is not int or floor < 0:
            raise UsageError("a feed's floor is a non-negative int")
        self.feed_id = feed_id
        self._seq_of: dict[K, int] = {}
        self._key_at: dict[int, K] = {}
        for key, seq in sorted(rows, key=lambda row: row[1]):
            if type(seq) is not int or seq <= 0:
                raise UsageError(f"a row's seq is a positive int, got {seq!r}")
            if seq in self._key_at or key in self._seq_of:
                raise UsageError(f"two rows share seq {seq}, or a key appears twice")
            self._seq_of[key] = seq
            self._key_at[seq] = key
        self._order: list[int] = list(self._key_at)  # ascending; may hold numbers since reused
        self.last = max(self._order[-1] if self._order else 0, floor)
        self.floor = floor

    def __len__(self) -> int:
        return len(self._seq_of)

    def __contains__(self, key: object) -> bool:
        return key in self._seq_of

    def seq_of(self, key: K) -> int | None:
        """The number of the row's latest change, or None if the feed does not list it."""
        return self._seq_of.get(key)

    @property
    def position(self) -> FeedPosition:
        """Where a puller that has seen everything stands."""
        return FeedPosition(self.feed_id, self.last)

    def touch(self, key: K) -> int:
        """Number a change of ``key`` (set, replaced or turned into a tombstone); its new seq."""
        old = self._seq_of.get(key)
        if old is not None:
            del self._key_at[old]
        self.last += 1
        self._seq_of[key] = self.last
        self._key_at[self.last] = key
        self._order.append(self.last)
        self._compact()
        return self.last

    def forget(self, key: K) -> None:
        """Stop listing ``key`` (an old tombstone); pullers from below its number must reset."""
        seq = self._seq_of.pop(key, None)
        if seq is None:
            return
        del self._key_at[seq]
        self.floor = max(self.floor, seq)
        self._compact()

    def page(self, since: FeedPosition | None, limit: int, *, listing: bool = False) -> FeedPage[K]:
        """At most ``limit`` keys changed after ``since`` (None: a first pull), in change order.

        ``listing`` says the asker is in the middle of a reset's listing: it
        continues below the floor, since a listing needs no removals (the
        asker sweeps what no page listed).
        """
        if type(limit) is not int or limit < 1:
            raise UsageError("a page's limit is a positive int")
        reset = (
            since is None or since.feed != self.feed_id or (since.seq < self.floor and not listing)
        )
        after = 0 if reset or since is None else since.seq
        if after > self.last:  # a position this feed never gave: treat as another feed's
            reset, after = True, 0
        keys: list[K] = []
        last_seq = after
        for seq, key in self._from(after):
            if len(keys) == limit:
                return FeedPage(keys, reset, FeedPosition(self.feed_id, last_seq), True)
            keys.append(key)
            last_seq = seq
        return FeedPage(keys, reset, FeedPosition(self.feed_id, self.last), False)

    def _from(self, after: int) -> Iterator[tuple[int, K]]:
        start = bisect.bisect_right(self._order, after)
        for seq in self._order[start:]:
            key = self._key_at.get(seq)
            if key is not None:
                yield seq, key

    def _compact(self) -> None:
        # Numbers of rows changed again stay in _order until they outnumber the live ones.
        if len(self._order) > 2 * len(self._key_at) + 64:
            self._order = sorted(self._key_at)


class FeedCursor(Generic[K]):
    """The puller's side for one server: its position, and what a reset leaves to sweep.

    The puller asks from :attr:`position` (with ``listing`` =
    :attr:`resetting`), calls :meth:`begin` before applying a page's rows and
    :meth:`end` after they are stored; :meth:`end` returns the keys to drop
    when a reset's last page has been read (held before the reset, listed by
    none of its pages).  A puller restarted in the middle of a listing starts
    it over (:attr:`stored_position`).
    """

    def __init__(self, position: FeedPosition | None = None) -> None:
        self.position = position
        self._resetting = False
        self._unlisted: set[K] = set()
        self._listing_since_ms: int | None = None

    @property
    def resetting(self) -> bool:
        """In a reset's listing: ask with ``listing=True``; do not persist the position."""
        return self._resetting

    @property
    def stored_position(self) -> FeedPosition | None:
        """What to keep across a restart: mid-listing, nothing (the sweep is in memory)."""
        return None if self._resetting else self.position

    def abandon_listing_before(self, cutoff_ms: int) -> bool:
        """Start over a reset's listing begun before ``cutoff_ms``; whether there was one.

        The caller passes now minus half the server's tombstone horizon (see
        the module): the next ask is a first pull, answered with a new reset.
        """
        since = self._listing_since_ms
        if not self._resetting or since is None or since >= cutoff_ms:
            return False
        self.position, self._resetting, self._unlisted = None, False, set()
        self._listing_since_ms = None
        return True

    def begin(self, page: FeedPage[K], held: Iterable[K], now_ms: int | None = None) -> None:
        """Take note of a page before its rows are applied; ``held`` is read on a reset's first.

        ``now_ms`` dates a reset's listing, for :meth:`abandon_listing_before`.
        """
        if page.reset:
            self._resetting = True
            self._unlisted = set(held)
            self._listing_since_ms = now_ms
        if self._resetting:
            self._unlisted.difference_update(page.keys)

    def end(self, page: FeedPage[K]) -> set[K]:
        """Move to the page's position; the keys to drop if that closed a reset."""
        self.position = page.next
        if not self._resetting or page.more:
            return set()
        self._resetting = False
        swept, self._unlisted = self._unlisted, set()
        return swept
