"""Persisted state of the subscription machines: the shared pieces of encode and restore (pure).

Every machine (``SubscriptionBook``, ``SubscriberView``, ``AuthorityDesk``,
``CorrectionDesk``, ``RecordStream``, ``GapTracker``) writes what it needs to
continue after a restart as one canonical msgpack array (SPEC §4):
``[format, field, ...]``, format 1 for all of them today.  Containers keep the
machine's own order (insertion order of its tables), so restoring and
encoding again gives the same bytes, and the restored machine answers every
later call as the original would.

What is *not* stored is what the owner passes in at construction: the event
sink, the random source, the catalog lookup, the calendar, answer days,
window sizes, and above all the provider's masking secret (a grant's hash
key is derived from it, so storing it beside the table would put key
material in every backup of the table).

**Rows.**  A node does not rewrite a machine whole per change: each machine
also keeps its state as *rows* (one per request, grant, case, stream
counter, window item) and remembers which rows its steps changed.
``take_changes()`` returns those rows by name (``bytes`` to write, ``None``
to delete) and forgets them; ``rows()`` returns every row (to convert a
whole value once); ``load_rows()`` fills a new machine from the rows read
back.  A row is ``[ROW_FORMAT, field, ...]`` in the same canonical msgpack
as the whole encoding, with the fields of that item's whole form, so both
forms restore to the same machine.  Row names are the machine's own
(``entry/<request id hex>``); the owner puts them under its prefix.

Restoring emits no audit events: the events of the steps that built the
state were emitted when they happened.  A damaged or foreign encoding
raises ``MalformedError`` (or ``UnsupportedVersionError`` for another
format) naming the field by path, e.g. ``subscription-book.entries[3].grant``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from exchnode.catalog import ShareType
from exchnode.core import check_name, check_time, framed_fields, pack, require_canonical, unpack
from exchnode.errors import MalformedError
from exchnode.sharing._codecs import CODE, MAX_TEXT, counter, items_codec, text_codec
from exchnode.sharing._masking import MaskSet, check_item_name

__all__ = [
    "ROW_FORMAT",
    "STATE_FORMAT",
    "Changes",
    "changed_rows",
    "check_enum",
    "check_list",
    "check_terms",
    "encode_row",
    "every_row",
    "load_id_list",
    "load_id_rows",
    "open_row",
    "open_state",
    "optional",
    "row_id",
    "terms_to_wire",
]

STATE_FORMAT = 1
ROW_FORMAT = 1
#: row name -> its encoding, or None for a row that is gone
Changes = dict[str, bytes | None]
MAX_STATE_BYTES = 1 << 30
MAX_STATE_ARRAY = 1 << 24

_E = TypeVar("_E", bound=enum.Enum)
_T = TypeVar("_T")


def open_state(data: bytes, what: str, count: int) -> list[Any]:
    """The fields after the format of a state encoding of ``count`` fields."""
    value: list[Any] = unpack(data, what=what, max_size=MAX_STATE_BYTES, max_array=MAX_STATE_ARRAY)
    framed_fields(value, what, count, STATE_FORMAT)
    return value


def encode_row(*fields: Any) -> bytes:
    return pack([ROW_FORMAT, *fields])


def changed_rows(
    prefix: str, items: Mapping[bytes, _T], dirty: set[bytes], to_wire: Callable[[_T], list[Any]]
) -> Changes:
    """The rows (``<prefix><id hex>``) of the items a machine's steps changed since the last
    call (``dirty``, cleared here): its ``take_changes``."""
    changes: Changes = {prefix + i.hex(): encode_row(*to_wire(items[i])) for i in dirty}
    dirty.clear()
    return changes


def every_row(
    prefix: str, items: Mapping[bytes, _T], to_wire: Callable[[_T], list[Any]]
) -> dict[str, bytes]:
    """Every item's row (``<prefix><id hex>``): a machine's ``rows``."""
    return {prefix + i.hex(): encode_row(*to_wire(item)) for i, item in items.items()}


def open_row(data: bytes, what: str, count: int) -> list[Any]:
    """The ``count`` fields of a row :func:`encode_row` wrote; canonical, or rejected."""
    value = unpack(data, what=what, max_size=MAX_STATE_BYTES, max_array=MAX_STATE_ARRAY)
    if type(value) is not list or len(value) != count + 1 or value[0] != ROW_FORMAT:
        raise MalformedError(what, f"expected a row of format {ROW_FORMAT} and {count} fields")
    require_canonical(value, data, what=what)
    return value[1:]


def row_id(name: str, prefix: str, what: str) -> bytes:
    """The id in a row name ``<prefix><hex>``, or a rejection naming the row."""
    if not name.startswith(prefix):
        raise MalformedError(what, f"row {name!r} is not a {prefix!r} row")
    try:
        return bytes.fromhex(name[len(prefix) :])
    except ValueError:
        raise MalformedError(what, f"row {name!r} does not end in a hex id") from None


def load_id_rows(
    table: dict[bytes, _T],
    rows: Iterable[tuple[str, bytes]],
    prefix: str,
    what: str,
    count: int,
    from_wire: Callable[[list[Any], str], _T],
    id_of: Callable[[_T], bytes | None],
    disagree: str = "row name and request id disagree",
) -> None:
    """Fill ``table`` from rows ``<prefix><id hex>`` of ``count`` fields (a machine's
    ``load_rows``).  ``id_of`` is the id an item names, None for an item that is not the
    machine's; a row whose name it disagrees with is rejected as ``disagree``, at
    ``what[name]``."""
    for name, data in rows:
        at = f"{what}[{name!r}]"
        item_id = row_id(name, prefix, at)
        item = from_wire(open_row(data, at, count), at)
        if id_of(item) != item_id:
            raise MalformedError(at, disagree)
        table[item_id] = item


def load_id_list(
    table: dict[bytes, _T],
    value: object,
    what: str,
    fields: Callable[[Any, str], list[Any]],
    from_wire: Callable[[list[Any], str], _T],
    id_of: Callable[[_T], bytes],
    repeated: str = "a request id repeated",
) -> None:
    """Fill ``table`` from the array of items of a whole encoding (a machine's ``restore``):
    each checked by ``fields``, then read by ``from_wire`` at ``what[i]``; an id that repeats
    is rejected as ``repeated``."""
    for i, item in enumerate(check_list(value, what, fields)):
        at = f"{what}[{i}]"
        entry = from_wire(item, at)
        if id_of(entry) in table:
            raise MalformedError(at, repeated)
        table[id_of(entry)] = entry


def check_list(value: object, what: str, each: Callable[[Any, str], _T]) -> list[_T]:
    if type(value) is not list:
        raise MalformedError(what, "must be an array")
    return [each(item, f"{what}[{i}]") for i, item in enumerate(value)]


def check_array(value: object, what: str, count: int) -> list[Any]:
    if type(value) is not list or len(value) != count:
        raise MalformedError(what, f"expected an array of {count} elements")
    return value


def optional(check: Callable[[Any, str], _T]) -> Callable[[Any, str], _T | None]:
    def inner(value: object, what: str) -> _T | None:
        return None if value is None else check(value, what)

    return inner


def check_enum(kind: type[_E]) -> Callable[[Any, str], _E]:
    values = {member.value: member for member in kind}

    def inner(value: object, what: str) -> _E:
        if type(value) is not str or value not in values:
            raise MalformedError(what, f"must be one of {sorted(values)}")
        return values[value]

    return inner


def check_bool(value: object, what: str) -> bool:
    if type(value) is not bool:
        raise MalformedError(what, "must be a boolean")
    return value


check_counter = counter
check_time_ms = check_time
check_node = check_name
check_code = CODE.check
check_masks = MaskSet.from_wire
check_items = items_codec(empty=True).check
check_text = text_codec(MAX_TEXT, empty=True).check
check_item = check_item_name
_SHARE_TYPE = check_enum(ShareType)
_CONDITIONS = text_codec(1 << 16, empty=True).check


def terms_to_wire(terms: Any) -> list[Any]:
    return [
        terms.code,
        terms.provider,
        terms.share_type.value,
        terms.conditions,
        sorted(terms.items),
    ]


def check_terms(value: object, what: str) -> tuple[str, str, ShareType, str, frozenset[str]]:
    code, provider, share_type, conditions, items = check_array(value, what, 5)
    return (
        check_code(code, f"{what}.code"),
        check_name(provider, f"{what}.provider"),
        _SHARE_TYPE(share_type, f"{what}.share_type"),
        _CONDITIONS(conditions, f"{what}.conditions"),
        frozenset(check_items(items, f"{what}.items")),
    )
