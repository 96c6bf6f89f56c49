"""Catalog format 2: feeds up the tree, lookups and searches beyond a node (SPEC §18.10-§18.12)."""

from __future__ import annotations

import itertools

import pytest

from exchnode import errors
from exchnode.catalog import (
    MAX_LOOKUP_KEYS,
    CatalogQuery,
    CatalogState,
    FeedRequest,
    LookupAnswer,
    LookupRequest,
    RecordPage,
    ShareType,
    Status,
    Wanted,
    decode_record,
)
from exchnode.catalog import _state as catalog_state
from exchnode.core import Level, pack
from exchnode.federation import FeedPosition, Neighbour, Relation
from tests.unit.catalog.feeds import VERIFIER, Feeds, lookup, refresh
from tests.unit.catalog.test_entry import (
    FAGAI,
    GONGAN,
    MINZHENG,
    REMOTE,
    TONGJI,
    make_entry,
    publish,
    withdraw,
)

FEED = bytes(range(16))
OTHER_FEED = bytes(range(1, 17))
CODE = "101001/000001"


def _tree() -> dict[str, CatalogState]:
    names = ("520000", "520100", "520102", "522300", "522301", GONGAN, MINZHENG, REMOTE, FAGAI)
    return {n: CatalogState(n, feed_id=bytes([i]) * 16) for i, n in enumerate(names)}


def _climb(states: dict[str, CatalogState], feeds: Feeds, *path: str) -> list[int]:
    """Pull along ``path`` (child first), each hub from the one below: bytes per link."""
    return [feeds.pull(states[up], states[down]).bytes for down, up in itertools.pairwise(path)]


def test_one_changed_entry_costs_one_small_page_per_link_whatever_the_catalog_holds() -> None:
    states, feeds = _tree(), Feeds()
    many = publish(*(make_entry(sequence=i) for i in range(1, 201)))
    for record in many:
        states[GONGAN].apply(record)
    _climb(states, feeds, GONGAN, "520102", "520100", "520000")
    assert len(states["520000"]) == 200
    (changed,) = publish(make_entry(sequence=7, name="改过的名称"), version=2)
    states[GONGAN].apply(changed)
    costs = _climb(states, feeds, GONGAN, "520102", "520100", "520000")
    assert all(cost < len(changed.data) + 200 for cost in costs), costs
    assert states["520000"].version(GONGAN, changed.code) == 2
    # In sync, a pull is one empty page.
    assert feeds.pull(states["520102"], states[GONGAN]) == (0, 1, 51)


def test_feeds_page_and_a_pull_cut_short_resumes() -> None:
    states, feeds = _tree(), Feeds()
    for record in publish(*(make_entry(sequence=i) for i in range(1, 11))):
        states[GONGAN].apply(record)
    assert feeds.pull(states["520102"], states[GONGAN], pages=2, limit=3).records == 6
    resumed = feeds.pull(states["520102"], states[GONGAN], limit=3)
    assert (resumed.records, resumed.pages) == (4, 2)
    assert len(states["520102"]) == 10


def test_a_child_that_lost_its_store_is_listed_again_and_nothing_is_swept() -> None:
    states, feeds = _tree(), Feeds()
    (kept,) = publish(make_entry(sequence=1))
    states[GONGAN].apply(kept)
    feeds.pull(states["520102"], states[GONGAN])
    # The department comes back with a new store (a new feed id) and one other entry.
    reborn = CatalogState(GONGAN, feed_id=OTHER_FEED)
    (other,) = publish(make_entry(sequence=2))
    reborn.apply(other)
    puller = feeds.pullers[(id(states["520102"]), id(states[GONGAN]))]
    request = puller.request()
    page = reborn.feed_page(request, Neighbour(states["520102"].me, Relation.PARENT))
    assert page.reset
    puller.take(states["520102"], page, VERIFIER)
    assert {r.code for r in states["520102"].records()} == {kept.code, other.code}
    assert puller.position == FeedPosition(OTHER_FEED, 1)


