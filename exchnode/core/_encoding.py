"""The canonical msgpack subset every exchnode structure is written in (SPEC §4).

Structures are msgpack *arrays* with a fixed field order: no maps (their key
order would need canonicalising), no floats, no extension types, strings for
names and text, ``bin`` for bytes, and each value in its shortest form -- which
is exactly what ``msgpack.packb`` produces.  A decoder accepts an encoding
only if re-encoding what it decoded gives back the same bytes, so every value
has one encoding and a digest of the bytes is a digest of the value.

Hostile input is bounded before it is parsed: the unpacker is given the
maximum lengths of every kind of container, so a 5-byte header claiming a
4 GiB string fails at once instead of allocating.  Every failure surfaces as
:class:`~exchnode.errors.MalformedError` naming the structure.
"""

from __future__ import annotations

from typing import Any

import msgpack

from exchnode.errors import MalformedError, TooLargeError, UnsupportedVersionError

__all__ = ["array_head", "framed_fields", "pack", "unpack"]

# One shared packer: ``msgpack.packb`` builds a new Packer per call, which
# costs more than packing a small structure.  Sharing is safe: ``pack`` runs
# in C without releasing the GIL and resets its buffer before returning.
_pack = msgpack.Packer(use_bin_type=True).pack


def pack(value: Any) -> bytes:
    return _pack(value)  # type: ignore[no-any-return]


def unpack(
    data: bytes,
    *,
    what: str,
    max_size: int,
    max_array: int = 64,
    long_array: type[MalformedError] = MalformedError,
) -> Any:
    """Decode one msgpack value of at most ``max_size`` bytes, or raise ``MalformedError``.

    ``max_array`` bounds every array; byte and string lengths are bounded by
    ``max_size`` itself, which is what makes the limits cheap and total.  An
    array longer than ``max_array`` raises ``long_array``: ``TooLargeError``
    where that bound is one of the protocol's limits (SPEC §4.3, the
    recipients of an envelope), ``MalformedError`` where it only guards a
    structure whose shape the schema fixes anyway.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedError(what, f"expected bytes, got {type(data).__name__}")
    if len(data) > max_size:
        raise TooLargeError(what, f"{len(data)} bytes exceeds the limit of {max_size}")
    try:
        # Since msgpack 1.0, strings and bins are bounded by the input length
        # (itself bounded above), and raw=False, strict_map_key=True are the
        # defaults; only the structural limits need stating.
        return msgpack.unpackb(data, max_array_len=max_array, max_map_len=0, max_ext_len=0)
    except msgpack.ExtraData as exc:
        raise MalformedError(what, "trailing bytes after the value") from exc
    except ValueError as exc:
        if _LONG_ARRAY in str(exc):
            raise long_array(what, f"an array exceeds the limit of {max_array} elements") from None
        # ValueError covers truncation (OutOfData), invalid UTF-8, exceeded
        # limits and nesting beyond the unpacker's stack (StackError).
        raise MalformedError(what, f"not valid msgpack ({type(exc).__name__}: {exc})") from exc
    except msgpack.UnpackException as exc:
        raise MalformedError(what, f"not valid msgpack ({type(exc).__name__}: {exc})") from exc


# msgpack reports an array over ``max_array_len`` as "N exceeds max_array_len(M)";
# tests/unit/core/test_envelope.py pins that this still becomes ``too-large``.
_LONG_ARRAY = "exceeds max_array_len"
_NOT_AN_INTEGER = object()


def array_head(data: bytes) -> tuple[int, object] | None:
    """The element count of the array ``data`` starts with, and its first element if an integer.

    Reads at most 14 bytes and allocates nothing, so a decoder can act on a
    version or suite number before it parses -- or bounds -- anything else
    (SPEC §5.1, §5.2: a format or suite it does not know may lay the rest out
    differently).  None if ``data`` does not start with an array header; the
    first element is returned as ``None`` if the array is empty, and as an
    object that is not an ``int`` if that element is not an integer.  Any
    integer encoding is read, canonical or not: canonical form is checked
    with the whole structure, after.
    """
    if not data:
        return None
    lead = data[0]
    if 0x90 <= lead <= 0x9F:
        count, at = lead & 0x0F, 1
    elif lead == 0xDC and len(data) >= 3:
        count, at = int.from_bytes(data[1:3], "big"), 3
    elif lead == 0xDD and len(data) >= 5:
        count, at = int.from_bytes(data[1:5], "big"), 5
    else:
        return None
    if count == 0 or at >= len(data):
        return count, None
    first = data[at]
    if first <= 0x7F:
        return count, first
    if first >= 0xE0:
        return count, first - 0x100
    width = _INT_WIDTHS.get(first)
    if width is None or len(data) < at + 1 + width[0]:
        return count, _NOT_AN_INTEGER
    size, signed = width
    return count, int.from_bytes(data[at + 1 : at + 1 + size], "big", signed=signed)


# msgpack's integer formats beyond the fixints: lead byte -> (bytes that follow, signed)
_INT_WIDTHS = {
    0xCC: (1, False),
    0xCD: (2, False),
    0xCE: (4, False),
    0xCF: (8, False),
    0xD0: (1, True),
    0xD1: (2, True),
    0xD2: (4, True),
    0xD3: (8, True),
}


def require_canonical(value: Any, data: bytes, *, what: str) -> None:
    """Refuse a decodable but non-canonical encoding (SPEC §4.2)."""
    if pack(value) != data:
        raise MalformedError(what, "encoding is not canonical")


def framed_fields(value: object, what: str, fields: int, version: int) -> list[Any]:
    """The ``fields`` fields of a decoded ``[format, field, ...]`` structure whose one format
    the caller reads is ``version``: its shape checked first, then the format's type, then
    its value."""
    if type(value) is not list or len(value) != fields + 1:
        raise MalformedError(what, f"expected an array of {fields + 1} elements")
    if type(value[0]) is not int:
        raise MalformedError(f"{what}.format", "must be an integer")
    if value[0] != version:
        raise UnsupportedVersionError(f"{what} format {value[0]} is not supported (only {version})")
    return value[1:]
