"""The merged catalog of a node: merge rules, scope, search, anti-entropy (SPEC §18.5-§18.8)."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterable
from typing import NamedTuple

import pytest

from exchnode import errors
from exchnode.catalog import (
    CatalogRecord,
    CatalogState,
    CatalogVerifier,
    DataItem,
    DataType,
    Outcome,
    ShareType,
    Status,
    Summary,
    Wanted,
    decode_providers,
    decode_record,
    decode_records,
    decode_versions,
    decode_wanted,
    encode_providers,
    encode_records,
    encode_versions,
    encode_wanted,
)
from exchnode.catalog._rows import cached_key, subtree_key
from exchnode.catalog._state import Conflict, accepts_from, sends_to, within_subtree
from exchnode.core import Level, NodeName, pack
from exchnode.federation import FeedPosition, Neighbour, Relation
from tests.unit.catalog.feeds import Feeds, lookup
from tests.unit.catalog.test_entry import (
    DIRECTORY,
    FAGAI,
    GONGAN,
    MINZHENG,
    NOW,
    REMOTE,
    TONGJI,
    make_entry,
    publish,
    withdraw,
)

CODE = "101001/000001"
FEED = bytes(range(16))  # a feed id (randomly drawn by a node; fixed in tests)
REVERSE = {Relation.PARENT: Relation.CHILD, Relation.CHILD: Relation.PARENT, Relation.LINK: None}


class Exchanged(NamedTuple):
    providers: int
    wanted: int
    records: int


def neighbour(state: CatalogState, relation: Relation | None) -> Neighbour | None:
    return None if relation is None else Neighbour(state.me, relation)


def pull(
    puller: CatalogState,
    source: CatalogState,
    relation: Relation | None = None,
    verifier: CatalogVerifier | None = None,
    *,
    limit: int | None = None,
) -> Exchanged:
    """One anti-entropy pull, every message through its wire form as over HTTP.

    ``relation`` is what ``source`` is to ``puller`` (None: unrestricted peers);
    ``limit`` cuts the exchange short after that many records, as a lost link would.
    """
    verifier = verifier or CatalogVerifier(DIRECTORY)
    seen_by_puller = neighbour(source, relation)
    back = None if relation is None else (REVERSE[relation] or Relation.LINK)
    seen_by_source = neighbour(puller, back)
    summary = Summary.decode(source.summary(to=seen_by_source).encode())
    providers = puller.diff(summary, source=seen_by_puller)
    if not providers:
        return Exchanged(0, 0, 0)
    asked = decode_providers(encode_providers(providers))
    versions = decode_versions(encode_versions(source.versions(asked, to=seen_by_source)))
    wanted = puller.wanted(versions, source=seen_by_puller)[:limit]
    records = source.entries_for(decode_wanted(encode_wanted(wanted)), to=seen_by_source)
    for data in decode_records(encode_records(records)):
        with contextlib.suppress(errors.EquivocationError):
            puller.apply(verifier.verify(data), source=seen_by_puller)
    return Exchanged(len(providers), len(wanted), len(records))


def state_with(me: str, records: Iterable[CatalogRecord]) -> CatalogState:
    state = CatalogState(me, feed_id=FEED)
    for record in records:
        state.apply(record)
    return state


# --- merging ------------------------------------------------------------------------


def test_versions_order_the_records_of_one_resource() -> None:
    state = CatalogState("520102", feed_id=FEED)
    (v1,) = publish(make_entry(), version=1)
    (v2,) = publish(make_entry(name="人口信息 v2"), version=2)
    (v2_again,) = publish(make_entry(name="人口信息 v2"), version=2, now=NOW + 5)
    assert state.apply(v1) is Outcome.NEW
    assert state.apply(v2) is Outcome.UPDATED
    assert state.apply(v1) is Outcome.STALE
    assert state.apply(v2) is Outcome.SAME
    assert state.apply(v2_again) is Outcome.SAME  # re-signed, same content
    held = state.get(GONGAN, CODE)
    assert held is not None
    assert held.data == v2.data
    assert state.version(GONGAN, CODE) == 2
    assert len(state) == 1


def test_a_tombstone_beats_older_versions_and_stays() -> None:
    state = CatalogState("520100", feed_id=FEED)
    (v1,) = publish(make_entry(), version=1)
    (v2,) = publish(make_entry(), version=2)
    gone = withdraw(GONGAN, CODE, 3)
    assert state.apply(v1) is Outcome.NEW
    assert state.apply(gone) is Outcome.UPDATED
    # Late copies of older versions cannot bring it back.
    assert state.apply(v2) is Outcome.STALE
    assert state.apply(v1) is Outcome.STALE
    held = state.get(GONGAN, CODE)
    assert held is not None
    assert held.withdrawn
    assert state.search() == []
    assert state.search(status=Status.WITHDRAWN) == [gone]
    # Only the provider can publish it again, as a newer version.
    (v4,) = publish(make_entry(), version=4)
    assert state.apply(v4) is Outcome.UPDATED
    assert state.search() == [v4]


def test_a_tombstone_arriving_first_still_wins() -> None:
    gone = withdraw(GONGAN, CODE, 2)
    (v1,) = publish(make_entry(), version=1)
    state = CatalogState("520100", feed_id=FEED)
    assert state.apply(gone) is Outcome.NEW
    assert state.apply(v1) is Outcome.STALE
    assert state.search() == []


def test_equivocation_is_an_error_and_the_first_record_stays() -> None:
    state = CatalogState("520100", feed_id=FEED)
    (first,) = publish(make_entry(), version=5)
    (second,) = publish(make_entry(summary="另一说法"), version=5)
    state.apply(first)
    with pytest.raises(errors.EquivocationError) as caught:
        state.apply(second)
    assert caught.value.code == "equivocation"
    assert (caught.value.held, caught.value.offered) == (first.data, second.data)
    assert state.get(GONGAN, CODE) == first
    (conflict,) = state.conflicts
    assert (conflict.held, conflict.offered) == (first, second)
    # A withdrawal under the same version is equivocation too.
    with pytest.raises(errors.EquivocationError):
        state.apply(withdraw(GONGAN, CODE, 5))
    assert len(state.conflicts) == 2


def test_next_version_is_one_past_what_the_provider_has_signed() -> None:
    state = CatalogState(GONGAN, feed_id=FEED)
    assert state.next_version(CODE) == 1
    (record,) = publish(make_entry(), version=state.next_version(CODE))
    state.apply(record)
    assert state.next_version(CODE) == 2


def test_merging_is_independent_of_order() -> None:
    records = [
        *publish(make_entry(), version=1),
        *publish(make_entry(name="二"), version=2),
        withdraw(GONGAN, CODE, 3),
        *publish(make_entry(provider=MINZHENG, sequence=2), version=1),
    ]
    shuffler = random.Random(4)
    summaries = set()
    for _ in range(10):
        shuffler.shuffle(records)
        summaries.add(state_with("520102", records).summary().top)
    assert len(summaries) == 1


# --- scope (SPEC §18.6) -----------------------------------------------------------------

COUNTY = NodeName.parse("520102")
CITY = NodeName.parse("520100")


@pytest.mark.parametrize(
    ("me", "neighbour_name", "relation", "provider", "accepted"),
    [
        # From the parent: what this node asked for (it asks only through its own requests).
        ("520102", "520100", Relation.PARENT, REMOTE, True),
        ("520102", "520100", Relation.PARENT, GONGAN, True),
        (GONGAN, "520102", Relation.PARENT, TONGJI, True),
        # From a child hub: only its subtree.
        ("520100", "520102", Relation.CHILD, GONGAN, True),
        ("520100", "520102", Relation.CHILD, MINZHENG, True),
        ("520100", "520102", Relation.CHILD, "520103.gongan", False),
        ("520100", "520102", Relation.CHILD, FAGAI, False),
        # From a child department: only itself.
        ("520102", GONGAN, Relation.CHILD, GONGAN, True),
        ("520102", GONGAN, Relation.CHILD, MINZHENG, False),
        # From a link: nothing; the catalog travels along the tree.
        ("520100", "522300", Relation.LINK, REMOTE, False),
        ("520100", "522300", Relation.LINK, GONGAN, False),
    ],
)
def test_what_a_node_accepts_from_each_neighbour(
    me: str, neighbour_name: str, relation: Relation, provider: str, accepted: bool
) -> None:
    peer = Neighbour(NodeName.parse(neighbour_name), relation)
    assert accepts_from(peer, provider) is accepted


def test_what_a_node_sends_mirrors_what_the_other_side_accepts() -> None:
    providers = (GONGAN, MINZHENG, "520103.gongan", FAGAI, TONGJI, REMOTE)
    pairs = [
        ("520100", "520102", Relation.CHILD),
        ("520102", GONGAN, Relation.CHILD),
        ("520000", "520100", Relation.CHILD),
        ("520100", "522300", Relation.LINK),
    ]
    for upper, lower, relation in pairs:
        up, down = NodeName.parse(upper), NodeName.parse(lower)
        back = Relation.PARENT if relation is Relation.CHILD else Relation.LINK
        for provider in providers:
            # lower → upper
            assert sends_to(down, Neighbour(up, back), provider) == accepts_from(
                Neighbour(down, relation), provider
            )
            # upper → lower
            assert sends_to(up, Neighbour(down, relation), provider) == accepts_from(
                Neighbour(up, back), provider
            )
    assert within_subtree(NodeName.parse(GONGAN), GONGAN)
    assert not within_subtree(NodeName.parse(GONGAN), MINZHENG)
    assert within_subtree(NodeName.parse("520000"), FAGAI)


def test_a_child_cannot_speak_for_another_branch() -> None:
    city = CatalogState(CITY, feed_id=FEED)
    (foreign,) = publish(make_entry(provider="520103.gongan"))
    from_county = Neighbour(COUNTY, Relation.CHILD)
    assert city.apply(foreign, source=from_county) is Outcome.OUT_OF_SCOPE
    assert len(city) == 0
    (own,) = publish(make_entry(provider=MINZHENG))
    assert city.apply(own, source=from_county) is Outcome.NEW


def test_entries_climb_only_their_branch_and_are_found_by_lookup() -> None:
    """A county department's entry climbs to the province by feeds; the other city looks it up."""
    province, city, county, other_city = (
        CatalogState(n, feed_id=FEED) for n in ("520000", CITY, COUNTY, "522300")
    )
    department = state_with(GONGAN, publish(make_entry()))
    feeds = Feeds()
    assert feeds.pull(county, department).records == 1
    assert feeds.pull(city, county).records == 1
    assert feeds.pull(province, city).records == 1
    # Each hub holds it as its subtree's, nothing came down.
    assert [len(s) for s in (county, city, province, other_city)] == [1, 1, 1, 0]
    assert not feeds.pull(other_city, province, Relation.PARENT).records
    # A lookup from the other city climbs to the province, which holds it, and is cached there.
    answer = lookup([other_city, province], [Wanted(GONGAN, CODE, 0)])
    assert answer.complete
    assert [decode_record(r).code for r in answer.records] == [CODE]
    assert other_city.get(GONGAN, CODE) is not None
    assert other_city.cached == 1
    assert list(other_city.subtree()) == []
    # A child department's echo of what it holds from above is out of scope at its parent.
    remote = CatalogState(REMOTE, feed_id=bytes(16))
    (fagai,) = publish(make_entry(provider=FAGAI))
    remote.apply(fagai)
    assert feeds.pull(CatalogState("522301", feed_id=FEED), remote).records == 0
    # Over a link the catalog does not travel at all.
    link = Neighbour(other_city.me, Relation.LINK)
    assert city.summary(to=link).providers == {}
    (far,) = publish(make_entry(provider=REMOTE))
    assert city.apply(far, source=link) is Outcome.OUT_OF_SCOPE


