"""``LogSink``: every audit event as one structured log line (the logging edge).

The pure event types (:class:`~exchnode.core.AuditEvent`, the
:class:`~exchnode.core.EventSink` protocol, ``ListSink``) stay in
:mod:`exchnode.core`; this sink lives at the edge because it needs
``structlog``, which the pure packages must not load.
"""

from __future__ import annotations

from typing import Any

import structlog

from exchnode.core import AuditEvent

__all__ = ["LogSink"]


class LogSink:
    """Every event as one structured log line: the sink until the audit log (issue 5) takes over."""

    def __init__(self, log: Any = None) -> None:
        self.log: Any = log if log is not None else structlog.get_logger("exchnode.audit")

    def emit(self, event: AuditEvent) -> None:
        self.log.info(
            "audit event",
            action=event.action,
            actor=event.actor,
            resource=event.resource_code,
            request=event.request_id.hex(),
            outcome=event.outcome,
            counterpart=event.counterpart,
            at_ms=event.at_ms,
        )
