"""Witnessing on real nodes: a hub checks its children's signed tree heads (SPEC §20.8).

Two kinds of child are witnessed here.  A real child (``AuditService``) grows
its log honestly, across restarts of both nodes, and is then truncated and
regrown for real: its store is deleted while it is down, and it starts afresh.

Edits, deletions, insertions and reorderings are shown at the parent by a
child that *re-signs a rewritten history*: a real node, authenticated by its
real certificate, whose witness endpoint serves a log built with
``AuditLogState`` and the child's own signing key.  That is exactly what a
node's operator with root access can do, and the only form of those
rewrites a parent can ever see: a real ``AuditService`` refuses to start
over a log changed under it (``inconsistent-log``, tested in
``test_audit_service``), so it never serves one.  The hub's side is real
throughout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
import pytest_asyncio

from exchnode.aio import AuditService, LinkError, Node, NodeService, WitnessService, WitnessStatus
from exchnode.aio._witness_service import AUDIT_HEAD_PATH
from exchnode.audit import (
    Actor,
    AuditEntry,
    AuditLogState,
    AuditRecord,
    Category,
    Outcome,
    Role,
    Subject,
    SubjectKind,
    TreeHead,
    decode_record,
    decode_tree_head,
    details,
    verify_log,
)
from exchnode.audit._records import Status
from exchnode.core import LocalIdentity
from exchnode.errors import UsageError
from tests.integration.federation import AuditedNodes, Federation

HUB, CHILD, SIBLING = "520102", "520102.gongan", "520102.minzheng"
NAMES = [HUB, CHILD, SIBLING]
QUIET = 3600.0  # a hub interval the tests never reach: they call witness_now


def entries(n: int, start: int = 0, *, tag: int = 0) -> list[AuditEntry]:
    now_ms = int(time.time() * 1000)
    return [
        AuditEntry(
            time_ms=now_ms,
            category=Category.ADMINISTRATION,
            action="test.step",
            actor=Actor(Role.OPERATOR, "测试员"),
            subject=Subject(SubjectKind.NONE),
            outcome=Outcome.ok(),
            detail=details(count=i, version=tag),
        )
        for i in range(start, start + n)
    ]


class RewrittenLog:
    """A child's log as its operator could serve it: any history, signed with its own key."""

    def __init__(self, identity: LocalIdentity) -> None:
        self.identity = identity
        self.state = AuditLogState(identity)
        self.records: list[tuple[int, bytes]] = []
        self.heads: list[bytes] = []

    def serve(self, history: Sequence[AuditEntry], *, checkpoint_at: int = 0) -> TreeHead:
        """Serve ``history`` from now on: a fresh log of it, with a newly signed head."""
        self.state = AuditLogState(self.identity)
        self.records, self.heads = [], []
        if checkpoint_at:
            self.grow(history[:checkpoint_at])
            self.state.prune(self.state.make_checkpoint())
            history = history[checkpoint_at:]
        return self.grow(history)

    def grow(self, more: Sequence[AuditEntry]) -> TreeHead:
        self.records += [(r.seq, r.data) for r in self.state.append(list(more))]
        head = self.state.sign_head(int(time.time() * 1000))
        self.heads.append(head.data)
        return head

    async def latest_head(self) -> bytes | None:
        return self.heads[-1] if self.heads else None

    async def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        if new_size > self.state.size:  # a head not of this log: any proof will do
            return []
        return self.state.consistency_proof(old_size, new_size)

    def append_entry(self, entry: AuditEntry) -> None:
        raise AssertionError("a leaf node has no children to witness")

    async def flush_now(self) -> None:
        raise AssertionError("a leaf node has no children to witness")

    def note_witnessed(self, size: int) -> None:
        self.witnessed = size  # what the parent said it keeps


