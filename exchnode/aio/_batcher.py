"""Group commit for asyncio callers: many small requests, one store transaction (I/O edge).

Theory of operation
-------------------
Durability costs a flush per transaction, not per row (``store``).  So
everything that writes -- items arriving from several neighbours at once,
messages the application sends, acknowledgements -- is handed to a
:class:`Batcher`, which runs *one* call for whatever accumulated while the
previous call was running.  Under light load a request runs at once (no
timer, no added latency); under heavy load batches grow by themselves, and
so does throughput.  This is the classic group commit of databases and of
Kafka's and NATS' stores.

Each caller gets back exactly the results of its own items, in order, or
the exception the batch raised.  A batch is also capped (``max_items``), so
one transaction never grows without bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from exchnode.errors import UsageError

__all__ = ["Batcher"]

In = TypeVar("In")
Out = TypeVar("Out")


class Batcher(Generic[In, Out]):
    """Runs ``run(items) -> results`` (one result per item) for many callers at a time."""

    def __init__(
        self, run: Callable[[list[In]], Awaitable[list[Out]]], *, max_items: int = 4096
    ) -> None:
        self._run = run
        self._max = max_items
        self._waiting: list[tuple[Sequence[In], asyncio.Future[list[Out]]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="batcher")

    async def submit(self, items: Sequence[In]) -> list[Out]:
        """The results for ``items``, once the batch holding them has run."""
        if self._closed:
            raise UsageError("the node is closing: nothing more is taken")
        if not items:
            return []
        future: asyncio.Future[list[Out]] = asyncio.get_running_loop().create_future()
        self._waiting.append((items, future))
        self._wake.set()
        return await future

    async def close(self) -> None:
        """Run what is waiting, then stop."""
        self._closed = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._waiting:
                batch: list[tuple[Sequence[In], asyncio.Future[list[Out]]]] = []
                count = 0
                while self._waiting and (
                    not batch or count + len(self._waiting[0][0]) <= self._max
                ):
                    entry = self._waiting.pop(0)
                    batch.append(entry)
                    count += len(entry[0])
                await self._run_batch(batch)
            if self._closed:
                return

    async def _run_batch(self, batch: list[tuple[Sequence[In], asyncio.Future[list[Out]]]]) -> None:
        items = [item for part, _ in batch for item in part]
        try:
            results = await self._run(items)
        except Exception as exc:  # every caller of the batch hears of it
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        if len(results) != len(items):  # pragma: no cover - a bug in ``run``
            error = UsageError(f"batch returned {len(results)} results for {len(items)} items")
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        start = 0
        for part, future in batch:
            end = start + len(part)
            if not future.done():  # the caller may have been cancelled
                future.set_result(results[start:end])
            start = end
