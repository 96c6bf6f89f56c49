"""Signals between the workers of one hub that share a store (the interface; no I/O).

A hub can run as several worker processes on one shared store
(``exchnode.aio.WorkerShare``).  Each worker forwards only the queues of the
next hops it owns and only worker 0 delivers the inbox, so a worker that
queues entries for a queue it does not move must tell the one that does.
A store that can be shared implements :class:`SignallingStore`: each
transaction that queues entries sends, when it commits, a :class:`Signal`
per queue it added to, to the worker that owns that queue -- each listens on
a channel of its own, and none is told what it queued itself (its intake
wakes its own forwarder); ``signal`` sends one directly (a neighbour's hello,
to the worker that owns it).  A signal is a
hint -- the store stays the truth -- and a lost one is made good by the
worker's periodic look at its queues.  ``PostgresStore`` implements it with
LISTEN/NOTIFY (``_postgres_signals``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["HELLO", "INBOX", "QUEUE", "Signal", "SignalWatch", "SignallingStore"]

QUEUE, INBOX, HELLO = "queue", "inbox", "hello"
_KINDS = frozenset({QUEUE, INBOX, HELLO})


@dataclass(frozen=True, slots=True)
class Signal:
    """``queue <hop>``: entries for ``hop``; ``inbox``: entries for the node itself;
    ``hello <hop>``: ``hop`` showed it is up (its owner ends a backoff)."""

    kind: str
    hop: str = ""

    def payload(self) -> str:
        return self.kind if not self.hop else f"{self.kind} {self.hop}"

    @classmethod
    def parse(cls, payload: str) -> Signal | None:
        """The signal in ``payload``, or None for one this version does not know (ignored)."""
        kind, _, hop = payload.partition(" ")
        if kind not in _KINDS or (kind == INBOX) != (not hop):
            return None
        return cls(kind, hop)


class SignalWatch(Protocol):
    """A running listener; ``close`` stops it (before the store is closed)."""

    def wait_listening(self, timeout_s: float) -> bool: ...

    def close(self) -> None: ...


@runtime_checkable
class SignallingStore(Protocol):
    """A store several workers share, that carries their signals (see the module doc)."""

    def watch(
        self,
        callback: Callable[[Signal | None], None],
        *,
        worker: int,
        owner: Callable[[Signal], int],
        on_error: Callable[[str], None] = ...,
    ) -> SignalWatch:
        """Call ``callback`` (in a thread of the store's) with the signals meant for
        ``worker``, and with None whenever some may have been missed.  From now on this
        store also sends, for each queue its transactions add to, a signal to the worker
        ``owner`` names for it -- none when that is ``worker`` itself, which knows."""
        ...

    def signal(self, signal: Signal) -> None:
        """Send ``signal`` to the worker that owns what it names."""
        ...
