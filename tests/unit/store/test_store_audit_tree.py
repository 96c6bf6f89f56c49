"""The audit tree's interior nodes in the store (issue 13), against every store.

Rows come from the log's tree source inside the transaction that appends
their records, so records and nodes are durable together or not at all; a
row that does not continue the stored ones is refused; pruning takes the
rows below the checkpoint with their records.  Then what only SQLite
promises: the rows survive reopening, and triggers keep them append-only.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from exchnode.audit import AuditLogState, stored_heads
from exchnode.audit._records import record_leaf
from exchnode.core import MerkleLog
from exchnode.errors import UsageError
from exchnode.store import AuditRow, SqliteStore, Store
from tests.unit.store.test_store import ME, NOW, make
from tests.unit.store.test_store_audit import (
    NODE,
    Auditor,
    checkpoint_row,
    fail_after_two_records,
    head_row,
    records,
)


class Source:
    """The log's tree source, which can be told to fail, remembering what it was asked."""

    def __init__(self, log: AuditLogState) -> None:
        self.log = log
        self.fail = False
        self.calls: list[tuple[int, int]] = []

    def __call__(self, first: int, end: int) -> Sequence[bytes]:
        self.calls.append((first, end))
        if self.fail:
            raise RuntimeError("tree source refused")
        return self.log.tree_rows(first, end)


def reference(log_rows: list[AuditRow]) -> MerkleLog:
    """The tree of the stored records, built in memory from their leaves."""
    tree = MerkleLog()
    tree.extend([record_leaf(data) for _, data in log_rows])
    return tree


def every_node(store: Store, size: int) -> dict[tuple[int, int], bytes | None]:
    return {
        (level, index): store.audit_node(level, index)
        for level in range(1, size.bit_length())
        for index in range(size >> level)
    }


def expected_nodes(tree: MerkleLog, first: int = 0) -> dict[tuple[int, int], bytes | None]:
    """Every complete subtree of two or more leaves, None for those wholly below ``first``."""
    return {
        (level, index): None
        if (index + 1) << level <= first
        else tree.root((index + 1) << level)
        if index == 0
        else _subtree(tree, level, index)
        for level in range(1, tree.size.bit_length())
        for index in range(tree.size >> level)
    }


def _subtree(tree: MerkleLog, level: int, index: int) -> bytes:
    alone = MerkleLog()
    alone.extend([tree.leaf(i) for i in range(index << level, (index + 1) << level)])
    return alone.root()


def test_rows_are_stored_with_the_records_that_complete_them(store: Store) -> None:
    log = AuditLogState(NODE)
    source = Source(log)
    store.set_audit_tree(source)
    assert store.audit_nodes_due() == 1
    stored = records(log, 5)
    store.append_audit(stored)
    items = [make(1, local=(ME,)), make(2, local=(ME,))]
    store.accept(items, NOW, audit=Auditor(log, items))
    stored += store.audit_records(5, 10)
    store.append_audit(records(log, 6, 10))
    stored = store.audit_records(0, 100)
    assert source.calls == [(0, 5), (5, 7), (7, 13)]
    assert store.audit_size() == 13
    assert store.audit_nodes_due() == 13
    assert every_node(store, 13) == expected_nodes(reference(stored))
    assert store.audit_node(1, 6) is None  # records 12..13: not complete
    assert store.audit_node(4, 0) is None  # beyond the log


def test_a_failing_source_stores_nothing_of_the_transaction(store: Store) -> None:
    log = AuditLogState(NODE)
    source = Source(log)
    store.set_audit_tree(source)
    fail_after_two_records(store, log, source, "tree source refused", 2)
    assert store.audit_nodes_due() == 3
    assert store.audit_node(1, 1) is None


def test_rows_that_do_not_fit_are_refused(store: Store) -> None:
    log = AuditLogState(NODE)
    store.append_audit(records(log, 6))  # no source: the rows are due from 1
    assert store.audit_nodes_due() == 1
    rows = log.tree_rows(0, 6)  # seqs 1, 3, 5
    for bad, problem in (
        ([(3, rows[1])], "does not continue"),  # skips seq 1
        ([(1, rows[0] + b"x")], "holds the 1 subtree"),
        ([(1, rows[1])], "holds the 1 subtree"),  # seq 3's two hashes at seq 1
        ([(1, rows[0]), (3, rows[1]), (5, rows[2]), (7, rows[0])], "beyond the 6 records"),
    ):
        with pytest.raises(UsageError, match=problem):
            store.add_audit_nodes(bad)
        assert store.audit_nodes_due() == 1
    store.add_audit_nodes(list(zip((1, 3, 5), rows, strict=True)))
    assert store.audit_nodes_due() == 7
    assert every_node(store, 6) == expected_nodes(reference(store.audit_records(0, 10)))
    # With rows missing, a source cannot start in the middle of the log.
    store.append_audit(records(log, 2, 6))
    store.set_audit_tree(Source(log))
    with pytest.raises(UsageError, match="missing"):
        store.append_audit(records(log, 2, 8))


