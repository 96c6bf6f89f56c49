"""Oversight reports from real audit records: the provider's book, records, the catalog, zombies."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterable, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchnode.audit import (
    Actor,
    AuditEntry,
    AuditLogState,
    AuditRecord,
    Category,
    LogStatus,
    Outcome,
    OversightBuilder,
    OversightReport,
    Resource,
    Role,
    Subject,
    SubjectKind,
    decode_record,
    details,
    entry_from_event,
)
from exchnode.audit._oversight import NodeLog, build_report, working_days_between
from exchnode.catalog import ShareType, UpdateCycle
from exchnode.core import AuditEvent
from exchnode.core._events import ListSink
from exchnode.errors import UsageError
from exchnode.sharing import (
    CHINA_STANDARD_TIME,
    Escalation,
    RequestState,
    ResourceTerms,
    Review,
    SubscriptionBook,
    SubscriptionRequest,
    WorkCalendar,
)
from exchnode.sharing._states import ReviewOutcome
from exchnode.testing import seeded_identity

PROVIDER = "520102.gongan"  # county
REQUESTER = "520302.shebao"  # county, other city
CITY = "520100.fagai"  # city
HUB = "520102"
ITEMS = frozenset({"姓名", "身份证号"})


def resource_terms(code: str, share_type: ShareType, conditions: str) -> ResourceTerms:
    return ResourceTerms(
        code=code, provider=PROVIDER, share_type=share_type, conditions=conditions, items=ITEMS
    )


COND = resource_terms("101001/000001", ShareType.CONDITIONAL, "低保核查")
OPEN = resource_terms("101001/000002", ShareType.UNCONDITIONAL, "")
SECRET = resource_terms("101001/000003", ShareType.NOT_SHARED, "法律依据")
TERMS = {t.code: t for t in (COND, OPEN, SECRET)}
# Wednesday 25 November 2026 is a holiday.
CALENDAR = WorkCalendar.of(holidays=["2026-11-25"])
HOUR = 3_600_000
DAY = 24 * HOUR


def cst(year: int, month: int, day: int, hour: int = 0) -> int:
    moment = dt.datetime(year, month, day, hour, tzinfo=CHINA_STANDARD_TIME)
    return int(moment.timestamp()) * 1000


FRIDAY = cst(2026, 11, 20, 15)
NOW = cst(2026, 12, 20, 12)


def logged(node: str, entries: Iterable[AuditEntry | AuditEvent]) -> list[AuditRecord]:
    """Real records of ``node``'s log: numbered, chained, encoded, decoded again."""
    log = AuditLogState(seeded_identity(node))
    batch = [e if isinstance(e, AuditEntry) else entry_from_event(e) for e in entries]
    return [decode_record(r.data) for r in log.append(batch)]


def request_id(n: int) -> bytes:
    return n.to_bytes(16, "big")


def request(
    n: int, terms: ResourceTerms, at_ms: int, requester: str = REQUESTER
) -> SubscriptionRequest:
    return SubscriptionRequest(
        request_id=request_id(n),
        requester=requester,
        provider=PROVIDER,
        resource_code=terms.code,
        purpose="核验",
        scope="本区",
        items=("姓名",),
        at_ms=at_ms,
    )


def book(sink: ListSink, answer_days: int = 10) -> SubscriptionBook:
    return SubscriptionBook(
        PROVIDER,
        TERMS.get,
        sink=sink,
        masking_secret=b"m" * 32,
        calendar=CALENDAR,
        answer_days=answer_days,
    )


def records_event(node: str, action: str, code: str, rid: bytes, first: int, last: int,
                  counterpart: str, at_ms: int) -> AuditEvent:  # fmt: skip
    """What ``sharing.SharingService._record_event`` emits."""
    return AuditEvent(
        at_ms=at_ms,
        actor=node,
        action=action,
        resource_code=code,
        request_id=rid,
        outcome=f"seq:{first}-{last}",
        counterpart=counterpart,
    )


