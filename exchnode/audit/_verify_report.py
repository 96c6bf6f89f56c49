"""What :func:`~exchnode.audit.verify_log` reads and what it says (pure).

The sources a store gives the verifier (records and heads read afresh on
each call), the kinds of tampering it names (:class:`Tamper`), one finding
each (:class:`Finding`) and the report over a whole log
(:class:`VerificationReport`), with its JSON form.  The verification itself
is in ``_verify`` (steps 3 to 5, the passes), ``_verify_heads`` (steps 1
and 2) and ``_verify_stream`` (the streaming pass).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from exchnode.audit._log import Checkpoint

__all__ = ["Finding", "HeadSource", "RecordSource", "StoredLog", "Tamper", "VerificationReport"]

RecordSource = Callable[[], Iterable[tuple[int, bytes]]]
"""Records ``(seq, data)`` in seq order, read afresh on each call (e.g. a store, page by page)."""

HeadSource = Callable[[], Iterable[bytes]]
"""Signed heads in the order stored, read afresh on each call (e.g. a store, page by page)."""


@dataclass(frozen=True, slots=True)
class StoredLog:
    """A node's log as ``verify_log`` reads it (its arguments), for each of its passes."""

    node: str
    read_records: RecordSource
    read_heads: HeadSource
    checkpoint: Checkpoint | bytes | None
    witnessed: Sequence[bytes]
    seal: bytes | None
    ordered_from: int


class Tamper(enum.Enum):
    CHANGED = "changed-record"
    DELETED = "deleted-record"
    INSERTED = "inserted-record"
    REORDERED = "reordered-record"
    MALFORMED = "malformed-record"
    TIME_WENT_BACK = "time-went-back"
    UNSIGNED_RECORDS = "unsigned-records"
    ROOT_MISMATCH = "root-mismatch"
    TRUNCATED = "truncated"
    FORK = "fork"
    BAD_HEAD = "bad-head"
    HEAD_CHAIN = "head-chain"
    BAD_CHECKPOINT = "bad-checkpoint"
    UNSIGNED_CHECKPOINT = "unsigned-checkpoint"
    UNWITNESSED_CHECKPOINT = "unwitnessed-checkpoint"


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing wrong: ``seq`` (and ``end``, exclusive, for a range) and/or ``head``."""

    kind: Tamper
    message: str
    seq: int | None = None
    end: int | None = None
    head: str | None = None  # "heads[i]", "seal" or "witnessed[i]"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind.value, "message": self.message}
        if self.seq is not None:
            out["seq"] = self.seq
        if self.end is not None:
            out["end"] = self.end
        if self.head is not None:
            out["head"] = self.head
        return out

    @property
    def last(self) -> int | None:
        """The end of the seqs it names (exclusive), if it names any."""
        if self.seq is None:
            return None
        return self.end if self.end is not None else self.seq + 1


@dataclass(frozen=True, slots=True)
class VerificationReport:
    node: str
    first_seq: int  # the checkpoint's size, or 0
    records: int  # records read (from first_seq on)
    heads: int  # heads whose signature verified (the seal and witnessed heads included)
    verified_size: int  # the largest head size whose root the records reproduce
    findings: tuple[Finding, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.findings

    def kinds(self) -> set[Tamper]:
        return {f.kind for f in self.findings}

    def of(self, kind: Tamper) -> list[Finding]:
        return [f for f in self.findings if f.kind is kind]

    def summary(self, limit: int = 3) -> str:
        """One line naming the findings (the first ``limit`` and how many more)."""
        if self.ok:
            return "no findings"
        named = "; ".join(f"{f.kind.value}: {f.message}" for f in self.findings[:limit])
        more = len(self.findings) - limit
        return named + (f"; and {more} more" if more > 0 else "")

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "ok": self.ok,
            "first_seq": self.first_seq,
            "records": self.records,
            "heads": self.heads,
            "verified_size": self.verified_size,
            "findings": [f.to_json() for f in self.findings],
        }
