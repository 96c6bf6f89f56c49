"""The store's half of the audit log (issue 5, SPEC §20.6, §20.9), against every store.

A test that uses only the log takes an ``AuditStore``; one that commits
custody with its records takes the whole ``Store``.

Custody and its audit records commit together or not at all; the stored log
can only grow by records that continue it; heads and the checkpoint round-trip;
pruning deletes only below a checkpoint.  Then what only SQLite promises:
reopening, the v1 → v2 migration, and triggers under the store's own checks.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import pytest

from exchnode.audit import (
    Actor,
    AuditEntry,
    AuditLogState,
    Category,
    Checkpoint,
    CustodyRecorder,
    Outcome,
    Subject,
    SubjectKind,
    TreeHead,
    TreeHeadVerifier,
    decode_checkpoint,
    decode_record,
    decode_tree_head,
    details,
    encode_checkpoint,
)
from exchnode.errors import StoreError, UsageError
from exchnode.store import (
    AcceptItem,
    AcceptOutcome,
    AcceptStatus,
    AuditRow,
    AuditStore,
    ExpiredEntry,
    MemoryStore,
    SqliteStore,
    Store,
)
from exchnode.store._sqlite_schema import APPLICATION_ID, MIGRATIONS, SCHEMA_V1, SCHEMA_VERSION
from exchnode.testing import seeded_directory, seeded_identity
from tests.unit.store.test_store import CHILD, ME, NOW, SENDER, make

NODE = seeded_identity(ME)
VERIFIER = TreeHeadVerifier(seeded_directory(NODE))
ACCEPTED = AcceptStatus.ACCEPTED


def entry(n: int, action: str = "envelope.accept") -> AuditEntry:
    return AuditEntry(
        time_ms=NOW + n,
        category=Category.ENVELOPE,
        action=action,
        actor=Actor.node(ME),
        subject=Subject(SubjectKind.MESSAGE, n.to_bytes(16, "big")),
        outcome=Outcome.ok(),
        detail=details(sender=SENDER, size=100),
    )


def records(log: AuditLogState, n: int, start: int = 0) -> list[AuditRow]:
    logged = log.append([entry(i) for i in range(start, start + n)])
    return [AuditRow(r.seq, r.data) for r in logged]


def head_row(head: TreeHead) -> tuple[int, bytes]:
    """``add_tree_head``'s arguments: the log says the size, the store does not parse."""
    return head.tree_size, head.data


def checkpoint_row(checkpoint: Checkpoint) -> tuple[int, bytes]:
    return checkpoint.size, encode_checkpoint(checkpoint)


class Auditor:
    """An audit callback that logs one record per newly accepted item, and remembers its calls."""

    def __init__(self, log: AuditLogState, items: Sequence[AcceptItem]) -> None:
        self.log = log
        self.items = items
        self.calls: list[list[AcceptOutcome]] = []

    def __call__(self, outcomes: list[AcceptOutcome]) -> list[AuditRow]:
        self.calls.append(outcomes)
        taken = [
            entry(int.from_bytes(item.message_id, "big"))
            for item, outcome in zip(self.items, outcomes, strict=True)
            if outcome.status is ACCEPTED
        ]
        return [AuditRow(r.seq, r.data) for r in self.log.append(taken)]


def subjects(store: AuditStore) -> list[int]:
    """The message numbers the stored records are about, in seq order."""
    out = []
    for _, data in store.audit_records(0, 10_000):
        value = decode_record(data).entry.subject.value
        assert isinstance(value, bytes)
        out.append(int.from_bytes(value, "big"))
    return out


def empty(store: Store) -> bool:
    return store.totals().count == 0 and store.audit_size() == 0


# --- custody and its records: one transaction ------------------------------------


def test_the_callback_sees_the_outcomes_and_its_records_commit_with_the_items(
    store: Store,
) -> None:
    store.accept([make(1)], NOW)  # before auditing: a duplicate below, no record
    log = AuditLogState(NODE)
    items = [make(1), make(2, local=(ME,)), make(3), make(2, local=(ME,))]
    audit = Auditor(log, items)
    outcomes = store.accept(items, NOW, audit=audit)

    assert audit.calls == [outcomes]
    assert [o.status for o in outcomes] == [
        AcceptStatus.DUPLICATE,
        ACCEPTED,
        ACCEPTED,
        AcceptStatus.DUPLICATE,
    ]
    assert subjects(store) == [2, 3]
    assert store.audit_size() == log.size == 2
    assert [seq for seq, _ in store.audit_records(0, 10)] == [0, 1]
    assert len(store.inbox(NOW, 10)) == 1
    # What the store holds is exactly what resume() needs to carry on.
    again = AuditLogState.resume(NODE, store.audit_records(0, 10))
    assert again.root() == log.root()


