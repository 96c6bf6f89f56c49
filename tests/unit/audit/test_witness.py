"""Witnessing's wire form, the hub's judgement and its stored state (SPEC §20.8, §20.8.1)."""

from __future__ import annotations

import contextlib
import random

import pytest

from exchnode.aio import WitnessStatus
from exchnode.aio._witness_service import (
    HeadAnswer,
    HeadStatus,
    NoVerdict,
    Verdict,
    decode_head_answer,
    decode_witness_state,
    encode_head_answer,
    encode_witness_state,
    judge,
    parse_since,
)
from exchnode.audit import (
    Actor,
    AuditEntry,
    AuditLogState,
    Category,
    Outcome,
    Subject,
    SubjectKind,
    TreeHead,
    TreeHeadVerifier,
    check_witness,
    details,
    witness_entry,
)
from exchnode.audit._records import Status
from exchnode.core import EMPTY_ROOT, LocalIdentity, pack
from exchnode.errors import (
    MalformedError,
    RejectedError,
    TooLargeError,
    UnsupportedVersionError,
    UsageError,
)
from exchnode.testing import seeded_directory, seeded_identity

CHILD = seeded_identity("520102.gongan")
HUB = seeded_identity("520102")
STRANGER = seeded_identity("520102.minzheng")  # a node the hub's directory does not know
VERIFIER = TreeHeadVerifier(seeded_directory(CHILD, HUB))
T0 = 1_795_000_000_000
DAY_MS = 86_400_000
RETENTION_MS = 180 * DAY_MS


def entries(n: int, start: int = 0, *, tag: int = 0) -> list[AuditEntry]:
    return [
        AuditEntry(
            time_ms=T0 + i,
            category=Category.ADMINISTRATION,
            action="test.step",
            actor=Actor.node("520102"),
            subject=Subject(SubjectKind.MESSAGE, i.to_bytes(16, "big")),
            outcome=Outcome.ok(),
            detail=details(count=i + tag),
        )
        for i in range(start, start + n)
    ]


def grown(log: AuditLogState, n: int, at_ms: int, *, tag: int = 0) -> TreeHead:
    log.append(entries(n, log.size, tag=tag))
    return log.sign_head(at_ms)


def judged(kept: TreeHead | None, answer: HeadAnswer, now_ms: int = T0 + 1000) -> Verdict:
    outcome = judge(
        "520102.gongan", kept, answer, VERIFIER, now_ms=now_ms, retention_ms=RETENTION_MS
    )
    assert isinstance(outcome, Verdict), outcome
    return outcome


def not_judged(
    kept: TreeHead | None, answer: HeadAnswer, now_ms: int = T0, child: str = "520102.gongan"
) -> NoVerdict:
    outcome = judge(child, kept, answer, VERIFIER, now_ms=now_ms, retention_ms=RETENTION_MS)
    assert isinstance(outcome, NoVerdict), outcome
    return outcome


# --- the wire form -------------------------------------------------------------------------


def test_answers_round_trip() -> None:
    log = AuditLogState(CHILD)
    old = grown(log, 5, T0)
    new = grown(log, 7, T0 + 1)
    proof = tuple(log.consistency_proof(old.tree_size, new.tree_size))
    assert proof
    for answer in (
        HeadAnswer(HeadStatus.HEAD, new.data, proof),
        HeadAnswer(HeadStatus.HEAD, new.data),
        HeadAnswer(HeadStatus.PRUNED, new.data),
        HeadAnswer(HeadStatus.NONE),
    ):
        data = encode_head_answer(answer)
        assert decode_head_answer(data) == answer
        assert encode_head_answer(decode_head_answer(data)) == data


def test_answers_that_break_a_rule_cannot_be_built() -> None:
    with pytest.raises(UsageError):
        HeadAnswer(HeadStatus.NONE, b"head")
    with pytest.raises(UsageError):
        HeadAnswer(HeadStatus.HEAD)
    with pytest.raises(UsageError):
        HeadAnswer(HeadStatus.PRUNED, b"head", (b"\x00" * 32,))


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ([1, "head", b"h"], "witness.answer"),
        ([1, "maybe", b"h", []], "witness.answer.status"),
        ([1, 7, b"h", []], "witness.answer.status"),
        ([1, "head", "h", []], "witness.answer.head"),
        ([1, "head", b"h" * 1025, []], "witness.answer.head"),
        ([1, "none", b"h", []], "witness.answer.head"),
        ([1, "head", b"", []], "witness.answer.head"),
        ([1, "head", b"h", {}], "witness.answer.proof"),
        ([1, "head", b"h", [b"\x00" * 32, b"\x00" * 31]], "witness.answer.proof[1]"),
        ([1, "head", b"h", [b"\x00" * 32, "x"]], "witness.answer.proof[1]"),
        ([1, "pruned", b"h", [b"\x00" * 32]], "witness.answer.proof"),
        (["1", "head", b"h", []], "witness.answer.format"),
    ],
)
def test_malformed_answers_name_the_field(fields: list[object], field: str) -> None:
    with pytest.raises(MalformedError) as caught:
        decode_head_answer(pack(fields))
    assert caught.value.field == field


