"""The audit log with its tree in a store (issue 13): frontier in memory, proofs from the store.

Against both stores: a log settled between transactions proves exactly what
a log holding everything proves, at every size; ``restore`` rebuilds it from
the store in O(log n) reads and refuses a stored tree that does not give
the sealed root; records stored without their rows (a store from before
schema 6) get them derived; pruning keeps everything provable from the
checkpoint on and refuses what lies below it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchnode.audit import (
    AuditLogState,
    decode_tree_head,
    derive_tree_rows,
    encode_checkpoint,
    restore_state,
    store_nodes,
)
from exchnode.errors import InconsistentLogError, UsageError
from exchnode.store import AuditRow, AuditStore, MemoryStore, SqliteStore
from tests.unit.audit.test_log import NODE, T0, entries


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AuditStore]:
    impl = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "s.db")
    with impl:
        yield impl


def attach(store: AuditStore, log: AuditLogState) -> None:
    """What the audit service does at start: the log is the store's tree source and sealer."""
    store.set_audit_tree(log.tree_rows)
    store.set_audit_sealer(lambda size, covered: log.sign_seal(T0, covered).data)


def flush(store: AuditStore, log: AuditLogState, n: int) -> None:
    """One transaction of ``n`` records, the log settled before it as the service does."""
    log.settle()
    start = log.size
    store.append_audit([AuditRow(r.seq, r.data) for r in log.append(entries(n, start))])


def grown(store: AuditStore, batches: tuple[int, ...]) -> tuple[AuditLogState, AuditLogState]:
    """A stored log and a reference holding its whole tree in memory, equal records."""
    log, full = AuditLogState(NODE, nodes=store_nodes(store)), AuditLogState(NODE)
    attach(store, log)
    for n in batches:
        start = log.size
        flush(store, log, n)
        full.append(entries(n, start))
        store.add_tree_head(log.sign_head(T0).tree_size, log.last_head.data)  # type: ignore[union-attr]
        full.sign_head(T0)
    log.settle()
    return log, full


def test_a_settled_log_proves_what_a_full_one_proves(store: AuditStore) -> None:
    log, full = grown(store, (5, 1, 17, 2, 8))
    size = log.size
    assert size == 33
    assert log._tree.settled_size == size
    assert sum(len(level) for level in log._tree._levels) == bin(size).count("1")
    for m in range(size + 1):
        assert log.root(m) == full.root(m)
        assert log.consistency_proof(m) == full.consistency_proof(m)
    for seq in range(size):
        assert log.inclusion_proof(seq) == full.inclusion_proof(seq)
        assert log.inclusion_proof(seq, max(seq + 1, 20)) == full.inclusion_proof(
            seq, max(seq + 1, 20)
        )
    assert log.make_checkpoint() == full.make_checkpoint()


def test_restore_reads_the_frontier_and_carries_on(store: AuditStore) -> None:
    _, full = grown(store, (9, 4, 13))
    seal, last = store.audit_seal(), store.tree_heads(1)[0]
    restored = restore_state(
        NODE,
        store,
        seal=decode_tree_head(seal or b"")[0],
        last_head=decode_tree_head(last)[0],
        checkpoint=None,
    )
    assert restored.size == 26
    assert restored.root() == full.root()
    assert sum(len(level) for level in restored._tree._levels) == bin(26).count("1")
    assert restored.consistency_proof(9) == full.consistency_proof(9)
    attach(store, restored)
    flush(store, restored, 3)
    more = full.append(entries(3, 26))
    assert store.audit_records(26, 3) == [AuditRow(r.seq, r.data) for r in more]
    restored.settle()
    assert restored.root() == full.root()
    assert restored.inclusion_proof(27) == full.inclusion_proof(27)


def test_restore_refuses_a_tree_that_does_not_give_the_sealed_root(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with SqliteStore(path) as store:
        grown(store, (16,))
        seal = store.audit_seal()
    conn = sqlite3.connect(path)  # an owner with the sqlite3 shell: triggers off, a node changed
    conn.execute("DROP TRIGGER audit_nodes_no_update")
    conn.execute("UPDATE audit_nodes SET hashes = zeroblob(length(hashes)) WHERE seq = 15")
    conn.commit()
    conn.close()
    with SqliteStore(path) as store, pytest.raises(InconsistentLogError, match="does not match"):
        restore_state(
            NODE, store, seal=decode_tree_head(seal or b"")[0], last_head=None, checkpoint=None
        )


def test_rows_of_records_stored_without_them_are_derived(store: AuditStore) -> None:
    full = AuditLogState(NODE)
    for start, n in ((0, 7), (7, 12), (19, 6)):  # as a version before schema 6 stored them
        store.append_audit([AuditRow(r.seq, r.data) for r in full.append(entries(n, start))])
    assert store.audit_nodes_due() == 1
    progress: list[tuple[int, int]] = []
    assert derive_tree_rows(store, None, page=10, progress=lambda *p: progress.append(p)) == 24
    assert progress == [(10, 24), (20, 24), (24, 24)]
    assert store.audit_nodes_due() == 25
    assert derive_tree_rows(store, None) == 0
    log = AuditLogState.restore(NODE, store_nodes(store), 25, store.audit_records(24, 1)[0][1])
    for m in range(26):
        assert log.root(m) == full.root(m)
        assert log.consistency_proof(m) == full.consistency_proof(m)


def test_after_pruning_proofs_from_the_checkpoint_on_still_work(store: AuditStore) -> None:
    log, full = grown(store, (11, 10))
    head = store.tree_heads()[0]
    checkpoint = log.make_checkpoint(decode_tree_head(head)[0])  # size 11
    store.set_audit_checkpoint(checkpoint.size, encode_checkpoint(checkpoint))
    log.prune(checkpoint)
    full.prune(full.make_checkpoint(decode_tree_head(head)[0]))
    assert store.prune_audit(11) == 11
    flush(store, log, 6)
    full.append(entries(6, 21))
    log.settle()
    for m in range(11, 28):
        assert log.root(m) == full.root(m)
        assert log.consistency_proof(m) == full.consistency_proof(m)
    for seq in range(11, 27):
        assert log.inclusion_proof(seq) == full.inclusion_proof(seq)
    with pytest.raises(LookupError):
        log.inclusion_proof(3)
    with pytest.raises(LookupError):
        log.consistency_proof(5)
    seal = decode_tree_head(store.audit_seal() or b"")[0]
    restored = restore_state(NODE, store, seal=seal, last_head=log.last_head, checkpoint=checkpoint)
    assert restored.root() == full.root()
    assert restored.consistency_proof(11) == full.consistency_proof(11)
    assert restored.inclusion_proof(11, 12) == full.inclusion_proof(11, 12)


def test_settling_needs_a_reader_and_stops_rollbacks_at_that_point() -> None:
    with pytest.raises(UsageError, match="node reader"):
        AuditLogState(NODE).settle()
    store = MemoryStore()
    log = AuditLogState(NODE, nodes=store_nodes(store))
    attach(store, log)
    flush(store, log, 4)
    log.settle()
    mark = log.mark()
    log.append(entries(2, 4))
    log.rollback(mark)
    assert log.size == 4
    with pytest.raises(UsageError, match="no tree rows"):
        log.tree_rows(0, 9)
