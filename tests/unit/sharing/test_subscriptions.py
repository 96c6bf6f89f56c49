"""Subscriptions under the sharing rules: every path of the life cycle (issue 4, draft §19)."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

import msgpack
import pytest

from exchnode import errors
from exchnode.core import pack
from exchnode.core._events import ListSink
from exchnode.sharing import (
    CHINA_STANDARD_TIME,
    KINDS,
    CalendarCoverageError,
    Decision,
    Escalation,
    Expiry,
    GapTracker,
    Hash,
    Keep,
    MaskSet,
    Outgoing,
    RequestState,
    ResourceTerms,
    Review,
    Revocation,
    Seen,
    SubscriptionRequest,
    WorkCalendar,
    decode_message,
)
from exchnode.sharing._record_streams import RecordStream
from exchnode.sharing._states import ReviewOutcome, ShareType, sharing_authority
from tests.unit.sharing.parties import Carrier

PROVIDER = "520100.fagai"
REQUESTER = "520102.gongan"
AUTHORITY = "520100"
ITEMS = frozenset({"name", "id_number", "birth_date", "address"})
LEGAL_BASIS = "《中华人民共和国统计法》第九条: statistical microdata are not shared"
CONDITIONAL = ResourceTerms(
    code="101001/000001",
    provider=PROVIDER,
    share_type=ShareType.CONDITIONAL,
    conditions="for social assistance checks only",
    items=ITEMS,
)
OPEN = replace(CONDITIONAL, code="101001/000002", share_type=ShareType.UNCONDITIONAL)
SECRET = replace(
    CONDITIONAL, code="101001/000003", share_type=ShareType.NOT_SHARED, conditions=LEGAL_BASIS
)
CATALOG = {terms.code: terms for terms in (CONDITIONAL, OPEN, SECRET)}
RECORD = {
    "name": "张三",
    "id_number": "110101199003071234",
    "birth_date": "1990-03-07",
    "address": "贵阳市南明区",
    "internal_flag": "never granted",
}
# Wednesday 25 November 2026 is configured as a holiday.
CALENDAR = WorkCalendar.of(holidays=["2026-11-25"])


def cst_ms(year: int, month: int, day: int, hour: int = 0) -> int:
    moment = dt.datetime(year, month, day, hour, tzinfo=CHINA_STANDARD_TIME)
    return int(moment.timestamp()) * 1000


FRIDAY_3PM = cst_ms(2026, 11, 20, 15)
# Five working days from Friday: Mon 23, Tue 24, (Wed 25 off), Thu 26, Fri 27, Mon 30.
DEADLINE = cst_ms(2026, 12, 1)
HOUR = 3_600_000


def parties(request_id: bytes, code: str = CONDITIONAL.code) -> dict[str, Any]:
    """What every message about a request names: the request, its resource, its two parties."""
    return {
        "request_id": request_id,
        "resource_code": code,
        "provider": PROVIDER,
        "requester": REQUESTER,
    }


class World(Carrier):
    """One provider, one requester, their authority, and messages carried between them."""

    provider, requester, authority = PROVIDER, REQUESTER, AUTHORITY

    def __init__(self) -> None:
        self.provider_events = ListSink()
        self.requester_events = ListSink()
        self.authority_events = ListSink()
        sinks = (self.provider_events, self.requester_events, self.authority_events)
        self.seat(CATALOG.get, CALENDAR, answer_days=5, masking_secret=b"m" * 32, sinks=sinks)
        self.sent: list[Outgoing] = []

    def carried(self, item: Outgoing) -> None:
        self.sent.append(item)

    def subscribe(
        self, terms: ResourceTerms = CONDITIONAL, items: tuple[str, ...] = ("id_number", "name")
    ) -> bytes:
        out = self.view.request(
            terms,
            purpose="verify eligibility for minimum living allowance",
            scope="applicants in Nanming district, 2026",
            items=items,
            operator="li",
            now_ms=FRIDAY_3PM,
        )
        self.carry(out, REQUESTER, FRIDAY_3PM)
        return out[0].message.request_id

    def provider_does(self, outgoing: list[Outgoing], now_ms: int) -> None:
        self.carry(outgoing, PROVIDER, now_ms)

    def actions(self) -> list[tuple[str, str]]:
        return [(e.action, e.outcome) for e in self.provider_events.events]


@pytest.fixture
def world() -> World:
    return World()


def test_unconditional_is_granted_on_arrival(world: World) -> None:
    rid = world.subscribe(OPEN)
    assert world.book.state(rid) is RequestState.GRANTED
    assert world.view.state(rid) is RequestState.GRANTED
    assert world.actions() == [("request", "granted")]
    assert world.provider_events.events[0].actor == REQUESTER
    [delivery] = world.book.publish(OPEN.code, RECORD, FRIDAY_3PM + 1)
    assert delivery.fields == {"id_number": RECORD["id_number"], "name": RECORD["name"]}
    assert delivery.seq == 1
    assert world.view.held(FRIDAY_3PM + 1)[0].first_seq == 1


def test_conditional_waits_then_is_approved_with_a_subset_and_a_mask(world: World) -> None:
    rid = world.subscribe()
    assert world.book.state(rid) is RequestState.PENDING
    assert world.view.state(rid) is RequestState.PENDING
    assert world.view.answer_by(rid) == world.book.deadline(rid) == DEADLINE
    assert world.book.publish(CONDITIONAL.code, RECORD, FRIDAY_3PM) == []

    monday = cst_ms(2026, 11, 23, 10)
    masks = MaskSet.of({"id_number": Keep(6, 4)})
    world.provider_does(
        world.book.approve(rid, operator="zhang", now_ms=monday, items=["id_number"], masks=masks),
        monday,
    )
    [grant] = world.view.held(monday)
    assert grant.items == ("id_number",)
    assert grant.masks == masks
    assert grant.first_seq == 2  # record 1 was published before the grant
    [delivery] = world.book.publish(CONDITIONAL.code, RECORD, monday + 1)
    assert delivery.fields == {"id_number": "110101********1234"}
    assert delivery.seq == 2
    assert world.actions() == [("request", "pending"), ("grant", "granted")]
    assert world.provider_events.events[1].actor == "zhang"


def test_approval_cannot_exceed_the_request_or_mask_what_it_does_not_grant(world: World) -> None:
    rid = world.subscribe()
    with pytest.raises(errors.UsageError, match="address"):
        world.book.approve(rid, operator="zhang", now_ms=FRIDAY_3PM, items=["name", "address"])
    with pytest.raises(errors.MaskingError) as caught:
        world.book.approve(
            rid,
            operator="zhang",
            now_ms=FRIDAY_3PM,
            items=["name"],
            masks=MaskSet.of({"id_number": Hash()}),
        )
    assert caught.value.item == "id_number"
    with pytest.raises(errors.UsageError, match="expiry"):
        world.book.approve(rid, operator="zhang", now_ms=FRIDAY_3PM, expires_ms=FRIDAY_3PM)
    assert world.book.state(rid) is RequestState.PENDING  # nothing changed
    assert world.actions() == [("request", "pending")]


def test_refusal_carries_its_reason(world: World) -> None:
    rid = world.subscribe()
    with pytest.raises(errors.UsageError, match="reason"):
        world.book.refuse(rid, operator="zhang", reason="", now_ms=FRIDAY_3PM)
    world.provider_does(
        world.book.refuse(rid, operator="zhang", reason="scope too wide", now_ms=FRIDAY_3PM),
        FRIDAY_3PM,
    )
    assert world.view.state(rid) is RequestState.REFUSED
    assert world.view.reason(rid) == "scope too wide"
    with pytest.raises(errors.InvalidTransitionError, match="refused: cannot grant"):
        world.book.approve(rid, operator="zhang", now_ms=FRIDAY_3PM)


def test_unanswered_requests_expire_at_the_deadline_over_a_weekend_and_a_holiday(
    world: World,
) -> None:
    rid = world.subscribe()
    assert world.book.next_timer() == DEADLINE
    assert world.book.expire_due(DEADLINE - 1) == []
    # At the deadline, an answer is too late even before expire_due has run.
    with pytest.raises(errors.InvalidTransitionError, match="deadline"):
        world.book.approve(rid, operator="zhang", now_ms=DEADLINE)
    out = world.book.expire_due(DEADLINE)
    assert [item.kind for item in out] == ["sub.expired"]
    assert out[0].message.deadline_ms == DEADLINE  # type: ignore[union-attr]
    world.provider_does(out, DEADLINE)
    assert world.book.state(rid) is RequestState.EXPIRED
    assert world.view.state(rid) is RequestState.EXPIRED
    assert world.book.next_timer() is None
    assert world.book.expire_due(DEADLINE + HOUR) == []
    assert world.actions() == [("request", "pending"), ("expire", "expired")]


def test_escalation_is_recorded_and_a_re_review_reopens_the_request(world: World) -> None:
    rid = world.subscribe()
    world.provider_does(
        world.book.refuse(rid, operator="zhang", reason="no", now_ms=FRIDAY_3PM), FRIDAY_3PM
    )
    monday = cst_ms(2026, 11, 23, 9)
    out = world.view.escalate(rid, operator="li", reason="the purpose is lawful", now_ms=monday)
    assert out[0].recipients == (AUTHORITY, PROVIDER)
    world.carry(out, REQUESTER, monday)
    assert world.book.state(rid) is RequestState.ESCALATED
    [case] = world.desk.open_cases()
    assert (case.request_id, case.grounds, case.round) == (rid, RequestState.REFUSED, 1)

    tuesday = cst_ms(2026, 11, 24, 9)
    world.carry(
        world.desk.re_review(rid, operator="wang", reason="look again", now_ms=tuesday),
        AUTHORITY,
        tuesday,
    )
    assert world.book.state(rid) is RequestState.PENDING
    # A fresh deadline, counted from the direction: Thu 26, Fri 27, Mon 30, Tue 1, Wed 2.
    assert world.book.deadline(rid) == cst_ms(2026, 12, 3)
    assert world.view.state(rid) is RequestState.PENDING
    assert world.view.answer_by(rid) == cst_ms(2026, 12, 3)
    world.provider_does(world.book.approve(rid, operator="zhang", now_ms=tuesday), tuesday)
    assert world.view.state(rid) is RequestState.GRANTED
    assert world.actions() == [
        ("request", "pending"),
        ("refuse", "refused"),
        ("escalate", "escalated"),
        ("re-review", "pending"),
        ("grant", "granted"),
    ]
    assert [(e.action, e.actor) for e in world.authority_events.events] == [
        ("escalate", REQUESTER),
        ("re-review", "wang"),
    ]


def test_an_upheld_escalation_closes_the_request(world: World) -> None:
    rid = world.subscribe()
    world.provider_does(world.book.expire_due(DEADLINE), DEADLINE)
    world.carry(
        world.view.escalate(rid, operator="li", reason="r", now_ms=DEADLINE), REQUESTER, DEADLINE
    )
    world.carry(
        world.desk.uphold(rid, operator="wang", reason="", now_ms=DEADLINE), AUTHORITY, DEADLINE
    )
    assert world.book.state(rid) is RequestState.CLOSED
    assert world.view.state(rid) is RequestState.CLOSED
    with pytest.raises(errors.InvalidTransitionError):
        world.book.approve(rid, operator="zhang", now_ms=DEADLINE)
    with pytest.raises(errors.InvalidTransitionError):
        world.view.escalate(rid, operator="li", reason="again", now_ms=DEADLINE)


def test_a_silent_provider_cannot_block_an_escalation(world: World) -> None:
    rid = world.subscribe()
    # The requester counts the deadline out itself; the provider's expire_due has not run.
    assert world.view.expire_due(DEADLINE - 1) == []
    assert world.view.expire_due(DEADLINE) == [rid]
    out = world.view.escalate(rid, operator="li", reason="no answer", now_ms=DEADLINE + HOUR)
    world.carry(out, REQUESTER, DEADLINE + HOUR)
    assert world.book.state(rid) is RequestState.ESCALATED
    assert world.actions() == [
        ("request", "pending"),
        ("expire", "expired"),
        ("escalate", "escalated"),
    ]
    # The provider's late expiry notice does not undo the requester's escalation.
    assert world.view.state(rid) is RequestState.ESCALATED


def test_not_shared_is_refused_at_once_with_the_legal_basis(world: World) -> None:
    rid = world.subscribe(SECRET)
    assert world.book.state(rid) is RequestState.NOT_SHARED
    assert world.view.state(rid) is RequestState.NOT_SHARED
    assert world.view.reason(rid) == LEGAL_BASIS
    decision = world.sent[-1].message
    assert isinstance(decision, Decision)
    assert decision.status is RequestState.NOT_SHARED
    assert decision.reason == LEGAL_BASIS
    with pytest.raises(errors.InvalidTransitionError, match="not_shared"):
        world.view.escalate(rid, operator="li", reason="r", now_ms=FRIDAY_3PM)
    assert world.book.next_timer() is None


def test_revocation_takes_effect_for_the_next_record(world: World) -> None:
    rid = world.subscribe(OPEN)
    assert len(world.book.publish(OPEN.code, RECORD, FRIDAY_3PM)) == 1
    out = world.book.revoke(rid, operator="zhang", reason="purpose fulfilled", now_ms=FRIDAY_3PM)
    revocation = out[0].message
    assert isinstance(revocation, Revocation)
    assert revocation.last_seq == 1
    assert revocation.version == 2
    world.provider_does(out, FRIDAY_3PM)
    assert world.book.publish(OPEN.code, RECORD, FRIDAY_3PM) == []
    assert world.book.live_grants(OPEN.code, FRIDAY_3PM) == []
    assert world.view.state(rid) is RequestState.REVOKED
    assert world.view.held(FRIDAY_3PM) == []
    assert world.view.covers(rid, 1)
    assert not world.view.covers(rid, 2)
    with pytest.raises(errors.InvalidTransitionError):
        world.book.revoke(rid, operator="zhang", reason="again", now_ms=FRIDAY_3PM)


def test_a_grant_ends_at_its_expiry(world: World) -> None:
    rid = world.subscribe()
    until = FRIDAY_3PM + 48 * HOUR
    world.provider_does(
        world.book.approve(rid, operator="zhang", now_ms=FRIDAY_3PM, expires_ms=until), FRIDAY_3PM
    )
    assert world.book.next_timer() == until
    assert len(world.book.publish(CONDITIONAL.code, RECORD, until - 1)) == 1
    assert world.book.publish(CONDITIONAL.code, RECORD, until) == []  # before expire_due too
    assert world.view.held(until) == []
    assert world.view.expire_due(until) == [rid]  # the requester knows the expiry too
    assert world.view.state(rid) is RequestState.LAPSED
    with pytest.raises(errors.InvalidTransitionError, match="lapsed"):
        world.book.revoke(rid, operator="zhang", reason="r", now_ms=until)
    assert world.book.expire_due(until) == []  # the subscriber knows the expiry already
    assert world.book.state(rid) is RequestState.LAPSED
    assert world.actions()[-1] == ("lapse", "lapsed")


def test_bad_items_are_named(world: World) -> None:
    with pytest.raises(errors.UsageError, match="'salary'"):
        world.view.request(
            CONDITIONAL, purpose="p", scope="s", items=["salary"], operator="li", now_ms=1
        )
    forged = SubscriptionRequest(
        **parties(b"x" * 16),
        purpose="p",
        scope="s",
        items=("name", "salary"),
        at_ms=FRIDAY_3PM,
    )
    with pytest.raises(errors.UnknownItemError) as caught:
        world.book.on_request(forged, sender=REQUESTER, now_ms=FRIDAY_3PM)
    assert caught.value.item == "salary"
    assert caught.value.code == "unknown-item"


def test_a_grant_beyond_the_request_is_refused_by_the_subscriber(world: World) -> None:
    rid = world.subscribe(items=("name",))
    overreach = Decision(
        **parties(rid),
        version=9,
        at_ms=FRIDAY_3PM,
        status=RequestState.GRANTED,
        items=("id_number", "name"),
        first_seq=1,
    )
    with pytest.raises(errors.UnknownItemError) as caught:
        world.view.on_decision(overreach, sender=PROVIDER, now_ms=FRIDAY_3PM)
    assert caught.value.item == "id_number"
    assert world.view.state(rid) is RequestState.PENDING


def test_older_statements_never_override_newer_ones(world: World) -> None:
    rid = world.subscribe()
    pending = world.sent[-1].message
    world.provider_does(world.book.approve(rid, operator="zhang", now_ms=FRIDAY_3PM), FRIDAY_3PM)
    assert isinstance(pending, Decision)
    assert world.view.on_decision(pending, sender=PROVIDER, now_ms=FRIDAY_3PM) is False
    assert world.view.state(rid) is RequestState.GRANTED


def test_only_the_party_named_may_speak(world: World) -> None:
    rid = world.subscribe()
    request = world.sent[0].message
    assert isinstance(request, SubscriptionRequest)
    other = replace(request, request_id=b"o" * 16)
    with pytest.raises(errors.NotAuthorisedError):
        world.book.on_request(other, sender="520102.minzheng", now_ms=FRIDAY_3PM)
    with pytest.raises(errors.NotAuthorisedError):
        world.book.on_request(replace(other, provider="520100.gongan"), sender=REQUESTER, now_ms=1)
    pending = world.sent[-1].message
    assert isinstance(pending, Decision)
    with pytest.raises(errors.NotAuthorisedError):
        world.view.on_decision(replace(pending, version=5), sender=AUTHORITY, now_ms=1)
    review = Review(
        **parties(rid),
        authority=AUTHORITY,
        round=1,
        at_ms=1,
        outcome=ReviewOutcome.RE_REVIEW,
        reason="",
    )
    with pytest.raises(errors.NotAuthorisedError):
        world.book.on_review(review, sender="520000", now_ms=1)
    escalation = Escalation(
        **parties(rid),
        authority="520000",
        round=1,
        at_ms=1,
        grounds=RequestState.REFUSED,
        reason="r",
    )
    with pytest.raises(errors.NotAuthorisedError):
        world.desk.on_escalation(escalation, sender=REQUESTER, now_ms=1)
    with pytest.raises(errors.NotAuthorisedError):
        world.book.on_escalation(escalation, sender=REQUESTER, now_ms=1)
    # Escalating a request that is still pending (and not past its deadline) is out of order.
    with pytest.raises(errors.UnexpectedMessageError):
        world.book.on_escalation(
            replace(escalation, authority=AUTHORITY), sender=REQUESTER, now_ms=1
        )


def test_duplicates_conflicts_and_unknowns(world: World) -> None:
    rid = world.subscribe()
    request = world.sent[0].message
    assert isinstance(request, SubscriptionRequest)
    assert world.book.on_request(request, sender=REQUESTER, now_ms=FRIDAY_3PM + 1) == []
    with pytest.raises(errors.RequestConflictError):
        world.book.on_request(replace(request, purpose="other"), sender=REQUESTER, now_ms=1)
    with pytest.raises(errors.UnknownResourceError):
        world.book.on_request(
            replace(request, request_id=b"u" * 16, resource_code="101001/999999"),
            sender=REQUESTER,
            now_ms=1,
        )
    with pytest.raises(errors.UnknownRequestError):
        world.view.on_decision(
            replace(world.sent[-1].message, request_id=b"z" * 16),  # type: ignore[type-var]
            sender=PROVIDER,
            now_ms=1,
        )
    with pytest.raises(errors.UsageError):
        world.book.approve(b"z" * 16, operator="zhang", now_ms=1)
    assert world.actions() == [("request", "pending")]
    assert world.book.state(rid) is RequestState.PENDING


def test_a_bad_reason_changes_nothing(world: World) -> None:
    rid = world.subscribe()
    with pytest.raises(errors.UsageError, match="reason"):
        world.book.refuse(rid, operator="zhang", reason="x" * 5000, now_ms=FRIDAY_3PM)
    world.provider_does(
        world.book.refuse(rid, operator="zhang", reason="no", now_ms=FRIDAY_3PM), FRIDAY_3PM
    )
    with pytest.raises(errors.UsageError, match="reason"):
        world.view.escalate(rid, operator="li", reason="", now_ms=FRIDAY_3PM)
    assert world.view.state(rid) is RequestState.REFUSED
    world.carry(
        world.view.escalate(rid, operator="li", reason="r", now_ms=FRIDAY_3PM), REQUESTER, 1
    )
    with pytest.raises(errors.UsageError, match="reason"):
        world.desk.uphold(rid, operator="wang", reason="x" * 5000, now_ms=FRIDAY_3PM)
    assert len(world.desk.open_cases()) == 1
    assert world.actions() == [
        ("request", "pending"),
        ("refuse", "refused"),
        ("escalate", "escalated"),
    ]


def test_audit_events_carry_no_contents(world: World) -> None:
    rid = world.subscribe(OPEN)
    world.book.publish(OPEN.code, RECORD, FRIDAY_3PM)
    for event in world.provider_events.events + world.requester_events.events:
        text = repr(event)
        assert "eligibility" not in text  # the purpose
        assert RECORD["id_number"] not in text
        assert event.request_id == rid


# --- messages on the wire -------------------------------------------------------------

PARTIES = parties(b"r" * 16, "101001/000001")
# The first round of its case before the authority.
CASE = {**PARTIES, "authority": AUTHORITY, "round": 1, "at_ms": DEADLINE}
SAMPLES: list[Any] = [
    SubscriptionRequest(
        **PARTIES,
        purpose="p",
        scope="s",
        items=("name", "id_number"),
        at_ms=FRIDAY_3PM,
    ),
    Decision(
        **PARTIES,
        version=2,
        at_ms=FRIDAY_3PM,
        status=RequestState.GRANTED,
        items=("id_number", "name"),
        masks=MaskSet.of({"id_number": Keep()}),
        expires_ms=DEADLINE,
        first_seq=7,
    ),
    Decision(
        **PARTIES,
        version=1,
        at_ms=FRIDAY_3PM,
        status=RequestState.PENDING,
        answer_by_ms=DEADLINE,
    ),
    Revocation(
        request_id=b"r" * 16,
        resource_code="101001/000001",
        provider=PROVIDER,
        subscriber=REQUESTER,
        version=3,
        at_ms=FRIDAY_3PM,
        reason="done",
        last_seq=12,
    ),
    Expiry(**PARTIES, version=2, at_ms=DEADLINE, deadline_ms=DEADLINE),
    Escalation(**CASE, grounds=RequestState.EXPIRED, reason="no answer"),
    Review(**CASE, outcome=ReviewOutcome.UPHOLD, reason=""),
]


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_messages_round_trip(message: Any) -> None:
    assert message.KIND in KINDS
    assert decode_message(message.KIND, message.encode()) == message


def test_items_are_normalised_to_sorted_order() -> None:
    assert SAMPLES[0].items == ("id_number", "name")
    with pytest.raises(errors.UsageError, match="unique"):
        replace(SAMPLES[0], items=("name", "name"))


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_decoding_names_every_bad_field(message: Any) -> None:
    fields = msgpack.unpackb(message.encode())
    for index, name in enumerate(type(message).CODECS, start=1):
        broken = list(fields)
        broken[index] = 1.5  # a float: no field accepts one
        with pytest.raises(errors.MalformedError) as caught:
            type(message).decode(pack(broken))
        assert caught.value.field == f"{message.KIND}.{name}"


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_decoding_checks_version_shape_and_canonical_form(message: Any) -> None:
    fields = msgpack.unpackb(message.encode())
    with pytest.raises(errors.UnsupportedVersionError):
        type(message).decode(pack([2, *fields[1:]]))
    with pytest.raises(errors.MalformedError, match="array of"):
        type(message).decode(pack(fields[:-1]))
    with pytest.raises(errors.MalformedError):
        type(message).decode(message.encode() + b"\x00")
    data = message.encode()
    non_canonical = b"\xdc" + len(fields).to_bytes(2, "big") + data[1:]
    with pytest.raises(errors.MalformedError, match="canonical"):
        type(message).decode(non_canonical)


def test_inconsistent_decisions_are_refused_both_ways() -> None:
    granted = SAMPLES[1]
    with pytest.raises(errors.UsageError, match="data items"):
        replace(granted, items=(), masks=MaskSet())
    with pytest.raises(errors.UsageError, match="reason"):
        replace(SAMPLES[2], status=RequestState.REFUSED, answer_by_ms=None)
    with pytest.raises(errors.UsageError, match="answer_by"):
        replace(SAMPLES[2], answer_by_ms=None)
    fields = msgpack.unpackb(granted.encode())
    fields[11] = [["address", ["hash"]]]  # a mask on an item not granted
    with pytest.raises(errors.MalformedError, match="not granted"):
        Decision.decode(pack(fields))


def test_unknown_kind_is_a_usage_error() -> None:
    with pytest.raises(errors.UsageError):
        decode_message("receipt", b"")


def test_the_sharing_authority_is_the_hub_of_the_providers_division() -> None:
    assert sharing_authority("520100.fagai") == "520100"
    assert sharing_authority("520102.gongan") == "520102"
    assert sharing_authority("520100") == "520000"
    with pytest.raises(errors.UsageError):
        sharing_authority("000000")


# --- record sequence numbers ------------------------------------------------------------


def test_record_streams_count_per_resource() -> None:
    stream = RecordStream()
    assert [stream.assign("a"), stream.assign("a"), stream.assign("b")] == [1, 2, 1]
    assert stream.last("a") == 2
    assert RecordStream({"a": 41}).assign("a") == 42


def test_gap_tracker_reports_high_water_gaps_and_duplicates() -> None:
    tracker = GapTracker(after=4)  # a grant whose first record is 5
    assert tracker.observe(5) is Seen.NEW
    assert tracker.observe(8) is Seen.NEW
    assert tracker.observe(11) is Seen.NEW
    assert tracker.high_water == 5
    assert tracker.missing() == [(6, 7), (9, 10)]
    assert tracker.observe(8) is Seen.DUPLICATE
    assert tracker.observe(3) is Seen.DUPLICATE
    for seq in (6, 7, 9):
        tracker.observe(seq)
    assert tracker.high_water == 9
    assert tracker.missing() == [(10, 10)]
    tracker.observe(10)
    assert (tracker.high_water, tracker.missing()) == (11, [])
    with pytest.raises(errors.UsageError):
        tracker.observe(0)
    with pytest.raises(errors.UsageError):
        GapTracker(after=-1)


def test_a_deadline_the_calendar_cannot_count_refuses_the_request_and_keeps_nothing() -> None:
    """A request whose deadline would fall in a year the calendar does not cover is refused
    (the error names the year), and the book holds no half-made entry for it."""
    world = World()
    world.book.calendar = WorkCalendar(covered_years=frozenset({2026}))
    late = cst_ms(2026, 12, 28, 10)  # five working days from here end in January 2027
    out = world.view.request(
        CONDITIONAL,
        purpose="verify eligibility for minimum living allowance",
        scope="applicants in Nanming district, 2026",
        items=("name",),
        operator="li",
        now_ms=late,
    )
    (request,) = [item.message for item in out]
    with pytest.raises(CalendarCoverageError, match="does not cover 2027"):
        world.book.on_request(request, sender=REQUESTER, now_ms=late)
    with pytest.raises(errors.UsageError, match="no request"):
        world.book.deadline(request.request_id)
    assert world.actions() == []
    world.book.calendar = WorkCalendar(covered_years=frozenset({2026, 2027}))
    world.book.on_request(request, sender=REQUESTER, now_ms=late)  # the same request, now taken
    assert world.book.deadline(request.request_id) == cst_ms(2027, 1, 5)