# --- search ---------------------------------------------------------------------------


@pytest.fixture
def catalog() -> CatalogState:
    records = [
        *publish(make_entry(sequence=1), make_entry(sequence=2, name="出入境证件信息")),
        *publish(
            make_entry(
                provider=TONGJI,
                code="205012/000007",
                classification="205012",
                name="Regional GDP statistics",
                data_items=(DataItem("地区生产总值", DataType.CURRENCY),),
                share_type=ShareType.UNCONDITIONAL,
                share_conditions="",
            )
        ),
        *publish(make_entry(provider=REMOTE, code="301001/000001", classification="301001")),
        withdraw(MINZHENG, "101001/000009", 2),
    ]
    return state_with("520000", records)


def _keys(records: list[CatalogRecord]) -> list[tuple[str, str]]:
    return [(r.code, r.provider) for r in records]


def test_search_by_each_criterion(catalog: CatalogState) -> None:
    everything = _keys(catalog.search())
    assert everything == sorted(everything)
    assert len(everything) == 4
    assert _keys(catalog.search(code="101001/000002")) == [("101001/000002", GONGAN)]
    assert len(catalog.search(provider=GONGAN)) == 2
    assert _keys(catalog.search(classification="2")) == [("205012/000007", TONGJI)]
    assert len(catalog.search(classification="101001")) == 2
    assert len(catalog.search(classification="1010010")) == 0
    assert _keys(catalog.search(share_type=ShareType.UNCONDITIONAL)) == [("205012/000007", TONGJI)]
    assert _keys(catalog.search(keyword="出入境")) == [("101001/000002", GONGAN)]
    assert _keys(catalog.search(keyword="gdp")) == [("205012/000007", TONGJI)]
    assert len(catalog.search(keyword="身份证")) == 3  # a data item name
    assert len(catalog.search(keyword="household_size")) == 3  # case-insensitive
    assert _keys(catalog.search(level=Level.PROVINCE)) == [("205012/000007", TONGJI)]
    assert len(catalog.search(level=Level.COUNTY)) == 3
    assert _keys(catalog.search(status=Status.WITHDRAWN)) == [("101001/000009", MINZHENG)]
    assert len(catalog.search(status=None)) == 5
    assert _keys(catalog.search(classification="101", provider=MINZHENG, status=None)) == [
        ("101001/000009", MINZHENG)
    ]
    assert catalog.search(keyword="出入境", provider=TONGJI) == []


