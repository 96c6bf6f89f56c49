"""Audit entries the tests and benchmarks log, as a node logs them."""

from __future__ import annotations

from exchnode import audit


def envelope_entry(
    action: str, at_ms: int, node: str, message_id: bytes, **detail: audit.DetailValue
) -> audit.AuditEntry:
    """``node``'s record of one envelope (``envelope.accept``, ``envelope.deliver``...)."""
    return audit.AuditEntry(
        time_ms=at_ms,
        category=audit.Category.ENVELOPE,
        action=action,
        actor=audit.Actor.node(node),
        subject=audit.Subject(audit.SubjectKind.MESSAGE, message_id),
        outcome=audit.Outcome.ok(),
        detail=audit.details(**detail),
    )


def config_loaded(at_ms: int, node: str) -> audit.AuditEntry:
    """``node``'s record of its configuration loaded: the simplest record a log can grow by."""
    return audit.AuditEntry(
        time_ms=at_ms,
        category=audit.Category.CONFIGURATION,
        action="config.loaded",
        actor=audit.Actor.node(node),
    )
