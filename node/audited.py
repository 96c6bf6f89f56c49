"""The daemon's own audit records: what an administrator, or the node by itself, changed.

The administrator's endpoints (``node.admin``, ``node.peers_admin``,
``node.backup``), the start (``admin.note_start``) and the node's own CRL
reloads (``node.trust``) each put what they did on the record.  They differ
in what they record, not in how: :func:`record` is the one place that stamps
an entry with the node's clock and checks its detail, so no caller builds an
``AuditEntry`` of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from exchnode.audit import NO_SUBJECT, AuditEntry, details

if TYPE_CHECKING:
    from exchnode.aio import AuditService, Node
    from exchnode.audit import Actor, Category, DetailValue, Outcome, Subject

__all__ = ["record"]


def record(
    audit: AuditService,
    node: Node,
    category: Category,
    action: str,
    actor: Actor,
    outcome: Outcome,
    subject: Subject = NO_SUBJECT,
    time_ms: int | None = None,
    /,
    **detail: DetailValue,
) -> None:
    """Append one entry, at ``time_ms`` or now by the node's clock, with ``detail`` (checked
    against the schema by ``exchnode.audit.details``).

    ``time_ms``: for records of one moment (a start's), which should read alike.
    """
    audit.append_entry(
        AuditEntry(
            time_ms=int(node.now() * 1000) if time_ms is None else time_ms,
            category=category,
            action=action,
            actor=actor,
            subject=subject,
            outcome=outcome,
            detail=details(**detail),
        )
    )