# --- persistence ------------------------------------------------------------------------


def legacy_value(records: Iterable[CatalogRecord], conflicts: Iterable[Conflict] = ()) -> bytes:
    """The single value format 1's ``CatalogState.encode`` stored (byte for byte its layout)."""
    ordered = sorted(records, key=lambda r: (r.provider, r.code))
    return pack([1, [r.data for r in ordered], [[c.held.data, c.offered.data] for c in conflicts]])


def test_rows_restore_the_same_state_and_its_feed(catalog: CatalogState) -> None:
    (first,) = publish(make_entry(provider=FAGAI), version=3)
    (second,) = publish(make_entry(provider=FAGAI, name="别的"), version=3)
    catalog.apply(first)
    with pytest.raises(errors.EquivocationError):
        catalog.apply(second)
    rows = catalog.all_rows()
    for verifier in (None, CatalogVerifier(DIRECTORY)):
        restored = CatalogState.from_rows(sorted(rows.items()), "520000", verifier=verifier)
        assert restored.summary() == catalog.summary()
        assert list(restored.records()) == list(catalog.records())
        assert restored.conflicts == catalog.conflicts
        assert restored.all_rows() == rows
        assert restored.feed_position == catalog.feed_position
    assert not restored.take_rows()
    key = subtree_key(GONGAN, CODE)
    damaged = {**rows, key: rows[key][:-3]}
    with pytest.raises(errors.MalformedError, match=key):
        CatalogState.from_rows(damaged.items(), "520000")
    moved = {**rows, subtree_key(GONGAN, "101001/000003"): rows[key]}
    with pytest.raises(errors.MalformedError, match="does not name its record"):
        CatalogState.from_rows(moved.items(), "520000")
    without_header = {k: v for k, v in rows.items() if k != "catalog.h"}
    with pytest.raises(errors.MalformedError, match="no header"):
        CatalogState.from_rows(without_header.items(), "520000")


