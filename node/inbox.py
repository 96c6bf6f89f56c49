"""Leases between the node's deliveries and the operator API's clients.

Theory of operation
-------------------
``Node.deliveries()`` has one consumer and hands each inbox entry over once
per run; the entry stays in the node's durable inbox until ``ack``.  The
operator API may have several clients, any of which can vanish mid-request.
So one task (:meth:`Inbox.run`) takes deliveries from the node into this
book, at most ``capacity`` at a time (the rest waits in the node's store),
and clients *lease* them:

* ``take`` hands out the oldest deliveries no one holds, each leased for
  ``lease_seconds``;
* ``ack`` acknowledges leased or offered deliveries to the node, which then
  removes them from its inbox (and sends a receipt, if one was asked for);
* a lease that runs out unacknowledged makes its delivery available again,
  so a client that crashed between reading and acknowledging loses nothing.

That is at-least-once towards operator clients, with a stable identity
(``<sender>:<message id hex>``) to recognise a repeat; a client that stores
under that identity before acknowledging gets exactly-once *effect*.  A
client that asks for ack-on-receive trades this for at-most-once: the
delivery is acknowledged before the response is written, so a lost
response loses the message for that client.

After a restart the node offers every unacknowledged entry again, leases or
not: leases live in memory only.

An optional ``annotate`` hook reads each delivery once as it enters the book
(the operator API decodes ``sub.records`` with ``SharingService.read_records``
there); what it returns travels with every lease of that delivery, so a
lease offered again shows the same reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from exchnode.aio import Delivery, Node

__all__ = ["Inbox", "delivery_id"]


def delivery_id(delivery: Delivery) -> str:
    return f"{delivery.sender}:{delivery.message_id.hex()}"


@dataclass(slots=True)
class _Held:
    delivery: Delivery
    leased_until: float = 0.0  # 0: available
    annotation: dict[str, Any] | None = None


Annotate = Callable[[Delivery], Awaitable[dict[str, Any] | None]]


class Inbox:
    def __init__(
        self,
        node: Node,
        *,
        capacity: int,
        lease_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        annotate: Annotate | None = None,
    ) -> None:
        self._node = node
        self._annotate = annotate
        self._capacity = capacity
        self._lease = lease_seconds
        self._clock = clock
        self._held: dict[str, _Held] = {}  # insertion order = node order (oldest first)
        self._arrived = asyncio.Condition()
        self._room = asyncio.Event()
        self._room.set()
        self._closed = False

    @property
    def held(self) -> int:
        return len(self._held)

    @property
    def leased(self) -> int:
        now = self._clock()
        return sum(1 for held in self._held.values() if held.leased_until > now)

    async def run(self) -> None:
        """Move deliveries from the node into the book while there is room."""
        async for delivery in self._node.deliveries():
            key = delivery_id(delivery)
            annotation = None
            if self._annotate is not None and key not in self._held:
                annotation = await self._annotate(delivery)
            async with self._arrived:
                self._held.setdefault(key, _Held(delivery, annotation=annotation))
                self._arrived.notify_all()
            if len(self._held) >= self._capacity:
                self._room.clear()
                await self._room.wait()

    async def close(self) -> None:
        """Wake every waiting ``take``; they return what they have (possibly nothing)."""
        self._closed = True
        async with self._arrived:
            self._arrived.notify_all()

    def _available(self, limit: int) -> list[tuple[str, _Held]]:
        now = self._clock()
        out = []
        for key, held in self._held.items():
            if held.leased_until <= now:
                out.append((key, held))
                if len(out) == limit:
                    break
        return out

    async def take(self, limit: int, wait: float) -> list[Delivery]:
        """Lease up to ``limit`` deliveries, waiting up to ``wait`` seconds for the first."""
        deadline = self._clock() + wait
        async with self._arrived:
            while True:
                available = self._available(limit)
                if available or self._closed:
                    break
                remaining = deadline - self._clock()
                if remaining <= 0:
                    break
                # Wake on arrival, or when the earliest lease runs out.
                expiry = min(
                    (h.leased_until for h in self._held.values() if h.leased_until > 0),
                    default=None,
                )
                if expiry is not None:
                    remaining = min(remaining, max(expiry - self._clock(), 0.0) + 0.001)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), remaining)
            until = self._clock() + self._lease
            for _, held in available:
                held.leased_until = until
            return [held.delivery for _, held in available]

    def annotation(self, delivery: Delivery) -> dict[str, Any] | None:
        """What ``annotate`` said of a delivery still in the book."""
        held = self._held.get(delivery_id(delivery))
        return None if held is None else held.annotation

    async def ack(self, keys: Iterable[str]) -> tuple[int, list[str]]:
        """Acknowledge deliveries by id: (how many were acknowledged, the ids not held)."""
        found: list[Delivery] = []
        unknown: list[str] = []
        for key in dict.fromkeys(keys):
            held = self._held.get(key)
            if held is None:
                unknown.append(key)
            else:
                found.append(held.delivery)
        if found:
            # Out of the book first, so a concurrent ack of the same id counts once.
            taken = {delivery_id(d): self._held.pop(delivery_id(d)) for d in found}
            try:
                await self._node.ack(found)
            except BaseException:
                self._held.update(taken)  # still in the node's inbox: keep offering it
                raise
            if len(self._held) < self._capacity:
                self._room.set()
        return len(found), unknown
