"""The audit log's storage in SQLite (SPEC §20.6, §20.9): records, heads, checkpoint, seal,
and the tree's interior nodes (issue 13, ``_audit_tree``).

Part of :class:`~exchnode.store.SqliteStore` (see ``_sqlite_base``).  Every
transaction that appends records also stores the seal the sealer signs over
them and the node rows the tree source gives for them; the schema's
triggers refuse any other change to what is stored.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from exchnode.errors import StoreError, UsageError
from exchnode.store._audit_tree import check_node_rows, first_node_seq, source_rows
from exchnode.store._checks import (
    check_checkpoint_update,
    check_count,
    check_prune_audit,
    check_seal,
    check_tree_head,
)
from exchnode.store._records import AuditRow, check_audit_rows
from exchnode.store._sqlite_base import SqliteBase

__all__ = ["INSERT_AUDIT", "SqliteAuditLog"]

INSERT_AUDIT = "INSERT INTO audit_records (seq, data) VALUES (?, ?)"
INSERT_NODES = "INSERT INTO audit_nodes (seq, hashes) VALUES (?, ?)"


class SqliteAuditLog(SqliteBase):
    """The audit log's half of the store's ``AuditStore`` protocol."""

    _tree_source = None
    _no_limit = -1  # SQLite's LIMIT for "all rows"
    _nodes_due = 0  # the seq of the next node row the store expects
    _nodes_due_after: int | None = None  # what it becomes once the transaction under way commits

    def _load_audit(self, conn: sqlite3.Connection) -> None:
        try:
            (last,) = conn.execute("SELECT max(seq) FROM audit_records").fetchone()
            row = conn.execute("SELECT size FROM audit_checkpoint").fetchone()
            self._checkpoint_size = 0 if row is None else row[0]
            # No records left but a checkpoint: every record was pruned up to its size.
            self._audit_next = last + 1 if last is not None else self._checkpoint_size
            row = conn.execute(
                "SELECT tree_size FROM audit_heads ORDER BY position DESC LIMIT 1"
            ).fetchone()
            self._last_head_size = 0 if row is None else row[0]
            row = conn.execute(
                "SELECT value FROM store_info WHERE key = 'audit_ordered_from'"
            ).fetchone()
            # Absent only in an older store read read-only: its records are not checked.
            self._ordered_from = row[0] if row is not None else self._audit_next
            if not isinstance(self._ordered_from, int) or self._ordered_from < 0:
                raise StoreError(f"store {self.path} is damaged: audit_ordered_from is not a seq")
            self._has_seal = (
                conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_seal'"
                ).fetchone()
                is not None
            )
            self._has_nodes = (
                conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_nodes'"
                ).fetchone()
                is not None
            )
            last_row = (
                conn.execute("SELECT max(seq) FROM audit_nodes").fetchone()[0]
                if self._has_nodes
                else None
            )
            self._nodes_due = first_node_seq(last_row, self._checkpoint_size)
        except sqlite3.Error as exc:
            raise self._error("cannot open", exc) from exc

    # --- the audit log ------------------------------------------------------------

    def append_audit(self, records: Sequence[AuditRow]) -> None:
        with self._lock:
            self._open_conn()
            rows = check_audit_rows(records, self._audit_next)
            if not rows:
                return
            with self._transaction("append_audit") as conn:
                self._insert_audit(conn, rows)
            self._appended(rows)

    def _insert_audit(self, conn: sqlite3.Connection, rows: list[AuditRow]) -> None:
        """Insert the rows, their tree rows and the seal over them (the transaction under way)."""
        self._nodes_due_after = None
        if not rows:
            return
        conn.executemany(INSERT_AUDIT, rows)
        first, end = rows[0][0], rows[-1][0] + 1
        if self._tree_source is not None:
            nodes = source_rows(self._tree_source, first, end, self._due())
            conn.executemany(INSERT_NODES, nodes)
            self._nodes_due_after = nodes[-1][0] + 2 if nodes else None
        self._seal(conn, end, self._checkpoint_size)

    def _seal(self, conn: sqlite3.Connection, size: int, checkpoint_size: int) -> None:
        """The sealer's head over ``size`` records, replacing the stored seal (same transaction)."""
        if self._sealer is None:
            return
        data = check_seal(self._sealer(size, checkpoint_size))
        if not conn.execute(
            "UPDATE audit_seal SET tree_size = ?, data = ? WHERE id = 1", (size, data)
        ).rowcount:
            conn.execute(
                "INSERT INTO audit_seal (id, tree_size, data) VALUES (1, ?, ?)", (size, data)
            )

    def _appended(self, rows: list[AuditRow]) -> None:
        """Audit records committed: the next one continues after them (and their nodes)."""
        if rows:
            self._audit_next = rows[-1][0] + 1
            if self._nodes_due_after is not None:
                self._nodes_due = self._nodes_due_after
        self._nodes_due_after = None

    def audit_size(self) -> int:
        with self._lock:
            self._open_conn()
            return self._audit_next

    def add_tree_head(self, size: int, data: bytes) -> None:
        with self._lock:
            self._open_conn()
            size = check_tree_head(size, data, self._audit_next, self._last_head_size)
            with self._transaction("add_tree_head") as conn:
                conn.execute(
                    "INSERT INTO audit_heads (tree_size, data) VALUES (?, ?)", (size, data)
                )
            self._last_head_size = size

    def tree_head_at_most(self, size: int) -> bytes | None:
        check_count(size, "size")
        with self._lock, self._reading("tree_head_at_most") as conn:
            (low, high) = conn.execute(
                "SELECT min(position), max(position) FROM audit_heads"
            ).fetchone()
            if low is None:
                return None
            found: bytes | None = None
            while low <= high:  # positions ascend with tree sizes: bisect them
                middle = (low + high) // 2
                row = conn.execute(
                    "SELECT position, tree_size, data FROM audit_heads WHERE position >= ?"
                    " ORDER BY position LIMIT 1",
                    (middle,),
                ).fetchone()
                if row is None or row[0] > high:
                    high = middle - 1
                elif row[1] <= size:
                    found, low = bytes(row[2]), row[0] + 1
                else:
                    high = middle - 1
            return found

    def set_audit_checkpoint(self, size: int, data: bytes) -> None:
        with self._lock:
            self._open_conn()
            size = check_checkpoint_update(size, data, self._audit_next, self._checkpoint_size)
            with self._transaction("set_audit_checkpoint") as conn:
                # Moved forward by UPDATE: the triggers refuse an INSERT over the stored one.
                if not conn.execute(
                    "UPDATE audit_checkpoint SET size = ?, data = ? WHERE id = 1", (size, data)
                ).rowcount:
                    conn.execute(
                        "INSERT INTO audit_checkpoint (id, size, data) VALUES (1, ?, ?)",
                        (size, data),
                    )
                self._seal(conn, self._audit_next, size)  # the head that names the checkpoint
            self._checkpoint_size = size

    def prune_audit(self, below_seq: int, max_count: int = 10_000) -> int:
        with self._lock:
            self._open_conn()
            below = check_prune_audit(below_seq, max_count, self._checkpoint_size)
            with self._transaction("prune_audit") as conn:
                return self._prune_records(conn, below, max_count)

    def prune_heads(self, below_size: int, max_count: int = 10_000) -> int:
        with self._lock:
            self._open_conn()
            below = check_prune_audit(below_size, max_count, self._checkpoint_size)
            with self._transaction("prune_heads") as conn:
                return self._prune_heads(conn, below, max_count)

    # --- the tree's interior nodes (issue 13) ----------------------------------------

    def add_audit_nodes(self, rows: Sequence[tuple[int, bytes]]) -> None:
        with self._lock:
            self._open_conn()
            if not self._has_nodes:
                raise UsageError(f"store {self.path} is read-only: it has no audit tree to add to")
            checked = check_node_rows(rows, self._due(), self._audit_next)
            if not checked:
                return
            with self._transaction("add_audit_nodes") as conn:
                conn.executemany(INSERT_NODES, checked)
            self._nodes_due = checked[-1][0] + 2

    def audit_nodes_due(self) -> int:
        with self._lock:
            self._open_conn()
            return self._due()

    def _due(self) -> int:
        return max(self._nodes_due, self._checkpoint_size | 1)  # none due below the checkpoint
