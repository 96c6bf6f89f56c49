"""Audit records: the schema keeps text and payloads out, every field is checked on decode."""

from __future__ import annotations

import pytest

from exchnode.audit import (
    Actor,
    AuditEntry,
    AuditRecord,
    Category,
    Outcome,
    Role,
    Subject,
    SubjectKind,
    decode_record,
    details,
    entry_from_event,
)
from exchnode.audit._records import DETAIL_SCHEMA, GENESIS_PREV, Status, encode_record, record_leaf
from exchnode.core import AuditEvent, leaf_hash, pack, unpack
from exchnode.errors import InvalidAuditRecordError, MalformedError, UnsupportedVersionError

NODE = "520102.gongan"
T0 = 1_795_000_000_000
MESSAGE = bytes(range(16))


def entry(**overrides: object) -> AuditEntry:
    values: dict[str, object] = {
        "time_ms": T0,
        "category": Category.ENVELOPE,
        "action": "envelope.relay",
        "actor": Actor.node(NODE),
        "subject": Subject(SubjectKind.MESSAGE, MESSAGE),
        "outcome": Outcome.ok(),
        "detail": details(peer="520100", targets=2, size=1400),
    }
    values.update(overrides)
    return AuditEntry(**values)  # type: ignore[arg-type]


def record(seq: int = 0, **overrides: object) -> AuditRecord:
    return AuditRecord(seq=seq, node=NODE, prev=GENESIS_PREV, entry=entry(**overrides))


def test_round_trip_and_leaf() -> None:
    r = record(7)
    data = encode_record(r)
    assert decode_record(data) == r
    assert record_leaf(data) == leaf_hash(data)
    fields = unpack(data, what="t", max_size=4096)
    assert fields[:5] == [1, 7, T0, NODE, GENESIS_PREV]
    assert fields[5:10] == [
        "envelope",
        "envelope.relay",
        ["node", NODE],
        ["message", MESSAGE],
        ["ok", ""],
    ]
    assert fields[10] == [["peer", "520100"], ["size", 1400], ["targets", 2]]


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: details(reason="access was refused because"), "audit.detail.reason"),
        (lambda: details(payload=b"secret"), "audit.detail[0]"),
        (lambda: details(message=b"x" * 100), "audit.detail.message"),
        (lambda: details(count=-1), "audit.detail.count"),
        (lambda: details(counterpart="not a node"), "audit.detail.counterpart"),
        (lambda: details(resource="free text"), "audit.detail.resource"),
        (lambda: Actor(Role.NODE, "张三"), "audit.actor.name"),
        (lambda: Actor(Role.OPERATOR, "x" * 65), "audit.actor.name"),
        (lambda: Actor(Role.OPERATOR, "a\nb"), "audit.actor.name"),
        (lambda: Subject(SubjectKind.MESSAGE, b"short"), "audit.subject.value"),
        (lambda: Subject(SubjectKind.NONE, "x"), "audit.subject.value"),
        (lambda: Subject(SubjectKind.SETTING, "Free Text"), "audit.subject.value"),
        (lambda: Outcome(Status.REFUSED, ""), "audit.outcome.code"),
        (lambda: entry(action="Relay it"), "audit.action"),
        (lambda: entry(time_ms=-1), "audit.time"),
        (lambda: entry(detail=(("size", 1), ("count", 2))), "audit.detail"),
        (lambda: AuditRecord(seq=-1, node=NODE, prev=GENESIS_PREV, entry=entry()), "audit.seq"),
        (lambda: AuditRecord(seq=0, node=NODE, prev=b"", entry=entry()), "audit.prev"),
    ],
)
def test_the_schema_refuses_text_and_blobs_naming_the_field(build: object, field: str) -> None:
    with pytest.raises(InvalidAuditRecordError) as caught:
        build()  # type: ignore[operator]
    assert caught.value.field == field


def test_operator_names_may_be_chinese() -> None:
    assert Actor(Role.OPERATOR, "张三").name == "张三"
    assert set(DETAIL_SCHEMA) >= {"counterpart", "resource", "request", "reason"}


def _mutated(index: int, value: object) -> bytes:
    fields = unpack(encode_record(record()), what="t", max_size=4096)
    fields[index] = value
    return pack(fields)


