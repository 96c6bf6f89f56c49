"""Removals batched (issue 14): what a neighbour took leaves the store in one commit per window.

A hub with many quiet children forwards one message per transfer; removing
each as its own fsynced commit doubled its commits.  The removals of the
transfers answered within ``NodeTimers.removal_delay`` now share one commit,
and the queue is read past them meanwhile.  Here: one message at a time
through a county hub, the hub's removal commits counted, with the delay and
without; every message arrives once either way and the hub's queue empties.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from exchnode.aio import NodeTimers
from tests.integration.federation import Federation, started
from tests.integration.test_node import collect

HUB = "520102"
GONGAN = "520102.gongan"
MINZHENG = "520102.minzheng"
NAMES = [HUB, GONGAN, MINZHENG]


async def removal_commits(tmp_path: Path, delay: float, count: int) -> tuple[int, int, float]:
    """Send ``count`` messages one by one through the hub: its removal commits, transfers, and
    the seconds from the first send to the last delivery."""
    federation = Federation(tmp_path, NAMES)
    timers = replace(NodeTimers(), removal_delay=delay)
    nodes = {name: federation.node(name, timers=timers) for name in NAMES}
    commits = 0
    async with started(nodes):
        store: Any = nodes[HUB].store
        forwarded = store.forwarded

        def counting(hop: str, seqs: Any, **kwargs: Any) -> int:
            nonlocal commits
            if hop == MINZHENG:
                commits += 1
            return int(forwarded(hop, seqs, **kwargs))

        store.forwarded = counting
        payloads = [f"m{i}".encode() for i in range(count)]
        receiving = asyncio.ensure_future(collect(nodes[MINZHENG], count))
        began = asyncio.get_running_loop().time()
        for payload in payloads:
            await nodes[GONGAN].send([MINZHENG], payload)
            await asyncio.sleep(0.005)
        got = await asyncio.wait_for(receiving, 30)
        spanned = asyncio.get_running_loop().time() - began
        assert sorted(d.payload for d in got) == sorted(payloads)  # each once
        for _ in range(100):  # the last window's removal
            if (await nodes[HUB].stats()).queued.count == 0:
                break
            await asyncio.sleep(0.02)
        stats = await nodes[HUB].stats()
        assert stats.queued.count == 0
        assert stats.counters["forwarded"] == count
        transfers = stats.counters["accepted"]  # one message per transfer into the hub
    return commits, transfers, spanned


@pytest.mark.asyncio
async def test_removals_within_the_delay_share_one_commit(tmp_path: Path) -> None:
    batched, transfers, spanned = await removal_commits(tmp_path / "batched", 0.05, 30)
    at_once, _, _ = await removal_commits(tmp_path / "at-once", 0.0, 30)
    assert transfers == 30
    assert at_once >= 20  # about one per transfer out (some carry two)
    # One commit per 50 ms window the traffic spanned (~0.3 s on a quiet machine, longer on a
    # loaded one), not one per transfer.
    windows = int(spanned / 0.05) + 2
    assert batched <= min(windows, at_once // 2), (batched, at_once, spanned)