class World(AuditedNodes):
    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path, NAMES)
        self.witness: dict[str, WitnessService] = {}

    async def start(
        self, name: str, *, log: RewrittenLog | None = None, silent_rounds: int = 5
    ) -> None:
        audit = AuditService(flush=0.05, head_interval=0.1)
        witness = WitnessService(log or audit, interval=QUIET, silent_rounds=silent_rounds)
        node = self.federation.node(name, services=[audit, witness])
        await node.start()
        self.nodes[name], self.audit[name], self.witness[name] = node, audit, witness

    async def grow(self, name: str, n: int) -> None:
        """``n`` more records in ``name``'s log, stored under a signed head."""
        audit = self.audit[name]
        for entry in entries(n, audit.size):
            audit.append_entry(entry)
        await audit.sync()

    async def witness_child(self) -> WitnessStatus:
        return (await self.witness[HUB].witness_now())[CHILD]

    async def rewritable_child(self, served: list[AuditEntry]) -> tuple[RewrittenLog, TreeHead]:
        """The child serving ``served`` from a log its operator rewrites at will, then the hub,
        which witnesses it once (a first head): that log and the head it served."""
        log = RewrittenLog(self.federation.nodes[CHILD].identity)
        head = log.serve(served)
        await self.start(CHILD, log=log)
        await self.start(HUB)
        assert (await self.witness_child()).verdict == "first-head"
        return log, head

    async def records(self, name: str) -> list[AuditRecord]:
        node = self.nodes[name]
        await self.audit[name].sync()
        stored = await node.run_in_store(node.store.audit_records, 0, 100_000)
        return [decode_record(data) for _, data in stored]

    async def verdicts(self, child: str = CHILD) -> list[str]:
        """The codes of the hub's witness records about ``child``, in log order."""
        return [
            r.entry.outcome.code
            for r in await self.records(HUB)
            if r.entry.category is Category.WITNESS
            and r.entry.action == "witness"
            and r.entry.subject.value == child
        ]


@pytest_asyncio.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with World(tmp_path) as world:
        yield world


@pytest.mark.asyncio
async def test_an_honest_child_is_witnessed_across_restarts_of_both(world: World) -> None:
    for name in NAMES:
        await world.start(name)
    await world.grow(CHILD, 3)
    status = await world.witness_child()
    assert (status.verdict, status.size, status.verdict_ok) == ("first-head", 3, True)
    sibling = world.witness[HUB].witnessed()[SIBLING]
    assert sibling.head is None  # nothing logged, no head signed: no verdict either
    assert sibling.verdict is None

    await world.grow(CHILD, 4)
    status = await world.witness_child()
    assert (status.verdict, status.size) == ("consistent", 7)
    assert (await world.witness_child()).checked_ms is not None  # unchanged: no new record

    await world.stop(CHILD)
    await world.start(CHILD)
    await world.grow(CHILD, 2)
    status = await world.witness_child()
    assert status.verdict == "consistent"
    assert status.size >= 9  # and any head the child signed on its way down

    await world.stop(HUB)
    await world.start(HUB)
    restored = world.witness[HUB].witnessed()[CHILD]
    assert (restored.head, restored.verdict) == (status.head, "consistent")
    await world.grow(CHILD, 1)
    assert (await world.witness_child()).verdict == "consistent"  # not a first head again

    assert await world.verdicts() == ["first-head", "consistent", "consistent", "consistent"]
    assert (await world.audit[HUB].verify()).ok  # the verdicts are in a log that verifies
    kept = world.witness[HUB].witnessed()[CHILD].head
    assert kept is not None
    child = world.nodes[CHILD]
    report = verify_log(
        CHILD,
        await child.run_in_store(child.store.audit_records, 0, 100_000),
        await child.run_in_store(child.store.tree_heads),
        world.federation.shared_directory,
        witnessed=[kept.data],
    )
    assert report.ok, report.to_json()


@pytest.mark.asyncio
async def test_a_child_truncated_and_regrown_is_caught_until_an_operator_resets(
    world: World,
) -> None:
    for name in NAMES:
        await world.start(name)
    await world.grow(CHILD, 5)
    first = await world.witness_child()
    assert (first.verdict, first.size) == ("first-head", 5)

    # The child's operator deletes its store while it is down; it starts with an empty log.
    await world.stop(CHILD)
    for path in world.federation.directory.glob(f"{CHILD}.sqlite*"):
        path.unlink()
    await world.start(CHILD)
    assert world.audit[CHILD].size == 0

    assert (await world.witness_child()).verdict == "no-head"  # it had signed one before
    await world.grow(CHILD, 3)
    assert (await world.witness_child()).verdict == "shrunk"
    await world.grow(CHILD, 2)
    assert (await world.witness_child()).verdict == "fork"  # size 5 again, another root
    await world.grow(CHILD, 3)
    status = await world.witness_child()
    assert status.verdict == "inconsistent"
    assert status.verdict_ok is False
    assert (status.head, status.accepted_ms) == (first.head, first.accepted_ms)  # the baseline
    assert (await world.witness_child()).verdict == "inconsistent"  # flagged every round

    assert await world.verdicts() == [
        "first-head",
        "no-head",
        "shrunk",
        "fork",
        "inconsistent",
        "inconsistent",
    ]
    refused = [
        r.entry
        for r in await world.records(HUB)
        if r.entry.category is Category.WITNESS and r.entry.outcome.status is Status.REFUSED
    ]
    assert all(e.actor == Actor.node(HUB) for e in refused)
    assert refused[-1].get("previous_size") == 5
    assert refused[-1].get("tree_size") == 8

    # `audit verify` of the regrown log alone passes; with the parent's witnessed head it fails.
    child = world.nodes[CHILD]
    records = await child.run_in_store(child.store.audit_records, 0, 100_000)
    heads = await child.run_in_store(child.store.tree_heads)
    directory = world.federation.shared_directory
    assert verify_log(CHILD, records, heads, directory).ok
    assert first.head is not None
    assert not verify_log(CHILD, records, heads, directory, witnessed=[first.head.data]).ok

    await world.witness[HUB].reset(CHILD, operator="审计员")
    status = await world.witness_child()
    assert (status.verdict, status.size) == ("first-head", 8)
    reset = [r.entry for r in await world.records(HUB) if r.entry.action == "witness.reset"]
    assert [(e.actor.name, e.get("previous_size")) for e in reset] == [("审计员", 5)]


