"""The audit tree in the store across restarts (issue 13): derived once, restored, checked.

One node on a test clock.  A store whose records have no tree rows (as a
store from before schema 6 is after its migration) gets them derived at the
node's start, and every proof then verifies against the signed heads; later
records bring their own rows; a restart restores the log from the stored
tree.  A stored tree that does not give the sealed root refuses the start.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from exchnode.aio import AuditService, Node
from exchnode.audit import decode_tree_head
from exchnode.core import leaf_hash, verify_consistency, verify_inclusion
from exchnode.errors import InconsistentLogError
from tests.integration.federation import Federation
from tests.integration.test_audit_retention import NAME, Clock, entries

QUIET = 100 * 86_400.0


async def started(federation: Federation, clock: Clock) -> tuple[Node, AuditService]:
    audit = AuditService(flush=0.05, head_interval=QUIET, prune_every=QUIET)
    node = federation.node(NAME, clock=clock, services=[audit])
    await node.start()
    return node, audit


async def log(audit: AuditService, clock: Clock, count: int) -> None:
    for entry in entries(count, clock.now):
        audit.append_entry(entry)
    await audit.sync()


async def proofs_verify(node: Node, audit: AuditService) -> int:
    """Every record's inclusion proof and every consistency proof from each head, checked."""
    store = node.store
    heads = [decode_tree_head(h)[0] for h in await node.run_in_store(store.tree_heads)]
    last = heads[-1]
    records = await node.run_in_store(store.audit_records, 0, 10_000)
    for seq, data in records:
        proof = await audit.inclusion_proof(seq, last.tree_size)
        assert verify_inclusion(leaf_hash(data), seq, last.tree_size, proof, last.root), seq
    for head in heads:
        proof = await audit.consistency_proof(head.tree_size, last.tree_size)
        assert verify_consistency(head.tree_size, last.tree_size, head.root, last.root, proof)
    return len(records)


def without_tree_rows(path: Path) -> None:
    """The store as a schema-5 store is after its migration: records, no tree rows."""
    conn = sqlite3.connect(path)
    conn.execute("DROP TRIGGER audit_nodes_prune_below_checkpoint")
    conn.execute("DELETE FROM audit_nodes")
    conn.commit()
    conn.close()


@pytest.mark.asyncio
async def test_an_older_store_gets_its_tree_derived_and_proofs_work(tmp_path: Path) -> None:
    federation = Federation(tmp_path, [NAME])
    clock = Clock()
    node, audit = await started(federation, clock)
    try:
        for count in (13, 40, 7):
            await log(audit, clock, count)
    finally:
        await node.close()
    path = federation.directory / f"{NAME}.sqlite"
    without_tree_rows(path)

    with capture_logs() as logs:
        node, audit = await started(federation, clock)
    try:
        derived = [e for e in logs if e["event"] == "audit tree derived"]
        assert derived, logs
        assert derived[-1]["done"] == derived[-1]["total"] >= 59  # from record 1 on
        assert (await audit.verify()).ok
        await proofs_verify(node, audit)
        await log(audit, clock, 21)  # later records bring their own rows
        assert await proofs_verify(node, audit) > 80
    finally:
        await node.close()

    with capture_logs() as logs:
        node, audit = await started(federation, clock)  # restored from the stored tree
    try:
        assert not [e for e in logs if e["event"] == "audit tree derived"]
        await log(audit, clock, 5)
        assert (await audit.verify()).ok
        await proofs_verify(node, audit)
    finally:
        await node.close()


@pytest.mark.asyncio
async def test_a_changed_tree_row_refuses_the_start(tmp_path: Path) -> None:
    federation = Federation(tmp_path, [NAME])
    clock = Clock()
    node, audit = await started(federation, clock)
    try:
        await log(audit, clock, 32)
    finally:
        await node.close()
    path = federation.directory / f"{NAME}.sqlite"
    conn = sqlite3.connect(path)  # the owner, triggers dropped: the last row holds the frontier's
    conn.execute("DROP TRIGGER audit_nodes_no_update")
    (top,) = conn.execute("SELECT max(seq) FROM audit_nodes").fetchone()
    conn.execute("UPDATE audit_nodes SET hashes = zeroblob(length(hashes)) WHERE seq = ?", (top,))
    conn.commit()
    conn.close()
    node = federation.node(
        NAME,
        clock=clock,
        services=[AuditService(flush=0.05, head_interval=QUIET, prune_every=QUIET)],
    )
    with pytest.raises(InconsistentLogError, match="stored audit tree does not match"):
        await node.start()
    await node.close()
