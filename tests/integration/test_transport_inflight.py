"""The link server's bound on request bytes in flight, on loopback (issue 12, item 4).

A request's declared size is reserved per neighbour and in total before a
byte of its body is read; one that does not fit is answered 429 unread, and
the client raises ``LinkBusy`` (back-pressure, not a link failure); a request
larger than a neighbour may ever have in flight is 413.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from exchnode.aio import LinkClient, Message, NodeLimits, make_context
from exchnode.aio._inflight import InFlight
from exchnode.aio._transport import LinkBusy, LinkError, LinkServer
from exchnode.federation import Credit, Item, ItemResult, Status, TransferRequest, TransferResponse
from tests.integration.federation import Federation as Nodes
from tests.integration.federation import started
from tests.integration.pki_files import Federation
from tests.integration.test_node import collect

KIB = 1024
MIB = 1024 * KIB
NEIGHBOUR = "522301.minzheng"


def request(size: int, tag: int) -> TransferRequest:
    return TransferRequest(NEIGHBOUR, bytes([tag]) * 16, (Item(b"x" * size, ("520100.fagai",)),))


class Holding:
    """A custodian that takes everything, but only once the test lets it."""

    def __init__(self) -> None:
        self.calls: list[bytes] = []
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, neighbour: str, transfer: TransferRequest) -> TransferResponse:
        self.calls.append(transfer.transfer_id)
        self.arrived.set()
        await self.release.wait()
        results = tuple(ItemResult(Status.TAKEN) for _ in transfer.items)
        return TransferResponse(transfer.transfer_id, results, Credit(1, 1))


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_a_transfer_beyond_the_bytes_in_flight_is_pushed_back_unread(
    tmp_path: Path,
) -> None:
    federation = Federation(tmp_path)
    custodian = Holding()
    budget = InFlight(per_neighbour=256 * KIB, total=256 * KIB)
    server = LinkServer(
        custodian,
        federation.authenticate,
        make_context(federation.files(federation.hub), server=True),
        max_transfer_bytes=1024 * KIB,
        in_flight=budget,
    )
    _, port = await server.start()
    context = make_context(federation.files(federation.department), server=False)
    clients = [
        LinkClient("520100", f"https://127.0.0.1:{port}", context, federation.authenticate)
        for _ in range(3)
    ]
    try:
        first = asyncio.create_task(clients[0].transfer(request(200 * KIB, 1)))
        await asyncio.wait_for(custodian.arrived.wait(), 10)
        assert budget.held(NEIGHBOUR) > 200 * KIB  # the first one's body, reserved
        # A second one does not fit beside it: answered at once, its body never read.
        with pytest.raises(LinkBusy) as busy:
            await clients[1].transfer(request(200 * KIB, 2))
        assert busy.value.status == 429
        assert busy.value.retry_after == 1.0
        assert "too many bytes in flight" in str(busy.value)
        assert custodian.calls == [bytes([1]) * 16]
        # One larger than a neighbour may ever have in flight is too large, not busy.
        with pytest.raises(LinkError) as large:
            await clients[2].transfer(request(300 * KIB, 3))
        assert large.value.status == 413
        assert not isinstance(large.value, LinkBusy)
        # Once the first is answered its bytes are back, and the second goes through.
        custodian.release.set()
        assert (await first).results == (ItemResult(Status.TAKEN),)
        assert budget.held() == 0
        response = await clients[1].transfer(request(200 * KIB, 2))
        assert response.results == (ItemResult(Status.TAKEN),)
        assert budget.held() == 0
        assert budget.peak <= 256 * KIB
    finally:
        for client in clients:
            await client.close()
        await server.close()


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_forwarders_pushed_back_wait_and_deliver_without_a_link_failure(
    tmp_path: Path,
) -> None:
    """Two departments' forwarders fill a hub's bytes in flight at once: what is pushed back
    (429) waits and is delivered, and no link is taken for down."""
    hub, senders, receiver = "520102", ["520102.gongan", "520102.minzheng"], "520102.jiaoyu"
    federation = Nodes(tmp_path / "fed", [hub, *senders, receiver])
    tight = NodeLimits(
        transfer_bytes=MIB,
        max_transfer_bytes=MIB,
        max_inflight_bytes_per_neighbour=MIB,
        max_inflight_bytes=MIB,
    )
    small = NodeLimits(transfer_bytes=MIB, max_transfer_bytes=MIB)
    nodes = {name: federation.node(name, limits=small) for name in (*senders, receiver)}
    nodes[hub] = federation.node(hub, limits=tight)
    count = 30
    async with started(nodes):
        for sender in senders:
            await nodes[sender].send_many(
                [
                    Message(recipients=[receiver], payload=f"{sender} {i} ".encode() * 30_000)
                    for i in range(count)
                ]
            )
        got = await asyncio.wait_for(collect(nodes[receiver], 2 * count), 60)
        assert len({d.message_id for d in got}) == 2 * count
        assert (await nodes[hub].stats()).counters["pushed_back"] > 0
        for sender in senders:
            stats = await nodes[sender].stats()
            assert stats.counters["link_failures"] == 0
            assert stats.peers[hub].failures == 0
