"""How a node stores its catalog: one row per record, never the catalog as one value.

Why rows: a change must write O(change), not the catalog (issue 13 measured
52.8 MB written per change at 100,000 entries with the single value of
format 1).  Every row is a key of the store's ``meta`` under ``catalog.``;
keys sort as the store's ``meta_range`` pages them (code-point order), and the
separator, a space, appears in no provider name, code or hex digest:

    catalog.h                                    [2, feed_id: bin(16)]
    catalog.r <provider> <code>                  [seq: uint, record: bin]   the subtree's
    catalog.c <provider> <code>                  [0, record: bin]           cached from above
    catalog.e <provider> <code> <version> <hex>  [held: bin, offered: bin]  equivocation evidence
    catalog.p <neighbour>                        [feed: bin, seq: uint]     a puller's position

``seq`` is the record's number in this node's change feed (SPEC §18.11), so
the feed is rebuilt from the rows at start.  The layout is local, not part of
the protocol.
"""

from __future__ import annotations

from typing import Any

from exchnode.core import pack, unpack
from exchnode.errors import MalformedError, UnsupportedVersionError
from exchnode.federation import FeedPosition, check_feed_position

__all__ = [
    "HEADER_KEY",
    "ROWS_FORMAT",
    "ROWS_PREFIX",
    "cached_key",
    "conflict_key",
    "decode_header",
    "decode_position",
    "decode_row",
    "encode_position",
    "position_key",
    "subtree_key",
]

ROWS_PREFIX = "catalog."
HEADER_KEY = "catalog.h"
ROWS_FORMAT = 2
SUBTREE = "catalog.r "
CACHED = "catalog.c "
CONFLICT = "catalog.e "
POSITION = "catalog.p "
_MAX_ROW = (1 << 21) + 1024  # two records of at most 1 MiB, and framing


def subtree_key(provider: str, code: str) -> str:
    return f"{SUBTREE}{provider} {code}"


def cached_key(provider: str, code: str) -> str:
    return f"{CACHED}{provider} {code}"


def conflict_key(provider: str, code: str, version: int, content_digest: bytes) -> str:
    return f"{CONFLICT}{provider} {code} {version} {content_digest.hex()}"


def position_key(neighbour: str) -> str:
    return f"{POSITION}{neighbour}"


def encode_header(feed_id: bytes) -> bytes:
    return pack([ROWS_FORMAT, feed_id])


def decode_header(value: bytes) -> bytes:
    """The feed id of a stored state."""
    what = HEADER_KEY
    fields = unpack(value, what=what, max_size=64)
    if type(fields) is not list or len(fields) != 2 or type(fields[0]) is not int:
        raise MalformedError(what, "expected [format, feed_id]")
    if fields[0] != ROWS_FORMAT:
        raise UnsupportedVersionError(f"{what} format {fields[0]} is not supported (only 2)")
    position = check_feed_position(fields[1], 0, what)
    if not position.feed:
        raise MalformedError(f"{what}.feed", "must not be empty")
    return position.feed


def decode_row(key: str, value: bytes) -> list[Any]:
    """A record row's two fields ([seq or 0, record] or [held, offered]), shapes checked."""
    fields = unpack(value, what=key, max_size=_MAX_ROW)
    if type(fields) is not list or len(fields) != 2 or type(fields[1]) is not bytes:
        raise MalformedError(key, "expected a row of two fields")
    return fields


def encode_position(position: FeedPosition) -> bytes:
    return pack([position.feed, position.seq])


def decode_position(key: str, value: bytes) -> FeedPosition:
    fields = unpack(value, what=key, max_size=64)
    if type(fields) is not list or len(fields) != 2:
        raise MalformedError(key, "expected [feed, seq]")
    return check_feed_position(fields[0], fields[1], key)