def test_pruning_takes_the_rows_below_the_checkpoint(store: Store) -> None:
    log = AuditLogState(NODE)
    store.set_audit_tree(Source(log))
    store.append_audit(records(log, 11))
    tree = reference(store.audit_records(0, 100))
    store.add_tree_head(*head_row(log.sign_head(NOW)))
    log_rows = records(log, 5, 11)
    store.set_audit_checkpoint(*checkpoint_row(log.make_checkpoint()))
    store.append_audit(log_rows)
    tree = reference(store.audit_records(0, 100))
    assert store.prune_audit(11) == 11
    assert every_node(store, 16) == expected_nodes(tree, first=11)
    assert store.audit_node(3, 1) is not None  # records 8..15 straddle the checkpoint: kept
    assert store.audit_nodes_due() == 17


def test_heads_page_by_position_past_pruning(store: Store) -> None:
    log = AuditLogState(NODE)
    heads = []
    for start in range(0, 12, 2):
        store.append_audit(records(log, 2, start))
        heads.append(log.sign_head(NOW).data)
        store.add_tree_head(*head_row(log.last_head))  # type: ignore[arg-type]
    end = store.audit_heads_end()
    assert list(stored_heads(store, end, page=4)) == heads
    first, second = store.tree_heads_from(0, 2)
    assert first[1] == heads[0]
    assert second[0] > first[0]
    assert [data for _, data in store.tree_heads_from(second[0] + 1, 2)] == heads[2:4]
    store.set_audit_checkpoint(*checkpoint_row(log.make_checkpoint(log.last_head)))
    assert store.prune_heads(6) == 2  # the heads of 2 and 4
    assert list(stored_heads(store, end, page=3)) == heads[2:]
    assert store.audit_heads_end() == end  # positions are not reused
    store.add_tree_head(*head_row(log.last_head))  # type: ignore[arg-type]
    assert list(stored_heads(store, end)) == heads[2:]  # the view's end bounds the stream
    assert store.audit_heads_end() == end + 1


def test_sqlite_rows_survive_reopening_and_the_due_row_is_recomputed(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    log = AuditLogState(NODE)
    with SqliteStore(path) as store:
        store.set_audit_tree(Source(log))
        store.append_audit(records(log, 7))
        before = every_node(store, 7)
    with SqliteStore(path) as store:
        assert store.audit_nodes_due() == 7
        assert every_node(store, 7) == before
        store.append_audit(records(log, 2, 7))  # no source set: rows of 7 fall due
        assert store.audit_nodes_due() == 7
    with SqliteStore(path, read_only=True) as store:
        assert every_node(store, 7) == before


def test_sqlite_triggers_keep_the_rows_append_only(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    log = AuditLogState(NODE)
    with SqliteStore(path) as store:
        store.set_audit_tree(Source(log))
        store.append_audit(records(log, 4))
        store.add_tree_head(*head_row(log.sign_head(NOW)))
        store.set_audit_checkpoint(*checkpoint_row(log.make_checkpoint()))
        store.append_audit(records(log, 4, 4))
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT * FROM audit_nodes ORDER BY seq").fetchall()
    assert [seq for seq, _ in rows] == [1, 3, 5, 7]
    for statement in (
        "UPDATE audit_nodes SET hashes = zeroblob(32) WHERE seq = 1",
        "DELETE FROM audit_nodes WHERE seq = 5",  # at or above the checkpoint
        "INSERT OR REPLACE INTO audit_nodes (seq, hashes) VALUES (7, zeroblob(96))",
        "INSERT INTO audit_nodes (seq, hashes) VALUES (9, zeroblob(32))",  # no record 9
        "INSERT INTO audit_nodes (seq, hashes) VALUES (2, zeroblob(32))",  # before the last
    ):
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(statement)
    assert conn.execute("SELECT * FROM audit_nodes ORDER BY seq").fetchall() == rows
    conn.execute("DELETE FROM audit_nodes WHERE seq < 4")  # below the checkpoint: allowed
    conn.commit()
    conn.close()
