"""Nodes on loopback: the cross-city path, receipts, refusals, back-pressure, expiry."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from exchnode.aio import Delivery, LinkClient, Message, Node, NodeLimits, NodeTimers
from exchnode.errors import UsageError
from exchnode.federation import TransferRequest, TransferResponse
from tests.integration.federation import CROSS_CITY, Federation, started

GONGAN = "520102.gongan"
MINZHENG = "522301.minzheng"


def running(
    federation: Federation, names: list[str], **overrides: dict[str, object]
) -> contextlib.AbstractAsyncContextManager[dict[str, Node]]:
    return started({name: federation.node(name, **overrides.get(name, {})) for name in names})


async def collect(node: Node, count: int, *, ack: bool = True) -> list[Delivery]:
    got: list[Delivery] = []
    async for delivery in node.deliveries():
        got.append(delivery)
        if ack:
            await delivery.ack()
        if len(got) == count:
            break
    return got


async def received_all(node: Node, payloads: list[bytes]) -> None:
    """Every payload reaches ``node`` within 30 s, each once."""
    got = await asyncio.wait_for(collect(node, len(payloads)), 30)
    assert sorted(d.payload for d in got) == sorted(payloads)


@pytest.mark.asyncio
async def test_cross_city_both_ways(tmp_path: Path) -> None:
    federation = Federation(tmp_path)
    async with running(federation, CROSS_CITY) as nodes:
        sent = await nodes[GONGAN].send([MINZHENG], b"hello minzheng", receipt=True)
        (delivery,) = await asyncio.wait_for(collect(nodes[MINZHENG], 1), 20)
        assert delivery.sender == GONGAN
        assert delivery.payload == b"hello minzheng"
        assert delivery.message_id == sent.message_id
        status = await nodes[GONGAN].wait_status(sent.message_id, [MINZHENG], timeout=20)
        assert status.delivered_to == {MINZHENG}
        assert status.receipts[0].confirms(sent.digest)

        back = await nodes[MINZHENG].send([GONGAN], b"and back")
        (reply,) = await asyncio.wait_for(collect(nodes[GONGAN], 1), 20)
        assert (reply.sender, reply.payload) == (MINZHENG, b"and back")
        assert reply.message_id == back.message_id

        # The hubs on the way held the envelope, never its payload: nothing reached their apps.
        for hub in ("520102", "520100", "520000", "522300", "522301"):
            stats = await nodes[hub].stats()
            assert stats.counters["accepted"] >= 2
            assert stats.inbox.count == 0


@pytest.mark.asyncio
async def test_many_messages_exactly_once_with_multi_recipient_split(tmp_path: Path) -> None:
    names = [*CROSS_CITY, "520102.minzheng"]
    federation = Federation(tmp_path, names)
    async with running(federation, names) as nodes:
        sender = nodes[MINZHENG]
        messages = [f"m{i}".encode() for i in range(300)]
        for start in range(0, len(messages), 50):
            for payload in messages[start : start + 50]:
                await sender.send([GONGAN, "520102.minzheng"], payload)
        first = await asyncio.wait_for(collect(nodes[GONGAN], 300), 30)
        second = await asyncio.wait_for(collect(nodes["520102.minzheng"], 300), 30)
        assert sorted(d.payload for d in first) == sorted(messages)
        assert sorted(d.payload for d in second) == sorted(messages)
        # One copy per link: the province carried each envelope once, not once per recipient.
        province = await nodes["520000"].stats()
        assert province.counters["accepted"] == 300
        assert province.handed_over["520100"].count == 300
        # The county hub is where the paths part: one copy down each branch.
        county = (await nodes["520102"].stats()).handed_over
        assert county[GONGAN].count == county["520102.minzheng"].count == 300
        assert county[GONGAN].bytes == province.handed_over["520100"].bytes


@pytest.mark.asyncio
async def test_unknown_recipient_is_a_clear_error(tmp_path: Path) -> None:
    federation = Federation(tmp_path, ["520100", "520102", "520102.gongan"])
    async with running(federation, ["520102", "520102.gongan"]) as nodes:
        with pytest.raises(UsageError, match=r"522301\.nobody"):
            await nodes[GONGAN].send(["522301.nobody"], b"x")


@pytest.mark.asyncio
async def test_unacknowledged_delivery_is_offered_again_after_restart(tmp_path: Path) -> None:
    federation = Federation(tmp_path, ["520102", "520102.gongan", "520102.minzheng"])
    names = ["520102", "520102.gongan", "520102.minzheng"]
    async with running(federation, names) as nodes:
        await nodes[GONGAN].send(["520102.minzheng"], b"keep me")
        (unacked,) = await asyncio.wait_for(collect(nodes["520102.minzheng"], 1, ack=False), 20)
    async with running(federation, ["520102.minzheng"]) as nodes:
        (again,) = await asyncio.wait_for(collect(nodes["520102.minzheng"], 1), 20)
        assert again.message_id == unacked.message_id
    async with running(federation, ["520102.minzheng"]) as nodes:
        stats = await nodes["520102.minzheng"].stats()
        assert stats.inbox.count == 0


@pytest.mark.asyncio
async def test_expired_in_queue_yields_a_report_to_the_sender(tmp_path: Path) -> None:
    names = ["520100", "520102", "520102.gongan", "520100.fagai"]
    federation = Federation(tmp_path, names)
    fast = {"timers": NodeTimers(expiry_interval=0.1)}
    # 520100.fagai never runs: the city hub holds the envelope until it expires.
    async with running(federation, ["520100", "520102", GONGAN], **{"520100": fast}) as nodes:
        sent = await nodes[GONGAN].send(["520100.fagai"], b"too late", ttl=1.0)
        status = await nodes[GONGAN].wait_status(sent.message_id, timeout=20)
        (report,) = status.reports
        assert report.code == "expired-in-queue"
        assert report.reporter == "520100"
        assert report.message_id == sent.message_id
        assert report.digest == sent.digest
        assert report.targets == ("520100.fagai",)


@pytest.mark.asyncio
async def test_full_node_pushes_back_without_loss(tmp_path: Path) -> None:
    names = ["520102", "520102.gongan", "520102.minzheng"]
    federation = Federation(tmp_path, names)
    small = {"limits": NodeLimits(max_queued_items=20, transfer_items=8)}
    async with running(federation, names, **{"520102": small, "520102.minzheng": small}) as nodes:
        payloads = [f"p{i}".encode() for i in range(200)]
        for payload in payloads:
            await nodes[GONGAN].send(["520102.minzheng"], payload)
        # The consumer has not started: queues fill up until the hub is pushed back.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while (await nodes["520102"].stats()).counters["deferred"] == 0:
            assert loop.time() < deadline, "the full department never pushed the hub back"
            await asyncio.sleep(0.05)
        hub = await nodes["520102"].stats()
        dept = await nodes["520102.minzheng"].stats()
        assert dept.inbox.count <= 20
        assert hub.queued.count <= 20
        await received_all(nodes["520102.minzheng"], payloads)


@pytest.mark.asyncio
async def test_large_transfers_of_64_kib_envelopes(tmp_path: Path) -> None:
    names = ["520102", GONGAN, "520102.minzheng"]
    federation = Federation(tmp_path, names)
    async with running(federation, names) as nodes:
        payloads = [bytes([i]) * 65536 for i in range(40)]  # transfers well over 1 MiB
        await nodes[GONGAN].send_many(
            [Message(recipients=["520102.minzheng"], payload=p) for p in payloads]
        )
        await received_all(nodes["520102.minzheng"], payloads)


@pytest.mark.asyncio
async def test_a_failing_loop_is_logged_and_restarted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = ["520102", GONGAN, "520102.minzheng"]
    federation = Federation(tmp_path, names)
    async with running(federation, names) as nodes:
        real_transfer = LinkClient.transfer
        failures = []

        async def broken_once(self: LinkClient, request: TransferRequest) -> TransferResponse:
            # Only the hub links to 520102.minzheng: its forwarder's loop meets the bug, after
            # taking the entry (from memory: it had read its queue to the end), not the store.
            if self.neighbour == "520102.minzheng" and not failures:
                failures.append(1)
                raise RuntimeError("a bug in the forwarding path")
            return await real_transfer(self, request)

        monkeypatch.setattr(LinkClient, "transfer", broken_once)
        await nodes[GONGAN].send(["520102.minzheng"], b"still delivered")
        (delivery,) = await asyncio.wait_for(collect(nodes["520102.minzheng"], 1), 20)
        assert delivery.payload == b"still delivered"
        assert failures == [1]
