"""Declarative shapes for the local API: one value checks a request and describes it in OpenAPI.

Theory of operation
-------------------
The API's requests and answers used to be read by hand-written checks in
each handler, and nothing described them to an integrator.  A *schema* here
is a small frozen value (:class:`Text`, :class:`Integer`, :class:`Number`,
:class:`Boolean`, :class:`Array`, :class:`Object`, :class:`MapOf`,
:class:`OneOf`, :class:`Nullable`, :class:`AnyValue`, :class:`Ref`) with two
faces that cannot drift apart because they are the same object:

* :meth:`Schema.check` takes a decoded JSON value (or, for a query or path
  parameter, its text: :meth:`Schema.parse`) and returns it, or raises
  :class:`~node.forms.FormError` naming the field and the rule it broke,
  in the API's words (``messages[0].ttl: must be a number, got a text``);
* :meth:`Schema.json_schema` is the JSON Schema (draft 2020-12, what
  OpenAPI 3.1 uses) of exactly what :meth:`check` accepts.

``node.operations`` declares every operation of the API with these values
(its parameters, its body, its answer); the operator API checks each
request against its declaration before the handler runs
(``node.operations.validated``), and ``node.openapi`` writes the document
from the same declarations.  The handlers then only convert checked values
into the library's (``node.forms``), whose own rules -- a node name, a
resource code -- still answer 400 naming the field.

Errors quote back at most a short identifier (``node.api.shown``), never a
payload or a long text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .api import json_kind, shown
from .forms import FormError, field_key

__all__ = [
    "AnyValue",
    "Array",
    "Boolean",
    "Integer",
    "MapOf",
    "Nullable",
    "Number",
    "Object",
    "OneOf",
    "Ref",
    "Schema",
    "Text",
]

_TRUE = frozenset({"1", "true", "yes"})
_FALSE = frozenset({"0", "false", "no", ""})


def _join(field_name: str, name: str) -> str:
    return f"{field_name}.{name}" if field_name else name


@dataclass(frozen=True, kw_only=True)
class Schema:
    """A JSON value's shape.  Subclasses define :meth:`_check` and :meth:`_schema`."""

    description: str = ""
    example: Any = None  # a valid value, for the document (and schemathesis' explicit phase)

    def check(self, value: object, where: str) -> Any:
        """``value`` if it has this shape; FormError naming ``where`` otherwise."""
        return self._check(value, where)

    def parse(self, text: str, where: str) -> Any:
        """A query or path parameter's text as this shape's value (a text by default)."""
        return self.check(text, where)

    def json_schema(self) -> dict[str, Any]:
        out = self._schema()
        if self.description:
            out["description"] = self.description
        if self.example is not None:
            out["examples"] = [self.example]
        return out

    def _check(self, value: object, where: str) -> Any:
        raise NotImplementedError

    def _schema(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class AnyValue(Schema):
    """Any JSON value (the body reader has already bounded depth, numbers and texts)."""

    def _check(self, value: object, where: str) -> Any:
        return value

    def _schema(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True, kw_only=True)
class Text(Schema):
    """A text: lengths in characters, an optional set of values or pattern (whole match)."""

    min_length: int = 0
    max_length: int | None = None
    enum: tuple[str, ...] | None = None
    pattern: str | None = None
    pattern_rule: str = ""  # the pattern in words, for the error
    printable: bool = False  # no control characters
    format: str | None = None
    quoted: bool = True  # False: an error never shows the value (a client's key)

    def _check(self, value: object, where: str) -> Any:
        if not isinstance(value, str):
            raise FormError(where, f"must be a text, got {shown(value)}")
        if self.enum is not None and value not in self.enum:
            raise FormError(where, f"must be one of {', '.join(self.enum)}, got {shown(value)}")
        if len(value) < self.min_length:
            raise FormError(
                where,
                "must not be empty"
                if self.min_length == 1
                else f"must have at least {self.min_length} characters",
            )
        if self.max_length is not None and len(value) > self.max_length:
            raise FormError(where, f"must have at most {self.max_length} characters")
        if self.printable and any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in value):
            raise FormError(where, "must not contain control characters")
        if self.pattern is not None and re.fullmatch(self.pattern, value) is None:
            rule = self.pattern_rule or "well formed"
            if self.quoted:
                raise FormError(where, f"{shown(value)} is not {rule}")
            raise FormError(where, f"must be {rule}")
        return value

    def _schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "string"}
        if self.enum is not None:
            out["enum"] = list(self.enum)
        if self.min_length:
            out["minLength"] = self.min_length
        if self.max_length is not None:
            out["maxLength"] = self.max_length
        if self.pattern is not None:
            out["pattern"] = f"^(?:{self.pattern})$"
        elif self.printable:
            out["pattern"] = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
        if self.format is not None:
            out["format"] = self.format
        return out


