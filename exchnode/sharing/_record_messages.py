"""Records on the wire: ``sub.records``, ``sub.resend`` and ``sub.gap`` (pure, draft §19.6).

Theory of operation
-------------------
A provider pushes the records of a resource in ``sub.records`` bodies::

    records = [version=1, provider: str, resource_code: str, terms: bin(16),
               records: [[seq: uint(1..), [[item: str, value], ...]], ...]]

The body names no subscriber, no request id and no grant version, on
purpose: one body may go to several subscribers in one multi-recipient
envelope (``record_streams.group_deliveries``), and what it carries must be
what every recipient may see.  ``terms`` is :func:`terms_fingerprint` of the
grant's items and masks, which every recipient of that body holds
identically; a subscriber finds its grant(s) by provider (the envelope's
authenticated sender), resource code and terms, and checks each ``seq``
against the grant's coverage.

A record is sorted ``[item, value]`` pairs rather than a map: the canonical
subset has no maps (SPEC §4.1), and sorted pairs have one encoding.  Values
are a data item's own (the catalog's types C/N/L/F/B ...): text, integer,
float64, boolean, bytes or nil.  They are the one place where the draft
admits msgpack nil, booleans and floats; each has exactly one msgpack form
(floats always float64), so the canonical check still holds.

``sub.resend`` (subscriber → provider) asks for ``from_seq..to_seq`` again
under one grant after a gap; the provider answers from its window of recent
records (``record_streams.RecordStream``) with ``sub.records`` and, for what
fell out of the window, ``sub.gap``: that range is unrecoverable
(``gap-unrecoverable``), and the subscriber stops asking for it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from exchnode.core import pack
from exchnode.errors import MalformedError
from exchnode.sharing._codecs import (
    COUNTER,
    MAX_COUNTER,
    MAX_ITEMS,
    Code,
    Codec,
    Counter,
    Message,
    Name,
    RequestId,
    wire_message,
)
from exchnode.sharing._masking import MaskSet, Value, check_item_name

__all__ = [
    "FINGERPRINT_LENGTH",
    "MAX_RECORDS",
    "MAX_RECORDS_BODY",
    "MAX_RESEND",
    "RecordBatch",
    "RecordFields",
    "RecordGap",
    "Resend",
    "check_fields",
    "terms_fingerprint",
]

FINGERPRINT_LENGTH = 16
MAX_RECORDS = 1024  # records in one sub.records body
MAX_RECORDS_BODY = 1 << 20  # bytes of one sub.records body
MAX_RESEND = 1 << 16  # numbers asked for in one sub.resend
_FINGERPRINT_LABEL = b"exchnode/1 grant terms\x00"
_MIN_INT = -(2**63)
_MAX_UINT = 2**64 - 1

RecordFields = Mapping[str, Value]


def terms_fingerprint(items: Iterable[str], masks: MaskSet) -> bytes:
    """What a grant lets out (items and masks), as 16 bytes; no party and no request id in it."""
    digest = hashlib.sha256(_FINGERPRINT_LABEL + pack([sorted(items), masks.to_wire()]))
    return digest.digest()[:FINGERPRINT_LENGTH]


def _check_value(value: object, what: str) -> Value:
    kind = type(value)
    if kind is int and not _MIN_INT <= value <= _MAX_UINT:  # type: ignore[operator]
        raise MalformedError(what, "an integer value must fit 64 bits")
    if kind not in (str, int, float, bool, bytes, type(None)):
        raise MalformedError(what, "a value is text, integer, float, boolean, bytes or nil")
    return value  # type: ignore[return-value]


def check_fields(value: object, what: str) -> dict[str, Value]:
    """A record's ``[[item, value], ...]``, sorted and unique by item, as a dict."""
    if type(value) is not list or len(value) > MAX_ITEMS:
        raise MalformedError(what, f"must be an array of at most {MAX_ITEMS} [item, value] pairs")
    out: dict[str, Value] = {}
    previous = ""
    for i, pair in enumerate(value):
        if type(pair) is not list or len(pair) != 2:
            raise MalformedError(f"{what}[{i}]", "expected [item, value]")
        item = check_item_name(pair[0], f"{what}[{i}].item")
        if i and item <= previous:
            raise MalformedError(f"{what}[{i}].item", "data items must be unique and sorted")
        out[item] = _check_value(pair[1], f"{what}[{i}].value")
        previous = item
    return out


