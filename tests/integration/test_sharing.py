"""Subscriptions across cities: the sharing rules carried out by real nodes on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from exchnode.catalog import ShareType
from exchnode.catalog_service import CatalogService
from exchnode.errors import UsageError
from exchnode.events import ListSink
from exchnode.masking import Keep, MaskSet
from exchnode.node import Node
from exchnode.sharing import SharingService
from exchnode.subscriptions import RequestState
from exchnode.workdays import WorkCalendar
from tests.integration.federation import CROSS_CITY, Federation
from tests.unit.test_catalog import make_entry

REQUESTER = "520102.gongan"  # a county department in one city
PROVIDER = "522301.minzheng"  # a county department in another
AUTHORITY = "522301"  # the hub of the provider's division
WAIT = 20.0
S = RequestState


@dataclass
class Clock:
    """One clock for the whole federation, so deadlines can be reached without waiting days."""

    offset: float = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class Sharing:
    nodes: dict[str, Node] = field(default_factory=dict)
    catalogs: dict[str, CatalogService] = field(default_factory=dict)
    sharing: dict[str, SharingService] = field(default_factory=dict)
    events: dict[str, ListSink] = field(default_factory=dict)
    clock: Clock = field(default_factory=Clock)


@contextlib.asynccontextmanager
async def federation(tmp_path: Path, *, answer_days: int = 10) -> AsyncIterator[Sharing]:
    federation = Federation(tmp_path, CROSS_CITY)
    world = Sharing()
    calendar = WorkCalendar()
    try:
        for name in CROSS_CITY:
            catalog = CatalogService(refresh=30.0)
            events = ListSink()
            sharing = SharingService(
                catalog,
                masking_secret=name.encode().ljust(32, b"k"),
                calendar=calendar,
                answer_days=answer_days,
                events=events,
            )
            node = federation.node(name, services=[catalog, sharing], clock=world.clock)
            await node.start()
            world.nodes[name] = node
            world.catalogs[name], world.sharing[name], world.events[name] = catalog, sharing, events
        yield world
    finally:
        for node in world.nodes.values():
            await node.close()


async def publish(
    world: Sharing, share_type: ShareType, sequence: int = 1, **fields: object
) -> str:
    entry = make_entry(PROVIDER, sequence, share_type=share_type, **fields)
    (record,) = await world.catalogs[PROVIDER].publish([entry])
    await world.catalogs[REQUESTER].wait_for(PROVIDER, record.code, timeout=WAIT)
    return record.code


async def request(world: Sharing, code: str, items: list[str]) -> bytes:
    return await world.sharing[REQUESTER].subscribe(
        PROVIDER,
        code,
        purpose="核验户籍 household checks for benefits",
        scope="本县低保申请人 applicants in this county",
        items=items,
        operator="clerk-li",
    )


@pytest.mark.asyncio
async def test_conditional_request_approved_with_a_subset_and_a_mask(tmp_path: Path) -> None:
    async with federation(tmp_path) as world:
        code = await publish(world, ShareType.CONDITIONAL)
        request_id = await request(world, code, ["身份证号", "姓名", "出生日期"])
        provider = world.sharing[PROVIDER]
        await provider.wait_state(request_id, S.PENDING, timeout=WAIT)
        assert [r.request_id for r in provider.requests(state=S.PENDING)] == [request_id]
        assert await world.sharing[REQUESTER].wait_state(request_id, S.PENDING, timeout=WAIT)

        masks = MaskSet.of({"身份证号": Keep(6, 4)})
        grant = await provider.approve(
            request_id, operator="director-wang", items=["身份证号", "姓名"], masks=masks
        )
        assert set(grant.items) == {"姓名", "身份证号"}
        await world.sharing[REQUESTER].wait_state(request_id, S.GRANTED, timeout=WAIT)
        (held,) = world.sharing[REQUESTER].held()
        assert set(held.items) == {"身份证号", "姓名"}
        assert held.masks == masks
        assert held.provider == PROVIDER

        # Both sides recorded every step, with who did it; the hubs on the way saw nothing.
        provider_actions = [(e.action, e.actor) for e in world.events[PROVIDER].events]
        assert ("request", REQUESTER) in provider_actions
        assert ("grant", "director-wang") in provider_actions
        for hub in ("520102", "520100", "520000", "522300"):
            assert world.events[hub].events == []


@pytest.mark.asyncio
async def test_unconditional_is_granted_and_not_shared_refused_with_its_legal_basis(
    tmp_path: Path,
) -> None:
    async with federation(tmp_path) as world:
        open_code = await publish(world, ShareType.UNCONDITIONAL, 1, share_conditions="")
        closed_code = await publish(
            world,
            ShareType.NOT_SHARED,
            2,
            share_conditions="《中华人民共和国居民身份证法》第十九条",
            share_methods=frozenset(),
        )
        granted = await request(world, open_code, ["姓名"])
        refused = await request(world, closed_code, ["姓名"])
        requester = world.sharing[REQUESTER]
        await requester.wait_state(granted, S.GRANTED, timeout=WAIT)
        await requester.wait_state(refused, S.NOT_SHARED, timeout=WAIT)
        assert "居民身份证法" in requester.reason(refused)
        with pytest.raises(UsageError, match="cannot escalate"):
            await requester.escalate(refused, operator="clerk-li", reason="we need it")


@pytest.mark.asyncio
async def test_refusal_escalated_to_the_authority_and_re_reviewed(tmp_path: Path) -> None:
    async with federation(tmp_path) as world:
        code = await publish(world, ShareType.CONDITIONAL)
        request_id = await request(world, code, ["姓名"])
        provider, requester = world.sharing[PROVIDER], world.sharing[REQUESTER]
        await provider.wait_state(request_id, S.PENDING, timeout=WAIT)
        await provider.refuse(
            request_id, operator="director-wang", reason="用途不明 purpose unclear"
        )
        await requester.wait_state(request_id, S.REFUSED, timeout=WAIT)
        assert "purpose unclear" in requester.reason(request_id)

        await requester.escalate(request_id, operator="clerk-li", reason="用途见附件")
        authority = world.sharing[AUTHORITY]
        await provider.wait_state(request_id, S.ESCALATED, timeout=WAIT)
        await eventually(lambda: bool(authority.cases()))
        assert [c.request_id for c in authority.cases()] == [request_id]
        assert any(e.action == "escalate" for e in world.events[AUTHORITY].events)

        await authority.re_review(request_id, operator="auditor-zhao", reason="请重新审核")
        await provider.wait_state(request_id, S.PENDING, timeout=WAIT)
        await requester.wait_state(request_id, S.PENDING, timeout=WAIT)
        await provider.approve(request_id, operator="director-wang")
        await requester.wait_state(request_id, S.GRANTED, timeout=WAIT)


@pytest.mark.asyncio
async def test_unanswered_request_expires_after_the_working_day_deadline(tmp_path: Path) -> None:
    async with federation(tmp_path, answer_days=2) as world:
        code = await publish(world, ShareType.CONDITIONAL)
        request_id = await request(world, code, ["姓名"])
        provider, requester = world.sharing[PROVIDER], world.sharing[REQUESTER]
        await provider.wait_state(request_id, S.PENDING, timeout=WAIT)
        deadline = provider._provider_book().deadline(request_id)
        assert deadline is not None
        assert deadline - time.time() * 1000 >= 2 * 86_400_000  # two whole working days at least
        world.clock.offset = deadline / 1000 - time.time() + 1
        await provider.wait_state(request_id, S.EXPIRED, timeout=WAIT)
        await requester.wait_state(request_id, S.EXPIRED, timeout=WAIT)
        with pytest.raises(UsageError):
            await provider.approve(request_id, operator="director-wang")


@pytest.mark.asyncio
async def test_revocation_reaches_the_subscriber(tmp_path: Path) -> None:
    async with federation(tmp_path) as world:
        code = await publish(world, ShareType.UNCONDITIONAL, share_conditions="")
        request_id = await request(world, code, ["姓名"])
        requester = world.sharing[REQUESTER]
        await requester.wait_state(request_id, S.GRANTED, timeout=WAIT)
        await world.sharing[PROVIDER].revoke(request_id, operator="director-wang", reason="到期")
        await requester.wait_state(request_id, S.REVOKED, timeout=WAIT)
        assert requester.held() == []


async def eventually(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout)
