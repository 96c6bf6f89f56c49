"""What an application hands a node and gets back from it (pure values).

The node API (``exchnode.aio``) speaks in these: a :class:`Message` to send,
the :class:`Sent` record once the node holds it durably, a :class:`Delivery`
from another node that the application acknowledges explicitly, and the
:class:`DeliveryStatus` of a sent message as receipts and non-delivery
reports come back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from exchnode.core import RESERVED_KINDS, NonDeliveryReport, Opened, Receipt
from exchnode.errors import UsageError

__all__ = ["Delivery", "DeliveryStatus", "Message", "Sent"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """One message for one or more recipients (node names).

    ``receipt`` asks each recipient's node for a signed receipt once its
    application has acknowledged the message.  ``ttl`` (seconds) bounds how
    long the network keeps trying; None takes the node's default.

    ``idempotency_key``: the client's name for this send (1 to 255 visible
    ASCII characters, e.g. a UUID).  A client that got no answer sends again
    with the same key: until the first message expires, the node answers
    with the first message (``Sent.repeated``) and never makes a second; the
    same key with a different message is refused.
    """

    recipients: Sequence[str]
    payload: bytes
    kind: str = "data"
    content_type: str = "application/octet-stream"
    ttl: float | None = None
    receipt: bool = False
    idempotency_key: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.recipients, str):
            raise UsageError("recipients is a list of node names, not one string")
        if not isinstance(self.payload, bytes):
            raise UsageError(f"payload must be bytes, got {type(self.payload).__name__}")
        if self.kind in RESERVED_KINDS:
            raise UsageError(f"kind {self.kind!r} is reserved for the node itself")
        object.__setattr__(self, "recipients", tuple(self.recipients))
        key = self.idempotency_key
        if key is not None and not (
            isinstance(key, str) and 0 < len(key) <= 255 and all("!" <= c <= "~" for c in key)
        ):
            raise UsageError("an idempotency key is 1 to 255 visible ASCII characters")


@dataclass(frozen=True, slots=True)
class Sent:
    """A message the node has taken into durable custody: from here the network owns it."""

    message_id: bytes
    digest: bytes
    recipients: tuple[str, ...]
    expires_ms: int
    #: the same send again under its idempotency key: this is the first message, not a new one
    repeated: bool = False


@dataclass(eq=False, slots=True, kw_only=True)
class Delivery:
    """A message for this node's application.  Call :meth:`ack` once it is safely handled.

    Until acknowledged it stays in the node's inbox and is offered again
    after a restart, so acknowledge only after your own durable processing;
    ``(sender, message_id)`` identifies a repeat.
    """

    sender: str
    message_id: bytes
    kind: str
    content_type: str
    payload: bytes
    created_ms: int
    expires_ms: int
    receipt_requested: bool
    seq: int = field(repr=False)
    opened: Opened = field(repr=False)
    _ack: Callable[[Delivery], Awaitable[None]] = field(repr=False)

    async def ack(self) -> None:
        await self._ack(self)


@dataclass(frozen=True, slots=True)
class DeliveryStatus:
    """What is known about a sent message: verified receipts and non-delivery reports."""

    message_id: bytes
    receipts: tuple[Receipt, ...] = ()
    reports: tuple[NonDeliveryReport, ...] = ()

    @property
    def delivered_to(self) -> frozenset[str]:
        return frozenset(r.recipient for r in self.receipts)

    @property
    def failed_for(self) -> frozenset[str]:
        return frozenset(t for r in self.reports for t in r.targets)

    def settled(self, recipients: Sequence[str] | None = None) -> bool:
        """True once every one of ``recipients`` (any one, if None) has a receipt or report."""
        known = self.delivered_to | self.failed_for
        if recipients is None:
            return bool(known)
        return all(r in known for r in recipients)