@dataclass(frozen=True, kw_only=True)
class Integer(Schema):
    """An integer (JSON number without a fraction; true/false are not integers)."""

    minimum: int | None = None
    maximum: int | None = None

    def _check(self, value: object, where: str) -> Any:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise FormError(where, f"must be an integer, got {shown(value)}")
        _within(where, value, self.minimum, self.maximum)
        return value

    def parse(self, text: str, where: str) -> Any:
        try:
            value = int(text) if len(text) <= 24 else None
        except ValueError:
            value = None
        if value is None:
            raise FormError(where, f"must be an integer, got {shown(text)}")
        return self.check(value, where)

    def _schema(self) -> dict[str, Any]:
        return _bounds({"type": "integer"}, self.minimum, self.maximum)


@dataclass(frozen=True, kw_only=True)
class Number(Schema):
    """A finite number."""

    minimum: float | None = None
    maximum: float | None = None

    def _check(self, value: object, where: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise FormError(where, f"must be a number, got {shown(value)}")
        if not math.isfinite(value):
            raise FormError(where, "must be a finite number")
        _within(where, value, self.minimum, self.maximum)
        return value

    def parse(self, text: str, where: str) -> Any:
        try:
            value = float(text) if len(text) <= 64 else None
        except ValueError:
            value = None
        if value is None or not math.isfinite(value):
            raise FormError(where, f"must be a number, got {shown(text)}")
        return self.check(value, where)

    def _schema(self) -> dict[str, Any]:
        return _bounds({"type": "number"}, self.minimum, self.maximum)


def _within(where: str, value: float, low: float | None, high: float | None) -> None:
    if (low is not None and value < low) or (high is not None and value > high):
        lowest = "" if low is None else f"{low:g}"
        highest = "" if high is None else f"{high:g}"
        if low is not None and high is not None:
            raise FormError(where, f"must be between {lowest} and {highest}, got {value:g}")
        if low is not None:
            raise FormError(where, f"must be at least {lowest}, got {value:g}")
        raise FormError(where, f"must be at most {highest}, got {value:g}")


def _bounds(out: dict[str, Any], low: float | None, high: float | None) -> dict[str, Any]:
    if low is not None:
        out["minimum"] = low
    if high is not None:
        out["maximum"] = high
    return out


@dataclass(frozen=True, kw_only=True)
class Boolean(Schema):
    """true or false; as a query parameter also 1/0 and yes/no."""

    def _check(self, value: object, where: str) -> Any:
        if not isinstance(value, bool):
            raise FormError(where, f"must be true or false, got {shown(value)}")
        return value

    def parse(self, text: str, where: str) -> Any:
        lowered = text.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise FormError(where, f"must be 0 or 1, got {shown(text)}")

    def _schema(self) -> dict[str, Any]:
        return {"type": "boolean"}


@dataclass(frozen=True, kw_only=True)
class Array(Schema):
    items: Schema = field(default_factory=AnyValue)
    min_items: int = 0
    max_items: int | None = None

    def _check(self, value: object, where: str) -> Any:
        if not isinstance(value, list):
            raise FormError(where, f"must be a list, got {json_kind(value)}")
        if len(value) < self.min_items:
            raise FormError(
                where,
                "must not be empty"
                if self.min_items == 1
                else f"must have at least {self.min_items} items",
            )
        if self.max_items is not None and len(value) > self.max_items:
            raise FormError(where, f"must have at most {self.max_items} items")
        return [self.items.check(item, f"{where}[{i}]") for i, item in enumerate(value)]

    def _schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "array", "items": self.items.json_schema()}
        if self.min_items:
            out["minItems"] = self.min_items
        if self.max_items is not None:
            out["maxItems"] = self.max_items
        return out


