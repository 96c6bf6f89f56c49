"""Signed tree heads, proofs for every record, checkpoints and witnessing."""

from __future__ import annotations

import pytest

from exchnode.audit import (
    AuditEntry,
    AuditLogState,
    Category,
    Subject,
    SubjectKind,
    TreeHeadVerifier,
    check_witness,
    decode_checkpoint,
    decode_record,
    decode_tree_head,
    encode_checkpoint,
    witness_entry,
)
from exchnode.audit._log import sign_tree_head
from exchnode.audit._records import Status
from exchnode.audit._witness import WitnessReason
from exchnode.core import (
    EMPTY_ROOT,
    TYPE_TREE_HEAD,
    AuditEvent,
    decode_signed,
    encode_signed,
    leaf_hash,
    pack,
    unpack,
    verify_consistency,
    verify_inclusion,
)
from exchnode.errors import (
    BadSignatureError,
    InconsistentLogError,
    MalformedError,
    UnknownSignerError,
    UsageError,
)
from exchnode.testing import seeded_directory, seeded_identity
from tests.audit_entries import envelope_entry

NODE = seeded_identity("520102.gongan")
HUB = seeded_identity("520100")
DIRECTORY = seeded_directory(NODE, HUB)
T0 = 1_795_000_000_000


def entries(n: int, start: int = 0) -> list[AuditEntry]:
    return [
        envelope_entry("envelope.accept", T0 + i, "520100", i.to_bytes(16, "big"), size=100 + i)
        for i in range(start, start + n)
    ]


def test_batch_appends_number_and_chain_records() -> None:
    log = AuditLogState(NODE)
    first = log.append(entries(3))
    second = log.append(entries(2, 3))
    assert [r.seq for r in first + second] == [0, 1, 2, 3, 4]
    decoded = [decode_record(r.data) for r in first + second]
    assert all(r.node == "520102.gongan" for r in decoded)
    assert decoded[3].prev == first[2].leaf
    assert all(r.leaf == leaf_hash(r.data) for r in first + second)
    events = log.append_events(
        [
            AuditEvent(
                at_ms=T0,
                actor="520102.gongan",
                action="grant",
                resource_code="101001/000001",
                request_id=bytes(16),
                outcome="granted",
                counterpart="522301.minzheng",
            )
        ]
    )
    assert events[0].seq == 5


def test_heads_verify_chain_and_carry_the_previous_head() -> None:
    log = AuditLogState(NODE)
    verifier = TreeHeadVerifier(DIRECTORY)
    log.append(entries(5))
    h1 = log.sign_head(T0)
    log.append(entries(4, 5))
    h2 = log.sign_head(T0 - 10)  # a clock stepped back: the time does not
    assert verifier.verify(h1.data) == h1
    assert verifier.verify(h2.data) == h2
    assert (h1.tree_size, h1.previous_size, h1.previous_root) == (5, 0, EMPTY_ROOT)
    assert (h2.tree_size, h2.previous_size, h2.previous_root) == (9, 5, h1.root)
    assert h2.timestamp_ms == T0
    assert h2.data[:3] == bytes([0x94, 1, TYPE_TREE_HEAD])
    proof = log.consistency_proof(5, 9)
    assert verify_consistency(5, 9, h1.root, h2.root, proof)


def test_a_signed_head_or_seal_is_what_its_bytes_decode_to() -> None:
    # sign_tree_head builds the head from its values instead of parsing what it encoded.
    log = AuditLogState(NODE)
    log.append(entries(7))
    heads = [log.sign_seal(T0), log.sign_head(T0 + 1)]
    log.append(entries(2, 7))
    heads += [
        log.sign_seal(T0 + 2, 0),
        sign_tree_head(HUB, 9, log.root(), T0 + 3, (7, heads[1].root), 7),
    ]
    for head in heads:
        decoded, _ = decode_tree_head(head.data)
        assert decoded == head
        assert [type(getattr(head, f)) for f in ("node", "key_id", "root", "data")] == [
            str,
            bytes,
            bytes,
            bytes,
        ]


def test_a_head_with_a_changed_byte_or_an_unknown_key_is_refused() -> None:
    log = AuditLogState(NODE)
    log.append(entries(3))
    head = log.sign_head(T0)
    body, seal = decode_signed(head.data, TYPE_TREE_HEAD, "tree_head", 1024)
    fields = unpack(body, what="t", max_size=1024)
    fields[3] = 2  # claim a smaller tree
    with pytest.raises(BadSignatureError):
        TreeHeadVerifier(DIRECTORY).verify(encode_signed(TYPE_TREE_HEAD, pack(fields), seal))
    stranger = sign_tree_head(seeded_identity("520102.gongan", "other"), 3, head.root, T0)
    with pytest.raises(UnknownSignerError):
        TreeHeadVerifier(DIRECTORY).verify(stranger.data)
    fields[3] = 3
    fields[6] = 4  # previous size beyond the tree
    with pytest.raises(MalformedError) as caught:
        decode_tree_head(encode_signed(TYPE_TREE_HEAD, pack(fields), seal))
    assert caught.value.field == "tree_head.previous_size"


def test_every_record_has_an_inclusion_proof_at_every_head() -> None:
    log = AuditLogState(NODE)
    records = []
    heads = []
    for batch in (1, 2, 5, 9, 16):
        records += log.append(entries(batch, len(records)))
        heads.append(log.sign_head(T0))
    for head in heads:
        for r in records[: head.tree_size]:
            proof = log.inclusion_proof(r.seq, head.tree_size)
            assert verify_inclusion(r.leaf, r.seq, head.tree_size, proof, head.root)
    for old in heads:
        for new in heads:
            if old.tree_size <= new.tree_size:
                proof = log.consistency_proof(old.tree_size, new.tree_size)
                assert verify_consistency(old.tree_size, new.tree_size, old.root, new.root, proof)


