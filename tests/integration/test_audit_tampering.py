"""Issue 12, item 7: erasing or forging audit history with write access to the store file only.

Real nodes on loopback TLS (a county hub and its department, each with its audit
log and witnessing), real SQLite stores.  Every attack is made the way a person
with write access to the file, but not the node's key, can make it: ``sqlite3`` on
the file while the node is down, the store's triggers in place (unless a test says
it drops them, which the file's owner can also do), and the library's pure code
to compute hashes.  Each test is named after what it shows, and checks that the
tampering is named once, that the node refuses to start over it, and, where the
parent is involved, what the parent records.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from exchnode.aio import AuditService, WitnessService
from exchnode.audit import (
    AuditLogState,
    AuditRecord,
    Checkpoint,
    Tamper,
    TreeHeadVerifier,
    VerificationReport,
    decode_checkpoint,
    decode_record,
    decode_tree_head,
    encode_checkpoint,
    verify_log,
)
from exchnode.audit._records import encode_record
from exchnode.core import MerkleLog, leaf_hash
from exchnode.errors import InconsistentLogError
from exchnode.store import SqliteStore
from tests.audit_entries import config_loaded
from tests.integration.daemons import drop_triggers
from tests.integration.federation import AuditedNodes

HUB, CHILD = "520102", "520102.gongan"
QUIET = 3600.0  # intervals the tests never reach: they call witness_now and sync
SILENT_ROUNDS = 2
DAY = 86_400.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class World(AuditedNodes):
    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path, [HUB, CHILD])
        self.witness: dict[str, WitnessService] = {}

    async def start(self, name: str, clock: Clock | None = None) -> None:
        audit = AuditService(flush=0.05, head_interval=QUIET, prune_every=QUIET)
        witness = WitnessService(audit, interval=QUIET, silent_rounds=SILENT_ROUNDS)
        extra = {"clock": clock} if clock is not None else {}
        node = self.federation.node(name, services=[audit, witness], **extra)
        await node.start()
        self.nodes[name], self.audit[name], self.witness[name] = node, audit, witness

    async def grow(self, name: str, n: int, at_ms: int | None = None) -> None:
        """``n`` more records in ``name``'s log, under a signed head."""
        node = self.nodes[name]
        when = at_ms if at_ms is not None else int(node.now() * 1000)
        for _ in range(n):
            self.audit[name].append_entry(config_loaded(when, name))
        await self.audit[name].sync()

    async def stored_log(self, *batches: int) -> Path:
        """The child's store after a run that grew its log by ``batches`` (a head after each)."""
        await self.start(CHILD)
        for n in batches:
            await self.grow(CHILD, n)
        await self.stop(CHILD)
        return self.store_path(CHILD)

    def verify_stored(self, name: str) -> VerificationReport:
        """What ``audit verify --offline`` checks: the store as it is, read-only."""
        with SqliteStore(self.store_path(name), read_only=True) as store:
            return verify_log(
                name,
                store.audit_records(0, 1 << 20),
                store.tree_heads(),
                self.federation.shared_directory,
                checkpoint=store.audit_checkpoint(),
                seal=store.audit_seal(),
                ordered_from=store.audit_ordered_from(),
            )


@pytest_asyncio.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with World(tmp_path) as world:
        yield world


# --- what an editor of the file can do ------------------------------------------------------


@contextlib.contextmanager
def edit(path: Path) -> Iterator[sqlite3.Connection]:
    """``sqlite3`` on the store file: one transaction, the store's triggers in place."""
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        yield db


def rows(db: sqlite3.Connection) -> list[tuple[int, bytes]]:
    return [
        (s, bytes(d)) for s, d in db.execute("SELECT seq, data FROM audit_records ORDER BY seq")
    ]


def heads(db: sqlite3.Connection) -> list[bytes]:
    return [bytes(d) for (d,) in db.execute("SELECT data FROM audit_heads ORDER BY position")]


def checkpoint_from_records(records: list[tuple[int, bytes]], head_data: bytes) -> bytes:
    """A checkpoint at a stored head, computed from the stored records: no key needed."""
    head = decode_tree_head(head_data)[0]
    tree = MerkleLog()
    for _, data in records[: head.tree_size]:
        tree.append(leaf_hash(data))
    size = head.tree_size
    checkpoint = Checkpoint(
        head,
        tuple(tree.frontier(size)),
        tree.leaf(size - 1),
        tuple(tree.inclusion_proof(size - 1, size)),
    )
    return encode_checkpoint(checkpoint)


