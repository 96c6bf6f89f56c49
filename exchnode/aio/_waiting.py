"""Waiting on an event with a time limit, without swallowing cancellation (I/O edge).

Python 3.11's ``asyncio.wait_for`` returns the inner result when the inner
future completes in the same loop iteration as the outer task is cancelled
(gh-86296, fixed in 3.12).  A loop that waits with ``wait_for(event.wait(),
t)`` and is cancelled just as the event is set therefore carries on, and a
``close`` that awaits the cancelled task waits for ever.  ``asyncio.timeout``
keeps the cancellation, so every loop of the node and its services waits
through :func:`wait_event`.
"""

from __future__ import annotations

import asyncio

__all__ = ["wait_event"]


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait until ``event`` is set or ``seconds`` pass; True if it was set."""
    try:
        async with asyncio.timeout(max(seconds, 0.0)):
            await event.wait()
    except TimeoutError:
        return False
    return True
