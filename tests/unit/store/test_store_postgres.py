"""What only the PostgreSQL store promises: workers sharing one database, its schema, triggers.

The suite every backend runs is in test_store.py, test_store_audit.py and
test_store_audit_tree.py (the ``store`` fixture).  Here: two ``PostgresStore``
instances -- two sessions, as two hub workers would hold -- racing on one
schema must record an envelope once, number the audit log without gaps or
repeats and expire each entry once; the stored rows survive reopening; the
schema's version is checked; the triggers keep the audit log append-only
below the store's own checks; and no message names a password.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from exchnode.errors import StoreError, UsageError
from exchnode.store import AcceptStatus, AuditRow, QueueDepth
from tests.unit.store.test_store import CHILD, LINK, ME, NOW, ids, make

psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed (exchnode[postgres])")

from psycopg import sql  # noqa: E402 - only once psycopg is known to be there

from exchnode.store import PostgresStore  # noqa: E402
from exchnode.store._postgres_schema import SCHEMA_VERSION  # noqa: E402

ACCEPTED = AcceptStatus.ACCEPTED
DUPLICATE = AcceptStatus.DUPLICATE


@pytest.fixture
def where(postgres_schema: tuple[str, str]) -> tuple[str, str]:
    return postgres_schema


@pytest.fixture
def workers(where: tuple[str, str]) -> Iterator[tuple[PostgresStore, PostgresStore]]:
    """Two stores on one schema: two sessions, as two worker processes would have."""
    conninfo, schema = where
    with (
        PostgresStore(conninfo, schema=schema) as first,
        PostgresStore(conninfo, schema=schema) as second,
    ):
        yield first, second


def raw(where: tuple[str, str]) -> Any:
    """A plain session on the store's schema, autocommit: what an operator's psql would be."""
    conninfo, schema = where
    conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=10)
    conn.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(schema)))
    return conn


def race(*calls: Callable[[], object]) -> list[object]:
    """Run the calls in threads released together; their results (or exceptions), in order."""
    barrier = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)

    def run(index: int) -> None:
        barrier.wait(timeout=30)
        try:
            results[index] = calls[index]()
        except Exception as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive(), "a worker hung"
    return results


# --- workers sharing one database --------------------------------------------------


def test_two_workers_accepting_the_same_envelopes_record_each_once(
    workers: tuple[PostgresStore, PostgresStore],
) -> None:
    first, second = workers
    for round_ in range(6):
        numbers = range(round_ * 100, round_ * 100 + 40)
        batch = [make(n, local=(ME,), forward={CHILD: (f"{CHILD}.a",)}) for n in numbers]
        # The same envelopes, one worker in the other order: their locks must not deadlock.
        mine, theirs = race(
            lambda batch=batch: first.accept(batch, NOW),
            lambda batch=batch: second.accept(batch[::-1], NOW),
        )
        assert isinstance(mine, list), mine
        assert isinstance(theirs, list), theirs
        for a, b in zip(mine, reversed(theirs), strict=True):
            assert {a.status, b.status} == {ACCEPTED, DUPLICATE}
    for store in workers:
        assert store.queue_depth(CHILD) == QueueDepth(240, 240 * 100)
        assert store.inbox_depth().count == 240
    queued = first.pending(CHILD, NOW, 1000, 1 << 30)
    assert sorted(ids(queued)) == [r * 100 + n for r in range(6) for n in range(40)]
    assert len({entry.seq for entry in queued}) == 240
    assert [entry.seq for entry in queued] == sorted(entry.seq for entry in queued)
    assert len(second.inbox(NOW, 1000)) == 240


def test_two_workers_racing_on_one_send_key_take_one_message(
    workers: tuple[PostgresStore, PostgresStore],
) -> None:
    from tests.unit.store.test_store import keyed

    first, second = workers
    mine, theirs = race(
        lambda: first.accept([keyed(1, key=7)], NOW), lambda: second.accept([keyed(2, key=7)], NOW)
    )
    assert isinstance(mine, list), mine
    assert isinstance(theirs, list), theirs
    statuses = {mine[0].status, theirs[0].status}
    assert statuses == {ACCEPTED, AcceptStatus.REPEATED}
    assert first.queue_depth(CHILD).count == 1


def test_workers_appending_to_the_audit_log_leave_no_gap_and_no_repeat(
    workers: tuple[PostgresStore, PostgresStore],
) -> None:
    """Each worker numbers its records from the size it read; the loser is refused, re-reads."""
    refused: list[tuple[int, str]] = []

    def writer(store: PostgresStore, name: bytes) -> None:
        written = 0
        while written < 30:
            size = store.audit_size()
            try:
                store.append_audit([AuditRow(size, name + b"-%d" % written)])
            except UsageError as exc:
                refused.append((size, str(exc)))
                continue
            written += 1

    results = race(lambda: writer(workers[0], b"one"), lambda: writer(workers[1], b"two"))
    assert results == [None, None]
    stored = workers[0].audit_records(0, 1000)
    assert [seq for seq, _ in stored] == list(range(60))
    assert sorted(data for _, data in stored) == sorted(
        [b"one-%d" % n for n in range(30)] + [b"two-%d" % n for n in range(30)]
    )
    assert workers[1].audit_size() == 60
    assert all("repeats a stored seq" in problem for _, problem in refused)


def test_workers_expiring_at_once_take_each_entry_once(
    workers: tuple[PostgresStore, PostgresStore],
) -> None:
    first, second = workers
    first.accept(
        [
            make(n, local=(ME,), forward={LINK: (f"{LINK}.b",)}, expires_ms=NOW + 10)
            for n in range(60)
        ],
        NOW,
    )
    taken = race(
        lambda: first.take_expired(NOW + 10, 1000), lambda: second.take_expired(NOW + 10, 1000)
    )
    entries = [entry for result in taken for entry in result]  # type: ignore[attr-defined]
    assert sorted((e.next_hop or "", e.seq) for e in entries) == sorted(
        {(e.next_hop or "", e.seq) for e in entries}
    )
    assert len(entries) == 120
    assert first.totals() == QueueDepth(0, 0)
    assert second.next_hops() == []


def test_queue_depths_are_shared_by_the_workers(
    workers: tuple[PostgresStore, PostgresStore],
) -> None:
    first, second = workers
    first.accept([make(1), make(2, local=(ME,))], NOW)
    assert second.queue_depth(CHILD) == QueueDepth(1, 100)
    assert second.next_hops() == [CHILD]
    (entry,) = second.pending(CHILD, NOW, 10, 1 << 20)
    assert second.forwarded(CHILD, [entry.seq]) == 1
    assert first.queue_depth(CHILD) == QueueDepth(0, 0)
    assert first.totals() == QueueDepth(1, 100)
    assert first.queue_depth("") == QueueDepth(0, 0)  # the inbox's row is not a next hop


# --- the schema ---------------------------------------------------------------------


def test_everything_survives_close_and_reopen(where: tuple[str, str]) -> None:
    conninfo, schema = where
    with PostgresStore(conninfo, schema=schema) as store:
        store.accept([make(1, local=(ME,), forward={CHILD: (f"{CHILD}.a",)}), make(2)], NOW)
        store.append_audit([AuditRow(0, b"record")])
        store.set_meta("k", b"v")
        before = (store.pending(CHILD, NOW, 10, 1 << 20), store.inbox(NOW, 10), store.totals())
    with PostgresStore(conninfo, schema=schema) as store:
        assert (store.pending(CHILD, NOW, 10, 1 << 20), store.inbox(NOW, 10), store.totals()) == (
            before
        )
        assert store.accept([make(2)], NOW)[0].status is DUPLICATE
        assert store.audit_records() == [AuditRow(0, b"record")]
        assert store.get_meta("k") == b"v"
        assert store.audit_ordered_from() == 0


def test_a_lost_session_is_opened_again_by_the_next_call(where: tuple[str, str]) -> None:
    """A dropped connection (a server restart, a failover) fails the call under way, and
    only it: the next call runs on a new session, and nothing stored is lost."""
    conninfo, schema = where
    with PostgresStore(conninfo, schema=schema) as store, raw(where) as admin:
        store.accept([make(1, forward={CHILD: (f"{CHILD}.a",)})], NOW)
        (pid,) = admin.execute(  # the store's session, as an operator would find it
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'exchnode-store'"
            " AND pid <> pg_backend_pid() AND datname = current_database()"
            " AND query NOT LIKE '%%pg_stat_activity%%' ORDER BY backend_start DESC LIMIT 1"
        ).fetchone()
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(StoreError, match="terminating connection"):
            store.set_meta("during", b"x")
        store.set_meta("after", b"y")  # a new session
        assert store.get_meta("after") == b"y"
        assert store.accept([make(1, forward={CHILD: (f"{CHILD}.a",)})], NOW)[0].status is (
            DUPLICATE
        )
        assert len(store.pending(CHILD, NOW, 10, 1 << 20)) == 1
    with pytest.raises(UsageError, match="is closed"):  # closed by its owner: not reopened
        store.get_meta("after")


def test_a_newer_schema_is_refused_untouched(where: tuple[str, str]) -> None:
    conninfo, schema = where
    PostgresStore(conninfo, schema=schema).close()
    with raw(where) as conn:
        conn.execute(
            "UPDATE store_info SET value = %s WHERE key = 'schema_version'", (SCHEMA_VERSION + 1,)
        )
        tables = conn.execute("SELECT tablename FROM pg_tables ORDER BY 1").fetchall()
    with pytest.raises(StoreError, match="newer") as refused:
        PostgresStore(conninfo, schema=schema)
    assert f"schema version {SCHEMA_VERSION + 1}" in str(refused.value)
    assert schema in str(refused.value)
    with raw(where) as conn:
        assert conn.execute("SELECT tablename FROM pg_tables ORDER BY 1").fetchall() == tables
        version = conn.execute("SELECT value FROM store_info WHERE key = 'schema_version'")
        assert version.fetchone() == (SCHEMA_VERSION + 1,)


def test_a_schema_that_is_not_a_store_is_refused(where: tuple[str, str]) -> None:
    conninfo, schema = where
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("CREATE TABLE {}.t (x int)").format(sql.Identifier(schema)))
    with pytest.raises(StoreError, match="not an exchnode store"):
        PostgresStore(conninfo, schema=schema)


def test_bad_arguments_and_an_unreachable_server_name_no_password(tmp_path: Any) -> None:
    with pytest.raises(UsageError, match="schema"):
        PostgresStore("dbname=x", schema="Robert'); DROP TABLE students;--")
    with pytest.raises(UsageError, match="connection string"):
        PostgresStore("this is = not = a conninfo")
    secret = "hunter2-not-in-any-message"
    with pytest.raises(StoreError, match="cannot connect") as refused:
        PostgresStore(f"host={tmp_path} port=1 dbname=x user=u password={secret}")
    assert secret not in str(refused.value)
    assert str(tmp_path) in str(refused.value)


def test_importing_the_store_package_loads_no_psycopg() -> None:
    probe = "import sys, exchnode.store; print('psycopg' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False"


# --- triggers: the audit log append-only below the store's checks --------------------


def test_triggers_keep_the_audit_log_append_only(where: tuple[str, str]) -> None:
    conninfo, schema = where
    from exchnode.audit import AuditLogState
    from tests.unit.store.test_store_audit import NODE, checkpoint_row, head_row, records
    from tests.unit.store.test_store_audit_tree import Source

    log = AuditLogState(NODE)
    with PostgresStore(conninfo, schema=schema) as store:
        store.set_audit_sealer(lambda size, covered: log.sign_seal(NOW, covered).data)
        store.set_audit_tree(Source(log))
        store.append_audit(records(log, 4))
        store.add_tree_head(*head_row(log.sign_head(NOW)))
        store.set_audit_checkpoint(*checkpoint_row(log.make_checkpoint()))
        store.append_audit(records(log, 4, 4))
        store.add_tree_head(*head_row(log.sign_head(NOW)))
    tables = ("audit_records", "audit_heads", "audit_checkpoint", "audit_seal", "audit_nodes")
    with raw(where) as conn:

        def snapshot() -> list[object]:
            return [
                conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
                for table in (*tables, "store_info", "audit_writer")
            ]

        before = snapshot()
        assert all(before), "every table of the log holds rows"
        for statement in (
            "UPDATE audit_records SET data = '\\x00' WHERE seq = 1",
            "DELETE FROM audit_records WHERE seq = 4",  # at the checkpoint
            "INSERT INTO audit_records (seq, data) VALUES (9, '\\x00')",  # a gap
            "INSERT INTO audit_records (seq, data) VALUES (5, '\\x00')"
            " ON CONFLICT (seq) DO UPDATE SET data = excluded.data",
            "UPDATE audit_heads SET data = '\\x00'",
            "DELETE FROM audit_heads",
            "INSERT INTO audit_heads (tree_size, data) VALUES (2, '\\x00')",  # smaller
            "INSERT INTO audit_heads OVERRIDING SYSTEM VALUE VALUES (1, 8, '\\x00')",  # before
            "UPDATE audit_checkpoint SET size = 1",
            "DELETE FROM audit_checkpoint",
            "INSERT INTO audit_checkpoint (id, size, data) VALUES (1, 1, '\\x00')",
            "INSERT INTO audit_checkpoint (id, size, data) VALUES (1, 1, '\\x00')"
            " ON CONFLICT (id) DO UPDATE SET size = excluded.size",
            "UPDATE audit_seal SET tree_size = 1",
            "DELETE FROM audit_seal",
            "UPDATE audit_nodes SET hashes = '\\x00'",
            "DELETE FROM audit_nodes WHERE seq = 5",  # above the checkpoint
            "INSERT INTO audit_nodes (seq, hashes) VALUES (9, decode(repeat('00', 32), 'hex'))",
            "INSERT INTO audit_nodes (seq, hashes) VALUES (2, decode(repeat('00', 32), 'hex'))",
            "UPDATE store_info SET value = 99 WHERE key = 'audit_ordered_from'",
            "DELETE FROM store_info WHERE key = 'audit_ordered_from'",
            "DELETE FROM audit_writer",
            *(f"TRUNCATE {table}" for table in tables),
            "TRUNCATE store_info",
        ):
            with pytest.raises(psycopg.errors.IntegrityError):
                conn.execute(statement)
        assert snapshot() == before
        with pytest.raises(psycopg.errors.RestrictViolation, match="appended after the last"):
            conn.execute("INSERT INTO audit_records (seq, data) VALUES (2, '\\x00')")
        # Below the checkpoint: allowed (the store's prune does just this).
        conn.execute("DELETE FROM audit_nodes WHERE seq < 4")
        assert conn.execute("DELETE FROM audit_records WHERE seq < 4").rowcount == 4
    with PostgresStore(conninfo, schema=schema) as store:  # and the store still moves them on
        store.append_audit(records(log, 1, 8))
        assert store.audit_size() == 9