def test_other_formats_oversize_and_non_canonical_answers_are_refused() -> None:
    with pytest.raises(UnsupportedVersionError):
        decode_head_answer(pack([2, "none", b"", []]))
    with pytest.raises(TooLargeError):
        decode_head_answer(b"\x94" + b"\x00" * 5000)
    with pytest.raises(MalformedError, match="not canonical"):
        decode_head_answer(b"\x94\xcc\x01\xa4none\xc4\x00\x90")  # format as a uint8
    with pytest.raises(MalformedError):
        decode_head_answer(encode_head_answer(HeadAnswer(HeadStatus.NONE)) + b"\x00")


def test_arbitrary_bytes_decode_or_raise_rejected_error_only() -> None:
    rng = random.Random(5)
    good = encode_head_answer(HeadAnswer(HeadStatus.HEAD, b"x" * 40, (b"\x01" * 32,)))
    for _ in range(2000):
        data = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.2:
            data = data[: rng.randrange(len(data))]
        with contextlib.suppress(RejectedError):
            decode_head_answer(bytes(data))


@pytest.mark.parametrize(
    ("value", "size"), [(None, 0), ("0", 0), ("17", 17), (str((1 << 53) - 1), (1 << 53) - 1)]
)
def test_since_parses_sizes(value: str | None, size: int) -> None:
    assert parse_since(value) == size


@pytest.mark.parametrize("value", ["", "-1", "+1", "01", "1.0", "x", " 1", str(1 << 53), "١"])
def test_since_refuses_anything_else(value: str) -> None:
    with pytest.raises(MalformedError) as caught:
        parse_since(value)
    assert caught.value.field == "witness.since"


# --- the judgement -------------------------------------------------------------------------


def test_an_honest_log_is_witnessed_first_then_consistent() -> None:
    log = AuditLogState(CHILD)
    first = grown(log, 5, T0)
    verdict = judged(None, HeadAnswer(HeadStatus.HEAD, first.data))
    assert (verdict.code, verdict.ok, verdict.keep) == ("first-head", True, first)

    second = grown(log, 4, T0 + 10)
    proof = tuple(log.consistency_proof(5, 9))
    verdict = judged(first, HeadAnswer(HeadStatus.HEAD, second.data, proof))
    assert (verdict.code, verdict.ok, verdict.keep) == ("consistent", True, second)
    assert (verdict.previous_size, verdict.tree_size, verdict.root) == (5, 9, second.root)
    assert verdict.entry("520102", T0) == witness_entry(
        "520102", check_witness(first, second, proof), T0
    )

    unchanged = not_judged(second, HeadAnswer(HeadStatus.HEAD, second.data))
    assert unchanged == NoVerdict("unchanged", problem=False)


def test_rewrites_are_named_and_the_good_head_is_kept() -> None:
    honest = AuditLogState(CHILD)
    kept = grown(honest, 6, T0)

    def rewritten(n: int, tag: int) -> tuple[TreeHead, tuple[bytes, ...]]:
        log = AuditLogState(CHILD)
        head = grown(log, n, T0 + 50, tag=tag)
        proof = tuple(log.consistency_proof(6, n)) if n > 6 else ()
        return head, proof

    for n, code in ((3, "shrunk"), (6, "fork"), (9, "inconsistent")):
        head, proof = rewritten(n, tag=1)
        verdict = judged(kept, HeadAnswer(HeadStatus.HEAD, head.data, proof))
        assert (verdict.code, verdict.ok, verdict.keep) == (code, False, kept), n
        entry = verdict.entry("520102", T0)
        assert entry.outcome == Outcome.refused(code)
        assert entry.category is Category.WITNESS
        assert entry.subject.value == "520102.gongan"

    older = grown(AuditLogState(CHILD), 7, T0 - 5)  # re-signed with a clock set back
    verdict = judged(kept, HeadAnswer(HeadStatus.HEAD, older.data))
    assert verdict.code == "time-went-back"


def test_heads_that_do_not_verify_are_refused_with_their_code() -> None:
    log = AuditLogState(CHILD)
    kept = grown(log, 3, T0)
    head = grown(log, 2, T0 + 1)
    flipped = head.data[:-1] + bytes([head.data[-1] ^ 1])
    verdict = judged(kept, HeadAnswer(HeadStatus.HEAD, flipped))
    assert (verdict.code, verdict.ok, verdict.keep) == ("bad-signature", False, kept)
    assert verdict.tree_size == 5  # the head could still be read

    # The child's name over the hub's key: the hub's directory knows no such key of the child.
    impostor = LocalIdentity.from_keys(
        "520102.gongan", HUB.signing_private_key, HUB.encryption_private_key
    )
    forged = grown(AuditLogState(impostor), 5, T0 + 1)
    verdict = judged(kept, HeadAnswer(HeadStatus.HEAD, forged.data))
    assert (verdict.code, verdict.ok) == ("unknown-signer", False)

    # A genuine head of another node served as the child's.
    other = grown(AuditLogState(HUB), 5, T0 + 1)
    verdict = judged(None, HeadAnswer(HeadStatus.HEAD, other.data))
    assert (verdict.code, verdict.ok, verdict.keep) == ("other-node", False, None)

    verdict = judged(kept, HeadAnswer(HeadStatus.HEAD, b"\x94\x01\x04"))
    assert (verdict.code, verdict.tree_size) == ("malformed", None)
    assert verdict.entry("520102", T0).get("tree_size") is None


