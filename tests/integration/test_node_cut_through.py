"""Cut-through (issue 14, SPEC §16.4): a hub forwards what arrives while its own commit runs.

The fsyncs of the hops on a path used to add up: a hub offered an envelope to
the next hop only once its own commit had returned.  Now a forwarder with
nothing else to send takes an arrival at once.  Here the county hub's commit
is held open (its store's ``accept`` waits on a gate in the store thread):

* with cut-through the receiving department gets the message *while the hub's
  commit is still held*; without it, not before the gate opens;
* either way the message arrives once, the hub's queue empties and it counts
  the message forwarded once (it settles the early transfer with the number
  its commit gave);
* a hub whose commit fails after the early transfer answers the sender with
  an error; the sender keeps the envelope and sends it again, the hub commits
  and forwards it again, and the receiver's dedup answers that copy: one
  delivery, nothing left queued.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from exchnode.aio import Node
from exchnode.federation import BackoffPolicy
from tests.integration.federation import Federation, started
from tests.integration.test_node import collect

HUB = "520102"
GONGAN = "520102.gongan"
MINZHENG = "520102.minzheng"
NAMES = [HUB, GONGAN, MINZHENG]
FAST = BackoffPolicy(base_ms=50, cap_ms=200)


def hold_first_commit(node: Node, before: Callable[[], None]) -> None:
    """Make ``node``'s first ``accept`` call ``before()`` first, in the store thread."""
    store: Any = node.store
    accept = store.accept
    calls = 0

    def held(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            before()
        return accept(*args, **kwargs)

    store.accept = held


async def hub_settled(hub: Node) -> Any:
    """The hub's stats once it has forwarded something and its queue is empty again."""
    for _ in range(500):
        stats = await hub.stats()
        if stats.counters["forwarded"] and stats.queued.count == 0:
            return stats
        await asyncio.sleep(0.02)
    raise AssertionError(f"the hub holds {stats.queued.count} entries: {stats.counters}")


@pytest.mark.asyncio
@pytest.mark.parametrize("cut_through", [True, False])
async def test_a_hub_forwards_while_its_commit_runs(tmp_path: Path, cut_through: bool) -> None:
    federation = Federation(tmp_path, NAMES)
    nodes = {name: federation.node(name, cut_through=cut_through) for name in NAMES}
    gate = threading.Event()
    async with started(nodes):
        hold_first_commit(nodes[HUB], lambda: gate.wait(20))
        receiving = asyncio.ensure_future(collect(nodes[MINZHENG], 1))
        sending = asyncio.ensure_future(nodes[GONGAN].send([MINZHENG], b"ahead"))
        try:
            done, _ = await asyncio.wait({receiving}, timeout=3 if cut_through else 1)
            # Cut-through: delivered while the hub's commit is held.  Without: not before it.
            assert bool(done) is cut_through
        finally:
            gate.set()
        got = await asyncio.wait_for(receiving, 20)
        await asyncio.wait_for(sending, 20)
        assert [d.payload for d in got] == [b"ahead"]
        stats = await hub_settled(nodes[HUB])
        assert stats.counters["accepted"] == 1
        assert stats.counters["forwarded"] == 1
        assert stats.counters["cut_through"] == int(cut_through)
        assert (await nodes[MINZHENG].stats()).counters["duplicates"] == 0


@pytest.mark.asyncio
async def test_a_commit_that_fails_after_the_early_transfer_loses_and_duplicates_nothing(
    tmp_path: Path,
) -> None:
    federation = Federation(tmp_path, NAMES)
    nodes = {name: federation.node(name, backoff=FAST) for name in NAMES}
    reached = threading.Event()

    async with started(nodes):
        receiver = nodes[MINZHENG]
        store: Any = receiver.store
        accept = store.accept

        def noting(*args: Any, **kwargs: Any) -> Any:
            outcome = accept(*args, **kwargs)
            reached.set()
            return outcome

        store.accept = noting

        def fail_once_the_copy_is_ahead() -> None:
            assert reached.wait(20), "the early copy never reached the receiver"
            raise OSError("disk unplugged (test)")

        hold_first_commit(nodes[HUB], fail_once_the_copy_is_ahead)
        receiving = asyncio.ensure_future(collect(receiver, 1))
        await nodes[GONGAN].send([MINZHENG], b"once")
        got = await asyncio.wait_for(receiving, 30)
        assert [d.payload for d in got] == [b"once"]
        stats = await hub_settled(nodes[HUB])
        # The hub's first commit failed; the sender's resend was committed and forwarded.
        assert stats.counters["accepted"] == 1
        assert stats.counters["forwarded"] == 1
        for _ in range(100):  # the resent copy reaches the receiver, whose dedup answers it
            if (await receiver.stats()).counters["duplicates"] >= 1:
                break
            await asyncio.sleep(0.05)
        assert (await receiver.stats()).counters["duplicates"] == 1
        for _ in range(100):  # the sender removes what the hub took within the removal delay
            if (await nodes[GONGAN].stats()).queued.count == 0:
                break
            await asyncio.sleep(0.02)
        assert (await nodes[GONGAN].stats()).queued.count == 0
        assert (await receiver.stats()).inbox.count == 0  # acknowledged, and nothing else came


@pytest.mark.asyncio
async def test_a_retried_send_never_goes_ahead_of_the_commit_that_recognises_it(
    tmp_path: Path,
) -> None:
    # A send with an idempotency key seals a new envelope each time; the commit answers a retry
    # with the first message and queues nothing.  Sent ahead, the retry's envelope would be a
    # second message at the recipient.
    federation = Federation(tmp_path, NAMES)
    nodes = {name: federation.node(name) for name in NAMES}
    async with started(nodes):
        sender = nodes[GONGAN]
        first = await sender.send([MINZHENG], b"once", idempotency_key="order-1")
        got = await asyncio.wait_for(collect(nodes[MINZHENG], 1), 20)
        assert [d.message_id for d in got] == [first.message_id]
        again = await sender.send([MINZHENG], b"once", idempotency_key="order-1")
        assert again.message_id == first.message_id
        await asyncio.sleep(0.5)  # time for a second copy to arrive, if one had left
        assert (await nodes[HUB].stats()).counters["accepted"] == 1
        assert (await nodes[MINZHENG].stats()).counters["accepted"] == 1
        assert (await sender.stats()).counters["cut_through"] == 0  # keyed: after its commit
