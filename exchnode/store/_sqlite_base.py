"""What every part of :class:`~exchnode.store.SqliteStore` shares: one connection and its lock.

The store is one class split over three modules by responsibility: this
plumbing (the connection, transactions, reads, errors), the audit log's
storage (``_sqlite_audit``) and custody with the small persistent state
(``_sqlite``).  The attributes are set by ``SqliteStore.__init__``.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from exchnode.errors import StoreError, UsageError
from exchnode.store._base import SharedSql
from exchnode.store._sqlite_schema import store_error

__all__ = ["SqliteBase"]


class SqliteBase(SharedSql):
    """The connection, serialised by a lock, and the audit log's counters (see SqliteStore)."""

    path: Path
    read_only: bool
    _lock: threading.Lock
    _conn: sqlite3.Connection | None
    _broken: str | None
    _audit_next: int  # the audit log's next seq
    _last_head_size: int
    _checkpoint_size: int

    # --- plumbing -------------------------------------------------------------------

    def _error(self, what: str, exc: sqlite3.Error) -> StoreError:
        return store_error(self.path, what, exc)

    def _open_conn(self) -> sqlite3.Connection:
        if self._conn is None:
            if self._broken is not None:
                raise StoreError(self._broken)
            raise UsageError(f"store {self.path} is closed")
        return self._conn

    def _check_open(self) -> None:
        self._open_conn()

    @contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT; on any error, roll back and raise (StoreError for SQLite's)."""
        conn = self._open_conn()
        if self.read_only:
            raise UsageError(f"store {self.path} is open read-only: {what} changes it")
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            self._rollback(conn)
            if isinstance(exc, sqlite3.Error):
                raise self._error(what, exc) from exc
            raise

    def _rollback(self, conn: sqlite3.Connection) -> None:
        if not conn.in_transaction:
            return
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            # The connection's state is unknown: refuse further use rather than guess.
            self._broken = f"store {self.path}: unusable after a failed rollback ({exc}); reopen it"
            self._conn = None
            conn.close()

    def _statement(self, sql: str) -> str:
        return sql  # SQLite's placeholders are the shared statements' own

    @contextmanager
    def _reading(self, what: str) -> Iterator[sqlite3.Connection]:
        conn = self._open_conn()
        try:
            yield conn
        except sqlite3.Error as exc:
            raise self._error(what, exc) from exc
