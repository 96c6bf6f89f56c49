"""What every store backend shares beyond the argument checks (federation layer).

Three backends (memory, SQLite, PostgreSQL) implement one contract, so what
does not depend on where the rows live is here, once:

* :func:`plan_accept` applies the dedup rule (``classify``) and the
  idempotency rule (``classify_send``) to a whole batch, each item against
  the records as the items before it in the same batch left them.  The
  backend only says how to look a record up and then writes the plan: the
  dedup records (and whether one was stored before, so a database knows
  INSERT from UPDATE), the send keys, and the entries of the items taken.
  A backend that must guard against concurrent writers (PostgreSQL) looks the
  batch's records up under lock first and plans against what it read.
* :class:`StoreLifeCycle`: a store is its own context manager, closed on exit.
* :class:`SqlAuditReads`: the audit calls both database backends answer
  with the same statement (no parameters, so no placeholder style to differ
  in), over the one primitive each backend gives (``_first_row``).

Pure: no I/O.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from exchnode.store._audit_tree import AuditTreeSource
from exchnode.store._records import (
    AcceptItem,
    AcceptOutcome,
    AcceptStatus,
    AuditSealer,
    SeenRecord,
    SendRecord,
    classify,
    classify_send,
)

__all__ = ["AcceptPlan", "SqlAuditReads", "StoreLifeCycle", "plan_accept"]

DedupKey = tuple[str, bytes]  # (sender, message id)


@dataclass(slots=True)
class AcceptPlan:
    """What an accepted batch changes: computed before anything is written.

    ``seen``: per (sender, message id), the dedup record to store and whether
    a record (live or expired) was stored before.  ``sends``: the send keys
    to store (a key's record replaces an expired one).  ``taken``: the items
    with new targets and their outcomes, in batch order (their queue entries).
    """

    outcomes: list[AcceptOutcome] = field(default_factory=list)
    seen: dict[DedupKey, tuple[SeenRecord, bool]] = field(default_factory=dict)
    sends: dict[bytes, SendRecord] = field(default_factory=dict)
    taken: list[tuple[AcceptItem, AcceptOutcome]] = field(default_factory=list)


def plan_accept(
    batch: Iterable[AcceptItem],
    now_ms: int,
    seen: Callable[[DedupKey], SeenRecord | None],
    sent: Callable[[bytes], SendRecord | None],
) -> AcceptPlan:
    """The outcome of every item of ``batch`` and what storing them changes.

    ``seen`` and ``sent`` look up the stored dedup record of a key and the
    stored record of a send key (expired ones included); records the batch
    itself writes take precedence, so a copy repeated within one batch is a
    duplicate and a second send under one key a repeat.
    """
    plan = AcceptPlan()
    for item in batch:
        if item.send_key is not None:
            send = item.send_key.key
            known = plan.sends[send] if send in plan.sends else sent(send)
            repeated = classify_send(item, known, now_ms)
            if repeated is not None:
                plan.outcomes.append(repeated)
                continue
        key = (item.sender, item.message_id)
        if key in plan.seen:
            before: SeenRecord | None
            before, stored = plan.seen[key]
        else:
            before = seen(key)
            stored = before is not None
        outcome = classify(item, before, now_ms)
        plan.outcomes.append(outcome)
        if outcome.status is not AcceptStatus.ACCEPTED:
            continue
        # ACCEPTED means: no live record, or a live one with the same digest.
        held = before.targets if before is not None and before.expires_ms > now_ms else frozenset()
        new = frozenset(outcome.local).union(*outcome.forward.values())
        record = SeenRecord(digest=item.digest, expires_ms=item.expires_ms, targets=held | new)
        plan.seen[key] = (record, stored)
        plan.taken.append((item, outcome))
        if item.send_key is not None:
            plan.sends[item.send_key.key] = SendRecord(
                request=item.send_key.request,
                message_id=item.message_id,
                digest=item.digest,
                expires_ms=item.expires_ms,
            )
    return plan


class StoreLifeCycle(ABC):
    """A store as a context manager: ``with Store(...) as store:`` closes it on the way out."""

    @abstractmethod
    def close(self) -> None:
        """Release the store; every backend says what that means for it."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class SqlAuditReads(StoreLifeCycle):
    """The audit log's calls that are one and the same statement in SQLite and PostgreSQL.

    A backend gives ``_open_conn`` (raising once closed) and ``_first_row``
    (one statement's first row, under its lock, its errors as StoreError);
    the attributes are the backend's.
    """

    _lock: threading.Lock
    _sealer: AuditSealer | None
    _tree_source: AuditTreeSource | None
    _ordered_from: int  # record times are checked from this seq on
    _has_seal = True  # False for an older SQLite schema read read-only

    @abstractmethod
    def _open_conn(self) -> object:
        """The backend's open connection (raising once the store is closed)."""

    @abstractmethod
    def _first_row(self, what: str, query: str) -> tuple[Any, ...] | None:
        """One statement's first row, under the store's lock, its errors as StoreError."""

    def set_audit_sealer(self, sealer: AuditSealer | None) -> None:
        with self._lock:
            self._sealer = sealer

    def set_audit_tree(self, source: AuditTreeSource | None) -> None:
        with self._lock:
            self._tree_source = source

    def audit_ordered_from(self) -> int:
        with self._lock:
            self._open_conn()
            return self._ordered_from

    def audit_seal(self) -> bytes | None:
        if not self._has_seal:
            with self._lock:
                self._open_conn()
                return None
        row = self._first_row("audit_seal", "SELECT data FROM audit_seal")
        return None if row is None else bytes(row[0])

    def audit_checkpoint(self) -> bytes | None:
        row = self._first_row("audit_checkpoint", "SELECT data FROM audit_checkpoint")
        return None if row is None else bytes(row[0])
