"""Subscriptions on a running node: the sharing rules between departments, across levels (I/O edge).

Theory of operation
-------------------
:class:`SharingService` attaches the pure subscription life cycle
(``subscriptions``) to a :class:`~exchnode.node.Node`.  One service plays
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

**Durability.**  Not yet: the tables live in memory and are lost on a
restart (the pure parts are gaining ``encode``/``restore``; the node will
keep them in its store with an outbox of the messages a change produced).
An incoming message already leaves the inbox only once ``take`` returns.

Records themselves are not service messages: they reach the subscribing
application through ``Node.deliveries`` with its explicit acknowledgement, and
``read_records`` turns one into checked, numbered records.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from exchnode.catalog_service import CatalogService
from exchnode.delivery import Message
from exchnode.errors import UsageError
from exchnode.events import AuditEvent, EventSink
from exchnode.masking import MaskSet
from exchnode.names import NodeName
from exchnode.node_service import ServiceMessage
from exchnode.subscriptions import (
    CONTENT_TYPE,
    KINDS,
    AuthorityDesk,
    Decision,
    Escalation,
    Expiry,
    Grant,
    Outgoing,
    RequestState,
    ResourceTerms,
    Review,
    Revocation,
    ShareType,
    SubscriberView,
    SubscriptionBook,
    SubscriptionRequest,
    decode_message,
)
from exchnode.transport import Handler
from exchnode.workdays import DEFAULT_ANSWER_DAYS, WorkCalendar

if TYPE_CHECKING:
    from exchnode.node import Node

__all__ = ["LogSink", "SharingService"]

_TIMER_INTERVAL = 1.0  # seconds between deadline checks at most


class LogSink:
    """The default event sink: every sharing event as one structured log line."""

    def __init__(self) -> None:
        self.log: Any = structlog.get_logger("exchnode.sharing.audit")

    def emit(self, event: AuditEvent) -> None:
        self.log.info(
            "sharing event",
            action=event.action,
            actor=event.actor,
            resource=event.resource_code,
            request=event.request_id.hex(),
            outcome=event.outcome,
            counterpart=event.counterpart,
            at_ms=event.at_ms,
        )


class SharingService:
    """Subscriptions for one node: see the module docstring."""

    kinds: frozenset[str] = frozenset(KINDS)

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
        self._calendar = calendar or WorkCalendar()
        self._answer_days = answer_days
        self._random = random
        self._node: Node | None = None
        self._book: SubscriptionBook | None = None
        self._view: SubscriberView | None = None
        self._desk: AuthorityDesk | None = None
        self._requests: dict[bytes, SubscriptionRequest] = {}  # received, as provider
        self._changed = asyncio.Condition()
        self._lock = asyncio.Lock()
        self._timer_wake = asyncio.Event()
        self.log: Any = structlog.get_logger("exchnode.sharing")

    # --- the service seam ------------------------------------------------------------

    async def start(self, node: Node) -> None:
        self._node = node
        self.log = self.log.bind(node=node.name)
        me = NodeName.parse(node.name)
        if me.is_hub:
            self._desk = AuthorityDesk(node.name, sink=self.events)
        else:
            self._book = SubscriptionBook(
                node.name,
                self._terms,
                sink=self.events,
                masking_secret=self._masking_secret,
                calendar=self._calendar,
                answer_days=self._answer_days,
            )
            self._view = SubscriberView(node.name, sink=self.events, random=self._random)
        node.run_task(self._timers, "sharing-timers")

    def routes(self) -> Mapping[tuple[str, str], Handler]:
        return {}

    async def take(self, message: ServiceMessage) -> None:
        statement = decode_message(message.kind, message.payload)
        now_ms = self._now_ms()
        async with self._lock:
            outgoing = self._apply(statement, message.sender, now_ms)
            await self._commit(outgoing)

    async def close(self) -> None:
        pass

    def _apply(self, statement: object, sender: str, now_ms: int) -> list[Outgoing]:
        """Hand one authenticated statement to the part of this node it concerns."""
        me = self._me()
        if isinstance(statement, SubscriptionRequest):
            book = self._provider_book()
            out = book.on_request(statement, sender=sender, now_ms=now_ms)
            self._requests.setdefault(statement.request_id, statement)
            return out
        if isinstance(statement, Decision):
            self._requester_view().on_decision(statement, sender=sender, now_ms=now_ms)
            return []
        if isinstance(statement, Expiry):
            self._requester_view().on_expiry(statement, sender=sender, now_ms=now_ms)
            return []
        if isinstance(statement, Revocation):
            self._requester_view().on_revocation(statement, sender=sender, now_ms=now_ms)
            return []
        if isinstance(statement, Escalation):
            if statement.authority == me:
                return self._authority_desk().on_escalation(statement, sender=sender, now_ms=now_ms)
            return self._provider_book().on_escalation(statement, sender=sender, now_ms=now_ms)
        if isinstance(statement, Review):
            if statement.provider == me:
                return self._provider_book().on_review(statement, sender=sender, now_ms=now_ms)
            self._requester_view().on_review(statement, sender=sender, now_ms=now_ms)
            return []
        raise UsageError(f"no handler for {type(statement).__name__}")

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
        record = self.catalog.get(provider, resource_code)
        if record is None or record.entry is None:
            raise UsageError(
                f"{resource_code} of {provider} is not in {self._me()}'s catalog "
                "(withdrawn, or not synchronised yet)"
            )
        view = self._requester_view()
        async with self._lock:
            outgoing = view.request(
                _terms_of(record.entry),
                purpose=purpose,
                scope=scope,
                items=items,
                operator=operator,
                now_ms=self._now_ms(),
            )
            await self._commit(outgoing)
        request = outgoing[0].message
        assert isinstance(request, SubscriptionRequest)
        return request.request_id

    async def escalate(self, request_id: bytes, *, operator: str, reason: str) -> None:
        """Take a refused or expired request to the provider's sharing authority."""
        view = self._requester_view()
        async with self._lock:
            await self._commit(
                view.escalate(request_id, operator=operator, reason=reason, now_ms=self._now_ms())
            )

    def state(self, request_id: bytes) -> RequestState | None:
        """The request's state as this node knows it (requester's or provider's view)."""
        if self._view is not None:
            with contextlib.suppress(UsageError):
                state = self._view.state(request_id)
                if state is not None:
                    return state
        if self._book is not None and request_id in self._requests:
            return self._book.state(request_id)
        return None

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
            async with self._changed:
                while True:
                    state = self.state(request_id)
                    if state in states:
                        assert state is not None
                        return state
                    await self._changed.wait()

        return await asyncio.wait_for(reached(), timeout)

    # --- the provider -------------------------------------------------------------------

    def requests(self, *, state: RequestState | None = None) -> list[SubscriptionRequest]:
        """Requests this node received as provider, oldest first (optionally in one state)."""
        book = self._provider_book()
        found = [
            r for r in self._requests.values() if state is None or book.state(r.request_id) is state
        ]
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
        async with self._lock:
            outgoing = book.approve(
                request_id,
                operator=operator,
                now_ms=self._now_ms(),
                items=items,
                masks=masks,
                expires_ms=expires_ms,
            )
            await self._commit(outgoing)
        grant = book.grant(request_id)
        assert grant is not None
        return grant

    async def refuse(self, request_id: bytes, *, operator: str, reason: str) -> None:
        book = self._provider_book()
        async with self._lock:
            await self._commit(
                book.refuse(request_id, operator=operator, reason=reason, now_ms=self._now_ms())
            )

    async def revoke(self, request_id: bytes, *, operator: str, reason: str) -> None:
        """End a grant: the next record published is no longer sent under it."""
        book = self._provider_book()
        async with self._lock:
            await self._commit(
                book.revoke(request_id, operator=operator, reason=reason, now_ms=self._now_ms())
            )

    # --- the sharing authority ------------------------------------------------------------

    def cases(self) -> list[Escalation]:
        return self._authority_desk().open_cases()

    async def re_review(self, request_id: bytes, *, operator: str, reason: str) -> None:
        desk = self._authority_desk()
        async with self._lock:
            await self._commit(
                desk.re_review(request_id, operator=operator, reason=reason, now_ms=self._now_ms())
            )

    async def uphold(self, request_id: bytes, *, operator: str, reason: str) -> None:
        desk = self._authority_desk()
        async with self._lock:
            await self._commit(
                desk.uphold(request_id, operator=operator, reason=reason, now_ms=self._now_ms())
            )

    # --- deadlines -------------------------------------------------------------------------

    async def _timers(self) -> None:
        """Expire unanswered requests and lapse grants on time, on both sides."""
        while True:
            now_ms = self._now_ms()
            async with self._lock:
                outgoing: list[Outgoing] = []
                changed = False
                if self._book is not None:
                    outgoing = self._book.expire_due(now_ms)
                if self._view is not None:
                    changed = bool(self._view.expire_due(now_ms))
                if outgoing or changed:
                    await self._commit(outgoing)
            self._timer_wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._timer_wake.wait(), self._next_check(now_ms))

    def _next_check(self, now_ms: int) -> float:
        due = self._book.next_timer() if self._book is not None else None
        if due is None:
            return _TIMER_INTERVAL
        return min(_TIMER_INTERVAL, max(0.0, (due - now_ms) / 1000))

    # --- committing a change -----------------------------------------------------------------

    async def _commit(self, outgoing: Sequence[Outgoing]) -> None:
        """Send what a change produced, then tell waiters (see the module docstring)."""
        node = self._running()
        if outgoing:
            await node.send_many(
                [
                    Message(
                        recipients=list(out.recipients),
                        payload=out.payload(),
                        kind=out.kind,
                        content_type=CONTENT_TYPE,
                    )
                    for out in outgoing
                ]
            )
        async with self._changed:
            self._changed.notify_all()
        self._timer_wake.set()

    # --- helpers ---------------------------------------------------------------------

    def _terms(self, resource_code: str) -> ResourceTerms | None:
        record = self.catalog.get(self._me(), resource_code)
        if record is None or record.entry is None:
            return None
        return _terms_of(record.entry)

    def _running(self) -> Node:
        if self._node is None:
            raise UsageError("the sharing service is not attached to a running node")
        return self._node

    def _me(self) -> str:
        return self._running().name

    def _now_ms(self) -> int:
        return int(self._running().now() * 1000)

    def _provider_book(self) -> SubscriptionBook:
        if self._book is None:
            raise UsageError(f"{self._me()} is a hub: it provides no resources")
        return self._book

    def _requester_view(self) -> SubscriberView:
        if self._view is None:
            raise UsageError(f"{self._me()} is a hub: it subscribes to nothing")
        return self._view

    def _authority_desk(self) -> AuthorityDesk:
        if self._desk is None:
            raise UsageError(f"{self._me()} is a department: it is no sharing authority")
        return self._desk


def _terms_of(entry: Any) -> ResourceTerms:
    """What the sharing rules need of a catalog entry."""
    return ResourceTerms(
        code=entry.code,
        provider=entry.provider,
        share_type=ShareType(entry.share_type.value),
        conditions=entry.share_conditions,
        items=frozenset(item.name for item in entry.data_items),
    )
