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
from exchnode.store._audit_tree import (
    AuditTreeSource,
    check_node_rows,
    first_node_seq,
    node_key,
    source_rows,
)
from exchnode.store._checks import (
    check_checkpoint_update,
    check_count,
    check_limit,
    check_prune_audit,
    check_seal,
    check_time,
    check_tree_head,
)
from exchnode.store._records import AuditRow, check_audit_rows
from exchnode.store._sqlite_base import SqliteBase

__all__ = ["INSERT_AUDIT", "SqliteAuditLog"]

INSERT_AUDIT = "INSERT INTO audit_records (seq, data) VALUES (?, ?)"
INSERT_NODES = "INSERT INTO audit_nodes (seq, hashes) VALUES (?, ?)"


class SqliteAuditLog(SqliteBase):
    """The audit log's half of the store's ``AuditStore`` protocol."""

    _tree_source: AuditTreeSource | None = None
    _nodes_due = 0  # the seq of the next node row the store expects
    _nodes_due_after: int | None = None  # what it becomes once the transaction under way commits
    _has_nodes = True  # False for a schema before version 6 read read-only

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

    def audit_records(self, from_seq: int = 0, limit: int = 10_000) -> list[AuditRow]:
        check_time(from_seq, "from_seq")
        check_limit(limit, "limit")
        with self._lock, self._reading("audit_records") as conn:
            rows = conn.execute(
                "SELECT seq, data FROM audit_records WHERE seq >= ? ORDER BY seq LIMIT ?",
                (from_seq, limit),
            ).fetchall()
        return [AuditRow(seq, bytes(data)) for seq, data in rows]

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

    def tree_heads(self, limit: int | None = None) -> list[bytes]:
        if limit is not None:
            check_limit(limit, "limit")
        with self._lock, self._reading("tree_heads") as conn:
            rows = conn.execute(
                "SELECT data FROM (SELECT position, data FROM audit_heads"
                " ORDER BY position DESC LIMIT ?) ORDER BY position",
                (-1 if limit is None else limit,),
            ).fetchall()
        return [bytes(data) for (data,) in rows]

    def tree_heads_from(self, position: int, limit: int = 10_000) -> list[tuple[int, bytes]]:
        check_count(position, "position")
        check_limit(limit, "limit")
        with self._lock, self._reading("tree_heads_from") as conn:
            rows = conn.execute(
                "SELECT position, data FROM audit_heads WHERE position >= ?"
                " ORDER BY position LIMIT ?",
                (position, limit),
            ).fetchall()
        return [(position, bytes(data)) for position, data in rows]

    def audit_heads_end(self) -> int:
        with self._lock, self._reading("audit_heads_end") as conn:
            (last,) = conn.execute("SELECT max(position) FROM audit_heads").fetchone()
        return 0 if last is None else last + 1

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
                (first,) = conn.execute("SELECT min(seq) FROM audit_records").fetchone()
                if first is None or first >= below:
                    return 0
                # The kept records are contiguous: the oldest max_count are one range.
                end = min(below, first + max_count)
                # Their tree nodes go with them: a row covers only records before its seq.
                conn.execute("DELETE FROM audit_nodes WHERE seq < ?", (end,))
                return conn.execute("DELETE FROM audit_records WHERE seq < ?", (end,)).rowcount

    def prune_heads(self, below_size: int, max_count: int = 10_000) -> int:
        with self._lock:
            self._open_conn()
            below = check_prune_audit(below_size, max_count, self._checkpoint_size)
            with self._transaction("prune_heads") as conn:
                return conn.execute(
                    "DELETE FROM audit_heads WHERE position IN (SELECT position FROM audit_heads"
                    " WHERE tree_size < ? ORDER BY position LIMIT ?)",
                    (below, max_count),
                ).rowcount

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

    def audit_node(self, level: int, index: int) -> bytes | None:
        seq, offset = node_key(level, index)
        with self._lock, self._reading("audit_node") as conn:
            if not self._has_nodes:
                return None
            row = conn.execute(
                "SELECT substr(hashes, ?, 32) FROM audit_nodes WHERE seq = ?", (offset + 1, seq)
            ).fetchone()
        if row is None or len(row[0]) != 32:
            return None
        return bytes(row[0])
