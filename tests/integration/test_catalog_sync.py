"""The catalog across a federation: publish in one city, see it in another; converge after a cut."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

import msgpack
import pytest

from exchnode.aio import STATE_KEY, CatalogService, LinkError, Node, read_catalog_rows
from exchnode.aio._catalog_service import (
    CATALOG_FEED_PATH,
    CATALOG_LOOKUP_PATH,
    CATALOG_RECORDS_PATH,
    CATALOG_SUMMARY_PATH,
)
from exchnode.aio._transport import Handler
from exchnode.audit import entry_from_event
from exchnode.catalog import (
    CatalogQuery,
    CatalogRecord,
    FeedRequest,
    LookupRequest,
    Publication,
    ShareType,
    Summary,
    decode_record,
    sign_records,
)
from exchnode.catalog import _state as catalog_state
from exchnode.catalog import _sync as catalog_sync
from exchnode.core import TYPE_CATALOG, Level, NodeName, decode_signed, encode_signed, pack
from exchnode.core._events import ListSink
from exchnode.errors import UsageError
from exchnode.federation import Neighbour, Relation
from exchnode.store import SqliteStore
from tests.integration.federation import CROSS_CITY, Federation
from tests.unit.catalog.test_entry import make_entry

GONGAN = "520102.gongan"
MINZHENG = "522301.minzheng"
WAIT = 20.0


class Running:
    """Nodes of a federation, each with a catalog service; any one can be stopped and restarted."""

    def __init__(self, federation: Federation, refresh: float = 30.0) -> None:
        self.federation = federation
        self.refresh = refresh
        self.service: Callable[..., CatalogService] = CatalogService
        self.nodes: dict[str, Node] = {}
        self.catalogs: dict[str, CatalogService] = {}
        self.events: dict[str, ListSink] = {}

    async def start(self, name: str, **overrides: object) -> CatalogService:
        catalog = self.service(
            refresh=self.refresh, events=self.events.setdefault(name, ListSink())
        )
        node = self.federation.node(name, services=[catalog], **overrides)
        await node.start()
        self.nodes[name], self.catalogs[name] = node, catalog
        return catalog

    async def stop(self, name: str) -> None:
        await self.nodes.pop(name).close()
        del self.catalogs[name]

    async def close(self) -> None:
        for name in list(self.nodes):
            await self.stop(name)

    async def published(self, held_by: str = "520000") -> CatalogRecord:
        """A new entry of GONGAN's, published; returned once the hub ``held_by`` holds it."""
        (record,) = await self.catalogs[GONGAN].publish([make_entry(GONGAN)])
        await self.catalogs[held_by].wait_for(GONGAN, record.code, timeout=WAIT)
        return record


@contextlib.asynccontextmanager
async def federation_with_catalogs(tmp_path: Path, refresh: float = 30.0) -> AsyncIterator[Running]:
    running = Running(Federation(tmp_path, CROSS_CITY), refresh)
    try:
        for name in CROSS_CITY:
            await running.start(name)
        yield running
    finally:
        await running.close()
    # Every event the catalog emitted fits the audit log's schema.
    for sink in running.events.values():
        for event in sink.events:
            entry_from_event(event)


ABOVE_GONGAN = ["520102", "520100", "520000"]  # the hubs whose subtree holds GONGAN


@pytest.mark.asyncio
async def test_an_entry_climbs_to_every_hub_above_it_and_is_found_beyond(tmp_path: Path) -> None:
    async with federation_with_catalogs(tmp_path, refresh=1.0) as running:
        (record,) = await running.catalogs[GONGAN].publish([make_entry(GONGAN)])
        assert record.version == 1
        code = record.code
        for name in ABOVE_GONGAN:
            held = await running.catalogs[name].wait_for(GONGAN, code, timeout=WAIT)
            assert held.data == record.data  # the provider's signed bytes, unaltered
        # Nothing came down the other branch: each hub holds its own level's catalog.
        for name in ("522300", "522301", MINZHENG):
            assert running.catalogs[name].get(GONGAN, code) is None

        # The far county's department finds it through its hubs, by the fields the guide names.
        far = running.catalogs[MINZHENG]
        for criteria in (
            {"provider": GONGAN},
            {"keyword": "population"},
            {"share_type": ShareType.CONDITIONAL},
            {"classification": "1"},
            {"level": Level.COUNTY},
        ):
            found = await far.search_beyond(CatalogQuery(**criteria))
            assert found.complete
            assert [r.code for r in found.records] == [code], criteria
        nothing = await far.search_beyond(CatalogQuery(share_type=ShareType.UNCONDITIONAL))
        assert nothing.records == []
        only_its_city = await far.search_beyond(CatalogQuery(scope="5223"))
        assert only_its_city.records == []
        looked_up = await far.lookup(GONGAN, code)
        assert looked_up is not None
        assert looked_up.data == record.data
        assert far.get(GONGAN, code) == looked_up  # cached now, and refreshed while held

        # A new version climbs, and reaches the far user through the refresh of its cache.
        await running.catalogs[GONGAN].publish([make_entry(GONGAN, name="人口基本信息（新）")])
        for name in [*ABOVE_GONGAN, MINZHENG]:
            held = await running.catalogs[name].wait_for(GONGAN, code, version=2, timeout=WAIT)
            assert held.entry is not None
            assert held.entry.name == "人口基本信息（新）"
        await running.catalogs[GONGAN].withdraw(code, "superseded by 101001/000002")
        for name in [*ABOVE_GONGAN, MINZHENG]:
            held = await running.catalogs[name].wait_for(GONGAN, code, version=3, timeout=WAIT)
            assert held.withdrawn
        assert (await far.search_beyond(CatalogQuery(provider=GONGAN))).records == []


