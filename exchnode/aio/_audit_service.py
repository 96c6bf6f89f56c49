"""The audit log on a running node: events in, durable records, signed tree heads (I/O edge).

Theory of operation
-------------------
:class:`AuditService` is the node's :class:`~exchnode.core.EventSink` and a
:class:`~exchnode.aio.NodeService`.  The catalog and sharing services
emit their events into it (pass it as their ``events``); it turns each into an
:class:`~exchnode.audit.AuditEntry` at once (an event that breaks the
record schema is a bug, raised where it was emitted), numbers and chains them
(``audit_log.AuditLogState``), and appends them to the node's store
(``Store.append_audit``): every ``flush`` seconds, or at once when a batch
fills.  Every ``head_interval`` seconds, if the log grew, it signs a tree head
over what the store holds and stores the head after the records it covers.
Record times never go back (``AuditLogState.append``).

**The seal** (SPEC §20.6).  Between two heads, records would lie under no
signature: a crash would leave them so, and whoever can write the store file
could forge or rewrite them, to be signed over at the next head.  So the
service is the store's sealer (``AuditStore.set_audit_sealer``): every
transaction that appends records, or moves the checkpoint, also stores a head
signed over the whole log (``AuditLogState.sign_seal``).  The store keeps only
the newest seal, so it costs one signature per commit and no space.

Retention (SPEC §20.9): every ``prune_every`` seconds, records older than
``retention`` (default 183 days: the six months China's protection-level
rules ask for, and a little more) are deleted below a **checkpoint**, the
newest signed head that covers only such records -- and, on a node with a
parent, only records its parent has witnessed under a head (the ``since``
of the parent's head requests, :meth:`note_witnessed`) -- stored with its
tree's frontier.  The seal stored in that same transaction names the
checkpoint: it is the node's signature on the pruning, without which a
verifier does not accept the checkpoint (``unsigned-checkpoint``).  The rest
of the log stays verifiable from that checkpoint, and the pruning itself is
a record (``audit.prune``).

At start the stored log is verified end to end (``audit_verify.verify_log``,
its seal, its checkpoint): any finding fails the start with
``inconsistent-log`` naming it, rather than the node signing over a log
changed while it was down.  Then the state is restored from the store
(``AuditLogState.restore``: the tree's frontier, checked against the seal
and the last head).  ``verify`` checks the node's own stored log the
same way, optionally against heads its parent witnessed, and names what was
changed, deleted, inserted or reordered.

Memory (issue 13): the log's interior nodes live in the store, written in
each transaction that appends records (the service is the store's tree
source, ``AuditStore.set_audit_tree``), and the state keeps only the tree's
frontier: it is settled (``AuditLogState.settle``) whenever a mark is taken,
which happens only between store transactions.  Proofs read the nodes they
need from the store, in the store thread.  Verification reads the records
and heads a page at a time (``audit.stored_records``, ``stored_heads``), in
a worker thread of its own so
that the loop and custody go on meanwhile, with pruning held off.  A store
from before schema 6 gets the rows of its records derived at the first
start (``audit.derive_tree_rows``), with progress logged.

It is also the node's :class:`~exchnode.aio.CustodyLog`: the node
builds one record per custody batch (``audit_custody``) and hands it over
*inside* the store transaction that takes, relays, delivers or expires the
envelopes, so custody and its record are durable together (one flush of the
group commit).  The pure log state is touched only in the node's store
thread, in order with those transactions; a transaction that fails after
its records were numbered rolls the state back.  Events emitted but not yet
flushed when the process dies (at most ``flush`` seconds of catalog,
subscription and link events) are lost; custody records never are.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from exchnode.aio._own_keys import OWN_CERTIFICATES, earlier_identities, with_current
from exchnode.aio._service import ServiceMessage
from exchnode.aio._transport import Handler
from exchnode.aio._waiting import wait_event
from exchnode.audit import (
    Actor,
    AuditEntry,
    AuditLogState,
    Category,
    Checkpoint,
    LogMark,
    Outcome,
    Tamper,
    TreeHeadVerifier,
    VerificationReport,
    decode_checkpoint,
    decode_record,
    decode_tree_head,
    derive_tree_rows,
    details,
    encode_checkpoint,
    entry_from_event,
    read_log_view,
    restore_state,
    verify_stored,
)
from exchnode.core import AuditEvent, StaticDirectory, leaf_hash
from exchnode.errors import InconsistentLogError, UsageError
from exchnode.federation import Relation
from exchnode.store import AuditRow, AuditStore, SharedAuditStore, StoredTail

if TYPE_CHECKING:
    from exchnode.aio._node import Node

__all__ = ["AuditService"]

_BATCH = 512  # entries that trigger a flush before the interval is up
RETENTION = 183 * 86_400.0  # seconds: at least six months (GB/T 22239 asks for 6)
_WITNESSED_META = "audit.witnessed"  # the largest size the parent said it witnessed
_PRUNE_CHUNK = 10_000  # records deleted per transaction
_DERIVE_LOG_EVERY = 100_000  # records between two progress lines while deriving the tree
_T = TypeVar("_T")


class AuditService:
    """A node's audit log: see the module docstring."""

    kinds: frozenset[str] = frozenset()

    def __init__(
        self,
        *,
        flush: float = 0.2,
        head_interval: float = 10.0,
        retention: float = RETENTION,
        prune_every: float = 3600.0,
        accept_unsigned_tail: bool = False,
    ) -> None:
        """``accept_unsigned_tail``: for one start, after an upgrade, take records that no head
        covers -- left by a version without the seal that crashed between two heads -- when
        that is ALL the stored log's verification finds; a head is signed over them at once
        and the acceptance is an audit record naming how many.  The key holder could re-sign
        any log anyway (THREATS T17); this makes doing so explicit and on the record."""
        if flush <= 0 or head_interval <= 0 or prune_every <= 0:
            raise UsageError("flush, head_interval and prune_every are positive seconds")
        if retention < 86_400:
            raise UsageError(f"retention is at least a day (86400 s), got {retention!r}")
        self.flush = flush
        self.head_interval = head_interval
        self.retention = retention
        self.prune_every = prune_every
        self._node: Node | None = None
        self._state: AuditLogState | None = None
        self._pending: list[AuditEntry] = []
        self._wake = asyncio.Event()
        self._witnessed = 0  # the largest head size the parent said it keeps for this node
        self._witnessed_stored = 0
        self._pruning = asyncio.Lock()
        self.accept_unsigned_tail = accept_unsigned_tail
        # A log the workers of a hub share (``store._audit_follow``): set at start.
        self._shared: SharedAuditStore | None = None
        self._stale = False  # a transaction failed after a follow: reload at the next one
        self._own: TreeHeadVerifier | None = None
        self._checkpoint_seen: tuple[bytes, Checkpoint] | None = None
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
        """Verify the stored log, rebuild the state from it, and become the store's sealer.

        Raises ``InconsistentLogError`` naming the findings if the stored log
        does not verify: the node must not sign over a log changed while it
        was down (nor over records no head covers).
        """
        self._node = node
        self.log = self.log.bind(node=node.name)
        store: AuditStore = node.store
        view = await node.run_in_store(read_log_view, store)
        # The node's own keys: the heads are its own (signed with its current key, or one it
        # rotated out: ``_own_keys``), and the directory may not answer yet (a signed one that
        # expired while the node was down fails closed).
        kept = await node.get_meta(OWN_CERTIFICATES)
        own = self._own_keys(node, kept)
        report = await asyncio.to_thread(verify_stored, node.name, store, view, own, ())
        accepted = 0
        if not report.ok:
            unsigned = [f for f in report.findings if f.kind is Tamper.UNSIGNED_RECORDS]
            if not (self.accept_unsigned_tail and unsigned == list(report.findings)):
                hint = (
                    "; if these are records an older version left under no head when it "
                    "crashed, and nothing else, start once with --accept-unsigned-audit-tail"
                    if unsigned
                    else ""
                )
                raise InconsistentLogError(
                    f"the stored audit log does not verify ({len(report.findings)} finding(s)): "
                    f"{report.summary()}{hint}"
                )
            last = decode_tree_head(view.last_head)[0].tree_size if view.last_head else 0
            accepted = view.size - last
        checkpoint = (
            None
            if view.checkpoint is None
            else decode_checkpoint(view.checkpoint, TreeHeadVerifier(own))
        )
        last_head = decode_tree_head(view.last_head)[0] if view.last_head else None
        seal = decode_tree_head(view.seal)[0] if view.seal is not None else None
        await node.run_in_store(self._derive_tree, store, checkpoint)
        self._state = await node.run_in_store(
            lambda: restore_state(
                node.identity,
                store,
                seal=seal if seal is not None and seal.tree_size == view.size else None,
                last_head=last_head,
                checkpoint=checkpoint,
            )
        )
        witnessed = await node.get_meta(_WITNESSED_META)
        if witnessed is not None and len(witnessed) == 8:
            self._witnessed = self._witnessed_stored = int.from_bytes(witnessed, "big")
        certificate = node.identity.peer.certificate
        update = with_current(kept, certificate) if certificate is not None else None
        if update is not None:  # a new key: remembered, so its heads verify after the next
            await node.set_meta(OWN_CERTIFICATES, update)
        state = self._state
        await node.run_in_store(store.set_audit_tree, state.tree_rows)
        await node.run_in_store(store.set_audit_sealer, self._seal)
        if isinstance(store, SharedAuditStore):
            # Other workers of the hub may append to the log, and a commit may be refused after
            # it was made (PostgreSQL: unconfirmed by the standby): follow the log as stored.
            self._shared, self._own = store, TreeHeadVerifier(own)
            await node.run_in_store(store.set_audit_follower, self)
        node.attach_custody_log(self)
        if accepted:
            self._administration(
                node, "audit.accept-unsigned", "accepted", count=accepted, size=view.size
            )
            await self.flush_now()
            await self._sign_head()
            self.log.warning("records under no head accepted", count=accepted, size=view.size)
        node.run_task(self._run, "audit")

    def _derive_tree(self, store: AuditStore, checkpoint: Checkpoint | None) -> None:
        """Store the tree rows of records stored without them (a store from before schema 6)."""
        total = store.audit_size() - store.audit_nodes_due()
        if total <= 0:
            return
        self.log.info("deriving the audit tree from the stored records", records=total)
        logged = 0

        def progress(done: int, total: int) -> None:
            nonlocal logged
            if done - logged >= _DERIVE_LOG_EVERY or done == total:
                logged = done
                self.log.info("audit tree derived", done=done, total=total)

        derive_tree_rows(store, checkpoint, progress=progress)

    def _administration(self, node: Node, action: str, outcome: str, **detail: int) -> None:
        """One record of what the log did to itself (pruning, an accepted tail), by the node."""
        self.append_entry(
            AuditEntry(
                time_ms=int(node.now() * 1000),
                category=Category.ADMINISTRATION,
                action=action,
                actor=Actor.node(node.name),
                outcome=Outcome.ok(outcome),
                detail=details(**detail),
            )
        )

    @staticmethod
    def _own_keys(node: Node, kept: bytes | None) -> StaticDirectory:
        """The node's identities its heads may be signed with: the current one and those kept."""
        now = datetime.fromtimestamp(node.now(), UTC)
        earlier = earlier_identities(kept, node.name, node.ca_bundle, node.trust, now)
        return StaticDirectory([*earlier, node.identity.peer])

    def _seal(self, size: int, checkpoint_size: int) -> bytes:
        """The store's sealer (store thread): a head over the ``size`` records now stored."""
        state, node = self._ready_state(), self._running()
        if size != state.size:
            raise UsageError(f"a seal over {size} records asked of a log of {state.size}")
        return state.sign_seal(int(node.now() * 1000), checkpoint_size).data

    def routes(self) -> Mapping[tuple[str, str], Handler]:
        return {}

    async def take(self, message: ServiceMessage) -> None:
        raise UsageError("the audit service takes no messages")  # kinds is empty

    async def close(self) -> None:
        """Store what the other services emitted; the node calls ``drained`` when it is quiet."""
        if self._node is not None and self._state is not None:
            await self._flush()

    # --- CustodyLog: the node's store thread -------------------------------------------

    def mark(self) -> LogMark:
        """Where the log is now (store thread, between transactions: see the module doc)."""
        state = self._ready_state()
        state.settle()  # everything before is stored, with its tree rows, or was rolled back
        return state.mark()

    def encode(self, entries: Sequence[AuditEntry]) -> list[AuditRow]:
        return [AuditRow(record.seq, record.data) for record in self._ready_state().append(entries)]

    def rollback(self, mark: object) -> None:
        if not isinstance(mark, LogMark):
            raise UsageError("rollback takes a mark from this log")
        self._roll_back(self._ready_state(), mark)

    def _roll_back(self, state: AuditLogState, mark: LogMark) -> None:
        if self._shared is not None:
            # The state may have followed other workers since the mark: it is reloaded from
            # the store, under the lock, at the next transaction instead.
            self._stale = True
            return
        state.rollback(mark)

    # --- AuditFollower: a log the workers of a hub share (store thread, under its lock) ----

    def follow(self, tail: StoredTail) -> None:
        """Before records are numbered: the state becomes the log as stored (if it is not)."""
        state = self._ready_state()
        if self._stale or state.size != tail.size:
            self._reload(state, tail)

    def renumber(self, rows: Sequence[AuditRow], tail: StoredTail) -> list[AuditRow]:
        """Records numbered before the lock, numbered again if other workers appended since."""
        state = self._ready_state()
        if not self._stale and (not rows or rows[0][0] == tail.size):
            return list(rows)  # nothing stored meanwhile: the state was the stored log
        entries = [decode_record(data).entry for _, data in rows]
        self._reload(state, tail)
        return self.encode(entries)

    def _reload(self, state: AuditLogState, tail: StoredTail) -> None:
        size = tail.size

        def nodes(level: int, index: int) -> bytes:
            found = tail.node(level, index) if level else tail.record(index)
            if found is None:
                raise LookupError(f"audit node {level}/{index} is not stored")
            return found if level else leaf_hash(found)  # a record's leaf (SPEC §20.3)

        seal_data, head_data = tail.seal(), tail.last_head()
        seal = decode_tree_head(seal_data)[0] if seal_data is not None else None
        state.follow(
            nodes,
            size,
            tail.record(size - 1) if size else None,
            seal=seal if seal is not None and seal.tree_size == size else None,
            last_head=decode_tree_head(head_data)[0] if head_data is not None else None,
            checkpoint=self._stored_checkpoint(tail.checkpoint()),
        )
        self._stale = False

    def _stored_checkpoint(self, data: bytes | None) -> Checkpoint | None:
        """The stored checkpoint, verified once per value (worker 0 moves it, rarely)."""
        if data is None:
            return None
        seen = self._checkpoint_seen
        if seen is not None and seen[0] == data:
            return seen[1]
        assert self._own is not None  # set with the follower
        checkpoint = decode_checkpoint(data, self._own)
        self._checkpoint_seen = (data, checkpoint)
        return checkpoint

    async def drained(self) -> None:
        """Store everything and sign a last head over it (the node is no longer moving mail)."""
        if self._node is not None and self._state is not None:
            await self._flush()
            await self._sign_head()

    # --- the loop --------------------------------------------------------------------

    async def _run(self) -> None:
        node = self._running()
        await node.ready()
        last_head = node.now()
        last_prune = last_head - self.prune_every + min(self.prune_every, 60.0)  # soon after start
        while True:
            await wait_event(self._wake, self.flush)
            self._wake.clear()
            await self._flush()
            if node.now() - last_head >= self.head_interval:
                await self._sign_head()
                last_head = node.now()
            if node.now() - last_prune >= self.prune_every:
                last_prune = node.now()
                await self.prune()

    async def flush_now(self) -> None:
        """Store every record appended so far, now (not waiting for the flush interval)."""
        await self._flush()

    async def _flush(self) -> None:
        if not self._pending:
            return
        entries, self._pending = self._pending, []
        store: AuditStore = self._running().store
        call = asyncio.ensure_future(
            self._in_store(lambda: store.append_audit(self.encode(entries)))
        )
        try:
            await asyncio.shield(call)
        except asyncio.CancelledError:
            # The store call runs on in its thread: only if it did not store them are the
            # entries kept for the next flush (else they would be stored twice).
            with contextlib.suppress(BaseException):
                await call
            if not call.done() or call.cancelled() or call.exception() is not None:
                self._pending[:0] = entries
            raise
        except BaseException:
            self._pending[:0] = entries  # not stored: try again with the next flush
            raise

    async def _sign_head(self) -> None:
        node, state = self._running(), self._ready_state()
        if not self._signs_heads(node):
            return
        now_ms = int(node.now() * 1000)
        shared = self._shared

        def sign() -> None:
            if shared is not None:
                shared.follow_audit()  # a head over the log as stored (a prefix of it, later)
            last = state.last_head
            if state.size == (last.tree_size if last is not None else 0):
                return  # nothing new to sign over
            head = state.sign_head(now_ms)
            node.store.add_tree_head(head.tree_size, head.data)

        await self._in_store(sign)

    async def _in_store(self, work: Callable[[], _T]) -> _T:
        """Run ``work`` in the store thread; roll the log back if its store call fails."""
        state = self._ready_state()

        def run() -> _T:
            state.settle()  # between transactions: what was appended is stored or rolled back
            mark = state.mark()
            try:
                return work()
            except BaseException:
                self._roll_back(state, mark)
                raise

        return await self._running().run_in_store(run)

    # --- retention -----------------------------------------------------------------

    def note_witnessed(self, size: int) -> None:
        """The parent asked for this node's head since ``size``: it keeps a head of that size.

        Pruning never goes past it (SPEC §20.9): a node with a parent deletes
        only records its parent has seen under a head.  Stored with the next
        prune; a lower value (a parent that reset its kept head) changes nothing.
        """
        self._witnessed = max(self._witnessed, size)

    async def prune(self) -> int:
        """Delete the records older than ``retention`` below a new checkpoint; how many were.

        Nothing happens until a signed head covers only records that old (and,
        on a node with a parent, that the parent has witnessed): the
        checkpoint must be a head, so the log stays verifiable from it, and
        the seal stored with it names it, so it counts.
        """
        async with self._pruning:  # the loop's and an operator's, one after the other
            return await self._prune()

    async def _prune(self) -> int:
        node, state = self._running(), self._ready_state()
        if not self._signs_heads(node):
            return 0
        store: AuditStore = node.store
        if self._shared is not None:
            await node.run_in_store(self._shared.follow_audit)
        cutoff_ms = int((node.now() - self.retention) * 1000)
        if self._witnessed != self._witnessed_stored:
            await node.set_meta(_WITNESSED_META, self._witnessed.to_bytes(8, "big"))
            self._witnessed_stored = self._witnessed
        has_parent = Relation.PARENT in node.neighbours().values()
        witnessed = self._witnessed if has_parent else None

        def checkpoint_at() -> int:
            first = state.checkpoint.size if state.checkpoint is not None else 0
            low, high = first, state.size  # bisect: the first record young enough to keep
            while low < high:
                middle = (low + high) // 2
                ((_, data),) = store.audit_records(middle, 1)
                if decode_record(data).entry.time_ms < cutoff_ms:
                    low = middle + 1
                else:
                    high = middle
            limit = low if witnessed is None else min(low, witnessed)
            stored = store.tree_head_at_most(limit)
            if stored is None:
                return first
            head = decode_tree_head(stored)[0]  # our own, stored after its records
            if head.tree_size <= first:
                return first
            checkpoint = state.make_checkpoint(head)
            # The store seals this transaction: a head naming the checkpoint, signed now.
            store.set_audit_checkpoint(checkpoint.size, encode_checkpoint(checkpoint))
            state.prune(checkpoint)
            return head.tree_size

        size = await node.run_in_store(checkpoint_at)
        deleted = 0
        while removed := await node.run_in_store(store.prune_audit, size, _PRUNE_CHUNK):
            deleted += removed
        while await node.run_in_store(store.prune_heads, size, _PRUNE_CHUNK):
            pass  # the heads below the checkpoint: superseded by its own
        if deleted:
            self._administration(node, "audit.prune", "pruned", count=deleted, tree_size=size)
            self.log.info("audit records pruned", count=deleted, checkpoint=size)
        return deleted

    # --- reading ---------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Records in the log, pending ones included."""
        return self._ready_state().size + len(self._pending)

    async def sync(self) -> None:
        """Store everything emitted so far and sign a head over it (an auditor's "now")."""
        await self._flush()
        await self._sign_head()

    async def latest_head(self) -> bytes | None:
        """The newest signed tree head stored (encoded), or None before the first."""
        store: AuditStore = self._running().store
        heads = await self._running().run_in_store(store.tree_heads, 1)
        return heads[-1] if heads else None

    async def inclusion_proof(self, seq: int, size: int) -> list[bytes]:
        """RFC 9162 proof that record ``seq`` is in the log of ``size`` records (a head's size).

        Raises ``UsageError`` if ``seq`` is not below ``size``, ``size`` is
        beyond the log, or the record was pruned.
        """
        state = self._ready_state()

        def prove() -> list[bytes]:
            first = state.checkpoint.size if state.checkpoint is not None else 0
            if not first <= seq < size <= state.size:
                raise UsageError(
                    f"no inclusion proof of record {seq} in {size}: the log holds "
                    f"{first}..{state.size - 1}"
                )
            return _from_stored_tree(lambda: state.inclusion_proof(seq, size))

        return await self._running().run_in_store(prove)

    async def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """RFC 9162 proof that the log of ``new_size`` records extends that of ``old_size``.

        Raises ``UsageError`` if a size is outside the log, or if ``old_size``
        lies below the retention checkpoint (those hashes are gone: a witness
        starts again from the checkpoint's head).
        """
        state = self._ready_state()

        def prove() -> list[bytes]:
            if not 0 <= old_size <= new_size <= state.size:
                raise UsageError(
                    f"no consistency proof from {old_size} to {new_size}: the log has {state.size}"
                )
            checkpoint = state.checkpoint
            if checkpoint is not None and 0 < old_size < checkpoint.size:
                raise UsageError(
                    f"records below {checkpoint.size} are pruned: no proof from {old_size}"
                )
            return _from_stored_tree(lambda: state.consistency_proof(old_size, new_size))

        return await self._running().run_in_store(prove)

    async def verify(self, witnessed: Sequence[bytes] = ()) -> VerificationReport:
        """Check this node's stored log (from its checkpoint on) against its signed heads.

        ``witnessed``: heads of this node its parent keeps (SPEC §20.7), each
        verified and compared like the node's own.  The records are read a
        page at a time in a worker thread, up to the log's size when the
        verification began; no pruning runs meanwhile.
        """
        node = self._running()
        store: AuditStore = node.store
        own = self._own_keys(node, await node.get_meta(OWN_CERTIFICATES))
        async with self._pruning:
            view = await node.run_in_store(read_log_view, store)
            return await asyncio.to_thread(
                verify_stored, node.name, store, view, own, tuple(witnessed)
            )

    @staticmethod
    def _signs_heads(node: Node) -> bool:
        """Heads, checkpoints and pruning are worker 0's on a hub run as several workers: one
        writer keeps them in order; the others append records (with their seals) only."""
        worker = node.config.worker
        return worker is None or worker.index == 0

    def _running(self) -> Node:
        if self._node is None:
            raise UsageError("the audit service is not attached to a running node")
        return self._node

    def _ready_state(self) -> AuditLogState:
        if self._state is None:
            raise UsageError("the audit service has not started")
        return self._state


def _from_stored_tree(prove: Callable[[], list[bytes]]) -> list[bytes]:
    """A proof read from the stored tree; a row missing there is the log's inconsistency."""
    try:
        return prove()
    except LookupError as exc:  # the ranges were checked: the store lost a row it must hold
        raise InconsistentLogError(f"the stored audit tree is incomplete: {exc}") from None