def test_a_feed_serves_only_the_parent() -> None:
    states = _tree()
    (record,) = publish(make_entry())
    states[GONGAN].apply(record)
    to_child = Neighbour(states["520102"].me, Relation.CHILD)
    page = states[GONGAN].feed_page(FeedRequest(None, False), to_child)
    assert page.records == ()


def test_a_lookup_is_answered_at_the_lowest_hub_holding_the_provider_and_cached_below() -> None:
    states, feeds = _tree(), Feeds()
    (record,) = publish(make_entry(provider=REMOTE, sequence=3))
    states[REMOTE].apply(record)
    _climb(states, feeds, REMOTE, "522301", "522300", "520000")
    chain = [states[n] for n in (GONGAN, "520102", "520100", "520000")]
    answer = lookup(chain, [Wanted(REMOTE, record.code, 0)])
    assert [decode_record(r) for r in answer.records] == [record]
    for state in chain[:3]:
        assert state.get(REMOTE, record.code) == record  # cached on the way
    # Asked again with the version held: nothing newer, nothing sent.
    assert lookup(chain, [Wanted(REMOTE, record.code, 1)]).records == ()
    # A newer version reaches the user through the refresh of what it caches.
    (newer,) = publish(make_entry(provider=REMOTE, sequence=3, name="新"), version=2)
    states[REMOTE].apply(newer)
    _climb(states, feeds, REMOTE, "522301", "522300", "520000")
    assert refresh(chain[0], chain[1:]) == 0  # the county hub answers from its cache
    for depth in (2, 1, 0):  # each refreshes what it caches from its parent, top down
        assert refresh(chain[depth], chain[depth + 1 :]) == 1
    assert chain[0].version(REMOTE, record.code) == 2
    # What exists nowhere is answered as absent by the top, completely.
    missing = lookup(chain, [Wanted(REMOTE, "101001/999999", 0)])
    assert missing.complete
    assert missing.records == ()


def test_a_search_beyond_a_department_is_answered_by_the_hub_that_covers_its_scope() -> None:
    states, feeds = _tree(), Feeds()
    (near,) = publish(make_entry(provider=MINZHENG, sequence=4))
    (far,) = publish(make_entry(provider=REMOTE, sequence=5))
    (gone,) = [withdraw(FAGAI, "101001/000006", 2)]
    states[MINZHENG].apply(near)
    states[REMOTE].apply(far)
    states[FAGAI].apply(gone)
    _climb(states, feeds, MINZHENG, "520102", "520100", "520000")
    _climb(states, feeds, REMOTE, "522301", "522300", "520000")
    _climb(states, feeds, FAGAI, "520100")
    chain = [states[n] for n in (GONGAN, "520102", "520100", "520000")]
    county = CatalogQuery(scope="520102")
    assert [decode_record(r) for r in lookup(chain, [], county).records] == [near]
    assert chain[1].covers(county)
    assert not chain[1].covers(CatalogQuery(scope="52"))
    everything = lookup(chain, [], CatalogQuery(scope="52"))
    assert {decode_record(r).provider for r in everything.records} == {MINZHENG, REMOTE}
    tombstones = lookup(chain, [], CatalogQuery(scope="5201", status=Status.WITHDRAWN))
    assert [decode_record(r) for r in tombstones.records] == [gone]
    # Paged by (code, provider).
    first = lookup(chain, [], CatalogQuery(scope="52", limit=1))
    assert first.more
    assert len(first.records) == 1
    one = decode_record(first.records[0])
    rest = lookup(chain, [], CatalogQuery(scope="52", after=(one.code, one.provider)))
    assert not rest.more
    assert {decode_record(r).provider for r in rest.records} == {MINZHENG, REMOTE} - {one.provider}


# --- wire forms ----------------------------------------------------------------------


