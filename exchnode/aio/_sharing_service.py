"""Subscriptions on a running node: the sharing rules between departments, across levels (I/O edge).

Theory of operation
-------------------
:class:`SharingService` attaches the pure subscription life cycle
(``subscriptions``) to a :class:`~exchnode.aio.Node`.  One service plays
every part the node's place allows:

* **requester** (any department): ``subscribe`` looks the resource up in the
  node's catalog (``catalog_service``), sends a ``sub.request`` to the
  provider, and follows what comes back (``SubscriberView``);
* **provider** (the department that catalogued the resource): requests are
  answered by the catalog's share type -- unconditional at once, not shared
  at once with the legal basis, conditional when the operator calls
  ``approve`` or ``refuse`` or, failing that, at the working-day deadline
  (``SubscriptionBook``); ``revoke`` ends a grant for the next record;
* **sharing authority** (the hub of the provider's division): hears
  escalations and directs a re-review or upholds (``AuthorityDesk``).

Every protocol message is a node message of a ``sub.*`` kind: sealed to its
recipients and signed by its sender, so a hub on the way can neither read
nor alter a request, a grant or a revocation, and each ``on_*`` step is told
the envelope's authenticated sender.

**Durability.**  The service's state -- the provider's book, the
requester's view, the authority's desk, the correction desks, the gap
trackers: ``SharingState`` (``_sharing_state``) -- is kept as rows in the
node's store, one per request, grant, case, stream counter, window item,
tracker and outbox message, and a change writes only the rows it touched
(``update_meta``), together with the *outbox* rows of the messages it
produced, in one transaction, before anything is sent.  Each outbox message
is then handed to the node on its own (concurrent sends are still sealed
as one batch), with its row's tag as idempotency key; the rows of messages
handed over are deleted with the next change (or by the timers), and a
crash before that hands them over again, which the node answers with the
first message.  An incoming message leaves the inbox only once its effect
is stored (``node_service``).

**Messages the node will not take** are parked, and transient failures
retried with a backoff: ``_sharing_outbox`` (``parked()``,
``retry_parked()``, ``drop_parked()`` are the operator's).

**Records.**  ``publish_records`` numbers each record per resource, projects
and masks it under every live grant, and sends one ``sub.records`` envelope
per distinct body to all the subscribers it fits (``group_deliveries``), so a
link shared by their paths carries it once.  Records are not service
messages: they reach the subscribing application through
``Node.deliveries`` with its explicit acknowledgement, and ``read_records``
checks one such delivery against the grants held (numbers covered, items
granted), tells new records from repeats, and tracks gaps; ``fill_gaps`` asks
the provider to resend what is missing, and the provider answers from its
window of recent records or says the range is gone (``sub.gap``).

**Corrections** (校核): a subscriber reports a record it believes wrong to its
provider (``report_correction``), whose operator answers it
(``answer_correction``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from exchnode.aio._catalog_service import CatalogService
from exchnode.aio._delivery import Delivery
from exchnode.aio._log_sink import LogSink
from exchnode.aio._service import ServiceMessage
from exchnode.aio._sharing_outbox import ParkedMessage, SharingOutbox
from exchnode.aio._sharing_records import (
    Published,
    ReceivedRecords,
    check_received,
    sent_events,
)
from exchnode.aio._sharing_state import (
    LEGACY_KEY,
    ROW_PREFIX,
    Send,
    SharingState,
    StateContext,
    terms_of,
)
from exchnode.aio._transport import Handler
from exchnode.aio._waiting import wait_event
from exchnode.core import AuditEvent, EventSink
from exchnode.errors import (
    MalformedError,
    RejectedError,
    UnexpectedMessageError,
    UsageError,
)
from exchnode.sharing import (
    DEFAULT_ANSWER_DAYS,
    KINDS,
    AtRestCipher,
    AuthorityDesk,
    Correction,
    CorrectionAnswer,
    CorrectionDesk,
    CorrectionState,
    CorrectionTracker,
    Decision,
    Escalation,
    Expiry,
    Grant,
    MaskSet,
    Outgoing,
    Record,
    RecordBatch,
    RecordGap,
    RequestState,
    Resend,
    ResourceTerms,
    Review,
    Revocation,
    SubscriberView,
    SubscriptionBook,
    SubscriptionRequest,
    WorkCalendar,
    decode_message,
    group_deliveries,
)

if TYPE_CHECKING:
    from exchnode.aio._node import Node

__all__ = ["RECORDS_KIND", "ParkedMessage", "Published", "ReceivedRecords", "SharingService"]

RECORDS_KIND = RecordBatch.KIND
_TIMER_INTERVAL = 1.0  # seconds between deadline checks at most
_PAGE = 1000  # rows read per page at start


class SharingService:
    """Subscriptions for one node: see the module docstring."""

    kinds: frozenset[str] = frozenset(KINDS - {RECORDS_KIND})

    def __init__(
        self,
        catalog: CatalogService,
        *,
        masking_secret: bytes,
        calendar: WorkCalendar | None = None,
        answer_days: int = DEFAULT_ANSWER_DAYS,
        events: EventSink | None = None,
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.catalog = catalog
        self.events: EventSink = events if events is not None else LogSink()
        self._masking_secret = masking_secret
        self._cipher = AtRestCipher(masking_secret)  # fails now on a short secret
        self._calendar = calendar or WorkCalendar()
        self._answer_days = answer_days
        self._random = random
        self._node: Node | None = None
        self._state = SharingState()  # what start() restores or creates
        self._changed = asyncio.Event()  # replaced after each stored change
        self._lock = asyncio.Lock()
        self._timer_wake = asyncio.Event()
        self.log: Any = structlog.get_logger("exchnode.sharing")
        self._outbox = SharingOutbox(self._state, self._cipher, self.events, random, self.log)

    # --- the service seam ------------------------------------------------------------

    async def start(self, node: Node) -> None:
        self._node = node
        self.log = self.log.bind(node=node.name)
        rows = await self._rows(node)
        legacy = await node.get_meta(LEGACY_KEY)
        if legacy is not None and rows:
            raise MalformedError(
                LEGACY_KEY, "a whole sharing state beside its rows: the store was altered"
            )
        if rows:
            self._state = SharingState.load(node.name, rows, self._context())
        elif legacy is not None:
            # An older release's one value: converted to rows once, in one transaction.
            self._state = SharingState.restore_whole(legacy, self._context())
            converted: dict[str, bytes | None] = dict(self._state.rows(self._cipher))
            converted[LEGACY_KEY] = None
            await node.update_meta(converted)
            self.log.info("sharing state converted to rows", rows=len(converted) - 1)
        else:
            self._state = SharingState.fresh(node.name, self._context())
        if rows or legacy is not None:
            self.log.info(
                "sharing state restored",
                outbox=len(self._state.outbox),
                parked=len(self._state.parked),
            )
        self._outbox.attach(node, self._state, self.log)
        node.run_task(self._timers, "sharing-timers")

    @staticmethod
    async def _rows(node: Node) -> list[tuple[str, bytes]]:
        rows: list[tuple[str, bytes]] = []
        while True:
            page = await node.meta_range(ROW_PREFIX, after=rows[-1][0] if rows else "", limit=_PAGE)
            rows += page
            if len(page) < _PAGE:
                return rows

    def routes(self) -> Mapping[tuple[str, str], Handler]:
        return {}

    async def take(self, message: ServiceMessage) -> None:
        statement = decode_message(message.kind, message.payload)
        async with self._lock:
            now_ms = self._now_ms()
            try:
                try:
                    sends = self._apply(statement, message.sender, now_ms)
                except UsageError as exc:  # e.g. a requester's statement sent to a hub
                    raise UnexpectedMessageError(str(exc)) from None
            except RejectedError as exc:
                # A statement its sender may not make (a hub forging a grant, a
                # requester speaking for another): refused, and on the record.
                self.events.emit(
                    AuditEvent(
                        at_ms=now_ms,
                        actor=message.sender,
                        action=f"refused {message.kind}",
                        resource_code=str(getattr(statement, "resource_code", "")),
                        request_id=bytes(getattr(statement, "request_id", b"")),
                        outcome=exc.code,
                        counterpart=self._me(),
                    )
                )
                raise
            await self._commit(sends)

    def _note_provisional(self, deadline_ms: int | None, now_ms: int) -> None:
        """Say so when a deadline was counted over a year the calendar does not cover."""
        calendar = self._calendar
        if deadline_ms is None or not calendar.provisional:
            return
        years = calendar.uncovered_between(now_ms, deadline_ms)
        if years:
            self.log.warning(
                "provisional answer deadline: counted with weekdays only",
                deadline_ms=deadline_ms,
                uncovered_years=list(years),
            )

    async def close(self) -> None:
        # From here the node refuses new messages because it stops, not because they are wrong.
        self._outbox.closing = True

    def _apply(self, statement: object, sender: str, now_ms: int) -> list[Send]:
        """Hand one authenticated statement to the part of this node it concerns."""
        me = self._me()
        out: list[Outgoing] = []
        if isinstance(statement, SubscriptionRequest):
            book = self._provider_book()
            out = book.on_request(statement, sender=sender, now_ms=now_ms)
            self._note_provisional(book.deadline(statement.request_id), now_ms)
        elif isinstance(statement, Decision):
            self._requester_view().on_decision(statement, sender=sender, now_ms=now_ms)
        elif isinstance(statement, Expiry):
            self._requester_view().on_expiry(statement, sender=sender, now_ms=now_ms)
        elif isinstance(statement, Revocation):
            self._requester_view().on_revocation(statement, sender=sender, now_ms=now_ms)
        elif isinstance(statement, Escalation):
            if statement.authority == me:
                out = self._authority_desk().on_escalation(statement, sender=sender, now_ms=now_ms)
            else:
                out = self._provider_book().on_escalation(statement, sender=sender, now_ms=now_ms)
        elif isinstance(statement, Review):
            if statement.provider == me:
                out = self._provider_book().on_review(statement, sender=sender, now_ms=now_ms)
            else:
                self._requester_view().on_review(statement, sender=sender, now_ms=now_ms)
        elif isinstance(statement, Resend):
            out = self._provider_book().on_resend(statement, sender=sender, now_ms=now_ms)
        elif isinstance(statement, RecordGap):
            low, high = self._requester_view().on_gap(statement, sender=sender)
            tracker = self._state.trackers.get((statement.provider, statement.resource_code))
            if tracker is not None:
                tracker.give_up(high)
                self._state.touched(statement.provider, statement.resource_code)
            self.log.warning(
                "records gone at the provider",
                provider=sender,
                resource=statement.resource_code,
                first=low,
                last=high,
            )
        elif isinstance(statement, Correction):
            out = self._correction_desk().on_correction(statement, sender=sender, now_ms=now_ms)
        elif isinstance(statement, CorrectionAnswer):
            self._correction_tracker().on_answer(statement, sender=sender, now_ms=now_ms)
        else:
            raise UsageError(f"no handler for {type(statement).__name__}")
        return [Send(o.recipients, o.kind, o.payload()) for o in out]

    # --- the requester ----------------------------------------------------------------

    async def subscribe(
        self,
        provider: str,
        resource_code: str,
        *,
        purpose: str,
        scope: str,
        items: Iterable[str],
        operator: str,
    ) -> bytes:
        """Ask ``provider`` for ``resource_code``; returns the request id to follow it by."""
        # A catalog at every level: the entry may lie beyond this node, so look it up the tree.
        record = await self.catalog.lookup(provider, resource_code)
        if record is None or record.entry is None:
            raise UsageError(
                f"{resource_code} of {provider} is not in {self._me()}'s catalog "
                "(withdrawn, or not synchronised yet)"
            )
        view = self._requester_view()
        async with self._lock:
            outgoing = view.request(
                terms_of(record.entry),
                purpose=purpose,
                scope=scope,
                items=items,
                operator=operator,
                now_ms=self._now_ms(),
            )
            await self._commit([Send(o.recipients, o.kind, o.payload()) for o in outgoing])
        request = outgoing[0].message
        assert isinstance(request, SubscriptionRequest)
        return request.request_id

    async def escalate(self, request_id: bytes, *, operator: str, reason: str) -> None:
        """Take a refused or expired request to the provider's sharing authority."""
        view = self._requester_view()
        await self._change(
            lambda now_ms: view.escalate(
                request_id, operator=operator, reason=reason, now_ms=now_ms
            )
        )

    def state(self, request_id: bytes) -> RequestState | None:
        """The request's state as this node knows it (requester's or provider's view)."""
        if self._state.view is not None:
            with contextlib.suppress(UsageError):
                state = self._state.view.state(request_id)
                if state is not None:
                    return state
        if self._state.book is not None and self._state.book.knows(request_id):
            return self._state.book.state(request_id)
        return None

    def deadline(self, request_id: bytes) -> int | None:
        """When a request this node received as provider expires unanswered (ms since 1970).

        The end of its last working day, counted when it arrived (or when the
        authority sent it back for re-review); None unless it is pending here.
        Operators see it beside the request, so nobody counts working days by hand.
        """
        book = self._state.book
        if book is None or not book.knows(request_id):
            return None
        if book.state(request_id) is not RequestState.PENDING:
            return None
        return book.deadline(request_id)

    def reason(self, request_id: bytes) -> str:
        return self._requester_view().reason(request_id)

    def held(self) -> list[Grant]:
        """The grants this node holds now, as a subscriber."""
        return self._requester_view().held(self._now_ms())

    async def wait_state(
        self, request_id: bytes, *states: RequestState, timeout: float | None = None
    ) -> RequestState:
        """Wait until the request reaches one of ``states``."""

        async def reached() -> RequestState:
            while True:
                changed = self._changed
                async with self._lock:  # between changes: only what is stored
                    state = self.state(request_id)
                if state in states:
                    assert state is not None
                    return state
                await changed.wait()

        return await asyncio.wait_for(reached(), timeout)

    async def read_records(self, delivery: Delivery) -> ReceivedRecords:
        """Check a ``sub.records`` delivery against the grants held; acknowledge it after use."""
        if delivery.kind != RECORDS_KIND:
            raise UsageError(f"read_records takes {RECORDS_KIND} deliveries, got {delivery.kind}")
        batch = RecordBatch.decode(delivery.payload)
        view = self._requester_view()
        async with self._lock:
            received = check_received(
                view,
                self._state,
                batch,
                sender=delivery.sender,
                now_ms=self._now_ms(),
                events=self.events,
                me=self._me(),
            )
            await self._commit([])
        if received.refused:
            self.log.warning(
                "records outside any live grant",
                provider=batch.provider,
                resource=batch.resource_code,
                count=len(received.refused),
            )
        return received

    async def fill_gaps(self, provider: str, resource_code: str) -> list[tuple[int, int]]:
        """Ask ``provider`` to resend what is missing of ``resource_code``; the ranges asked."""
        view = self._requester_view()
        tracker = self._state.trackers.get((provider, resource_code))
        gaps = tracker.missing() if tracker is not None else []
        grant = next(
            (
                g
                for g in view.held(self._now_ms())
                if g.provider == provider and g.resource_code == resource_code
            ),
            None,
        )
        if not gaps or grant is None:
            return []
        async with self._lock:
            sends = [
                Send(o.recipients, o.kind, o.payload())
                for low, high in gaps
                for o in view.resend(grant.request_id, low, high)
            ]
            await self._commit(sends)
        return gaps

    async def report_correction(
        self,
        provider: str,
        resource_code: str,
        seq: int,
        *,
        items: Iterable[str],
        text: str,
        operator: str,
    ) -> bytes:
        """Tell ``provider`` that record ``seq`` looks wrong (校核); returns the correction id."""
        tracker = self._correction_tracker()
        async with self._lock:
            outgoing = tracker.report(
                provider=provider,
                resource_code=resource_code,
                seq=seq,
                items=items,
                text=text,
                operator=operator,
                now_ms=self._now_ms(),
            )
            await self._commit([Send(o.recipients, o.kind, o.payload()) for o in outgoing])
        correction = outgoing[0].message
        assert isinstance(correction, Correction)
        return correction.correction_id

    def correction_state(self, correction_id: bytes) -> CorrectionState:
        """A correction's state, as its reporter or as the provider it went to."""
        if self._state.corrections_out is not None:
            with contextlib.suppress(UsageError):
                return self._state.corrections_out.state(correction_id)
        return self._correction_desk().state(correction_id)

    def correction_answer(self, correction_id: bytes) -> CorrectionAnswer | None:
        return self._correction_tracker().answer(correction_id)

    async def wait_correction(
        self, correction_id: bytes, *states: CorrectionState, timeout: float | None = None
    ) -> CorrectionState:
        async def reached() -> CorrectionState:
            while True:
                changed = self._changed
                async with self._lock:
                    try:
                        state: CorrectionState | None = self.correction_state(correction_id)
                    except UsageError:
                        state = None
                if state in states:
                    assert state is not None
                    return state
                await changed.wait()

        return await asyncio.wait_for(reached(), timeout)

    # --- the provider -------------------------------------------------------------------

    def requests(self, *, state: RequestState | None = None) -> list[SubscriptionRequest]:
        """Requests this node received as provider, oldest first (optionally in one state)."""
        book = self._provider_book()
        found = [r for r in book.requests() if state is None or book.state(r.request_id) is state]
        return sorted(found, key=lambda r: (r.at_ms, r.request_id))

    async def approve(
        self,
        request_id: bytes,
        *,
        operator: str,
        items: Iterable[str] | None = None,
        masks: MaskSet | None = None,
        expires_ms: int | None = None,
    ) -> Grant:
        book = self._provider_book()
        await self._change(
            lambda now_ms: book.approve(
                request_id,
                operator=operator,
                now_ms=now_ms,
                items=items,
                masks=masks,
                expires_ms=expires_ms,
            )
        )
        grant = book.grant(request_id)
        assert grant is not None
        return grant

    async def refuse(self, request_id: bytes, *, operator: str, reason: str) -> None:
        book = self._provider_book()
        await self._change(
            lambda now_ms: book.refuse(request_id, operator=operator, reason=reason, now_ms=now_ms)
        )

    async def revoke(self, request_id: bytes, *, operator: str, reason: str) -> None:
        """End a grant: the next record published is no longer sent under it."""
        book = self._provider_book()
        await self._change(
            lambda now_ms: book.revoke(request_id, operator=operator, reason=reason, now_ms=now_ms)
        )

    async def publish_records(
        self, resource_code: str, records: Sequence[Record], *, operator: str | None = None
    ) -> Published:
        """Publish records of one of this node's resources to every live grant, at once.

        All or nothing: a record that cannot be sent (a value of no wire type, a
        mask that does not apply to it) fails the call before anything is numbered.
        """
        book = self._provider_book()
        held = self.catalog.get(self._me(), resource_code)
        if held is None or held.withdrawn:
            raise UsageError(f"{self._me()} publishes no resource {resource_code}")
        if not records:
            raise UsageError("publish_records needs at least one record")
        async with self._lock:
            now_ms = self._now_ms()
            deliveries = book.publish_many(resource_code, records, now_ms)
            last = book.last_seq(resource_code)
            first = last - len(records) + 1
            groups = group_deliveries(deliveries)
            subscribers = ((d.request_id, d.subscriber) for d in deliveries)
            sent_events(
                self.events, now_ms, operator or self._me(), resource_code, first, last, subscribers
            )
            await self._commit([Send(g.recipients, g.kind, g.payload) for g in groups])
        return Published(first, last, len({d.subscriber for d in deliveries}), len(groups))

    def corrections(self) -> list[Correction]:
        """Open correction reports about this node's records, as provider."""
        return self._correction_desk().open()

    def answered_corrections(self) -> list[CorrectionAnswer]:
        """This node's answers to corrections, as provider."""
        return self._correction_desk().answered()

    def reported_corrections(self) -> list[Correction]:
        """The corrections this node reported, as subscriber (see ``correction_state``)."""
        return self._correction_tracker().reported()

    async def answer_correction(
        self, correction_id: bytes, *, accepted: bool, text: str, operator: str
    ) -> None:
        desk = self._correction_desk()
        await self._change(
            lambda now_ms: desk.answer(
                correction_id, operator=operator, accepted=accepted, text=text, now_ms=now_ms
            )
        )

    # --- the sharing authority ------------------------------------------------------------

    def cases(self) -> list[Escalation]:
        return self._authority_desk().open_cases()

    async def re_review(self, request_id: bytes, *, operator: str, reason: str) -> None:
        desk = self._authority_desk()
        await self._change(
            lambda now_ms: desk.re_review(
                request_id, operator=operator, reason=reason, now_ms=now_ms
            )
        )

    async def uphold(self, request_id: bytes, *, operator: str, reason: str) -> None:
        desk = self._authority_desk()
        await self._change(
            lambda now_ms: desk.uphold(request_id, operator=operator, reason=reason, now_ms=now_ms)
        )

    # --- messages the node refused for good -----------------------------------------------

    def parked(self) -> list[ParkedMessage]:
        """The messages the node refused for good, oldest first (see ``_sharing_outbox``)."""
        return self._outbox.parked()

    async def retry_parked(self, numbers: Iterable[int] | None = None) -> list[int]:
        """Hand parked messages (all, or ``numbers``) to the node again; the numbers it took.

        What it still refuses stays parked, without a second warning.
        """
        async with self._lock:
            taken = await self._outbox.retry(self._outbox.parked_numbers(numbers))
            await self._outbox.write()
        return taken

    async def drop_parked(self, numbers: Iterable[int], *, operator: str) -> None:
        """Give parked messages up for good (the operator's call); each drop is audited."""
        async with self._lock:
            await self._outbox.drop(self._outbox.parked_numbers(numbers), operator=operator)

    # --- deadlines -------------------------------------------------------------------------

    async def _timers(self) -> None:
        """Send what is due in the outbox, retry parked messages now and then, then expire and
        lapse on time, on both sides."""
        node = self._running()
        await node.ready()
        while True:
            now_ms = self._now_ms()
            async with self._lock:
                await self._outbox.due(now_ms)
                outgoing: list[Outgoing] = []
                changed = False
                if self._state.book is not None:
                    outgoing = self._state.book.expire_due(now_ms)
                if self._state.view is not None:
                    changed = bool(self._state.view.expire_due(now_ms))
                if outgoing or changed:
                    await self._commit([Send(o.recipients, o.kind, o.payload()) for o in outgoing])
                elif self._state.pending_deletions():
                    await self._outbox.write()  # rows of messages handed over, when no change came
            self._timer_wake.clear()
            await wait_event(self._timer_wake, self._next_check(now_ms))

    def _next_check(self, now_ms: int) -> float:
        due = self._state.book.next_timer() if self._state.book is not None else None
        if due is None:
            return _TIMER_INTERVAL
        return min(_TIMER_INTERVAL, max(0.0, (due - now_ms) / 1000))

    # --- committing a change -----------------------------------------------------------------

    async def _change(self, step: Callable[[int], list[Outgoing]]) -> None:
        async with self._lock:
            outgoing = step(self._now_ms())
            await self._commit([Send(o.recipients, o.kind, o.payload()) for o in outgoing])

    async def _commit(self, sends: Sequence[Send]) -> None:
        """Store the rows the change touched with what it must send, send it, tell waiters.

        Called with ``_lock`` held, after a change of the in-memory state.
        """
        await self._outbox.commit(sends)
        self._changed.set()
        self._changed = asyncio.Event()
        self._timer_wake.set()

    # --- helpers ---------------------------------------------------------------------

    def _context(self) -> StateContext:
        return StateContext(
            terms=self._terms,
            sink=self.events,
            masking_secret=self._masking_secret,
            calendar=self._calendar,
            answer_days=self._answer_days,
            random=self._random,
        )

    def _terms(self, resource_code: str) -> ResourceTerms | None:
        record = self.catalog.get(self._me(), resource_code)
        if record is None or record.entry is None:
            return None
        return terms_of(record.entry)

    def _running(self) -> Node:
        if self._node is None:
            raise UsageError("the sharing service is not attached to a running node")
        return self._node

    def _me(self) -> str:
        return self._running().name

    def _now_ms(self) -> int:
        return int(self._running().now() * 1000)

    def _provider_book(self) -> SubscriptionBook:
        if self._state.book is None:
            raise UsageError(f"{self._me()} is a hub: it provides no resources")
        return self._state.book

    def _requester_view(self) -> SubscriberView:
        if self._state.view is None:
            raise UsageError(f"{self._me()} is a hub: it subscribes to nothing")
        return self._state.view

    def _authority_desk(self) -> AuthorityDesk:
        if self._state.desk is None:
            raise UsageError(f"{self._me()} is a department: it is no sharing authority")
        return self._state.desk

    def _correction_desk(self) -> CorrectionDesk:
        if self._state.corrections_in is None:
            raise UsageError(f"{self._me()} is a hub: it provides no records")
        return self._state.corrections_in

    def _correction_tracker(self) -> CorrectionTracker:
        if self._state.corrections_out is None:
            raise UsageError(f"{self._me()} is a hub: it receives no records")
        return self._state.corrections_out
