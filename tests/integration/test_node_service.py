"""The service seam: a service takes its message kinds, serves endpoints, keeps state."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

import pytest
from aiohttp import web

from exchnode.aio import Message, Node, ServiceMessage
from exchnode.aio._transport import Handler
from exchnode.errors import MalformedError, UsageError
from tests.integration.federation import Federation

NAMES = ["520000", "520100", "520102", "520102.gongan", "520100.fagai"]
PING_PATH = "/exchnode/v1/test/ping"


class Counter:
    """Counts the ``tally`` messages it takes, in the node's store; refuses malformed ones."""

    kinds = frozenset({"tally.add"})

    def __init__(self, *, fail_first: int = 0) -> None:
        self.node: Node | None = None
        self.taken: list[ServiceMessage] = []
        self.pings: list[str] = []
        self.fail_first = fail_first
        self.closed = False

    def routes(self) -> Mapping[tuple[str, str], Handler]:
        async def ping(neighbour: str, request: web.Request) -> web.Response:
            self.pings.append(neighbour)
            return web.Response(body=b"pong")

        return {("GET", PING_PATH): ping}

    async def start(self, node: Node) -> None:
        self.node = node

    async def take(self, message: ServiceMessage) -> None:
        assert self.node is not None
        if message.payload == b"garbage":
            raise MalformedError("tally", "not a number")
        if self.fail_first:
            self.fail_first -= 1
            raise RuntimeError("disk full (simulated)")
        total = int(await self.node.get_meta("tally") or b"0") + int(message.payload)
        await self.node.set_meta("tally", str(total).encode())
        self.taken.append(message)

    async def close(self) -> None:
        self.closed = True


async def wait_for(predicate, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
    async def loop() -> None:
        while not predicate():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(loop(), timeout)


@pytest.mark.asyncio
async def test_service_takes_its_kinds_and_the_application_the_rest(tmp_path: Path) -> None:
    federation = Federation(tmp_path, NAMES)
    counter = Counter(fail_first=1)
    nodes = [federation.node(n) for n in NAMES if n != "520100.fagai"]
    fagai = federation.node(
        "520100.fagai", services=[counter], timers=federation_timers(inbox_rescan=0.2)
    )
    for node in nodes:
        await node.start()
    try:
        async with fagai:
            gongan = nodes[-1]
            await gongan.send_many(
                [
                    Message(recipients=["520100.fagai"], payload=b"5", kind="tally.add"),
                    Message(recipients=["520100.fagai"], payload=b"garbage", kind="tally.add"),
                    Message(recipients=["520100.fagai"], payload=b"for the application"),
                    Message(recipients=["520100.fagai"], payload=b"7", kind="tally.add"),
                ]
            )
            async for delivery in fagai.deliveries():
                assert delivery.payload == b"for the application"
                await delivery.ack()
                break
            # One failure is retried on the next scan; the malformed one is dropped for good.
            await wait_for(lambda: len(counter.taken) == 2)
            assert await fagai.get_meta("tally") == b"12"
            assert {m.sender for m in counter.taken} == {"520102.gongan"}
            for _ in range(100):  # consumed entries leave the inbox once their commit is done
                if (await fagai.stats()).inbox.count == 0:
                    break
                await asyncio.sleep(0.05)
            assert (await fagai.stats()).inbox.count == 0

            # The endpoint is served to neighbours, authenticated by name.
            assert await nodes[1].request("520100.fagai", "GET", PING_PATH) == b"pong"
            assert counter.pings == ["520100"]
            with pytest.raises(UsageError):
                await nodes[1].request("520102.gongan", "GET", PING_PATH)
        assert counter.closed
    finally:
        for node in reversed(nodes):
            await node.close()


def federation_timers(**values: float):  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from exchnode.aio import NodeTimers

    return replace(NodeTimers(), **values)


def test_two_services_cannot_claim_one_kind(tmp_path: Path) -> None:
    federation = Federation(tmp_path, NAMES)
    with pytest.raises(UsageError, match=r"tally\.add"):
        federation.node("520100.fagai", services=[Counter(), Counter()])


def test_a_service_cannot_claim_a_node_kind(tmp_path: Path) -> None:
    federation = Federation(tmp_path, NAMES)
    greedy = Counter()
    greedy.kinds = frozenset({"receipt"})  # type: ignore[misc]
    with pytest.raises(UsageError, match="receipt"):
        federation.node("520100.fagai", services=[greedy])


@pytest.mark.asyncio
async def test_services_close_in_reverse_order(tmp_path: Path) -> None:
    # The first listed (the audit log, in the daemon) must outlive those that emit into it.
    closed: list[str] = []

    class Named(Counter):
        def __init__(self, name: str, kind: str) -> None:
            super().__init__()
            self.name = name
            self.kinds = frozenset({kind})  # type: ignore[misc]

        def routes(self) -> Mapping[tuple[str, str], Handler]:
            return {}

        async def close(self) -> None:
            closed.append(self.name)

    federation = Federation(tmp_path, NAMES)
    node = federation.node(
        "520100.fagai", services=[Named("audit", "a.x"), Named("catalog", "b.x")]
    )
    async with node:
        pass
    assert closed == ["catalog", "audit"]