def test_a_change_writes_its_own_rows_only(catalog: CatalogState) -> None:
    catalog.take_rows()
    (v2,) = publish(make_entry(name="人口信息 v2"), version=2)
    catalog.apply(v2)
    rows = catalog.take_rows()
    assert list(rows) == [subtree_key(GONGAN, CODE)]
    value = rows[subtree_key(GONGAN, CODE)]
    assert value is not None
    assert len(value) < len(v2.data) + 16
    catalog.apply(v2)
    assert catalog.take_rows() == {}


def test_the_value_format_1_stored_migrates_to_rows() -> None:
    (first,) = publish(make_entry(), version=3)
    (second,) = publish(make_entry(summary="另一说法"), version=3)
    foreign = publish(make_entry(provider=REMOTE))
    old = legacy_value([first, *foreign], [Conflict(first, second)])
    county = CatalogState.from_snapshot(old, "520102", feed_id=FEED)
    # The subtree is kept (numbered in a new feed), what lies above is asked for again.
    assert list(county.records()) == [first]
    assert county.feed_position == FeedPosition(FEED, 1)
    assert county.conflicts == (Conflict(first, second),)
    restored = CatalogState.from_rows(county.all_rows().items(), "520102")
    assert list(restored.records()) == [first]
    with pytest.raises(errors.MalformedError, match=r"catalog\.snapshot"):
        CatalogState.from_snapshot(old[:-3], "520102", feed_id=FEED)
    with pytest.raises(errors.UnsupportedVersionError):
        CatalogState.from_snapshot(b"\x93\x02\x90\x90", "520102", feed_id=FEED)


def test_the_cache_is_bounded_and_keeps_what_is_used() -> None:
    department = CatalogState(GONGAN, feed_id=FEED, max_cached=2)
    parent = Neighbour(COUNTY, Relation.PARENT)
    a, b, c = (publish(make_entry(provider=REMOTE, sequence=i))[0] for i in (1, 2, 3))
    department.apply(a, source=parent)
    department.apply(b, source=parent)
    assert department.get(REMOTE, a.code) == a  # used: b is now the least recently used
    department.apply(c, source=parent)
    assert department.get(REMOTE, b.code) is None
    assert [w.code for w in department.cached_versions()] == [a.code, c.code]
    rows = department.take_rows()
    assert rows[cached_key(REMOTE, b.code)] is None
    assert department.feed_position.seq == 0  # nothing from above enters the feed


