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

from exchnode.errors import MalformedError, TooLargeError

__all__ = ["pack", "unpack"]

# One shared packer: ``msgpack.packb`` builds a new Packer per call, which
# costs more than packing a small structure.  Sharing is safe: ``pack`` runs
# in C without releasing the GIL and resets its buffer before returning.
_pack = msgpack.Packer(use_bin_type=True).pack


def pack(value: Any) -> bytes:
    return _pack(value)  # type: ignore[no-any-return]


def unpack(data: bytes, *, what: str, max_size: int, max_array: int = 64) -> Any:
    """Decode one msgpack value of at most ``max_size`` bytes, or raise ``MalformedError``.

    ``max_array`` bounds every array; byte and string lengths are bounded by
    ``max_size`` itself, which is what makes the limits cheap and total.
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
    except (ValueError, msgpack.UnpackException) as exc:
        # ValueError covers truncation (OutOfData), invalid UTF-8, exceeded
        # limits and nesting beyond the unpacker's stack (StackError).
        raise MalformedError(what, f"not valid msgpack ({type(exc).__name__}: {exc})") from exc


def require_canonical(value: Any, data: bytes, *, what: str) -> None:
    """Refuse a decodable but non-canonical encoding (SPEC §4.2)."""
    if pack(value) != data:
        raise MalformedError(what, "encoding is not canonical")
