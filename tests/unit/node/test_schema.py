"""One source: what the API's checks accept is exactly what its OpenAPI document calls valid.

``node.schema`` values both check a request (``check``) and write the JSON
Schema of the document (``json_schema``).  Here every operation's declared
body, and each kind of schema on its own, is given a valid value with one
field replaced by any JSON value, and the two faces must agree: the check
accepts it if and only if a JSON Schema validator (draft 2020-12, with the
document's components for its ``$ref``) calls it valid.  A refusal is always
a ``FormError`` naming a field.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonschema_rs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchnode.node.forms import FormError
from exchnode.node.openapi import document
from exchnode.node.operations import ENTRY_EXAMPLE, OPERATIONS
from exchnode.node.schema import (
    Array,
    Boolean,
    Integer,
    MapOf,
    Nullable,
    Number,
    Object,
    OneOf,
    Schema,
    Text,
)

SPEC = document()
ENTRY: dict[str, Any] = copy.deepcopy(ENTRY_EXAMPLE)  # a valid entry
#: A valid value of every field any operation's body declares.
VALID: dict[str, Any] = {
    "operator": "张三",
    "administrator": "李四",
    "messages": [{"to": ["520102"], "payload": "aGk=", "ttl": 60, "receipt": True}],
    "ids": ["520102:" + "00" * 16],
    "entry": ENTRY,
    "entries": [ENTRY],
    "code": "101001/000001",
    "reason": "用途已结束",
    "provider": "522300.minzheng",
    "purpose": "低保核验",
    "scope": "本县申请人",
    "items": ["姓名"],
    "masks": {"身份证号": {"rule": "keep", "first": 6, "last": 4, "char": "*"}},
    "expires": "2026-12-31",
    "records": [{"姓名": "张三", "照片": {"base64": "AAE="}, "年龄": 30, "在册": True}],
    "numbers": [1, 2],
    "seq": 7,
    "text": "姓名与户籍登记不符",
    "accepted": True,
    "pem": "-----BEGIN X509 CRL-----\n...\n-----END X509 CRL-----\n",
    "name": "520102.gongan",
    "relation": "child",
    "url": "https://127.0.0.1:7001",
}
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.sampled_from(["", "keep", "database", "C", "520102", "2026-01-05", "0a" * 16])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
BODIES = [(f"{op.method} {op.path}", op.body) for op in OPERATIONS if op.body is not None]


def validator(schema: dict[str, Any]) -> Any:
    """A draft 2020-12 validator of ``schema``, its ``$ref`` resolved in the document."""
    return jsonschema_rs.Draft202012Validator(schema | {"components": SPEC["components"]})


def accepts(schema: Schema, value: Any) -> bool:
    problem = ""
    try:
        schema.check(value, "")
    except FormError as exc:
        problem = str(exc) or "(no words)"
    assert problem != "(no words)", "a refusal names what is wrong"
    return not problem


def agree(schema: Schema, value: Any) -> None:
    checked, valid = accepts(schema, value), validator(schema.json_schema()).is_valid(value)
    assert checked == valid, (schema.json_schema(), value, checked, valid)


def valid_body(body: Schema) -> dict[str, Any]:
    assert isinstance(body, Object)
    return {name: copy.deepcopy(VALID[name]) for name in body.properties}


@pytest.mark.parametrize(("operation", "body"), BODIES, ids=[label for label, _ in BODIES])
def test_every_declared_body_has_a_valid_example_both_faces_accept(
    operation: str, body: Schema
) -> None:
    agree(body, valid_body(body))
    assert accepts(body, valid_body(body))


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_a_body_with_any_field_replaced_is_judged_alike_by_both_faces(data: st.DataObject) -> None:
    _, body = data.draw(st.sampled_from(BODIES))
    assert isinstance(body, Object)
    value = valid_body(body)
    field = data.draw(st.sampled_from(sorted(body.properties)))
    value[field] = data.draw(json_values)
    agree(body, value)


SHAPES: list[Schema] = [
    Text(min_length=1, max_length=5),
    Text(enum=("a", "b")),
    Text(pattern="[0-9a-f]{4}", pattern_rule="4 hex digits"),
    Text(printable=True),
    Integer(minimum=1, maximum=10),
    Number(minimum=0.5, maximum=2),
    Boolean(),
    Array(items=Integer(), min_items=1, max_items=2),
    MapOf(values=Text(), min_properties=1),
    Nullable(inner=Text()),
    OneOf(choices=(Integer(), Text(max_length=2))),
    Object(properties={"a": Integer(), "b": Text()}, required=("a",), closed=True),
]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SHAPES), json_values | st.text(max_size=6) | st.integers(-3, 12))
def test_each_kind_of_schema_is_judged_alike_by_both_faces(shape: Schema, value: Any) -> None:
    agree(shape, value)


def test_a_query_parameter_is_parsed_from_its_text() -> None:
    assert Integer(minimum=1).parse("12", "max") == 12
    assert Number().parse("0.5", "wait") == 0.5
    assert Boolean().parse("1", "ack") is True
    assert Boolean().parse("false", "ack") is False
    for schema, text, says in (
        (Integer(minimum=1), "0", "max: must be at least 1, got 0"),
        (Integer(), "1e3", "max: must be an integer, got '1e3'"),
        (Number(), "nan", "max: must be a number, got 'nan'"),
        (Boolean(), "maybe", "max: must be 0 or 1, got 'maybe'"),
        (Text(enum=("all",)), "x" * 100, "max: must be one of all, got a text of 100 characters"),
    ):
        with pytest.raises(FormError) as refused:
            schema.parse(text, "max")
        assert str(refused.value) == says