def test_a_raising_callback_rolls_back_custody_and_records(store: Store) -> None:
    log = AuditLogState(NODE)
    store.append_audit(records(log, 2))

    def fail(outcomes: list[AcceptOutcome]) -> list[bytes]:
        records(log, 1)  # the log state advances, then the callback fails
        raise RuntimeError("audit refused")

    items = [make(1, local=(ME,)), make(2)]
    with pytest.raises(RuntimeError, match="audit refused"):
        store.accept(items, NOW, audit=fail)
    assert store.seen(SENDER, items[0].message_id) is None
    assert store.inbox(NOW, 10) == []
    assert store.pending(CHILD, NOW, 10, 1 << 20) == []
    assert store.totals().count == 0
    assert store.audit_size() == 2

    # The state ran ahead of the store: the next batch is refused, not forked...
    with pytest.raises(UsageError, match="leaves a gap"):
        store.accept(items, NOW, audit=Auditor(log, items))
    assert store.totals().count == 0
    # ...and a state rebuilt from the store carries on.
    log = AuditLogState.resume(NODE, store.audit_records(0, 100))
    outcomes = store.accept(items, NOW, audit=Auditor(log, items))
    assert [o.status for o in outcomes] == [ACCEPTED, ACCEPTED]
    assert subjects(store) == [0, 1, 1, 2]
    assert store.audit_size() == 4


def test_accept_without_a_callback_and_an_empty_batch_store_no_records(store: Store) -> None:
    calls: list[list[AcceptOutcome]] = []

    def audit(outcomes: list[AcceptOutcome]) -> list[bytes]:
        calls.append(outcomes)
        return []

    assert store.accept([], NOW, audit=audit) == []
    assert calls == []
    store.accept([make(1)], NOW)
    (outcome,) = store.accept([make(2)], NOW, audit=lambda o: [])
    assert outcome.status is ACCEPTED
    assert store.audit_size() == 0
    assert store.totals().count == 2


# --- continuity --------------------------------------------------------------------


def test_append_audit_stores_records_in_their_own_transaction(store: Store) -> None:
    log = AuditLogState(NODE)
    batch = records(log, 5)
    store.append_audit(batch[:3])
    store.append_audit([])
    store.append_audit(batch[3:])
    assert store.audit_records(0, 100) == batch
    assert store.audit_records(2, 2) == [batch[2], batch[3]]
    assert store.audit_records(5, 2) == []
    assert store.audit_size() == 5
    assert store.totals().count == 0


@pytest.mark.parametrize(
    ("picked", "words"),
    [
        ([0, 1, 1], "repeats a stored seq"),
        ([0, 2], "leaves a gap"),
        ([1], "leaves a gap"),
    ],
)
def test_records_that_do_not_continue_the_log_are_refused(
    store: Store, picked: list[int], words: str
) -> None:
    batch = records(AuditLogState(NODE), 3)
    with pytest.raises(UsageError, match=words):
        store.append_audit([batch[i] for i in picked])
    items = [make(1)]
    with pytest.raises(UsageError, match=words):
        store.accept(items, NOW, audit=lambda o: [batch[i] for i in picked])
    assert empty(store)
    assert store.seen(SENDER, items[0].message_id) is None


def test_a_stored_seq_is_never_stored_again(store: AuditStore) -> None:
    first = records(AuditLogState(NODE), 2)
    store.append_audit(first)
    fork = AuditLogState(NODE)  # another history from seq 0
    with pytest.raises(UsageError, match="repeats a stored seq"):
        store.append_audit(records(fork, 3))
    assert store.audit_records(0, 10) == first


@pytest.mark.parametrize(
    "bad",
    [b"", (0, b""), (0, "text"), (0, b"x" * 3000), ("0", b"x"), (True, b"x"), (0, b"x", 1)],
)
def test_rows_that_are_not_records_are_refused(store: AuditStore, bad: object) -> None:
    with pytest.raises(UsageError):
        store.append_audit([bad])  # type: ignore[list-item]
    assert store.audit_size() == 0


