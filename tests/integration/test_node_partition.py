"""A partition between a city hub and the province heals with full catch-up, in both directions."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
from pathlib import Path

import pytest

from exchnode.aio import Message, Node
from exchnode.federation import BackoffPolicy
from tests.integration.federation import CROSS_CITY, Federation, started
from tests.integration.tcp_proxy import Proxy

CITY, PROVINCE = "520100", "520000"
GONGAN, MINZHENG = "520102.gongan", "522301.minzheng"


async def drain(node: Node, count: int, seen: list[bytes]) -> None:
    async for delivery in node.deliveries():
        seen.append(delivery.payload)
        await delivery.ack()
        if len(seen) == count:
            return


@pytest.mark.asyncio
async def test_partition_between_city_and_province_heals_with_full_catch_up(
    tmp_path: Path,
) -> None:
    federation = Federation(tmp_path)
    to_province = Proxy(federation.ports[PROVINCE])
    to_city = Proxy(federation.ports[CITY])
    await to_province.start()
    await to_city.start()

    def through(name: str, proxy: Proxy, target: str) -> list[object]:
        return [
            dataclasses.replace(peer, url=f"https://127.0.0.1:{proxy.port}")
            if peer.name == target
            else peer
            for peer in federation.peers(name)
        ]

    backoff = BackoffPolicy(base_ms=100, cap_ms=2000)
    overrides = {
        CITY: {"peers": through(CITY, to_province, PROVINCE)},
        PROVINCE: {"peers": through(PROVINCE, to_city, CITY)},
    }
    nodes = {
        name: federation.node(name, backoff=backoff, **overrides.get(name, {}))
        for name in CROSS_CITY
    }
    east: list[bytes] = []
    west: list[bytes] = []
    async with started(nodes):
        to_east = asyncio.create_task(drain(nodes[MINZHENG], 400, east))
        to_west = asyncio.create_task(drain(nodes[GONGAN], 300, west))

        async def send(sender: str, recipient: str, tag: str, count: int) -> None:
            await nodes[sender].send_many(
                [
                    Message(recipients=[recipient], payload=f"{tag}{i}".encode())
                    for i in range(count)
                ]
            )

        await send(GONGAN, MINZHENG, "before-", 100)
        for _ in range(200):
            if len(east) == 100:
                break
            await asyncio.sleep(0.05)
        assert len(east) == 100

        to_province.cut()
        to_city.cut()
        await send(GONGAN, MINZHENG, "during-", 300)
        await send(MINZHENG, GONGAN, "during-", 300)
        # Several failed attempts each way: both sides back off (waited for, not slept).
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while True:
            city = await nodes[CITY].stats()
            province = await nodes[PROVINCE].stats()
            if city.peers[PROVINCE].failures >= 2 and province.peers[CITY].failures >= 2:
                break
            assert loop.time() < deadline, "the cut links were never seen to fail twice"
            await asyncio.sleep(0.1)
        assert len(east) == 100
        assert west == []
        city = await nodes[CITY].stats()
        province = await nodes[PROVINCE].stats()
        assert city.outbound[PROVINCE].count == 300
        assert province.outbound[CITY].count == 300
        assert city.peers[PROVINCE].failures >= 1

        to_province.heal()
        to_city.heal()
        # No new traffic: the queues drain on the retries alone.
        await asyncio.wait_for(asyncio.gather(to_east, to_west), 30)
        city = await nodes[CITY].stats()
        assert city.peers[PROVINCE].failures == 0
        assert PROVINCE not in city.outbound
    await to_province.close()
    await to_city.close()

    assert sorted(east) == sorted(
        [f"before-{i}".encode() for i in range(100)] + [f"during-{i}".encode() for i in range(300)]
    )
    assert sorted(west) == sorted(f"during-{i}".encode() for i in range(300))


def longest_backoff(n: int) -> bytes:
    """Randomness that draws every backoff at its ceiling (8-byte draws), else real."""
    return b"\xff" * n if n == 8 else os.urandom(n)


@pytest.mark.asyncio
async def test_a_restarted_neighbour_is_served_at_once_not_after_the_backoff(
    tmp_path: Path,
) -> None:
    tongji = "520000.tongji"
    names = [PROVINCE, CITY, "520102", GONGAN, tongji]
    federation = Federation(tmp_path, names)
    slow = BackoffPolicy(base_ms=60_000, cap_ms=60_000)  # a failed attempt waits a minute
    got: list[bytes] = []
    async with contextlib.AsyncExitStack() as stack:
        nodes = {}
        for name in (CITY, "520102", GONGAN):
            nodes[name] = federation.node(name, backoff=slow, random=longest_backoff)
            await stack.enter_async_context(nodes[name])
        await nodes[GONGAN].send([tongji], b"waiting for the province")
        for _ in range(100):  # the city tries the province, fails, and backs off a minute
            stats = await nodes[CITY].stats()
            if stats.peers[PROVINCE].failures:
                break
            await asyncio.sleep(0.05)
        assert stats.peers[PROVINCE].next_attempt_ms > time.time() * 1000 + 30_000
        async with federation.node(PROVINCE) as province, federation.node(tongji) as receiver:
            del province
            task = asyncio.create_task(drain(receiver, 1, got))
            await asyncio.wait_for(task, 10)  # far sooner than the minute of backoff
    assert got == [b"waiting for the province"]
