"""The durable store: the interfaces a node's custody, audit log and services
rely on, the records they exchange, the dedup rule, and three implementations
(in memory, SQLite, and PostgreSQL for several workers sharing one database).

:class:`Store` is what a backend implements and a node takes; it is made of
:class:`CustodyStore` (custody, the queues, expiry, dedup), :class:`AuditStore`
(the audit log's records, heads and checkpoint) and :class:`MetaStore`
(small persistent state), plus its life cycle.  Returned means durable.  The
backends are imported on first use, so code that needs only the records or
the protocols (the audit layer, say) does not load ``sqlite3``, and nothing
loads ``psycopg`` (an optional dependency: ``exchnode[postgres]``) but
``PostgresStore``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from exchnode.federation import PeerState
from exchnode.store._audit_follow import AuditFollower, SharedAuditStore, StoredTail
from exchnode.store._audit_tree import AuditTreeSource
from exchnode.store._interface import AuditStore, CustodyStore, MetaStore, Store
from exchnode.store._records import (
    AcceptItem,
    AcceptOutcome,
    AcceptStatus,
    AuditRow,
    AuditSealer,
    ExpiredEntry,
    InboundEntry,
    OutboundEntry,
    QueueDepth,
    SendKey,
    SendRecord,
)
from exchnode.store._signals import HELLO, INBOX, QUEUE, Signal, SignallingStore, SignalWatch

if TYPE_CHECKING:
    from exchnode.store._memory import MemoryStore
    from exchnode.store._postgres import PostgresStore
    from exchnode.store._postgres_schema import (
        check_postgres_target,
        postgres_description,
        postgres_with_password,
    )
    from exchnode.store._sqlite import SqliteStore

__all__ = [
    "HELLO",
    "INBOX",
    "QUEUE",
    "AcceptItem",
    "AcceptOutcome",
    "AcceptStatus",
    "AuditFollower",
    "AuditRow",
    "AuditSealer",
    "AuditStore",
    "AuditTreeSource",
    "CustodyStore",
    "ExpiredEntry",
    "InboundEntry",
    "MemoryStore",
    "MetaStore",
    "OutboundEntry",
    "PeerState",
    "PostgresStore",
    "QueueDepth",
    "SendKey",
    "SendRecord",
    "SharedAuditStore",
    "Signal",
    "SignalWatch",
    "SignallingStore",
    "SqliteStore",
    "Store",
    "StoredTail",
    "check_postgres_target",
    "postgres_description",
    "postgres_with_password",
]

_LAZY = {
    "MemoryStore": "exchnode.store._memory",
    "PostgresStore": "exchnode.store._postgres",
    "SqliteStore": "exchnode.store._sqlite",
    # For configuration: checked and described without connecting (they load psycopg).
    "check_postgres_target": "exchnode.store._postgres_schema",
    "postgres_description": "exchnode.store._postgres_schema",
    "postgres_with_password": "exchnode.store._postgres_schema",
}


def __getattr__(name: str) -> Any:
    """The backends on first use: importing the records alone loads no database driver."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