@pytest.mark.asyncio
async def test_only_the_provider_publishes_its_entries(tmp_path: Path) -> None:
    async with federation_with_catalogs(tmp_path) as running:
        with pytest.raises(UsageError, match="one source per datum"):
            await running.catalogs[MINZHENG].publish([make_entry(GONGAN)])
        with pytest.raises(UsageError, match="no published entry"):
            await running.catalogs[MINZHENG].withdraw("101001/000001", "never published")


@pytest.mark.asyncio
async def test_catalogs_converge_after_a_partition_and_survive_restarts(tmp_path: Path) -> None:
    async with federation_with_catalogs(tmp_path, refresh=1.0) as running:
        first = make_entry(GONGAN, 1)
        (record,) = await running.catalogs[GONGAN].publish([first])
        await running.catalogs["520000"].wait_for(GONGAN, record.code, timeout=WAIT)
        assert await running.catalogs[MINZHENG].lookup(GONGAN, record.code) == record

        # Cut the second city off: its hub is down while both sides change.
        await running.stop("522300")
        await running.catalogs[GONGAN].publish([make_entry(GONGAN, 1, summary="第二版 v2")])
        (theirs,) = await running.catalogs[MINZHENG].publish(
            [make_entry(MINZHENG, 7, provider_code="11522301MB7654321Y")]
        )
        await running.catalogs["520000"].wait_for(GONGAN, record.code, version=2, timeout=WAIT)
        await running.catalogs["522301"].wait_for(MINZHENG, theirs.code, timeout=WAIT)
        assert running.catalogs["520000"].get(MINZHENG, theirs.code) is None
        assert running.catalogs[MINZHENG].state.version(GONGAN, record.code) == 1
        # Beyond the cut, a lookup is answered as far as it gets, and says it is incomplete.
        cut = await running.catalogs[MINZHENG].search_beyond(CatalogQuery(provider=GONGAN))
        assert not cut.complete

        # The hub's catalog was kept in its store: a restart without neighbours still has it.
        alone = await running.start("522300", peers=[])
        assert alone.state.version(GONGAN, record.code) == 1  # cached on the lookup's way
        await running.stop("522300")

        # Back with its links: both directions catch up without any new publication.
        await running.start("522300")
        await running.catalogs["520000"].wait_for(MINZHENG, theirs.code, timeout=WAIT)
        await running.catalogs[MINZHENG].wait_for(GONGAN, record.code, version=2, timeout=WAIT)
        assert await running.catalogs[GONGAN].lookup(MINZHENG, theirs.code) == theirs
        # Every hub holds exactly its subtree's records.
        province = running.catalogs["520000"].state
        assert {(r.provider, r.version) for r in province.subtree()} == {(GONGAN, 2), (MINZHENG, 1)}
        assert [r.provider for r in running.catalogs["522300"].state.subtree()] == [MINZHENG]
        assert [r.provider for r in running.catalogs["520100"].state.subtree()] == [GONGAN]


