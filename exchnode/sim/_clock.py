"""A simulated clock: an asyncio event loop whose time is virtual and never waits.

Theory of operation
-------------------
The nodes under simulation are the library's real ``Node`` objects; they
wait with ``asyncio.sleep``, ``wait_for`` and aiohttp's timeouts, all of which
are timers on the loop.  :class:`VirtualClockLoop` is a selector event loop
whose :meth:`~VirtualClockLoop.time` is a number it keeps itself, and whose
selector never blocks: when nothing is ready, the loop asks the selector to
wait until the next timer, and the selector instead moves the virtual time
forward by exactly that much (trio's autojump ``MockClock`` and aiotools'
``VirtualClock`` do the same).  Six simulated hours of a federation that is
mostly idle cost only the callbacks that actually run.

Nothing may run outside the loop, or the virtual time would jump while it
works: :meth:`~VirtualClockLoop.run_in_executor` (the node's store thread,
``asyncio.to_thread``) runs the function at once, in submission order, and
hands the result over on the next turn of the loop, so a caller still yields
once as it would across a thread.  Sockets are never opened (the in-memory
network delivers bytes with timers), so the real selector is polled with a
zero timeout only for the loop's own wake-up pipe.

**CPU per node.**  Every callback the loop runs -- a task step, a transport
delivery, a timer -- runs in a ``contextvars`` context; the simulation sets
:data:`CURRENT_NODE` in the context a node is started in, and tasks inherit
their creator's context, so every callback knows whose work it is.  The loop
measures each callback's thread CPU time and adds it to that node's account
(``cpu_by_node``); work outside any node goes to ``""``.
"""

from __future__ import annotations

import asyncio
import contextvars
import selectors
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from typing import Any, TypeVar

__all__ = ["CURRENT_NODE", "SimulationStalled", "VirtualClockLoop"]

T = TypeVar("T")

#: the node whose work the running callback is (set when the simulation starts a node)
CURRENT_NODE: contextvars.ContextVar[str] = contextvars.ContextVar("exchnode_sim_node", default="")


class SimulationStalled(RuntimeError):
    """Nothing is ready and no timer is set: the simulation would wait forever."""


class _VirtualSelector(selectors.BaseSelector):
    """A selector that polls the real one without waiting and turns each wait into a time jump."""

    def __init__(self, clock: VirtualClockLoop) -> None:
        self._inner = selectors.DefaultSelector()
        self._clock = clock

    def register(
        self, fileobj: Any, events: int, data: Any = None
    ) -> selectors.SelectorKey:  # the loop's own wake-up pipe only
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._inner.select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            raise SimulationStalled(
                f"at virtual time {self._clock.time():.3f} s nothing is ready and no timer is set"
            )
        self._clock.advance(timeout)
        return []

    def close(self) -> None:
        self._inner.close()

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._inner.get_map()


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time (see the module docstring); ``time()`` starts at 0."""

    #: A node's store calls come to :meth:`run_in_executor` (inline), not to its store thread.
    inline_executor = True

    def __init__(self) -> None:
        self._virtual = 0.0
        self.cpu_by_node: dict[str, float] = {}
        self.callbacks = 0
        super().__init__(_VirtualSelector(self))

    def time(self) -> float:
        return self._virtual

    def advance(self, seconds: float) -> None:
        """Move virtual time forward (the selector does, instead of waiting)."""
        if seconds > 0:
            self._virtual += seconds

    # --- every callback's CPU, to the node whose context it runs in -------------------

    def _measured(self, callback: Callable[..., object], *args: Any) -> None:
        started = time.thread_time()
        try:
            callback(*args)
        finally:
            spent = time.thread_time() - started
            node = CURRENT_NODE.get()
            self.cpu_by_node[node] = self.cpu_by_node.get(node, 0.0) + spent
            self.callbacks += 1

    def call_soon(  # type: ignore[override]
        self,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        return super().call_soon(self._measured, callback, *args, context=context)

    def call_at(  # type: ignore[override]
        self,
        when: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        return super().call_at(when, self._measured, callback, *args, context=context)

    # call_later goes through call_at.

    # --- no threads: executor work runs inline, its result handed over next turn -------

    def run_in_executor(  # type: ignore[override]
        self, executor: Executor | None, func: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        future: asyncio.Future[T] = self.create_future()
        try:
            result = func(*args)
        except Exception as exc:  # handed to the awaiting caller, as a thread would
            super().call_soon(_fail, future, exc)
        else:
            super().call_soon(_resolve, future, result)
        return future


def _resolve(future: asyncio.Future[T], result: T) -> None:
    if not future.cancelled():
        future.set_result(result)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.cancelled():
        future.set_exception(exc)
