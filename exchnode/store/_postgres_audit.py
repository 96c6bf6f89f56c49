"""The audit log's storage in PostgreSQL (SPEC §20.6, §20.9): records, heads, checkpoint, seal,
and the tree's interior nodes (issue 13, ``_audit_tree``).

Part of :class:`~exchnode.store.PostgresStore` (see ``_postgres_base``).  Every
change locks the log first (``_lock_audit``) and checks itself against the
log as stored, read under that lock; every transaction that appends records
also stores the seal the sealer signs over them and the tree rows the tree
source gives for them; the schema's triggers refuse any other change.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from exchnode.store._audit_follow import AuditFollower
from exchnode.store._audit_tree import check_node_rows, node_key, source_rows
from exchnode.store._checks import (
    check_checkpoint_update,
    check_count,
    check_prune_audit,
    check_seal,
    check_tree_head,
)
from exchnode.store._postgres_base import AuditState, PostgresBase
from exchnode.store._postgres_schema import Connection
from exchnode.store._records import AuditRow, check_audit_rows

__all__ = ["PostgresAuditLog"]

_INSERT_RECORDS = (
    "INSERT INTO audit_records (seq, data) SELECT * FROM unnest(%s::int8[], %b::bytea[])"
)
_INSERT_NODES = (
    "INSERT INTO audit_nodes (seq, hashes) SELECT * FROM unnest(%s::int8[], %b::bytea[])"
)


class _Tail:
    """The log as stored, read on the connection of the transaction that holds its lock."""

    def __init__(self, conn: Connection, size: int) -> None:
        self._conn = conn
        self.size = size

    def _one(self, query: str, params: tuple[Any, ...] = ()) -> bytes | None:
        row = self._conn.execute(query.encode(), params).fetchone()
        return None if row is None else bytes(row[0])

    def record(self, seq: int) -> bytes | None:
        return self._one("SELECT data FROM audit_records WHERE seq = %s", (seq,))

    def node(self, level: int, index: int) -> bytes | None:
        seq, offset = node_key(level, index)
        found = self._one(
            "SELECT substring(hashes FROM %s FOR 32) FROM audit_nodes WHERE seq = %s",
            (offset + 1, seq),
        )
        return found if found is not None and len(found) == 32 else None

    def seal(self) -> bytes | None:
        return self._one("SELECT data FROM audit_seal")

    def last_head(self) -> bytes | None:
        return self._one("SELECT data FROM audit_heads ORDER BY position DESC LIMIT 1")

    def checkpoint(self) -> bytes | None:
        return self._one("SELECT data FROM audit_checkpoint")


class PostgresAuditLog(PostgresBase):
    """The audit log's half of the store's ``AuditStore`` protocol.

    Several workers may append to it (``_audit_follow``): with a follower set
    (``set_audit_follower``), every transaction that appends records first
    shows it the log as stored, under the lock, before anything is numbered.
    """

    _follower: AuditFollower | None = None

    def set_audit_follower(self, follower: AuditFollower | None) -> None:
        with self._lock:
            self._follower = follower

    def follow_audit(self) -> None:
        with self._lock, self._transaction("follow_audit") as conn:
            self._lock_audit(conn, follow=True)

    def _follow(self, conn: Connection, state: AuditState) -> None:
        follower = self._follower
        if follower is not None:
            follower.follow(_Tail(conn, state.size))

    # --- appending, inside the caller's transaction -----------------------------------

    def _append_audit(self, conn: Connection, state: AuditState, rows: list[AuditRow]) -> None:
        """Insert ``rows`` (checked against ``state``), their tree rows and the seal over them.

        The caller holds the log's lock (``state`` is what it read under it).
        """
        if not rows:
            return
        first, end = rows[0][0], rows[-1][0] + 1
        conn.execute(_INSERT_RECORDS, ([seq for seq, _ in rows], [data for _, data in rows]))
        if self._tree_source is not None:
            nodes = source_rows(self._tree_source, first, end, state.nodes_due)
            self._insert_nodes(conn, nodes)
        self._seal(conn, end, state.checkpoint_size)

    def _insert_nodes(self, conn: Connection, rows: list[tuple[int, bytes]]) -> None:
        if rows:
            conn.execute(_INSERT_NODES, ([seq for seq, _ in rows], [hashes for _, hashes in rows]))

    def _seal(self, conn: Connection, size: int, checkpoint_size: int) -> None:
        """The sealer's head over ``size`` records, replacing the stored seal (same transaction)."""
        if self._sealer is None:
            return
        data = check_seal(self._sealer(size, checkpoint_size))
        conn.execute(
            "INSERT INTO audit_seal (id, tree_size, data) VALUES (1, %s, %b) ON CONFLICT (id)"
            " DO UPDATE SET tree_size = excluded.tree_size, data = excluded.data",
            (size, data),
        )

    def _audited(self, conn: Connection, records: Sequence[AuditRow]) -> None:
        """Lock the log and store ``records`` (given, not computed) in the transaction under way.

        Numbered before the lock: if other workers appended meanwhile, the
        follower numbers them again after what they stored.
        """
        if records:
            state = self._lock_audit(conn)
            follower = self._follower
            if follower is not None:
                records = follower.renumber(records, _Tail(conn, state.size))
            self._append_audit(conn, state, check_audit_rows(records, state.size))

    # --- the AuditStore protocol ------------------------------------------------------

    def append_audit(self, records: Sequence[AuditRow]) -> None:
        if isinstance(records, bytes | str):
            check_audit_rows(records, 0)  # one record given as bytes: refused, naming why
        with self._lock:
            self._open_conn()
            if not records:
                return
            with self._transaction("append_audit") as conn:
                self._audited(conn, records)

    def audit_size(self) -> int:
        with self._lock, self._reading("audit_size") as conn:
            return self._audit_state(conn).size

    def add_tree_head(self, size: int, data: bytes) -> None:
        with self._lock, self._transaction("add_tree_head") as conn:
            state = self._lock_audit(conn)
            size = check_tree_head(size, data, state.size, state.last_head_size)
            conn.execute("INSERT INTO audit_heads (tree_size, data) VALUES (%s, %b)", (size, data))

    def tree_head_at_most(self, size: int) -> bytes | None:
        check_count(size, "size")
        with self._lock, self._reading("tree_head_at_most") as conn:
            # Heads are stored in order of size: the last of those small enough, by index.
            row = conn.execute(
                "SELECT data FROM audit_heads WHERE tree_size <= %s"
                " ORDER BY tree_size DESC, position DESC LIMIT 1",
                (size,),
            ).fetchone()
        return None if row is None else bytes(row[0])

    def set_audit_checkpoint(self, size: int, data: bytes) -> None:
        with self._lock, self._transaction("set_audit_checkpoint") as conn:
            state = self._lock_audit(conn)
            size = check_checkpoint_update(size, data, state.size, state.checkpoint_size)
            conn.execute(
                "INSERT INTO audit_checkpoint (id, size, data) VALUES (1, %s, %b) ON CONFLICT (id)"
                " DO UPDATE SET size = excluded.size, data = excluded.data",
                (size, data),
            )
            self._seal(conn, state.size, size)  # the head that names the checkpoint

    def prune_audit(self, below_seq: int, max_count: int = 10_000) -> int:
        with self._lock, self._transaction("prune_audit") as conn:
            state = self._lock_audit(conn)
            below = check_prune_audit(below_seq, max_count, state.checkpoint_size)
            return self._prune_records(conn, below, max_count)

    def prune_heads(self, below_size: int, max_count: int = 10_000) -> int:
        with self._lock, self._transaction("prune_heads") as conn:
            state = self._lock_audit(conn)
            below = check_prune_audit(below_size, max_count, state.checkpoint_size)
            return self._prune_heads(conn, below, max_count)

    # --- the tree's interior nodes (issue 13) ----------------------------------------

    def add_audit_nodes(self, rows: Sequence[tuple[int, bytes]]) -> None:
        with self._lock, self._transaction("add_audit_nodes") as conn:
            state = self._lock_audit(conn)
            self._insert_nodes(conn, check_node_rows(rows, state.nodes_due, state.size))

    def audit_nodes_due(self) -> int:
        with self._lock, self._reading("audit_nodes_due") as conn:
            return self._audit_state(conn).nodes_due
