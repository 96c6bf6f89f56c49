"""The requester's and the sharing authority's sides of a subscription (pure).

See ``subscriptions`` for the theory of operation.  :class:`SubscriberView`
holds a requester's requests and the provider's statements about them, in
``version`` order; :class:`AuthorityDesk` hears escalations against the
providers of its division and directs a re-review or upholds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from exchnode.core import AuditEvent, EventSink, check_name, pack, require_canonical
from exchnode.errors import (
    InvalidTransitionError,
    MalformedError,
    NotAuthorisedError,
    UnexpectedMessageError,
    UnknownItemError,
    UnknownRequestError,
    UsageError,
)
from exchnode.sharing._book import grant_from_wire, grant_to_wire
from exchnode.sharing._book import unknown_items as _unknown_items
from exchnode.sharing._codecs import REQUEST_ID_LENGTH
from exchnode.sharing._messages import (
    Decision,
    Escalation,
    Expiry,
    Grant,
    Outgoing,
    Review,
    Revocation,
    SubscriptionRequest,
)
from exchnode.sharing._persistence import (
    STATE_FORMAT,
    Changes,
    changed_rows,
    check_array,
    check_counter,
    check_enum,
    check_list,
    check_node,
    check_text,
    check_time_ms,
    every_row,
    load_id_list,
    load_id_rows,
    open_state,
    optional,
)
from exchnode.sharing._record_messages import RecordBatch, RecordGap, Resend
from exchnode.sharing._states import (
    Action,
    RequestState,
    ResourceTerms,
    ReviewOutcome,
    sharing_authority,
)
from exchnode.sharing._states import next_state as _next_state

__all__ = ["AuthorityDesk", "SubscriberView"]

_S = RequestState


@dataclass(slots=True)
class _Held:
    request: SubscriptionRequest
    state: RequestState | None = None  # None: sent, not answered yet
    version: int = 0
    answer_by_ms: int | None = None
    grant: Grant | None = None
    last_seq: int | None = None  # set by a revocation: the grant's last record
    round: int = 0
    reason: str = ""
    history: list[RequestState] = field(default_factory=list)


class SubscriberView:
    """The requester's side: its requests, what the provider said, the grants it holds.

    The provider is the authority on its own decisions: statements apply in
    ``version`` order and older ones are ignored (``on_*`` then return False).
    The requester's own steps are sending, escalating and counting a silent
    provider's deadline out (:meth:`expire_due`), so a provider that never
    answers cannot keep a request from being escalated.
    """

    def __init__(self, requester: str, *, sink: EventSink, random: Callable[[int], bytes]) -> None:
        self.requester = check_name(requester, "requester")
        self._sink = sink
        self._random = random
        self._held: dict[bytes, _Held] = {}
        self._dirty: set[bytes] = set()  # held requests changed since take_changes

    # -- queries

    def state(self, request_id: bytes) -> RequestState | None:
        return self._local(request_id).state

    def answer_by(self, request_id: bytes) -> int | None:
        return self._local(request_id).answer_by_ms

    def reason(self, request_id: bytes) -> str:
        return self._local(request_id).reason

    def held(self, now_ms: int) -> list[Grant]:
        """The grants this node holds and may receive records under at ``now_ms``."""
        return [
            held.grant
            for held in self._held.values()
            if held.state is _S.GRANTED and held.grant is not None and held.grant.live(now_ms)
        ]

    def covers(self, request_id: bytes, seq: int) -> bool:
        """True if record ``seq`` was sent under this request's grant (not before, not after)."""
        held = self._local(request_id)
        if held.grant is None or seq < held.grant.first_seq:
            return False
        return held.last_seq is None or seq <= held.last_seq

    # -- own steps

    def request(
        self,
        terms: ResourceTerms,
        *,
        purpose: str,
        scope: str,
        items: Iterable[str],
        operator: str,
        now_ms: int,
    ) -> list[Outgoing]:
        wanted = tuple(sorted(set(items)))
        unknown = _unknown_items(wanted, terms.items)
        if unknown:
            raise UsageError(f"data item {unknown[0]!r} is not an item of resource {terms.code}")
        request = SubscriptionRequest(
            request_id=self._random(REQUEST_ID_LENGTH),
            requester=self.requester,
            provider=terms.provider,
            resource_code=terms.code,
            purpose=purpose,
            scope=scope,
            items=wanted,
            at_ms=now_ms,
        )
        if request.request_id in self._held:
            raise UsageError("the random source repeated a request id")
        held = _Held(request)
        self._held[request.request_id] = held
        self._emit(held, Action.REQUEST.value, operator, now_ms)
        return [Outgoing((terms.provider,), request)]

    def escalate(
        self, request_id: bytes, *, operator: str, reason: str, now_ms: int
    ) -> list[Outgoing]:
        """Take a refused or expired request to the provider's sharing authority."""
        held = self._local(request_id)
        grounds = held.state
        if grounds not in (_S.REFUSED, _S.EXPIRED):
            state = "unanswered" if grounds is None else grounds.value
            raise InvalidTransitionError(f"request {request_id.hex()} is {state}: cannot escalate")
        following = _next_state(grounds, Action.ESCALATE, request_id, InvalidTransitionError)
        request = held.request
        escalation = Escalation(
            request_id=request_id,
            requester=self.requester,
            provider=request.provider,
            authority=sharing_authority(request.provider),
            resource_code=request.resource_code,
            round=held.round + 1,
            at_ms=now_ms,
            grounds=grounds,
            reason=reason,
        )
        held.state, held.round = following, escalation.round
        self._emit(held, Action.ESCALATE.value, operator, now_ms)
        return [Outgoing((escalation.authority, request.provider), escalation)]

    def expire_due(self, now_ms: int) -> list[bytes]:
        """Count out unanswered requests' deadlines and grants' expiries; the ids that changed.

        Neither needs a message from the provider: both times were in its
        signed statements already.
        """
        changed = []
        for request_id, held in sorted(self._held.items()):
            answer_by = held.answer_by_ms
            expires = held.grant.expires_ms if held.grant is not None else None
            if held.state is _S.PENDING and answer_by is not None and now_ms >= answer_by:
                action = Action.EXPIRE
            elif held.state is _S.GRANTED and expires is not None and now_ms >= expires:
                action = Action.LAPSE
            else:
                continue
            held.state = _next_state(held.state, action, request_id, InvalidTransitionError)
            self._emit(held, action.value, self.requester, now_ms)
            changed.append(request_id)
        return changed

    # -- the provider's and the authority's statements

    def on_decision(self, decision: Decision, *, sender: str, now_ms: int) -> bool:
        held = self._from_provider(decision.request_id, sender, decision)
        if decision.version <= held.version:
            return False
        if decision.status is _S.GRANTED:
            beyond = _unknown_items(decision.items, frozenset(held.request.items))
            if beyond:
                raise UnknownItemError(beyond[0], "was granted but never requested")
        held.version = decision.version
        held.state = decision.status
        held.answer_by_ms = decision.answer_by_ms
        held.reason = decision.reason
        if decision.status is _S.GRANTED:
            held.grant = decision.grant()
        self._emit(held, decision.KIND, sender, now_ms)
        return True

    def on_expiry(self, expiry: Expiry, *, sender: str, now_ms: int) -> bool:
        held = self._from_provider(expiry.request_id, sender, expiry)
        if expiry.version <= held.version:
            return False
        held.version = expiry.version
        if held.state in (None, _S.PENDING):
            held.state = _S.EXPIRED
        # Otherwise this node counted the deadline out itself and may have escalated already.
        self._emit(held, expiry.KIND, sender, now_ms)
        return True

    def on_revocation(self, revocation: Revocation, *, sender: str, now_ms: int) -> bool:
        held = self._from_provider(revocation.request_id, sender, revocation)
        if revocation.version <= held.version:
            return False
        held.version = revocation.version
        held.state = _S.REVOKED
        held.last_seq = revocation.last_seq
        held.reason = revocation.reason
        self._emit(held, revocation.KIND, sender, now_ms)
        return True

    def on_review(self, review: Review, *, sender: str, now_ms: int) -> bool:
        held = self._remote(review.request_id)
        authority = sharing_authority(held.request.provider)
        if sender != authority or review.authority != authority:
            raise NotAuthorisedError(f"{sender} is not the sharing authority {authority}")
        if review.round != held.round or held.state is not _S.ESCALATED:
            return False
        action = Action.UPHOLD if review.outcome is ReviewOutcome.UPHOLD else Action.RE_REVIEW
        held.state = _next_state(held.state, action, review.request_id, UnexpectedMessageError)
        held.answer_by_ms = None  # the provider's new pending decision carries the new deadline
        held.reason = review.reason
        self._emit(held, review.KIND, sender, now_ms)
        return True

    # -- records

    def grants_for(self, batch: RecordBatch, *, sender: str, now_ms: int) -> list[Grant]:
        """The grants held at ``now_ms`` that a ``sub.records`` body is for.

        The body names no request (it may be shared with other subscribers), so it
        is matched by provider (the authenticated sender), resource code and the
        grant terms' fingerprint.  Each record's ``seq`` is then checked with
        :meth:`covers` per grant, and its items against the grant's.
        """
        if sender != batch.provider:
            raise NotAuthorisedError(f"{sender} sent records in the name of {batch.provider}")
        return [
            grant
            for grant in self.held(now_ms)
            if grant.provider == sender
            and grant.resource_code == batch.resource_code
            and grant.fingerprint == batch.terms
        ]

    def resend(self, request_id: bytes, from_seq: int, to_seq: int) -> list[Outgoing]:
        """Ask the provider for records ``from_seq..to_seq`` again (a gap the tracker found)."""
        held = self._local(request_id)
        request = held.request
        message = Resend(
            request_id=request_id,
            subscriber=self.requester,
            provider=request.provider,
            resource_code=request.resource_code,
            from_seq=from_seq,
            to_seq=to_seq,
        )
        return [Outgoing((request.provider,), message)]

    def on_gap(self, gap: RecordGap, *, sender: str) -> tuple[int, int]:
        """Check a ``sub.gap``; the range the caller gives up on (``GapTracker.give_up``)."""
        self._from_provider(gap.request_id, sender, gap)
        return gap.from_seq, gap.to_seq

    # -- persistence (subscription_persistence)

    def encode(self) -> bytes:
        held = [_held_to_wire(item) for item in self._held.values()]
        return pack([STATE_FORMAT, self.requester, held])

    def take_changes(self) -> Changes:
        """The rows (``held/<request id hex>``) the steps since the last call changed."""
        return changed_rows(_HELD, self._held, self._dirty, _held_to_wire)

    def rows(self) -> dict[str, bytes]:
        return every_row(_HELD, self._held, _held_to_wire)

    def load_rows(self, rows: Iterable[tuple[str, bytes]]) -> None:
        """Fill a new, empty view from its rows; no audit event is emitted."""
        if self._held:
            raise UsageError("rows are loaded into a new view only")
        load_id_rows(self._held, rows, _HELD, "subscriber-view", 9, self._held_from_wire, _held_id)

    @classmethod
    def restore(
        cls, data: bytes, *, sink: EventSink, random: Callable[[int], bytes]
    ) -> SubscriberView:
        """The view :meth:`encode` wrote; no audit event is emitted."""
        what = "subscriber-view"
        value = open_state(data, what, 2)
        view = cls(check_node(value[1], f"{what}.requester"), sink=sink, random=random)
        load_id_list(
            view._held, value[2], f"{what}.held", _held_fields, view._held_from_wire, _held_id
        )
        require_canonical(value, data, what=what)
        return view

    def _held_from_wire(self, item: list[Any], at: str) -> _Held:
        request = SubscriptionRequest.from_wire(item[0], f"{at}.request")
        if request.requester != self.requester:
            raise MalformedError(at, "not this requester's request")
        held = _Held(request)
        held.state = optional(_STATE)(item[1], f"{at}.state")
        held.version = check_counter(item[2], f"{at}.version")
        held.answer_by_ms = optional(check_time_ms)(item[3], f"{at}.answer_by_ms")
        if item[4] is not None:
            held.grant = grant_from_wire(item[4], f"{at}.grant", request, request.provider)
        held.last_seq = optional(check_counter)(item[5], f"{at}.last_seq")
        held.round = check_counter(item[6], f"{at}.round")
        held.reason = check_text(item[7], f"{at}.reason")
        held.history = check_list(item[8], f"{at}.history", _STATE)
        return held

    # -- internals

    def _local(self, request_id: bytes) -> _Held:
        held = self._held.get(request_id)
        if held is None:
            raise UsageError(f"{self.requester} sent no request {request_id.hex()}")
        return held

    def _remote(self, request_id: bytes) -> _Held:
        held = self._held.get(request_id)
        if held is None:
            raise UnknownRequestError(f"{self.requester} sent no request {request_id.hex()}")
        return held

    def _from_provider(
        self, request_id: bytes, sender: str, message: Decision | Expiry | Revocation | RecordGap
    ) -> _Held:
        held = self._remote(request_id)
        request = held.request
        addressee = (
            message.subscriber if isinstance(message, Revocation | RecordGap) else message.requester
        )
        if sender != request.provider or message.provider != request.provider:
            raise NotAuthorisedError(f"{sender} is not the provider of request {request_id.hex()}")
        if addressee != self.requester or message.resource_code != request.resource_code:
            raise UnexpectedMessageError(
                f"{message.KIND} does not match request {request_id.hex()}"
            )
        return held

    def _emit(self, held: _Held, action: str, actor: str, now_ms: int) -> None:
        # Every change of a held request is one event: the row to write is marked here.
        self._dirty.add(held.request.request_id)
        outcome = "sent" if held.state is None else held.state.value
        if held.state is not None:
            held.history.append(held.state)
        self._sink.emit(
            AuditEvent(
                at_ms=now_ms,
                actor=actor,
                action=action,
                resource_code=held.request.resource_code,
                request_id=held.request.request_id,
                outcome=outcome,
                counterpart=held.request.provider,
            )
        )


