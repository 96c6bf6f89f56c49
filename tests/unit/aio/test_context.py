"""The node's store thread, and the hand-over of what the intake just committed (FreshEntries)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from exchnode.aio._context import FreshEntries, NodeContext
from exchnode.aio._cut_through import EarlyBatch
from exchnode.aio._intake import Intake
from exchnode.errors import UsageError
from exchnode.store import (
    AcceptItem,
    AcceptOutcome,
    AcceptStatus,
    InboundEntry,
    MemoryStore,
    OutboundEntry,
    SqliteStore,
)

NOW = 1_795_000_000_000


def entry(seq: int, size: int = 10, expires_ms: int = NOW + 60_000) -> OutboundEntry:
    return OutboundEntry(
        seq=seq,
        sender="520102.gongan",
        message_id=seq.to_bytes(16, "big"),
        digest=bytes(32),
        targets=("520100.fagai",),
        expires_ms=expires_ms,
        data=bytes(size),
        next_hop="520100",
    )


@pytest.mark.asyncio
async def test_store_calls_run_in_one_thread_in_order_and_raise_to_their_caller(
    tmp_path: Path,
) -> None:
    context = NodeContext("520102")
    with pytest.raises(UsageError):
        await context.run(len, "")
    store = await context.open(tmp_path / "s.db")
    assert context.running
    assert context.sole_writer  # a SqliteStore: the node is the only one to write it
    threads: list[str] = []
    order: list[int] = []

    def work(i: int) -> int:
        threads.append(threading.current_thread().name)
        order.append(i)
        return i * 2

    results = await asyncio.gather(*(context.run(work, i) for i in range(20)))
    assert results == [i * 2 for i in range(20)]
    assert order == list(range(20))
    assert set(threads) == {"store-520102"}
    assert threading.current_thread().name not in threads

    def broken() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        await context.run(broken)
    assert await context.run(work, 21) == 42  # the thread carries on
    await context.close()
    assert not context.running
    assert store._conn is None  # opened by the context: closed by it
    with pytest.raises(UsageError):
        await context.run(work, 1)


@pytest.mark.asyncio
async def test_a_call_cancelled_before_it_started_does_not_run() -> None:
    context = NodeContext("520102")
    await context.open(MemoryStore())
    assert not context.sole_writer  # only a SqliteStore is known to have one writer
    gate = threading.Event()
    ran: list[str] = []
    blocking = asyncio.ensure_future(context.run(gate.wait, 10))
    queued = asyncio.ensure_future(context.run(ran.append, "queued"))
    await asyncio.sleep(0.01)
    queued.cancel()
    gate.set()
    assert await blocking is True
    await context.run(ran.append, "after")
    assert ran == ["after"]
    await context.close()


@pytest.mark.asyncio
async def test_closing_runs_what_was_submitted(tmp_path: Path) -> None:
    context = NodeContext("520102")
    store = SqliteStore(tmp_path / "s.db")
    await context.open(store)  # passed open: the caller's, not closed by the context
    done: list[int] = []
    calls = [asyncio.ensure_future(context.run(done.append, i)) for i in range(5)]
    await asyncio.sleep(0)
    await context.close()
    assert done == list(range(5))
    assert store.totals().count == 0  # still open
    store.close()
    await asyncio.gather(*calls, return_exceptions=True)


def test_fresh_entries_track_only_after_the_queue_was_read_to_its_end() -> None:
    fresh: FreshEntries[OutboundEntry] = FreshEntries(max_items=4, max_bytes=100)
    assert fresh.take(NOW, 10, 1000) is None  # not caught up: read the store
    fresh.offer([entry(1)])  # committed before the read to the end: the read has it
    fresh.caught_up()
    assert fresh.active
    assert fresh.take(NOW, 10, 1000) == []
    fresh.offer([entry(2), entry(3, expires_ms=NOW), entry(4)])
    fresh.offer([entry(5)])
    # As Store.pending pages: in order, expired ones passed over, within count and bytes.
    assert [e.seq for e in fresh.take(NOW, 1, 1000) or []] == [2]
    assert [e.seq for e in fresh.take(NOW, 10, 15) or []] == [4]  # 10 + 10 bytes > 15
    assert [e.seq for e in fresh.take(NOW, 10, 1) or []] == [5]  # at least one
    assert fresh.take(NOW, 10, 1000) == []
    fresh.forget()  # e.g. a transfer failed: its entries are still queued
    assert fresh.take(NOW, 10, 1000) is None
    fresh.offer([entry(6)])  # not tracking: ignored, the store read finds it
    assert fresh.take(NOW, 10, 1000) is None


def test_fresh_entries_are_dropped_beyond_their_bounds() -> None:
    fresh: FreshEntries[OutboundEntry] = FreshEntries(max_items=4, max_bytes=100)
    fresh.caught_up()
    fresh.offer([entry(i) for i in range(1, 5)])
    assert fresh.active
    fresh.offer([entry(5)])  # five items: more than a transfer's worth
    assert not fresh.active
    assert fresh.take(NOW, 10, 1000) is None
    fresh.caught_up()
    fresh.offer([entry(6, size=60), entry(7, size=60)])  # 120 bytes
    assert fresh.take(NOW, 10, 1000) is None


def test_the_intake_hands_what_it_committed_to_caught_up_readers_only() -> None:
    # Intake._hand_over runs in the store thread right after each commit (see FreshEntries).
    forwarders = {
        hop: SimpleNamespace(fresh=FreshEntries[OutboundEntry](max_items=64, max_bytes=1 << 20))
        for hop in ("520100", "520102.minzheng")
    }
    inbox = SimpleNamespace(fresh=FreshEntries[InboundEntry](max_items=64, max_bytes=1 << 20))
    intake = SimpleNamespace(_forwarders=forwarders, _inbox=inbox, _early={})
    forwarders["520100"].fresh.caught_up()
    inbox.fresh.caught_up()  # 520102.minzheng's forwarder is not caught up: it reads the store

    def item(n: int, **route: Any) -> AcceptItem:
        return AcceptItem(
            sender="520102.gongan",
            message_id=n.to_bytes(16, "big"),
            digest=bytes(32),
            data=b"sealed",
            expires_ms=NOW + 60_000,
            **route,
        )

    items = [
        item(1, forward={"520100": ("520100.fagai",), "520102.minzheng": ("520102.minzheng",)}),
        item(2, local=("520102",)),
        item(3, forward={"520100": ("520100.a",)}),
    ]
    accepted = AcceptStatus.ACCEPTED
    outcomes = [
        AcceptOutcome(
            status=accepted,
            forward=items[0].forward,
            seqs={"520100": 7, "520102.minzheng": 8},
        ),
        AcceptOutcome(status=accepted, local=("520102",), inbox_seq=3),
        AcceptOutcome(status=AcceptStatus.DUPLICATE),
    ]
    Intake._hand_over(intake, items, outcomes)  # type: ignore[arg-type]
    taken = forwarders["520100"].fresh.take(NOW, 10, 1 << 20)
    assert [(e.seq, e.targets, e.next_hop) for e in taken or []] == [
        (7, ("520100.fagai",), "520100")
    ]
    assert forwarders["520102.minzheng"].fresh.take(NOW, 10, 1 << 20) is None
    assert [(e.seq, e.targets) for e in inbox.fresh.take(NOW, 10, 1 << 20) or []] == [
        (3, ("520102",))
    ]
    # A store that does not say where it queued a copy: that reader reads the store again.
    Intake._hand_over(  # type: ignore[arg-type]
        intake,
        [items[2], items[1]],
        [
            AcceptOutcome(status=accepted, forward=items[2].forward),
            AcceptOutcome(status=accepted, local=("520102",)),
        ],
    )
    assert forwarders["520100"].fresh.take(NOW, 10, 1 << 20) is None
    assert inbox.fresh.take(NOW, 10, 1 << 20) is None


def test_what_went_ahead_of_its_commit_is_numbered_not_handed_over_again() -> None:
    # Cut-through (SPEC §16.4): an item a forwarder sent before the commit returned is not
    # offered to it a second time; the commit's numbers settle it; a commit that also queued
    # another entry for that hop marks the early batch ``mixed`` (order not kept).
    loop = asyncio.new_event_loop()
    try:
        fresh = FreshEntries[OutboundEntry](max_items=64, max_bytes=1 << 20)
        fresh.caught_up()
        forwarders = {"520100": SimpleNamespace(fresh=fresh)}
        inbox = SimpleNamespace(fresh=FreshEntries[InboundEntry](max_items=64, max_bytes=64))
        early_item, later_item, duplicate = (
            AcceptItem(
                sender="520102.gongan",
                message_id=n.to_bytes(16, "big"),
                digest=bytes(32),
                data=b"sealed",
                expires_ms=NOW + 60_000,
                forward={"520100": (f"520100.t{n}",)},
            )
            for n in (1, 2, 3)
        )
        batch = EarlyBatch.of("520100", [(0, early_item), (1, duplicate)], loop.create_future())
        intake = SimpleNamespace(
            _forwarders=forwarders,
            _inbox=inbox,
            _early={id(early_item): {"520100": batch}, id(duplicate): {"520100": batch}},
        )
        accepted = AcceptStatus.ACCEPTED
        outcomes = [
            AcceptOutcome(status=accepted, forward=early_item.forward, seqs={"520100": 4}),
            AcceptOutcome(status=AcceptStatus.DUPLICATE),
            AcceptOutcome(status=accepted, forward=later_item.forward, seqs={"520100": 5}),
        ]
        Intake._hand_over(  # type: ignore[arg-type]
            intake, [early_item, duplicate, later_item], outcomes
        )
        assert [e.seq for e in fresh.take(NOW, 10, 1 << 20) or []] == [5]  # not 4 again
        assert batch.mixed
        numbered, unnumbered = batch.numbered(outcomes[:2])
        assert [(index, e.seq, e.targets) for index, e in numbered] == [(0, 4, ("520100.t1",))]
        assert not unnumbered  # the duplicate was never queued here: nothing to settle
        # Alone in its commit, the early batch keeps the queue's order.
        alone = EarlyBatch.of("520100", [(0, later_item)], loop.create_future())
        intake._early = {id(later_item): {"520100": alone}}
        Intake._hand_over(intake, [later_item], outcomes[2:])  # type: ignore[arg-type]
        assert not alone.mixed
        assert fresh.take(NOW, 10, 1 << 20) == []
        # A store that does not number what it queued: the forwarder reads its queue again.
        _, unnumbered = alone.numbered([AcceptOutcome(status=accepted, forward=later_item.forward)])
        assert unnumbered
    finally:
        loop.close()
