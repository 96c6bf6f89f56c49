"""The audit log's interior nodes as a store keeps them (issue 13): rows, checks, the source.

Why the store keeps them: a node's Merkle tree grows with its log, and a log
of a million records held in memory cost 147 bytes per record.  The log
itself (``exchnode.audit.AuditLogState``) keeps only its frontier; every other
complete subtree of two or more leaves lies here, written in the same
transaction as the records it covers, so that a crash never leaves a record
without its nodes nor a node over a record not stored.  Leaves (level 0) are
not kept: they are the records' own hashes.

The layout: one row per record whose append completes a subtree -- every
odd seq -- keyed by that seq (the subtree's last leaf), holding the hashes
of the subtrees it completes, level 1 first, 32 bytes each (as many as the
seq's trailing one bits).  Subtree ``(level, index)`` is therefore in the
row of seq ``((index + 1) << level) - 1``, at offset ``32 * (level - 1)``:
one key lookup per hash, rows appended at the right edge like the records.
A row below the checkpoint's size covers only pruned records and goes with
them (the checkpoint keeps the frontier that is still needed).

Like records, the store never computes a hash: the log gives the rows
(:data:`AuditTreeSource`, called inside each transaction that appends
records, or :meth:`~exchnode.store.AuditStore.add_audit_nodes` to derive
them for records stored before), and the store checks only their shape and
that they continue the rows stored.  Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeAlias

from exchnode.errors import UsageError

__all__ = [
    "AuditTreeSource",
    "check_node_rows",
    "completed_levels",
    "first_node_seq",
    "node_key",
    "source_rows",
]

NODE_HASH_BYTES = 32

AuditTreeSource: TypeAlias = Callable[[int, int], Sequence[bytes]]
"""The audit log's interior nodes for the records a transaction appends.

``(first seq, end seq)`` → one row per odd seq in that range, in order: the
hashes of the subtrees that record completes, level 1 first, concatenated.
Given to :meth:`~exchnode.store.AuditStore.set_audit_tree`; the store calls
it inside every transaction that appends records and stores what it returns
in that same transaction.  Like the sealer, it runs under the store's lock,
must not call the store, and a raise rolls the transaction back.
"""


def completed_levels(seq: int) -> int:
    """How many subtrees (of 2, 4, ... leaves) the append of record ``seq`` completes."""
    return (~seq & (seq + 1)).bit_length() - 1


def node_key(level: int, index: int) -> tuple[int, int]:
    """Where subtree ``(level, index)`` is kept: the seq of its row and its offset there."""
    if type(level) is not int or type(index) is not int or level < 1 or index < 0:
        raise UsageError(f"an audit tree node is (level >= 1, index >= 0): {level!r}, {index!r}")
    return ((index + 1) << level) - 1, NODE_HASH_BYTES * (level - 1)


def first_node_seq(after_row: int | None, checkpoint_size: int) -> int:
    """The seq of the next node row due: after the last row stored, and from the checkpoint on.

    Rows of records below the checkpoint are never due: those records are
    pruned, and the checkpoint keeps the frontier that is still needed.
    """
    after = after_row + 2 if after_row is not None else 1
    return max(after, checkpoint_size | 1)  # odd seqs only: even ones complete no subtree


def check_node_rows(
    rows: Sequence[tuple[int, bytes]], due: int, records_end: int
) -> list[tuple[int, bytes]]:
    """Node rows that continue those stored (the next is ``due``) over stored records only.

    ``records_end``: the store's audit size once the call's records are in.
    Raises :class:`UsageError` naming the first row that is not the next odd
    seq, lies beyond the records, or holds other than 32 bytes per subtree
    its record completes; nothing of the call is then stored.
    """
    out: list[tuple[int, bytes]] = []
    expected = due
    for row in rows:
        if not isinstance(row, tuple) or len(row) != 2:
            raise UsageError(f"an audit tree row is (seq, hashes), got {type(row).__name__}")
        seq, hashes = row
        if type(seq) is not int or seq != expected:
            raise UsageError(
                f"audit tree row {seq!r} does not continue the stored rows, whose next is "
                f"{expected}: nothing of this batch was stored"
            )
        if seq >= records_end:
            raise UsageError(f"audit tree row {seq} lies beyond the {records_end} records stored")
        levels = completed_levels(seq)
        if not isinstance(hashes, bytes) or len(hashes) != NODE_HASH_BYTES * levels:
            raise UsageError(
                f"audit tree row {seq} holds the {levels} subtree hash(es) of 32 bytes its "
                f"record completes, got {len(hashes) if isinstance(hashes, bytes) else hashes!r}"
            )
        out.append((seq, hashes))
        expected += 2
    return out


def source_rows(source: AuditTreeSource, first: int, end: int, due: int) -> list[tuple[int, bytes]]:
    """The rows ``source`` gives for records ``first .. end - 1``, checked (inside a transaction).

    ``due``: the next row the store expects.  If it lies before this batch's
    first odd seq, records stored earlier have no nodes (appended while no
    source was set): the log must derive them first (``add_audit_nodes``).
    """
    first_odd = first | 1
    if due < first_odd:
        raise UsageError(
            f"audit tree rows from {due} are missing before records {first}..{end - 1}: "
            "derive them (add_audit_nodes) before setting the tree source"
        )
    blobs = list(source(first, end))
    seqs = range(first_odd, end, 2)
    if len(blobs) != len(seqs):
        raise UsageError(
            f"the audit tree source gave {len(blobs)} rows for records {first}..{end - 1}, "
            f"which complete subtrees at {len(seqs)} seqs"
        )
    return check_node_rows(list(zip(seqs, blobs, strict=True)), due, end)
