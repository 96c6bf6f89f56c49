"""The durable store: the interfaces a node's custody, audit log and services
rely on, the records they exchange, the dedup rule, and two implementations
(in memory, and SQLite).

Returned means durable.  The backends are imported on first use, so code that
needs only the records (the audit layer, say) does not load ``sqlite3``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from exchnode.store._interface import (
    AcceptItem,
    AcceptOutcome,
    AcceptStatus,
    AuditRow,
    ExpiredEntry,
    InboundEntry,
    OutboundEntry,
    PeerState,
    QueueDepth,
    Store,
)

if TYPE_CHECKING:
    from exchnode.store._memory import MemoryStore
    from exchnode.store._sqlite import SqliteStore

__all__ = [
    "AcceptItem",
    "AcceptOutcome",
    "AcceptStatus",
    "AuditRow",
    "ExpiredEntry",
    "InboundEntry",
    "MemoryStore",
    "OutboundEntry",
    "PeerState",
    "QueueDepth",
    "SqliteStore",
    "Store",
]

_LAZY = {"MemoryStore": "exchnode.store._memory", "SqliteStore": "exchnode.store._sqlite"}


def __getattr__(name: str) -> Any:
    """The backends on first use: importing the records alone loads no database driver."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