def catalog() -> list[Resource]:
    def resource(terms: ResourceTerms, cycle: UpdateCycle, name: str) -> Resource:
        return Resource(
            provider=terms.provider,
            code=terms.code,
            version=1,
            updated_ms=FRIDAY - 30 * DAY,
            name=name,
            share_type=terms.share_type,
            update_cycle=cycle,
        )

    return [
        resource(COND, UpdateCycle.DAILY, "人口基本信息"),
        resource(OPEN, UpdateCycle.MONTHLY, "户籍信息"),
        resource(SECRET, UpdateCycle.IRREGULAR, "案件信息"),
        Resource(
            provider=CITY,
            code="102001/000001",
            version=3,
            updated_ms=NOW - 2 * DAY,
            name="企业登记信息",
            share_type=ShareType.UNCONDITIONAL,
            update_cycle=UpdateCycle.WEEKLY,
        ),
    ]


def a_provider_log() -> list[AuditRecord]:
    """Six requests at the provider, each taking one path of the life cycle, and records."""
    sink = ListSink()
    b = book(sink)
    monday = cst(2026, 11, 23, 10)
    thursday = cst(2026, 11, 26, 10)
    b.on_request(request(1, OPEN, FRIDAY), sender=REQUESTER, now_ms=FRIDAY)  # granted on arrival
    for n in (2, 3, 4, 5):
        b.on_request(request(n, COND, FRIDAY), sender=REQUESTER, now_ms=FRIDAY)
    b.on_request(request(6, SECRET, FRIDAY, CITY), sender=CITY, now_ms=FRIDAY)  # not shared
    b.approve(request_id(2), operator="王科长", now_ms=monday)  # 1 working day, 67 h
    b.refuse(request_id(3), operator="王科长", reason="用途不符", now_ms=thursday)  # 3 days, 139 h
    b.expire_due(cst(2026, 12, 20))  # 4 and 5 expire at the deadline
    b.revoke(request_id(2), operator="王科长", reason="停止", now_ms=cst(2026, 12, 20, 1))
    events = list(sink.events)
    events.append(records_event(PROVIDER, "records.publish", COND.code, b"", 1, 40, "", NOW - HOUR))
    events.append(
        records_event(
            PROVIDER, "records.send", COND.code, request_id(2), 1, 40, REQUESTER, NOW - HOUR
        )
    )
    return logged(PROVIDER, events)


def a_requester_log() -> list[AuditRecord]:
    events = [
        AuditEvent(at_ms=FRIDAY, actor="李", action="request", resource_code=COND.code,
                   request_id=request_id(2), outcome="sent", counterpart=PROVIDER),
        AuditEvent(at_ms=FRIDAY, actor=PROVIDER, action="sub.decision", resource_code=COND.code,
                   request_id=request_id(2), outcome="granted", counterpart=PROVIDER),
        records_event(REQUESTER, "records.receive", COND.code, request_id(2), 1, 38, PROVIDER,
                      NOW - HOUR),
    ]  # fmt: skip
    return logged(REQUESTER, events)


def report(**kwargs: object) -> OversightReport:
    logs: dict[str, NodeLog | Sequence[AuditRecord]] = {
        PROVIDER: a_provider_log(),
        REQUESTER: a_requester_log(),
    }
    return build_report(logs, catalog(), now_ms=NOW, calendar=CALENDAR, **kwargs)  # type: ignore[arg-type]


def department(r: OversightReport, name: str) -> dict[str, object]:
    (found,) = [d for d in r.to_json()["departments"] if d["department"] == name]
    return found


# --- counting -------------------------------------------------------------------------------


def test_the_provider_counts_each_request_once_by_its_last_decision() -> None:
    d = department(report(), PROVIDER)
    assert d["level"] == "county"
    assert d["log"] == "verified"
    assert (d["requested"], d["granted"], d["refused"], d["expired"], d["pending"]) == (
        6,
        2,
        2,
        2,
        0,
    )
    assert d["refused_not_shared"] == 1  # the not-shared request is one of the refused
    assert d["revoked"] == 1  # and the revoked grant still counts as granted
    assert d["requested"] == d["granted"] + d["refused"] + d["expired"] + d["pending"]


def test_conditional_answers_in_hours_and_working_days_against_the_rule() -> None:
    d = department(report(), PROVIDER)
    # Friday 15:00 -> Monday 10:00 (67 h, working day 1) and -> Thursday 10:00 across the
    # Wednesday holiday (139 h, working day 3); the two expiries are over the rule.
    assert d["conditional_answers"] == 2
    assert d["answer_hours_median"] == 103.0
    assert d["answer_hours_max"] == 139.0
    assert d["answer_workdays_median"] == 2.0
    assert d["answer_workdays_max"] == 3
    assert (d["answers_within_rule"], d["answers_over_rule"]) == (2, 2)