@pytest.mark.asyncio
async def test_a_neighbour_sees_only_what_its_place_allows(tmp_path: Path) -> None:
    async with federation_with_catalogs(tmp_path) as running:
        record = await running.published()
        assert await running.catalogs[MINZHENG].lookup(GONGAN, record.code) == record
        # A county hub's summary for its parent lists only its own subtree's providers
        # (what it cached from above stays); for a child of format 1, what it holds.
        county = running.catalogs["522301"].state
        assert county.get(GONGAN, record.code) == record
        up = county.summary(to=Neighbour(NodeName.parse("522300"), Relation.PARENT))
        down = county.summary(to=Neighbour(NodeName.parse(MINZHENG), Relation.CHILD))
        assert GONGAN not in up.providers
        assert GONGAN in down.providers
        # The feed is served to the parent only; lookups are answered to children only.
        department, hub = running.nodes[MINZHENG], running.nodes["522301"]
        feed_request = FeedRequest(None, False).encode()
        with pytest.raises(LinkError) as refused:
            await department.request("522301", "POST", CATALOG_FEED_PATH, feed_request)
        assert refused.value.status == 403
        with pytest.raises(LinkError) as refused:
            await hub.request(MINZHENG, "POST", CATALOG_LOOKUP_PATH, LookupRequest(()).encode())
        assert refused.value.status == 403
        with pytest.raises(LinkError) as refused:
            await department.request("522301", "POST", CATALOG_LOOKUP_PATH, b"\x93\x02")
        assert refused.value.status == 400
        assert "malformed" in str(refused.value)


def forged_newer(data: bytes) -> bytes:
    """What a hub would make of a record it relays: a "newer version", under the old seal."""
    body, seal = decode_signed(data, TYPE_CATALOG, "catalog", 1 << 20)
    fields = msgpack.unpackb(body)
    fields[5] += 1  # the version (SPEC §18.3)
    return encode_signed(TYPE_CATALOG, pack(fields), seal)


@pytest.mark.asyncio
async def test_a_hub_altering_an_entry_is_detected(tmp_path: Path) -> None:
    async with federation_with_catalogs(tmp_path) as running:
        record = await running.published()

        # The far department uses it (a lookup), and its county's hub caches it on the way.
        assert await running.catalogs[MINZHENG].lookup(GONGAN, record.code) == record
        # That hub holds an altered copy (as a compromised hub would) ...
        running.catalogs["522301"].state.apply(decode_record(forged_newer(record.data)))
        # ... and its department refreshes what it uses from it (at start, as after any restart).
        await running.stop(MINZHENG)
        await running.start(MINZHENG)
        events = running.events[MINZHENG].events

        async def refused() -> None:
            while not any(e.action == "catalog.refused" for e in events):
                await asyncio.sleep(0.02)

        await asyncio.wait_for(refused(), WAIT)
        (event,) = [e for e in events if e.action == "catalog.refused"]
        assert (event.actor, event.outcome, event.resource_code) == (
            "522301",
            "bad-signature",
            record.code,
        )
        held = running.catalogs[MINZHENG].get(GONGAN, record.code)
        assert held is not None
        assert held.data == record.data  # still the provider's version 1


@pytest.mark.asyncio
async def test_the_single_value_of_format_1_is_migrated_to_rows_at_first_start(
    tmp_path: Path,
) -> None:
    running = Running(Federation(tmp_path, CROSS_CITY))
    identity = running.federation.nodes[GONGAN].identity
    (own,) = sign_records(identity, [Publication(make_entry(GONGAN), 4)], 1_795_000_000.0)
    far = running.federation.nodes[MINZHENG].identity
    (foreign,) = sign_records(far, [Publication(make_entry(MINZHENG, 3), 1)], 1_795_000_000.0)
    # What today's code stored: one value, the whole catalog (SPEC §18.8, format 1).
    with SqliteStore(running.federation.directory / f"{GONGAN}.sqlite") as store:
        store.set_meta(STATE_KEY, pack([1, [own.data, foreign.data], []]))
    try:
        catalog = await running.start(GONGAN)
        assert catalog.get(GONGAN, own.code) == own
        assert catalog.get(MINZHENG, foreign.code) is None  # asked for again when used
        node = running.nodes[GONGAN]
        assert await node.get_meta(STATE_KEY) is None
        rows = dict(await read_catalog_rows(node))
        assert f"catalog.r {GONGAN} {own.code}" in rows
        # The provider's next version follows the migrated one, and climbs by the feed.
        (newer,) = await catalog.publish([make_entry(GONGAN, name="迁移后")])
        assert newer.version == 5
        hub = await running.start("520102")
        await hub.wait_for(GONGAN, own.code, version=5, timeout=WAIT)
        # A restart reads the rows, not the old value.
        await running.stop(GONGAN)
        again = await running.start(GONGAN)
        assert again.state.version(GONGAN, own.code) == 5
    finally:
        await running.close()


class Format1(CatalogService):
    """A node of the previous version, as far as its neighbours can tell: no feed, no lookups."""

    def routes(self) -> Mapping[tuple[str, str], Handler]:
        new = {CATALOG_FEED_PATH, CATALOG_LOOKUP_PATH}
        return {key: h for key, h in super().routes().items() if key[1] not in new}


