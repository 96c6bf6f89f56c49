"""Audit events: who did what to which request, and when (pure).

Every state change of a subscription (``subscriptions``) is one
:class:`AuditEvent`, handed to one :class:`EventSink`.  The sink is the seam
where the audit log (issue 5) will attach: it will append events to its
tamper-evident tree, while the state machines stay ignorant of storage.

An event never carries record contents, purposes or reasons in free text:
GB/T 39477 asks for audit of *who* used *what* and *when*, and an audit log
that copied personal data would itself need the protection of the data.  The
request id is enough to find the signed messages that hold the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["AuditEvent", "EventSink", "ListSink"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEvent:
    at_ms: int
    actor: str  # the node, or the operator acting for it, that made the change
    action: str  # the transition, e.g. "request", "grant", "revoke"
    resource_code: str
    request_id: bytes
    outcome: str  # the state the request is in after the action
    counterpart: str  # the other party: the requester for a provider, and so on
    count: int = 0  # how many records (records.*): numbers may have gaps, so not from outcome


class EventSink(Protocol):
    def emit(self, event: AuditEvent) -> None: ...


@dataclass(slots=True)
class ListSink:
    """Keeps events in memory, for tests and for a node that batches them to the audit log."""

    events: list[AuditEvent] = field(default_factory=list)

    def emit(self, event: AuditEvent) -> None:
        self.events.append(event)