def test_a_child_the_directory_does_not_know_is_not_judged_yet() -> None:
    head = grown(AuditLogState(STRANGER), 2, T0)
    outcome = not_judged(None, HeadAnswer(HeadStatus.HEAD, head.data), child="520102.minzheng")
    assert outcome.problem


def test_a_log_without_heads_is_news_only_after_one_was_witnessed() -> None:
    none = HeadAnswer(HeadStatus.NONE)
    assert not not_judged(None, none).problem
    kept = grown(AuditLogState(CHILD), 4, T0)
    verdict = judged(kept, none)
    assert (verdict.code, verdict.ok, verdict.keep) == ("no-head", False, kept)
    assert (verdict.tree_size, verdict.root) == (0, EMPTY_ROOT)


def pruned_log() -> tuple[TreeHead, TreeHead]:
    """A kept head at size 10 and a later head whose checkpoint (20) is above it."""
    log = AuditLogState(CHILD)
    kept = grown(log, 10, T0)
    at = grown(log, 10, T0 + DAY_MS)
    log.prune(log.make_checkpoint(at))
    head = grown(log, 3, T0 + 2 * DAY_MS)
    assert head.checkpoint_size == 20
    return kept, head


def test_pruned_history_is_accepted_only_when_the_kept_head_is_older_than_retention() -> None:
    kept, head = pruned_log()
    answer = HeadAnswer(HeadStatus.PRUNED, head.data)
    late = judged(kept, answer, now_ms=T0 + RETENTION_MS)
    assert (late.code, late.ok, late.keep) == ("pruned", True, head)
    assert late.entry("520102", T0).outcome == Outcome.ok("pruned")
    early = judged(kept, answer, now_ms=T0 + RETENTION_MS - 1)
    assert (early.code, early.ok, early.keep) == ("pruned-early", False, kept)
    assert early.entry("520102", T0).outcome.status is Status.REFUSED


def test_a_pruned_answer_its_head_does_not_support_is_not_judged() -> None:
    _kept, head = pruned_log()
    for baseline in (None, head):  # since 0, or since a size at or above the checkpoint
        pruned = HeadAnswer(HeadStatus.PRUNED, grown(AuditLogState(CHILD), 30, T0 + 1).data)
        assert not_judged(baseline, pruned, now_ms=T0 + RETENTION_MS).problem
    # The checks that need no proof still apply: a kept head later than the pruned one.
    recent = grown(AuditLogState(CHILD), 10, T0 + 5 * DAY_MS)
    verdict = judged(recent, HeadAnswer(HeadStatus.PRUNED, head.data), now_ms=T0 + RETENTION_MS)
    assert (verdict.code, verdict.ok, verdict.keep) == ("time-went-back", False, recent)


# --- the hub's stored state ----------------------------------------------------------------


def test_the_witness_state_round_trips() -> None:
    kept = grown(AuditLogState(CHILD), 4, T0)
    statuses = {
        "520102.gongan": WitnessStatus(
            "520102.gongan", kept, T0 + 1, "inconsistent", T0 + 2, T0 + 2, "ignored", 3
        ),
        "520102.minzheng": WitnessStatus("520102.minzheng"),
    }
    data = encode_witness_state(statuses)
    back = decode_witness_state(data)
    assert back["520102.gongan"] == WitnessStatus(
        "520102.gongan", kept, T0 + 1, "inconsistent", T0 + 2
    )
    assert back["520102.gongan"].verdict_ok is False
    assert back["520102.gongan"].size == 4
    assert back["520102.minzheng"] == WitnessStatus("520102.minzheng")
    assert encode_witness_state(back) == data


@pytest.mark.parametrize(
    ("rows", "field"),
    [
        ([["520102.gongan", b"", 0, ""]], "witness.state.children[0]"),
        ([["not a name", b"", 0, "", 0]], "witness.state.children[0].child"),
        ([["520102.gongan", b"", -1, "", 0]], "witness.state.children[0].accepted"),
    ],
)
def test_a_damaged_witness_state_names_the_field(rows: list[object], field: str) -> None:
    with pytest.raises(MalformedError) as caught:
        decode_witness_state(pack([1, rows]))
    assert caught.value.field == field


def test_a_stored_head_of_another_node_is_refused() -> None:
    other = grown(AuditLogState(HUB), 1, T0)
    with pytest.raises(MalformedError) as caught:
        decode_witness_state(pack([1, [["520102.gongan", other.data, 0, "", 0]]]))
    assert caught.value.field == "witness.state.children[0].head"