@pytest.mark.asyncio
async def test_each_kind_of_rewrite_is_caught_with_its_reason(world: World) -> None:
    honest = entries(10)
    log, _ = await world.rewritable_child(honest[:6])
    kept = log.serve(honest)
    assert (await world.witness_child()).verdict == "consistent"

    more = entries(8, 10, tag=1)
    edited = [*honest[:3], entries(1, 3, tag=9)[0], *honest[4:]]
    rewrites = {
        "edit": ([*edited, *more[:2]], "inconsistent"),
        "edit, same size": (edited, "fork"),
        "delete": ([*honest[:3], *honest[4:], *more[:3]], "inconsistent"),
        "insert": ([*honest[:3], *more[:1], *honest[3:], *more[1:2]], "inconsistent"),
        "reorder": ([*honest[:3], honest[4], honest[3], *honest[5:], *more[:2]], "inconsistent"),
        "truncate, regrow less": ([*honest[:4], *more[:2]], "shrunk"),
        "truncate, regrow as much": ([*honest[:4], *more[:6]], "fork"),
        "truncate, regrow more": ([*honest[:4], *more], "inconsistent"),
    }
    directory = world.federation.shared_directory
    for kind, (history, reason) in rewrites.items():
        log.serve(history)
        status = await world.witness_child()
        assert (status.verdict, status.verdict_ok) == (reason, False), kind
        assert status.head == kept, kind  # the last good head stays the baseline
        # The rewritten log verifies on its own (it was re-signed); not against the parent.
        assert verify_log(CHILD, log.records, log.heads, directory).ok, kind
        report = verify_log(CHILD, log.records, log.heads, directory, witnessed=[kept.data])
        assert not report.ok, kind

    log.serve([*honest, *more])  # the true history, grown: consistent with the baseline again
    assert (await world.witness_child()).verdict == "consistent"
    reasons = [reason for _, reason in rewrites.values()]
    assert await world.verdicts() == ["first-head", "consistent", *reasons, "consistent"]
    assert (await world.audit[HUB].verify()).ok


@pytest.mark.asyncio
async def test_heads_the_verifier_rejects_are_refused_on_the_record(world: World) -> None:
    identities = world.federation.nodes
    history = entries(6)
    log, kept = await world.rewritable_child(history[:4])

    # The child's name on a head signed with another node's key.
    hub = identities[HUB].identity
    impostor = LocalIdentity.from_keys(CHILD, hub.signing_private_key, hub.encryption_private_key)
    forged = AuditLogState(impostor)
    forged.append(history)
    log.heads.append(forged.sign_head(int(time.time() * 1000)).data)
    assert (await world.witness_child()).verdict == "unknown-signer"

    # A genuine head, one bit of its seal flipped.
    good = log.grow(history[4:])
    log.heads[-1] = good.data[:-1] + bytes([good.data[-1] ^ 1])
    assert (await world.witness_child()).verdict == "bad-signature"

    # Another node's genuine head, served as the child's.
    other = AuditLogState(identities[SIBLING].identity)
    other.append(history)
    log.heads.append(other.sign_head(int(time.time() * 1000)).data)
    status = await world.witness_child()
    assert (status.verdict, status.head) == ("other-node", kept)

    log.heads.append(good.data)
    assert (await world.witness_child()).verdict == "consistent"
    assert await world.verdicts() == [
        "first-head",
        "unknown-signer",
        "bad-signature",
        "other-node",
        "consistent",
    ]


