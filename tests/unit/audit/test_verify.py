"""``verify_log`` names each kind of tampering on a generated log."""

from __future__ import annotations

import dataclasses

from exchnode.audit import (
    AuditEntry,
    AuditLogState,
    AuditRecord,
    Tamper,
    TreeHead,
    VerificationReport,
    decode_record,
    verify_log,
)
from exchnode.audit._log import LoggedRecord
from exchnode.audit._records import encode_record, record_leaf
from exchnode.testing import seeded_directory, seeded_identity
from tests.audit_entries import envelope_entry

NODE = seeded_identity("520102.gongan")
NAME = "520102.gongan"
DIRECTORY = seeded_directory(NODE)
T0 = 1_795_000_000_000
BATCHES = (5, 7, 8, 11, 9)  # heads at 5, 12, 20, 31, 40


def entries(n: int, start: int) -> list[AuditEntry]:
    return [
        envelope_entry(
            "envelope.deliver", T0 + i, NAME, i.to_bytes(16, "big"), sender="520100", size=i
        )
        for i in range(start, start + n)
    ]


def generated() -> tuple[AuditLogState, list[LoggedRecord], list[TreeHead]]:
    log = AuditLogState(NODE)
    records: list[LoggedRecord] = []
    heads = []
    for n in BATCHES:
        records += log.append(entries(n, len(records)))
        heads.append(log.sign_head(T0 + len(records)))
    return log, records, heads


def run(
    records: list[tuple[int, bytes]], heads: list[TreeHead], **kwargs: object
) -> VerificationReport:
    return verify_log(NAME, records, [h.data for h in heads], DIRECTORY, **kwargs)  # type: ignore[arg-type]


def stored(records: list[LoggedRecord]) -> list[tuple[int, bytes]]:
    return [(r.seq, r.data) for r in records]


def edited(data: bytes, **changes: object) -> bytes:
    record = decode_record(data)
    entry = dataclasses.replace(record.entry, **changes)
    return encode_record(dataclasses.replace(record, entry=entry))


def test_an_untouched_log_verifies() -> None:
    _, records, heads = generated()
    report = run(stored(records), heads)
    assert report.ok, report.findings
    assert (report.records, report.heads, report.verified_size) == (40, 5, 40)
    assert report.to_json()["ok"] is True


def test_a_changed_record_is_named_by_seq() -> None:
    _, records, heads = generated()
    rows = stored(records)
    rows[14] = (14, edited(rows[14][1], action="envelope.refuse"))
    report = run(rows, heads)
    [changed] = report.findings  # the heads over it differ too: that names nothing more
    assert (changed.kind, changed.seq) == (Tamper.CHANGED, 14)
    assert report.verified_size == 12


def test_a_changed_last_record_is_bounded_by_the_heads() -> None:
    _, records, heads = generated()
    rows = stored(records)
    rows[39] = (39, edited(rows[39][1], action="envelope.other"))
    report = run(rows, heads)
    assert report.kinds() == {Tamper.ROOT_MISMATCH}
    [mismatch] = report.findings
    assert (mismatch.seq, mismatch.end) == (31, 40)


def test_a_deleted_record_is_a_gap() -> None:
    _, records, heads = generated()
    rows = stored(records)
    del rows[14:17]
    report = run(rows, heads)
    [deleted] = report.findings  # no changed-record, root-mismatch or truncated besides
    assert (deleted.kind, deleted.seq, deleted.end) == (Tamper.DELETED, 14, 17)
    assert report.verified_size == 12


def test_deleted_records_with_the_rest_renumbered_are_one_finding() -> None:
    _, records, heads = generated()
    rows = stored(records)
    rows = rows[:14] + [(seq - 2, data) for seq, data in rows[16:]]  # no gap left in the seqs
    report = run(rows, heads)
    [deleted] = report.findings
    assert (deleted.kind, deleted.seq, deleted.end) == (Tamper.DELETED, 14, 16)


def test_deleting_the_tail_is_truncation() -> None:
    _, records, heads = generated()
    report = run(stored(records)[:33], heads)
    [truncated] = report.of(Tamper.TRUNCATED)
    assert (truncated.seq, truncated.end, truncated.head) == (33, 40, "heads[4]")
    assert report.verified_size == 31


def test_an_inserted_record_is_named() -> None:
    _, records, heads = generated()
    rows = stored(records)
    forged = edited(rows[14][1], action="envelope.forged")
    rows.insert(15, (14, forged))  # a second record stored as 14 (a store without keys)
    report = run(rows, heads)
    [inserted] = report.findings
    assert (inserted.kind, inserted.seq, inserted.end) == (Tamper.INSERTED, 14, 15)


