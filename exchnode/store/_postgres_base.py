"""What every part of :class:`~exchnode.store.PostgresStore` shares: the session, its lock,
transactions, errors, and the audit log's lock row.

The store is one class over three modules, as the SQLite store is: this
plumbing, the audit log's storage (``_postgres_audit``) and custody with the
small persistent state (``_postgres``).  The attributes are set by
``PostgresStore.__init__``.

Unlike the SQLite store, nothing the store decides by is cached in this
process: several workers may share the database, so the audit log's size,
its last head and its checkpoint are read inside the transaction that
relies on them, after locking the log (:meth:`PostgresBase._lock_audit`).
"""

from __future__ import annotations

import threading
import time
from abc import abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import psycopg

from exchnode.errors import StoreError, UsageError
from exchnode.store._audit_tree import first_node_seq
from exchnode.store._base import SharedSql
from exchnode.store._postgres_schema import Connection, store_error

_RECONNECT_EVERY_S = 1.0

__all__ = ["AuditState", "PostgresBase"]

_AUDIT_STATE = """SELECT
    (SELECT max(seq) FROM audit_records),
    (SELECT size FROM audit_checkpoint),
    (SELECT tree_size FROM audit_heads ORDER BY position DESC LIMIT 1),
    (SELECT max(seq) FROM audit_nodes)"""


class AuditState(NamedTuple):
    """The audit log as stored: what its checks compare a change against."""

    size: int  # the next record's seq
    checkpoint_size: int
    last_head_size: int
    nodes_due: int  # the next tree row expected


class PostgresBase(SharedSql):
    """The session, serialised by a lock (see PostgresStore)."""

    name: str
    _lock: threading.Lock
    _conn: Connection | None
    _broken: str | None

    def _error(self, what: str, exc: psycopg.Error) -> StoreError:
        return store_error(self.name, what, exc)

    _closed = False
    _reconnect_at = 0.0  # time.monotonic() before which a lost session is not opened again

    def _open_conn(self) -> Connection:
        if self._conn is None:
            if self._broken is None or self._closed:
                raise UsageError(f"store {self.name} is closed")
            self._reconnect()
        assert self._conn is not None
        return self._conn

    def _reconnect(self) -> None:
        """Open a new session after the last one was lost (a server restart, a failover, a
        dropped connection): every call is a whole transaction, so the next one can simply
        run on a new session.  At most one attempt a second; until one succeeds every call
        fails with a :class:`StoreError` saying why (nothing is taken meanwhile)."""
        now = time.monotonic()
        if now < self._reconnect_at:
            raise StoreError(f"{self._broken} (reconnecting)")
        self._reconnect_at = now + _RECONNECT_EVERY_S
        try:
            self._conn = self._connect()
        except StoreError as exc:
            raise StoreError(f"{self._broken}; reconnecting failed: {exc}") from None
        self._broken = None

    @abstractmethod
    def _connect(self) -> Connection:
        """A new session, set up and checked (``PostgresStore``'s)."""

    @contextmanager
    def _transaction(self, what: str) -> Iterator[Connection]:
        """BEGIN … COMMIT (durable: synchronous_commit); on any error roll back and raise.

        The server's errors become :class:`StoreError`; ours (a refused
        audit row, a raising hook) propagate as they are, after the rollback.
        """
        conn = self._open_conn()
        self._unreplicated = None
        try:
            with conn.transaction():
                yield conn
        except psycopg.Error as exc:
            self._check_usable(conn)
            raise self._error(what, exc) from exc
        if self._unreplicated is not None:
            # Committed here, but the synchronous standby never confirmed it: not durable in
            # the sense custody needs (a failover would lose it), so not acknowledged.  The
            # previous hop sends it again, and dedup answers the repeat.
            raise StoreError(
                f"store {self.name}: {what}: committed on the primary but not confirmed by the "
                f"synchronous standby ({self._unreplicated}); treated as not stored"
            )

    _unreplicated: str | None = None

    def _watch_replication(self, conn: Connection) -> None:
        """Catch the commit whose wait for the synchronous standby was cancelled.

        PostgreSQL then commits locally and says so only in a WARNING ("canceling
        wait for synchronous replication ...": an operator's ``pg_cancel_backend``,
        a ``statement_timeout``); a hub that answered TAKEN for it could lose it
        in a failover, so :meth:`_transaction` refuses such a commit instead.
        """

        def notice(diagnostic: psycopg.errors.Diagnostic) -> None:
            message = diagnostic.message_primary or ""
            if message.startswith("canceling wait for synchronous replication"):
                self._unreplicated = message

        conn.add_notice_handler(notice)

    def _statement(self, sql: str) -> bytes:
        """A shared statement's ``?`` placeholders as psycopg's ``%s`` (none holds a ``?``
        or a ``%`` otherwise)."""
        return sql.replace("?", "%s").encode()

    @contextmanager
    def _reading(self, what: str) -> Iterator[Connection]:
        """One statement in its own (autocommit) transaction, errors as :class:`StoreError`."""
        conn = self._open_conn()
        try:
            yield conn
        except psycopg.Error as exc:
            self._check_usable(conn)
            raise self._error(what, exc) from exc

    def _check_usable(self, conn: Connection) -> None:
        """After an error: a session that was lost is closed, and later calls say so."""
        if conn.broken or conn.closed:
            self._broken = f"store {self.name}: the connection to the server was lost"
            self._conn = None
            conn.close()

    def _lock_audit(self, conn: Connection, *, follow: bool = False) -> AuditState:
        """Lock the audit log for the transaction under way and read its state.

        Every transaction that appends records, heads or tree rows, or moves
        the checkpoint, holds this row lock until it commits: across workers
        they run one at a time, so each sees the log as the last one left it
        -- no two transactions can store the same seq, nor leave a gap.  The
        state is read by a statement after the lock (READ COMMITTED: it sees
        what the transaction before committed).
        """
        if conn.execute("SELECT id FROM audit_writer WHERE id = 1 FOR UPDATE").fetchone() is None:
            raise StoreError(f"store {self.name} is damaged: the audit log's lock row is missing")
        state = self._audit_state(conn)
        if follow:
            self._follow(conn, state)
        return state

    def _follow(self, conn: Connection, state: AuditState) -> None:
        """Show the follower (if any) the log as stored: it numbers what follows from there."""

    def _audit_state(self, conn: Connection) -> AuditState:
        row = conn.execute(_AUDIT_STATE).fetchone()
        assert row is not None  # a SELECT without FROM returns one row
        last, checkpoint, head, node = row
        checkpoint = checkpoint or 0
        return AuditState(
            size=last + 1 if last is not None else checkpoint,
            checkpoint_size=checkpoint,
            last_head_size=head or 0,
            nodes_due=first_node_seq(node, checkpoint),
        )
