"""Custody records: one per batch, counterpart and outcome, every message id on the record."""

from __future__ import annotations

from dataclasses import replace

import pytest

from exchnode.audit import (
    AuditEntry,
    AuditLogState,
    Category,
    CustodyRecorder,
    SubjectKind,
    decode_record,
    details,
)
from exchnode.audit._records import MAX_MESSAGES, Status
from exchnode.core import pack, unpack
from exchnode.errors import InvalidAuditRecordError, MalformedError
from exchnode.store import AcceptOutcome, AcceptStatus, ExpiredEntry
from exchnode.testing import seeded_identity
from tests.unit.store.test_store import CHILD, ME, NOW, make

RECORDER = CustodyRecorder(ME)


def roundtrip(entries: list[AuditEntry]) -> list[AuditEntry]:
    """Every entry survives the wire: what the recorder builds is a valid record."""
    log = AuditLogState(seeded_identity(ME))
    return [decode_record(r.data).entry for r in log.append(entries)]


def test_a_commit_becomes_one_record_per_source_and_outcome() -> None:
    items = [make(1), make(2), replace(make(3), came_from=CHILD), make(4)]
    outcomes = [
        AcceptOutcome(status=AcceptStatus.ACCEPTED),
        AcceptOutcome(status=AcceptStatus.DUPLICATE),
        AcceptOutcome(status=AcceptStatus.ACCEPTED),
        AcceptOutcome(status=AcceptStatus.ACCEPTED),
    ]
    entries = roundtrip(RECORDER.accepted(NOW, items, outcomes))
    summary = [
        (e.action, e.subject.value, e.outcome.status, e.outcome.code, e.get("count"))
        for e in entries
    ]
    assert summary == [
        ("accept", ME, Status.OK, "accepted", 2),
        ("accept", ME, Status.OK, "duplicate", 1),
        ("accept", CHILD, Status.OK, "accepted", 1),
    ]
    assert entries[0].get("messages") == (items[0].message_id, items[3].message_id)
    assert all(e.category is Category.ENVELOPE for e in entries)


def test_a_large_batch_takes_several_records_and_no_id_is_lost() -> None:
    ids = [i.to_bytes(16, "big") for i in range(2 * MAX_MESSAGES + 5)]
    entries = roundtrip(RECORDER.relayed(NOW, CHILD, ids))
    assert [e.get("count") for e in entries] == [MAX_MESSAGES, MAX_MESSAGES, 5]
    assert [m for e in entries for m in e.get("messages")] == ids  # type: ignore[union-attr]


def test_refusals_group_by_code_and_unread_items_are_counted() -> None:
    refusals = [
        ("bad-signature", b"\x01" * 16),
        ("malformed", None),
        ("bad-signature", b"\x02" * 16),
        ("malformed", None),
    ]
    entries = roundtrip(RECORDER.refused(NOW, CHILD, refusals))
    assert [(e.outcome.code, e.get("count"), e.get("messages")) for e in entries] == [
        ("bad-signature", 2, (b"\x01" * 16, b"\x02" * 16)),
        ("malformed", 2, None),
    ]
    assert all(e.outcome.status is Status.REFUSED for e in entries)


def test_deliveries_expiry_and_links() -> None:
    assert RECORDER.delivered(NOW, [], consumed=True) == []
    (consumed,) = roundtrip(RECORDER.delivered(NOW, [b"\x03" * 16], consumed=True))
    assert (consumed.action, consumed.outcome.code, consumed.subject.kind) == (
        "deliver",
        "consumed",
        SubjectKind.NONE,
    )
    expired = [
        ExpiredEntry(
            seq=i,
            next_hop=hop,
            sender=ME,
            message_id=bytes([i]) * 16,
            digest=bytes(32),
            targets=(CHILD,),
            expires_ms=NOW,
            data=b"x",
        )
        for i, hop in enumerate([CHILD, None, CHILD])
    ]
    entries = roundtrip(RECORDER.expired(NOW, expired))
    assert [(e.subject.value, e.get("count")) for e in entries] == [(CHILD, 2), ("", 1)]
    down, up = roundtrip(
        [
            RECORDER.link(NOW, CHILD, up=False, failures=1),
            RECORDER.link(NOW, CHILD, up=True, failures=3),
        ]
    )
    assert (down.category, down.action, down.outcome.status) == (
        Category.CONNECTION,
        "link.down",
        Status.REFUSED,
    )
    assert (up.action, up.get("count")) == ("link.up", 3)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ((), "1..64"),
        (tuple(bytes(16) for _ in range(MAX_MESSAGES + 1)), "1..64"),
        ((b"short",), "16"),
        (("text" * 4,), "16"),
    ],
)
def test_the_message_list_is_bounded_and_typed(value: tuple[bytes, ...], problem: str) -> None:
    with pytest.raises(InvalidAuditRecordError, match=problem):
        details(messages=value)


def test_a_decoded_message_list_is_checked_like_a_built_one() -> None:
    log = AuditLogState(seeded_identity(ME))
    (record,) = log.append(RECORDER.delivered(NOW, [b"\x07" * 16], consumed=False))
    fields = unpack(record.data, what="test", max_size=4096, max_array=64)
    fields[-1] = [["count", 1], ["messages", [b"\x07" * 15]]]
    with pytest.raises(MalformedError, match="messages"):
        decode_record(pack(fields))
