"""The subscription life cycle against a simple model of the sharing rules (issue 4, draft §19).

Hypothesis drives a provider's book, a requester's view and their sharing
authority through requests, answers, revocations, escalations and a clock,
with every message carried through its wire form, and after every step checks:

* a record is delivered to exactly the requests the model says hold a live grant;
* no grant ever holds an item beyond its request (nor a record a field beyond its grant);
* an expired request is never granted unless it was escalated and re-reviewed since;
* every transition emitted exactly one audit event, the one the model expects.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from exchnode import errors
from exchnode.core._events import ListSink
from exchnode.sharing import (
    Keep,
    MaskSet,
    Outgoing,
    RequestState,
    ResourceTerms,
    WorkCalendar,
)
from exchnode.sharing._states import ShareType
from tests.unit.sharing.parties import Carrier

S = RequestState
PROVIDER = "520100.fagai"
REQUESTER = "520102.gongan"
AUTHORITY = "520100"
ITEMS = ("address", "birth_date", "id_number", "name")
BASE = ResourceTerms(
    code="101001/1",
    provider=PROVIDER,
    share_type=ShareType.CONDITIONAL,
    conditions="social assistance only",
    items=frozenset(ITEMS),
)
RESOURCES = {
    terms.code: terms
    for terms in (
        BASE,
        replace(BASE, code="101001/2", share_type=ShareType.UNCONDITIONAL),
        replace(BASE, code="101001/3", share_type=ShareType.NOT_SHARED, conditions="统计法 第九条"),
    )
}
CALENDAR = WorkCalendar.of(holidays=["2026-11-25", "2026-11-26"])
ANSWER_DAYS = 2
START_MS = 1_795_680_000_000  # Friday 20 November 2026, 15:00 CST
HOUR = 3_600_000
RECORD = {name: f"{name} value 0123456789" for name in (*ITEMS, "internal")}


@dataclass
class Model:
    """What the rules say one request's state is."""

    resource: str
    requested: frozenset[str]
    state: RequestState
    deadline: int | None = None
    grant_expires: int | None = None
    granted: frozenset[str] = frozenset()
    log: list[tuple[str, str]] = field(default_factory=list)

    def move(self, action: str, state: RequestState) -> None:
        self.state = state
        self.log.append((action, state.value))

    def live(self, now: int) -> bool:
        return self.state is S.GRANTED and (self.grant_expires is None or now < self.grant_expires)