def test_a_late_answer_is_over_the_rule_even_if_the_node_allowed_it() -> None:
    # The provider's node runs a 15-day local rule; the report holds it to 10.
    sink = ListSink()
    b = book(sink, answer_days=15)
    b.on_request(request(1, COND, FRIDAY), sender=REQUESTER, now_ms=FRIDAY)
    b.approve(request_id(1), operator="王", now_ms=cst(2026, 12, 8, 9))  # working day 11
    r = build_report({PROVIDER: logged(PROVIDER, sink.events)}, [], now_ms=NOW, calendar=CALENDAR)
    d = department(r, PROVIDER)
    assert (d["answers_within_rule"], d["answers_over_rule"]) == (0, 1)
    assert d["answer_workdays_max"] == 11
    # The same log read against a 15-day rule: within.
    r = build_report(
        {PROVIDER: logged(PROVIDER, sink.events)}, [], now_ms=NOW, calendar=CALENDAR, answer_days=15
    )
    assert department(r, PROVIDER)["answers_within_rule"] == 1


def test_a_re_review_reopens_the_clock_and_the_escalation_is_counted() -> None:
    sink = ListSink()
    b = book(sink)
    b.on_request(request(1, COND, FRIDAY), sender=REQUESTER, now_ms=FRIDAY)
    refused_at = cst(2026, 11, 23, 9)
    b.refuse(request_id(1), operator="王", reason="不符", now_ms=refused_at)
    escalation = Escalation(
        request_id=request_id(1), requester=REQUESTER, provider=PROVIDER, authority=HUB,
        resource_code=COND.code, round=1, at_ms=refused_at + HOUR,
        grounds=RequestState.REFUSED, reason="确有需要",
    )  # fmt: skip
    b.on_escalation(escalation, sender=REQUESTER, now_ms=refused_at + HOUR)
    reviewed = cst(2026, 11, 27, 9)
    review = Review(
        request_id=request_id(1), authority=HUB, requester=REQUESTER, provider=PROVIDER,
        resource_code=COND.code, round=1, at_ms=reviewed, outcome=ReviewOutcome.RE_REVIEW,
        reason="请重新审核",
    )  # fmt: skip
    b.on_review(review, sender=HUB, now_ms=reviewed)
    r = build_report({PROVIDER: logged(PROVIDER, sink.events)}, [], now_ms=NOW, calendar=CALENDAR)
    d = department(r, PROVIDER)
    assert (d["requested"], d["pending"], d["refused"], d["escalated"]) == (1, 1, 0, 1)
    b.approve(request_id(1), operator="王", now_ms=reviewed + 2 * HOUR)
    r = build_report({PROVIDER: logged(PROVIDER, sink.events)}, [], now_ms=NOW, calendar=CALENDAR)
    d = department(r, PROVIDER)
    assert (d["granted"], d["pending"], d["conditional_answers"]) == (1, 0, 2)
    assert d["answer_hours_max"] == 66.0  # the first answer; the second took 2 h from the re-review


def test_the_requester_side_is_not_a_case_and_records_count_at_both_ends() -> None:
    r = report()
    requester = department(r, REQUESTER)
    assert requester["requested"] == 0  # its own 'request ... sent' is not a request it holds
    assert requester["records_received"] == 38
    provider = department(r, PROVIDER)
    assert provider["records_published"] == 40
    assert provider["records_sent"] == 40
    assert provider["records_used"] == 38  # received by its user, as the user's log says


def test_a_count_detail_is_exact_where_a_range_is_not() -> None:
    entry = AuditEntry(
        time_ms=NOW - HOUR,
        category=Category.RECORD,
        action="records.receive",
        actor=Actor.node(REQUESTER),
        subject=Subject(SubjectKind.REQUEST, request_id(2)),
        outcome=Outcome.ok("seq:1-10"),
        detail=details(count=7, counterpart=PROVIDER, resource=COND.code),
    )
    r = build_report({REQUESTER: logged(REQUESTER, [entry])}, [], now_ms=NOW)
    assert department(r, REQUESTER)["records_received"] == 7


