"""Retention: records older than six months go, below a signed checkpoint; the rest verifies.

One node on a test clock.  Records are kept at least ``retention``: a prune
before then deletes nothing.  After it, the records below the newest head
that covers only old records are deleted, the log verifies from that
checkpoint, proofs for what remains still work, a restart resumes from the
checkpoint, and the pruning is itself on the record.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from exchnode.aio import AuditService, Node, WitnessService
from exchnode.aio._audit_service import RETENTION
from exchnode.audit import AuditEntry, decode_record, decode_tree_head
from exchnode.core import leaf_hash, verify_inclusion
from exchnode.errors import UsageError
from exchnode.store import SqliteStore
from tests.audit_entries import config_loaded
from tests.integration.federation import Federation

NAME = "520102.gongan"
DAY = 86_400.0
T0 = 1_790_000_000.0
QUIET = 100 * DAY  # loop intervals the tests never reach: they prune and witness themselves


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def entries(count: int, at: float) -> list[AuditEntry]:
    return [config_loaded(int(at * 1000) + i, NAME) for i in range(count)]


async def started(federation: Federation, clock: Clock) -> tuple[Node, AuditService]:
    audit = AuditService(flush=0.05, head_interval=3600, prune_every=10 * DAY)
    node = federation.node(NAME, clock=clock, services=[audit])
    await node.start()
    return node, audit


async def log_at(audit: AuditService, clock: Clock, count: int) -> None:
    for entry in entries(count, clock.now):
        audit.append_entry(entry)
    await audit.sync()  # stored, and a signed head over them


@pytest.mark.asyncio
async def test_pruning_keeps_six_months_and_the_log_verifiable(tmp_path: Path) -> None:
    federation = Federation(tmp_path, [NAME])
    clock = Clock()
    node, audit = await started(federation, clock)
    try:
        await log_at(audit, clock, 60)  # head at 60
        await log_at(audit, clock, 40)  # head at 100
        clock.now = T0 + 100 * DAY
        await log_at(audit, clock, 50)  # head at 150
        assert await audit.prune() == 0  # nothing is six months old yet
        clock.now = T0 + 190 * DAY
        assert await audit.prune() == 100  # below the head at 100: all older than the cutoff
        stored = await node.run_in_store(node.store.tree_heads)
        sizes = [decode_tree_head(h)[0].tree_size for h in stored]
        assert sizes == [100, 150]  # the head at 60 went with its records
        report = await audit.verify()
        assert report.ok, report.findings
        assert report.first_seq == 100
        with pytest.raises(UsageError, match="pruned"):
            await audit.consistency_proof(50, 150)
        assert await audit.consistency_proof(100, 150)  # from the checkpoint on, as before
    finally:
        await node.close()

    node, audit = await started(federation, clock)  # resumes from the checkpoint
    try:
        await audit.sync()
        report = await audit.verify()
        assert report.ok, report.findings
        head = decode_tree_head(await audit.latest_head() or b"")[0]
        store = node.store
        records = await node.run_in_store(store.audit_records, 0, 1000)
        assert records[0][0] == 100
        prune = [decode_record(d).entry for _, d in records if b"audit.prune" in d]
        assert [(e.get("count"), e.get("tree_size")) for e in prune] == [(100, 100)]
        for seq, data in records:  # the proofs an auditor asks for still work
            proof = await audit.inclusion_proof(seq, head.tree_size)
            assert verify_inclusion(leaf_hash(data), seq, head.tree_size, proof, head.root)
        with pytest.raises(UsageError, match="no inclusion proof"):
            await audit.inclusion_proof(99, head.tree_size)
    finally:
        await node.close()
    with SqliteStore(federation.directory / f"{NAME}.sqlite") as store:
        assert store.audit_records(0, 10)[0][0] == 100
    assert RETENTION >= 183 * DAY


@pytest.mark.asyncio
async def test_a_child_prunes_only_what_its_parent_has_witnessed(tmp_path: Path) -> None:
    """Issue 12: the checkpoint stays within the heads the parent keeps, so that a verifier
    given the parent's witnessed heads finds every pruned record seen under one of them."""
    hub, child = "520102", NAME
    federation = Federation(tmp_path, [hub, child])
    clock = Clock()
    clock.now = start = federation.now.timestamp()  # the nodes link: their certificates are valid
    nodes: list[Node] = []
    try:
        audits, witnesses = {}, {}
        for name in (hub, child):
            # A day's retention: the clock stays within the week the federation's CRLs last.
            audit = AuditService(flush=0.05, head_interval=3600, retention=DAY, prune_every=QUIET)
            witness = WitnessService(audit, interval=QUIET)
            node = federation.node(name, clock=clock, services=[audit, witness])
            await node.start()
            nodes.append(node)
            audits[name], witnesses[name] = audit, witness
        await log_at(audits[child], clock, 20)  # head at 20
        assert (await witnesses[hub].witness_now())[child].size == 20
        await log_at(audits[child], clock, 20)  # head at 40
        # The parent asks since the 20 it keeps (the child learns that), and keeps 40.
        assert (await witnesses[hub].witness_now())[child].size == 40
        clock.now = start + 2 * DAY
        await log_at(audits[child], clock, 10)  # head at 50
        store = nodes[1].store

        async def pruned_to() -> int:
            await audits[child].prune()  # (the node's own loop may be pruning too: one at a time)
            first = await nodes[1].run_in_store(store.audit_records, 0, 1)
            return int(first[0][0])

        assert await pruned_to() == 20  # not 40: all it knows the parent keeps is 20
        status = (await witnesses[hub].witness_now())[child]
        assert (status.verdict, status.error) == ("consistent", None), status
        kept = witnesses[hub].witnessed()[child].head
        assert kept is not None
        assert kept.tree_size >= 50
        report = await audits[child].verify([kept.data])
        assert report.ok, report.findings
        assert await pruned_to() == 40  # now it has: the rest of the old records
        report = await audits[child].verify([kept.data])
        assert report.ok, report.findings
        assert report.first_seq == 40
    finally:
        for node in reversed(nodes):
            await node.close()