# --- the sharing authority -----------------------------------------------------------


@dataclass(slots=True)
class _Case:
    escalation: Escalation
    state: RequestState = _S.ESCALATED


class AuthorityDesk:
    """The same-level sharing authority: hears escalations, directs re-review or upholds."""

    def __init__(self, authority: str, *, sink: EventSink) -> None:
        self.authority = check_name(authority, "authority")
        self._sink = sink
        self._cases: dict[bytes, _Case] = {}
        self._dirty: set[bytes] = set()  # cases changed since take_changes

    def open_cases(self) -> list[Escalation]:
        return [case.escalation for case in self._cases.values() if case.state is _S.ESCALATED]

    def on_escalation(self, escalation: Escalation, *, sender: str, now_ms: int) -> list[Outgoing]:
        if sender != escalation.requester:
            raise NotAuthorisedError(f"{sender} escalated in the name of {escalation.requester}")
        if escalation.authority != self.authority:
            raise NotAuthorisedError(
                f"escalation for {escalation.authority} sent to {self.authority}"
            )
        if sharing_authority(escalation.provider) != self.authority:
            raise NotAuthorisedError(
                f"{self.authority} is not the authority over {escalation.provider}"
            )
        held = self._cases.get(escalation.request_id)
        if held is not None and held.escalation.round >= escalation.round:
            return []
        case = _Case(escalation)
        self._cases[escalation.request_id] = case
        self._emit(case, Action.ESCALATE, escalation.requester, now_ms)
        return []

    def re_review(
        self, request_id: bytes, *, operator: str, reason: str, now_ms: int
    ) -> list[Outgoing]:
        """Direct the provider to decide again, with a fresh deadline."""
        return self._review(request_id, ReviewOutcome.RE_REVIEW, operator, reason, now_ms)

    def uphold(
        self, request_id: bytes, *, operator: str, reason: str, now_ms: int
    ) -> list[Outgoing]:
        return self._review(request_id, ReviewOutcome.UPHOLD, operator, reason, now_ms)

    def _review(
        self, request_id: bytes, outcome: ReviewOutcome, operator: str, reason: str, now_ms: int
    ) -> list[Outgoing]:
        case = self._cases.get(request_id)
        if case is None:
            raise UsageError(f"no escalation of request {request_id.hex()} at {self.authority}")
        action = Action.UPHOLD if outcome is ReviewOutcome.UPHOLD else Action.RE_REVIEW
        following = _next_state(case.state, action, request_id, InvalidTransitionError)
        escalation = case.escalation
        review = Review(
            request_id=request_id,
            authority=self.authority,
            requester=escalation.requester,
            provider=escalation.provider,
            resource_code=escalation.resource_code,
            round=escalation.round,
            at_ms=now_ms,
            outcome=outcome,
            reason=reason,
        )
        case.state = following
        self._emit(case, action, operator, now_ms)
        return [Outgoing((escalation.provider, escalation.requester), review)]

    def _emit(self, case: _Case, action: Action, actor: str, now_ms: int) -> None:
        escalation = case.escalation
        self._dirty.add(escalation.request_id)
        self._sink.emit(
            AuditEvent(
                at_ms=now_ms,
                actor=actor,
                action=action.value,
                resource_code=escalation.resource_code,
                request_id=escalation.request_id,
                outcome=case.state.value,
                counterpart=escalation.requester,
            )
        )

    # -- persistence (subscription_persistence)

    def encode(self) -> bytes:
        cases = [_case_to_wire(case) for case in self._cases.values()]
        return pack([STATE_FORMAT, self.authority, cases])

    @classmethod
    def restore(cls, data: bytes, *, sink: EventSink) -> AuthorityDesk:
        """The desk :meth:`encode` wrote; no audit event is emitted."""
        what = "authority-desk"
        value = open_state(data, what, 2)
        desk = cls(check_node(value[1], f"{what}.authority"), sink=sink)
        load_id_list(
            desk._cases, value[2], f"{what}.cases", _case_fields, desk._case_from_wire, _case_id
        )
        require_canonical(value, data, what=what)
        return desk

    def _case_from_wire(self, item: list[Any], at: str) -> _Case:
        escalation = Escalation.from_wire(item[0], f"{at}.escalation")
        if escalation.authority != self.authority:
            raise MalformedError(at, "not this authority's case")
        state = _STATE(item[1], f"{at}.state")
        if state not in (_S.ESCALATED, _S.PENDING, _S.CLOSED):
            raise MalformedError(f"{at}.state", "a case is escalated, pending or closed")
        return _Case(escalation, state)

    def take_changes(self) -> Changes:
        """The rows (``case/<request id hex>``) the steps since the last call changed."""
        return changed_rows(_CASE, self._cases, self._dirty, _case_to_wire)

    def rows(self) -> dict[str, bytes]:
        return every_row(_CASE, self._cases, _case_to_wire)

    def load_rows(self, rows: Iterable[tuple[str, bytes]]) -> None:
        """Fill a new, empty desk from its rows; no audit event is emitted."""
        if self._cases:
            raise UsageError("rows are loaded into a new desk only")
        load_id_rows(self._cases, rows, _CASE, "authority-desk", 2, self._case_from_wire, _case_id)


_STATE = check_enum(RequestState)
_HELD = "held/"
_CASE = "case/"


def _held_to_wire(item: _Held) -> list[Any]:
    return [
        item.request.to_wire(),
        None if item.state is None else item.state.value,
        item.version,
        item.answer_by_ms,
        None if item.grant is None else grant_to_wire(item.grant),
        item.last_seq,
        item.round,
        item.reason,
        [state.value for state in item.history],
    ]


def _case_to_wire(case: _Case) -> list[Any]:
    return [case.escalation.to_wire(), case.state.value]


def _held_fields(value: object, what: str) -> list[Any]:
    return check_array(value, what, 9)


def _case_fields(value: object, what: str) -> list[Any]:
    return check_array(value, what, 2)


def _held_id(held: _Held) -> bytes:
    return held.request.request_id


def _case_id(case: _Case) -> bytes:
    return case.escalation.request_id