def forged_after(
    records: list[tuple[int, bytes]], count: int, time_ms: int
) -> list[tuple[int, bytes]]:
    """Records continuing the stored ones: numbered and chained right, as the node would."""
    seq, last = records[-1][0] + 1, decode_record(records[-1][1])
    prev = leaf_hash(records[-1][1])
    out = []
    for i in range(count):
        entry = dataclasses.replace(last.entry, action="catalog.publish", time_ms=time_ms + i)
        data = encode_record(AuditRecord(seq=seq + i, node=last.node, prev=prev, entry=entry))
        out.append((seq + i, data))
        prev = leaf_hash(data)
    return out


async def start_refused(world: World, name: str, finding: str) -> None:
    with pytest.raises(InconsistentLogError, match=finding):
        await world.start(name)
    SqliteStore(world.store_path(name)).close()  # the failed start let go of the store


async def parent_judges_silent(world: World) -> None:
    """The hub asks the (down) child: no verdict, then ``silent`` at the Nth round, once."""
    for _ in range(SILENT_ROUNDS + 1):
        status = (await world.witness[HUB].witness_now())[CHILD]
    assert (status.verdict, status.verdict_ok) == ("silent", False)
    await world.audit[HUB].sync()
    node = world.nodes[HUB]
    records = await node.run_in_store(node.store.audit_records, 0, 100_000)
    verdicts = [
        decode_record(d).entry.outcome
        for _, d in records
        if b"witness" in d and decode_record(d).entry.subject.value == CHILD
    ]
    assert [(o.status.value, o.code) for o in verdicts if o.code == "silent"] == [
        ("refused", "silent")
    ]


# --- 1. a checkpoint computed from the stored records ---------------------------------------


@pytest.mark.asyncio
async def test_a_checkpoint_computed_from_the_stored_records_erases_nothing_unseen(
    world: World,
) -> None:
    """Inserted, with everything below it deleted: verify, the start and the parent all see it."""
    await world.start(HUB)
    await world.start(CHILD)
    await world.grow(CHILD, 30)
    assert (await world.witness[HUB].witness_now())[CHILD].verdict == "first-head"
    await world.grow(CHILD, 5)
    await world.stop(CHILD)
    with edit(world.store_path(CHILD)) as db:
        stored = rows(db)
        last = heads(db)[-1]
        size = decode_tree_head(last)[0].tree_size
        db.execute(
            "INSERT INTO audit_checkpoint (id, size, data) VALUES (1, ?, ?)",
            (size, checkpoint_from_records(stored, last)),
        )
        erased = db.execute("DELETE FROM audit_records WHERE seq < ?", (size,)).rowcount
        db.execute("DELETE FROM audit_heads WHERE tree_size < ?", (size,))
    assert erased == size >= 35

    report = world.verify_stored(CHILD)
    assert not report.ok, "verify said ok over the erased history"
    [unsigned] = report.findings  # named once: no cascade below it
    assert (unsigned.kind, unsigned.seq, unsigned.end) == (Tamper.UNSIGNED_CHECKPOINT, 0, size)
    await start_refused(world, CHILD, "unsigned-checkpoint")
    await parent_judges_silent(world)


