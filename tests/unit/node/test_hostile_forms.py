"""Whatever JSON a caller sends, the operator API's readers answer with an error they name.

The guard (``node.operator``) turns the library's errors into 4xx answers;
anything else would be an internal error (500).  So every reader of a
request -- the body parser and the JSON forms of entries, masks, records,
messages and names -- must raise nothing but those errors, for any bytes and
any JSON value, however nested, typed or sized.  And a refusal quotes no
payload back.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchnode.audit import Role
from exchnode.errors import InvalidNameError, RejectedError, UsageError
from exchnode.node.api import MAX_JSON_DEPTH, HTTPProblem, parse_json_object, person, shown
from exchnode.node.forms import (
    entry_from_json,
    masks_from_json,
    node_name,
    parse_request_id,
    parse_time,
    record_from_json,
    value_from_json,
)
from exchnode.node.operations import ENTRY_EXAMPLE, OPERATIONS, operation_for
from exchnode.node.operator import _message
from exchnode.node.operator_services import operator_of

ANSWERED = (HTTPProblem, UsageError, RejectedError, InvalidNameError)  # 4xx, by the guard
MARKER = "PAYLOAD-MARKER-" + "5b1f" * 16  # longer than any identifier an error may quote

texts = st.text(max_size=80) | st.sampled_from(["", "C", "keep", "database", "520102", MARKER])
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)

ENTRY: dict[str, Any] = copy.deepcopy(ENTRY_EXAMPLE)  # a valid entry
MESSAGE: dict[str, Any] = {"to": ["520102"], "payload": "", "kind": "data", "ttl": 60}
SEND_MANY = operation_for("POST", "/v1/send-many")
BODIES = [op.body for op in OPERATIONS if op.body is not None]


def read_message(value: Any) -> None:
    """One message of ``send-many`` as the API reads it: its declared shape, then ``_message``."""
    assert SEND_MANY is not None
    assert SEND_MANY.body is not None
    document = SEND_MANY.body.check({"messages": [value]}, "")
    _message(0, document["messages"][0])


def answered(call: Any, *args: Any) -> None:
    """``call(*args)`` returns or raises one of the errors the guard answers with a 4xx."""
    problem = ""
    try:
        call(*args)
    except ANSWERED as exc:
        problem = str(exc)
    assert MARKER not in problem


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_every_form_reader_refuses_any_json_value_with_a_named_error(value: Any) -> None:
    answered(entry_from_json, value, "520102.gongan")
    answered(masks_from_json, value)
    answered(masks_from_json, {"身份证号": value})
    answered(masks_from_json, {"身份证号": {"rule": value}})
    answered(masks_from_json, {"身份证号": {"rule": "keep", "first": value}})
    answered(record_from_json, value, "records[0]")
    answered(record_from_json, {"姓名": value}, "records[0]")
    answered(value_from_json, value, "records[0].x")
    answered(parse_time, value, "expires")
    answered(node_name, value, "provider")
    answered(read_message, value)
    for body in BODIES:  # every operation's declared body (node.operations), each field
        answered(body.check, value, "")
        for name in getattr(body, "properties", {}):
            answered(body.check, {"operator": "张三", "administrator": "张三", name: value}, "")
    answered(operator_of, {"operator": value})
    answered(person, {"administrator": value}, Role.ADMINISTRATOR)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(ENTRY)) | st.just("data_items.0"), json_values)
def test_an_entry_with_any_field_wrong_is_refused_naming_it(field: str, value: Any) -> None:
    entry = json.loads(json.dumps(ENTRY))
    if field == "data_items.0":
        entry["data_items"][0] = value
    else:
        entry[field] = value
    answered(entry_from_json, entry, "520102.gongan")


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(MESSAGE)) | st.just("receipt"), json_values)
def test_a_message_with_any_field_wrong_is_refused_naming_it(field: str, value: Any) -> None:
    answered(read_message, MESSAGE | {field: value})


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_are_a_json_object_or_a_400(raw: bytes) -> None:
    refused: tuple[int, str] | None = None
    try:
        document = parse_json_object(raw)
    except HTTPProblem as exc:
        refused = (exc.status, exc.code)
    else:
        assert isinstance(document, dict)
    assert refused in (None, (400, "invalid-json"))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(texts, json_values, max_size=4))
def test_any_json_object_of_sane_depth_is_read_back(document: dict[str, Any]) -> None:
    assert parse_json_object(json.dumps(document).encode()) == document


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"", "the body is empty"),
        (b"[" * 100_000 + b"]" * 100_000, f"nests deeper than {MAX_JSON_DEPTH} levels"),
        (b'{"a": ' + b"[" * (MAX_JSON_DEPTH) + b"]" * MAX_JSON_DEPTH + b"}", "nests deeper"),
        (b'{"seq": 1e999}', "too large to be a finite number"),
        (b'{"seq": ' + b"9" * 5000 + b"}", "an integer in the body is out of range"),
        (b'{"seq": 18446744073709551616}', "out of range"),
        (b'{"seq": NaN}', "NaN is not a JSON number"),
        (b'{"seq": -Infinity}', "-Infinity is not a JSON number"),
        (b'{"m": "\xff' + MARKER.encode() + b'"}', "not UTF-8 (an invalid byte at offset 7)"),
        ('{"m": "x"}'.encode("utf-16"), "not UTF-8"),
        (b'{"m": "\\ud800' + MARKER.encode() + b'"}', "lone surrogate"),
        (b'{"\\udfff": 1}', "lone surrogate"),
        (b'{"m": "\\q' + MARKER.encode() + b'"}', "not JSON: Invalid \\escape at line 1"),
        (MARKER.encode(), "not JSON: Expecting value at line 1 column 1"),
        (b'{"m": 1} ' + MARKER.encode(), "not JSON: Extra data"),
        (json.dumps([MARKER]).encode(), "must be a JSON object, not a list"),
        (json.dumps(MARKER).encode(), "must be a JSON object, not a text"),
        (b"null", "must be a JSON object, not null"),
    ],
)
def test_hostile_bodies_are_refused_naming_what_is_wrong(body: bytes, says: str) -> None:
    with pytest.raises(HTTPProblem) as caught:
        parse_json_object(body)
    assert (caught.value.status, caught.value.code) == (400, "invalid-json")
    assert says in str(caught.value)
    assert MARKER not in str(caught.value)


def test_the_deepest_body_allowed_is_read() -> None:
    depth = MAX_JSON_DEPTH - 1
    body = b'{"a": ' + b"[" * depth + b"]" * depth + b"}"
    assert parse_json_object(body)["a"] is not None


def test_errors_quote_short_identifiers_only() -> None:
    assert shown("databse") == "'databse'"
    assert shown("x" * 65) == "a text of 65 characters"
    assert shown("a\nb") == "a text of 3 characters"
    assert shown([MARKER]) == "a list"
    assert shown({"m": MARKER}) == "an object"
    with pytest.raises(UsageError) as caught:
        parse_request_id(MARKER)
    assert MARKER not in str(caught.value)
    with pytest.raises(UsageError) as caught:
        masks_from_json({"身份证号": {"rule": [MARKER]}})
    assert "masks.身份证号.rule" in str(caught.value)
    with pytest.raises(UsageError) as caught:
        node_name("bad..name", "provider")
    assert str(caught.value).startswith("provider: is not a node name")
