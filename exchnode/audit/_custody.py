"""Custody in the audit log: one record per batch and counterpart, not per envelope (pure).

Theory of operation
-------------------
Issue 5 asks for every envelope accepted, relayed, delivered, expired or
refused to be on the record, and for auditing not to become the relay's
bottleneck.  A checked, chained and hashed record costs ~15 µs to build and
append; a hub spends ~75 µs per message in all, so a record per envelope per
event would cost the relay a third of its throughput.  The custody events
already come in batches, though: the store's group commit takes many
envelopes in one transaction, and a transfer moves many to one neighbour.  So
:class:`CustodyRecorder` writes **one record per batch, counterpart and
outcome**, naming every message it covers in ``messages`` (at most
``MAX_MESSAGES`` ids; a larger group takes several records).  Each message id
is still on the record, with who handed it over, to whom it went, and when;
an auditor finds a message's custody chain by its id in each node's log.

The records (category ``envelope``, the node itself as actor):

* ``accept``: subject the neighbour that handed the envelopes over (this node
  for its own messages, receipts and reports); outcome ``ok accepted``,
  ``ok duplicate`` (custody was already held: answered TAKEN again), or
  ``refused`` with the code (``replayed``, ``expired``, or any code of a
  check that failed before the commit, such as ``bad-signature``);
* ``relay``: subject the next hop; ``ok taken``, or ``refused`` with the code
  the next hop gave (the sender then gets a non-delivery report);
* ``deliver``: ``ok delivered`` (the application acknowledged) or ``ok
  consumed`` (the node or one of its services took it: receipts, reports,
  ``sub.*``);
* ``expire``: subject the next hop it waited for (none: the inbox);
  ``refused expired-in-queue``;
* ``drop``: custody ended here for a reason of this node's own, subject the
  next hop it waited for; ``refused`` with the code (``revoked``: its
  sender's certificate is revoked, so it can never verify again; no report
  goes to a revoked sender).

and (category ``connection``) ``link.up`` / ``link.down``, subject the
neighbour, ``count`` the failures so far; (category ``key``) what changes whom
the node trusts: ``crl.applied`` (``digest`` the CRL's SHA-256 fingerprint,
``count`` its revoked serials), ``directory.changed`` (``count`` node keys
learned), ``directory.refused`` (a neighbour's snapshot, with the code) and
``directory.dropped`` (one entry of it, subject that node, ``peer`` the
neighbour).

The recorder only builds :class:`~exchnode.audit.AuditEntry` values;
the node hands them to its audit log inside the store transaction that makes
the custody change (``Store.accept(..., audit=...)`` and its siblings), so an
envelope's custody and its record are durable together or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from exchnode.audit._records import (
    MAX_MESSAGES,
    NO_SUBJECT,
    Actor,
    AuditEntry,
    Category,
    DetailValue,
    Outcome,
    Subject,
    SubjectKind,
    details,
)
from exchnode.store import AcceptItem, AcceptOutcome, AcceptStatus, ExpiredEntry

__all__ = ["CustodyRecorder"]

_ACCEPT_OUTCOMES = {
    AcceptStatus.ACCEPTED: Outcome.ok("accepted"),
    AcceptStatus.DUPLICATE: Outcome.ok("duplicate"),
    AcceptStatus.CONFLICT: Outcome.refused("replayed"),  # the code the sender is answered
    AcceptStatus.EXPIRED: Outcome.refused("expired"),
    # a send repeated under its idempotency key: the first message, nothing new stored
    AcceptStatus.REPEATED: Outcome.ok("repeated"),
    AcceptStatus.KEY_REUSED: Outcome.refused("key-reused"),
}
_TAKEN = Outcome.ok("taken")
_DELIVERED = Outcome.ok("delivered")
_CONSUMED = Outcome.ok("consumed")
_EXPIRED_IN_QUEUE = Outcome.refused("expired-in-queue")


class CustodyRecorder:
    """The custody records of one node (see the module docstring)."""

    __slots__ = ("_actor", "_name", "_subjects")

    def __init__(self, node: str) -> None:
        self._name = node
        self._actor = Actor.node(node)
        self._subjects: dict[str, Subject] = {}

    def accepted(
        self, now_ms: int, items: Sequence[AcceptItem], outcomes: Sequence[AcceptOutcome]
    ) -> list[AuditEntry]:
        """The records of one group commit: per (came from, outcome), in order of first item."""
        groups: dict[tuple[str, AcceptStatus], list[bytes]] = {}
        for item, outcome in zip(items, outcomes, strict=True):
            source = item.came_from or self._name
            # A repeated send is about the message its key named first (this id was never kept).
            named = outcome.original.message_id if outcome.original else item.message_id
            groups.setdefault((source, outcome.status), []).append(named)
        return [
            entry
            for (source, status), ids in groups.items()
            for entry in self._entries(
                now_ms, "accept", self._node(source), _ACCEPT_OUTCOMES[status], ids
            )
        ]

    def refused(
        self, now_ms: int, neighbour: str, refusals: Iterable[tuple[str, bytes | None]]
    ) -> list[AuditEntry]:
        """Items of a transfer refused before the commit: (code, message id if it was read)."""
        return self._by_code(now_ms, "accept", self._node(neighbour), refusals)

    def relayed(
        self,
        now_ms: int,
        hop: str,
        taken: Sequence[bytes],
        refusals: Iterable[tuple[str, bytes | None]] = (),
    ) -> list[AuditEntry]:
        """One transfer's answer: what ``hop`` took into custody, and what it refused."""
        subject = self._node(hop)
        entries = self._entries(now_ms, "relay", subject, _TAKEN, taken) if taken else []
        return entries + self._by_code(now_ms, "relay", subject, refusals)

    def delivered(self, now_ms: int, ids: Sequence[bytes], *, consumed: bool) -> list[AuditEntry]:
        """Inbox entries gone: acknowledged by the application, or consumed by the node."""
        outcome = _CONSUMED if consumed else _DELIVERED
        return self._entries(now_ms, "deliver", NO_SUBJECT, outcome, ids) if ids else []

    def expired(self, now_ms: int, expired: Sequence[ExpiredEntry]) -> list[AuditEntry]:
        """Entries that expired in a queue, per the next hop they waited for."""
        groups: dict[str | None, list[bytes]] = {}
        for entry in expired:
            groups.setdefault(entry.next_hop, []).append(entry.message_id)
        return [
            record
            for hop, ids in groups.items()
            for record in self._entries(
                now_ms,
                "expire",
                NO_SUBJECT if hop is None else self._node(hop),
                _EXPIRED_IN_QUEUE,
                ids,
            )
        ]

    def dropped(self, now_ms: int, hop: str, code: str, ids: Sequence[bytes]) -> list[AuditEntry]:
        """Entries this node took out of ``hop``'s queue for good, for the reason ``code``."""
        if not ids:
            return []
        return self._entries(now_ms, "drop", self._node(hop), Outcome.refused(code), ids)

    def link(self, now_ms: int, neighbour: str, *, up: bool, failures: int) -> AuditEntry:
        """A link to ``neighbour`` came back (``up``) or failed after working."""
        return self._event(
            now_ms,
            Category.CONNECTION,
            "link.up" if up else "link.down",
            neighbour,
            Outcome.ok() if up else Outcome.refused("link-failed"),
            count=failures,
        )

    def refusal(
        self,
        now_ms: int,
        action: str,
        peer: str | None,
        reason: str,
        *,
        deferred: bool = False,
        **detail: DetailValue,
    ) -> AuditEntry:
        """A refusal between this node and a peer (``link.refused``, ``link.refused-by``), or
        a neighbour's items ``deferred`` (``defer``, category ``envelope``), as aio's
        ``Refusals`` aggregates them: ``peer`` None when it is known by its address only."""
        category = Category.ENVELOPE if deferred else Category.CONNECTION
        return self._event(now_ms, category, action, peer, Outcome.refused(reason), **detail)

    def key(
        self,
        now_ms: int,
        action: str,
        *,
        subject: str | None = None,
        refused: str | None = None,
        **detail: DetailValue,
    ) -> AuditEntry:
        """A change of whom the node trusts: a CRL, the directory (see the module docstring)."""
        outcome = Outcome.ok() if refused is None else Outcome.refused(refused)
        return self._event(now_ms, Category.KEY, action, subject, outcome, **detail)

    # --- building -------------------------------------------------------------------

    def _event(
        self,
        now_ms: int,
        category: Category,
        action: str,
        subject: str | None,
        outcome: Outcome,
        **detail: DetailValue,
    ) -> AuditEntry:
        """One record of this node's about one node (or none), outside custody's batches."""
        return AuditEntry(
            time_ms=now_ms,
            category=category,
            action=action,
            actor=self._actor,
            subject=NO_SUBJECT if subject is None else self._node(subject),
            outcome=outcome,
            detail=details(**detail),
        )

    def _node(self, name: str) -> Subject:
        subject = self._subjects.get(name)
        if subject is None:
            if len(self._subjects) > 4096:  # bounded: neighbours and own name, in practice
                self._subjects.clear()
            subject = self._subjects[name] = Subject(SubjectKind.NODE, name)
        return subject

    def _by_code(
        self,
        now_ms: int,
        action: str,
        subject: Subject,
        refusals: Iterable[tuple[str, bytes | None]],
    ) -> list[AuditEntry]:
        by_code: dict[str, tuple[list[bytes], list[int]]] = {}
        for code, message_id in refusals:
            ids, unread = by_code.setdefault(code, ([], [0]))
            if message_id is None:
                unread[0] += 1
            else:
                ids.append(message_id)
        out: list[AuditEntry] = []
        for code, (ids, unread) in by_code.items():
            outcome = Outcome.refused(code)
            out.extend(self._entries(now_ms, action, subject, outcome, ids))
            if unread[0]:  # items refused before their id could be read: counted only
                out.append(self._entry(now_ms, action, subject, outcome, (), unread[0]))
        return out

    def _entries(
        self, now_ms: int, action: str, subject: Subject, outcome: Outcome, ids: Sequence[bytes]
    ) -> list[AuditEntry]:
        return [
            self._entry(now_ms, action, subject, outcome, chunk, len(chunk))
            for chunk in (
                tuple(ids[i : i + MAX_MESSAGES]) for i in range(0, len(ids), MAX_MESSAGES)
            )
        ]

    def _entry(
        self,
        now_ms: int,
        action: str,
        subject: Subject,
        outcome: Outcome,
        ids: tuple[bytes, ...],
        count: int,
    ) -> AuditEntry:
        detail = details(count=count, messages=ids) if ids else details(count=count)
        return AuditEntry(
            time_ms=now_ms,
            category=Category.ENVELOPE,
            action=action,
            actor=self._actor,
            subject=subject,
            outcome=outcome,
            detail=detail,
        )
