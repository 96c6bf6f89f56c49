"""Projection and masking of records under a grant (issue 4, draft §19.5)."""

from __future__ import annotations

import pytest

from exchnode import errors
from exchnode.core import pack
from exchnode.sharing import Hash, Keep, MaskSet, Redact, YearOnly
from exchnode.sharing._masking import Projection, grant_hash_key

KEY = grant_hash_key(b"provider masking secret, 32 bytes", b"r" * 16)
RECORD = {
    "name": "张三",
    "id_number": "110101199003071234",
    "birth_date": "1990-03-07",
    "phone": "13800138000",
    "income": 5200,
    "photo": b"\x89PNG",
    "note": None,
}


def project(masks: dict[str, object], items: set[str] | None = None) -> dict[str, object]:
    granted = frozenset(RECORD) if items is None else frozenset(items)
    return Projection(granted, MaskSet.of(masks), KEY).apply(RECORD)  # type: ignore[arg-type]


def test_projection_drops_every_item_not_granted() -> None:
    out = Projection(frozenset({"name", "income", "not_in_record"})).apply(RECORD)
    assert out == {"name": "张三", "income": 5200}


def test_keep_masks_the_id_number_example() -> None:
    assert project({"id_number": Keep(6, 4)})["id_number"] == "110101********1234"
    assert project({"phone": Keep(3, 4, "#")})["phone"] == "138####8000"


def test_keep_on_a_short_text_masks_all_of_it() -> None:
    projection = Projection(frozenset({"code"}), MaskSet.of({"code": Keep(6, 4)}))
    assert projection.apply({"code": "12345"}) == {"code": "*****"}
    assert projection.apply({"code": "1234567890"}) == {"code": "**********"}
    assert projection.apply({"code": "12345678901"}) == {"code": "123456*8901"}


def test_redact_replaces_with_a_fixed_text_or_null() -> None:
    assert project({"income": Redact()})["income"] == "***"
    assert project({"income": Redact(None)})["income"] is None


def test_hash_is_keyed_per_grant_and_joinable_within_it() -> None:
    first = project({"id_number": Hash()})["id_number"]
    assert first == project({"id_number": Hash()})["id_number"]
    assert isinstance(first, str)
    assert len(first) == 64
    assert int(first, 16) >= 0
    # Another grant (another request id) hashes the same value differently.
    other_key = grant_hash_key(b"provider masking secret, 32 bytes", b"s" * 16)
    other = Projection(frozenset({"id_number"}), MaskSet.of({"id_number": Hash()}), other_key)
    assert other.apply(RECORD)["id_number"] != first
    # An unkeyed SHA-256 of the value (what a guesser would compute) is not it.
    import hashlib

    assert first not in {
        hashlib.sha256(RECORD["id_number"].encode()).hexdigest(),  # type: ignore[union-attr]
        hashlib.sha256(pack(RECORD["id_number"])).hexdigest(),
    }


def test_hash_tells_types_apart_and_takes_bytes() -> None:
    projection = Projection(frozenset({"v"}), MaskSet.of({"v": Hash()}), KEY)
    assert projection.apply({"v": "1"}) != projection.apply({"v": 1})
    assert len(str(project({"photo": Hash()})["photo"])) == 64


def test_year_only_keeps_the_year_of_a_date_text() -> None:
    assert project({"birth_date": YearOnly()})["birth_date"] == "1990"
    projection = Projection(frozenset({"d"}), MaskSet.of({"d": YearOnly()}))
    assert projection.apply({"d": "19900307"}) == {"d": "1990"}
    with pytest.raises(errors.MaskingError) as caught:
        projection.apply({"d": "March 1990"})
    assert (caught.value.item, caught.value.rule) == ("d", "year_only")


def test_null_stays_null_under_every_rule() -> None:
    for rule in (Keep(), Redact(), Hash(), YearOnly()):
        assert project({"note": rule})["note"] is None


def test_text_rules_on_other_values_refuse_rather_than_guess() -> None:
    with pytest.raises(errors.MaskingError) as caught:
        project({"income": Keep(1, 1)})
    assert caught.value.item == "income"
    assert caught.value.rule == "keep"
    assert "int" in str(caught.value)
    with pytest.raises(errors.MaskingError, match="year_only"):
        project({"photo": YearOnly()})


def test_a_mask_on_an_item_not_granted_is_an_error() -> None:
    with pytest.raises(errors.MaskingError) as caught:
        project({"phone": Keep()}, items={"name"})
    assert caught.value.item == "phone"
    assert "not granted" in str(caught.value)


def test_hash_needs_a_key() -> None:
    with pytest.raises(errors.MaskingError, match="hash key"):
        Projection(frozenset({"a"}), MaskSet.of({"a": Hash()}))
    with pytest.raises(errors.UsageError):
        grant_hash_key(b"short", b"r" * 16)


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        (Keep(-1, 4), "first"),
        (Keep(6, 65), "last"),
        (Keep(6, 4, "**"), "one character"),
        (Keep(True, 4), "first"),  # type: ignore[arg-type]
        (Redact("x" * 17), "replacement"),
    ],
)
def test_bad_rules_name_the_item_and_the_rule(rule: object, problem: str) -> None:
    with pytest.raises(errors.MaskingError) as caught:
        MaskSet.of({"id_number": rule})  # type: ignore[dict-item]
    assert caught.value.item == "id_number"
    assert problem in str(caught.value)


def test_not_a_rule_is_refused() -> None:
    with pytest.raises(errors.MaskingError, match="not a masking rule"):
        MaskSet.of({"a": "keep"})  # type: ignore[dict-item]


def test_mask_sets_round_trip_canonically() -> None:
    masks = MaskSet.of(
        {"phone": Keep(3, 4), "id_number": Hash(), "income": Redact(None), "d": YearOnly()}
    )
    assert [item for item, _ in masks.rules] == ["d", "id_number", "income", "phone"]
    assert MaskSet.decode(masks.encode()) == masks
    assert MaskSet.decode(MaskSet().encode()) == MaskSet()


@pytest.mark.parametrize(
    ("wire", "field"),
    [
        ([["b", ["hash"]], ["a", ["hash"]]], "masks"),  # unsorted
        ([["a", ["hash"]], ["a", ["redact", None]]], "masks"),  # twice
        ([["a", ["shuffle"]]], "masks[0].rule"),
        ([["a", ["keep", 1, 2]]], "masks[0].rule"),
        ([["a", ["keep", 1, 2, "ab"]]], "masks[0].rule"),
        ([["", ["hash"]]], "masks[0].item"),
        ([["a"]], "masks[0]"),
        ({"a": 1}, "masks"),
    ],
)
def test_bad_mask_sets_on_the_wire_are_malformed(wire: object, field: str) -> None:
    with pytest.raises(errors.MalformedError) as caught:
        MaskSet.decode(pack(wire))
    assert caught.value.field == field


def test_non_canonical_mask_sets_are_refused() -> None:
    data = b"\x91\x92\xa1a\x91\xa4hash"  # fixarray(1)[fixarray(2)["a", ["hash"]]]
    assert MaskSet.decode(data).rules == (("a", Hash()),)
    padded = b"\xdc\x00\x01" + data[1:]  # array16 where fixarray fits
    with pytest.raises(errors.MalformedError, match="canonical"):
        MaskSet.decode(padded)