def test_resources_by_share_type_per_department_and_level() -> None:
    data = report().to_json()
    provider = department(report(), PROVIDER)
    assert (provider["resources"], provider["unconditional"], provider["conditional"],
            provider["not_shared"]) == (3, 1, 1, 1)  # fmt: skip
    assert provider["shared_ratio"] == round(2 / 3, 4)
    assert provider["not_shared_ratio"] == round(1 / 3, 4)
    city = department(report(), CITY)
    assert city["log"] == "not-read"  # known from the catalog only
    assert city["resources"] == 1
    levels = {row["level"]: row for row in data["levels"]}
    assert set(levels) == {"city", "county"}
    assert levels["county"]["departments"] == 2
    assert levels["county"]["resources"] == 3
    assert levels["city"]["shared_ratio"] == 1.0
    assert data["totals"]["resources"] == 4
    assert data["totals"]["shared_ratio"] == 0.75
    assert data["totals"]["requested"] == 6
    assert data["totals"]["answer_hours_max"] == 139.0


def test_catalog_copies_merge_by_version_and_a_tombstone_outranks() -> None:
    base = catalog()[3]
    older = Resource(
        provider=base.provider, code=base.code, version=2, updated_ms=base.updated_ms,
        name="旧名", share_type=ShareType.CONDITIONAL, update_cycle=UpdateCycle.WEEKLY,
    )  # fmt: skip
    gone = Resource(provider=CITY, code=base.code, version=4, updated_ms=NOW, withdrawn=True)
    builder = OversightBuilder()
    builder.add_resources([base, older])
    assert department(builder.build(NOW), CITY)["unconditional"] == 1
    builder.add_resources([gone, base])
    assert department(builder.build(NOW), CITY)["resources"] == 0
    with pytest.raises(UsageError, match="share type"):
        Resource(provider=CITY, code=base.code, version=1, updated_ms=NOW)


# --- stale resources and zombie nodes ----------------------------------------------------


def test_stale_resources_by_declared_cycle_since_the_last_publication() -> None:
    stale = {(s["provider"], s["code"]): s for s in report().to_json()["stale_resources"]}
    # Daily, published an hour ago: fresh.  Monthly, catalogued 60 days ago and never
    # published since: stale by the catalog's date.  Irregular: never.  Weekly, 2 days: fresh.
    assert set(stale) == {(PROVIDER, OPEN.code)}
    row = stale[(PROVIDER, OPEN.code)]
    assert row["source"] == "catalog"
    assert row["update_cycle"] == "monthly"
    assert row["overdue_days"] == pytest.approx(60 - 31 - 1, abs=0.2)
    later = report()
    assert later.stale[0].name == "户籍信息"
    # Three days on, the daily resource is stale by its last publication.
    r = build_report(
        {PROVIDER: a_provider_log()}, catalog(), now_ms=NOW + 3 * DAY, calendar=CALENDAR
    )
    by_code = {s.code: s for s in r.stale}
    assert by_code[COND.code].source == "records"
    assert by_code[COND.code].last_update_ms == NOW - HOUR
    assert SECRET.code not in by_code


def custody(node: str, at_ms: int, action: str = "relay") -> AuditEntry:
    """A custody record as the node will write it (category envelope, actor the node)."""
    return AuditEntry(
        time_ms=at_ms,
        category=Category.ENVELOPE,
        action=action,
        actor=Actor.node(node),
        subject=Subject(SubjectKind.NODE, "520100"),
        outcome=Outcome.ok("taken"),
        detail=details(count=3),
    )


def auditor_read(node: str, at_ms: int) -> AuditEntry:
    return AuditEntry(
        time_ms=at_ms,
        category=Category.ADMINISTRATION,
        action="audit.read",
        actor=Actor(Role.AUDITOR, "审计员"),
    )


def restart(node: str, at_ms: int) -> AuditEntry:
    """What the daemon logs at every start (node/admin.py note_start)."""
    return AuditEntry(
        time_ms=at_ms,
        category=Category.CONFIGURATION,
        action="config.loaded",
        actor=Actor.node(node),
        outcome=Outcome.ok("unchanged"),
        detail=details(digest=bytes(32)),
    )


