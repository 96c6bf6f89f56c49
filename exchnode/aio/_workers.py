"""A hub run as several workers on one shared store: what this worker moves, and the signals.

Theory of operation
-------------------
Every worker of a hub (``WorkerShare``) is a whole :class:`~exchnode.aio.Node`
with the hub's identity, on the same store: it takes transfers from the
neighbours whose links it holds and queues what it takes.  Two things must
not be done twice, and are given to one worker each:

* a next hop's queue is forwarded by the worker that owns the hop
  (``WorkerShare.owns``): the forwarder keeps in-flight pages, credit and
  backoff in memory, and two would send every entry twice;
* the inbox is delivered by worker 0 (``WorkerShare.delivers``), which also
  runs the services that consume it.

Every worker still has a forwarder object per neighbour (the intake and the
expiry talk to it), but runs only those it owns.  :class:`WorkerSignals`
turns the store's signals (``exchnode.store.SignallingStore``), which arrive
in the store's listener thread, into wake-ups on the loop: a queue that grew
wakes its forwarder if this worker owns it, the inbox wakes the delivery on
worker 0, and a neighbour's hello heard by another worker pokes the owner's
forwarder (it ends a backoff).  After a listener (re)connects, and every
``NodeTimers.worker_poll`` seconds, a worker wakes all it owns: a lost
signal delays a queue by at most that long, and never loses anything.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from functools import partial
from typing import Any

from exchnode.aio._config import WorkerShare
from exchnode.aio._forwarder import Forwarder
from exchnode.store import HELLO, INBOX, QUEUE, Signal

__all__ = ["WorkerSignals"]


class WorkerSignals:
    """Wakes what this worker owns when the store signals, and now and then regardless."""

    def __init__(
        self,
        share: WorkerShare,
        forwarders: Mapping[str, Forwarder],
        inbox_wake: asyncio.Event,
        log: Any,
    ) -> None:
        self.share = share
        self._forwarders = forwarders
        self._inbox_wake = inbox_wake
        self._log = log
        self._loop = asyncio.get_running_loop()

    def owner(self, signal: Signal) -> int:
        """The worker a signal is for: the hop's owner; worker 0 for the inbox (store thread)."""
        return 0 if signal.kind == INBOX else self.share.owner(signal.hop)

    def owned(self) -> list[Forwarder]:
        return [f for hop, f in self._forwarders.items() if self.share.owns(hop)]

    # --- from the store's listener thread ------------------------------------------

    def heard(self, signal: Signal | None) -> None:
        """The store's callback (its listener thread): handled on the loop."""
        # A loop closed while the listener stops (RuntimeError) has nothing left to wake.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._on_signal, signal)

    def lost(self, message: str) -> None:
        """The store's listener lost its session (its thread); it reconnects by itself."""
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(
                partial(self._log.warning, "worker signals", error=message)
            )

    # --- on the loop -----------------------------------------------------------------

    def _on_signal(self, signal: Signal | None) -> None:
        if signal is None:
            self.wake_all()
            return
        if signal.kind == INBOX:
            if self.share.delivers:
                self._inbox_wake.set()
            return
        forwarder = self._forwarders.get(signal.hop)
        if forwarder is None or not self.share.owns(signal.hop):
            return
        if signal.kind == QUEUE:
            forwarder.wake.set()
        elif signal.kind == HELLO:
            forwarder.poke()

    def wake_all(self) -> None:
        """Look at every queue this worker moves (after a signal may have been lost)."""
        for forwarder in self.owned():
            forwarder.wake.set()
        if self.share.delivers:
            self._inbox_wake.set()

    async def poll(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.wake_all()
