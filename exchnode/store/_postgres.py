"""PostgresStore: the durable store in a PostgreSQL database, shareable by several workers.  I/O.

Theory of operation
-------------------
Custody (``exchnode.store.Store`` explains the contract) is the same as the
SQLite store's: every call that changes anything is one transaction,
committed with ``synchronous_commit = on`` before it returns (returned means
durable); ``accept`` of a batch is one transaction (group commit); on any
error the transaction is rolled back and :class:`StoreError` names the
store and the call (never a row's values).  ``_postgres_schema`` has the
tables, triggers and versions; the store is one class over this module,
``_postgres_audit`` (the audit log) and ``_postgres_base`` (the session).

**Several workers, one database.**  Unlike SQLite's, this store does not
assume it is alone: hub worker processes may each open a ``PostgresStore``
on the same database and schema.  What is safe across them, and how:

* *accept and dedup.*  ``accept`` reads the batch's dedup records (and send
  keys) ``FOR UPDATE``, in key order, plans the batch against them
  (``_base.plan_accept``: the same rule as every backend) and writes new
  records with ``INSERT ... ON CONFLICT DO NOTHING``.  A key another worker
  stored after the read makes its insert return nothing: the transaction is
  rolled back and planned again against what is now stored (a bounded
  number of times).  So one envelope offered to two workers at once is
  ACCEPTED by one and a DUPLICATE for the other -- recorded and queued once
  -- and a send key names one message.  No check-then-insert window.
* *sequence numbers and paging.*  Entries are numbered by identity
  sequences (never reused).  ``after=`` paging needs a queue's numbers in
  commit order, which plain sequences do not give under concurrent writers;
  so every transaction that adds to a queue first locks that queue's
  counter row (``queues``: its depth, updated in the same transaction) and
  only then draws numbers: a queue's writers commit one after the other.
  Different queues do not wait for each other.
* *the audit log* is one sequence for the node, whoever writes it: every
  transaction that appends records, a head or tree rows, or moves the
  checkpoint, locks the log's row (``audit_writer``) and checks what it
  stores against the log as stored, read under that lock -- seqs without
  gaps or repeats across workers; a worker whose log state is behind is
  refused (:class:`UsageError`, nothing stored) as a single node's would be.
  Custody transactions that carry records therefore commit one at a time;
  batches amortise that.  Each worker's log state follows the log as stored:
  under the lock the store shows it the log (``set_audit_follower``,
  ``_audit_follow``) before anything is numbered, and records numbered
  before the lock are numbered again if another worker appended meanwhile;
  heads, checkpoints and pruning are worker 0's.
* *expiry and pruning* (``take_expired``, ``prune``) select with ``FOR
  UPDATE SKIP LOCKED``: workers running them at once take disjoint entries
  (each expired entry reported once) and never wait for each other.
* *queue depths* are rows, not counters in memory: every worker sees what
  all of them queued (a query per call, on the primary key).
* *meta and peer state*: each call is atomic; two workers writing one key
  is last-writer-wins, as for any database row.

What a worker must own: **a next hop** (its forwarder: ``pending`` is a
plain read that removes nothing, and the in-flight pages, credit and
backoff live in the forwarder's memory; two workers forwarding one hop
would send every entry twice -- harmless for custody thanks to dedup, but
wasteful) and **the inbox's delivery** (likewise).  ``exchnode.aio.WorkerShare``
gives each next hop to one worker by a hash of its name and the inbox to
worker 0; a worker learns that another queued entries for what it owns from
this store's *signals* (``watch``, ``signal``; ``_postgres_signals``:
LISTEN/NOTIFY, sent when the queuing transaction commits).  Locks are always taken
in one order -- dedup rows, send keys, queue rows (sorted), the audit row --
so workers do not deadlock; PostgreSQL's deadlock detector and
``lock_timeout`` stop anything else, as a :class:`StoreError`.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import psycopg

from exchnode.errors import StoreError
from exchnode.federation import PeerState
from exchnode.store._base import (
    AcceptPlan,
    CustodyChecks,
    expired_in_order,
    plan_accept,
    queue_rows,
    seen_record,
)
from exchnode.store._checks import (
    check_limit,
    check_meta,
    check_meta_changes,
    check_page,
    check_peer_state,
    check_seqs,
)
from exchnode.store._postgres_audit import PostgresAuditLog
from exchnode.store._postgres_schema import Connection, connect, describe, prepare
from exchnode.store._postgres_signals import SignalListener, send_signals
from exchnode.store._records import (
    AcceptItem,
    AcceptOutcome,
    AuditHook,
    AuditRow,
    ExpiredEntry,
    ExpiryAuditHook,
    InboundEntry,
    OutboundEntry,
    QueueDepth,
    SeenRecord,
    SendRecord,
    check_audit_rows,
    join_targets,
    row_fields,
    take_within,
)
from exchnode.store._signals import INBOX, QUEUE, Signal

if TYPE_CHECKING:
    from exchnode.store._interface import Store

__all__ = ["PostgresStore"]

_INBOX = ""  # the inbox's row in ``queues`` (a next hop is never empty)
_ATTEMPTS = 8  # plans of one accept before giving up on a key that keeps changing

_LOCK_SEEN = (
    "SELECT d.sender, d.message_id, d.digest, d.expires_ms, d.targets FROM dedup AS d"
    " JOIN unnest(%s::text[], %b::bytea[]) AS k (sender, message_id) USING (sender, message_id)"
    " ORDER BY d.sender, d.message_id FOR UPDATE OF d"
)
_LOCK_SENDS = (
    "SELECT key, request, message_id, digest, expires_ms FROM send_keys"
    " WHERE key = ANY(%b::bytea[]) ORDER BY key FOR UPDATE"
)
_INSERT_SEEN = (
    "INSERT INTO dedup (sender, message_id, digest, expires_ms, targets)"
    " SELECT * FROM unnest(%s::text[], %b::bytea[], %b::bytea[], %s::int8[], %s::text[])"
    " ON CONFLICT DO NOTHING RETURNING 1"
)
_UPDATE_SEEN = (
    "UPDATE dedup SET digest = u.digest, expires_ms = u.expires_ms, targets = u.targets"
    " FROM unnest(%s::text[], %b::bytea[], %b::bytea[], %s::int8[], %s::text[])"
    " AS u (sender, message_id, digest, expires_ms, targets)"
    " WHERE dedup.sender = u.sender AND dedup.message_id = u.message_id"
)
# A key another worker stored since the read is live (RETURNING nothing): plan again.
_UPSERT_SENDS = (
    "INSERT INTO send_keys (key, request, message_id, digest, expires_ms)"
    " SELECT * FROM unnest(%b::bytea[], %b::bytea[], %b::bytea[], %b::bytea[], %s::int8[])"
    " ON CONFLICT (key) DO UPDATE SET request = excluded.request,"
    " message_id = excluded.message_id, digest = excluded.digest,"
    " expires_ms = excluded.expires_ms WHERE send_keys.expires_ms <= %s RETURNING 1"
)
# The queues' rows, locked in name order; the lock is what keeps seqs in commit order.
_COUNT_IN = (
    "INSERT INTO queues (queue, count, bytes)"
    " SELECT * FROM unnest(%s::text[], %s::int8[], %s::int8[]) ORDER BY 1"
    " ON CONFLICT (queue) DO UPDATE"
    " SET count = queues.count + excluded.count, bytes = queues.bytes + excluded.bytes"
)
_LOCK_QUEUES = "SELECT queue FROM queues WHERE queue = ANY(%s::text[]) ORDER BY queue FOR UPDATE"
_COUNT_OUT = (
    "UPDATE queues SET count = queues.count - d.count, bytes = queues.bytes - d.bytes"
    " FROM unnest(%s::text[], %s::int8[], %s::int8[]) AS d (queue, count, bytes)"
    " WHERE queues.queue = d.queue"
)
_INSERT_OUTBOUND = (
    "INSERT INTO outbound (next_hop, sender, message_id, digest, targets, expires_ms, size, data)"
    " SELECT * FROM unnest(%s::text[], %s::text[], %b::bytea[], %b::bytea[], %s::text[],"
    " %s::int8[], %s::int4[], %b::bytea[])"
)
_INSERT_INBOX = (
    "INSERT INTO inbox (sender, message_id, digest, targets, expires_ms, size, data)"
    " SELECT * FROM unnest(%s::text[], %b::bytea[], %b::bytea[], %s::text[],"
    " %s::int8[], %s::int4[], %b::bytea[])"
)
# A page within count and bytes, cut by the server: the envelopes beyond are never sent.
_PAGE = (
    "SELECT seq, sender, message_id, digest, targets, expires_ms, data FROM ("
    " SELECT seq, sender, message_id, digest, targets, expires_ms, data,"
    " sum(size) OVER (ORDER BY seq) AS upto, row_number() OVER (ORDER BY seq) AS n"
    " FROM {table} WHERE {hop} seq > %s AND expires_ms > %s ORDER BY seq LIMIT %s"
    ") AS page WHERE n = 1 OR upto <= %s ORDER BY seq"
)
_PENDING = _PAGE.format(table="outbound", hop="next_hop = %s AND")
_INBOX_PAGE = _PAGE.format(table="inbox", hop="")
_EXPIRED_OUTBOUND = (
    "SELECT next_hop, size, seq, sender, message_id, digest, targets, expires_ms, data"
    " FROM outbound WHERE expires_ms <= %s ORDER BY expires_ms, next_hop, seq LIMIT %s"
    " FOR UPDATE SKIP LOCKED"
)
_EXPIRED_INBOX = (
    "SELECT size, seq, sender, message_id, digest, targets, expires_ms, data FROM inbox"
    " WHERE expires_ms <= %s ORDER BY expires_ms, seq LIMIT %s FOR UPDATE SKIP LOCKED"
)
_PRUNE = (
    "WITH gone AS (DELETE FROM {table} WHERE ({key}) IN (SELECT {key} FROM {table}"
    " WHERE expires_ms <= %s ORDER BY expires_ms LIMIT %s FOR UPDATE SKIP LOCKED)"
    " RETURNING 1) SELECT count(*) FROM gone"
)


class _Contended(Exception):
    """Another worker stored a key of the batch since it was read: plan the batch again."""


def _unnest(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows as columns, the arrays one ``unnest`` statement inserts (``width`` of them)."""
    return [[row[i] for row in rows] for i in range(width)]


