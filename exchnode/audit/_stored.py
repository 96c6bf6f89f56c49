"""A node's audit log as its store holds it, read a page at a time (issue 13).

The verifier and the log state are pure; this is the one place of the audit
layer that calls an :class:`~exchnode.store.AuditStore`, synchronously, so
that neither a verification nor a restart needs the whole log in memory:

* :func:`read_log_view` reads, in one store call (a consistent view), what
  bounds the log: its size, its heads' end, the last head, checkpoint, seal.
* :func:`stored_records` and :func:`stored_heads` page through the records
  and heads of that view, so a verifier holds one page of each at a time;
  what is appended after the view is not part of it, and the caller keeps
  pruning out while it reads.  :func:`verify_stored` is ``verify_log`` over
  that view.
* :func:`store_nodes` is the ``NodeReader`` of ``AuditLogState``: a record's
  leaf (level 0) or a stored subtree.
* :func:`derive_tree_rows` writes the tree rows of records stored without
  them (a store from before schema 6), from a running frontier: O(log n)
  memory whatever the log's length.

Each function runs where its store may be called (the node's store thread,
or any thread for reads: every store serialises its calls).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from exchnode.audit._log import AuditLogState, Checkpoint, TreeHead
from exchnode.audit._records import record_leaf
from exchnode.audit._verify import VerificationReport, verify_log
from exchnode.core import Directory, LocalIdentity, MerkleLog, NodeReader
from exchnode.errors import InconsistentLogError
from exchnode.store import AuditStore

__all__ = [
    "PAGE",
    "StoredLogView",
    "derive_tree_rows",
    "read_log_view",
    "restore_state",
    "store_nodes",
    "stored_heads",
    "stored_records",
    "verify_stored",
]

PAGE = 4096  # records read per store call: a verifier holds one page at a time


@dataclass(frozen=True, slots=True)
class StoredLogView:
    """What bounds a store's audit log for a verifier, read in one store call."""

    heads_end: int  # the position after the last head: heads stored later are not in the view
    last_head: bytes | None
    checkpoint: bytes | None
    seal: bytes | None
    ordered_from: int
    size: int  # the store's audit size (the next seq): records from here on are not in the view
    first_seq: int | None  # the seq of the first record stored (below the checkpoint while
    # a pruning is under way), None if none is


def read_log_view(store: AuditStore) -> StoredLogView:
    """The stored log's bounds (``stored_records`` and ``stored_heads`` page through the rest)."""
    size = store.audit_size()
    first = store.audit_records(0, 1)
    last = store.tree_heads(1)
    return StoredLogView(
        store.audit_heads_end(),
        last[0] if last else None,
        store.audit_checkpoint(),
        store.audit_seal(),
        store.audit_ordered_from(),
        size,
        first[0][0] if first else None,
    )


def stored_records(
    store: AuditStore, end: int, *, first: int = 0, page: int = PAGE
) -> Iterator[tuple[int, bytes]]:
    """The stored records ``(seq, data)`` with ``first <= seq < end``, one store call per page."""
    seq = first
    while seq < end:
        rows = store.audit_records(seq, min(page, end - seq))
        for row in rows:
            if row[0] >= end:
                return
            yield row
        if len(rows) < min(page, end - seq):
            return
        seq = rows[-1][0] + 1


def stored_heads(store: AuditStore, end: int, *, page: int = PAGE) -> Iterator[bytes]:
    """The stored heads at positions below ``end``, in the order stored, one store call per page."""
    position = 0
    while position < end:
        rows = store.tree_heads_from(position, page)
        for at, data in rows:
            if at >= end:
                return
            yield data
        if len(rows) < page:
            return
        position = rows[-1][0] + 1


