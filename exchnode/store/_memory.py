"""MemoryStore: the store's in-memory twin, for tests and whole-federation simulations.

Same semantics as :class:`~exchnode.store.SqliteStore` and
:class:`~exchnode.store.PostgresStore` -- the same test suite runs against
all three -- except durability: nothing survives the
process.  Use it where a test or a simulated federation needs a store
without a disk; never where custody matters.

Layout: one insertion-ordered dict per queue (sequence numbers only grow,
so insertion order is FIFO order), the dedup records in a dict, and two
heaps ordered by expiry, cleaned lazily: a heap item whose entry or record
is gone (or was replaced) is skipped when popped.  The audit log is a dict
by seq (insertion order is seq order) and a list of heads.

``accept`` is all-or-nothing like a transaction: it plans the whole
batch (``_base.plan_accept``, the rule every backend applies), calls the audit
callback and checks its records, and only then changes anything.
"""

from __future__ import annotations

import bisect
import heapq
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from exchnode.errors import UsageError
from exchnode.federation import PeerState
from exchnode.store._audit_tree import (
    AuditTreeSource,
    check_node_rows,
    node_key,
    source_rows,
)
from exchnode.store._base import CustodyChecks, DepthsInMemory, StoreLifeCycle, plan_accept
from exchnode.store._checks import (
    check_checkpoint_update,
    check_count,
    check_limit,
    check_meta,
    check_meta_changes,
    check_meta_range,
    check_page,
    check_peer_state,
    check_prune_audit,
    check_seal,
    check_seqs,
    check_time,
    check_tree_head,
    prefix_end,
)
from exchnode.store._records import (
    AcceptItem,
    AcceptOutcome,
    AuditHook,
    AuditRow,
    AuditSealer,
    ExpiredEntry,
    ExpiryAuditHook,
    InboundEntry,
    OutboundEntry,
    QueueDepths,
    SeenRecord,
    SendRecord,
    check_audit_rows,
    entry_fields,
    take_within,
)

if TYPE_CHECKING:
    from exchnode.store._interface import Store

__all__ = ["MemoryStore"]

_INBOX = ""  # the expiry heap's queue name for the inbox (next hops are never empty)