@pytest.mark.asyncio
async def test_a_checkpoint_moved_forward_is_refused(world: World, tmp_path: Path) -> None:
    """The node pruned once (its seal names the checkpoint); the editor moves it on."""
    clock = Clock(1_790_000_000.0)
    await world.start(CHILD, clock)  # no parent running: retention alone decides
    world.audit[CHILD].note_witnessed(10**6)  # as its parent would say, asking since that size
    await world.grow(CHILD, 20)
    clock.now += 200 * DAY
    await world.grow(CHILD, 20)
    assert await world.audit[CHILD].prune() == 20
    await world.grow(CHILD, 5)
    assert (await world.audit[CHILD].verify()).ok
    await world.stop(CHILD)
    assert world.verify_stored(CHILD).ok
    with edit(world.store_path(CHILD)) as db:
        stored = rows(db)
        later = next(h for h in heads(db) if decode_tree_head(h)[0].tree_size > 20)
        (old,) = db.execute("SELECT data FROM audit_checkpoint").fetchone()
    size = decode_tree_head(later)[0].tree_size
    # The records below the checkpoint are gone: the editor computes from its frontier on.
    moved = _checkpoint_after(world, bytes(old), stored, later)
    with edit(world.store_path(CHILD)) as db:
        db.execute("UPDATE audit_checkpoint SET size = ?, data = ?", (size, moved))
        db.execute("DELETE FROM audit_records WHERE seq < ?", (size,))
        db.execute("DELETE FROM audit_heads WHERE tree_size < ?", (size,))
    report = world.verify_stored(CHILD)
    assert not report.ok, "verify said ok over the moved checkpoint"
    [unsigned] = report.findings
    assert (unsigned.kind, unsigned.end) == (Tamper.UNSIGNED_CHECKPOINT, size)
    await start_refused(world, CHILD, "unsigned-checkpoint")


def _checkpoint_after(
    world: World, old: bytes, stored: list[tuple[int, bytes]], head_data: bytes
) -> bytes:
    """A checkpoint at a later head, from the stored checkpoint's frontier and the records."""
    base = decode_checkpoint(old, TreeHeadVerifier(world.federation.shared_directory))
    tree = MerkleLog.from_frontier(base.size, base.frontier)
    head = decode_tree_head(head_data)[0]
    for seq, data in stored:
        if base.size <= seq < head.tree_size:
            tree.append(leaf_hash(data))
    size = head.tree_size
    return encode_checkpoint(
        Checkpoint(
            head,
            tuple(tree.frontier(size)),
            tree.leaf(size - 1),
            tuple(tree.inclusion_proof(size - 1, size)),
        )
    )


# --- 2. records after the last signed head --------------------------------------------------


@pytest.mark.asyncio
async def test_records_forged_after_the_last_head_are_never_signed_over(world: World) -> None:
    await world.start(HUB)
    await world.start(CHILD)
    await world.grow(CHILD, 10)
    assert (await world.witness[HUB].witness_now())[CHILD].verdict == "first-head"
    await world.stop(CHILD)
    with edit(world.store_path(CHILD)) as db:
        stored = rows(db)
        before = decode_record(stored[-1][1]).entry.time_ms
        forged = forged_after(stored, 2, before - 60_000)  # backdated, and going back
        db.executemany("INSERT INTO audit_records (seq, data) VALUES (?, ?)", forged)
    end = forged[-1][0] + 1
    report = world.verify_stored(CHILD)
    assert not report.ok, "verify said ok over records no head covers"
    assert [(f.kind, f.seq, f.end) for f in report.findings] == [
        (Tamper.TIME_WENT_BACK, end - 2, None),  # timed a minute before the record before
        (Tamper.UNSIGNED_RECORDS, end - 2, end),  # and under no head the node signed
    ]
    await start_refused(world, CHILD, "unsigned-records")
    await parent_judges_silent(world)  # never a consistent verdict over the forgery


# --- 3. INSERT OR REPLACE ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_insert_or_replace_changes_no_record_of_a_node(world: World) -> None:
    path = await world.stored_log(6)
    with edit(path) as db:
        stored = rows(db)
        seq, data = stored[2]
        forged = data.replace(b"config.loaded", b"config.changd")
        for statement, values in (
            ("INSERT OR REPLACE INTO audit_records (seq, data) VALUES (?, ?)", (seq, forged)),
            ("REPLACE INTO audit_records (seq, data) VALUES (?, ?)", (seq, forged)),
        ):
            with pytest.raises(sqlite3.IntegrityError, match="appended after the last one"):
                db.execute(statement, values)
        with pytest.raises(sqlite3.IntegrityError):
            db.execute(
                "INSERT OR REPLACE INTO audit_heads (position, tree_size, data)"
                " SELECT position, tree_size, x'00' FROM audit_heads LIMIT 1"
            )
        assert rows(db) == stored
    assert world.verify_stored(CHILD).ok
    await world.start(CHILD)  # nothing changed: it starts


# --- 4. no heads, records outside every head ---------------------------------------------------