def test_a_record_is_stored_under_the_seq_the_log_gave_it() -> None:
    log = AuditLogState(NODE)
    batch = records(log, 300)
    store = MemoryStore()
    store.append_audit(batch)
    assert [(seq, decode_record(data).seq) for seq, data in store.audit_records(0, 300)] == [
        (n, n) for n in range(300)
    ]
    with pytest.raises(UsageError, match="not one record"):
        MemoryStore().append_audit(batch[0].data)  # type: ignore[arg-type]


def test_misuse_of_the_audit_calls_is_a_usage_error(store: AuditStore) -> None:
    with pytest.raises(UsageError):
        store.audit_records(-1, 10)
    with pytest.raises(UsageError):
        store.audit_records(0, 0)
    with pytest.raises(UsageError):
        store.tree_heads(0)
    with pytest.raises(UsageError):
        store.add_tree_head(0, b"")
    with pytest.raises(UsageError):
        store.add_tree_head(-1, b"a head")
    with pytest.raises(UsageError):
        store.add_tree_head(0, b"x" * 2000)
    with pytest.raises(UsageError):
        store.set_audit_checkpoint(0, b"a checkpoint")  # an empty log's: prunes nothing
    with pytest.raises(UsageError):
        store.set_audit_checkpoint(1, b"")


# --- heads, checkpoint, pruning -------------------------------------------------------


def test_tree_heads_round_trip_in_stored_order(store: AuditStore) -> None:
    log = AuditLogState(NODE)
    assert store.tree_heads() == []
    heads: list[bytes] = []
    for n in (1, 2, 0, 3):
        store.append_audit(records(log, n, log.size))
        head = log.sign_head(NOW + len(heads))
        heads.append(head.data)
        store.add_tree_head(*head_row(head))
    assert store.tree_heads() == heads
    assert store.tree_heads(2) == heads[2:]
    assert store.tree_heads(10) == heads


def test_a_head_over_records_not_stored_or_going_back_is_refused(store: AuditStore) -> None:
    log = AuditLogState(NODE)
    store.append_audit(records(log, 2))
    early = log.sign_head(NOW)
    unstored = records(log, 1, 2)  # appended to the state, not (yet) stored
    with pytest.raises(UsageError, match="covers records not stored"):
        store.add_tree_head(*head_row(log.sign_head(NOW)))
    store.append_audit(unstored)
    late = log.sign_head(NOW)
    store.add_tree_head(*head_row(late))
    with pytest.raises(UsageError, match="smaller than the last"):
        store.add_tree_head(*head_row(early))
    assert store.tree_heads() == [late.data]


def test_checkpoint_round_trips_and_only_moves_forward(store: AuditStore) -> None:
    log = AuditLogState(NODE)
    assert store.audit_checkpoint() is None
    store.append_audit(records(log, 5))
    first = encode_checkpoint(log.make_checkpoint(log.sign_head(NOW)))
    store.set_audit_checkpoint(5, first)
    assert store.audit_checkpoint() == first
    assert decode_checkpoint(first, VERIFIER).size == 5

    records(log, 2, 5)  # not stored
    with pytest.raises(UsageError, match="covers records not stored"):
        store.set_audit_checkpoint(*checkpoint_row(log.make_checkpoint(log.sign_head(NOW))))
    small = AuditLogState(NODE)
    records(small, 3)
    with pytest.raises(UsageError, match="move the checkpoint back"):
        store.set_audit_checkpoint(*checkpoint_row(small.make_checkpoint(small.sign_head(NOW))))
    assert store.audit_checkpoint() == first


def test_prune_deletes_only_below_a_checkpoint_oldest_first(store: AuditStore) -> None:
    log = AuditLogState(NODE)
    batch = records(log, 10)
    store.append_audit(batch)
    with pytest.raises(UsageError, match="no checkpoint"):
        store.prune_audit(1)
    checkpoint = log.make_checkpoint(log.sign_head(NOW))
    store.add_tree_head(*head_row(checkpoint.head))
    store.set_audit_checkpoint(*checkpoint_row(checkpoint))
    store.append_audit(records(log, 3, 10))
    with pytest.raises(UsageError, match="covers 10"):
        store.prune_audit(11)

    assert store.prune_audit(8, max_count=3) == 3
    assert [seq for seq, _ in store.audit_records(0, 100)] == list(range(3, 13))
    assert store.audit_records(1, 2) == [batch[3], batch[4]]
    assert store.prune_audit(8) == 5
    assert store.prune_audit(8) == 0
    assert store.prune_audit(10) == 2
    assert store.prune_audit(10) == 0
    assert store.audit_size() == 13
    # What is left, with the checkpoint, resumes the log.
    stored = decode_checkpoint(store.audit_checkpoint() or b"", VERIFIER)
    again = AuditLogState.resume(
        NODE, store.audit_records(0, 100), checkpoint=stored, last_head=checkpoint.head
    )
    assert again.root() == log.root()
    store.append_audit(records(log, 1, 13))
    assert store.audit_size() == 14