@pytest.mark.asyncio
async def test_a_pruned_history_is_accepted_only_after_the_retention_period(world: World) -> None:
    history = entries(12)
    log, _ = await world.rewritable_child(history[:3])

    head = log.serve(history[:10], checkpoint_at=8)  # records 0..7 pruned: no proof from 3
    assert decode_tree_head(head.data)[0].checkpoint_size == 8
    status = await world.witness_child()
    assert (status.verdict, status.size) == ("pruned-early", 3)  # the kept head is minutes old

    world.witness[HUB].retention = 0.001  # as if the hub had not witnessed it for months
    status = await world.witness_child()
    assert (status.verdict, status.verdict_ok, status.size) == ("pruned", True, 10)
    log.grow(history[10:])
    assert (await world.witness_child()).verdict == "consistent"  # proofs from the checkpoint on
    assert await world.verdicts() == ["first-head", "pruned-early", "pruned", "consistent"]


@pytest.mark.asyncio
async def test_the_endpoint_answers_the_parent_only_and_checks_since(world: World) -> None:
    for name in (HUB, CHILD):
        await world.start(name)
    with pytest.raises(LinkError) as caught:
        await world.nodes[CHILD].request(HUB, "GET", AUDIT_HEAD_PATH)
    assert caught.value.status == 403
    for since in ("x", "-1", "01"):
        with pytest.raises(LinkError) as caught:
            await world.nodes[HUB].request(CHILD, "GET", f"{AUDIT_HEAD_PATH}?since={since}")
        assert caught.value.status == 400


@pytest.mark.asyncio
async def test_the_hub_witnesses_on_its_own_soon_after_start(tmp_path: Path) -> None:
    federation = Federation(tmp_path, NAMES)
    nodes: list[Node] = []
    try:
        audits = {name: AuditService(flush=0.05, head_interval=0.1) for name in NAMES}
        witness = WitnessService(audits[HUB], interval=0.2)
        for name in NAMES:
            services: list[NodeService] = [audits[name]]
            services.append(witness if name == HUB else WitnessService(audits[name]))
            nodes.append(federation.node(name, services=services))
            await nodes[-1].start()
        for entry in entries(2):
            audits[CHILD].append_entry(entry)
        await audits[CHILD].sync()

        async def witnessed() -> None:
            while witness.witnessed()[CHILD].verdict is None:
                await asyncio.sleep(0.05)

        await asyncio.wait_for(witnessed(), 10.0)
        assert witness.witnessed()[CHILD].verdict == "first-head"
        assert witness.witnessed()[SIBLING].verdict is None  # no head to witness yet
    finally:
        for node in nodes:
            await node.close()


@pytest.mark.asyncio
async def test_a_child_that_stops_answering_is_judged_silent_once_then_back(
    world: World,
) -> None:
    """Issue 12, item 8: a child that never answers is not left ``consistent``.

    (The sibling, never started, is judged silent too, from no head at all.)
    """
    await world.start(HUB, silent_rounds=3)
    await world.start(CHILD)
    await world.grow(CHILD, 3)
    assert (await world.witness_child()).verdict == "first-head"
    await world.stop(CHILD)
    for round_ in (1, 2):
        status = await world.witness_child()
        assert (status.verdict, status.verdict_ok, status.unanswered) == (
            "first-head",
            True,
            round_,
        )
        assert status.error  # why: unreachable
    status = await world.witness_child()
    assert (status.verdict, status.verdict_ok, status.unanswered) == ("silent", False, 3)
    assert status.head is not None
    assert status.size == 3  # the kept head stays: the next answer is checked against it
    for _ in range(3):
        assert (await world.witness_child()).verdict == "silent"
    assert await world.verdicts() == ["first-head", "silent"]  # on the record once
    silent = [
        r.entry
        for r in await world.records(HUB)
        if r.entry.category is Category.WITNESS
        and r.entry.outcome.code == "silent"
        and r.entry.subject.value == CHILD
    ]
    assert [(e.outcome.status, dict(e.detail)) for e in silent] == [
        (Status.REFUSED, {"previous_size": 3})
    ]

    await world.stop(HUB)  # the verdict is kept across the hub's restart
    await world.start(HUB, silent_rounds=3)
    assert world.witness[HUB].witnessed()[CHILD].verdict == "silent"
    await world.start(CHILD)  # back, with the very head the hub keeps
    status = await world.witness_child()
    assert (status.verdict, status.verdict_ok, status.unanswered) == ("consistent", True, 0)
    assert await world.verdicts() == ["first-head", "silent", "consistent"]


def test_silent_rounds_is_a_positive_count() -> None:
    audit = AuditService()
    for bad in (0, -1, 2.5, True):
        with pytest.raises(UsageError, match="silent_rounds"):
            WitnessService(audit, silent_rounds=bad)  # type: ignore[arg-type]
