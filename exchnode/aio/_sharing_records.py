"""Records on a running node: checking a ``sub.records`` delivery, and their audit events.

:class:`~exchnode.aio.SharingService` publishes records (``publish_records``)
and reads what arrives (``read_records``); this module holds what those two
say and put on the record, apart from the service's locking and storing:
:func:`check_received` matches a delivery's numbers to the grants held
(covered, items granted), tells new records from repeats and tracks gaps;
:func:`record_event` names who provided or received which records, by
number only, never by content.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from exchnode.aio._sharing_state import SharingState
from exchnode.core import AuditEvent, EventSink
from exchnode.sharing import RecordBatch, Seen, SubscriberView, Value

__all__ = ["Published", "ReceivedRecords", "check_received", "record_event", "sent_events"]


class Published(NamedTuple):
    """What one ``publish_records`` call did."""

    first_seq: int
    last_seq: int
    subscribers: int  # distinct subscribers sent at least one record
    envelopes: int  # sub.records envelopes sent (one per distinct body)


@dataclass(frozen=True, slots=True)
class ReceivedRecords:
    """A ``sub.records`` delivery, checked against the grants this node holds."""

    provider: str
    resource_code: str
    records: tuple[tuple[int, dict[str, Value]], ...]  # new, in number order
    repeated: tuple[int, ...]  # numbers seen before (a resend, or a redelivery after a crash)
    refused: tuple[int, ...]  # numbers no live grant covers (sent before a revocation landed)
    missing: tuple[tuple[int, int], ...]  # gaps still open below the highest number seen


def record_event(
    events: EventSink,
    now_ms: int,
    actor: str,
    action: str,
    code: str,
    request_id: bytes,
    first: int,
    last: int,
    counterpart: str,
    *,
    count: int,
) -> None:
    """Who provided or received which records: numbers only, never contents."""
    events.emit(
        AuditEvent(
            at_ms=now_ms,
            actor=actor,
            action=action,
            resource_code=code,
            request_id=request_id,
            outcome=f"seq:{first}-{last}",
            counterpart=counterpart,
            count=count,
        )
    )


def sent_events(
    events: EventSink,
    now_ms: int,
    actor: str,
    code: str,
    first: int,
    last: int,
    subscribers: Iterable[tuple[bytes, str]],
) -> None:
    """A publication on the record: once for the records, once per (request, subscriber)."""
    count = last - first + 1
    record_event(events, now_ms, actor, "records.publish", code, b"", first, last, "", count=count)
    for request_id, subscriber in sorted(set(subscribers)):
        record_event(
            events,
            now_ms,
            actor,
            "records.send",
            code,
            request_id,
            first,
            last,
            subscriber,
            count=count,
        )


def check_received(
    view: SubscriberView,
    state: SharingState,
    batch: RecordBatch,
    *,
    sender: str,
    now_ms: int,
    events: EventSink,
    me: str,
) -> ReceivedRecords:
    """``batch`` against the grants ``view`` holds: new, repeated, refused, still missing.

    The gap tracker's row is the only one this changes (``state.tracker``).
    """
    grants = view.grants_for(batch, sender=sender, now_ms=now_ms)
    tracker = state.trackers.get((batch.provider, batch.resource_code))
    if grants:
        # Numbers before the grants held were never this node's to receive (a grant
        # revoked and given again starts later): they are not gaps.
        before = min(g.first_seq for g in grants) - 1
        tracker = state.tracker(batch.provider, batch.resource_code, after=before)
        tracker.give_up(before)
    fresh: list[tuple[int, dict[str, Value]]] = []
    repeated: list[int] = []
    refused: list[int] = []
    for seq, fields in batch.records:
        if tracker is None or not any(
            view.covers(g.request_id, seq) and set(fields) <= set(g.items) for g in grants
        ):
            refused.append(seq)
        elif tracker.observe(seq) is Seen.NEW:
            fresh.append((seq, dict(fields)))
        else:
            repeated.append(seq)
    for grant in grants:
        numbers = [seq for seq, _ in fresh if view.covers(grant.request_id, seq)]
        if numbers:
            record_event(
                events,
                now_ms,
                me,
                "records.receive",
                batch.resource_code,
                grant.request_id,
                numbers[0],
                numbers[-1],
                batch.provider,
                count=len(numbers),
            )
    return ReceivedRecords(
        batch.provider,
        batch.resource_code,
        tuple(fresh),
        tuple(repeated),
        tuple(refused),
        tuple(tracker.missing()) if tracker is not None else (),
    )