def test_pruning_everything_keeps_the_log_size(tmp_path: Path) -> None:
    log = AuditLogState(NODE)
    with SqliteStore(tmp_path / "s.db") as store:
        store.append_audit(records(log, 4))
        store.set_audit_checkpoint(*checkpoint_row(log.make_checkpoint(log.sign_head(NOW))))
        assert store.prune_audit(4) == 4
    with SqliteStore(tmp_path / "s.db") as store:
        assert store.audit_records(0, 10) == []
        assert store.audit_size() == 4
        with pytest.raises(UsageError, match="repeats"):
            store.append_audit(records(AuditLogState(NODE), 4)[3:])
        store.append_audit(records(log, 1, 4))
        assert [seq for seq, _ in store.audit_records(0, 10)] == [4]


# --- SQLite only ----------------------------------------------------------------------


def test_sqlite_the_audit_log_survives_close_and_reopen(tmp_path: Path) -> None:
    log = AuditLogState(NODE)
    items = [make(1), make(2, local=(ME,))]
    with SqliteStore(tmp_path / "s.db") as store:
        store.accept(items, NOW, audit=Auditor(log, items))
        store.append_audit(records(log, 2, 100))
        signed = log.sign_head(NOW)
        head = signed.data
        store.add_tree_head(*head_row(signed))
        checkpoint = encode_checkpoint(log.make_checkpoint())
        store.set_audit_checkpoint(signed.tree_size, checkpoint)
        stored = store.audit_records(0, 100)
    with SqliteStore(tmp_path / "s.db") as store:
        assert store.audit_records(0, 100) == stored
        assert store.audit_size() == 4
        assert store.tree_heads() == [head]
        assert store.audit_checkpoint() == checkpoint
        assert subjects(store) == [1, 2, 100, 101]
        with pytest.raises(UsageError, match="smaller than the last"):
            store.add_tree_head(*head_row(AuditLogState.resume(NODE, stored[:1]).sign_head(NOW)))


def test_sqlite_a_failing_record_insert_rolls_back_the_custody(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    SqliteStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TRIGGER poison BEFORE INSERT ON audit_records WHEN new.seq = 1"
        " BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
    )
    conn.commit()
    conn.close()
    items = [make(1), make(2, local=(ME,))]
    with SqliteStore(path) as store:
        with pytest.raises(StoreError, match="injected failure"):
            store.accept(items, NOW, audit=Auditor(AuditLogState(NODE), items))
        assert empty(store)
        assert store.audit_records(0, 10) == []
        assert all(store.seen(SENDER, item.message_id) is None for item in items)