def test_the_wire_forms_round_trip() -> None:
    query = CatalogQuery(
        scope="52",
        code=CODE,
        provider=GONGAN,
        classification="1",
        share_type=ShareType.CONDITIONAL,
        keyword="人口",
        level=Level.COUNTY,
        status=None,
        after=(CODE, TONGJI),
        limit=5,
    )
    request = LookupRequest((Wanted(GONGAN, CODE, 0), Wanted(REMOTE, CODE, 3)), query)
    assert LookupRequest.decode(request.encode()) == request
    assert LookupRequest.decode(LookupRequest(()).encode()) == LookupRequest((), None)
    position = FeedPosition(FEED, 9)
    assert FeedRequest.decode(FeedRequest(position, True, 7).encode()) == (position, True, 7)
    assert FeedRequest.decode(FeedRequest(None, False).encode()).position is None
    (record,) = publish(make_entry())
    page = RecordPage(True, position, False, (record.data,))
    assert RecordPage.decode(page.encode()) == page
    answer = LookupAnswer(False, True, (record.data,))
    assert LookupAnswer.decode(answer.encode()) == answer


@pytest.mark.parametrize(
    ("data", "error", "field"),
    [
        (pack([1, [], None]), errors.UnsupportedVersionError, "format 1"),
        (pack([2, [["520102.gongan", CODE, 0]] * 2, None]), errors.MalformedError, "sorted"),
        (pack([2, [["520102", CODE, 0]], None]), errors.MalformedError, r"keys\[0\].provider"),
        (pack([2, [], ["5x"] + [None] * 8 + [10]]), errors.MalformedError, "query.scope"),
        (pack([2, [], [""] + [None] * 8 + [0]]), errors.MalformedError, "query.limit"),
        (pack([2, [], [""] + [None] * 6 + ["draft", None, 1]]), errors.MalformedError, "status"),
        (
            pack([2, [], [""] + [None] * 5 + ["village", None, None, 1]]),
            errors.MalformedError,
            "level",
        ),
        (
            pack(
                [
                    2,
                    [["520102.gongan", f"101001/{i:06}", 0] for i in range(MAX_LOOKUP_KEYS + 1)],
                    None,
                ]
            ),
            errors.TooLargeError,
            "4096",
        ),
        (pack([2, [], None, 0]), errors.MalformedError, "3 elements"),
    ],
)
def test_a_bad_lookup_names_what_is_wrong(data: bytes, error: type[Exception], field: str) -> None:
    with pytest.raises(error, match=field):
        LookupRequest.decode(data)


def test_bad_pages_and_feed_requests_are_refused() -> None:
    with pytest.raises(errors.MalformedError, match=r"feed-request\.feed"):
        FeedRequest.decode(pack([2, b"short", 0, False, 10]))
    with pytest.raises(errors.MalformedError, match="limit"):
        FeedRequest.decode(pack([2, b"", 0, False, 5000]))
    with pytest.raises(errors.MalformedError, match=r"feed-page\.feed"):
        RecordPage.decode(pack([2, False, b"", 0, False, []]))
    with pytest.raises(errors.MalformedError, match=r"records\[0\]"):
        RecordPage.decode(pack([2, False, FEED, 1, False, [b""]]))
    with pytest.raises(errors.MalformedError, match="complete"):
        LookupAnswer.decode(pack([2, 1, False, []]))
    with pytest.raises(errors.MalformedError, match="keyword"):
        CatalogQuery(keyword="")


def test_format_1_answers_beyond_its_limits_say_to_upgrade(monkeypatch: pytest.MonkeyPatch) -> None:
    states = _tree()
    (record,) = publish(make_entry())
    states["520102"].apply(record)
    monkeypatch.setattr(catalog_state, "MAX_SYNC_ITEMS", 0)
    to_child = Neighbour(states[GONGAN].me, Relation.CHILD)
    with pytest.raises(errors.TooLargeError, match="upgrade to catalog format 2"):
        states["520102"].summary(to=to_child)
    with pytest.raises(errors.TooLargeError, match="over format 1's limit"):
        states["520102"].versions([GONGAN], to=to_child)
