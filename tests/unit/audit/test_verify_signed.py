"""What only the node's signature makes count (issue 12): records under a signed head, a
checkpoint a signed head names, record times in order, the seal over every record.

Every forgery here uses what anyone who can write the store file has: its records and
heads, and this library; never the node's key.
"""

from __future__ import annotations

import dataclasses

from exchnode.audit import (
    AuditLogState,
    AuditRecord,
    Checkpoint,
    Tamper,
    TreeHead,
    VerificationReport,
    decode_record,
    encode_checkpoint,
    verify_log,
)
from exchnode.audit._log import LoggedRecord
from exchnode.audit._records import encode_record, record_leaf
from exchnode.core import MerkleLog
from tests.unit.audit.test_verify import DIRECTORY, NAME, NODE, T0, entries, generated, stored


def run(
    records: list[tuple[int, bytes]],
    heads: list[TreeHead],
    *,
    seal: TreeHead | None = None,
    checkpoint: Checkpoint | bytes | None = None,
    witnessed: list[TreeHead] = (),  # type: ignore[assignment]
    ordered_from: int = 0,
) -> VerificationReport:
    return verify_log(
        NAME,
        records,
        [h.data for h in heads],
        DIRECTORY,
        seal=seal.data if seal is not None else None,
        checkpoint=checkpoint,
        witnessed=[h.data for h in witnessed],
        ordered_from=ordered_from,
    )


def forged_tail(after: list[LoggedRecord], count: int, time_ms: int) -> list[tuple[int, bytes]]:
    """Records appended after the last one, chained and numbered right: all but signed."""
    prev, seq = after[-1].leaf, after[-1].seq + 1
    template = decode_record(after[-1].data)
    out = []
    for i in range(count):
        entry = dataclasses.replace(template.entry, action="envelope.forged", time_ms=time_ms + i)
        data = encode_record(AuditRecord(seq=seq + i, node=NAME, prev=prev, entry=entry))
        out.append((seq + i, data))
        prev = record_leaf(data)
    return out


def computed_checkpoint(records: list[LoggedRecord], head: TreeHead) -> Checkpoint:
    """What an editor of the file can build: a stored head and the stored records' hashes."""
    tree = MerkleLog()
    for record in records[: head.tree_size]:
        tree.append(record.leaf)
    size = head.tree_size
    return Checkpoint(
        head,
        tuple(tree.frontier(size)),
        tree.leaf(size - 1),
        tuple(tree.inclusion_proof(size - 1, size)),
    )


# --- records under no signed head ------------------------------------------------------------


def test_records_with_no_head_at_all_are_not_ok() -> None:
    _, records, _ = generated()
    report = run(stored(records), [])
    [unsigned] = report.findings
    assert (unsigned.kind, unsigned.seq, unsigned.end) == (Tamper.UNSIGNED_RECORDS, 0, 40)
    assert not report.ok


def test_records_forged_after_the_last_head_are_unsigned() -> None:
    _, records, heads = generated()
    rows = stored(records) + forged_tail(records, 2, T0 + 100)
    [unsigned] = run(rows, heads).findings
    assert (unsigned.kind, unsigned.seq, unsigned.end) == (Tamper.UNSIGNED_RECORDS, 40, 42)


def test_a_record_timed_before_the_one_before_it_is_named() -> None:
    _, records, heads = generated()
    rows = stored(records) + forged_tail(records, 2, T0 - 5_000)
    report = run(rows, heads)
    assert [(f.kind, f.seq) for f in report.findings] == [
        (Tamper.TIME_WENT_BACK, 40),
        (Tamper.UNSIGNED_RECORDS, 40),
    ]
    # Below ``ordered_from`` (records an older exchnode wrote), times are not checked.
    assert run(rows, heads, ordered_from=41).kinds() == {Tamper.UNSIGNED_RECORDS}


def test_the_log_never_writes_a_time_before_the_last_one() -> None:
    log = AuditLogState(NODE)
    first = log.append(entries(3, 10))
    later = log.append([dataclasses.replace(entries(1, 0)[0])])  # stamped before the others
    assert decode_record(later[0].data).entry.time_ms == decode_record(first[-1].data).entry.time_ms
    mark = log.mark()
    log.append([dataclasses.replace(entries(1, 99)[0])])
    log.rollback(mark)
    again = log.append(entries(1, 50))
    assert decode_record(again[0].data).entry.time_ms == T0 + 50
    head = log.sign_head(T0)
    report = run(stored([*first, *later, *again]), [head])
    assert report.ok, report.findings