@pytest.mark.asyncio
async def test_a_neighbour_of_format_1_is_reconciled_and_told_why_when_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = Running(Federation(tmp_path, CROSS_CITY))
    try:
        running.service = Format1
        old = await running.start(GONGAN)
        running.service = CatalogService
        hub = await running.start("520102")
        (record,) = await old.publish([make_entry(GONGAN)])
        # The new hub found the feed missing (404) and pulled the old child by §18.7.
        assert (await hub.wait_for(GONGAN, record.code, timeout=WAIT)) == record
        # The old child's §18.7 pull of the new hub is served from what the hub holds ...
        department = running.nodes[GONGAN]
        summary = Summary.decode(await department.request("520102", "GET", CATALOG_SUMMARY_PATH))
        assert GONGAN in summary.providers
        # ... and beyond format 1's limits it is refused, saying why and what to do:
        # a wanted list longer than format 1's lists may be (65,536; made 2 here, so that the
        # test sends 3 instead of the 65,537 a national catalog makes),
        monkeypatch.setattr(catalog_sync, "MAX_SYNC_ITEMS", 2)
        wanted = [[GONGAN, f"101001/{i:06d}", 1] for i in range(1, 4)]
        with pytest.raises(LinkError) as refused:
            await department.request("520102", "POST", CATALOG_RECORDS_PATH, pack([1, wanted]))
        assert refused.value.status == 413
        assert "upgrade to catalog format 2" in str(refused.value)
        # and a summary over more providers than format 1 can list.
        monkeypatch.setattr(catalog_state, "MAX_SYNC_ITEMS", 0)
        with pytest.raises(LinkError) as refused:
            await department.request("520102", "GET", CATALOG_SUMMARY_PATH)
        assert refused.value.status == 413
        assert "upgrade to catalog format 2" in str(refused.value)
    finally:
        await running.close()


@pytest.mark.asyncio
async def test_a_department_that_lost_its_store_recovers_its_versions_from_its_hub(
    tmp_path: Path,
) -> None:
    async with federation_with_catalogs(tmp_path) as running:
        record = await running.published(held_by="520102")
        await running.stop(GONGAN)
        for path in running.federation.directory.glob(f"{GONGAN}.sqlite*"):
            path.unlink()
        reborn = await running.start(GONGAN)
        assert await reborn.wait_for(GONGAN, record.code, timeout=WAIT) == record
        (newer,) = await reborn.publish([make_entry(GONGAN, name="重建后")])
        assert newer.version == 2  # not 1 again, which every hub would ignore as stale
        await running.catalogs["520000"].wait_for(GONGAN, record.code, version=2, timeout=WAIT)


@pytest.mark.asyncio
async def test_identical_lookups_in_flight_are_asked_once(tmp_path: Path) -> None:
    async with federation_with_catalogs(tmp_path) as running:
        record = await running.published()
        node = running.nodes[MINZHENG]
        asked: list[str] = []
        request = node.request

        async def counting(name: str, method: str, path: str, data: bytes | None = None) -> bytes:
            if path == CATALOG_LOOKUP_PATH:
                asked.append(name)
            return await request(name, method, path, data)

        node.request = counting  # type: ignore[method-assign,assignment]
        query = CatalogQuery(provider=GONGAN)
        first, second = await asyncio.gather(
            running.catalogs[MINZHENG].search_beyond(query),
            running.catalogs[MINZHENG].search_beyond(query),
        )
        assert first == second
        assert [r.code for r in first.records] == [record.code]
        assert asked == ["522301"]


@pytest.mark.asyncio
async def test_a_parent_of_format_1_is_asked_by_format_1(tmp_path: Path) -> None:
    running = Running(Federation(tmp_path, CROSS_CITY))
    try:
        running.service = Format1
        old_hub = await running.start("520102")
        running.service = CatalogService
        department = await running.start(GONGAN)
        (record,) = await department.publish([make_entry(GONGAN)])
        await old_hub.wait_for(GONGAN, record.code, timeout=WAIT)  # a new child's feed
        # A search beyond through a parent of format 1: what is held, marked incomplete.
        found = await department.search_beyond(CatalogQuery(scope="52"))
        assert not found.complete
        assert [r.code for r in found.records] == [record.code]
        # A lookup falls back to §18.7 and takes the key asked for, and nothing else.
        (other,) = sign_records(
            running.federation.nodes[MINZHENG].identity,
            [Publication(make_entry(MINZHENG, 3), 1)],
            1_795_000_000.0,
        )
        old_hub.state.apply(other)  # as if the old hub held the whole catalog
        assert await department.lookup(MINZHENG, other.code) == other
        assert department.state.cached == 1
    finally:
        await running.close()