@pytest.mark.asyncio
async def test_a_store_of_records_under_no_head_is_not_ok(world: World) -> None:
    """The file replaced by one its editor wrote: records chained and numbered, no head."""
    path = await world.stored_log(3)
    with edit(path) as db:
        stored = rows(db)
    path.unlink()
    SqliteStore(path).close()  # an empty store of the current schema, as a new node makes
    with edit(path) as db:
        db.executemany("INSERT INTO audit_records (seq, data) VALUES (?, ?)", stored)
        db.executemany(
            "INSERT INTO audit_records (seq, data) VALUES (?, ?)",
            forged_after(stored, 2, 1_900_000_000_000),
        )
    report = world.verify_stored(CHILD)
    assert not report.ok, "verify said ok with no head at all"
    [unsigned] = report.findings
    assert (unsigned.kind, unsigned.seq, unsigned.end) == (Tamper.UNSIGNED_RECORDS, 0, 5)
    assert report.heads == 0
    await start_refused(world, CHILD, "unsigned-records")


# --- 5. the start checks the whole log, not only its last head ----------------------------------


@pytest.mark.asyncio
async def test_the_start_refuses_a_broken_head_slipped_before_a_good_last_one(
    world: World,
) -> None:
    path = await world.stored_log(3, 3, 3, 3)
    with edit(path) as db:  # triggers in place: heads may be appended, never smaller
        last_size, last = db.execute(
            "SELECT tree_size, data FROM audit_heads ORDER BY position DESC LIMIT 1"
        ).fetchone()
        broken = bytes(last)[:-1] + bytes([last[-1] ^ 1])
        db.execute("INSERT INTO audit_heads (tree_size, data) VALUES (?, ?)", (last_size, broken))
        db.execute("INSERT INTO audit_heads (tree_size, data) VALUES (?, ?)", (last_size, last))
    kinds = world.verify_stored(CHILD).kinds()
    assert kinds == {Tamper.BAD_HEAD, Tamper.HEAD_CHAIN}
    await start_refused(world, CHILD, "bad-head")


@pytest.mark.asyncio
async def test_the_start_refuses_a_removed_or_swapped_head(world: World) -> None:
    path = await world.stored_log(3, 3, 3, 3)
    backup = path.read_bytes()
    with edit(path) as db:  # the file's owner drops the triggers, then deletes a head
        drop_triggers(db)
        db.execute("DELETE FROM audit_heads WHERE position = 2")
    assert world.verify_stored(CHILD).kinds() == {Tamper.HEAD_CHAIN}
    await start_refused(world, CHILD, "head-chain")

    path.write_bytes(backup)
    for side in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        side.unlink(missing_ok=True)
    with edit(path) as db:
        drop_triggers(db)
        two, three = (
            bytes(d) for (d,) in db.execute("SELECT data FROM audit_heads WHERE position IN (2, 3)")
        )
        db.execute("UPDATE audit_heads SET data = ? WHERE position = 2", (three,))
        db.execute("UPDATE audit_heads SET data = ? WHERE position = 3", (two,))
    assert Tamper.HEAD_CHAIN in world.verify_stored(CHILD).kinds()
    await start_refused(world, CHILD, "head-chain")


@pytest.mark.asyncio
async def test_the_start_refuses_a_log_with_a_fork_among_its_heads(world: World) -> None:
    """Heads of two histories, both the node's own: an older regrown log's heads kept beside."""
    path = await world.stored_log(3, 3, 3, 3)
    with edit(path) as db:
        stored = rows(db)
    # What the node itself would have signed over a history regrown after record 5.
    other = AuditLogState.resume(world.federation.nodes[CHILD].identity, stored[:5])
    entry = decode_record(stored[5][1]).entry
    other.append([dataclasses.replace(entry, action="config.other")])
    fork = other.sign_head(entry.time_ms)
    with edit(path) as db:  # slipped in before a copy of the good last head (triggers allow)
        last_size, last = db.execute(
            "SELECT tree_size, data FROM audit_heads ORDER BY position DESC LIMIT 1"
        ).fetchone()
        db.execute(
            "INSERT INTO audit_heads (tree_size, data) VALUES (?, ?)", (last_size, fork.data)
        )
        db.execute("INSERT INTO audit_heads (tree_size, data) VALUES (?, ?)", (last_size, last))
    assert Tamper.FORK in world.verify_stored(CHILD).kinds()
    await start_refused(world, CHILD, "fork")