# --- anti-entropy (SPEC §18.7) -------------------------------------------------------------

PROVIDERS = (GONGAN, MINZHENG, "520103.gongan", FAGAI, TONGJI, REMOTE)


def _histories(seed: int) -> dict[tuple[str, str], list[CatalogRecord]]:
    """For each (provider, code), its records in version order: publications, maybe a tombstone."""
    rng = random.Random(seed)
    histories: dict[tuple[str, str], list[CatalogRecord]] = {}
    for provider in PROVIDERS:
        entries = [make_entry(provider=provider, sequence=s) for s in range(1, 6)]
        versions = [publish(*entries, version=v, now=NOW + v) for v in (1, 2)]
        for i, entry in enumerate(entries):
            history = [versions[0][i], versions[1][i]]
            if rng.random() < 0.3:
                history.append(withdraw(provider, entry.code, 3))
            histories[(provider, entry.code)] = history
    return histories


def test_two_states_converge_and_only_differences_travel() -> None:
    rng = random.Random(18)
    histories = _histories(18)
    a, b = CatalogState("520000", feed_id=FEED), CatalogState("520000", feed_id=FEED)
    differing: set[str] = set()
    a_missing = b_missing = 0
    for (provider, _), history in histories.items():
        va, vb = rng.randrange(len(history) + 1), rng.randrange(len(history) + 1)
        if va:
            a.apply(history[va - 1])
        if vb:
            b.apply(history[vb - 1])
        if va != vb:
            differing.add(provider)
        a_missing += vb > va
        b_missing += va > vb
    assert differing, "the seed must produce differences"
    assert pull(a, b) == Exchanged(len(differing), a_missing, a_missing)
    # B's providers now hold every version A lacked; what A has newer still differs.
    assert pull(b, a).records == b_missing
    assert a.summary() == b.summary()
    assert pull(a, b) == Exchanged(0, 0, 0)
    assert pull(b, a) == Exchanged(0, 0, 0)


def test_an_exchange_in_sync_sends_only_the_summary(catalog: CatalogState) -> None:
    copy = CatalogState.from_rows(catalog.all_rows().items(), "520000")
    assert copy.diff(catalog.summary()) == ()
    assert pull(copy, catalog) == Exchanged(0, 0, 0)


def test_an_equivocation_found_in_an_exchange_is_fetched_once() -> None:
    (first,) = publish(make_entry(), version=2)
    (second,) = publish(make_entry(summary="另一版本"), version=2)
    a, b = state_with("520000", [first]), state_with("520000", [second])
    assert pull(a, b).records == 1
    assert len(a.conflicts) == 1
    assert a.get(GONGAN, CODE) == first
    # Known evidence is not fetched again; the summaries differ until a newer version.
    assert pull(a, b) == Exchanged(1, 0, 0)
    (third,) = publish(make_entry(), version=3)
    b.apply(third)
    assert pull(a, b).records == 1
    assert a.summary() == b.summary()


def test_a_summary_with_a_wrong_top_digest_is_refused(catalog: CatalogState) -> None:
    summary = catalog.summary()
    forged = summary._replace(top=bytes(32))
    with pytest.raises(errors.MalformedError, match=r"catalog\.summary\.top"):
        Summary.decode(forged.encode())
    assert Summary.decode(summary.encode()) == summary


def test_a_neighbour_only_gets_what_it_may_see() -> None:
    county = state_with(
        "520102",
        [
            *publish(make_entry()),
            *publish(make_entry(provider=FAGAI)),
            *publish(make_entry(provider=MINZHENG)),
        ],
    )
    to_parent = Neighbour(CITY, Relation.PARENT)
    assert set(county.summary(to=to_parent).providers) == {GONGAN, MINZHENG}
    assert set(county.versions([GONGAN, FAGAI], to=to_parent)) == {GONGAN}
    wanted = county.wanted(county.versions([FAGAI]), source=None)
    assert wanted == ()
    everything = [w for w in CatalogState(CITY, feed_id=FEED).wanted(county.versions(PROVIDERS))]
    assert len(county.entries_for(everything, to=to_parent)) == 2
    assert (
        len(county.entries_for(everything, to=Neighbour(NodeName.parse(GONGAN), Relation.CHILD)))
        == 3
    )
