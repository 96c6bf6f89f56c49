"""An audit log that several writers share: what a writer reads of it under the lock (no I/O).

A node's audit log is one sequence of records, each chained to the one
before and all under one Merkle tree (SPEC §20).  The workers of a hub
(``exchnode.aio.WorkerShare``) share their store, so they share the log: a
worker's in-memory log state (numbering, chaining, the tree's frontier) is
behind as soon as another worker commits records.  A store that several
writers use (``PostgresStore``) therefore lets the audit log *follow* it: in
every transaction that appends records it takes the log's lock, reads the
log as stored (:class:`StoredTail`), and hands it to the
:class:`AuditFollower` before anything is numbered -- or, for records
numbered before the lock was taken, asks the follower to number them again
after what is stored (:meth:`AuditFollower.renumber`).  Records stay gapless
and chained, the seal is signed over the log as stored, whoever writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from exchnode.store._records import AuditRow

__all__ = ["AuditFollower", "SharedAuditStore", "StoredTail"]


class StoredTail(Protocol):
    """The log as stored, read inside the transaction that holds its lock."""

    @property
    def size(self) -> int:
        """The number of records ever stored: the next record's seq."""
        ...

    def record(self, seq: int) -> bytes | None:
        """The encoded record ``seq``, if stored (not pruned)."""
        ...

    def node(self, level: int, index: int) -> bytes | None:
        """A stored subtree hash (``level`` >= 1, as ``AuditStore.audit_node``), if stored."""
        ...

    def seal(self) -> bytes | None: ...

    def last_head(self) -> bytes | None: ...

    def checkpoint(self) -> bytes | None: ...


class AuditFollower(Protocol):
    """The log's state, kept in step with a log other writers append to."""

    def follow(self, tail: StoredTail) -> None:
        """Before records are numbered: become the state of the log ``tail`` shows."""
        ...

    def renumber(self, rows: Sequence[AuditRow], tail: StoredTail) -> list[AuditRow]:
        """Records numbered before the lock: the same entries numbered after ``tail``
        (``rows`` themselves when nothing was stored meanwhile)."""
        ...


@runtime_checkable
class SharedAuditStore(Protocol):
    """A store whose audit log several writers share (see the module doc)."""

    def set_audit_follower(self, follower: AuditFollower | None) -> None: ...

    def follow_audit(self) -> None:
        """Bring the follower to the log as stored now (before it signs a head over it)."""
        ...