# --- 7. each tampering named once ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_inserted_record_and_a_gap_are_each_one_finding(world: World) -> None:
    path = await world.stored_log(8, 8, 8)
    backup = path.read_bytes()
    with edit(path) as db:
        stored = rows(db)
    size = len(stored)
    forged = stored[10][1].replace(b"config.loaded", b"config.forged")
    # With the triggers in place, no record can be slipped in.
    with edit(path) as db, pytest.raises(sqlite3.IntegrityError):
        db.execute("INSERT OR REPLACE INTO audit_records (seq, data) VALUES (10, ?)", (forged,))
    with edit(path) as db:  # so the file's owner drops them, and moves the rest up by one
        drop_triggers(db)
        db.execute("DELETE FROM audit_records WHERE seq >= 10")
        db.executemany(
            "INSERT INTO audit_records (seq, data) VALUES (?, ?)",
            [(10, forged), *((seq + 1, data) for seq, data in stored[10:])],
        )
    findings = world.verify_stored(CHILD).findings
    assert len(findings) == 1, [(f.kind.value, f.seq) for f in findings]
    [inserted] = findings
    assert (inserted.kind, inserted.seq, inserted.end) == (Tamper.INSERTED, 10, 11)

    path.write_bytes(backup)
    with edit(path) as db:
        drop_triggers(db)
        db.execute("DELETE FROM audit_records WHERE seq BETWEEN 12 AND 14")
    findings = world.verify_stored(CHILD).findings
    assert len(findings) == 1, [(f.kind.value, f.seq) for f in findings]  # not truncated besides
    [deleted] = findings
    assert (deleted.kind, deleted.seq, deleted.end) == (Tamper.DELETED, 12, 15)
    assert size > 15


# --- an unsigned tail left by a version without the seal ---------------------------------------


@pytest.mark.asyncio
async def test_an_unsigned_tail_from_before_the_seal_is_accepted_only_when_asked_and_on_record(
    world: World,
) -> None:
    """An older version that crashed between two heads left records under no head: the start
    refuses them (they look like a forgery), naming the one-shot way out; taken with it, only
    if they are all that verification finds, with a head signed over them at once and the
    acceptance itself on the record."""
    with edit(await world.stored_log(4)) as db:  # as the old version wrote them: no seal
        stored = rows(db)
        tail = forged_after(stored, 3, decode_record(stored[-1][1]).entry.time_ms + 1)
        db.executemany("INSERT INTO audit_records (seq, data) VALUES (?, ?)", tail)
    with pytest.raises(InconsistentLogError, match="--accept-unsigned-audit-tail"):
        await world.start(CHILD)
    SqliteStore(world.store_path(CHILD)).close()

    audit = AuditService(flush=0.05, head_interval=QUIET, accept_unsigned_tail=True)
    node = world.federation.node(CHILD, services=[audit])
    await node.start()
    await node.close()
    report = world.verify_stored(CHILD)
    assert report.ok, report.findings
    with SqliteStore(world.store_path(CHILD), read_only=True) as store:
        entries = [decode_record(d).entry for _, d in store.audit_records(0, 1000)]
    (accepted,) = [e for e in entries if e.action == "audit.accept-unsigned"]
    assert (accepted.outcome.code, accepted.get("count")) == ("accepted", 3)
    await world.start(CHILD)  # and an ordinary start after it


@pytest.mark.asyncio
async def test_the_unsigned_tail_is_not_accepted_with_any_other_finding(world: World) -> None:
    with edit(await world.stored_log(4)) as db:
        stored = rows(db)
        tail = forged_after(stored, 2, decode_record(stored[-1][1]).entry.time_ms - 60_000)
        db.executemany("INSERT INTO audit_records (seq, data) VALUES (?, ?)", tail)
    audit = AuditService(flush=0.05, head_interval=QUIET, accept_unsigned_tail=True)
    with pytest.raises(InconsistentLogError, match="time-went-back"):
        await world.federation.node(CHILD, services=[audit]).start()