def test_zombie_nodes_and_the_unreachable_are_named() -> None:
    logs: dict[str, NodeLog | Sequence[AuditRecord]] = {
        HUB: logged(HUB, [custody(HUB, NOW - 2 * DAY, "accept")]),
        # Idle for 40 days: a restart an hour ago and the auditor's reading are not traffic.
        "520102.minzheng": logged(
            "520102.minzheng",
            [
                custody("520102.minzheng", NOW - 40 * DAY),
                restart("520102.minzheng", NOW - HOUR),
                auditor_read("520102.minzheng", NOW - DAY),
            ],
        ),
        "520102.jiaoyu": NodeLog("520102.jiaoyu", LogStatus.VERIFIED, ()),  # nothing ever
        "520103": NodeLog("520103", LogStatus.UNREACHABLE, problem="cannot reach the operator API"),
        "520102.tongji": NodeLog(
            "520102.tongji",
            LogStatus.FAILED,
            logged("520102.tongji", [custody("520102.tongji", NOW - HOUR)]),
            problem="changed-record at seq 4",
        ),
    }
    r = build_report(logs, [], now_ms=NOW, zombie_after_s=30 * 86_400)
    nodes = {n["node"]: n for n in r.to_json()["nodes"]}
    assert set(nodes) == set(logs)
    assert [n.node for n in r.zombies] == ["520102.jiaoyu", "520102.minzheng"]
    assert nodes["520102.minzheng"]["last_traffic_ms"] == NOW - 40 * DAY
    assert nodes["520102.minzheng"]["records"] == 3
    assert nodes["520102.jiaoyu"]["last_traffic"] == ""
    assert nodes["520103"]["zombie"] is None
    assert nodes["520103"]["log"] == "unreachable"
    assert nodes["520102.tongji"] == {**nodes["520102.tongji"], "zombie": False, "log": "failed"}
    assert {u["node"] for u in r.to_json()["unverified"]} == {"520103", "520102.tongji"}
    text = r.table()
    assert "zombie nodes (no traffic for 30 d): 2; logs not verified or not read: 2" in text
    assert "cannot reach the operator API" in text
    assert "changed-record at seq 4" in text
    # A shorter threshold: the hub, idle 2 days, is a zombie too.
    assert len(build_report(logs, [], now_ms=NOW, zombie_after_s=86_400).zombies) == 3


def test_a_period_counts_flows_since_its_start_only() -> None:
    r = report(since_ms=cst(2026, 11, 21))  # after the Friday requests
    d = department(r, PROVIDER)
    assert d["requested"] == 0
    assert d["answers_over_rule"] == 0  # the decisions are about requests before the period
    assert d["records_published"] == 40
    assert d["resources"] == 3  # the catalog is as of now


def test_a_record_of_another_node_is_refused() -> None:
    with pytest.raises(UsageError, match=r"a record of 520302\.shebao in the log of"):
        build_report({PROVIDER: a_requester_log()}, [], now_ms=NOW)


# --- the forms ---------------------------------------------------------------------------


def test_json_is_plain_and_the_table_is_aligned() -> None:
    r = report()
    data = r.to_json()
    assert json.loads(json.dumps(data, ensure_ascii=False)) == data
    assert data["settings"] == {
        "answer_days": 10,
        "zombie_after_s": 2_592_000,
        "stale_grace_s": 86_400,
    }
    text = r.table()
    lines = text.splitlines()
    assert lines[0].startswith(
        "oversight report at 2026-12-20T12:00+08:00: 2 node logs (2 verified"
    )
    header = next(line for line in lines if line.startswith("DEPARTMENT"))
    row = next(line for line in lines if line.startswith(PROVIDER))
    assert header.split()[:4] == ["DEPARTMENT", "LEVEL", "RES", "U/C/N"]
    assert row.split()[:6] == [PROVIDER, "county", "3", "1/1/1", "67%", "6"]
    assert row.split()[6:10] == ["2/2/2/0", "2", "of", "4"]
    assert "103/139" in row
    stale_row = next(line for line in lines if "户籍信息" in line)
    assert "monthly" in stale_row
    assert "(catalog)" in stale_row


def test_csv_tables_open_as_rectangles_and_the_long_form_pivots() -> None:
    r = report()
    tables = r.csv_tables()
    assert set(tables) == {"summary.csv", "levels.csv", "departments.csv",
                           "stale_resources.csv", "nodes.csv"}  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(tables["departments.csv"])))
    assert [row["department"] for row in rows] == [CITY, PROVIDER, REQUESTER]
    assert rows[1]["requested"] == "6"
    assert rows[1]["answer_hours_max"] == "139.0"
    assert rows[0]["answer_hours_max"] == ""  # unknown, not zero
    levels = list(csv.DictReader(io.StringIO(tables["levels.csv"])))
    assert [row["level"] for row in levels] == ["city", "county", "all"]
    for text in tables.values():
        widths = {len(row) for row in csv.reader(io.StringIO(text))}
        assert len(widths) == 1, text
    empty = build_report({}, [], now_ms=NOW).csv_tables()
    assert empty["nodes.csv"].startswith("node,level,log,")
    long_rows = list(csv.DictReader(io.StringIO(r.csv_long())))
    figure = [row for row in long_rows if row["section"] == "department"
              and row["subject"] == PROVIDER and row["metric"] == "granted"]  # fmt: skip
    assert figure == [{"section": "department", "subject": PROVIDER, "level": "county",
                       "metric": "granted", "value": "2"}]  # fmt: skip
    assert {row["section"] for row in long_rows} == {
        "level",
        "department",
        "stale_resource",
        "node",
    }


