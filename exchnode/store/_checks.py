"""Argument checks shared by the store implementations (federation layer).

Every store refuses the same misuse with the same :class:`UsageError`, so
the checks live here, once: times, limits and counts, queue pages and
sequence numbers, the names a store encodes, and the audit log's bounds
(SPEC §20.2, §20.4, §20.9) and ordering rules -- a head never covers records
not stored nor fewer than the head before it, a checkpoint only moves
forward, and records and heads are pruned only below the checkpoint.  The
checks of whole records (``check_items``, ``check_audit_rows``) are beside
the records, in ``_records``.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from exchnode.errors import StoreError, UsageError
from exchnode.federation import PeerState

__all__ = [
    "MAX_AUDIT_RECORD_BYTES",
    "MAX_CHECKPOINT_BYTES",
    "MAX_TREE_HEAD_BYTES",
    "NO_LIMIT",
    "check_checkpoint_update",
    "check_count",
    "check_limit",
    "check_meta",
    "check_meta_changes",
    "check_meta_range",
    "check_page",
    "check_peer_state",
    "check_prune_audit",
    "check_schema_version",
    "check_seal",
    "check_seqs",
    "check_target",
    "check_time",
    "check_tree_head",
    "describe",
    "prefix_end",
]

_MAX_INT64 = (1 << 63) - 1
NO_LIMIT = 1 << 62  # "no byte limit" for a queue read

MAX_AUDIT_RECORD_BYTES = 2048  # SPEC §20.2's bound on an encoded record
MAX_TREE_HEAD_BYTES = 1024  # SPEC §20.4's bound on a signed head
MAX_CHECKPOINT_BYTES = 16 * 1024  # SPEC §20.9's bound on a checkpoint


def check_target(value: object, what: str) -> str:
    """A target or next hop as the store encodes it; else raise :class:`UsageError`."""
    # Targets are node names (SPEC §2: digits, lower-case letters, '.', '-').
    # The store only insists on what its encodings need: non-empty, no spaces.
    if not isinstance(value, str) or not value or " " in value:
        raise UsageError(f"{what} must be a non-empty name without spaces, got {value!r}")
    return value


def check_time(value: object, what: str = "now_ms") -> int:
    """A non-negative 64-bit integer (milliseconds since 1970, or a count)."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_INT64:
        raise UsageError(f"{what} must be a non-negative 64-bit integer, got {value!r}")
    return value


