"""Field codecs and the shared message codec of every ``sub.*`` message (pure).

One check serves construction and decoding: a value that exists encodes and
decodes back to itself, and a field that fails names itself
(``sub.decision.items[2]``) as a ``MalformedError`` on the wire and a
``UsageError`` when built locally.  A message body is
``[version=1, field, ...]`` in field order, canonical (SPEC §4.2).

A message declares each field once, with its wire codec in its type
(``request_id: RequestId``, ``Annotated[bytes, ID]``); :func:`wire_message`
reads the field table from the dataclass, and :class:`Message` encodes and
decodes over it, so no message has a codec of its own.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import fields
from typing import Annotated, Any, ClassVar, NamedTuple, Self, TypeVar, get_type_hints

from exchnode.catalog import check_code
from exchnode.core import check_bytes, check_name, check_time, pack, require_canonical, unpack
from exchnode.errors import MalformedError, UnsupportedVersionError, UsageError
from exchnode.sharing._masking import MaskSet, check_item_name
from exchnode.sharing._states import RequestState, ReviewOutcome

__all__ = [
    "CODE",
    "CONTENT_TYPE",
    "COUNTER",
    "ID",
    "MAX_BODY",
    "MAX_CODE",
    "MAX_COUNTER",
    "MAX_ITEMS",
    "MAX_TEXT",
    "MESSAGE_VERSION",
    "NAME",
    "OPTIONAL_TIME",
    "REQUEST_ID_LENGTH",
    "TIME",
    "Code",
    "Codec",
    "Counter",
    "Items",
    "Masks",
    "Message",
    "Name",
    "OptionalTime",
    "RequestId",
    "RequiredText",
    "SomeItems",
    "Text",
    "Time",
    "counter",
    "enum_codec",
    "items_codec",
    "text_codec",
    "wire_message",
]

CONTENT_TYPE = "application/vnd.exchnode.subscription+msgpack"
MESSAGE_VERSION = 1
REQUEST_ID_LENGTH = 16
MAX_ITEMS = 1024
MAX_TEXT = 2048
MAX_CODE = 128
MAX_BODY = 256 * 1024
MAX_COUNTER = 2**63 - 1


class Codec(NamedTuple):
    check: Callable[[object, str], Any]  # wire value -> Python value, or MalformedError
    out: Callable[[Any], Any]  # Python value -> wire value


def _same(value: Any) -> Any:
    return value


def text_codec(limit: int, *, empty: bool) -> Codec:
    def check(value: object, what: str) -> str:
        if type(value) is not str or len(value) > limit or (not empty and not value):
            least = 0 if empty else 1
            raise MalformedError(what, f"must be a text of {least}..{limit} characters")
        return value

    return Codec(check, _same)


def counter(value: object, what: str) -> int:
    if type(value) is not int or not 0 <= value <= MAX_COUNTER:
        raise MalformedError(what, "must be a non-negative integer")
    return value


def _optional_time(value: object, what: str) -> int | None:
    return None if value is None else check_time(value, what)


def _resource_code(value: object, what: str) -> str:
    # The catalog's own rule (§18.2): <classification code>/<sequence number>.
    return check_code(value, what)


def items_codec(*, empty: bool) -> Codec:
    def check(value: object, what: str) -> tuple[str, ...]:
        least = 0 if empty else 1
        if type(value) is not list or not least <= len(value) <= MAX_ITEMS:
            raise MalformedError(what, f"must be an array of {least}..{MAX_ITEMS} data items")
        names = tuple(check_item_name(v, f"{what}[{i}]") for i, v in enumerate(value))
        if list(names) != sorted(set(names)):
            raise MalformedError(what, "data items must be unique and sorted")
        return names

    return Codec(check, sorted)


def enum_codec(kind: type[enum.Enum], allowed: Iterable[Any]) -> Codec:
    values = {member.value: member for member in allowed}

    def check(value: object, what: str) -> Any:
        if type(value) is not str or value not in values:
            raise MalformedError(what, f"must be one of {sorted(values)}")
        return values[value]

    return Codec(check, lambda member: member.value)


_S = RequestState
ID = Codec(lambda value, what: check_bytes(value, what, REQUEST_ID_LENGTH), _same)
NAME = Codec(check_name, _same)
TIME = Codec(check_time, _same)
OPTIONAL_TIME = Codec(_optional_time, _same)
COUNTER = Codec(counter, _same)
CODE = Codec(_resource_code, _same)
TEXT = text_codec(MAX_TEXT, empty=True)
REQUIRED_TEXT = text_codec(MAX_TEXT, empty=False)
MASKS = Codec(MaskSet.from_wire, MaskSet.to_wire)
DECISION_STATUS = enum_codec(RequestState, (_S.PENDING, _S.GRANTED, _S.REFUSED, _S.NOT_SHARED))
GROUNDS = enum_codec(RequestState, (_S.REFUSED, _S.EXPIRED))
OUTCOME = enum_codec(ReviewOutcome, ReviewOutcome)

# A field's type names its wire codec: what ``wire_message`` reads.
RequestId = Annotated[bytes, ID]
Name = Annotated[str, NAME]
Code = Annotated[str, CODE]
Time = Annotated[int, TIME]
OptionalTime = Annotated[int | None, OPTIONAL_TIME]
Counter = Annotated[int, COUNTER]
Text = Annotated[str, TEXT]  # may be empty
RequiredText = Annotated[str, REQUIRED_TEXT]
Masks = Annotated[MaskSet, MASKS]
Items = Annotated[tuple[str, ...], items_codec(empty=True)]
SomeItems = Annotated[tuple[str, ...], items_codec(empty=False)]  # at least one


class Message:
    """Shared codec of the ``sub.*`` messages: ``[version=1, field, ...]`` in field order."""

    __slots__ = ()
    KIND: ClassVar[str]
    CODECS: ClassVar[Mapping[str, Codec]]
    MAX_BODY: ClassVar[int] = MAX_BODY
    MAX_ARRAY: ClassVar[int] = MAX_ITEMS + 1

    def __post_init__(self) -> None:
        # Construction runs the decoder's checks, so a value that exists encodes and
        # decodes back to itself; normalised forms (sorted items) are stored.
        for name, codec in self.CODECS.items():
            try:
                value = codec.check(codec.out(getattr(self, name)), f"{self.KIND}.{name}")
            except MalformedError as exc:
                raise UsageError(str(exc)) from None
            object.__setattr__(self, name, value)
        problem = self._inconsistency()
        if problem is not None:
            raise UsageError(f"{self.KIND}: {problem}")

    def _inconsistency(self) -> str | None:
        return None

    def to_wire(self) -> list[Any]:
        values = [codec.out(getattr(self, name)) for name, codec in self.CODECS.items()]
        return [MESSAGE_VERSION, *values]

    def encode(self) -> bytes:
        data = pack(self.to_wire())
        if len(data) > self.MAX_BODY:
            raise UsageError(f"{self.KIND}: {len(data)} bytes exceeds the limit of {self.MAX_BODY}")
        return data

    @classmethod
    def decode(cls, data: bytes) -> Self:
        """Parse and check every field; a ``RejectedError`` names the field."""
        what = cls.KIND
        value = unpack(data, what=what, max_size=cls.MAX_BODY, max_array=cls.MAX_ARRAY)
        message = cls.from_wire(value, what)
        require_canonical(value, data, what=what)
        return message

    @classmethod
    def from_wire(cls, value: object, what: str) -> Self:
        """The message of an already-unpacked structure (no canonical check)."""
        count = len(cls.CODECS) + 1
        if type(value) is not list or len(value) != count:
            raise MalformedError(what, f"expected an array of {count} elements")
        if type(value[0]) is not int:
            raise MalformedError(f"{what}.version", "must be an integer")
        if value[0] != MESSAGE_VERSION:
            raise UnsupportedVersionError(f"{what} version {value[0]} is not supported (only 1)")
        checked = {
            name: codec.check(item, f"{what}.{name}")
            for (name, codec), item in zip(cls.CODECS.items(), value[1:], strict=True)
        }
        message = cls.__new__(cls)
        for name, item in checked.items():
            object.__setattr__(message, name, item)
        problem = message._inconsistency()
        if problem is not None:
            raise MalformedError(what, problem)
        return message


M = TypeVar("M", bound=type[Message])


def wire_message(cls: M) -> M:
    """Attach a message class's field table: each dataclass field, in order, with the codec
    its type names (``Annotated[type, codec]``); a field without one is a bug."""
    hints = get_type_hints(cls, include_extras=True)
    codecs: dict[str, Codec] = {}
    for item in fields(cls):  # type: ignore[arg-type]
        found = [m for m in getattr(hints[item.name], "__metadata__", ()) if type(m) is Codec]
        if len(found) != 1:
            raise AssertionError(f"{cls.__name__}.{item.name}: no wire codec in its type")
        codecs[item.name] = found[0]
    cls.CODECS = codecs
    return cls
