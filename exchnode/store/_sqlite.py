"""SqliteStore: the durable store in one SQLite file (WAL, synchronous=FULL).  I/O edge.

Theory of operation
-------------------
Custody (``exchnode.store.Store`` explains the contract) rests on the file's
settings, made on opening by ``_sqlite_schema``, which explains them: the
log is flushed to stable storage at every commit (``synchronous=FULL``), so
a committed batch survives power loss, and the store's one connection holds
the file's lock from opening to closing, so a second daemon on the same
file fails at once.  That module also keeps the versioned schema, its
triggers and migrations.

Every change runs in one explicit ``BEGIN IMMEDIATE`` … ``COMMIT``; on any
error the transaction is rolled back and a :class:`StoreError` naming the
file is raised.  ``accept`` of a batch is one transaction (group commit): a
thousand envelopes cost one flush.

Sequence numbers are ``AUTOINCREMENT`` rowids: they only grow and are never
reused, even after the newest entry is removed.  A plain rowid could hand a
removed entry's number to a new one, and a late ``forwarded()`` for the old
entry would then delete the new one -- a lost envelope.

Queue depths are counted in memory (loaded at open, updated after each
commit): back-pressure asks for them on every batch, and the exclusive lock
guarantees nobody else changes the file.

The audit log: ``accept`` with an audit callback inserts the batch's records
in its own transaction, so the one flush of the group commit covers custody
and audit alike; ``forwarded``, ``delivered`` and ``take_expired`` do the
same with theirs.  The log's next seq, the last head's size and the
checkpoint's size are kept in memory (loaded at open, updated after each
commit) for the checks that keep the log append-only.  Every transaction that
inserts audit rows (``_insert_audit``: every path that does must go through
it) or moves the checkpoint also asks the registered sealer for the seal and
stores it in that transaction.  ``read_only=True`` opens an existing store for
auditors without ever writing to it.

The class spans three modules by responsibility: ``_sqlite_base`` (the
connection, transactions, errors), ``_sqlite_audit`` (the audit log's
storage) and this one (opening, custody, expiry, small persistent state).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from exchnode.errors import StoreError, UsageError
from exchnode.federation import PeerState
from exchnode.store._base import (
    SELECT_SEEN,
    CustodyChecks,
    DepthsInMemory,
    expired_in_order,
    plan_accept,
    queue_rows,
    seen_record,
)
from exchnode.store._checks import (
    check_meta,
    check_meta_changes,
    check_page,
    check_peer_state,
    check_seqs,
    check_time,
)
from exchnode.store._records import (
    AcceptItem,
    AcceptOutcome,
    AcceptStatus,
    AuditHook,
    AuditRow,
    AuditSealer,
    ExpiredEntry,
    ExpiryAuditHook,
    InboundEntry,
    OutboundEntry,
    QueueDepths,
    SeenRecord,
    SendRecord,
    check_audit_rows,
    join_targets,
    row_fields,
    take_within,
)
from exchnode.store._sqlite_audit import SqliteAuditLog
from exchnode.store._sqlite_schema import connect, open_read_only, prepare

if TYPE_CHECKING:
    from exchnode.store._interface import Store

__all__ = ["SqliteStore"]


_SELECT_SEND = "SELECT request, message_id, digest, expires_ms FROM send_keys WHERE key = ?"
_UPSERT_SEND = (
    "INSERT OR REPLACE INTO send_keys (key, request, message_id, digest, expires_ms)"
    " VALUES (?, ?, ?, ?, ?)"
)
_INSERT_SEEN = (
    "INSERT INTO dedup (digest, expires_ms, targets, sender, message_id) VALUES (?, ?, ?, ?, ?)"
)
_UPDATE_SEEN = (
    "UPDATE dedup SET digest = ?, expires_ms = ?, targets = ? WHERE sender = ? AND message_id = ?"
)
_INSERT_OUTBOUND = (
    "INSERT INTO outbound (next_hop, sender, message_id, digest, targets, expires_ms, size, data)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_INBOX = (
    "INSERT INTO inbox (sender, message_id, digest, targets, expires_ms, size, data)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_PENDING = (
    "SELECT seq, sender, message_id, digest, targets, expires_ms, data FROM outbound"
    " WHERE next_hop = ? AND seq > ? AND expires_ms > ? ORDER BY seq LIMIT ?"
)
_INBOX = (
    "SELECT seq, sender, message_id, digest, targets, expires_ms, data FROM inbox"
    " WHERE seq > ? AND expires_ms > ? ORDER BY seq LIMIT ?"
)
_EXPIRED_OUTBOUND = (
    "SELECT next_hop, size, seq, sender, message_id, digest, targets, expires_ms, data"
    " FROM outbound"
    " WHERE expires_ms <= ? ORDER BY expires_ms, next_hop, seq LIMIT ?"
)
_EXPIRED_INBOX = (
    "SELECT size, seq, sender, message_id, digest, targets, expires_ms, data FROM inbox"
    " WHERE expires_ms <= ? ORDER BY expires_ms, seq LIMIT ?"
)

# One statement per acknowledgement batch: the seqs travel as a JSON array.
_DELETE_OUTBOUND = (
    "DELETE FROM outbound WHERE next_hop = ? AND seq IN (SELECT value FROM json_each(?))"
    " RETURNING size"
)
_DELETE_INBOX = "DELETE FROM inbox WHERE seq IN (SELECT value FROM json_each(?)) RETURNING size"


def _json_list(seqs: Iterable[int]) -> str:
    return "[" + ",".join(map(str, map(int, seqs))) + "]"


# The next seq of an AUTOINCREMENT table: above every seq it ever handed out.
_NEXT_SEQ = (
    "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = ?), 0),"
    " coalesce((SELECT max(seq) FROM {table}), 0)) + 1"
)
_LAST_SEQ = "SELECT seq FROM sqlite_sequence WHERE name = ?"


def _insert_numbered(
    conn: sqlite3.Connection, table: str, insert: str, rows: Sequence[tuple[object, ...]]
) -> int | None:
    """Insert ``rows`` into a queue table; the seq of the first, if they are numbered in order.

    The tables' seqs are AUTOINCREMENT: each insert gets a number above every
    one the table ever handed out, so the rows of one ``executemany`` (under
    the store's exclusive lock) get strictly increasing numbers, and if the
    last one is ``first + len(rows) - 1`` they are exactly ``first, first + 1,
    ...`` in order.  None (nothing numbered) if there are no rows or the
    numbers are not those: the caller then reads its queues instead.
    """
    if not rows:
        return None
    (first,) = conn.execute(_NEXT_SEQ.format(table=table), (table,)).fetchone()
    conn.executemany(insert, rows)
    last = conn.execute(_LAST_SEQ, (table,)).fetchone()
    if last is None or last[0] != first + len(rows) - 1:  # pragma: no cover - never seen
        return None
    return int(first)


def _numbered(
    outcomes: list[AcceptOutcome], inbox_first: int | None, outbound_first: int | None
) -> list[AcceptOutcome]:
    """``outcomes`` with the seqs of the entries ``accept`` queued, in the order it inserted them.

    The accepted items (their outcomes ``ACCEPTED``, in batch order: ``plan.taken``)
    are the order of the inserts: an inbox row each, then a row per next hop.
    """
    inbox_seq, outbound_seq = inbox_first, outbound_first
    numbered: list[AcceptOutcome] = []
    for outcome in outcomes:
        if outcome.status is not AcceptStatus.ACCEPTED:
            numbered.append(outcome)
            continue
        local: int | None = None
        if outcome.local and inbox_seq is not None:
            local, inbox_seq = inbox_seq, inbox_seq + 1
        seqs: dict[str, int] = {}
        if outbound_seq is not None:
            for hop in outcome.forward:
                seqs[hop] = outbound_seq
                outbound_seq += 1
        numbered.append(
            AcceptOutcome(
                status=outcome.status,
                local=outcome.local,
                forward=outcome.forward,
                original=outcome.original,
                seqs=seqs,
                inbox_seq=local,
            )
        )
    return numbered


def _send_record(row: tuple[bytes, bytes, bytes, int]) -> SendRecord:
    return SendRecord(request=row[0], message_id=row[1], digest=row[2], expires_ms=row[3])


class SqliteStore(CustodyChecks, SqliteAuditLog, DepthsInMemory):
    """A :class:`~exchnode.store.Store` in one SQLite file; see the module docstring.

    Synchronous: run it in a worker thread.  One connection, owned by the
    store and serialised by a lock, so any thread may call it, one call at a
    time.  ``busy_timeout_ms`` is how long opening waits for another
    process that still holds the file (e.g. a previous daemon shutting down).

    ``read_only=True`` is for auditors reading a stopped node's store: the
    file must exist and be an exchnode store with the audit log (version 2
    or later); it is opened read-only, never created, migrated or written,
    and every changing call raises :class:`UsageError`.  Its callers hold the
    daemon's state lock, so no daemon writes meanwhile.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout_ms: int = 5000,
        read_only: bool = False,
    ) -> None:
        if str(path) == ":memory:" or str(path).startswith("file:"):
            raise UsageError("SqliteStore needs a file path; use MemoryStore for a store in memory")
        check_time(busy_timeout_ms, "busy_timeout_ms")
        self.path = Path(path)
        self.read_only = read_only
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._broken: str | None = None
        self._depths = QueueDepths()
        self._audit_next = 0  # the audit log's next seq, heads' last size, checkpoint's size
        self._last_head_size = 0
        self._checkpoint_size = 0
        self._ordered_from = 0  # record times are checked from this seq on
        self._has_seal = True  # False for an older schema read read-only
        self._sealer: AuditSealer | None = None
        self._side_files: list[Path] = []  # what a read-only open created beside the file
        if read_only:
            conn, self._side_files = open_read_only(self.path, busy_timeout_ms)
        else:
            conn = connect(self.path, busy_timeout_ms)
        try:
            if not read_only:
                prepare(conn, self.path, busy_timeout_ms)
            self._load_depths(conn)
            self._load_audit(conn)
        except BaseException:
            conn.close()
            self._remove_side_files()
            raise
        self._conn = conn

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r}{', closed' if self._conn is None else ''})"

    # --- opening: the counters kept in memory ---------------------------------------

    def _load_depths(self, conn: sqlite3.Connection) -> None:
        try:
            hops = {
                hop: (count, size)
                for hop, count, size in conn.execute(
                    "SELECT next_hop, count(*), coalesce(sum(size), 0) FROM outbound"
                    " GROUP BY next_hop"
                )
            }
            count, size = conn.execute(
                "SELECT count(*), coalesce(sum(size), 0) FROM inbox"
            ).fetchone()
            self._depths = QueueDepths(hops, (count, size))
        except sqlite3.Error as exc:
            raise self._error("cannot open", exc) from exc

    def _remove_side_files(self) -> None:
        for side in self._side_files:
            with contextlib.suppress(OSError):
                if side.name.endswith("-shm") or side.stat().st_size == 0:
                    side.unlink()
        self._side_files = []

    # --- custody in -----------------------------------------------------------------

    def _accept(
        self, batch: list[AcceptItem], now_ms: int, audit: AuditHook | None
    ) -> list[AcceptOutcome]:
        with self._lock, self._transaction("accept") as conn:

            def seen(key: tuple[str, bytes]) -> SeenRecord | None:
                return seen_record(conn.execute(SELECT_SEEN, key).fetchone())

            def sent(send: bytes) -> SendRecord | None:
                row = conn.execute(_SELECT_SEND, (send,)).fetchone()
                return None if row is None else _send_record(row)

            plan = plan_accept(batch, now_ms, seen, sent)
            inbox_rows, outbound_rows = queue_rows(plan)
            conn.executemany(
                _UPSERT_SEND,
                [
                    (send, r.request, r.message_id, r.digest, r.expires_ms)
                    for send, r in plan.sends.items()
                ],
            )
            for statement, stored in ((_INSERT_SEEN, False), (_UPDATE_SEEN, True)):
                conn.executemany(
                    statement,
                    [
                        (r.digest, r.expires_ms, join_targets(sorted(r.targets)), *key)
                        for key, (r, exists) in plan.seen.items()
                        if exists is stored
                    ],
                )
            inbox_first = _insert_numbered(conn, "inbox", _INSERT_INBOX, inbox_rows)
            outbound_first = _insert_numbered(conn, "outbound", _INSERT_OUTBOUND, outbound_rows)
            if audit is not None:
                # Inside the transaction: a raise here rolls back the custody above too.
                audit_rows = check_audit_rows(audit(list(plan.outcomes)), self._audit_next)
                self._insert_audit(conn, audit_rows)
            else:
                audit_rows = []
        # Committed: now, and only now, the counters.
        self._appended(audit_rows)
        for row in inbox_rows:
            self._depths.add_inbound(row[5])
        for out in outbound_rows:
            self._depths.add_outbound(out[0], out[6])
        if inbox_first is None and outbound_first is None:
            return plan.outcomes
        return _numbered(plan.outcomes, inbox_first, outbound_first)

    # --- outbound -------------------------------------------------------------------

    def pending(
        self, next_hop: str, now_ms: int, max_count: int, max_bytes: int, *, after: int = 0
    ) -> list[OutboundEntry]:
        check_page(now_ms, max_count, max_bytes, after)
        with self._lock, self._reading("pending") as conn:
            cursor = conn.execute(_PENDING, (next_hop, after, now_ms, max_count))
            try:
                rows = (OutboundEntry(next_hop=next_hop, **row_fields(row)) for row in cursor)
                return take_within(rows, max_count, max_bytes)
            finally:
                cursor.close()  # ends the read at once, even when we stopped early

    def forwarded(
        self, next_hop: str, seqs: Iterable[int], *, audit: Sequence[AuditRow] = ()
    ) -> int:
        wanted = check_seqs(seqs)
        removed = self._remove("forwarded", _DELETE_OUTBOUND, (next_hop,), wanted, audit)
        for size in removed:
            self._depths.remove_outbound(next_hop, size)
        return len(removed)

    def _remove(
        self,
        what: str,
        delete: str,
        key: tuple[str, ...],
        seqs: list[int],
        audit: Sequence[AuditRow],
    ) -> list[int]:
        """Delete the entries ``seqs`` by ``delete`` and store ``audit``, in one transaction.

        The sizes of the entries deleted: the caller counts them out of its queue.
        """
        if not seqs and not audit:
            return []
        with self._lock:
            self._open_conn()
            audit_rows = check_audit_rows(audit, self._audit_next)
            with self._transaction(what) as conn:
                removed = conn.execute(delete, (*key, _json_list(seqs))).fetchall()
                self._insert_audit(conn, audit_rows)
            self._appended(audit_rows)
        return [size for (size,) in removed]

    # --- inbox ----------------------------------------------------------------------

    def inbox(
        self, now_ms: int, max_count: int, *, max_bytes: int | None = None, after: int = 0
    ) -> list[InboundEntry]:
        limit = check_page(now_ms, max_count, max_bytes, after)
        with self._lock, self._reading("inbox") as conn:
            cursor = conn.execute(_INBOX, (after, now_ms, max_count))
            try:
                return take_within(
                    (InboundEntry(**row_fields(row)) for row in cursor), max_count, limit
                )
            finally:
                cursor.close()

    def delivered(self, seqs: Iterable[int], *, audit: Sequence[AuditRow] = ()) -> int:
        removed = self._remove("delivered", _DELETE_INBOX, (), check_seqs(seqs), audit)
        for size in removed:
            self._depths.remove_inbound(size)
        return len(removed)

    # --- expiry ---------------------------------------------------------------------

    def _take_expired(
        self, now_ms: int, max_count: int, audit: ExpiryAuditHook | None
    ) -> list[ExpiredEntry]:
        audit_rows: list[AuditRow] = []
        with self._lock, self._transaction("take_expired") as conn:
            found = expired_in_order(
                conn.execute(_EXPIRED_OUTBOUND, (now_ms, max_count)).fetchall(),
                conn.execute(_EXPIRED_INBOX, (now_ms, max_count)).fetchall(),
                max_count,
            )
            conn.executemany(
                "DELETE FROM outbound WHERE seq = ?",
                [(e.seq,) for e, _ in found if e.next_hop is not None],
            )
            conn.executemany(
                "DELETE FROM inbox WHERE seq = ?",
                [(e.seq,) for e, _ in found if e.next_hop is None],
            )
            if audit is not None and found:
                # Inside the transaction: a raise here keeps the entries queued.
                records = audit([entry for entry, _ in found])
                audit_rows = check_audit_rows(records, self._audit_next)
                self._insert_audit(conn, audit_rows)
        self._appended(audit_rows)
        for entry, size in found:
            if entry.next_hop is None:
                self._depths.remove_inbound(size)
            else:
                self._depths.remove_outbound(entry.next_hop, size)
        return [entry for entry, _ in found]

    def _prune(self, now_ms: int, max_count: int) -> int:
        with self._lock, self._transaction("prune") as conn:
            keys = conn.execute(
                "SELECT sender, message_id FROM dedup WHERE expires_ms <= ?"
                " ORDER BY expires_ms LIMIT ?",
                (now_ms, max_count),
            ).fetchall()
            conn.executemany("DELETE FROM dedup WHERE sender = ? AND message_id = ?", keys)
            # Send keys live as long as their message: the same bound, the same pass.
            conn.execute(
                "DELETE FROM send_keys WHERE key IN (SELECT key FROM send_keys"
                " WHERE expires_ms <= ? ORDER BY expires_ms LIMIT ?)",
                (now_ms, max_count),
            )
        return len(keys)

    # --- small persistent state ------------------------------------------------------

    def set_peer_state(self, name: str, state: PeerState) -> None:
        check_peer_state(state)
        with self._lock, self._transaction("set_peer_state") as conn:
            conn.execute(
                "INSERT OR REPLACE INTO peers (name, failures, next_attempt_ms, last_ok_ms)"
                " VALUES (?, ?, ?, ?)",
                (name, state.failures, state.next_attempt_ms, state.last_ok_ms),
            )

    def set_meta(self, key: str, value: bytes) -> None:
        check_meta(key, value)
        with self._lock, self._transaction("set_meta") as conn:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def delete_meta(self, key: str) -> None:
        with self._lock, self._transaction("delete_meta") as conn:
            conn.execute("DELETE FROM meta WHERE key = ?", (key,))

    def update_meta(self, changes: Mapping[str, bytes | None]) -> None:
        checked = check_meta_changes(changes)
        written = [(key, value) for key, value in checked.items() if value is not None]
        deleted = [(key,) for key, value in checked.items() if value is None]
        with self._lock, self._transaction("update_meta") as conn:
            if written:
                conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", written)
            if deleted:
                conn.executemany("DELETE FROM meta WHERE key = ?", deleted)

    def backup(self, target: str | os.PathLike[str], *, pages: int = 256) -> None:
        """Copy the store, consistently, into a new file ``target`` while it stays in use.

        SQLite's online backup (``Connection.backup``) runs on the store's own
        connection -- the only one the file's exclusive lock admits -- ``pages``
        pages per step.  The store's lock is held for one step at a time and let
        go between steps, so the node's calls wait at most one step, never the
        whole copy.  A change the node commits meanwhile goes through the same
        connection, which SQLite then writes into the copy too: the file is the
        store as it stood when the last step ended.  ``target`` must not exist;
        it is fsynced before this returns, and removed if the copy fails.
        """
        if pages < 1:
            raise UsageError(f"backup: pages must be at least 1, got {pages}")
        destination = Path(target)
        try:
            os.close(os.open(destination, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
        except OSError as exc:
            raise StoreError(f"backup: cannot create {destination}: {exc.strerror}") from exc
        copy = sqlite3.connect(destination, isolation_level=None)
        # No journal and no sync for the copy while the store's lock is held: its last step
        # commits every page, and a synced commit of a large file held the lock for 0.3 s
        # (245 MB).  The file is fsynced below, after the lock is let go; a copy cut short is
        # removed, never used.
        copy.execute("PRAGMA journal_mode = OFF")
        copy.execute("PRAGMA synchronous = OFF")
        lock = self._lock

        def between_steps(status: int, remaining: int, total: int) -> None:
            if remaining == 0:
                return  # the last step: keep the lock, so the copy is the store as it stands
            lock.release()  # let the node's calls in between two steps
            try:
                time.sleep(0.001)
            finally:
                lock.acquire()

        try:
            with lock:
                self._open_conn().backup(copy, pages=pages, progress=between_steps)
            copy.close()
            with open(destination, "rb+") as stream:
                os.fsync(stream.fileno())
        except BaseException as exc:
            copy.close()
            destination.unlink(missing_ok=True)
            if isinstance(exc, sqlite3.Error):
                raise self._error("backup", exc) from exc
            raise

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is None:
                return
            try:
                conn.close()  # checkpoints the log into the database file and removes it
            except sqlite3.Error as exc:
                raise self._error("close", exc) from exc
            finally:
                self._remove_side_files()


if TYPE_CHECKING:

    def _is_a_store(store: SqliteStore) -> Store:
        return store  # mypy checks that SqliteStore implements every part of Store