def test_sqlite_triggers_keep_the_log_append_only(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    log = AuditLogState(NODE)
    with SqliteStore(path) as store:
        store.append_audit(records(log, 4))
        store.add_tree_head(*head_row(log.sign_head(NOW)))
        store.set_audit_checkpoint(*checkpoint_row(log.make_checkpoint()))
        store.append_audit(records(log, 2, 4))
    conn = sqlite3.connect(path)
    for statement in (
        "UPDATE audit_records SET data = x'00' WHERE seq = 1",
        "DELETE FROM audit_records WHERE seq = 4",
        "UPDATE audit_heads SET data = x'00'",
        "DELETE FROM audit_heads",
        "UPDATE audit_checkpoint SET size = 1",
        "DELETE FROM audit_checkpoint",
    ):
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(statement)
    with pytest.raises(sqlite3.IntegrityError, match="appended after the last one only"):
        conn.execute("INSERT INTO audit_records (seq, data) VALUES (2, x'00')")
    conn.execute("DELETE FROM audit_records WHERE seq < 4")  # below the checkpoint: allowed
    conn.commit()
    conn.close()


def test_sqlite_insert_or_replace_changes_no_record_head_checkpoint_or_seal(
    tmp_path: Path,
) -> None:
    """Issue 12: ``INSERT OR REPLACE`` deleted the row it replaced without a DELETE trigger.

    With only write access to the file (sqlite3 on it, triggers in place), every way of
    writing over a stored row of the log is refused, and nothing changes.
    """
    path = tmp_path / "s.db"
    log = AuditLogState(NODE)
    with SqliteStore(path) as store:
        store.set_audit_sealer(lambda size, covered: log.sign_seal(NOW, covered).data)
        store.append_audit(records(log, 4))
        store.add_tree_head(*head_row(log.sign_head(NOW)))
        store.set_audit_checkpoint(*checkpoint_row(log.make_checkpoint()))
        store.append_audit(records(log, 2, 4))
        store.add_tree_head(*head_row(log.sign_head(NOW)))
    conn = sqlite3.connect(path)

    def snapshot() -> list[object]:
        return [
            conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
            for table in ("audit_records", "audit_heads", "audit_checkpoint", "audit_seal")
        ] + [conn.execute("SELECT * FROM store_info ORDER BY 1").fetchall()]

    before = snapshot()
    assert before[3], "the seal was stored"
    for statement in (
        "INSERT OR REPLACE INTO audit_records (seq, data) VALUES (5, x'00')",
        "REPLACE INTO audit_records (seq, data) VALUES (1, x'00')",
        "INSERT OR REPLACE INTO audit_records (seq, data) VALUES (3, x'00')",  # below: gone
        "INSERT INTO audit_records (seq, data) VALUES (7, x'00')",  # a gap after the last
        "INSERT OR REPLACE INTO audit_heads (position, tree_size, data) VALUES (1, 6, x'00')",
        "INSERT OR REPLACE INTO audit_heads (position, tree_size, data)"
        " SELECT max(position), tree_size, x'00' FROM audit_heads",
        "INSERT INTO audit_heads (tree_size, data) VALUES (2, x'00')",  # smaller than the last
        "INSERT OR REPLACE INTO audit_checkpoint (id, size, data) VALUES (1, 1, x'00')",
        "INSERT OR REPLACE INTO audit_seal (id, tree_size, data) VALUES (1, 1, x'00')",
        "UPDATE audit_seal SET tree_size = 1",
        "DELETE FROM audit_seal",
        "INSERT OR REPLACE INTO store_info (key, value) VALUES ('audit_ordered_from', 99)",
        "UPDATE store_info SET value = 99 WHERE key = 'audit_ordered_from'",
        "DELETE FROM store_info WHERE key = 'audit_ordered_from'",
    ):
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(statement)
    assert snapshot() == before
    conn.close()
    with SqliteStore(path) as store:  # and the store itself still moves them on
        store.set_audit_sealer(lambda size, covered: log.sign_seal(NOW, covered).data)
        store.append_audit(records(log, 1, 6))
        store.set_audit_checkpoint(*checkpoint_row(log.make_checkpoint()))
        assert decode_tree_head(store.audit_seal() or b"")[0].tree_size == 7
        assert decode_tree_head(store.audit_seal() or b"")[0].checkpoint_size == 6
        assert store.audit_ordered_from() == 0


def _v1_store(path: Path) -> None:
    """A store as version 1 created it, with an envelope in custody."""
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in SCHEMA_V1:
        conn.execute(statement)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("INSERT INTO store_info (key, value) VALUES ('schema_version', 1)")
    item = make(7, local=(ME,))
    conn.execute(
        "INSERT INTO dedup (sender, message_id, digest, expires_ms, targets)"
        " VALUES (?, ?, ?, ?, ?)",
        (item.sender, item.message_id, item.digest, item.expires_ms, ME),
    )
    conn.execute(
        "INSERT INTO inbox (sender, message_id, digest, targets, expires_ms, size, data)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (item.sender, item.message_id, item.digest, ME, item.expires_ms, 100, item.data),
    )
    conn.execute("INSERT INTO meta (key, value) VALUES ('k', x'01')")
    conn.close()


def test_sqlite_a_version_1_store_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    _v1_store(path)
    log = AuditLogState(NODE)
    with SqliteStore(path) as store:
        (entry_7,) = store.inbox(NOW, 10)
        assert entry_7.data == make(7).data[:100]
        assert store.inbox_depth().count == 1
        assert store.get_meta("k") == b"\x01"
        assert store.audit_size() == 0
        assert store.accept([make(7, local=(ME,))], NOW)[0].status is AcceptStatus.DUPLICATE
        items = [make(8)]
        store.accept(items, NOW, audit=Auditor(log, items))
        store.add_tree_head(*head_row(log.sign_head(NOW)))
    conn = sqlite3.connect(path)
    ((version,),) = conn.execute("SELECT value FROM store_info WHERE key = 'schema_version'")
    names = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert version == SCHEMA_VERSION == 6
    assert {"audit_records", "audit_heads", "audit_checkpoint", "audit_seal"} <= names
    assert "audit_nodes" in names
    with SqliteStore(path) as store:
        assert subjects(store) == [8]


def test_sqlite_a_new_store_has_the_migrated_schema(tmp_path: Path) -> None:
    _v1_store(tmp_path / "old.db")
    SqliteStore(tmp_path / "old.db").close()
    SqliteStore(tmp_path / "new.db").close()

    def schema(path: Path) -> list[tuple[str, str]]:
        conn = sqlite3.connect(path)
        rows = conn.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()
        conn.close()
        return rows

    assert schema(tmp_path / "new.db") == schema(tmp_path / "old.db")


# --- custody records outside accept: relay, delivery, expiry -------------------------------


def test_forwarded_and_delivered_store_their_records_with_the_removal(store: Store) -> None:
    log = AuditLogState(NODE)
    recorder = CustodyRecorder(ME)
    items = [make(1), make(2), make(3, local=(ME,))]
    store.accept(
        items, NOW, audit=lambda outcomes: encoded(log, recorder.accepted(NOW, items, outcomes))
    )
    queued = store.pending(CHILD, NOW, 10, 1 << 20)
    relay = encoded(log, recorder.relayed(NOW, CHILD, [e.message_id for e in queued]))
    assert store.forwarded(CHILD, [e.seq for e in queued], audit=relay) == 2
    (inbound,) = store.inbox(NOW, 10)
    deliver = encoded(log, recorder.delivered(NOW, [inbound.message_id], consumed=False))
    assert store.delivered([inbound.seq], audit=deliver) == 1
    stored = [decode_record(data) for _, data in store.audit_records(0, 10)]
    assert [(r.entry.action, r.entry.outcome.code) for r in stored] == [
        ("accept", "accepted"),
        ("relay", "taken"),
        ("deliver", "delivered"),
    ]
    assert stored[1].entry.get("messages") == (items[0].message_id, items[1].message_id)
    assert AuditLogState.resume(NODE, store.audit_records(0, 10)).root() == log.root()
    # A record that does not continue the log refuses the removal with it.
    store.accept([make(4)], NOW)
    (entry4,) = store.pending(CHILD, NOW, 10, 1 << 20)
    stale = AuditLogState(NODE)
    with pytest.raises(UsageError):
        store.forwarded(
            CHILD, [entry4.seq], audit=encoded(stale, recorder.relayed(NOW, CHILD, [b"x" * 16]))
        )
    assert store.queue_depth(CHILD).count == 1


def test_take_expired_stores_its_records_or_keeps_the_entries(store: Store) -> None:
    log = AuditLogState(NODE)
    recorder = CustodyRecorder(ME)
    store.accept([make(1, expires_ms=NOW + 10), make(2, local=(ME,), expires_ms=NOW + 10)], NOW)

    def fail(expired: list[ExpiredEntry]) -> list[bytes]:
        raise RuntimeError("audit refused")

    with pytest.raises(RuntimeError, match="audit refused"):
        store.take_expired(NOW + 20, 10, audit=fail)
    assert store.totals().count == 2
    assert store.audit_size() == 0
    calls: list[list[ExpiredEntry]] = []

    def audit(expired: list[ExpiredEntry]) -> list[bytes]:
        calls.append(expired)
        return encoded(log, recorder.expired(NOW + 20, expired))

    assert store.take_expired(NOW + 5, 10, audit=audit) == []
    assert calls == []  # nothing expired: not called
    taken = store.take_expired(NOW + 20, 10, audit=audit)
    assert len(taken) == 2
    assert store.totals().count == 0
    stored = [decode_record(data).entry for _, data in store.audit_records(0, 10)]
    assert {(e.action, e.subject.value, e.outcome.code) for e in stored} == {
        ("expire", CHILD, "expired-in-queue"),
        ("expire", "", "expired-in-queue"),
    }


def encoded(log: AuditLogState, entries: list[AuditEntry]) -> list[AuditRow]:
    return [AuditRow(r.seq, r.data) for r in log.append(entries)]


def test_heads_below_the_checkpoint_go_and_the_search_still_finds_the_rest(
    store: AuditStore,
) -> None:
    log = AuditLogState(NODE)
    heads = []
    for n in range(4):  # heads at sizes 2, 4, 6, 8
        store.append_audit(records(log, 2, 2 * n))
        heads.append(log.sign_head(NOW + n))
        store.add_tree_head(*head_row(heads[-1]))
    assert store.tree_head_at_most(1) is None
    assert store.tree_head_at_most(5) == heads[1].data
    assert store.tree_head_at_most(100) == heads[3].data
    with pytest.raises(UsageError, match="no checkpoint"):
        store.prune_heads(3)
    store.set_audit_checkpoint(*checkpoint_row(log.make_checkpoint(heads[2])))  # at 6
    with pytest.raises(UsageError, match="covers 6"):
        store.prune_heads(7)
    assert store.prune_heads(6, max_count=1) == 1
    assert store.prune_heads(6) == 1
    assert store.prune_heads(6) == 0  # the checkpoint's own head (size 6) stays
    assert store.tree_heads() == [heads[2].data, heads[3].data]
    assert store.tree_head_at_most(5) is None
    assert store.tree_head_at_most(7) == heads[2].data
    assert store.tree_head_at_most(8) == heads[3].data


def test_sqlite_a_head_at_or_above_the_checkpoint_cannot_be_deleted(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    log = AuditLogState(NODE)
    with SqliteStore(path) as store:
        for n in range(2):
            store.append_audit(records(log, 2, 2 * n))
            store.add_tree_head(*head_row(log.sign_head(NOW + n)))
        store.set_audit_checkpoint(*checkpoint_row(log.make_checkpoint()))  # at 4
    conn = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError, match="below the checkpoint"):
        conn.execute("DELETE FROM audit_heads WHERE tree_size = 4")
    conn.execute("DELETE FROM audit_heads WHERE tree_size = 2")
    conn.commit()
    conn.close()


# --- the seal (issue 12): a signed head over every record, in the same transaction ---------


class Sealer:
    """The audit log's sealer, counting calls; ``fail`` makes the next call raise."""

    def __init__(self, log: AuditLogState) -> None:
        self.log = log
        self.calls: list[tuple[int, int]] = []
        self.fail = False

    def __call__(self, size: int, checkpoint_size: int) -> bytes:
        self.calls.append((size, checkpoint_size))
        if self.fail:
            raise RuntimeError("sealer refused")
        assert size == self.log.size
        return self.log.sign_seal(NOW, checkpoint_size).data


def sealed(store: AuditStore) -> tuple[int, int] | None:
    data = store.audit_seal()
    if data is None:
        return None
    head = decode_tree_head(data)[0]
    return head.tree_size, head.checkpoint_size


def test_every_transaction_that_appends_records_replaces_the_seal(store: Store) -> None:
    log = AuditLogState(NODE)
    recorder = CustodyRecorder(ME)
    assert sealed(store) is None
    store.append_audit(records(log, 2))
    assert sealed(store) is None  # no sealer yet: nothing signs
    sealer = Sealer(log)
    store.set_audit_sealer(sealer)
    items = [make(1), make(2, local=(ME,), expires_ms=NOW + 10)]
    store.accept(items, NOW, audit=lambda o: encoded(log, recorder.accepted(NOW, items, o)))
    assert sealed(store) == (3, 0)
    (queued,) = store.pending(CHILD, NOW, 10, 1 << 20)
    relay = encoded(log, recorder.relayed(NOW, CHILD, [queued.message_id]))
    store.forwarded(CHILD, [queued.seq], audit=relay)
    assert sealed(store) == (4, 0)
    store.take_expired(NOW + 20, 10, audit=lambda e: encoded(log, recorder.expired(NOW, e)))
    assert sealed(store) == (5, 0)
    store.append_audit(records(log, 1, 10))
    store.add_tree_head(*head_row(log.sign_head(NOW)))
    store.delivered([], audit=encoded(log, [entry(20)]))
    assert sealed(store) == (7, 0)
    calls = len(sealer.calls)
    store.accept([make(3)], NOW, audit=lambda o: [])  # no records: nothing to seal
    store.add_tree_head(*head_row(log.sign_head(NOW)))  # a head: no seal either
    assert len(sealer.calls) == calls
    # The checkpoint's transaction stores the head that names it.
    store.set_audit_checkpoint(*checkpoint_row(log.make_checkpoint()))
    assert sealed(store) == (7, 7)
    assert sealer.calls[-1] == (7, 7)


class FailingHook(Protocol):
    fail: bool


def fail_after_two_records(
    store: Store, log: AuditLogState, hook: FailingHook, refusal: str, refused: int
) -> None:
    """Append two records, then make ``hook`` (set on ``store``) raise ``refusal`` and check
    that a batch with records, and records alone, then store nothing of their transaction.

    ``refused``: how many records the refused append carries.
    """
    store.append_audit(records(log, 2))
    hook.fail = True
    items = [make(1, local=(ME,))]
    mark = log.mark()
    with pytest.raises(RuntimeError, match=refusal):
        store.accept(items, NOW, audit=Auditor(log, items))
    log.rollback(mark)
    assert store.totals().count == 0
    assert store.audit_size() == 2
    with pytest.raises(RuntimeError, match=refusal):
        store.append_audit(records(log, refused, 5))
    assert store.audit_size() == 2


def test_a_sealer_that_fails_stores_nothing_of_the_transaction(store: Store) -> None:
    log = AuditLogState(NODE)
    sealer = Sealer(log)
    store.set_audit_sealer(sealer)
    fail_after_two_records(store, log, sealer, "sealer refused", 1)
    assert sealed(store) == (2, 0)


def _filled(path: Path) -> None:
    log = AuditLogState(NODE)
    with SqliteStore(path) as store:
        store.set_audit_sealer(Sealer(log))
        store.append_audit(records(log, 3))
        store.add_tree_head(*head_row(log.sign_head(NOW)))


def test_sqlite_read_only_reads_a_store_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    _filled(path)
    before = path.read_bytes()
    with SqliteStore(path, read_only=True) as store:
        assert store.audit_size() == 3
        assert len(store.tree_heads()) == 1
        assert sealed(store) == (3, 0)
        assert store.audit_ordered_from() == 0
        with pytest.raises(UsageError, match="read-only"):
            store.append_audit(records(AuditLogState.resume(NODE, store.audit_records()), 1, 3))
        with pytest.raises(UsageError, match="read-only"):
            store.set_meta("k", b"v")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.db"]  # no -wal, -shm left


def test_sqlite_read_only_refuses_a_missing_empty_or_foreign_file(tmp_path: Path) -> None:
    """Issue 12: an offline reader opening an empty file wrote a schema into it."""
    with pytest.raises(StoreError, match="No such file"):
        SqliteStore(tmp_path / "none.db", read_only=True)
    assert not (tmp_path / "none.db").exists()
    (tmp_path / "empty.db").touch()
    with pytest.raises(StoreError, match="is empty: not an exchnode store"):
        SqliteStore(tmp_path / "empty.db", read_only=True)
    assert (tmp_path / "empty.db").stat().st_size == 0
    foreign = tmp_path / "foreign.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    before = foreign.read_bytes()
    with pytest.raises(StoreError, match="is not an exchnode store"):
        SqliteStore(foreign, read_only=True)
    assert foreign.read_bytes() == before
    (tmp_path / "text.db").write_text("not a database at all, just text\n" * 200)
    with pytest.raises(StoreError, match="not an SQLite database"):
        SqliteStore(tmp_path / "text.db", read_only=True)
    v1 = tmp_path / "v1.db"
    _v1_store(v1)
    with pytest.raises(StoreError, match="from before the audit log"):
        SqliteStore(v1, read_only=True)


def test_sqlite_an_older_store_checks_record_times_from_its_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "v3.db"
    _v1_store(path)
    conn = sqlite3.connect(path, isolation_level=None)
    for version in (1, 2):
        for statement in MIGRATIONS[version]:
            conn.execute(statement)
    conn.execute("UPDATE store_info SET value = 3 WHERE key = 'schema_version'")
    log = AuditLogState(NODE)
    conn.executemany("INSERT INTO audit_records (seq, data) VALUES (?, ?)", records(log, 5))
    conn.close()
    with SqliteStore(path, read_only=True) as store:  # read as it is: not checked at all
        assert store.audit_ordered_from() == 5
        assert store.audit_seal() is None
    with SqliteStore(path) as store:  # upgraded: from its size on
        assert store.audit_ordered_from() == 5
        store.append_audit(records(log, 1, 5))
    with SqliteStore(path) as store:
        assert store.audit_ordered_from() == 5
