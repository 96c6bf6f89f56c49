"""The streaming pass of :func:`~exchnode.audit.verify_log`: a clean log in O(log n) (pure).

Records and heads come as callables that read them afresh (a store, a page
at a time).  One pass walks both together, keeping the tree's frontier, the
previous record and head, and a few running aggregates, and proves that
none of the findings of ``_verify``'s steps applies.  At the first thing it
cannot prove it raises :class:`NotProven`, and ``verify_log`` runs the steps
on the whole log in memory instead: the report is then the same as if the
streaming pass had never run.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator

from exchnode.audit._log import TreeHead, TreeHeadVerifier
from exchnode.audit._records import decode_record, record_leaf
from exchnode.audit._verify_heads import Start, start_at_checkpoint
from exchnode.audit._verify_report import Finding, StoredLog, VerificationReport
from exchnode.core import Directory, MerkleLog
from exchnode.errors import RejectedError

__all__ = ["NotProven", "verify_streaming"]

_SETTLE_EVERY = 4096  # appends between two trims of the streaming pass's tree to its frontier


class NotProven(Exception):
    """The streaming pass met something it cannot prove harmless: the whole log is needed."""


def _good_head(verifier: TreeHeadVerifier, node: str, data: bytes) -> TreeHead:
    try:
        head = verifier.verify(data)
    except RejectedError:
        raise NotProven from None
    if head.node != node:
        raise NotProven
    return head


def _chained_heads(
    verifier: TreeHeadVerifier, node: str, heads: Iterable[bytes]
) -> Iterator[TreeHead]:
    """The node's own heads, each verified and chained to the one before (so sizes ascend)."""
    before: TreeHead | None = None
    for data in heads:
        head = _good_head(verifier, node, data)
        if before is not None and (
            (head.previous_size, head.previous_root) != (before.tree_size, before.root)
            or head.timestamp_ms < before.timestamp_ms
        ):
            raise NotProven
        yield head
        before = head


class _Records:
    """The records as written, appended to the tree on demand (see the module doc)."""

    def __init__(
        self, node: str, records: Iterable[tuple[int, bytes]], start: Start, ordered_from: int
    ) -> None:
        assert start.tree is not None
        self.node = node
        self.rows = iter(records)
        self.base = start.base
        self.tree = MerkleLog.from_frontier(start.base, start.tree.frontier())
        self.previous_leaf = start.last_leaf
        self.previous_time = -1
        self.ordered_from = ordered_from

    def reach(self, size: int) -> bool:
        """Append records until the tree has ``size`` leaves; False if the log ends before."""
        tree = self.tree
        while tree.size < size:
            row = next(self.rows, None)
            if row is None:
                return False
            key, data = row
            if key < self.base:
                continue  # kept past the checkpoint: harmless
            if key != tree.size:
                raise NotProven
            try:
                record = decode_record(data)
            except RejectedError:
                raise NotProven from None
            if record.node != self.node or record.seq != key:
                raise NotProven
            if self.previous_leaf is not None and record.prev != self.previous_leaf:
                raise NotProven
            time_ms = record.entry.time_ms
            if (
                self.previous_time >= 0
                and key >= self.ordered_from
                and time_ms < self.previous_time
            ):
                raise NotProven
            self.previous_leaf, self.previous_time = record_leaf(data), time_ms
            tree.append(self.previous_leaf)
            if tree.size % _SETTLE_EVERY == 0:
                tree.settle()
        return True


def verify_streaming(log: StoredLog, directory: Directory) -> VerificationReport:
    """The module doc's streaming pass; raises ``NotProven`` at the first doubt."""
    node, seal = log.node, log.seal
    verifier = TreeHeadVerifier(directory)
    findings: list[Finding] = []
    start, usable = start_at_checkpoint(node, log.checkpoint, verifier, None, findings)
    if findings or start.tree is None:
        raise NotProven
    covered = usable.size if usable is not None else 0
    sealed = [_good_head(verifier, node, seal)] if seal is not None else []
    others = sorted(
        (_good_head(verifier, node, data) for data in log.witnessed), key=lambda h: h.tree_size
    )
    if others and usable is not None and others[-1].tree_size < covered:
        raise NotProven  # unwitnessed-checkpoint
    records = _Records(node, log.read_records(), start, log.ordered_from)
    count, largest, verified, named = 0, 0, start.base, usable is None
    own = _chained_heads(verifier, node, log.read_heads())
    for head in heapq.merge(own, sealed, others, key=lambda head: head.tree_size):
        count += 1
        largest = max(largest, head.tree_size)
        if head.checkpoint_size > covered:
            raise NotProven  # names a checkpoint the store does not hold
        named = named or head.checkpoint_size == covered
        if head.tree_size < start.base:
            continue  # below the checkpoint: gone by design
        if not records.reach(head.tree_size) or records.tree.root() != head.root:
            raise NotProven  # truncated, or a root that differs
        verified = head.tree_size
    if not named:
        raise NotProven  # unsigned-checkpoint
    records.reach(1 << 62)  # the records after the last head
    end = records.tree.size
    if end > max(largest, start.base):
        raise NotProven  # unsigned-records
    return VerificationReport(node, start.base, end - start.base, count, verified, ())