class PostgresStore(CustodyChecks, PostgresAuditLog):
    """A :class:`~exchnode.store.Store` in a PostgreSQL database; see the module docstring.

    ``conninfo`` is a libpq connection string or URI (its password, if any,
    appears in no message); ``schema`` the PostgreSQL schema that holds this
    store's tables (created if missing, with its tables; several workers of
    one node share one).  Synchronous: run it in a worker thread; one
    session, serialised by a lock, so any thread may call it, one call at a
    time.  ``lock_timeout_ms`` bounds how long a call waits for a lock
    another worker holds; ``connect_timeout_s`` how long connecting may take.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str = "exchnode",
        lock_timeout_ms: int = 30_000,
        connect_timeout_s: int = 10,
    ) -> None:
        check_limit(lock_timeout_ms, "lock_timeout_ms")
        check_limit(connect_timeout_s, "connect_timeout_s")
        self.schema = schema
        self.name = describe(conninfo, schema)
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._broken: str | None = None
        self._sealer = None
        self._tree_source = None
        self._conninfo = conninfo  # for the signal listener's session; never logged
        self._signalling = False
        self._worker = 0
        self._owner: Callable[[Signal], int] = lambda _signal: 0
        self._timeouts = (connect_timeout_s, lock_timeout_ms)
        self._conn = self._connect()

    def _connect(self) -> Connection:
        """A session, the schema checked (created, migrated; not a standby in recovery)."""
        connect_timeout_s, lock_timeout_ms = self._timeouts
        conn = connect(
            self._conninfo,
            self.schema,
            self.name,
            connect_timeout_s=connect_timeout_s,
            lock_timeout_ms=lock_timeout_ms,
        )
        try:
            self._ordered_from = prepare(conn, self.schema, self.name)
        except BaseException:
            conn.close()
            raise
        self._watch_replication(conn)
        return conn

    def __repr__(self) -> str:
        return f"PostgresStore({self.name!r}{', closed' if self._conn is None else ''})"

    # --- signals between the workers of a hub (``_postgres_signals``) -----------------

    def watch(
        self,
        callback: Callable[[Signal | None], None],
        *,
        worker: int,
        owner: Callable[[Signal], int],
        on_error: Callable[[str], None] = lambda _message: None,
    ) -> SignalListener:
        """Listen as ``worker`` for the signals of the others (``callback`` in its thread).

        From now on this store also *sends* them: each transaction that queues
        entries tells the worker that ``owner`` names for each queue it added
        to (none when that is ``worker``), when it commits.  Close the listener
        returned before the store.
        """
        self._worker, self._owner, self._signalling = worker, owner, True
        return SignalListener(self._conninfo, self.schema, worker, callback, on_error=on_error)

    def signal(self, signal: Signal) -> None:
        """Send ``signal`` to the worker that owns what it names (a neighbour's hello, say)."""
        with self._lock, self._transaction("signal") as conn:
            send_signals(conn, self.schema, [(self._owner(signal), signal)])

    def _signals_for(self, queues: Iterable[str]) -> list[tuple[int, Signal]]:
        """The signals for the other workers that the queues this transaction added to need."""
        out = []
        for queue in queues:
            signal = Signal(INBOX) if queue == _INBOX else Signal(QUEUE, queue)
            owner = self._owner(signal)
            if owner != self._worker:
                out.append((owner, signal))
        return out

    # --- custody in -----------------------------------------------------------------

    def _accept(
        self, batch: list[AcceptItem], now_ms: int, audit: AuditHook | None
    ) -> list[AcceptOutcome]:
        with self._lock:
            self._open_conn()
            for attempt in itertools.count(1):
                try:
                    return self._accept_once(batch, now_ms, audit)
                except _Contended:
                    if attempt >= _ATTEMPTS:
                        raise StoreError(
                            f"store {self.name}: accept: the batch's keys kept changing under "
                            f"other workers ({attempt} attempts); nothing was stored"
                        ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _accept_once(
        self, batch: list[AcceptItem], now_ms: int, audit: AuditHook | None
    ) -> list[AcceptOutcome]:
        with self._transaction("accept") as conn:
            plan = self._plan(conn, batch, now_ms)
            self._store_plan(conn, plan, now_ms)
            if audit is not None:
                # Under the log's lock: the records continue the log as stored, whoever wrote it.
                state = self._lock_audit(conn, follow=True)
                rows = check_audit_rows(audit(list(plan.outcomes)), state.size)
                self._append_audit(conn, state, rows)
        return plan.outcomes

    def _plan(self, conn: Connection, batch: list[AcceptItem], now_ms: int) -> AcceptPlan:
        """The batch planned against its records, read and locked (in key order)."""
        keys = sorted({(item.sender, item.message_id) for item in batch})
        seen: dict[tuple[str, bytes], SeenRecord | None] = {
            (row[0], row[1]): seen_record(row[2:])
            for row in conn.execute(_LOCK_SEEN, _unnest(keys, 2))
        }
        sends = sorted({item.send_key.key for item in batch if item.send_key is not None})
        sent: dict[bytes, SendRecord] = {}
        if sends:
            for key, request, message_id, digest, expires_ms in conn.execute(_LOCK_SENDS, (sends,)):
                sent[key] = SendRecord(
                    request=request, message_id=message_id, digest=digest, expires_ms=expires_ms
                )
        return plan_accept(batch, now_ms, seen.get, sent.get)

    def _store_plan(self, conn: Connection, plan: AcceptPlan, now_ms: int) -> None:
        """Write the plan: records (new ones first: they may meet another worker), queues."""
        records = sorted(
            (key, record.digest, record.expires_ms, join_targets(sorted(record.targets)), stored)
            for key, (record, stored) in plan.seen.items()
        )
        new = [(*key, *rest) for key, *rest, stored in records if not stored]
        if new and len(conn.execute(_INSERT_SEEN, _unnest(new, 5)).fetchall()) != len(new):
            raise _Contended
        if plan.sends:
            sends = sorted(
                (key, r.request, r.message_id, r.digest, r.expires_ms)
                for key, r in plan.sends.items()
            )
            stored_sends = conn.execute(_UPSERT_SENDS, (*_unnest(sends, 5), now_ms)).fetchall()
            if len(stored_sends) != len(sends):
                raise _Contended
        old = [(*key, *rest) for key, *rest, stored in records if stored]
        if old:  # rows this transaction holds locked since the read
            conn.execute(_UPDATE_SEEN, _unnest(old, 5))
        inbox, outbound = queue_rows(plan)
        counts: dict[str, tuple[int, int]] = {}
        for queue, size in [(_INBOX, row[5]) for row in inbox] + [(r[0], r[6]) for r in outbound]:
            count, total = counts.get(queue, (0, 0))
            counts[queue] = (count + 1, total + size)
        if not counts:
            return
        # Lock the queues' rows before drawing numbers: seqs in commit order, per queue.
        conn.execute(_COUNT_IN, _unnest([(q, *c) for q, c in sorted(counts.items())], 3))
        if inbox:
            conn.execute(_INSERT_INBOX, _unnest(inbox, 7))
        if outbound:
            conn.execute(_INSERT_OUTBOUND, _unnest(outbound, 8))
        if self._signalling:  # sent when this transaction commits, to the owners of the queues
            send_signals(conn, self.schema, self._signals_for(counts))

    def _count_out(self, conn: Connection, removed: Mapping[str, tuple[int, int]]) -> None:
        """Take removed entries off their queues' rows, locked in name order."""
        if removed:
            queues = sorted(removed)
            conn.execute(_LOCK_QUEUES, (queues,))
            conn.execute(_COUNT_OUT, _unnest([(q, *removed[q]) for q in queues], 3))

    # --- outbound -------------------------------------------------------------------

    def pending(
        self, next_hop: str, now_ms: int, max_count: int, max_bytes: int, *, after: int = 0
    ) -> list[OutboundEntry]:
        check_page(now_ms, max_count, max_bytes, after)
        with self._lock, self._reading("pending") as conn:
            cursor = conn.execute(_PENDING, (next_hop, after, now_ms, max_count, max_bytes))
            rows = [OutboundEntry(next_hop=next_hop, **row_fields(row)) for row in cursor]
        return take_within(rows, max_count, max_bytes)

    def forwarded(
        self, next_hop: str, seqs: Iterable[int], *, audit: Sequence[AuditRow] = ()
    ) -> int:
        wanted = check_seqs(seqs)
        return self._remove(
            "forwarded",
            "DELETE FROM outbound WHERE next_hop = %s AND seq = ANY(%s::int8[]) RETURNING size",
            (next_hop, wanted),
            next_hop,
            audit,
        )

    def _remove(
        self,
        what: str,
        delete: str,
        params: tuple[Any, ...],
        queue: str,
        audit: Sequence[AuditRow],
    ) -> int:
        """Delete entries of ``queue`` by ``delete`` and store ``audit``, in one transaction.

        ``params`` end with the seqs to delete; how many were deleted.
        """
        if isinstance(audit, bytes | str):
            check_audit_rows(audit, 0)  # one record given as bytes: refused, naming why
        if not params[-1] and not audit:
            self._open_conn()
            return 0
        with self._lock, self._transaction(what) as conn:
            sizes = [size for (size,) in conn.execute(delete, params)]
            if sizes:
                self._count_out(conn, {queue: (len(sizes), sum(sizes))})
            self._audited(conn, audit)
        return len(sizes)

    def next_hops(self) -> list[str]:
        with self._lock, self._reading("next_hops") as conn:
            rows = conn.execute(
                "SELECT queue FROM queues WHERE count > 0 AND queue <> '' ORDER BY queue"
            ).fetchall()
        return [hop for (hop,) in rows]

    def queue_depth(self, next_hop: str) -> QueueDepth:
        if next_hop == _INBOX:
            self._open_conn()
            return QueueDepth()  # no next hop has that name; the inbox is inbox_depth()
        return self._depth(next_hop)

    def _depth(self, queue: str) -> QueueDepth:
        with self._lock, self._reading("queue_depth") as conn:
            row = conn.execute("SELECT count, bytes FROM queues WHERE queue = %s", (queue,))
            found = row.fetchone()
        return QueueDepth() if found is None else QueueDepth(found[0], found[1])

    # --- inbox ----------------------------------------------------------------------

    def inbox(
        self, now_ms: int, max_count: int, *, max_bytes: int | None = None, after: int = 0
    ) -> list[InboundEntry]:
        limit = check_page(now_ms, max_count, max_bytes, after)
        with self._lock, self._reading("inbox") as conn:
            cursor = conn.execute(_INBOX_PAGE, (after, now_ms, max_count, limit))
            rows = [InboundEntry(**row_fields(row)) for row in cursor]
        return take_within(rows, max_count, limit)

    def delivered(self, seqs: Iterable[int], *, audit: Sequence[AuditRow] = ()) -> int:
        wanted = check_seqs(seqs)
        return self._remove(
            "delivered",
            "DELETE FROM inbox WHERE seq = ANY(%s::int8[]) RETURNING size",
            (wanted,),
            _INBOX,
            audit,
        )

    def inbox_depth(self) -> QueueDepth:
        return self._depth(_INBOX)

    def totals(self) -> QueueDepth:
        with self._lock, self._reading("totals") as conn:
            row = conn.execute(
                "SELECT coalesce(sum(count), 0), coalesce(sum(bytes), 0) FROM queues"
            ).fetchone()
        return QueueDepth() if row is None else QueueDepth(int(row[0]), int(row[1]))

    # --- expiry ---------------------------------------------------------------------

    def _take_expired(
        self, now_ms: int, max_count: int, audit: ExpiryAuditHook | None
    ) -> list[ExpiredEntry]:
        with self._lock, self._transaction("take_expired") as conn:
            # SKIP LOCKED: workers expiring at once take disjoint entries, and never wait.
            found = expired_in_order(
                conn.execute(_EXPIRED_OUTBOUND, (now_ms, max_count)).fetchall(),
                conn.execute(_EXPIRED_INBOX, (now_ms, max_count)).fetchall(),
                max_count,
            )
            if not found:
                return []
            removed: dict[str, tuple[int, int]] = {}
            for entry, size in found:
                queue = _INBOX if entry.next_hop is None else entry.next_hop
                count, total = removed.get(queue, (0, 0))
                removed[queue] = (count + 1, total + size)
            outbound = [e.seq for e, _ in found if e.next_hop is not None]
            inbox = [e.seq for e, _ in found if e.next_hop is None]
            if outbound:
                conn.execute("DELETE FROM outbound WHERE seq = ANY(%s::int8[])", (outbound,))
            if inbox:
                conn.execute("DELETE FROM inbox WHERE seq = ANY(%s::int8[])", (inbox,))
            self._count_out(conn, removed)
            if audit is not None:
                # Inside the transaction: a raise here keeps the entries queued.
                state = self._lock_audit(conn, follow=True)
                records = audit([entry for entry, _ in found])
                self._append_audit(conn, state, check_audit_rows(records, state.size))
        return [entry for entry, _ in found]

    def _prune(self, now_ms: int, max_count: int) -> int:
        with self._lock, self._transaction("prune") as conn:
            dedup = _PRUNE.format(table="dedup", key="sender, message_id")
            row = conn.execute(dedup.encode(), (now_ms, max_count)).fetchone()
            # Send keys live as long as their message: the same bound, the same pass.
            sends = _PRUNE.format(table="send_keys", key="key")
            conn.execute(sends.encode(), (now_ms, max_count))
        return 0 if row is None else int(row[0])

    # --- small persistent state ------------------------------------------------------

    def set_peer_state(self, name: str, state: PeerState) -> None:
        check_peer_state(state)
        with self._lock, self._transaction("set_peer_state") as conn:
            conn.execute(
                "INSERT INTO peers (name, failures, next_attempt_ms, last_ok_ms)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET"
                " failures = excluded.failures, next_attempt_ms = excluded.next_attempt_ms,"
                " last_ok_ms = excluded.last_ok_ms",
                (name, state.failures, state.next_attempt_ms, state.last_ok_ms),
            )

    def set_meta(self, key: str, value: bytes) -> None:
        check_meta(key, value)
        self.update_meta({key: value})

    def delete_meta(self, key: str) -> None:
        self.update_meta({key: None})

    def update_meta(self, changes: Mapping[str, bytes | None]) -> None:
        checked = check_meta_changes(changes)
        written = sorted((key, value) for key, value in checked.items() if value is not None)
        deleted = sorted(key for key, value in checked.items() if value is None)
        with self._lock, self._transaction("update_meta") as conn:
            if written:
                conn.execute(
                    "INSERT INTO meta (key, value) SELECT * FROM unnest(%s::text[], %b::bytea[])"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    _unnest(written, 2),
                )
            if deleted:
                conn.execute("DELETE FROM meta WHERE key = ANY(%s::text[])", (deleted,))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
            if conn is None:
                return
            try:
                conn.close()
            except psycopg.Error as exc:
                raise self._error("close", exc) from exc


if TYPE_CHECKING:

    def _is_a_store(store: PostgresStore) -> Store:
        return store  # mypy checks that PostgresStore implements every part of Store
