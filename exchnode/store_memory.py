"""MemoryStore: the store's in-memory twin, for tests and whole-federation simulations.

Same semantics as :class:`~exchnode.store_sqlite.SqliteStore` -- the same
test suite runs against both -- except durability: nothing survives the
process.  Use it where a test or a simulated federation needs a store
without a disk; never where custody matters.

Layout: one insertion-ordered dict per queue (sequence numbers only grow,
so insertion order is FIFO order), the dedup records in a dict, and two
heaps ordered by expiry, cleaned lazily: a heap item whose entry or record
is gone (or was replaced) is skipped when popped.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Iterable
from types import TracebackType

from exchnode.errors import UsageError
from exchnode.store import (
    AcceptItem,
    AcceptOutcome,
    AcceptStatus,
    ExpiredEntry,
    InboundEntry,
    OutboundEntry,
    PeerState,
    QueueDepth,
    QueueDepths,
    SeenRecord,
    check_items,
    check_limit,
    check_page,
    check_seqs,
    check_time,
    classify,
    take_within,
)

__all__ = ["MemoryStore"]

_INBOX = ""  # the expiry heap's queue name for the inbox (next hops are never empty)


class MemoryStore:
    """A :class:`~exchnode.store.Store` held in memory; not durable."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closed = False
        self._seen: dict[tuple[str, bytes], SeenRecord] = {}
        self._seen_heap: list[tuple[int, str, bytes]] = []
        self._outbound: dict[str, dict[int, OutboundEntry]] = {}
        self._inbox: dict[int, InboundEntry] = {}
        self._entry_heap: list[tuple[int, int, str, int]] = []  # expires, inbox?0:1, queue, seq
        self._last_seq = {"outbound": 0, "inbox": 0}
        self._peers: dict[str, PeerState] = {}
        self._meta: dict[str, bytes] = {}
        self._depths = QueueDepths()

    def __repr__(self) -> str:
        return f"MemoryStore({'closed' if self._closed else 'open'})"

    def _check_open(self) -> None:
        if self._closed:
            raise UsageError("the memory store is closed")

    # --- custody in ---------------------------------------------------------------

    def accept(self, items: Iterable[AcceptItem], now_ms: int) -> list[AcceptOutcome]:
        batch = check_items(items)
        check_time(now_ms)
        outcomes: list[AcceptOutcome] = []
        with self._lock:
            self._check_open()
            for item in batch:
                key = (item.sender, item.message_id)
                seen = self._seen.get(key)
                outcome = classify(item, seen, now_ms)
                outcomes.append(outcome)
                if outcome.status is not AcceptStatus.ACCEPTED:
                    continue
                # ACCEPTED means: no live record, or a live one with the same digest.
                live = seen is not None and seen.expires_ms > now_ms
                held = seen.targets if seen is not None and live else frozenset()
                new_targets = frozenset(outcome.local).union(*outcome.forward.values())
                if seen is None or seen.expires_ms != item.expires_ms:
                    heapq.heappush(self._seen_heap, (item.expires_ms, *key))
                self._seen[key] = SeenRecord(
                    digest=item.digest, expires_ms=item.expires_ms, targets=held | new_targets
                )
                if outcome.local:
                    self._add_inbound(item, outcome.local)
                for hop, targets in outcome.forward.items():
                    self._add_outbound(item, hop, targets)
        return outcomes

    def _add_inbound(self, item: AcceptItem, targets: tuple[str, ...]) -> None:
        seq = self._last_seq["inbox"] = self._last_seq["inbox"] + 1
        self._inbox[seq] = InboundEntry(
            seq=seq,
            sender=item.sender,
            message_id=item.message_id,
            digest=item.digest,
            targets=targets,
            expires_ms=item.expires_ms,
            data=item.data,
        )
        self._depths.add_inbound(len(item.data))
        heapq.heappush(self._entry_heap, (item.expires_ms, 0, _INBOX, seq))

    def _add_outbound(self, item: AcceptItem, hop: str, targets: tuple[str, ...]) -> None:
        seq = self._last_seq["outbound"] = self._last_seq["outbound"] + 1
        self._outbound.setdefault(hop, {})[seq] = OutboundEntry(
            seq=seq,
            next_hop=hop,
            sender=item.sender,
            message_id=item.message_id,
            digest=item.digest,
            targets=targets,
            expires_ms=item.expires_ms,
            data=item.data,
        )
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

    def forwarded(self, next_hop: str, seqs: Iterable[int]) -> int:
        wanted = check_seqs(seqs)
        with self._lock:
            self._check_open()
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

    def next_hops(self) -> list[str]:
        with self._lock:
            self._check_open()
            return self._depths.next_hops()

    def queue_depth(self, next_hop: str) -> QueueDepth:
        with self._lock:
            self._check_open()
            return self._depths.outbound(next_hop)

    # --- inbox --------------------------------------------------------------------

    def inbox(
        self, now_ms: int, max_count: int, *, max_bytes: int | None = None, after: int = 0
    ) -> list[InboundEntry]:
        limit = check_page(now_ms, max_count, max_bytes, after)
        with self._lock:
            self._check_open()
            live = (e for s, e in self._inbox.items() if s > after and e.expires_ms > now_ms)
            return take_within(live, max_count, limit)

    def delivered(self, seqs: Iterable[int]) -> int:
        wanted = check_seqs(seqs)
        with self._lock:
            self._check_open()
            removed = 0
            for seq in wanted:
                entry = self._inbox.pop(seq, None)
                if entry is not None:
                    removed += 1
                    self._depths.remove_inbound(len(entry.data))
            return removed

    def inbox_depth(self) -> QueueDepth:
        with self._lock:
            self._check_open()
            return self._depths.inbox()

    def totals(self) -> QueueDepth:
        with self._lock:
            self._check_open()
            return self._depths.totals()

    # --- expiry -------------------------------------------------------------------

    def take_expired(self, now_ms: int, max_count: int) -> list[ExpiredEntry]:
        check_time(now_ms)
        check_limit(max_count, "max_count")
        out: list[ExpiredEntry] = []
        with self._lock:
            self._check_open()
            heap = self._entry_heap
            while heap and heap[0][0] <= now_ms and len(out) < max_count:
                _, _, queue, seq = heapq.heappop(heap)
                entry: InboundEntry | OutboundEntry | None
                if queue == _INBOX:
                    entry = self._inbox.pop(seq, None)
                    if entry is None:
                        continue
                    self._depths.remove_inbound(len(entry.data))
                    hop = None
                else:
                    entry = self._outbound.get(queue, {}).pop(seq, None)
                    if entry is None:
                        continue
                    self._forget_outbound(entry)
                    hop = queue
                out.append(
                    ExpiredEntry(
                        seq=seq,
                        next_hop=hop,
                        sender=entry.sender,
                        message_id=entry.message_id,
                        digest=entry.digest,
                        targets=entry.targets,
                        expires_ms=entry.expires_ms,
                        data=entry.data,
                    )
                )
        return out

    def prune(self, now_ms: int, max_count: int = 10_000) -> int:
        check_time(now_ms)
        check_limit(max_count, "max_count")
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
        return dropped

    # --- small persistent state ----------------------------------------------------

    def peer_state(self, name: str) -> PeerState:
        with self._lock:
            self._check_open()
            return self._peers.get(name, PeerState())

    def set_peer_state(self, name: str, state: PeerState) -> None:
        if not isinstance(state, PeerState):
            raise UsageError(f"set_peer_state() takes a PeerState, got {type(state).__name__}")
        with self._lock:
            self._check_open()
            self._peers[name] = state

    def get_meta(self, key: str) -> bytes | None:
        with self._lock:
            self._check_open()
            return self._meta.get(key)

    def set_meta(self, key: str, value: bytes) -> None:
        if not isinstance(key, str) or not isinstance(value, bytes):
            raise UsageError("set_meta() takes a str key and a bytes value")
        with self._lock:
            self._check_open()
            self._meta[key] = value

    def delete_meta(self, key: str) -> None:
        with self._lock:
            self._check_open()
            self._meta.pop(key, None)

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
