"""What a node says to each audience, as a change feed (SPEC §14.13, §14.14).

Why a module of its own: the node directory's state (``_directory``) knows
what it holds; this module turns "what I say to my parent" and "what I say
to my children" into numbered changes, so that a neighbour pulls only what
changed since its last pull.  The rows are recomputed from the state only
when the state changed (or a row's cap passed), and diffed against the last
set served: a changed row gets the next number of the audience's
:class:`~exchnode.federation.ChangeFeed`, a vanished one becomes a tombstone
(served as a removal), forgotten once older than the horizon, after which a
puller from below it resets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from exchnode.federation._directory_pages import CrlRow, Removed
from exchnode.federation._directory_wire import DirectoryEntry
from exchnode.federation._feed import ChangeFeed

__all__ = ["AudienceFeed", "RowKey", "row_key"]

#: ("e", name, leaf digest) for an entry, ("c", CA key, b"") for a CRL.
RowKey = tuple[str, str, bytes]
Row = DirectoryEntry | CrlRow


class _Tombstone(NamedTuple):
    removed_ms: int
    removal: Removed | None


def row_key(row: Row, digest: bytes) -> RowKey:
    """The feed key of an entry (``digest``: of its leaf) or a CRL (``digest``: its CA's key)."""
    if isinstance(row, DirectoryEntry):
        return ("e", row.name, digest)
    return ("c", "", digest)


class AudienceFeed:
    """One audience's rows and their change feed: see the module docstring."""

    def __init__(self, feed_id: bytes) -> None:
        self.feed: ChangeFeed[RowKey] = ChangeFeed(feed_id)
        self.rows: dict[RowKey, Row] = {}
        self._tombstones: dict[RowKey, _Tombstone] = {}

    def replace(self, rows: Mapping[RowKey, Row], now_ms: int, horizon_ms: int) -> int:
        """Serve ``rows`` from now on; number what changed; the count of changes."""
        changed = 0
        for key, row in rows.items():
            if self.rows.get(key) != row:
                self.feed.touch(key)
                self._tombstones.pop(key, None)
                changed += 1
        for key in self.rows.keys() - rows.keys():
            self.feed.touch(key)
            removal = Removed(key[1], key[2]) if key[0] == "e" else None
            self._tombstones[key] = _Tombstone(now_ms, removal)
            changed += 1
        self.rows = dict(rows)
        for key, tombstone in list(self._tombstones.items()):
            if now_ms - tombstone.removed_ms > horizon_ms:
                self.feed.forget(key)
                del self._tombstones[key]
        return changed

    def removal(self, key: RowKey) -> Removed | None:
        """How a key the feed lists but no row holds is served: a removal (None: a CRL's)."""
        tombstone = self._tombstones.get(key)
        return None if tombstone is None else tombstone.removal
