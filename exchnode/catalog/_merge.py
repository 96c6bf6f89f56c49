"""Verify and merge the records a neighbour sent: the one path every received record takes.

A page, a lookup answer and a format-1 ``records`` message all end here:
each record is verified on its own (its provider's signature, SPEC §18.4) and
merged (§18.5) with the neighbour as its source (§18.6), so trust never comes
from the relay and nothing is half-applied.  A record whose signer the
directory does not know yet is not refused: directory and catalog travel
separately, so the caller asks again soon (``waiting``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from exchnode.catalog._entry import CatalogRecord, CatalogVerifier
from exchnode.catalog._pages import MAX_PAGE_RECORDS, FeedRequest, RecordPage
from exchnode.catalog._state import CatalogState, Outcome
from exchnode.errors import (
    DirectoryExpiredError,
    EquivocationError,
    RejectedError,
    UnknownSignerError,
)
from exchnode.federation import FeedCursor, FeedPage, FeedPosition, Neighbour

__all__ = ["FeedPuller", "Merged", "merge_verified"]


@dataclass(slots=True)
class Merged:
    """What merging a batch of received records did."""

    learnt: list[CatalogRecord] = field(default_factory=list)  # new or newer, kept
    records: list[CatalogRecord] = field(default_factory=list)  # every one that verified
    waiting: bool = False  # a signer not (yet) in the directory: ask again soon
    refused: list[tuple[bytes, RejectedError]] = field(default_factory=list)


def merge_verified(
    state: CatalogState,
    records: Iterable[bytes],
    source: Neighbour | None,
    verifier: CatalogVerifier,
) -> Merged:
    """Verify each of ``records`` and merge it into ``state`` from ``source``."""
    merged = Merged()
    for data in records:
        try:
            record = verifier.verify(data)
        except (UnknownSignerError, DirectoryExpiredError):
            merged.waiting = True
            continue
        except RejectedError as exc:  # altered on the way, or not its provider's
            merged.refused.append((data, exc))
            continue
        merged.records.append(record)
        try:
            outcome = state.apply(record, source)
        except EquivocationError as exc:
            merged.refused.append((data, exc))
            continue
        if outcome in (Outcome.NEW, Outcome.UPDATED):
            merged.learnt.append(record)
    return merged


class FeedPuller:
    """A hub's side of one child's feed (SPEC §18.11): where it is, and taking a page.

    The position moves only past a page whose every record was verified or
    refused for good; a page with a record waiting for its signer is asked
    again, so nothing is skipped because the directory was late.  A reset
    (the child lost its store, or is a new install) lists the child's records
    again; what the hub held and the listing lacks is *kept*, not swept: a
    provider's newest signed version is worth more than a child's lost disk,
    and only a newer version from the provider replaces it (§18.5).
    """

    def __init__(self, source: Neighbour, position: FeedPosition | None = None) -> None:
        self.source = source
        self._cursor: FeedCursor[tuple[str, str]] = FeedCursor(position)

    @property
    def position(self) -> FeedPosition | None:
        """What to store across a restart (nothing in the middle of a reset's listing)."""
        return self._cursor.stored_position

    def request(self, limit: int = MAX_PAGE_RECORDS) -> FeedRequest:
        return FeedRequest(self._cursor.position, self._cursor.resetting, limit)

    def take(self, state: CatalogState, page: RecordPage, verifier: CatalogVerifier) -> Merged:
        """Merge ``page`` into ``state``; the position moves on unless a record waits."""
        merged = merge_verified(state, page.records, self.source, verifier)
        if not merged.waiting:
            keys = [(r.provider, r.code) for r in merged.records]
            feed_page = FeedPage(keys, page.reset, page.next, page.more)
            self._cursor.begin(feed_page, ())
            self._cursor.end(feed_page)
        return merged
