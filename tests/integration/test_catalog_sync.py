"""The catalog across a federation: publish in one city, see it in another; converge after a cut."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import msgpack
import pytest

from exchnode.aio import CatalogService, Node
from exchnode.audit import entry_from_event
from exchnode.catalog import ShareType, decode_record
from exchnode.core import TYPE_CATALOG, Level, NodeName, decode_signed, encode_signed, pack
from exchnode.core._events import ListSink
from exchnode.errors import UsageError
from exchnode.federation import Neighbour, Relation
from tests.integration.federation import CROSS_CITY, Federation
from tests.unit.catalog.test_entry import make_entry

GONGAN = "520102.gongan"
MINZHENG = "522301.minzheng"
WAIT = 20.0


class Running:
    """Nodes of a federation, each with a catalog service; any one can be stopped and restarted."""

    def __init__(self, federation: Federation) -> None:
        self.federation = federation
        self.nodes: dict[str, Node] = {}
        self.catalogs: dict[str, CatalogService] = {}
        self.events: dict[str, ListSink] = {}

    async def start(self, name: str, **overrides: object) -> CatalogService:
        catalog = CatalogService(refresh=30.0, events=self.events.setdefault(name, ListSink()))
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


@contextlib.asynccontextmanager
async def federation_with_catalogs(tmp_path: Path) -> AsyncIterator[Running]:
    running = Running(Federation(tmp_path, CROSS_CITY))
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


@pytest.mark.asyncio
async def test_an_entry_reaches_every_node_and_its_changes_follow(tmp_path: Path) -> None:
    async with federation_with_catalogs(tmp_path) as running:
        (record,) = await running.catalogs[GONGAN].publish([make_entry(GONGAN)])
        assert record.version == 1
        code = record.code
        for name in CROSS_CITY:
            held = await running.catalogs[name].wait_for(GONGAN, code, timeout=WAIT)
            assert held.data == record.data  # the provider's signed bytes, unaltered

        # Searching from the far county, by the fields the guide names.
        far = running.catalogs[MINZHENG]
        assert [r.code for r in far.search(provider=GONGAN)] == [code]
        assert [r.code for r in far.search(keyword="population")] == [code]
        assert [r.code for r in far.search(share_type=ShareType.CONDITIONAL)] == [code]
        assert [r.code for r in far.search(classification="1")] == [code]
        assert [r.code for r in far.search(level=Level.COUNTY)] == [code]
        assert far.search(share_type=ShareType.UNCONDITIONAL) == []

        # A new version replaces the old everywhere; a withdrawal travels as a tombstone.
        await running.catalogs[GONGAN].publish([make_entry(GONGAN, name="人口基本信息（新）")])
        for name in CROSS_CITY:
            held = await running.catalogs[name].wait_for(GONGAN, code, version=2, timeout=WAIT)
            assert held.entry is not None
            assert held.entry.name == "人口基本信息（新）"
        await running.catalogs[GONGAN].withdraw(code, "superseded by 101001/000002")
        for name in CROSS_CITY:
            held = await running.catalogs[name].wait_for(GONGAN, code, version=3, timeout=WAIT)
            assert held.withdrawn
            assert running.catalogs[name].search(provider=GONGAN) == []


@pytest.mark.asyncio
async def test_only_the_provider_publishes_its_entries(tmp_path: Path) -> None:
    async with federation_with_catalogs(tmp_path) as running:
        with pytest.raises(UsageError, match="one source per datum"):
            await running.catalogs[MINZHENG].publish([make_entry(GONGAN)])
        with pytest.raises(UsageError, match="no published entry"):
            await running.catalogs[MINZHENG].withdraw("101001/000001", "never published")


@pytest.mark.asyncio
async def test_catalogs_converge_after_a_partition_and_survive_restarts(tmp_path: Path) -> None:
    async with federation_with_catalogs(tmp_path) as running:
        first = make_entry(GONGAN, 1)
        (record,) = await running.catalogs[GONGAN].publish([first])
        await running.catalogs[MINZHENG].wait_for(GONGAN, record.code, timeout=WAIT)

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

        # The hub's catalog was kept in its store: a restart without neighbours still has it.
        alone = await running.start("522300", peers=[])
        assert alone.state.version(GONGAN, record.code) == 1
        await running.stop("522300")

        # Back with its links: both directions catch up without any new publication.
        await running.start("522300")
        await running.catalogs[MINZHENG].wait_for(GONGAN, record.code, version=2, timeout=WAIT)
        await running.catalogs[GONGAN].wait_for(MINZHENG, theirs.code, timeout=WAIT)
        summaries = {
            name: catalog.state.summary().top for name, catalog in running.catalogs.items()
        }
        assert len(set(summaries.values())) == 1, summaries


@pytest.mark.asyncio
async def test_a_neighbour_sees_only_what_its_place_allows(tmp_path: Path) -> None:
    async with federation_with_catalogs(tmp_path) as running:
        (record,) = await running.catalogs[GONGAN].publish([make_entry(GONGAN)])
        await running.catalogs[MINZHENG].wait_for(GONGAN, record.code, timeout=WAIT)
        # A county hub's summary for its parent lists only its own subtree's providers;
        # for its child, everything it holds.
        county = running.catalogs["522301"].state
        up = county.summary(to=Neighbour(NodeName.parse("522300"), Relation.PARENT))
        down = county.summary(to=Neighbour(NodeName.parse(MINZHENG), Relation.CHILD))
        assert GONGAN not in up.providers
        assert GONGAN in down.providers


def forged_newer(data: bytes) -> bytes:
    """What a hub would make of a record it relays: a "newer version", under the old seal."""
    body, seal = decode_signed(data, TYPE_CATALOG, "catalog", 1 << 20)
    fields = msgpack.unpackb(body)
    fields[5] += 1  # the version (SPEC §18.3)
    return encode_signed(TYPE_CATALOG, pack(fields), seal)


@pytest.mark.asyncio
async def test_a_hub_altering_an_entry_is_detected(tmp_path: Path) -> None:
    async with federation_with_catalogs(tmp_path) as running:
        (record,) = await running.catalogs[GONGAN].publish([make_entry(GONGAN)])
        await running.catalogs[MINZHENG].wait_for(GONGAN, record.code, timeout=WAIT)

        # The far county's hub holds an altered copy (as a compromised hub would) ...
        running.catalogs["522301"].state.apply(decode_record(forged_newer(record.data)))
        # ... and its department pulls from it (at start, as after any restart).
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
