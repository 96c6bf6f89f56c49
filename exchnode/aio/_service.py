"""What a node service is: the seam through which the catalog and subscriptions extend a node.

Theory of operation
-------------------
The :class:`~exchnode.aio.Node` moves sealed envelopes and knows nothing of
catalogs or grants.  A *service* adds such a capability without the node
growing a branch for each: it

* **consumes message kinds** (``kinds``): an inbox entry of one of those
  kinds is opened by the node as usual (signature, decryption) and handed
  to :meth:`NodeService.take` instead of to the application.  The entry
  leaves the inbox only once ``take`` has returned, so a service that makes
  its effect durable before returning loses nothing in a crash; it may see
  the same message again after one, and must treat a repeat as a no-op
  (every protocol message carries an id for that);
* **serves neighbour endpoints** (``routes``): authenticated exactly as the
  link's own endpoints, the handler learning the neighbour's verified name;
* **runs loops** under the node's supervision (``Node.run_task``) and keeps
  its state in the node's store (``Node.get_meta`` / ``Node.set_meta``).

Services send through the node's ordinary ``send`` / ``send_many``: their
messages are end-to-end signed and encrypted like any other, which is what
stops a hub from forging or altering them.

One service may also be the node's :class:`CustodyLog` (the audit log,
``Node.attach_custody_log``): the node then hands it the records of every
custody change *inside* the store transaction that makes the change, so
the envelope's custody and its audit record are durable together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

from exchnode.aio._transport import Handler
from exchnode.audit import AuditEntry
from exchnode.store import AuditRow

if TYPE_CHECKING:
    from exchnode.aio._node import Node

__all__ = ["CustodyLog", "NodeService", "PeersAware", "ServiceMessage"]


class ServiceMessage(NamedTuple):
    """An opened, authenticated message of a kind a service consumes."""

    sender: str
    message_id: bytes
    kind: str
    content_type: str
    payload: bytes
    created_ms: int
    expires_ms: int


class NodeService(Protocol):
    """A capability attached to a node (see the module docstring)."""

    @property
    def kinds(self) -> frozenset[str]:
        """The message kinds this service consumes."""
        ...

    def routes(self) -> Mapping[tuple[str, str], Handler]:
        """Neighbour endpoints, as ``(method, path) → handler``; called once, after ``start``."""
        ...

    async def start(self, node: Node) -> None:
        """Restore state and schedule loops; the node's store is open, its server not yet."""
        ...

    async def take(self, message: ServiceMessage) -> None:
        """Consume one message; raising keeps it in the inbox to be offered again later."""
        ...

    async def close(self) -> None:
        """Called first when the node closes, while its store is still open."""
        ...


@runtime_checkable
class PeersAware(Protocol):
    """A service that follows the node's neighbours as they change while it runs."""

    async def peers_changed(self) -> None:
        """``Node.neighbours()`` changed (a child admitted, a peer added or removed)."""
        ...


class CustodyLog(Protocol):
    """An audit log that takes custody records inside the node's store transactions.

    ``mark``, ``encode`` and ``rollback`` run in the node's store thread,
    in order with every store call: ``encode`` numbers and chains entries
    for the transaction under way, and if that transaction fails, the node
    rolls the log back to the mark it took before.
    """

    def mark(self) -> object:
        """Where the log is now (store thread)."""
        ...

    def encode(self, entries: Sequence[AuditEntry]) -> list[AuditRow]:
        """Number, chain and encode entries for the store transaction under way (store thread)."""
        ...

    def rollback(self, mark: object) -> None:
        """The transaction failed: forget what ``encode`` numbered since ``mark`` (store thread)."""
        ...

    def append_entry(self, entry: AuditEntry) -> None:
        """A record of no custody change (a link going down), stored within the flush interval."""
        ...

    async def drained(self) -> None:
        """The node has stopped taking and moving envelopes: store everything, sign a last head."""
        ...
