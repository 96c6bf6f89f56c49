"""wait_event keeps a cancellation that arrives as the event is set (unlike 3.11's wait_for)."""

from __future__ import annotations

import asyncio

import pytest

from exchnode.aio._waiting import wait_event


@pytest.mark.asyncio
async def test_set_or_timeout() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 10) is True


@pytest.mark.asyncio
async def test_cancellation_in_the_same_iteration_as_the_event_is_kept() -> None:
    event = asyncio.Event()
    rounds = 0

    async def loop() -> None:
        nonlocal rounds
        while True:  # a node loop: wait, work, wait again
            rounds += 1
            await wait_event(event, 10)
            event.clear()

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)  # the loop is waiting
    event.set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert rounds == 1
