"""Feeds and lookups between pure catalog states, every message through its wire form."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from exchnode.catalog import (
    CatalogQuery,
    CatalogState,
    CatalogVerifier,
    FeedPuller,
    FeedRequest,
    LookupAnswer,
    LookupRequest,
    RecordPage,
    Wanted,
    merge_verified,
)
from exchnode.federation import Neighbour, Relation
from tests.unit.catalog.test_entry import DIRECTORY

VERIFIER = CatalogVerifier(DIRECTORY)


class Pulled(NamedTuple):
    records: int  # records that were new or newer at the puller
    pages: int
    bytes: int  # request and page bytes, both ways


class Feeds:
    """Each puller's position in each source's feed, kept between pulls as a node keeps them."""

    def __init__(self) -> None:
        self.pullers: dict[tuple[int, int], FeedPuller] = {}

    def pull(
        self,
        puller: CatalogState,
        source: CatalogState,
        relation: Relation = Relation.CHILD,
        *,
        pages: int | None = None,
        limit: int = 1024,
    ) -> Pulled:
        """Pull ``source``'s feed into ``puller`` (``relation``: what ``source`` is to it).

        ``pages`` cuts the pull short after that many pages, as a lost link would.
        """
        key = (id(puller), id(source))
        one = self.pullers.setdefault(key, FeedPuller(Neighbour(source.me, relation)))
        back = Relation.PARENT if relation is Relation.CHILD else Relation.CHILD
        learnt = count = size = 0
        while pages is None or count < pages:
            request = FeedRequest.decode(one.request(limit).encode())
            data = source.feed_page(request, Neighbour(puller.me, back)).encode()
            size += len(request.encode()) + len(data)
            page = RecordPage.decode(data)
            learnt += len(one.take(puller, page, VERIFIER).learnt)
            count += 1
            if not page.more:
                break
        return Pulled(learnt, count, size)


def lookup(
    chain: Sequence[CatalogState], keys: Sequence[Wanted], query: CatalogQuery | None = None
) -> LookupAnswer:
    """A lookup asked at ``chain[0]`` and passed up ``chain`` (each the next one's child)."""
    return _ask(chain, LookupRequest.decode(LookupRequest(tuple(keys), query).encode()))


def _ask(chain: Sequence[CatalogState], request: LookupRequest) -> LookupAnswer:
    here = chain[0]
    plan = here.answer(request)
    if plan.ask is None:
        return LookupAnswer.decode(here.finish(plan, complete=True).encode())
    if len(chain) == 1:  # the top: nothing more exists than what it holds
        return LookupAnswer.decode(here.finish(plan, complete=True).encode())
    above = _ask(chain[1:], LookupRequest.decode(plan.ask.encode()))
    parent = Neighbour(chain[1].me, Relation.PARENT)
    merged = merge_verified(here, above.records, parent, VERIFIER)
    answer = here.finish(plan, merged.records, complete=above.complete, more=above.more)
    return LookupAnswer.decode(answer.encode())


def refresh(node: CatalogState, above: Sequence[CatalogState]) -> int:
    """``node`` asks its parent (``above[0]``) for what is newer of what it caches: how many."""
    answer = _ask(above, LookupRequest(tuple(node.cached_versions())))
    parent = Neighbour(above[0].me, Relation.PARENT)
    return len(merge_verified(node, answer.records, parent, VERIFIER).learnt)