# --- properties ----------------------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["open", "cond", "secret"]),
            st.sampled_from(["approve", "refuse", "wait", "revoke"]),
            st.integers(min_value=0, max_value=20 * 24),
        ),
        min_size=1,
        max_size=12,
    ),
    st.integers(min_value=0, max_value=30 * 24),
)
def test_counts_add_up_and_match_the_book(
    steps: list[tuple[str, str, int]], later_hours: int
) -> None:
    """Whatever happens, each request is counted once, in the state the book holds it."""
    sink = ListSink()
    b = book(sink)
    terms = {"open": OPEN, "cond": COND, "secret": SECRET}
    for n, (kind, _, _) in enumerate(steps):
        b.on_request(request(n, terms[kind], FRIDAY), sender=REQUESTER, now_ms=FRIDAY + n)
    for hours, n, action in sorted(
        (hours, n, action) for n, (_, action, hours) in enumerate(steps)
    ):
        at = FRIDAY + len(steps) + hours * HOUR
        b.expire_due(at)
        rid = request_id(n)
        state = b.state(rid)
        if action == "approve" and state is RequestState.PENDING:
            b.approve(rid, operator="王", now_ms=at)
        elif action == "refuse" and state is RequestState.PENDING:
            b.refuse(rid, operator="王", reason="不符", now_ms=at)
        elif action == "revoke" and state is RequestState.GRANTED:
            b.revoke(rid, operator="王", reason="停止", now_ms=at)
    end = FRIDAY + (20 * 24 + later_hours) * HOUR
    b.expire_due(end)
    r = build_report({PROVIDER: logged(PROVIDER, sink.events)}, [], now_ms=end, calendar=CALENDAR)
    d = department(r, PROVIDER)
    states = [b.state(request_id(n)) for n in range(len(steps))]
    expected = {
        "granted": sum(s in (RequestState.GRANTED, RequestState.REVOKED) for s in states),
        "refused": sum(s in (RequestState.REFUSED, RequestState.NOT_SHARED) for s in states),
        "expired": sum(s is RequestState.EXPIRED for s in states),
        "pending": sum(s is RequestState.PENDING for s in states),
    }
    assert {k: d[k] for k in expected} == expected
    assert d["requested"] == len(steps) == sum(expected.values())
    assert d["answers_within_rule"] + d["answers_over_rule"] == (
        d["conditional_answers"] + d["expired"]
    )
    assert r.totals.figures.requested == d["requested"]


@given(
    st.integers(min_value=cst(2026, 1, 1), max_value=cst(2027, 12, 31)),
    st.integers(min_value=1, max_value=30),
)
def test_the_day_before_the_deadline_is_the_last_working_day(start: int, days: int) -> None:
    deadline = CALENDAR.deadline(start, days)
    assert working_days_between(CALENDAR, start, deadline - 1) == days
    assert working_days_between(CALENDAR, start, start) == 0


def test_builder_settings_are_checked() -> None:
    with pytest.raises(UsageError):
        OversightBuilder(answer_days=0)
    with pytest.raises(UsageError):
        OversightBuilder(zombie_after_s=0)
    with pytest.raises(UsageError, match="catalog"):
        OversightBuilder().set_status(PROVIDER, LogStatus.NOT_READ)


def test_a_quiet_hub_is_a_node_not_a_department() -> None:
    logs = {HUB: logged(HUB, [custody(HUB, NOW - HOUR, "accept")]), PROVIDER: a_provider_log()}
    r = build_report(logs, [], now_ms=NOW)
    assert [d.name for d in r.departments] == [PROVIDER]
    assert [n.node for n in r.nodes] == [HUB, PROVIDER]
    assert r.totals.departments == 1
