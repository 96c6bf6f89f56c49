"""The group commit's batcher: one run for what waits, lingering only while requests come often."""

from __future__ import annotations

import asyncio

import pytest

from exchnode.aio._batcher import Batcher
from exchnode.errors import UsageError


class Recorder:
    """A ``run`` that records its batches (and when each started), doubling every item."""

    def __init__(self, fail_on: int | None = None, pause: float = 0.0) -> None:
        self.batches: list[list[int]] = []
        self.started: list[float] = []
        self._fail_on = fail_on
        self._pause = pause

    async def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        self.started.append(asyncio.get_running_loop().time())
        if self._pause:
            await asyncio.sleep(self._pause)
        if self._fail_on in items:
            raise RuntimeError("batch failed")
        return [2 * i for i in items]


@pytest.mark.asyncio
async def test_each_caller_gets_its_own_results_and_a_batch_is_capped() -> None:
    run = Recorder(pause=0.01)
    batcher: Batcher[int, int] = Batcher(run, max_items=4)
    batcher.start()
    results = await asyncio.gather(
        batcher.submit([1]), batcher.submit([2, 3]), batcher.submit([4, 5]), batcher.submit([6])
    )
    assert results == [[2], [4, 6], [8, 10], [12]]
    assert run.batches == [[1, 2, 3], [4, 5, 6]]  # what waits runs together, 4 at most
    assert await batcher.submit([]) == []
    await batcher.close()
    with pytest.raises(UsageError):
        await batcher.submit([7])


@pytest.mark.asyncio
async def test_every_caller_of_a_failed_batch_hears_of_it() -> None:
    run = Recorder(fail_on=3, pause=0.01)
    batcher: Batcher[int, int] = Batcher(run)
    batcher.start()
    first = asyncio.ensure_future(batcher.submit([1]))
    await asyncio.sleep(0)
    outcomes = await asyncio.gather(
        batcher.submit([2]), batcher.submit([3]), return_exceptions=True
    )
    assert await first == [2]
    assert [type(o) for o in outcomes] == [RuntimeError, RuntimeError]
    await batcher.close()


@pytest.mark.asyncio
async def test_a_lone_request_runs_at_once_when_requests_are_rare() -> None:
    run = Recorder()
    batcher: Batcher[int, int] = Batcher(run, linger=0.05)
    batcher.start()
    loop = asyncio.get_running_loop()
    for i in range(4):
        before = loop.time()
        assert await batcher.submit([i]) == [2 * i]
        assert loop.time() - before < 0.03  # no linger: requests 60 ms apart are rare
        await asyncio.sleep(0.06)
    assert run.batches == [[0], [1], [2], [3]]
    await batcher.close()


@pytest.mark.asyncio
async def test_under_load_a_lone_request_waits_a_bounded_time_for_others() -> None:
    run = Recorder()
    linger = 0.03
    batcher: Batcher[int, int] = Batcher(run, linger=linger)
    batcher.start()
    loop = asyncio.get_running_loop()
    arrivals: dict[int, float] = {}

    async def send(i: int) -> None:
        arrivals[i] = loop.time()
        await batcher.submit([i])

    sends = []
    for i in range(40):  # a request every 2 ms: well under half the linger apart
        sends.append(asyncio.ensure_future(send(i)))
        await asyncio.sleep(0.002)
    await asyncio.gather(*sends)
    assert sorted(i for batch in run.batches for i in batch) == list(range(40))
    later = run.batches[len(run.batches) // 2 :]
    assert sum(len(batch) for batch in later) / len(later) > 2  # they share runs now
    for batch, started in zip(run.batches, run.started, strict=True):
        # Bounded: no request waits much beyond the linger (a loaded machine adds ticks).
        assert started - arrivals[batch[0]] < linger + 0.05
    await batcher.close()


@pytest.mark.asyncio
async def test_a_full_batch_or_closing_ends_the_linger() -> None:
    run = Recorder()
    batcher: Batcher[int, int] = Batcher(run, max_items=8, linger=10.0)
    batcher.start()
    loop = asyncio.get_running_loop()
    await asyncio.gather(*(batcher.submit([i]) for i in range(8)))  # requests come often now
    lone = asyncio.ensure_future(batcher.submit([100]))
    await asyncio.sleep(0.05)
    assert not lone.done()  # lingering
    before = loop.time()
    assert await batcher.submit(list(range(7))) == [2 * i for i in range(7)]
    assert await lone == [200]
    assert loop.time() - before < 1  # the batch filled: it ran without waiting out 10 s
    lone = asyncio.ensure_future(batcher.submit([5]))
    await asyncio.sleep(0.05)
    assert not lone.done()
    before = loop.time()
    await batcher.close()
    assert await lone == [10]
    assert loop.time() - before < 1


@pytest.mark.asyncio
async def test_waits_that_gather_nothing_back_off() -> None:
    # One caller at a time (a neighbour's transfers, each sent once the last is answered):
    # waiting for others is fruitless, and soon the batcher hardly ever does.
    run = Recorder()
    linger = 0.05
    batcher: Batcher[int, int] = Batcher(run, linger=linger)
    batcher.start()
    await asyncio.gather(*(batcher.submit([i]) for i in range(8)))  # requests come often
    loop = asyncio.get_running_loop()
    waited = 0
    for i in range(40):
        before = loop.time()
        await batcher.submit([i])
        waited += loop.time() - before >= linger / 2
    assert waited <= 7  # log2(40) + 1 waits, not 40
    await batcher.close()


def test_linger_is_not_negative() -> None:
    async def run(items: list[int]) -> list[int]:
        return items

    with pytest.raises(UsageError):
        Batcher(run, linger=-1)
