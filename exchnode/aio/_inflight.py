"""Bytes in flight: the neighbours' request bodies a node holds in memory at once (I/O edge).

aiohttp reads a request's whole body into memory before its handler sees it,
so concurrent transfers multiply memory: sixteen 60 MiB transfers from one
neighbour took a hub from 61 MiB to 1.1 GiB (issue 12).  The link server
therefore *reserves* each request's declared size (its ``Content-Length``;
the largest a request may be when the body is chunked) against two bounds
before it reads a byte of it -- the bytes in flight from that neighbour, and
in total -- and gives the reservation back once the request is answered.  A
request that does not fit is answered 429 with ``Retry-After``, its body
never buffered (aiohttp discards it as it arrives): back-pressure, nothing
lost, since the sender keeps its items until a transfer's answer says TAKEN.
The room left is also what bounds the credit a transfer's answer grants
(``Intake.credit``), so a well-behaved sender shrinks its transfers before
it would be pushed back.
"""

from __future__ import annotations

from collections.abc import Callable

from exchnode.errors import UsageError

__all__ = ["InFlight", "Reservation"]


class Reservation:
    """Bytes reserved for one request; :meth:`release` (or leaving the ``with``) gives them back."""

    __slots__ = ("_budget", "neighbour", "size")

    def __init__(self, budget: InFlight | None, neighbour: str, size: int) -> None:
        self._budget = budget
        self.neighbour = neighbour
        self.size = size

    def release(self) -> None:
        """Give the bytes back (once; a second call does nothing)."""
        budget, self._budget = self._budget, None
        if budget is not None:
            budget._release(self.neighbour, self.size)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc_info: object) -> None:  # whatever ended the block: give them back
        self.release()


class InFlight:
    """Request bytes held per neighbour and in total, each under its bound (one event loop)."""

    def __init__(
        self, per_neighbour: int, total: int, *, on_refused: Callable[[], None] | None = None
    ) -> None:
        """``on_refused``: called for each request that did not fit (a counter)."""
        if not 0 < per_neighbour <= total:
            raise UsageError(
                f"need 0 < per_neighbour <= total bytes in flight, got {per_neighbour}, {total}"
            )
        self.per_neighbour = per_neighbour
        self.total = total
        self._on_refused = on_refused
        self._held: dict[str, int] = {}
        self._held_total = 0
        #: the most bytes held at once since start (for operators and tests)
        self.peak = 0

    def held(self, neighbour: str | None = None) -> int:
        """Bytes reserved now: from ``neighbour``, or in total."""
        return self._held_total if neighbour is None else self._held.get(neighbour, 0)

    def fits_ever(self, size: int) -> bool:
        """Whether a request of ``size`` bytes could be taken at all (else it is too large)."""
        return size <= self.per_neighbour

    def reserve(self, neighbour: str, size: int) -> Reservation | None:
        """Reserve ``size`` bytes for a request from ``neighbour``; None if they do not fit now."""
        if size < 0:
            raise UsageError(f"cannot reserve {size} bytes")
        if size == 0:
            return Reservation(None, neighbour, 0)
        held = self._held.get(neighbour, 0)
        if held + size > self.per_neighbour or self._held_total + size > self.total:
            if self._on_refused is not None:
                self._on_refused()
            return None
        self._held[neighbour] = held + size
        self._held_total += size
        self.peak = max(self.peak, self._held_total)
        return Reservation(self, neighbour, size)

    def room(self, neighbour: str, releasing: int = 0) -> int:
        """The largest request ``neighbour`` could send once ``releasing`` of its bytes are back."""
        held = self._held.get(neighbour, 0) - releasing
        return max(0, min(self.per_neighbour - held, self.total - (self._held_total - releasing)))

    def _release(self, neighbour: str, size: int) -> None:
        held = self._held.get(neighbour, 0) - size
        if held > 0:
            self._held[neighbour] = held
        else:
            self._held.pop(neighbour, None)
        self._held_total -= size
