"""Catalog entries and their signed records (issue 4, SPEC §18.2-§18.4)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import msgpack
import pytest

from exchnode import errors
from exchnode.catalog import (
    CatalogEntry,
    CatalogRecord,
    CatalogVerifier,
    DataItem,
    DataType,
    Openness,
    Publication,
    ResourceFormat,
    ShareMethod,
    ShareType,
    Status,
    UpdateCycle,
    Withdrawal,
    decode_record,
    sign_records,
)
from exchnode.catalog._entry import TRANSITIONS, Classification, ResourceClass, advance
from exchnode.core import (
    TYPE_CATALOG,
    TYPE_RECEIPT,
    LocalIdentity,
    Outgoing,
    Sealer,
    StaticDirectory,
    encode_signed,
    pack,
    sign_leaves,
    signed_leaf,
)
from exchnode.testing import SyntheticPKI

NOW = 1_795_000_000.0
GONGAN = "520102.gongan"  # a county department: the provider in most tests
MINZHENG = "520102.minzheng"
FAGAI = "520100.fagai"
TONGJI = "520000.tongji"
REMOTE = "522301.minzheng"
HUBS = ("520000", "520100", "520102", "520103", "522300", "522301")
DEPARTMENTS = (GONGAN, MINZHENG, "520103.gongan", FAGAI, TONGJI, REMOTE)


def _federation() -> dict[str, LocalIdentity]:
    pki = SyntheticPKI()
    root = pki.root("520000")
    return {name: pki.node(name, root).identity for name in (*HUBS, *DEPARTMENTS)}


IDENTITIES = _federation()
DIRECTORY = StaticDirectory(identity.peer for identity in IDENTITIES.values())


def make_entry(provider: str = GONGAN, sequence: int = 1, **changes: Any) -> CatalogEntry:
    """A valid conditional database entry; ``changes`` override any field."""
    fields: dict[str, Any] = {
        "provider": provider,
        "code": f"101001/{sequence:06d}",
        "classification": "101001",
        "name": "人口基本信息",
        "provider_code": "11520102MB1234567X",
        "summary": "户籍人口的基本信息 Population register",
        "format": ResourceFormat.DATABASE,
        "data_items": (
            DataItem("身份证号", DataType.CHARACTER, "公民身份号码"),
            DataItem("姓名", DataType.CHARACTER),
            DataItem("出生日期", DataType.DATE),
            DataItem("Household_Size", DataType.INTEGER),
        ),
        "share_type": ShareType.CONDITIONAL,
        "share_conditions": "仅限政务部门依法履职使用",
        "share_methods": frozenset({ShareMethod.QUERY_INTERFACE, ShareMethod.SUBSCRIPTION_PUSH}),
        "openness": Openness.NOT_OPEN,
        "update_cycle": UpdateCycle.DAILY,
        "publish_date": date(2026, 1, 15),
        "related": frozenset({"101002/000001"}),
    }
    fields.update(changes)
    return CatalogEntry(**fields)


def publish(
    *entries: CatalogEntry, version: int = 1, now: float = NOW, signer: str | None = None
) -> list[CatalogRecord]:
    """Sign ``entries`` as one batch by their provider (or ``signer``)."""
    name = signer or entries[0].provider
    return sign_records(IDENTITIES[name], [Publication(e, version) for e in entries], now)


def withdraw(
    provider: str, code: str, version: int, reason: str = "停止采集", now: float = NOW
) -> CatalogRecord:
    (record,) = sign_records(IDENTITIES[provider], [Withdrawal(code, version, reason)], now)
    return record


def body_of(data: bytes) -> list[Any]:
    return msgpack.unpackb(msgpack.unpackb(data)[2])  # type: ignore[no-any-return]


def sign_body(body: list[Any], signer: str) -> bytes:
    """Sign an arbitrary body as a catalog record: what a forger or a buggy peer can do."""
    raw = pack(body)
    (seal,) = sign_leaves(
        IDENTITIES[signer].signing_private_key, 1, [signed_leaf(TYPE_CATALOG, raw)]
    )
    return encode_signed(TYPE_CATALOG, raw, seal)


# --- entries --------------------------------------------------------------------------


def test_an_entry_round_trips_through_its_signed_record() -> None:
    entry = make_entry()
    (record,) = publish(entry, version=3)
    decoded = CatalogVerifier(DIRECTORY).verify(record.data)
    assert decoded == record
    assert decoded.entry == entry
    assert (decoded.provider, decoded.code, decoded.version) == (GONGAN, entry.code, 3)
    assert decoded.issued_ms == int(NOW * 1000)
    assert decoded.status is Status.PUBLISHED
    assert decoded.signer == GONGAN
    assert entry.resource_class is ResourceClass.BASE


def test_any_iterable_becomes_the_canonical_container() -> None:
    entry = make_entry(
        data_items=[DataItem("a", DataType.CHARACTER)],
        share_methods=[ShareMethod.FILE_TRANSFER],
        related=["101002/000001"],
    )
    assert entry.data_items == (DataItem("a", DataType.CHARACTER),)
    assert entry.share_methods == frozenset({ShareMethod.FILE_TRANSFER})
    assert entry.related == frozenset({"101002/000001"})


def test_a_classification_code_parses_into_its_parts() -> None:
    parsed = Classification.parse("2050120007")
    assert parsed == Classification(ResourceClass.THEME, "05", "012", "0007")
    assert str(parsed) == "2050120007"


ENTRY_RULES: list[tuple[dict[str, Any], str, str]] = [
    ({"provider": "520102"}, "catalog.provider", "must be a department node"),
    ({"provider": "52010.gongan"}, "catalog.provider", "6 digits"),
    ({"code": "101001-000001"}, "catalog.code", "<classification code>/<sequence"),
    ({"code": "101001/"}, "catalog.code", "<classification code>/<sequence"),
    ({"code": "101002/000001"}, "catalog.code", "begin with the entry's classification"),
    ({"code": "401001/000001", "classification": "401001"}, "catalog.code", "class (1 base"),
    ({"classification": "400101"}, "catalog.classification", "class (1 base, 2 theme"),
    ({"classification": "100001"}, "catalog.classification", "item (2 digits, 01-99)"),
    ({"classification": "101000"}, "catalog.classification", "heading (3 digits"),
    ({"classification": "1010"}, "catalog.classification", "heading (3 digits"),
    ({"name": ""}, "catalog.name", "is required"),
    ({"name": "  "}, "catalog.name", "is required"),
    ({"name": "a\nb"}, "catalog.name", "must not contain line breaks"),
    ({"name": "x" * 129}, "catalog.name", "at most 128 characters"),
    ({"provider_code": "abc"}, "catalog.provider_code", "0-9, A-Z and '-'"),
    ({"summary": ""}, "catalog.summary", "is required"),
    ({"summary": "a\x00b"}, "catalog.summary", "must not contain control characters"),
    ({"format": "database"}, "catalog.format", "must be one of database, file, spreadsheet"),
    (
        {"data_items": (DataItem("a", DataType.DATE), DataItem("A", DataType.DATE))},
        "catalog.data_items[1].name",
        "must be unique",
    ),
    ({"data_items": (DataItem("", DataType.DATE),)}, "catalog.data_items[0].name", "required"),
    (
        {"data_items": (DataItem("a", "C"),)},  # type: ignore[arg-type]
        "catalog.data_items[0].type",
        "must be one of C N Y D T L M G B I F",
    ),
    (
        {"data_items": (DataItem("a", DataType.DATE, "x" * 257),)},
        "catalog.data_items[0].description",
        "at most 256",
    ),
    ({"data_items": ("a",)}, "catalog.data_items[0]", "must be a data item"),
    ({"share_type": "conditional"}, "catalog.share_type", "unconditional, conditional"),
    (
        {"share_type": ShareType.UNCONDITIONAL},
        "catalog.share_conditions",
        "must be empty for unconditional sharing",
    ),
    ({"share_conditions": ""}, "catalog.share_conditions", "who may use the resource"),
    (
        {"share_type": ShareType.NOT_SHARED, "share_conditions": "", "share_methods": frozenset()},
        "catalog.share_conditions",
        "legal basis",
    ),
    (
        {"share_type": ShareType.NOT_SHARED, "share_conditions": "《保守国家秘密法》第二条"},
        "catalog.share_methods",
        "must be empty for a resource that is not shared",
    ),
    ({"share_methods": frozenset()}, "catalog.share_methods", "at least one method"),
    ({"share_methods": frozenset({"mail"})}, "catalog.share_methods", "subscription_push"),
    (
        {"openness": Openness.CONDITIONAL},
        "catalog.open_conditions",
        "required when openness is conditional",
    ),
    ({"openness": True}, "catalog.openness", "must be one of not_open, open, conditional"),
    ({"update_cycle": "daily"}, "catalog.update_cycle", "real_time, daily, weekly"),
    ({"publish_date": datetime(2026, 1, 1)}, "catalog.publish_date", "must be a date"),
    ({"publish_date": "2026-01-01"}, "catalog.publish_date", "must be a date"),
    ({"related": frozenset({"101001/000001"})}, "catalog.related", "own code"),
    ({"related": frozenset({"x"})}, "catalog.related[0]", "<classification code>/<sequence"),
    (
        {"related": frozenset(f"101001/{i:06d}" for i in range(2, 70))},
        "catalog.related",
        "at most 64",
    ),
]


@pytest.mark.parametrize(("changes", "field", "rule"), ENTRY_RULES)
def test_a_bad_entry_names_the_field_and_the_rule(
    changes: dict[str, Any], field: str, rule: str
) -> None:
    with pytest.raises(errors.InvalidCatalogEntryError) as caught:
        make_entry(**changes)
    assert caught.value.field == field
    assert rule in caught.value.problem
    assert str(caught.value).startswith(f"invalid {field}: ")
    assert isinstance(caught.value, errors.UsageError)


def test_the_other_share_types_and_formats_are_valid() -> None:
    make_entry(share_type=ShareType.UNCONDITIONAL, share_conditions="")
    make_entry(
        share_type=ShareType.NOT_SHARED,
        share_conditions="《中华人民共和国保守国家秘密法》",
        share_methods=frozenset(),
        format=ResourceFormat.STREAM,
        data_items=(),
        openness=Openness.CONDITIONAL,
        open_conditions="经审批后开放",
        update_cycle=UpdateCycle.REAL_TIME,
        related=frozenset(),
    )


# --- decoding: every field is checked on the wire too -----------------------------------

# Body: [suite, signer, signer_key_id, provider, code, version, issued, status, detail]
# Detail: [classification, name, provider_code, summary, format, data_items, share_type,
#          share_conditions, share_methods, openness, open_conditions, update_cycle,
#          publish_date, related]
Mutation = Callable[[list[Any]], None]


def _detail(index: int, value: Any) -> Mutation:
    def mutate(body: list[Any]) -> None:
        body[8][index] = value

    return mutate


def _field(index: int, value: Any) -> Mutation:
    def mutate(body: list[Any]) -> None:
        body[index] = value

    return mutate


def _item_type(body: list[Any]) -> None:
    body[8][5][3][1] = "X"


WIRE_RULES: list[tuple[Mutation, str, str]] = [
    (_field(0, 9), "catalog.body", "suite"),  # unsupported-suite, checked below
    (_field(1, "520102"), "catalog.signer", "must be a department node"),
    (_field(2, b"short"), "catalog.signer_key_id", "must be 16 bytes"),
    (_field(3, 5), "catalog.provider", "must be a string"),
    (_field(4, "1/1"), "catalog.code", "<classification code>/<sequence"),
    (_field(5, 0), "catalog.version", "must be an integer in 1.."),
    (_field(5, -1), "catalog.version", "must be an integer in 1.."),
    (_field(6, 1 << 60), "catalog.issued", "milliseconds"),
    (_field(7, "draft"), "catalog.status", "draft, registered, reviewed stay local"),
    (_field(8, []), "catalog.entry", "expected an array of 14 elements"),
    (_detail(0, 101001), "catalog.classification", "class (1 base"),
    (_detail(1, ""), "catalog.name", "is required"),
    (_detail(2, "x"), "catalog.provider_code", "0-9, A-Z"),
    (_detail(3, b"bytes"), "catalog.summary", "must be a string"),
    (_detail(4, "pdf"), "catalog.format", "must be one of database"),
    (_detail(5, "items"), "catalog.data_items", "at most 500 data items"),
    (_item_type, "catalog.data_items[3].type", "must be one of C N Y D T L M G B I F"),
    (_detail(6, "open"), "catalog.share_type", "unconditional, conditional, not_shared"),
    (_detail(7, ""), "catalog.share_conditions", "who may use the resource"),
    (
        _detail(8, ["subscription_push", "query_interface"]),
        "catalog.share_methods",
        "strictly ascending",
    ),
    (_detail(8, ["fax"]), "catalog.share_methods", "must be one of subscription_push"),
    (_detail(9, "public"), "catalog.openness", "not_open, open, conditional"),
    (_detail(10, 7), "catalog.open_conditions", "must be a string"),
    (_detail(11, "hourly"), "catalog.update_cycle", "real_time, daily"),
    (_detail(12, "2026-02-30"), "catalog.publish_date", "YYYY-MM-DD"),
    (_detail(12, "20260115"), "catalog.publish_date", "YYYY-MM-DD"),
    (_detail(13, ["101009/1", "101002/1"]), "catalog.related", "strictly ascending"),
    (_detail(13, [7]), "catalog.related[0]", "must be a string"),
]


@pytest.mark.parametrize(("mutate", "field", "rule"), WIRE_RULES)
def test_a_bad_record_names_the_field_and_the_rule(mutate: Mutation, field: str, rule: str) -> None:
    (record,) = publish(make_entry())
    body = body_of(record.data)
    mutate(body)
    data = sign_body(body, GONGAN)
    if field == "catalog.body":
        with pytest.raises(errors.UnsupportedSuiteError):
            decode_record(data)
        return
    with pytest.raises(errors.MalformedError) as caught:
        decode_record(data)
    assert caught.value.field == field
    assert rule in caught.value.problem
    assert f"{field}: " in str(caught.value)


def test_the_guides_example_error_reads_as_documented() -> None:
    (record,) = publish(make_entry())
    body = body_of(record.data)
    _item_type(body)
    with pytest.raises(errors.MalformedError) as caught:
        CatalogVerifier(DIRECTORY).verify(sign_body(body, GONGAN))
    assert str(caught.value) == (
        "malformed catalog.data_items[3].type: must be one of C N Y D T L M G B I F"
    )


def test_a_tombstone_carries_a_reason_and_no_entry() -> None:
    record = withdraw(GONGAN, "101001/000001", 4, "数据已并入新资源")
    assert record.withdrawn
    assert record.entry is None
    assert record.reason == "数据已并入新资源"
    assert decode_record(record.data) == record
    body = body_of(record.data)
    body[8] = ""
    with pytest.raises(errors.MalformedError, match=r"catalog\.reason: is required"):
        decode_record(sign_body(body, GONGAN))


def test_a_non_canonical_body_is_refused() -> None:
    (record,) = publish(make_entry())
    body = body_of(record.data)
    raw = pack(body)
    # Version 1 as a uint8 (0xcc 0x01) instead of a positive fixint.
    head = pack(body[:5])[1:]
    position = raw.index(head) + len(head)
    assert raw[position] == 1
    wide = raw[:position] + b"\xcc\x01" + raw[position + 1 :]
    (seal,) = sign_leaves(IDENTITIES[GONGAN].signing_private_key, 1, [signed_leaf(3, wide)])
    with pytest.raises(errors.MalformedError, match="not canonical"):
        decode_record(encode_signed(TYPE_CATALOG, wide, seal))


def test_other_signed_items_are_not_catalog_records() -> None:
    sender = IDENTITIES[GONGAN]
    sealed = Sealer(sender, DIRECTORY).seal(Outgoing([REMOTE], b"x"), NOW)
    with pytest.raises(errors.MalformedError, match=r"catalog\.type"):
        decode_record(sealed.data)
    (record,) = publish(make_entry())
    body = msgpack.unpackb(record.data)[2]
    assert signed_leaf(TYPE_CATALOG, body) != signed_leaf(TYPE_RECEIPT, body)


def test_signing_refuses_what_decoding_would_refuse() -> None:
    with pytest.raises(errors.InvalidCatalogEntryError, match=r"catalog\.version"):
        publish(make_entry(), version=0)
    with pytest.raises(errors.InvalidCatalogEntryError, match=r"catalog\.reason"):
        withdraw(GONGAN, "101001/000001", 2, reason="")
    with pytest.raises(errors.InvalidCatalogEntryError, match=r"catalog\.code"):
        withdraw(GONGAN, "nonsense", 2)
    assert sign_records(IDENTITIES[GONGAN], [], NOW) == []


# --- signatures: one source per datum (SPEC §18.4) ----------------------------------------


def test_a_provider_publishing_500_entries_signs_once() -> None:
    entries = [make_entry(sequence=i) for i in range(1, 501)]
    records = publish(*entries)
    signatures = {msgpack.unpackb(r.data)[3][3] for r in records}
    assert len(signatures) == 1
    verifier = CatalogVerifier(DIRECTORY)
    assert [verifier.verify(r.data).code for r in records] == [e.code for e in entries]


def test_only_the_provider_can_sign_its_entries() -> None:
    with pytest.raises(errors.UsageError, match="only the provider publishes"):
        publish(make_entry(provider=GONGAN), signer=MINZHENG)
    # A hub is no provider: it cannot even withdraw in its own name.
    with pytest.raises(errors.InvalidCatalogEntryError, match="must be a department node"):
        withdraw("520102", "101001/000001", 2)


def test_a_hub_altering_a_byte_is_detected() -> None:
    (record,) = publish(make_entry())
    frame = msgpack.unpackb(record.data)
    body = msgpack.unpackb(frame[2])
    body[8][1] = "人口基本信息（已修改）"
    frame[2] = pack(body)
    with pytest.raises(errors.BadSignatureError, match=GONGAN):
        CatalogVerifier(DIRECTORY).verify(pack(frame))
    tampered = bytearray(record.data)
    tampered[tampered.index("人口".encode())] ^= 0x01
    with pytest.raises(errors.RejectedError) as caught:
        CatalogVerifier(DIRECTORY).verify(bytes(tampered))
    assert caught.value.code in ("bad-signature", "malformed")


def test_a_hub_resigning_under_its_own_name_is_refused_with_its_own_code() -> None:
    (record,) = publish(make_entry())
    body = body_of(record.data)
    # The city's department node re-signs the county department's entry as itself.
    body[1], body[2] = FAGAI, IDENTITIES[FAGAI].peer.signing_key_id
    with pytest.raises(errors.NotTheProviderError) as caught:
        CatalogVerifier(DIRECTORY).verify(sign_body(body, FAGAI))
    assert caught.value.code == "not-the-provider"
    assert (caught.value.signer, caught.value.provider) == (FAGAI, GONGAN)


def test_a_hub_signature_under_the_providers_name_is_refused() -> None:
    (record,) = publish(make_entry())
    body = body_of(record.data)
    # Claiming the provider's key id with the hub's key: the signature fails.
    with pytest.raises(errors.BadSignatureError):
        CatalogVerifier(DIRECTORY).verify(sign_body(body, FAGAI))
    # Claiming the provider's name with the hub's key id: no such key for the provider.
    body[2] = IDENTITIES["520100"].peer.signing_key_id
    with pytest.raises(errors.UnknownSignerError):
        CatalogVerifier(DIRECTORY).verify(sign_body(body, "520100"))
    # A hub's name as signer is malformed before any key is looked up.
    body[1] = "520100"
    with pytest.raises(errors.MalformedError, match=r"catalog\.signer"):
        CatalogVerifier(DIRECTORY).verify(sign_body(body, "520100"))


def test_an_unknown_provider_is_refused() -> None:
    (record,) = publish(make_entry())
    directory = StaticDirectory([IDENTITIES[MINZHENG].peer])
    with pytest.raises(errors.UnknownSignerError, match=GONGAN):
        CatalogVerifier(directory).verify(record.data)


def test_content_digest_ignores_when_and_with_which_key_it_was_signed() -> None:
    (first,) = publish(make_entry(), version=2, now=NOW)
    (again,) = publish(make_entry(), version=2, now=NOW + 60)
    (changed,) = publish(make_entry(name="人口信息"), version=2, now=NOW)
    assert first.digest != again.digest
    assert first.content_digest == again.content_digest
    assert first.content_digest != changed.content_digest


# --- life cycle ------------------------------------------------------------------------


def test_the_life_cycle_is_a_table() -> None:
    status = Status.DRAFT
    for step in (Status.REGISTERED, Status.REVIEWED, Status.PUBLISHED, Status.WITHDRAWN):
        status = advance(status, step)
    assert advance(status, Status.PUBLISHED) is Status.PUBLISHED
    assert advance(Status.REVIEWED, Status.DRAFT) is Status.DRAFT
    with pytest.raises(errors.UsageError, match="from draft to published"):
        advance(Status.DRAFT, Status.PUBLISHED)
    with pytest.raises(errors.UsageError, match="only to withdrawn"):
        advance(Status.PUBLISHED, Status.DRAFT)
    assert {s for s in Status if s.travels} == {Status.PUBLISHED, Status.WITHDRAWN}
    assert set(TRANSITIONS) == set(Status)


def test_entries_are_values() -> None:
    entry = make_entry()
    assert entry == make_entry()
    assert hash(entry) == hash(make_entry())
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.name = "x"  # type: ignore[misc]