@pytest.mark.parametrize(
    ("index", "value", "field"),
    [
        (1, -1, "audit.seq"),
        (2, "now", "audit.time"),
        (3, "nobody", "audit.node"),
        (4, b"\x00", "audit.prev"),
        (5, "gossip", "audit.category"),
        (6, "", "audit.action"),
        (7, ["root", "x"], "audit.actor.role"),
        (7, ["node"], "audit.actor"),
        (8, ["message", "text instead of an id"], "audit.subject.value"),
        (9, ["maybe", ""], "audit.outcome.status"),
        (10, [["note", "free text"]], "audit.detail[0]"),
        (10, [["size", "big"]], "audit.detail.size"),
        (10, [["size", 1], ["peer", "520100"]], "audit.detail"),
    ],
)
def test_decode_checks_every_field(index: int, value: object, field: str) -> None:
    with pytest.raises(MalformedError) as caught:
        decode_record(_mutated(index, value))
    assert caught.value.field == field


def test_decode_refuses_other_formats_and_non_canonical_bytes() -> None:
    with pytest.raises(UnsupportedVersionError):
        decode_record(_mutated(0, 2))
    data = encode_record(record())
    # seq 0 as a uint8 instead of a fixint: decodes to the same value, not canonical
    wide = data[:1] + b"\x01\xcc\x00" + data[3:]
    with pytest.raises(MalformedError) as caught:
        decode_record(wide)
    assert caught.value.problem == "encoding is not canonical"
    with pytest.raises(MalformedError):
        decode_record(b"\x91\x01")


def event(
    actor: str,
    action: str,
    outcome: str,
    *,
    resource_code: str = "101001/000001",
    request_id: bytes = MESSAGE,
    counterpart: str = NODE,
) -> AuditEvent:
    """What a state machine emits about request MESSAGE, at T0."""
    return AuditEvent(
        at_ms=T0,
        actor=actor,
        action=action,
        resource_code=resource_code,
        request_id=request_id,
        outcome=outcome,
        counterpart=counterpart,
    )


def test_entries_from_the_state_machines_events() -> None:
    grant = entry_from_event(event("李四", "grant", "granted", counterpart="522301.minzheng"))
    assert grant.category is Category.SUBSCRIPTION
    assert grant.actor == Actor(Role.OPERATOR, "李四")
    assert grant.subject == Subject(SubjectKind.REQUEST, MESSAGE)
    assert grant.outcome == Outcome.ok("granted")
    assert grant.get("resource") == "101001/000001"
    assert grant.get("counterpart") == "522301.minzheng"

    refused = entry_from_event(event("520100", "refused sub.decision", "not-authorised"))
    assert refused.action == "refused"
    assert refused.get("kind") == "sub.decision"
    assert refused.outcome == Outcome.refused("not-authorised")
    assert refused.actor == Actor.node("520100")

    catalog = entry_from_event(
        event("520100", "catalog.refused", "bad-signature", resource_code="", request_id=b"")
    )
    assert catalog.category is Category.CATALOG
    assert catalog.subject.kind is SubjectKind.NONE
    assert catalog.outcome.status is Status.REFUSED

    correction = entry_from_event(event(NODE, "sub.correction", "open"))
    assert correction.category is Category.RECORD


def test_an_event_cannot_smuggle_text_into_the_log() -> None:
    with pytest.raises(InvalidAuditRecordError) as caught:
        entry_from_event(event(NODE, "grant", "granted because the purpose is fine"))
    assert caught.value.field == "audit.outcome.code"


def test_the_draft_spec_example_byte_for_byte() -> None:
    """protocol/drafts/20-audit.md §20.2: the example record and its leaf."""
    example = AuditRecord(
        seq=0,
        node=NODE,
        prev=GENESIS_PREV,
        entry=AuditEntry(
            time_ms=T0,
            category=Category.ENVELOPE,
            action="envelope.relay",
            actor=Actor.node(NODE),
            subject=Subject(SubjectKind.MESSAGE, MESSAGE),
            detail=details(peer="520100", targets=2),
        ),
    )
    data = encode_record(example)
    assert len(data) == 160
    assert data[0x54:0x56] == bytes.fromhex("92a4")
    assert data[0x83:0x88] == bytes.fromhex("92a26f6ba0")
    assert record_leaf(data).hex() == (
        "796fd6e30e849fd2e306c29729071ba581636f3a5452b651a93417f371faf371"
    )