class MemoryStore(CustodyChecks, DepthsInMemory, StoreLifeCycle):
    """A :class:`~exchnode.store.Store` held in memory; not durable."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closed = False
        self._seen: dict[tuple[str, bytes], SeenRecord] = {}
        self._seen_heap: list[tuple[int, str, bytes]] = []
        self._sends: dict[bytes, SendRecord] = {}  # send key -> the first message
        self._outbound: dict[str, dict[int, OutboundEntry]] = {}
        self._inbox: dict[int, InboundEntry] = {}
        self._entry_heap: list[tuple[int, int, str, int]] = []  # expires, inbox?0:1, queue, seq
        self._last_seq = {"outbound": 0, "inbox": 0}
        self._peers: dict[str, PeerState] = {}
        self._meta: dict[str, bytes] = {}
        self._depths = QueueDepths()
        self._audit: dict[int, bytes] = {}  # seqs _audit_first .. _audit_next - 1
        self._audit_first = 0
        self._audit_next = 0
        self._heads: list[tuple[int, bytes]] = []  # (tree size, head)
        self._heads_pruned = 0  # heads deleted so far: the position of ``_heads[0]``
        self._checkpoint: tuple[int, bytes] | None = None  # (size, checkpoint)
        self._seal: tuple[int, bytes] | None = None  # (tree size, the sealer's head)
        self._sealer: AuditSealer | None = None
        self._audit_nodes: dict[int, bytes] = {}  # the tree's rows (``_audit_tree``), by seq
        self._nodes_due = 1  # the next tree row expected (1: seq 0 completes no subtree)
        self._tree_source: AuditTreeSource | None = None

    def __repr__(self) -> str:
        return f"MemoryStore({'closed' if self._closed else 'open'})"

    def _check_open(self) -> None:
        if self._closed:
            raise UsageError("the memory store is closed")

    # --- custody in ---------------------------------------------------------------

    def _accept(
        self, batch: list[AcceptItem], now_ms: int, audit: AuditHook | None
    ) -> list[AcceptOutcome]:
        with self._lock:
            self._check_open()
            # Plan first, change nothing: the audit callback may still refuse the batch.
            plan = plan_accept(batch, now_ms, self._seen.get, self._sends.get)
            outcomes = plan.outcomes
            records = (
                check_audit_rows(audit(list(outcomes)), self._audit_next)
                if audit is not None
                else []
            )
            seal = self._sealed(records)
            # Commit.
            for key, (record, _) in plan.seen.items():
                before = self._seen.get(key)
                if before is None or before.expires_ms != record.expires_ms:
                    heapq.heappush(self._seen_heap, (record.expires_ms, *key))
                self._seen[key] = record
            self._sends.update(plan.sends)
            for item, outcome in plan.taken:
                if outcome.local:
                    self._add_inbound(item, outcome.local)
                for hop, targets in outcome.forward.items():
                    self._add_outbound(item, hop, targets)
            self._store_audit(records, seal)
        return outcomes

    def _sealed(
        self, records: list[AuditRow]
    ) -> tuple[tuple[int, bytes] | None, list[tuple[int, bytes]]] | None:
        """The seal over ``records`` and their tree rows (computed before anything changes: the
        sealer or the tree source may raise)."""
        if not records or (self._sealer is None and self._tree_source is None):
            return None
        size = records[-1][0] + 1
        nodes = (
            source_rows(self._tree_source, records[0][0], size, self._due())
            if self._tree_source is not None
            else []
        )
        if self._sealer is None:
            return None, nodes
        covered = self._checkpoint[0] if self._checkpoint is not None else 0
        return (size, check_seal(self._sealer(size, covered))), nodes

    def _store_audit(
        self,
        records: list[AuditRow],
        sealed: tuple[tuple[int, bytes] | None, list[tuple[int, bytes]]] | None = None,
    ) -> None:
        for seq, data in records:
            self._audit[seq] = data
        if records:
            self._audit_next = records[-1][0] + 1
        if sealed is not None:
            seal, nodes = sealed
            if seal is not None:
                self._seal = seal
            self._add_nodes(nodes)

    def _add_nodes(self, rows: list[tuple[int, bytes]]) -> None:
        for seq, hashes in rows:
            self._audit_nodes[seq] = hashes
        if rows:
            self._nodes_due = rows[-1][0] + 2

    def _add_inbound(self, item: AcceptItem, targets: tuple[str, ...]) -> None:
        seq = self._last_seq["inbox"] = self._last_seq["inbox"] + 1
        self._inbox[seq] = InboundEntry(**entry_fields(item, seq, targets))
        self._depths.add_inbound(len(item.data))
        heapq.heappush(self._entry_heap, (item.expires_ms, 0, _INBOX, seq))

    def _add_outbound(self, item: AcceptItem, hop: str, targets: tuple[str, ...]) -> None:
        seq = self._last_seq["outbound"] = self._last_seq["outbound"] + 1
        entry = OutboundEntry(next_hop=hop, **entry_fields(item, seq, targets))
        self._outbound.setdefault(hop, {})[seq] = entry
        self._depths.add_outbound(hop, len(item.data))
        heapq.heappush(self._entry_heap, (item.expires_ms, 1, hop, seq))

    def seen(self, sender: str, message_id: bytes) -> SeenRecord | None:
        with self._lock:
            self._check_open()
            return self._seen.get((sender, message_id))

    # --- outbound -----------------------------------------------------------------

    def pending(
        self, next_hop: str, now_ms: int, max_count: int, max_bytes: int, *, after: int = 0
    ) -> list[OutboundEntry]:
        check_page(now_ms, max_count, max_bytes, after)
        with self._lock:
            self._check_open()
            queue = self._outbound.get(next_hop, {})
            live = (e for s, e in queue.items() if s > after and e.expires_ms > now_ms)
            return take_within(live, max_count, max_bytes)

    def forwarded(
        self, next_hop: str, seqs: Iterable[int], *, audit: Sequence[AuditRow] = ()
    ) -> int:
        wanted = check_seqs(seqs)
        with self._lock:
            self._check_open()
            records = check_audit_rows(audit, self._audit_next)
            self._store_audit(records, self._sealed(records))
            queue = self._outbound.get(next_hop)
            if not queue:
                return 0
            removed = 0
            for seq in wanted:
                entry = queue.pop(seq, None)
                if entry is not None:
                    removed += 1
                    self._forget_outbound(entry)
            return removed

    def _forget_outbound(self, entry: OutboundEntry) -> None:
        if self._depths.remove_outbound(entry.next_hop, len(entry.data)):
            del self._outbound[entry.next_hop]

    # --- inbox --------------------------------------------------------------------

    def inbox(
        self, now_ms: int, max_count: int, *, max_bytes: int | None = None, after: int = 0
    ) -> list[InboundEntry]:
        limit = check_page(now_ms, max_count, max_bytes, after)
        with self._lock:
            self._check_open()
            live = (e for s, e in self._inbox.items() if s > after and e.expires_ms > now_ms)
            return take_within(live, max_count, limit)

    def delivered(self, seqs: Iterable[int], *, audit: Sequence[AuditRow] = ()) -> int:
        wanted = check_seqs(seqs)
        with self._lock:
            self._check_open()
            records = check_audit_rows(audit, self._audit_next)
            self._store_audit(records, self._sealed(records))
            removed = 0
            for seq in wanted:
                entry = self._inbox.pop(seq, None)
                if entry is not None:
                    removed += 1
                    self._depths.remove_inbound(len(entry.data))
            return removed

    # --- expiry -------------------------------------------------------------------

    def _take_expired(
        self, now_ms: int, max_count: int, audit: ExpiryAuditHook | None
    ) -> list[ExpiredEntry]:
        out: list[ExpiredEntry] = []
        popped: list[tuple[int, int, str, int]] = []
        with self._lock:
            self._check_open()
            heap = self._entry_heap
            # Find first, change nothing: the audit callback may still refuse.
            while heap and heap[0][0] <= now_ms and len(out) < max_count:
                item = heapq.heappop(heap)
                _, _, queue, seq = item
                entry: InboundEntry | OutboundEntry | None
                if queue == _INBOX:
                    entry = self._inbox.get(seq)
                    hop = None
                else:
                    entry = self._outbound.get(queue, {}).get(seq)
                    hop = queue
                if entry is None:
                    continue  # gone already: its heap item is stale
                popped.append(item)
                out.append(ExpiredEntry(next_hop=hop, **entry_fields(entry, seq, entry.targets)))
            try:
                records = (
                    check_audit_rows(audit(list(out)), self._audit_next)
                    if audit is not None and out
                    else []
                )
                seal = self._sealed(records)
            except BaseException:
                for item in popped:
                    heapq.heappush(heap, item)
                raise
            for expired in out:
                if expired.next_hop is None:
                    inbound = self._inbox.pop(expired.seq)
                    self._depths.remove_inbound(len(inbound.data))
                else:
                    self._forget_outbound(self._outbound[expired.next_hop].pop(expired.seq))
            self._store_audit(records, seal)
        return out

    def _prune(self, now_ms: int, max_count: int) -> int:
        dropped = 0
        with self._lock:
            self._check_open()
            heap = self._seen_heap
            while heap and heap[0][0] <= now_ms and dropped < max_count:
                expires_ms, sender, message_id = heapq.heappop(heap)
                record = self._seen.get((sender, message_id))
                # A record replaced by a later envelope (same id, new expiry) stays.
                if record is not None and record.expires_ms == expires_ms:
                    del self._seen[(sender, message_id)]
                    dropped += 1
            # Send keys live as long as their message (few: this node's own sends).
            for send in [k for k, r in self._sends.items() if r.expires_ms <= now_ms][:max_count]:
                del self._sends[send]
        return dropped

    # --- the audit log ------------------------------------------------------------

    def append_audit(self, records: Sequence[AuditRow]) -> None:
        with self._lock:
            self._check_open()
            rows = check_audit_rows(records, self._audit_next)
            self._store_audit(rows, self._sealed(rows))

    def audit_records(self, from_seq: int = 0, limit: int = 10_000) -> list[AuditRow]:
        check_time(from_seq, "from_seq")
        check_limit(limit, "limit")
        with self._lock:
            self._check_open()
            first = max(from_seq, self._audit_first)
            end = min(self._audit_next, first + limit)
            return [AuditRow(seq, self._audit[seq]) for seq in range(first, end)]

    def audit_size(self) -> int:
        with self._lock:
            self._check_open()
            return self._audit_next

    def add_tree_head(self, size: int, data: bytes) -> None:
        with self._lock:
            self._check_open()
            last = self._heads[-1][0] if self._heads else 0
            size = check_tree_head(size, data, self._audit_next, last)
            self._heads.append((size, data))

    def tree_heads(self, limit: int | None = None) -> list[bytes]:
        if limit is not None:
            check_limit(limit, "limit")
        with self._lock:
            self._check_open()
            heads = self._heads if limit is None else self._heads[-limit:]
            return [data for _, data in heads]

    def tree_heads_from(self, position: int, limit: int = 10_000) -> list[tuple[int, bytes]]:
        check_count(position, "position")
        check_limit(limit, "limit")
        with self._lock:
            self._check_open()
            first = max(position - self._heads_pruned, 0)
            return [
                (self._heads_pruned + index, self._heads[index][1])
                for index in range(first, min(first + limit, len(self._heads)))
            ]

    def audit_heads_end(self) -> int:
        with self._lock:
            self._check_open()
            return self._heads_pruned + len(self._heads)

    def tree_head_at_most(self, size: int) -> bytes | None:
        check_count(size, "size")
        with self._lock:
            self._check_open()
            index = bisect.bisect_right(self._heads, size, key=lambda head: head[0])
            return self._heads[index - 1][1] if index else None

    def set_audit_checkpoint(self, size: int, data: bytes) -> None:
        with self._lock:
            self._check_open()
            current = self._checkpoint[0] if self._checkpoint is not None else 0
            size = check_checkpoint_update(size, data, self._audit_next, current)
            if self._sealer is not None:  # the head that names the checkpoint, with it
                self._seal = (self._audit_next, check_seal(self._sealer(self._audit_next, size)))
            self._checkpoint = (size, data)

    def set_audit_sealer(self, sealer: AuditSealer | None) -> None:
        with self._lock:
            self._sealer = sealer

    def audit_seal(self) -> bytes | None:
        with self._lock:
            self._check_open()
            return self._seal[1] if self._seal is not None else None

    def audit_ordered_from(self) -> int:
        return 0  # a memory store holds only what this software wrote

    def audit_checkpoint(self) -> bytes | None:
        with self._lock:
            self._check_open()
            return self._checkpoint[1] if self._checkpoint is not None else None

    def prune_audit(self, below_seq: int, max_count: int = 10_000) -> int:
        with self._lock:
            self._check_open()
            covered = self._checkpoint[0] if self._checkpoint is not None else 0
            below = check_prune_audit(below_seq, max_count, covered)
            first = self._audit_first
            end = max(first, min(below, first + max_count))
            for seq in range(first, end):
                del self._audit[seq]
                self._audit_nodes.pop(seq, None)  # a tree row covers only records before it
            self._audit_first = end
            return end - first

    def prune_heads(self, below_size: int, max_count: int = 10_000) -> int:
        with self._lock:
            self._check_open()
            covered = self._checkpoint[0] if self._checkpoint is not None else 0
            below = check_prune_audit(below_size, max_count, covered)
            count = 0
            while count < len(self._heads) and count < max_count:
                if self._heads[count][0] >= below:
                    break
                count += 1
            del self._heads[:count]
            self._heads_pruned += count
            return count

    # --- the tree's interior nodes (issue 13) ----------------------------------------

    def set_audit_tree(self, source: AuditTreeSource | None) -> None:
        with self._lock:
            self._tree_source = source

    def add_audit_nodes(self, rows: Sequence[tuple[int, bytes]]) -> None:
        with self._lock:
            self._check_open()
            self._add_nodes(check_node_rows(rows, self._due(), self._audit_next))

    def audit_nodes_due(self) -> int:
        with self._lock:
            self._check_open()
            return self._due()

    def _due(self) -> int:
        covered = self._checkpoint[0] if self._checkpoint is not None else 0
        return max(self._nodes_due, covered | 1)  # rows below the checkpoint are never due

    def audit_node(self, level: int, index: int) -> bytes | None:
        seq, offset = node_key(level, index)
        with self._lock:
            self._check_open()
            hashes = self._audit_nodes.get(seq)
        if hashes is None or len(hashes) < offset + 32:
            return None
        return hashes[offset : offset + 32]

    # --- small persistent state ----------------------------------------------------

    def peer_state(self, name: str) -> PeerState:
        with self._lock:
            self._check_open()
            return self._peers.get(name, PeerState())

    def set_peer_state(self, name: str, state: PeerState) -> None:
        check_peer_state(state)
        with self._lock:
            self._check_open()
            self._peers[name] = state

    def get_meta(self, key: str) -> bytes | None:
        with self._lock:
            self._check_open()
            return self._meta.get(key)

    def set_meta(self, key: str, value: bytes) -> None:
        check_meta(key, value)
        with self._lock:
            self._check_open()
            self._meta[key] = value

    def delete_meta(self, key: str) -> None:
        with self._lock:
            self._check_open()
            self._meta.pop(key, None)

    def update_meta(self, changes: Mapping[str, bytes | None]) -> None:
        checked = check_meta_changes(changes)
        with self._lock:
            self._check_open()
            for key, value in checked.items():
                if value is None:
                    self._meta.pop(key, None)
                else:
                    self._meta[key] = value

    def meta_range(
        self, prefix: str, *, after: str = "", limit: int = 1000
    ) -> list[tuple[str, bytes]]:
        check_meta_range(prefix, after, limit)
        end = prefix_end(prefix)
        with self._lock:
            self._check_open()
            keys = sorted(
                key
                for key in self._meta
                if key.startswith(prefix) and key > after and (end is None or key < end)
            )
            return [(key, self._meta[key]) for key in keys[:limit]]

    def close(self) -> None:
        with self._lock:
            self._closed = True


if TYPE_CHECKING:

    def _is_a_store(store: MemoryStore) -> Store:
        return store  # mypy checks that MemoryStore implements every part of Store
