"""The forwarder's removals: overlapping flushes count every removal; reads pass over what waits."""

from __future__ import annotations

import asyncio
import hashlib
import os
from types import SimpleNamespace

import pytest

from exchnode.aio import NodeLimits, NodeTimers
from exchnode.aio._context import NodeContext
from exchnode.aio._forwarder import Forwarder, _Settled
from exchnode.federation import BackoffPolicy, PeerState
from exchnode.store import AcceptItem, MemoryStore

HOP = "520100"


async def queued(count: int) -> tuple[NodeContext, list[AcceptItem], list[int], Forwarder]:
    """A context on a memory store with ``count`` entries queued for HOP, and its forwarder."""
    context = NodeContext("520102")
    await context.open(MemoryStore())
    now = context.now_ms()
    items = [
        AcceptItem(
            sender="520102.gongan",
            message_id=n.to_bytes(16, "big"),
            digest=hashlib.sha256(bytes([n])).digest(),
            data=b"sealed",
            expires_ms=now + 60_000,
            forward={HOP: ("520100.fagai",)},
        )
        for n in range(count)
    ]
    await context.run(context.store.accept, items, now)
    seqs = [e.seq for e in context.store.pending(HOP, now, 10, 1 << 20)]

    async def report(*_: object) -> None:
        raise AssertionError("nothing is refused here")

    forwarder = Forwarder(
        context,
        SimpleNamespace(neighbour=HOP),  # type: ignore[arg-type]
        PeerState(),
        limits=NodeLimits(),
        timers=NodeTimers(),
        backoff=BackoffPolicy(),
        random=os.urandom,
        report=report,
    )
    return context, items, seqs, forwarder


@pytest.mark.asyncio
async def test_overlapping_flushes_count_every_removal() -> None:
    context, items, seqs, forwarder = await queued(3)
    now = context.now_ms()
    forwarder._removing.append(_Settled(now, seqs[:1], [items[0].message_id], []))
    first = asyncio.ensure_future(forwarder.flush_removals())
    await asyncio.sleep(0)  # the first flush is in the store thread now
    ids = [item.message_id for item in items[1:]]
    forwarder._removing.append(_Settled(now, seqs[1:], ids, []))
    await asyncio.gather(first, forwarder.flush_removals())
    assert context.counters["forwarded"] == 3
    assert context.store.pending(HOP, now, 10, 1 << 20) == []
    await context.close()


@pytest.mark.asyncio
async def test_a_read_passes_over_entries_settled_out_of_order() -> None:
    # Cut-through settled the 2nd and 4th entries before the 1st and 3rd were sent (their
    # removal waits): a read of the queue gives the others, however the page falls.
    context, _, seqs, forwarder = await queued(5)
    now = context.now_ms()
    settled = frozenset({seqs[1], seqs[3]})
    assert [e.seq for e in forwarder._read(now, 10, 1 << 20, 0, settled)] == [
        seqs[0],
        seqs[2],
        seqs[4],
    ]
    # A page wholly settled is passed over, not taken for the end of the queue.
    assert [e.seq for e in forwarder._read(now, 1, 1 << 20, seqs[0], settled)] == [seqs[2]]
    assert forwarder._read(now, 10, 1 << 20, seqs[4], settled) == []
    await context.close()