def fields_to_wire(fields: RecordFields) -> list[list[Any]]:
    return [[item, fields[item]] for item in sorted(fields)]


def _check_records(value: object, what: str) -> tuple[tuple[int, dict[str, Value]], ...]:
    if type(value) is not list or not 1 <= len(value) <= MAX_RECORDS:
        raise MalformedError(what, f"must be an array of 1..{MAX_RECORDS} records")
    out = []
    previous = 0
    for i, entry in enumerate(value):
        if type(entry) is not list or len(entry) != 2:
            raise MalformedError(f"{what}[{i}]", "expected [seq, [[item, value], ...]]")
        seq = COUNTER.check(entry[0], f"{what}[{i}].seq")
        if seq <= previous:
            raise MalformedError(f"{what}[{i}].seq", "sequence numbers start at 1 and increase")
        out.append((seq, check_fields(entry[1], f"{what}[{i}].fields")))
        previous = seq
    return tuple(out)


def _records_out(records: Iterable[tuple[int, RecordFields]]) -> list[list[Any]]:
    return [[seq, fields_to_wire(fields)] for seq, fields in records]


def _check_fingerprint(value: object, what: str) -> bytes:
    if type(value) is not bytes or len(value) != FINGERPRINT_LENGTH:
        raise MalformedError(what, f"must be {FINGERPRINT_LENGTH} bytes")
    return value


FINGERPRINT = Codec(_check_fingerprint, lambda value: value)
RECORDS = Codec(_check_records, _records_out)


@wire_message
@dataclass(frozen=True, slots=True, kw_only=True)
class RecordBatch(Message):
    """``sub.records``, provider → subscribers: numbered records under one set of terms."""

    KIND: ClassVar[str] = "sub.records"
    MAX_BODY: ClassVar[int] = MAX_RECORDS_BODY
    provider: Name
    resource_code: Code
    terms: Annotated[bytes, FINGERPRINT]
    records: Annotated[tuple[tuple[int, RecordFields], ...], RECORDS]


@wire_message
@dataclass(frozen=True, slots=True, kw_only=True)
class Resend(Message):
    """``sub.resend``, subscriber → provider: send ``from_seq..to_seq`` again under this grant."""

    KIND: ClassVar[str] = "sub.resend"
    request_id: RequestId
    subscriber: Name
    provider: Name
    resource_code: Code
    from_seq: Counter
    to_seq: Counter

    def _inconsistency(self) -> str | None:
        return _range_problem(self.from_seq, self.to_seq)


@wire_message
@dataclass(frozen=True, slots=True, kw_only=True)
class RecordGap(Message):
    """``sub.gap``, provider → subscriber: ``from_seq..to_seq`` is gone (gap-unrecoverable)."""

    KIND: ClassVar[str] = "sub.gap"
    request_id: RequestId
    provider: Name
    subscriber: Name
    resource_code: Code
    from_seq: Counter
    to_seq: Counter

    def _inconsistency(self) -> str | None:
        return _range_problem(self.from_seq, self.to_seq)


def _range_problem(first: int, last: int) -> str | None:
    if first < 1 or last < first:
        return "a range is from_seq..to_seq with 1 <= from_seq <= to_seq"
    if last - first >= MAX_RESEND or last > MAX_COUNTER:
        return f"a range holds at most {MAX_RESEND} numbers"
    return None