def test_the_seal_covers_the_records_since_the_last_head() -> None:
    log, records, heads = generated()
    more = log.append(entries(3, 40))
    seal = log.sign_seal(T0 + 50)
    assert log.last_head == heads[-1]  # the seal is not a head of the chain
    assert (seal.previous_size, seal.previous_root) == (40, heads[-1].root)
    rows = stored(records + more)
    report = run(rows, heads, seal=seal)
    assert report.ok, report.findings
    assert (report.heads, report.verified_size) == (6, 43)
    # Without the seal those three are unsigned; with it, rewriting one is a mismatch.
    assert run(rows, heads).kinds() == {Tamper.UNSIGNED_RECORDS}
    rows[-1] = (42, forged_tail(records + more[:2], 1, T0 + 60)[0][1])
    [mismatch] = run(rows, heads, seal=seal).findings
    assert (mismatch.kind, mismatch.head, mismatch.seq, mismatch.end) == (
        Tamper.ROOT_MISMATCH,
        "seal",
        40,
        43,
    )


# --- the checkpoint counts only as far as a signed head names it ---------------------------


def test_a_checkpoint_computed_from_the_stored_records_is_not_accepted() -> None:
    _, records, heads = generated()
    checkpoint = computed_checkpoint(records, heads[3])  # at 31: a real head, and real hashes
    report = run(stored(records)[31:], heads[3:], checkpoint=encode_checkpoint(checkpoint))
    [unsigned] = report.findings  # everything below 31 erased, named once
    assert (unsigned.kind, unsigned.seq, unsigned.end) == (Tamper.UNSIGNED_CHECKPOINT, 0, 31)
    assert report.first_seq == 31


def test_a_checkpoint_moved_forward_is_not_accepted() -> None:
    log, records, heads = generated()
    checkpoint = log.make_checkpoint(heads[2])  # the node prunes at 20 ...
    log.prune(checkpoint)
    seal = log.sign_seal(T0 + 50)  # ... and signs the head that names it
    assert seal.checkpoint_size == 20
    report = run(stored(records)[20:], heads[2:], seal=seal, checkpoint=checkpoint)
    assert report.ok, report.findings
    # The file's editor moves it on to 31 and deletes what lies below.
    moved = computed_checkpoint(records, heads[3])
    [unsigned] = run(stored(records)[31:], heads[3:], seal=seal, checkpoint=moved).findings
    assert (unsigned.kind, unsigned.end) == (Tamper.UNSIGNED_CHECKPOINT, 31)


def test_the_witnessed_heads_must_reach_the_checkpoint() -> None:
    log, records, heads = generated()
    checkpoint = log.make_checkpoint(heads[2])
    log.prune(checkpoint)
    seal = log.sign_seal(T0 + 50)
    rows = stored(records)[20:]
    assert run(rows, heads[2:], seal=seal, checkpoint=checkpoint, witnessed=[heads[3]]).ok
    report = run(rows, heads[2:], seal=seal, checkpoint=checkpoint, witnessed=[heads[1]])
    [unwitnessed] = report.findings
    assert unwitnessed.kind is Tamper.UNWITNESSED_CHECKPOINT
    assert (unwitnessed.seq, unwitnessed.end) == (12, 20)


def test_a_checkpoint_the_heads_name_but_the_store_lacks_is_named_once() -> None:
    log, records, heads = generated()
    log.prune(log.make_checkpoint(heads[2]))
    head = log.sign_head(T0 + 50)
    report = run(stored(records)[20:], [*heads[2:], head])
    [missing] = report.findings
    assert (missing.kind, missing.head) == (Tamper.BAD_CHECKPOINT, "heads[3]")
    assert report.first_seq == 20


def test_a_checkpoint_that_does_not_decode_is_a_finding() -> None:
    _, records, heads = generated()
    report = run(stored(records)[20:], heads[2:], checkpoint=b"\x95\x01")
    [bad] = report.findings  # and nothing else made of it: the records start where they do
    assert bad.kind is Tamper.BAD_CHECKPOINT
    assert report.first_seq == 20
