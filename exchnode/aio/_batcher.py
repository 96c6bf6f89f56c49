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

**Lingering, only under load** (``linger``, issue 14).  A batch that would run
with a single request while requests are arriving often (their recent mean
gap is under half of ``linger``) waits for more, at most until ``linger``
after that request arrived, or until the batch is full: a few requests share
the signature and the flush that each would otherwise pay alone.  When
requests are rare it never waits (no added latency at a quiet node), nor
when several are already waiting (the previous batch's run gathered them).
A wait that gathered nothing is not repeated at once: the batches after it
run without waiting, twice as many after each fruitless wait (up to 64), so
callers that cannot send more until they are answered (one neighbour's
transfers, one after the other) are not kept waiting for nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from exchnode.aio._waiting import wait_event
from exchnode.errors import UsageError

__all__ = ["Batcher"]

In = TypeVar("In")
Out = TypeVar("Out")


#: Weight of the newest gap between two requests in their running mean.
_GAP_WEIGHT = 0.25
#: A gap longer than this counts as this (an idle spell must not skew the mean for long).
_GAP_CAP = 1.0
#: The most batches run without lingering after waits that gathered nothing.
_MAX_SKIP = 64


class Batcher(Generic[In, Out]):
    """Runs ``run(items) -> results`` (one result per item) for many callers at a time."""

    def __init__(
        self,
        run: Callable[[list[In]], Awaitable[list[Out]]],
        *,
        max_items: int = 4096,
        linger: float = 0.0,
    ) -> None:
        """``linger``: seconds a lone request may wait for others under load (see above)."""
        if linger < 0:
            raise UsageError(f"linger is seconds, not negative: {linger!r}")
        self._run = run
        self._max = max_items
        self._linger = linger
        self._waiting: list[tuple[Sequence[In], asyncio.Future[list[Out]]]] = []
        self._count = 0  # items waiting
        self._wake = asyncio.Event()
        self._full = asyncio.Event()  # set when the items waiting fill a batch
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._last = -_GAP_CAP  # when the last request arrived (loop time)
        self._gap = _GAP_CAP  # running mean of the gaps between requests
        self._first = 0.0  # when the oldest request waiting arrived
        self._skip = 0  # batches to run without lingering (after waits that gathered nothing)
        self._backoff = 0  # how many the next fruitless wait skips

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="batcher")

    async def submit(self, items: Sequence[In]) -> list[Out]:
        """The results for ``items``, once the batch holding them has run."""
        if self._closed:
            raise UsageError("the node is closing: nothing more is taken")
        if not items:
            return []
        loop = asyncio.get_running_loop()
        if self._linger:
            now = loop.time()
            self._gap += (min(now - self._last, _GAP_CAP) - self._gap) * _GAP_WEIGHT
            self._last = now
            if not self._waiting:
                self._first = now
        future: asyncio.Future[list[Out]] = loop.create_future()
        self._waiting.append((items, future))
        self._count += len(items)
        if self._count >= self._max:
            self._full.set()
        self._wake.set()
        return await future

    async def close(self) -> None:
        """Run what is waiting, then stop."""
        self._closed = True
        self._full.set()  # a batch lingering runs now
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._waiting:
                if self._should_linger():
                    await self._linger_for_more()
                batch: list[tuple[Sequence[In], asyncio.Future[list[Out]]]] = []
                count = 0
                while self._waiting and (
                    not batch or count + len(self._waiting[0][0]) <= self._max
                ):
                    entry = self._waiting.pop(0)
                    batch.append(entry)
                    count += len(entry[0])
                self._count -= count
                if self._count < self._max:
                    self._full.clear()
                if self._waiting:  # what stays waits from now on
                    self._first = asyncio.get_running_loop().time()
                await self._run_batch(batch)
            if self._closed:
                return

    def _should_linger(self) -> bool:
        """A lone request, requests arriving often, and the node not closing: wait for more."""
        if not (
            self._linger > 0
            and len(self._waiting) == 1
            and self._count < self._max
            and self._gap * 2 < self._linger
            and not self._closed
        ):
            return False
        if self._skip:
            self._skip -= 1
            return False
        return True

    async def _linger_for_more(self) -> None:
        delay = self._first + self._linger - asyncio.get_running_loop().time()
        await wait_event(self._full, delay)
        if len(self._waiting) > 1:
            self._backoff = 0
        else:  # nothing came: run the next ones at once, more of them each time
            self._backoff = min(max(2 * self._backoff, 1), _MAX_SKIP)
            self._skip = self._backoff

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
