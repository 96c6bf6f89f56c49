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
the whole Node.  :class:`FreshEntries` is how the intake hands what it has
just committed to the forwarders and the inbox, in the store thread, so that
they need not read it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Generic, TypeVar

import structlog

from exchnode.aio._observations import CustodyTimes, RefusalCounts
from exchnode.aio._service import CustodyLog
from exchnode.audit import AuditEntry, CustodyRecorder
from exchnode.errors import UsageError
from exchnode.store import InboundEntry, OutboundEntry, QueueDepth, SqliteStore, Store

__all__ = ["FreshEntries", "NodeContext", "RepeatedLog"]

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
    "cut_through",  # envelopes transferred before this node's own commit of them returned
)

_NO_KEYS: frozenset[bytes] = frozenset()


def _none_revoked(name: str) -> Collection[bytes]:
    return _NO_KEYS


_Entry = TypeVar("_Entry", OutboundEntry, InboundEntry)


class FreshEntries(Generic[_Entry]):
    """What the intake queued since a queue (a neighbour's, or the inbox) was read to its end.

    Why: a forwarder (or the inbox's pump) that has read its whole queue
    would otherwise read back, from the store, what the intake has just
    committed: a trip to the store thread and a query per transfer, at a
    quiet hub per message.  The store stays the truth: this is only ever a
    copy of the queue's tail, and on any doubt it is dropped and the queue
    read from the store again.

    * The reader's read that finds nothing more (in the store thread) starts
      it (:meth:`caught_up`); only on a store no one else writes
      (``NodeContext.sole_writer``).
    * Every commit of the intake that queued entries there adds them, in the
      store thread, right after the commit and in its order (:meth:`offer`),
      so nothing committed after that read is missed and nothing is in it
      twice.  A commit that cannot say where it queued an entry (a store that
      does not number them), or that failed, drops it (:meth:`forget`).
    * The reader takes from it what it may (:meth:`take`).  Whatever makes it
      read the queue again -- a transfer not wholly settled (failed, pushed
      back, deferred), a rescan of the inbox, a restart -- drops it.
    * It holds a bounded amount (a transfer's worth); beyond that it is
      dropped: the reader has fallen behind, and reading the store is the
      better way then.

    Filled in the store thread and taken in the loop's: a lock guards it.
    """

    __slots__ = ("_bytes", "_entries", "_lock", "_max_bytes", "_max_items", "_on")

    def __init__(self, max_items: int, max_bytes: int) -> None:
        self._lock = threading.Lock()
        self._entries: deque[_Entry] = deque()
        self._bytes = 0
        self._on = False
        self._max_items = max_items
        self._max_bytes = max_bytes

    @property
    def active(self) -> bool:
        """True while it holds every entry queued since the last read to the end."""
        return self._on

    @property
    def drained(self) -> bool:
        """True while it is active and holds nothing: the reader has everything committed."""
        with self._lock:
            return self._on and not self._entries

    def caught_up(self) -> None:
        """The queue was read to its end (store thread): track what is committed from now on."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0
            self._on = True

    def offer(self, entries: Iterable[_Entry]) -> None:
        """Entries just committed, in seq order (store thread, after the commit)."""
        with self._lock:
            if not self._on:
                return
            for entry in entries:
                self._entries.append(entry)
                self._bytes += len(entry.data)
            if len(self._entries) > self._max_items or self._bytes > self._max_bytes:
                self._drop()

    def forget(self) -> None:
        """Drop it: the next entries are read from the store (either thread)."""
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        self._entries.clear()
        self._bytes = 0
        self._on = False

    def take(self, now_ms: int, max_count: int, max_bytes: int) -> list[_Entry] | None:
        """The next entries, as ``Store.pending`` would give them; None: read the store.

        Expired entries are passed over (the expiry takes them from the store).
        """
        with self._lock:
            if not self._on:
                return None
            entries = self._entries
            out: list[_Entry] = []
            total = 0
            while entries:
                entry = entries[0]
                size = len(entry.data)
                if entry.expires_ms > now_ms:
                    if out and total + size > max_bytes:
                        break
                    out.append(entry)
                    total += size
                entries.popleft()
                self._bytes -= size
                if len(out) >= max_count:
                    break
            return out


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


class _StoreThread:
    """One worker thread running calls in submission order; each result comes back on its loop.

    What ``run_in_executor`` on a one-thread pool does, for a fraction of the
    work per call: no ``concurrent.futures.Future`` with its lock and
    callbacks chained to an asyncio one, just the loop's future, resolved by
    ``call_soon_threadsafe``.  Every store call of the node goes through it
    (at a quiet hub, one or two per message).  Like an executor's, a call
    whose caller was cancelled before it started is skipped (best effort: one
    that has started runs to its end).
    """

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[
            tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Callable[[], Any]] | None
        ] = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._work, name=name, daemon=True)
        self._worker.start()

    def submit(self, loop: asyncio.AbstractEventLoop, call: Callable[[], T]) -> asyncio.Future[T]:
        future: asyncio.Future[T] = loop.create_future()
        self._calls.put((loop, future, call))
        return future

    def shutdown(self) -> None:
        """Run every call submitted, then stop (blocks until the thread has ended)."""
        self._calls.put(None)
        self._worker.join()

    def _work(self) -> None:
        calls = self._calls
        while (submitted := calls.get()) is not None:
            _run_one(*submitted)
            del submitted  # nothing of a call outlives it while the thread waits for the next


def _run_one(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], call: Callable[[], Any]
) -> None:
    if future.cancelled():
        return
    try:
        result = call()
    except BaseException as exc:  # handed to the caller, as an executor does
        _hand_back(loop, _fail, future, exc)
    else:
        _hand_back(loop, _resolve, future, result)


def _hand_back(
    loop: asyncio.AbstractEventLoop,
    settle: Callable[[asyncio.Future[Any], Any], None],
    future: asyncio.Future[Any],
    value: Any,
) -> None:
    with contextlib.suppress(RuntimeError):  # the loop has closed: no one is waiting any more
        loop.call_soon_threadsafe(settle, future, value)


def _resolve(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        if isinstance(exc, StopIteration):  # a future cannot raise it
            exc = RuntimeError(f"a store call raised {exc!r}")
        future.set_exception(exc)


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
        #: for monitoring: when custody began and ended, refusals by reason (``_observations``)
        self.custody = CustodyTimes()
        self.refusal_counts = RefusalCounts()
        self.queued = QueueDepth()
        self.space = asyncio.Event()
        self._executor: ThreadPoolExecutor | None = None  # for a loop that runs calls itself
        self._thread: _StoreThread | None = None
        self._store: Store | None = None
        self._owns_store = False
        self._custody_log: CustodyLog | None = None
        #: only this node changes the store, and it numbers what it queues (a SqliteStore:
        #: its connection holds the file's lock), so what the node commits is all there is
        #: to forward (``Forwarder.fresh``); never for a store several workers share
        self.sole_writer = False

    # --- the store thread -------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True from :meth:`open` until :meth:`close`."""
        return self._thread is not None

    async def open(self, store: Store | str | os.PathLike[str] | Callable[[], Store]) -> Store:
        """Start the store thread and open ``store`` in it.

        A path is a SqliteStore, and a zero-argument callable (say
        ``partial(PostgresStore, conninfo)``) opens any other: either way the
        store is opened in the store thread, owned, and closed by :meth:`close`.
        A store passed open stays the caller's.
        """
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"store-{self.name}")
        self._thread = _StoreThread(f"store-{self.name}")
        if isinstance(store, str | os.PathLike):
            self._store = await self.run(SqliteStore, Path(store))
            self._owns_store = True
        elif callable(store):
            self._store = await self.run(store)
            self._owns_store = True
        else:
            self._store = store
        self.sole_writer = isinstance(self._store, SqliteStore)
        self.queued = await self.run(self._store.totals)
        return self._store

    async def close(self) -> None:
        """Close the store if :meth:`open` opened it, then stop the store thread."""
        if self._store is not None and self._owns_store:
            await self.run(self._store.close)
        if self._thread is not None:
            self._thread.shutdown()
            self._thread = None
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
        thread, executor = self._thread, self._executor
        if thread is None or executor is None:
            raise UsageError(f"node {self.name} is not running")
        loop = asyncio.get_running_loop()
        call = partial(fn, *args, **kwargs) if args or kwargs else fn
        if getattr(loop, "inline_executor", False):
            # A loop that runs executor work its own way (the simulator's, inline, so that no
            # thread works while its time jumps): through it, in this one-thread executor.
            # (Not any loop whose run_in_executor differs from asyncio's: uvloop's does, and
            # it checks every call with ``inspect``, ~20 µs of a store call's cost.)
            return await loop.run_in_executor(executor, call)
        return await thread.submit(loop, call)

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