def check_limit(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UsageError(f"{what} must be a positive integer, got {value!r}")
    return value


def check_count(value: object, what: str) -> int:
    """A count that may be 0 (a log's size, a seq): a non-negative integer."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise UsageError(f"{what} must be a non-negative integer, got {value!r}")
    return value


def check_page(now_ms: int, max_count: int, max_bytes: int | None, after: int) -> int:
    """Check the arguments of a queue read (``pending``, ``inbox``); return the byte limit."""
    check_time(now_ms)
    check_limit(max_count, "max_count")
    check_time(after, "after")
    return NO_LIMIT if max_bytes is None else check_limit(max_bytes, "max_bytes")


def check_seqs(seqs: Iterable[int]) -> list[int]:
    """Distinct sequence numbers, as a list (unknown ones are the caller's to ignore)."""
    out = list(dict.fromkeys(seqs))
    for seq in out:
        if not isinstance(seq, int) or isinstance(seq, bool) or not 0 < seq <= _MAX_INT64:
            raise UsageError(f"sequence numbers are positive integers, got {seq!r}")
    return out


def check_peer_state(state: object) -> PeerState:
    if not isinstance(state, PeerState):
        raise UsageError(f"set_peer_state() takes a PeerState, got {type(state).__name__}")
    return state


def check_meta(key: object, value: object) -> None:
    if not isinstance(key, str) or not isinstance(value, bytes):
        raise UsageError("set_meta() takes a str key and a bytes value")


def check_meta_changes(changes: object) -> dict[str, bytes | None]:
    """``update_meta``'s argument as a plain dict, each key a str and each value bytes or None."""
    if not isinstance(changes, Mapping):
        raise UsageError(f"update_meta() takes a mapping, got {type(changes).__name__}")
    checked: dict[str, bytes | None] = {}
    for key, value in changes.items():
        if not isinstance(key, str) or not (value is None or isinstance(value, bytes)):
            raise UsageError("update_meta() takes str keys and bytes (or None, to delete) values")
        checked[key] = value
    return checked


def check_meta_range(prefix: object, after: object, limit: object) -> None:
    if not isinstance(prefix, str) or not isinstance(after, str):
        raise UsageError("meta_range() takes a str prefix and a str after")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise UsageError(f"meta_range() limit must be a positive int, got {limit!r}")


def prefix_end(prefix: str) -> str | None:
    """The smallest string above every string starting with ``prefix`` (None: no bound)."""
    stripped = prefix.rstrip(chr(0x10FFFF))
    if not stripped:
        return None
    following = ord(stripped[-1]) + 1
    if 0xD800 <= following <= 0xDFFF:  # surrogates are not text; the next code point is
        following = 0xE000
    return stripped[:-1] + chr(following)


# --- the audit log's bounds and order ----------------------------------------------


def describe(value: object) -> str:
    """What a refused audit value was, for the error: its length, or its type."""
    return f"{len(value)} bytes" if isinstance(value, bytes) else type(value).__name__


def check_tree_head(size: object, data: object, audit_size: int, last_head_size: int) -> int:
    """The tree size of a head that may be stored after one of ``last_head_size``; else raise.

    A head over records not stored, or smaller than the head before it, is a
    bug, and storing it would leave a log that does not verify.
    """
    if not isinstance(data, bytes) or not 0 < len(data) <= MAX_TREE_HEAD_BYTES:
        raise UsageError(f"a tree head is 1..{MAX_TREE_HEAD_BYTES} bytes, got {describe(data)}")
    check_count(size, "a tree head's size")
    assert isinstance(size, int)
    if size > audit_size:
        raise UsageError(f"a tree head of size {size} covers records not stored ({audit_size})")
    if size < last_head_size:
        raise UsageError(f"a tree head of size {size} is smaller than the last ({last_head_size})")
    return size


def check_seal(data: object) -> bytes:
    """What a sealer returned: a signed head's bytes (the store does not parse it); else raise."""
    if not isinstance(data, bytes) or not 0 < len(data) <= MAX_TREE_HEAD_BYTES:
        raise UsageError(
            f"a seal is a tree head of 1..{MAX_TREE_HEAD_BYTES} bytes, got {describe(data)}"
        )
    return data


def check_checkpoint_update(size: object, data: object, audit_size: int, current_size: int) -> int:
    """The size of a checkpoint that may replace one of ``current_size`` (0: none); else raise."""
    if not isinstance(data, bytes) or not 0 < len(data) <= MAX_CHECKPOINT_BYTES:
        raise UsageError(f"a checkpoint is 1..{MAX_CHECKPOINT_BYTES} bytes, got {describe(data)}")
    check_count(size, "a checkpoint's size")
    assert isinstance(size, int)
    if size == 0:
        raise UsageError("a checkpoint of an empty log prunes nothing")
    if size > audit_size:
        raise UsageError(f"a checkpoint of size {size} covers records not stored ({audit_size})")
    if size < current_size:
        raise UsageError(
            f"a checkpoint of size {size} would move the checkpoint back from {current_size}"
        )
    return size


def check_prune_audit(below_seq: object, max_count: object, checkpoint_size: int) -> int:
    """Check ``prune_audit``'s arguments against the stored checkpoint's size; return below_seq."""
    below = check_time(below_seq, "below_seq")
    check_limit(max_count, "max_count")
    if below > checkpoint_size:
        have = f"the checkpoint covers {checkpoint_size}" if checkpoint_size else "no checkpoint"
        raise UsageError(
            f"refusing to prune audit records below {below}: {have} (SPEC §20.9 deletes "
            f"only records a checkpoint covers)"
        )
    return below


# --- a stored schema's version --------------------------------------------------------


def check_schema_version(version: object, store: str, known: int, verb: str = "open") -> int:
    """The schema version a store holds, if this exchnode may ``verb`` it; else StoreError.

    ``store`` names the store in the message (a path, a database and schema).
    A newer version is refused before anything is changed: the store was
    written by a newer exchnode, whose rows this one would misread.
    """
    if type(version) is not int or version < 1:
        raise StoreError(f"store {store} is damaged: no valid schema_version")
    if version > known:
        raise StoreError(
            f"store {store} has schema version {version}, newer than the {known} this "
            f"exchnode knows; upgrade exchnode to {verb} it (the store was not changed)"
        )
    return version