def test_an_inserted_record_moving_the_rest_up_is_one_finding() -> None:
    """A record slipped in at 14, each later one stored one seq up (what REPLACE makes of it):
    one inserted-record, not a reordered-record per later record, nor unsigned ones."""
    _, records, heads = generated()
    rows = stored(records)
    forged = edited(rows[14][1], action="envelope.forged")
    rows = [*rows[:14], (14, forged), *((seq + 1, data) for seq, data in rows[14:])]
    report = run(rows, heads)
    [inserted] = report.findings
    assert (inserted.kind, inserted.seq, inserted.end) == (Tamper.INSERTED, 14, 15)
    # Three records slipped in, claiming seqs of their own choosing: one finding.
    other = [edited(rows[3][1], action=f"envelope.x{i}") for i in range(3)]
    rows = [*stored(records)[:14], *((14 + i, d) for i, d in enumerate(other))]
    rows += [(seq + 3, data) for seq, data in stored(records)[14:]]
    [inserted] = run(rows, heads).findings
    assert (inserted.kind, inserted.seq, inserted.end) == (Tamper.INSERTED, 14, 17)


def test_an_insertion_with_every_later_record_rewritten_is_bounded_by_the_heads() -> None:
    _, records, heads = generated()
    rows = stored(records)[:14]
    prev = record_leaf(rows[-1][1])
    originals = [decode_record(data) for _, data in stored(records)[14:]]
    extra = dataclasses.replace(originals[0], entry=entries(1, 14)[0])
    for seq, record in enumerate([extra, *originals], start=14):
        data = encode_record(AuditRecord(seq=seq, node=NAME, prev=prev, entry=record.entry))
        rows.append((seq, data))
        prev = record_leaf(data)
    report = run(rows, heads)
    mismatch, unsigned = report.findings
    assert (mismatch.kind, mismatch.seq, mismatch.end) == (Tamper.ROOT_MISMATCH, 12, 20)
    assert mismatch.head == "heads[2]"
    assert (unsigned.kind, unsigned.seq, unsigned.end) == (Tamper.UNSIGNED_RECORDS, 40, 41)


def test_reordered_records_are_named() -> None:
    _, records, heads = generated()
    rows = stored(records)
    rows[14], rows[15] = (14, rows[15][1]), (15, rows[14][1])
    report = run(rows, heads)
    assert {f.seq for f in report.of(Tamper.REORDERED)} == {14, 15}
    assert report.of(Tamper.CHANGED) == []


def test_truncate_and_regrow_is_a_fork() -> None:
    _, records, heads = generated()
    # The node truncates to 15 records and grows another history, signing it.
    regrown = AuditLogState.resume(NODE, stored(records[:15]), last_head=heads[1])
    more = regrown.append(entries(10, 500))
    new_head = regrown.sign_head(T0 + 100)
    rows = stored(records[:15] + more)
    report = run(rows, [*heads, new_head])
    forks = report.of(Tamper.FORK)
    assert forks
    assert (forks[0].head, forks[0].end) == ("heads[2]", 20)
    assert Tamper.HEAD_CHAIN in report.kinds()  # the new head does not follow heads[4]
    # Had it also removed the old heads, its own store would look clean ...
    assert run(rows, [*heads[:2], new_head]).ok
    # ... but not next to the head its parent witnessed.
    report = run(rows, [*heads[:2], new_head], witnessed=[heads[2].data])
    [fork] = report.of(Tamper.FORK)
    assert fork.head == "witnessed[0]"


def test_a_head_whose_signature_fails_is_named() -> None:
    _, records, heads = generated()
    data = bytearray(heads[3].data)
    data[-1] ^= 1
    report = verify_log(
        NAME, stored(records), [*(h.data for h in heads[:3]), bytes(data), heads[4].data], DIRECTORY
    )
    [bad] = report.of(Tamper.BAD_HEAD)
    assert bad.head == "heads[3]"
    assert "bad-signature" in bad.message
    assert report.of(Tamper.HEAD_CHAIN)[0].head == "heads[4]"  # its predecessor is gone


def test_a_removed_head_breaks_the_chain() -> None:
    _, records, heads = generated()
    report = run(stored(records), [heads[0], heads[1], heads[3], heads[4]])
    [chain] = report.findings
    assert (chain.kind, chain.head) == (Tamper.HEAD_CHAIN, "heads[2]")


def test_a_malformed_record_is_named() -> None:
    _, records, heads = generated()
    rows = stored(records)
    rows[7] = (7, b"\xc1garbage")
    report = run(rows, heads)
    assert [f.seq for f in report.of(Tamper.MALFORMED)] == [7]


def test_after_pruning_the_rest_verifies_and_tampering_is_still_found() -> None:
    log, records, heads = generated()
    checkpoint = log.make_checkpoint(heads[2])  # size 20
    log.prune(checkpoint)
    rest = stored(records[20:])
    more = log.append(entries(5, 40))
    last = log.sign_head(T0 + 99)
    rows = rest + stored(more)
    all_heads = [*heads, last]
    report = run(rows, all_heads, checkpoint=checkpoint)
    assert report.ok, report.findings
    assert (report.first_seq, report.records, report.verified_size) == (20, 25, 45)
    rows[3] = (23, edited(rows[3][1], action="envelope.other"))
    report = run(rows, all_heads, checkpoint=checkpoint)
    assert [(f.kind, f.seq) for f in report.findings] == [(Tamper.CHANGED, 23)]
    # The first record after the checkpoint is chained to the checkpoint's last leaf.
    rows = rest + stored(more)
    rows[0] = (20, edited(rows[0][1], action="envelope.other"))
    report = run(rows, all_heads, checkpoint=checkpoint)
    assert [f.seq for f in report.of(Tamper.CHANGED)] == [20]