@dataclass(frozen=True, kw_only=True)
class Object(Schema):
    """A JSON object with named properties.

    ``closed``: an unknown property is refused (misspelt?), else ignored.
    ``missing``: the whole error for a required property that is absent, where
    the API says more than "is required" (``"name the person acting: ..."``).
    ``path``: the name errors inside give this object, where the API has one
    of its own (a catalog entry is ``catalog`` wherever it sits).
    """

    properties: Mapping[str, Schema] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    closed: bool = False
    missing: Mapping[str, str] = field(default_factory=dict)
    path: str | None = None

    def _check(self, value: object, where: str) -> Any:
        if self.path is not None:
            where = self.path if "[" not in where else f"{where}.{self.path}"
        if not isinstance(value, dict):
            raise FormError(where or "body", f"must be an object, got {json_kind(value)}")
        if self.closed:
            for key in value:
                if key not in self.properties:
                    raise FormError(_join(where, field_key(key)), "unknown field (misspelt?)")
        for name in self.required:
            if value.get(name) is None:
                if name in self.missing:
                    raise _Whole(self.missing[name])
                raise FormError(_join(where, name), "is required")
        out = dict(value)
        for name, schema in self.properties.items():
            if name in value and not (value[name] is None and name not in self.required):
                out[name] = schema.check(value[name], _join(where, name))
        return out

    def _schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "object",
            "properties": {
                # an optional property given as null is taken as absent (clients send None)
                name: schema.json_schema()
                if name in self.required or isinstance(schema, Nullable | AnyValue)
                else Nullable(inner=schema).json_schema()
                for name, schema in self.properties.items()
            },
        }
        if self.required:
            out["required"] = list(self.required)
        if self.closed:
            out["additionalProperties"] = False
        return out


class _Whole(FormError):
    """A FormError whose message is given whole (no ``field:`` prefix)."""

    def __init__(self, message: str) -> None:
        Exception.__init__(self, message)
        self.field = ""


@dataclass(frozen=True, kw_only=True)
class MapOf(Schema):
    """An object of key -> value, every value the same shape (masks, a record's items)."""

    values: Schema = field(default_factory=AnyValue)
    min_properties: int = 0

    def _check(self, value: object, where: str) -> Any:
        if not isinstance(value, dict):
            raise FormError(where, f"must be an object, got {json_kind(value)}")
        if len(value) < self.min_properties:
            raise FormError(where, "must not be empty")
        return {
            key: self.values.check(item, _join(where, field_key(key)))
            for key, item in value.items()
        }

    def _schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "object", "additionalProperties": self.values.json_schema()}
        if self.min_properties:
            out["minProperties"] = self.min_properties
        return out


@dataclass(frozen=True, kw_only=True)
class Nullable(Schema):
    """``inner`` or null."""

    inner: Schema = field(default_factory=AnyValue)

    def _check(self, value: object, where: str) -> Any:
        return None if value is None else self.inner.check(value, where)

    def _schema(self) -> dict[str, Any]:
        return {"anyOf": [self.inner.json_schema(), {"type": "null"}]}


@dataclass(frozen=True, kw_only=True)
class OneOf(Schema):
    """The first of ``choices`` the value fits; ``rule`` says what is expected, for the error."""

    choices: tuple[Schema, ...] = ()
    rule: str = "a value of another kind"

    def _check(self, value: object, where: str) -> Any:
        for choice in self.choices:
            try:
                return choice.check(value, where)
            except FormError:
                continue
        raise FormError(where, f"must be {self.rule}")

    def _schema(self) -> dict[str, Any]:
        return {"anyOf": [choice.json_schema() for choice in self.choices]}


@dataclass(frozen=True, kw_only=True)
class Ref(Schema):
    """A named schema: checked as ``target``, written once under ``components/schemas``."""

    name: str
    target: Schema

    def _check(self, value: object, where: str) -> Any:
        return self.target.check(value, where)

    def parse(self, text: str, where: str) -> Any:
        return self.target.parse(text, where)

    def _schema(self) -> dict[str, Any]:
        return {"$ref": f"#/components/schemas/{self.name}"}
