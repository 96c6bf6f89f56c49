"""The audit log on a running node: events in, durable records, signed tree heads (I/O edge).

Theory of operation
-------------------
:class:`AuditService` is the node's :class:`~exchnode.events.EventSink` and a
:class:`~exchnode.node_service.NodeService`.  The catalog and sharing services
emit their events into it (pass it as their ``events``); it turns each into an
:class:`~exchnode.audit_records.AuditEntry` at once (an event that breaks the
record schema is a bug, raised where it was emitted), numbers and chains them
(``audit_log.AuditLogState``), and appends them to the node's store
(``Store.append_audit``): every ``flush`` seconds, or at once when a batch
fills.  Every ``head_interval`` seconds, if the log grew, it signs a tree head
over what the store holds and stores the head after the records it covers.

At start the state is rebuilt from the store (``AuditLogState.resume``): a log
changed while the node was down fails the start with ``inconsistent-log``
rather than being signed over.  ``verify`` checks the node's own stored log end
to end (``audit_verify.verify_log``) and names what was changed, deleted,
inserted or reordered.

*Not yet:* custody and link events (envelopes accepted, relayed, delivered,
refused; connections) are to be appended inside the store's group commit
(``Store.accept(..., audit=...)``); events emitted but not yet flushed when the
process dies (at most ``flush`` seconds of them) are lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog

from exchnode.audit_log import (
    AuditLogState,
    Checkpoint,
    LoggedRecord,
    TreeHeadVerifier,
    decode_checkpoint,
    decode_tree_head,
)
from exchnode.audit_records import AuditEntry, entry_from_event
from exchnode.audit_verify import VerificationReport, verify_log
from exchnode.errors import UsageError
from exchnode.events import AuditEvent
from exchnode.node_service import ServiceMessage
from exchnode.transport import Handler
from exchnode.waiting import wait_event

if TYPE_CHECKING:
    from exchnode.node import Node

__all__ = ["AuditService"]

_BATCH = 512  # entries that trigger a flush before the interval is up


class AuditService:
    """A node's audit log: see the module docstring."""

    kinds: frozenset[str] = frozenset()

    def __init__(self, *, flush: float = 0.2, head_interval: float = 10.0) -> None:
        if flush <= 0 or head_interval <= 0:
            raise UsageError("flush and head_interval are positive seconds")
        self.flush = flush
        self.head_interval = head_interval
        self._node: Node | None = None
        self._state: AuditLogState | None = None
        self._pending: list[AuditEntry] = []
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._stored_size = 0
        self._head_size = 0
        self.log: Any = structlog.get_logger("exchnode.audit")

    # --- EventSink ---------------------------------------------------------------------

    def emit(self, event: AuditEvent) -> None:
        """Take one event; it reaches the store within ``flush`` seconds."""
        self.append_entry(entry_from_event(event))

    def append_entry(self, entry: AuditEntry) -> None:
        self._pending.append(entry)
        if len(self._pending) >= _BATCH:
            self._wake.set()

    # --- the service seam ------------------------------------------------------------

    async def start(self, node: Node) -> None:
        self._node = node
        self.log = self.log.bind(node=node.name)
        records, heads, checkpoint = await self._load(all_heads=False)
        last_head = decode_tree_head(heads[-1])[0] if heads else None
        self._state = AuditLogState.resume(
            node.identity, records, last_head=last_head, checkpoint=checkpoint
        )
        self._stored_size = self._head_size = self._state.size
        if last_head is not None:
            self._head_size = last_head.tree_size
        node.run_task(self._run, "audit")

    def routes(self) -> Mapping[tuple[str, str], Handler]:
        return {}

    async def take(self, message: ServiceMessage) -> None:
        raise UsageError("the audit service takes no messages")  # kinds is empty

    async def close(self) -> None:
        """Store what is pending and sign a last head, while the store is still open."""
        if self._node is not None and self._state is not None:
            await self._flush()
            await self._sign_head()

    # --- the loop --------------------------------------------------------------------

    async def _run(self) -> None:
        node = self._running()
        await node.ready()
        last_head = node.now()
        while True:
            await wait_event(self._wake, self.flush)
            self._wake.clear()
            await self._flush()
            if node.now() - last_head >= self.head_interval:
                await self._sign_head()
                last_head = node.now()

    async def _flush(self) -> None:
        node, state = self._running(), self._ready_state()
        async with self._lock:
            if not self._pending:
                return
            entries, self._pending = self._pending, []
            records: list[LoggedRecord] = state.append(entries)
            await node.run_in_store(node.store.append_audit, [r.data for r in records])
            self._stored_size = records[-1].seq + 1

    async def _sign_head(self) -> None:
        node, state = self._running(), self._ready_state()
        async with self._lock:
            if self._stored_size == self._head_size:
                return
            head = state.sign_head(int(node.now() * 1000))
            await node.run_in_store(node.store.add_tree_head, head.data)
            self._head_size = head.tree_size

    # --- reading ---------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Records in the log, pending ones included."""
        return self._ready_state().size + len(self._pending)

    async def sync(self) -> None:
        """Store everything emitted so far and sign a head over it (an auditor's "now")."""
        await self._flush()
        await self._sign_head()

    async def verify(self) -> VerificationReport:
        """Check this node's stored log (from its checkpoint on) against its signed heads."""
        records, heads, checkpoint = await self._load(all_heads=True)
        name, directory = self._running().name, self._running().directory
        return verify_log(name, records, heads, directory, checkpoint=checkpoint)

    async def _load(
        self, *, all_heads: bool
    ) -> tuple[list[tuple[int, bytes]], list[bytes], Checkpoint | None]:
        """The stored log from its checkpoint on: records, heads (all, or the last), checkpoint."""
        node = self._running()
        store, verifier = node.store, TreeHeadVerifier(node.directory)

        def load() -> tuple[list[tuple[int, bytes]], list[bytes], Checkpoint | None]:
            stored = store.audit_checkpoint()
            checkpoint = None if stored is None else decode_checkpoint(stored, verifier)
            start = 0 if checkpoint is None else checkpoint.size
            heads = store.tree_heads() if all_heads else store.tree_heads(1)
            return store.audit_records(start, store.audit_size() + 1), heads, checkpoint

        return await node.run_in_store(load)

    def _running(self) -> Node:
        if self._node is None:
            raise UsageError("the audit service is not attached to a running node")
        return self._node

    def _ready_state(self) -> AuditLogState:
        if self._state is None:
            raise UsageError("the audit service has not started")
        return self._state