def test_checkpoint_prune_and_carry_on() -> None:
    log = AuditLogState(NODE)
    verifier = TreeHeadVerifier(DIRECTORY)
    kept = log.append(entries(13))
    head = log.sign_head(T0)
    checkpoint = log.make_checkpoint()
    assert decode_checkpoint(encode_checkpoint(checkpoint), verifier) == checkpoint
    log.prune(checkpoint)
    later = log.append(entries(7, 13))
    new_head = log.sign_head(T0 + 1)
    assert new_head.checkpoint_size == 13
    assert verify_consistency(13, 20, head.root, new_head.root, log.consistency_proof(13, 20))
    for r in later:
        assert verify_inclusion(r.leaf, r.seq, 20, log.inclusion_proof(r.seq, 20), new_head.root)
    with pytest.raises(LookupError):
        log.inclusion_proof(kept[0].seq, 20)
    # A restart from the checkpoint and the records after it gives the same log.
    resumed = AuditLogState.resume(
        NODE, [(r.seq, r.data) for r in later], last_head=new_head, checkpoint=checkpoint
    )
    assert resumed.root() == new_head.root
    assert resumed.append(entries(1, 20))[0].seq == 20


def test_a_checkpoint_whose_frontier_lies_is_refused() -> None:
    log = AuditLogState(NODE)
    log.append(entries(6))
    log.sign_head(T0)
    checkpoint = log.make_checkpoint()
    data = unpack(encode_checkpoint(checkpoint), what="t", max_size=1 << 14)
    data[2][0] = bytes(32)
    with pytest.raises(InconsistentLogError):
        decode_checkpoint(pack(data), TreeHeadVerifier(DIRECTORY))
    with pytest.raises(UsageError):
        AuditLogState(NODE).make_checkpoint()


def test_resume_refuses_records_that_do_not_match_the_last_head() -> None:
    log = AuditLogState(NODE)
    records = log.append(entries(4))
    head = log.sign_head(T0)
    stored = [(r.seq, r.data) for r in records]
    assert AuditLogState.resume(NODE, stored, last_head=head).root() == head.root
    with pytest.raises(InconsistentLogError):
        AuditLogState.resume(NODE, stored[:2] + stored[3:], last_head=head)
    other = AuditLogState(NODE)
    forged = other.append(entries(4, 100))
    with pytest.raises(InconsistentLogError):
        AuditLogState.resume(NODE, [(r.seq, r.data) for r in forged], last_head=head)


def test_witnessing_accepts_extensions_and_names_rewrites() -> None:
    log = AuditLogState(NODE)
    log.append(entries(10))
    old = log.sign_head(T0)
    log.append(entries(6, 10))
    new = log.sign_head(T0 + 5)
    proof = log.consistency_proof(10, 16)
    assert check_witness(None, old, []).reason is WitnessReason.FIRST
    good = check_witness(old, new, proof)
    assert good.ok
    assert good.reason is WitnessReason.CONSISTENT
    assert check_witness(old, old, []).ok

    # Truncate to 7 and regrow: the node signs a new head over another history.
    rewritten = AuditLogState.resume(NODE, [])
    rewritten.append(entries(7))
    rewritten.append(entries(9, 50))
    forged = rewritten.sign_head(T0 + 6)
    bad = check_witness(old, forged, rewritten.consistency_proof(10, 16))
    assert not bad.ok
    assert bad.reason is WitnessReason.INCONSISTENT
    assert check_witness(new, old, []).reason is WitnessReason.SHRUNK
    same_size = AuditLogState(NODE)
    same_size.append(entries(16, 200))
    assert check_witness(new, same_size.sign_head(T0 + 9), []).reason is WitnessReason.FORK
    hub_log = sign_tree_head(HUB, 16, new.root, T0 + 9, (10, old.root))
    assert check_witness(old, hub_log, proof).reason is WitnessReason.OTHER_NODE

    record = witness_entry("520100", bad, T0 + 7)
    assert record.category is Category.WITNESS
    assert record.subject == Subject(SubjectKind.NODE, "520102.gongan")
    assert record.outcome.status is Status.REFUSED
    assert record.outcome.code == "inconsistent"
    assert record.get("tree_size") == 16
    assert record.get("previous_size") == 10
    hub = AuditLogState(HUB)
    assert hub.append([record, witness_entry("520100", good, T0 + 8)])[1].seq == 1


def test_rollback_forgets_what_the_store_did_not_keep() -> None:
    log = AuditLogState(NODE)
    kept = log.append(entries(5))
    head = log.sign_head(T0)
    mark = log.mark()
    log.append(entries(3, 5))  # numbered for a transaction that then failed
    log.sign_head(T0 + 1)
    log.rollback(mark)
    assert (log.size, log.last_head) == (5, head)
    again = log.append(entries(2, 100))
    assert [r.seq for r in again] == [5, 6]
    assert decode_record(again[0].data).prev == kept[-1].leaf
    reference = AuditLogState(NODE)
    reference.append(entries(5))
    reference.append(entries(2, 100))
    assert log.root() == reference.root()
    with pytest.raises(UsageError, match="cannot roll back"):
        log.rollback(AuditLogState(NODE).mark().__class__(99, bytes(32), None))