class SubscriptionLifecycle(Carrier, RuleBasedStateMachine):
    provider, requester, authority = PROVIDER, REQUESTER, AUTHORITY

    def __init__(self) -> None:
        super().__init__()
        self.now = START_MS
        self.provider_events = ListSink()
        self.seat(
            RESOURCES.get,
            CALENDAR,
            answer_days=ANSWER_DAYS,
            masking_secret=b"k" * 32,
            sinks=(self.provider_events, ListSink(), ListSink()),
        )
        self.model: dict[bytes, Model] = {}
        # What a node would have stored: every change each machine reported, applied in turn.
        self.stored: dict[str, dict[str, bytes]] = {"book": {}, "view": {}, "desk": {}}

    # -- carrying messages, through their wire form

    def attempt(self, action: Callable[[], list[Outgoing]], allowed: bool, sender: str) -> bool:
        """Take ``action`` if the model ``allowed`` it, carrying its messages; else see it refused.

        Whether it was taken: the caller then moves the model's entry.
        """
        if not allowed:
            with pytest.raises(errors.InvalidTransitionError):
                action()
            return False
        self.carry(action(), sender, self.now)
        return True

    def pick(self, data: st.DataObject) -> bytes:
        return data.draw(st.sampled_from(sorted(self.model)), label="request")

    def past_deadline(self, entry: Model) -> bool:
        return (
            entry.state is S.PENDING and entry.deadline is not None and self.now >= entry.deadline
        )

    # -- rules

    @rule(
        resource=st.sampled_from(sorted(RESOURCES)),
        items=st.sets(st.sampled_from(ITEMS), min_size=1),
    )
    def request(self, resource: str, items: set[str]) -> None:
        out = self.view.request(
            RESOURCES[resource], purpose="p", scope="s", items=items, operator="li", now_ms=self.now
        )
        request_id = out[0].message.request_id
        share_type = RESOURCES[resource].share_type
        state = {
            ShareType.UNCONDITIONAL: S.GRANTED,
            ShareType.CONDITIONAL: S.PENDING,
            ShareType.NOT_SHARED: S.NOT_SHARED,
        }[share_type]
        entry = Model(resource, frozenset(items), state)
        entry.log.append(("request", state.value))
        if state is S.PENDING:
            entry.deadline = CALENDAR.deadline(self.now, ANSWER_DAYS)
        if state is S.GRANTED:
            entry.granted = entry.requested
        self.model[request_id] = entry
        self.carry(out, REQUESTER, self.now)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), expiry_hours=st.none() | st.integers(1, 96), mask=st.booleans())
    def approve(self, data: st.DataObject, expiry_hours: int | None, mask: bool) -> None:
        request_id = self.pick(data)
        entry = self.model[request_id]
        items = data.draw(st.sets(st.sampled_from(sorted(entry.requested)), min_size=1))
        masks = MaskSet.of({min(items): Keep(2, 2)}) if mask else MaskSet()
        expires = None if expiry_hours is None else self.now + expiry_hours * HOUR
        if entry.state is not S.PENDING or self.past_deadline(entry):
            with pytest.raises(errors.InvalidTransitionError):
                self.book.approve(request_id, operator="zhang", now_ms=self.now)
            return
        out = self.book.approve(
            request_id,
            operator="zhang",
            now_ms=self.now,
            items=items,
            masks=masks,
            expires_ms=expires,
        )
        entry.granted, entry.grant_expires = frozenset(items), expires
        entry.move("grant", S.GRANTED)
        self.carry(out, PROVIDER, self.now)

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def refuse(self, data: st.DataObject) -> None:
        request_id = self.pick(data)
        entry = self.model[request_id]
        refuse = partial(
            self.book.refuse, request_id, operator="zhang", reason="no", now_ms=self.now
        )
        allowed = entry.state is S.PENDING and not self.past_deadline(entry)
        if self.attempt(refuse, allowed, PROVIDER):
            entry.move("refuse", S.REFUSED)

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def revoke(self, data: st.DataObject) -> None:
        request_id = self.pick(data)
        entry = self.model[request_id]
        revoke = partial(
            self.book.revoke, request_id, operator="zhang", reason="r", now_ms=self.now
        )
        if self.attempt(revoke, entry.live(self.now), PROVIDER):
            entry.move("revoke", S.REVOKED)

    @rule(hours=st.integers(0, 80))
    def advance_clock(self, hours: int) -> None:
        self.now += hours * HOUR

    @precondition(lambda self: self.book.next_timer() is not None)
    @rule(early=st.sampled_from([0, 1]))
    def advance_to_the_next_timer(self, early: int) -> None:
        """Step to exactly the next deadline or grant expiry (or 1 ms before): the boundaries."""
        timer = self.book.next_timer()
        assert timer is not None
        self.now = max(self.now, timer - early)

    @rule()
    def expire_due(self) -> None:
        self.carry(self.book.expire_due(self.now), PROVIDER, self.now)
        self.view.expire_due(self.now)
        for entry in self.model.values():
            if self.past_deadline(entry):
                entry.move("expire", S.EXPIRED)
            elif entry.state is S.GRANTED and not entry.live(self.now):
                entry.move("lapse", S.LAPSED)

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def escalate(self, data: st.DataObject) -> None:
        request_id = self.pick(data)
        entry = self.model[request_id]
        self.view.expire_due(self.now)  # the requester counts a silent provider's deadline out
        if self.past_deadline(entry):
            entry.move("expire", S.EXPIRED)  # the provider expires it on hearing the escalation
        escalate = partial(
            self.view.escalate, request_id, operator="li", reason="r", now_ms=self.now
        )
        if self.attempt(escalate, entry.state in (S.REFUSED, S.EXPIRED), REQUESTER):
            entry.move("escalate", S.ESCALATED)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), re_review=st.booleans())
    def review(self, data: st.DataObject, re_review: bool) -> None:
        request_id = self.pick(data)
        entry = self.model[request_id]
        decide = self.desk.re_review if re_review else self.desk.uphold
        if entry.state is not S.ESCALATED:
            with pytest.raises(errors.UsageError):
                decide(request_id, operator="wang", reason="", now_ms=self.now)
            return
        self.carry(
            decide(request_id, operator="wang", reason="", now_ms=self.now), AUTHORITY, self.now
        )
        if re_review:
            entry.deadline = CALENDAR.deadline(self.now, ANSWER_DAYS)
            entry.move("re-review", S.PENDING)
        else:
            entry.move("uphold", S.CLOSED)

    @rule(resource=st.sampled_from(sorted(RESOURCES)))
    def publish(self, resource: str) -> None:
        deliveries = self.book.publish(resource, RECORD, self.now)
        delivered = {d.request_id for d in deliveries}
        assert delivered == {
            request_id
            for request_id, entry in self.model.items()
            if entry.resource == resource and entry.live(self.now)
        }
        for delivery in deliveries:
            assert set(delivery.fields) == self.model[delivery.request_id].granted

    # -- invariants

    @invariant()
    def states_follow_the_rules(self) -> None:
        for request_id, entry in self.model.items():
            assert self.book.state(request_id) is entry.state
            seen = self.view.state(request_id)
            # The requester counts deadlines and expiries out on its own clock, maybe first.
            counted_out = (seen is S.EXPIRED and self.past_deadline(entry)) or (
                seen is S.LAPSED and entry.state is S.GRANTED and not entry.live(self.now)
            )
            assert seen is entry.state or counted_out

    @invariant()
    def live_grants_are_the_models(self) -> None:
        for resource in RESOURCES:
            live = {grant.request_id for grant in self.book.live_grants(resource, self.now)}
            assert live == {
                request_id
                for request_id, entry in self.model.items()
                if entry.resource == resource and entry.live(self.now)
            }
        held = {grant.request_id for grant in self.view.held(self.now)}
        assert held == {rid for rid, entry in self.model.items() if entry.live(self.now)}

    @invariant()
    def no_grant_beyond_its_request(self) -> None:
        for request_id, entry in self.model.items():
            grant = self.book.grant(request_id)
            if grant is not None:
                assert set(grant.items) <= entry.requested <= RESOURCES[entry.resource].items

    @invariant()
    def expired_requests_are_granted_only_after_escalation_and_re_review(self) -> None:
        for request_id in self.model:
            outcomes = [
                e.outcome for e in self.provider_events.events if e.request_id == request_id
            ]
            reopened = True
            for before, after in itertools.pairwise(outcomes):
                if after == "expired":
                    reopened = False
                elif before == "escalated" and after == "pending":
                    reopened = True
                elif after == "granted":
                    assert reopened, outcomes

    @invariant()
    def one_audit_event_per_transition(self) -> None:
        for request_id, entry in self.model.items():
            events = [
                (e.action, e.outcome)
                for e in self.provider_events.events
                if e.request_id == request_id
            ]
            assert events == entry.log
        assert len(self.provider_events.events) == sum(len(m.log) for m in self.model.values())

    @invariant()
    def the_rows_each_step_changed_are_the_whole_state(self) -> None:
        """Issue 13: writing only the rows a step reports loses no change of any step."""
        for name, machine in (("book", self.book), ("view", self.view), ("desk", self.desk)):
            stored = self.stored[name]
            for key, value in machine.take_changes().items():
                if value is None:
                    stored.pop(key, None)
                else:
                    stored[key] = value
            assert stored == machine.rows(), name


def runs(max_examples: int) -> settings:
    """How Hypothesis runs these machines: ``max_examples`` runs of up to 40 steps each."""
    return settings(
        max_examples=max_examples,
        stateful_step_count=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


SubscriptionLifecycle.TestCase.settings = runs(200)
test_subscription_lifecycle = SubscriptionLifecycle.TestCase
