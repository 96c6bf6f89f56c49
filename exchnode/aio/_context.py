"""What every part of a running node shares: store thread, custody log, totals (I/O edge).

The node is split by responsibility -- custody in (``_intake``), custody out
per neighbour (``_forwarder``), its own envelopes (``_outbox``), delivery
(``_inbox``), the status of what it sent (``_status_book``) -- and each part
needs the same few things of the node and nothing of the others: the store,
reached through one thread; the audit log's hook into the store's
transactions; the queue totals that decide back-pressure; the counters and
the log (with :class:`RepeatedLog` for conditions that repeat); and what the
node knows of revoked signers.  :class:`NodeContext` holds exactly those, so
each part takes it (and its own collaborators) in its constructor instead of
the whole Node.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import structlog

from exchnode.aio._service import CustodyLog
from exchnode.audit import AuditEntry, CustodyRecorder
from exchnode.errors import UsageError
from exchnode.store import QueueDepth, SqliteStore, Store

__all__ = ["NodeContext", "RepeatedLog"]

T = TypeVar("T")

COUNTERS = (
    "accepted",
    "duplicates",
    "refused",
    "deferred",
    "forwarded",
    "delivered",
    "reports_sent",
    "receipts_sent",
    "receipts_refused",  # receipts that did not count as delivery (SPEC §10.4)
    "link_failures",
    "revoked",  # envelopes whose custody ended here because their sender is revoked
    "pushed_back",  # requests from neighbours answered 429: too many bytes in flight
)

_NO_KEYS: frozenset[bytes] = frozenset()


def _none_revoked(name: str) -> Collection[bytes]:
    return _NO_KEYS


class RepeatedLog:
    """Log lines for conditions that repeat, at most one per interval per key.

    A neighbour that stays down, or keeps offering items this node defers,
    would otherwise write a line per attempt (the review: 830 KB of log in
    7 minutes for 14 envelopes).  The first line of a key is written at once;
    repeats within ``interval`` seconds are counted, not written; the next line
    after the interval carries ``repeated``, the number left out since the
    last line.  The key is what makes two lines "the same condition": the
    event, the neighbour and the reason code, never a message id.
    """

    def __init__(
        self,
        log: Any,
        interval: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 4096,
    ) -> None:
        self._log = log
        self.interval = interval
        self._clock = clock
        self._max_keys = max_keys
        self._last: dict[tuple[str, ...], list[float]] = {}  # key -> [when written, left out]

    def __call__(self, level: str, event: str, *key: str, **fields: Any) -> bool:
        """Write ``event`` at ``level`` unless ``(event, *key)`` was written within the interval.

        True if the line was written.
        """
        now = self._clock()
        full_key = (event, *key)
        held = self._last.get(full_key)
        if held is not None and now - held[0] < self.interval:
            held[1] += 1
            return False
        if held is None and len(self._last) >= self._max_keys:
            self._forget(now)
        if held is not None and held[1]:
            fields["repeated"] = int(held[1])
        self._last[full_key] = [now, 0]
        getattr(self._log, level)(event, **fields)
        return True

    def _forget(self, now: float) -> None:
        """Bound the keys held: drop those whose interval has passed (else all)."""
        stale = [key for key, (when, _) in self._last.items() if now - when >= self.interval]
        for key in stale or list(self._last):
            del self._last[key]


class NodeContext:
    """The store thread, the custody log, the queue totals, counters and log of one node.

    **The store thread.**  Every store call runs in one dedicated worker
    thread, in submission order (:meth:`run`), so the event loop never waits
    on a disk and the store sees the node's calls in the order they were made.

    **The custody log.**  Once the audit service has attached itself
    (:meth:`attach_custody_log`), every store call that changes custody runs
    through :meth:`audited`: the log encodes the records inside the same
    transaction, and forgets them again if that transaction fails.

    **The totals.**  ``queued`` is what the store holds, refreshed in the
    store thread after every change (:meth:`refresh_totals`), so the loop
    reads it without waiting; ``space`` is set whenever the queues shrink.
    """

    def __init__(
        self,
        name: str,
        clock: Callable[[], float] = time.time,
        *,
        log_repeat_interval: float = 60.0,
    ) -> None:
        self.name = name
        self.clock = clock
        self.log: Any = structlog.get_logger("exchnode.node").bind(node=name)
        #: the log for conditions that repeat (see :class:`RepeatedLog`)
        self.log_repeated = RepeatedLog(self.log, log_repeat_interval)
        #: the signing key ids of a sender whose certificate this node knows to be revoked
        #: (the node directory's ``revoked_keys``; none with a static directory)
        self.revoked_keys: Callable[[str], Collection[bytes]] = _none_revoked
        self.recorder = CustodyRecorder(name)
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.queued = QueueDepth()
        self.space = asyncio.Event()
        self._executor: ThreadPoolExecutor | None = None
        self._store: Store | None = None
        self._owns_store = False
        self._custody_log: CustodyLog | None = None

    # --- the store thread -------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True from :meth:`open` until :meth:`close`."""
        return self._executor is not None

    async def open(self, store: Store | str | os.PathLike[str] | Callable[[], Store]) -> Store:
        """Start the store thread and open ``store`` in it.

        A path is a SqliteStore, and a zero-argument callable (say
        ``partial(PostgresStore, conninfo)``) opens any other: either way the
        store is opened in the store thread, owned, and closed by :meth:`close`.
        A store passed open stays the caller's.
        """
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"store-{self.name}")
        if isinstance(store, str | os.PathLike):
            self._store = await self.run(SqliteStore, Path(store))
            self._owns_store = True
        elif callable(store):
            self._store = await self.run(store)
            self._owns_store = True
        else:
            self._store = store
        self.queued = await self.run(self._store.totals)
        return self._store

    async def close(self) -> None:
        """Close the store if :meth:`open` opened it, then stop the store thread."""
        if self._store is not None and self._owns_store:
            await self.run(self._store.close)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    @property
    def store(self) -> Store:
        if self._store is None:
            raise UsageError(f"node {self.name} is not running")
        return self._store

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a store call in the store thread, after every call submitted before it."""
        if self._executor is None:
            raise UsageError(f"node {self.name} is not running")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(fn, *args, **kwargs))

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def refresh_totals(self) -> None:
        """Run in the store thread after a change; the loop reads ``queued`` without waiting."""
        self.queued = self.store.totals()

    # --- the audit log's custody records ---------------------------------------------

    @property
    def custody_log(self) -> CustodyLog | None:
        return self._custody_log

    def attach_custody_log(self, log: CustodyLog) -> None:
        """Record every custody change in ``log`` (one log per node)."""
        if self._custody_log is not None and self._custody_log is not log:
            raise UsageError(f"{self.name} already has a custody log")
        self._custody_log = log

    def audited(self, call: Callable[[CustodyLog | None], T]) -> T:
        """Run a store call that may log custody (store thread); undo the log's part on failure."""
        log = self._custody_log
        if log is None:
            return call(None)
        mark = log.mark()
        try:
            return call(log)
        except BaseException:
            log.rollback(mark)
            raise

    def log_entries(self, entries: list[AuditEntry]) -> None:
        """Records of no custody change (refusals, links, keys): buffered by the audit log."""
        log = self._custody_log
        if log is not None:
            for entry in entries:
                log.append_entry(entry)
