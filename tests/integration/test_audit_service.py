"""The audit log on real nodes: sharing events stored with signed heads, tampering found."""

from __future__ import annotations

from pathlib import Path

import pytest

from exchnode.aio import AuditService, CatalogService, SharingService
from exchnode.audit import Category, Tamper, decode_record, verify_log
from exchnode.catalog import ShareType
from exchnode.errors import InconsistentLogError
from exchnode.sharing import RequestState
from exchnode.store import SqliteStore
from tests.integration.daemons import rewrite_audit_record
from tests.integration.federation import AuditedNodes
from tests.unit.catalog.test_entry import make_entry

NAMES = ["520102", "520102.gongan", "520102.minzheng"]
PROVIDER, REQUESTER = "520102.gongan", "520102.minzheng"
WAIT = 20.0


class World(AuditedNodes):
    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path, NAMES)
        self.catalogs: dict[str, CatalogService] = {}
        self.sharing: dict[str, SharingService] = {}

    async def start(self, name: str) -> None:
        audit = AuditService(flush=0.05, head_interval=0.2)
        catalog = CatalogService(events=audit)
        sharing = SharingService(catalog, masking_secret=b"k" * 32, events=audit)
        node = self.federation.node(name, services=[audit, catalog, sharing])
        await node.start()
        self.nodes[name], self.audit[name] = node, audit
        self.catalogs[name], self.sharing[name] = catalog, sharing


async def a_subscription(world: World) -> bytes:
    (record,) = await world.catalogs[PROVIDER].publish(
        [make_entry(PROVIDER, share_type=ShareType.UNCONDITIONAL, share_conditions="")],
        operator="王主任",
    )
    await world.catalogs[REQUESTER].wait_for(PROVIDER, record.code, timeout=WAIT)
    request_id = await world.sharing[REQUESTER].subscribe(
        PROVIDER, record.code, purpose="核验", scope="本区", items=["姓名"], operator="李"
    )
    await world.sharing[REQUESTER].wait_state(request_id, RequestState.GRANTED, timeout=WAIT)
    await world.sharing[PROVIDER].publish_records(record.code, [{"姓名": "张三"}], operator="王")
    return request_id


@pytest.mark.asyncio
async def test_sharing_events_are_logged_signed_and_verifiable(tmp_path: Path) -> None:
    world = World(tmp_path)
    try:
        for name in NAMES:
            await world.start(name)
        request_id = await a_subscription(world)
        provider = world.audit[PROVIDER]
        await provider.sync()
        report = await provider.verify()
        assert report.ok, report.to_json()

        store = world.nodes[PROVIDER].store
        records = [decode_record(data) for _, data in store.audit_records(0, 1000)]
        actions = {(r.entry.category, r.entry.action, r.entry.actor.name) for r in records}
        assert (Category.CATALOG, "catalog.publish", "王主任") in actions
        assert (Category.SUBSCRIPTION, "request", REQUESTER) in actions
        assert (Category.RECORD, "records.send", "王") in actions
        assert any(r.entry.subject.value == request_id for r in records)
        assert store.tree_heads()  # signed heads are stored after the records they cover
    finally:
        await world.close()


@pytest.mark.asyncio
async def test_a_record_changed_while_the_node_was_down_is_found(tmp_path: Path) -> None:
    world = World(tmp_path)
    try:
        for name in NAMES:
            await world.start(name)
        await a_subscription(world)
        await world.audit[PROVIDER].sync()
        await world.stop(PROVIDER)  # signs a last head over everything

        # Someone with the database file rewrites who published the entry (the triggers
        # must be dropped first: the store refuses an UPDATE of an audit record).
        path = world.store_path(PROVIDER)
        seq = rewrite_audit_record(path, "王主任".encode(), "李主任".encode())

        # Verification names the record; the node refuses to sign over the changed log.
        store = SqliteStore(path)
        try:
            report = verify_log(
                PROVIDER,
                store.audit_records(0, 1000),
                store.tree_heads(),
                world.federation.shared_directory,
            )
        finally:
            store.close()
        assert not report.ok
        assert [f.seq for f in report.of(Tamper.CHANGED)] == [seq]
        with pytest.raises(InconsistentLogError):
            await world.start(PROVIDER)
        # The failed start let go of everything: the store can be opened again at once.
        SqliteStore(path).close()
    finally:
        await world.close()
