"""How a node is set up: its neighbours, its limits and its timers (pure values).

The daemon reads these from TOML (``node/``); an integrator builds them in
code.  Each value checks itself on construction, so a bad configuration
fails at startup with a message naming the setting, not at the first
message.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from exchnode.core import NodeName
from exchnode.errors import UsageError
from exchnode.federation import Neighbour, Relation

__all__ = ["NodeLimits", "NodeTimers", "Peer"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Peer:
    """A neighbour: its name, its relation to this node, and where it listens (``https://…``)."""

    name: str
    relation: Relation
    url: str

    def __post_init__(self) -> None:
        NodeName.parse(self.name)
        if not isinstance(self.relation, Relation):
            raise UsageError(f"relation of {self.name} must be a Relation, got {self.relation!r}")
        parts = urlsplit(self.url)
        if parts.scheme != "https" or not parts.hostname or parts.port is None:
            raise UsageError(f"url of {self.name} must be https://host:port, got {self.url!r}")

    @property
    def neighbour(self) -> Neighbour:
        return Neighbour(NodeName.parse(self.name), self.relation)


def _positive(owner: object, *names: str) -> None:
    for name in names:
        value = getattr(owner, name)
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise UsageError(f"{name} must be a positive number, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeLimits:
    """Bounds on what a node holds and moves.

    ``max_queued_*``: everything stored (outbound queues and inbox).  A node
    at its limit answers DEFERRED and advertises no credit, so senders hold
    their items and slow down (back-pressure); nothing is dropped, and its
    own application's ``send`` waits.  ``transfer_*``: the most one transfer
    carries out, and the credit this node grants each neighbour.
    """

    max_queued_items: int = 1_000_000
    max_queued_bytes: int = 4 * 1024**3
    transfer_items: int = 1024
    transfer_bytes: int = 16 * 1024**2
    max_transfer_bytes: int = 64 * 1024**2
    deliveries_buffered: int = 256

    def __post_init__(self) -> None:
        _positive(
            self,
            "max_queued_items",
            "max_queued_bytes",
            "transfer_items",
            "transfer_bytes",
            "max_transfer_bytes",
            "deliveries_buffered",
        )
        if self.transfer_bytes > self.max_transfer_bytes:
            raise UsageError("transfer_bytes cannot exceed max_transfer_bytes")


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeTimers:
    """Periods in seconds.

    ``expiry_interval``: how often expired entries are reported and removed.
    ``deferred_pause``: the first wait after a neighbour deferred everything
    (doubles up to ``deferred_pause_max`` while it stays full).
    ``link_timeout``: one transfer, connect to answer.  ``inbox_rescan``: how
    often entries that could not be opened yet (e.g. an unknown signer) are
    tried again.  ``directory_refresh``: how often the node directory is pulled
    from every neighbour (changes are also announced at once);
    ``directory_lifetime``: how long the snapshot this node signs is valid --
    how long its neighbours keep working from their cache if it goes away.
    """

    expiry_interval: float = 1.0
    deferred_pause: float = 0.02
    deferred_pause_max: float = 2.0
    link_timeout: float = 30.0
    inbox_rescan: float = 30.0
    directory_refresh: float = 60.0
    directory_lifetime: float = 24 * 3600.0

    def __post_init__(self) -> None:
        _positive(
            self,
            "expiry_interval",
            "deferred_pause",
            "deferred_pause_max",
            "link_timeout",
            "inbox_rescan",
            "directory_refresh",
            "directory_lifetime",
        )
