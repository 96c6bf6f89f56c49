"""What every part of a running node shares: store thread, custody log, totals (I/O edge).

The node is split by responsibility -- custody in (``_intake``), custody out
per neighbour (``_forwarder``), its own envelopes (``_outbox``), delivery
(``_inbox``), the status of what it sent (``_status_book``) -- and each part
needs the same few things of the node and nothing of the others: the store,
reached through one thread; the audit log's hook into the store's
transactions; the queue totals that decide back-pressure; the counters and
the log.  :class:`NodeContext` holds exactly those, so each part takes it
(and its own collaborators) in its constructor instead of the whole Node.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import structlog

from exchnode.aio._service import CustodyLog
from exchnode.audit import AuditEntry, CustodyRecorder
from exchnode.errors import UsageError
from exchnode.store import QueueDepth, SqliteStore, Store

__all__ = ["NodeContext"]

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
    "link_failures",
)


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

    def __init__(self, name: str, clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self.clock = clock
        self.log: Any = structlog.get_logger("exchnode.node").bind(node=name)
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

    async def open(self, store: Store | str | os.PathLike[str]) -> Store:
        """Start the store thread and open ``store`` in it (a path: a SqliteStore it owns)."""
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"store-{self.name}")
        if isinstance(store, str | os.PathLike):
            self._store = await self.run(SqliteStore, Path(store))
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