def verify_stored(
    node: str,
    store: AuditStore,
    view: StoredLogView,
    directory: Directory,
    witnessed: Sequence[bytes] = (),
    *,
    records: Sequence[tuple[int, bytes]] | None = None,
) -> VerificationReport:
    """``verify_log`` over ``node``'s log as ``view`` saw it in ``store``: its heads, and its
    records unless the caller read them already (``records``), read a page at a time."""
    return verify_log(
        node,
        (lambda: stored_records(store, view.size)) if records is None else records,
        lambda: stored_heads(store, view.heads_end),
        directory,
        checkpoint=view.checkpoint,
        seal=view.seal,
        ordered_from=view.ordered_from,
        witnessed=witnessed,
    )


def store_nodes(store: AuditStore) -> NodeReader:
    """The store's hashes of its log: a record's leaf, or a stored subtree; else ``LookupError``."""

    def read(level: int, index: int) -> bytes:
        if level == 0:
            rows = store.audit_records(index, 1)
            if not rows or rows[0][0] != index:
                raise LookupError(f"audit record {index} is not stored")
            return record_leaf(rows[0][1])
        found = store.audit_node(level, index)
        if found is None:
            raise LookupError(
                f"the subtree of {1 << level} records at {index << level} is not stored"
            )
        return found

    return read


def restore_state(
    identity: LocalIdentity,
    store: AuditStore,
    *,
    seal: TreeHead | None,
    last_head: TreeHead | None,
    checkpoint: Checkpoint | None,
) -> AuditLogState:
    """``AuditLogState.restore`` from the store: its size, last record and stored tree."""
    size = store.audit_size()
    last = store.audit_records(size - 1, 1) if size else []
    return AuditLogState.restore(
        identity,
        store_nodes(store),
        size,
        last[0][1] if last and last[0][0] == size - 1 else None,
        seal=seal,
        last_head=last_head,
        checkpoint=checkpoint,
    )


def derive_tree_rows(
    store: AuditStore,
    checkpoint: Checkpoint | None,
    *,
    page: int = PAGE,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Store the tree rows of every record stored without them; how many records were read.

    From the first row due (``audit_nodes_due``): the frontier there is read
    from the store (rows before it, or the checkpoint's frontier), then each
    record's leaf is appended and the rows its appends complete are stored, a
    page per transaction.  ``progress(done, total)`` after each page.  The
    records were verified first (their roots match signed heads), so the rows
    are the tree the heads signed.
    """
    size = store.audit_size()
    due = store.audit_nodes_due()
    if due >= size:
        return 0
    start = due  # the row due is what appending record ``due`` completes: the frontier before it
    cp = checkpoint.size if checkpoint is not None else 0
    reader = _checkpoint_or(store_nodes(store), checkpoint)
    try:
        frontier, at = [], 0
        for k in reversed(range(start.bit_length())):
            if start >> k & 1:
                frontier.append(reader(k, at >> k))
                at += 1 << k
    except LookupError as exc:
        raise InconsistentLogError(f"cannot derive the audit tree from {start}: {exc}") from None
    tree = MerkleLog.from_frontier(start, frontier)
    done = 0
    while tree.size < size:
        rows = store.audit_records(tree.size, min(page, size - tree.size))
        if not rows or rows[0][0] != tree.size:
            raise InconsistentLogError(f"audit record {tree.size} is not stored (from {cp} on)")
        out = []
        for seq, data in rows:
            if seq != tree.size:
                raise InconsistentLogError(f"audit record {tree.size} is not stored")
            tree.append(record_leaf(data))
            if seq & 1:
                out.append((seq, b"".join(tree.completed(seq))))
        store.add_audit_nodes(out)
        tree.settle()
        done += len(rows)
        if progress is not None:
            progress(done, size - start)
    return done


def _checkpoint_or(reader: NodeReader, checkpoint: Checkpoint | None) -> NodeReader:
    """``reader``, but the checkpoint's frontier for the subtrees wholly below its size."""
    if checkpoint is None:
        return reader
    size, frontier = checkpoint.size, checkpoint.frontier

    def read(level: int, index: int) -> bytes:
        if (index + 1) << level <= size:
            if size >> level & 1 and index == (size >> level) - 1:
                return frontier[(size >> (level + 1)).bit_count()]
            raise LookupError(f"subtree at {index << level} lies below the checkpoint: pruned")
        return reader(level, index)

    return read
