"""Subscriptions across cities: the sharing rules carried out by real nodes on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from exchnode.aio import RECORDS_KIND, CatalogService, Message, Node, SharingService
from exchnode.aio._sharing_service import ReceivedRecords
from exchnode.audit import entry_from_event
from exchnode.catalog import ShareType
from exchnode.core._events import ListSink
from exchnode.errors import StoreError, UsageError
from exchnode.sharing import (
    CONTENT_TYPE,
    CorrectionState,
    Decision,
    Keep,
    MaskSet,
    RequestState,
    WorkCalendar,
    local_date,
)
from tests.integration.federation import CROSS_CITY, Federation
from tests.unit.catalog.test_entry import make_entry

REQUESTER = "520102.gongan"  # a county department in one city
PROVIDER = "522301.minzheng"  # a county department in another
AUTHORITY = "522301"  # the hub of the provider's division
WAIT = 20.0
S = RequestState


@dataclass
class Clock:
    """One clock for the whole federation, so deadlines can be reached without waiting days."""

    offset: float = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class Sharing:
    """A federation whose nodes all run a catalog and a sharing service; any can restart."""

    federation: Federation
    answer_days: int = 10
    calendar: WorkCalendar = field(default_factory=WorkCalendar)
    nodes: dict[str, Node] = field(default_factory=dict)
    catalogs: dict[str, CatalogService] = field(default_factory=dict)
    sharing: dict[str, SharingService] = field(default_factory=dict)
    events: dict[str, ListSink] = field(default_factory=dict)
    clock: Clock = field(default_factory=Clock)

    async def start(self, name: str) -> None:
        catalog = CatalogService(refresh=30.0)
        events = self.events.setdefault(name, ListSink())
        sharing = SharingService(
            catalog,
            masking_secret=name.encode().ljust(32, b"k"),
            calendar=self.calendar,
            answer_days=self.answer_days,
            events=events,
        )
        node = self.federation.node(name, services=[catalog, sharing], clock=self.clock)
        await node.start()
        self.nodes[name], self.catalogs[name], self.sharing[name] = node, catalog, sharing

    async def stop(self, name: str) -> None:
        await self.nodes.pop(name).close()


@contextlib.asynccontextmanager
async def federation(
    tmp_path: Path,
    *,
    answer_days: int = 10,
    names: Sequence[str] = CROSS_CITY,
    calendar: WorkCalendar | None = None,
) -> AsyncIterator[Sharing]:
    world = Sharing(Federation(tmp_path, names), answer_days, calendar or WorkCalendar())
    try:
        for name in names:
            await world.start(name)
        yield world
    finally:
        for name in list(world.nodes):
            await world.stop(name)
    # Every event the services emitted fits the audit log's schema (no free text, no payload).
    for sink in world.events.values():
        for event in sink.events:
            entry_from_event(event)


async def publish(
    world: Sharing, share_type: ShareType, sequence: int = 1, **fields: object
) -> str:
    entry = make_entry(PROVIDER, sequence, share_type=share_type, **fields)
    (record,) = await world.catalogs[PROVIDER].publish([entry])
    await world.catalogs[REQUESTER].wait_for(PROVIDER, record.code, timeout=WAIT)
    return record.code


async def request(world: Sharing, code: str, items: list[str]) -> bytes:
    return await world.sharing[REQUESTER].subscribe(
        PROVIDER,
        code,
        purpose="核验户籍 household checks for benefits",
        scope="本县低保申请人 applicants in this county",
        items=items,
        operator="clerk-li",
    )


async def pending_request(
    world: Sharing, items: list[str]
) -> tuple[str, bytes, SharingService, SharingService]:
    """A conditional resource published and requested for ``items``, pending at its provider:
    its code, the request id, and the provider's and the requester's services."""
    code = await publish(world, ShareType.CONDITIONAL)
    request_id = await request(world, code, items)
    provider, requester = world.sharing[PROVIDER], world.sharing[REQUESTER]
    await provider.wait_state(request_id, S.PENDING, timeout=WAIT)
    return code, request_id, provider, requester


@pytest.mark.asyncio
async def test_conditional_request_approved_with_a_subset_and_a_mask(tmp_path: Path) -> None:
    async with federation(tmp_path) as world:
        code = await publish(world, ShareType.CONDITIONAL)
        request_id = await request(world, code, ["身份证号", "姓名", "出生日期"])
        provider = world.sharing[PROVIDER]
        await provider.wait_state(request_id, S.PENDING, timeout=WAIT)
        assert [r.request_id for r in provider.requests(state=S.PENDING)] == [request_id]
        assert await world.sharing[REQUESTER].wait_state(request_id, S.PENDING, timeout=WAIT)

        masks = MaskSet.of({"身份证号": Keep(6, 4)})
        grant = await provider.approve(
            request_id, operator="director-wang", items=["身份证号", "姓名"], masks=masks
        )
        assert set(grant.items) == {"姓名", "身份证号"}
        await world.sharing[REQUESTER].wait_state(request_id, S.GRANTED, timeout=WAIT)
        (held,) = world.sharing[REQUESTER].held()
        assert set(held.items) == {"身份证号", "姓名"}
        assert held.masks == masks
        assert held.provider == PROVIDER

        # Both sides recorded every step, with who did it; the hubs on the way saw nothing.
        provider_actions = [(e.action, e.actor) for e in world.events[PROVIDER].events]
        assert ("request", REQUESTER) in provider_actions
        assert ("grant", "director-wang") in provider_actions
        for hub in ("520102", "520100", "520000", "522300"):
            assert world.events[hub].events == []


@pytest.mark.asyncio
async def test_unconditional_is_granted_and_not_shared_refused_with_its_legal_basis(
    tmp_path: Path,
) -> None:
    async with federation(tmp_path) as world:
        open_code = await publish(world, ShareType.UNCONDITIONAL, 1, share_conditions="")
        closed_code = await publish(
            world,
            ShareType.NOT_SHARED,
            2,
            share_conditions="《中华人民共和国居民身份证法》第十九条",
            share_methods=frozenset(),
        )
        granted = await request(world, open_code, ["姓名"])
        refused = await request(world, closed_code, ["姓名"])
        requester = world.sharing[REQUESTER]
        await requester.wait_state(granted, S.GRANTED, timeout=WAIT)
        await requester.wait_state(refused, S.NOT_SHARED, timeout=WAIT)
        assert "居民身份证法" in requester.reason(refused)
        with pytest.raises(UsageError, match="cannot escalate"):
            await requester.escalate(refused, operator="clerk-li", reason="we need it")


@pytest.mark.asyncio
async def test_refusal_escalated_to_the_authority_and_re_reviewed(tmp_path: Path) -> None:
    async with federation(tmp_path) as world:
        _code, request_id, provider, requester = await pending_request(world, ["姓名"])
        await provider.refuse(
            request_id, operator="director-wang", reason="用途不明 purpose unclear"
        )
        await requester.wait_state(request_id, S.REFUSED, timeout=WAIT)
        assert "purpose unclear" in requester.reason(request_id)

        await requester.escalate(request_id, operator="clerk-li", reason="用途见附件")
        authority = world.sharing[AUTHORITY]
        await provider.wait_state(request_id, S.ESCALATED, timeout=WAIT)
        await eventually(lambda: bool(authority.cases()))
        assert [c.request_id for c in authority.cases()] == [request_id]
        assert any(e.action == "escalate" for e in world.events[AUTHORITY].events)

        await authority.re_review(request_id, operator="auditor-zhao", reason="请重新审核")
        await provider.wait_state(request_id, S.PENDING, timeout=WAIT)
        await requester.wait_state(request_id, S.PENDING, timeout=WAIT)
        await provider.approve(request_id, operator="director-wang")
        await requester.wait_state(request_id, S.GRANTED, timeout=WAIT)


@pytest.mark.asyncio
async def test_unanswered_request_expires_after_the_working_day_deadline(tmp_path: Path) -> None:
    async with federation(tmp_path, answer_days=2) as world:
        _code, request_id, provider, requester = await pending_request(world, ["姓名"])
        deadline = provider.deadline(request_id)  # what the console shows beside the request
        assert deadline == provider._provider_book().deadline(request_id)
        assert deadline is not None
        assert deadline - time.time() * 1000 >= 2 * 86_400_000  # two whole working days at least
        assert requester.deadline(request_id) is None  # the provider's deadline, not held here
        world.clock.offset = deadline / 1000 - time.time() + 1
        await provider.wait_state(request_id, S.EXPIRED, timeout=WAIT)
        await requester.wait_state(request_id, S.EXPIRED, timeout=WAIT)
        assert provider.deadline(request_id) is None  # answered, by the clock: nothing to meet
        with pytest.raises(UsageError):
            await provider.approve(request_id, operator="director-wang")


class Said:
    """Stands in for a service's logger: what it warned, with its fields."""

    def __init__(self) -> None:
        self.warnings: list[tuple[str, dict[str, object]]] = []

    def warning(self, event: str, **fields: object) -> None:
        self.warnings.append((event, fields))

    def __getattr__(self, level: str) -> Callable[..., None]:
        return lambda *args, **fields: None


@pytest.mark.asyncio
async def test_a_deadline_counted_over_a_year_the_calendar_lacks_is_provisional_and_said(
    tmp_path: Path,
) -> None:
    """``[sharing] uncovered_years = "weekends"``: counted, not refused, and said loudly."""
    calendar = WorkCalendar(covered_years=frozenset(), provisional=True)  # covers no year
    async with federation(tmp_path, calendar=calendar) as world:
        said = Said()
        world.sharing[PROVIDER].log = said
        _code, request_id, provider, _requester = await pending_request(world, ["姓名"])
        deadline = provider.deadline(request_id)
        assert deadline is not None  # the request is pending, with a deadline: not refused
        ((event, fields),) = [w for w in said.warnings if w[0].startswith("provisional")]
        assert event == "provisional answer deadline: counted with weekdays only"
        assert fields["deadline_ms"] == deadline
        this_year = local_date(int(time.time() * 1000)).year
        assert fields["uncovered_years"] == list(range(this_year, local_date(deadline).year + 1))


@pytest.mark.asyncio
async def test_revocation_reaches_the_subscriber(tmp_path: Path) -> None:
    async with federation(tmp_path) as world:
        code = await publish(world, ShareType.UNCONDITIONAL, share_conditions="")
        request_id = await request(world, code, ["姓名"])
        requester = world.sharing[REQUESTER]
        await requester.wait_state(request_id, S.GRANTED, timeout=WAIT)
        await world.sharing[PROVIDER].revoke(request_id, operator="director-wang", reason="到期")
        await requester.wait_state(request_id, S.REVOKED, timeout=WAIT)
        assert requester.held() == []


async def eventually(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout)


PEOPLE = [
    {
        "身份证号": "110101199003071234",
        "姓名": "张三",
        "出生日期": "1990-03-07",
        "Household_Size": 3,
    },
    {
        "身份证号": "520102198511112222",
        "姓名": "李四",
        "出生日期": "1985-11-11",
        "Household_Size": 1,
    },
    {
        "身份证号": "522301200001013333",
        "姓名": "王五",
        "出生日期": "2000-01-01",
        "Household_Size": 5,
    },
]


async def next_records(node: Node, sharing: SharingService) -> ReceivedRecords:
    """The next sub.records delivery, read and acknowledged (other deliveries are a failure)."""

    async def take() -> ReceivedRecords:
        async for delivery in node.deliveries():
            assert delivery.kind == RECORDS_KIND, delivery.kind
            received = await sharing.read_records(delivery)
            await delivery.ack()
            return received
        raise AssertionError("the node closed")

    return await asyncio.wait_for(take(), WAIT)


@pytest.mark.asyncio
async def test_records_arrive_projected_and_masked_and_stop_at_revocation(tmp_path: Path) -> None:
    async with federation(tmp_path) as world:
        code, request_id, provider, requester = await pending_request(
            world, ["身份证号", "姓名", "出生日期"]
        )

        # Published before any grant: nobody receives it.
        before = await provider.publish_records(code, PEOPLE[:1])
        assert (before.first_seq, before.subscribers, before.envelopes) == (1, 0, 0)

        await provider.approve(
            request_id,
            operator="director-wang",
            items=["身份证号", "姓名"],
            masks=MaskSet.of({"身份证号": Keep(6, 4)}),
        )
        await requester.wait_state(request_id, S.GRANTED, timeout=WAIT)
        sent = await provider.publish_records(code, PEOPLE[1:])
        assert (sent.first_seq, sent.last_seq, sent.subscribers, sent.envelopes) == (2, 3, 1, 1)

        # A record that cannot go on the wire fails the call, and nothing is numbered.
        with pytest.raises(UsageError, match=r"records\[1\]"):
            await provider.publish_records(code, [PEOPLE[0], {"姓名": {"not", "a value"}}])

        received = await next_records(world.nodes[REQUESTER], requester)
        assert (received.provider, received.resource_code) == (PROVIDER, code)
        assert received.records == (
            (2, {"身份证号": "520102********2222", "姓名": "李四"}),
            (3, {"身份证号": "522301********3333", "姓名": "王五"}),
        )
        assert received.missing == ()
        assert received.refused == received.repeated == ()

        await provider.revoke(request_id, operator="director-wang", reason="用途已结束")
        await requester.wait_state(request_id, S.REVOKED, timeout=WAIT)
        after = await provider.publish_records(code, PEOPLE[:1])
        assert (after.first_seq, after.subscribers, after.envelopes) == (4, 0, 0)
        assert requester.held() == []

        # Who provided and who received which records is on both sides' record.
        sent = [(e.action, e.outcome, e.counterpart) for e in world.events[PROVIDER].events]
        assert ("records.send", "seq:2-3", REQUESTER) in sent
        assert ("records.publish", "seq:4-4", "") in sent
        assert not any(e[0] == "records.send" and e[1] == "seq:4-4" for e in sent)
        got = [(e.action, e.outcome, e.counterpart) for e in world.events[REQUESTER].events]
        assert ("records.receive", "seq:2-3", PROVIDER) in got
        # Every step is on the provider's record, publication included nowhere as content.
        actions = [e.action for e in world.events[PROVIDER].events]
        assert actions.count("grant") == 1
        assert "revoke" in actions


@pytest.mark.asyncio
async def test_subscribers_on_one_path_share_one_copy(tmp_path: Path) -> None:
    names = [*CROSS_CITY, "520102.minzheng"]
    async with federation(tmp_path, names=names) as world:
        code = await publish(world, ShareType.UNCONDITIONAL, share_conditions="")
        await world.catalogs["520102.minzheng"].wait_for(PROVIDER, code, timeout=WAIT)
        ids = {}
        for subscriber in (REQUESTER, "520102.minzheng"):
            ids[subscriber] = await world.sharing[subscriber].subscribe(
                PROVIDER, code, purpose="统计", scope="本区", items=["姓名"], operator="clerk"
            )
        for subscriber, request_id in ids.items():
            await world.sharing[subscriber].wait_state(request_id, S.GRANTED, timeout=WAIT)

        province_before = (await world.nodes["520000"].stats()).handed_over.get("520100")
        sent = await world.sharing[PROVIDER].publish_records(code, PEOPLE)
        assert (sent.subscribers, sent.envelopes) == (2, 1)
        for subscriber in ids:
            received = await next_records(world.nodes[subscriber], world.sharing[subscriber])
            assert [fields for _, fields in received.records] == [
                {"姓名": p["姓名"]} for p in PEOPLE
            ]
        province = (await world.nodes["520000"].stats()).handed_over["520100"]
        assert province.count - (province_before.count if province_before else 0) == 1


@pytest.mark.asyncio
async def test_state_survives_restarts_and_gaps_are_filled(tmp_path: Path) -> None:
    async with federation(tmp_path) as world:
        code = await publish(world, ShareType.CONDITIONAL)
        request_id = await request(world, code, ["姓名"])
        await world.sharing[PROVIDER].wait_state(request_id, S.PENDING, timeout=WAIT)

        # The provider restarts with the request pending: it is still there to approve.
        await world.stop(PROVIDER)
        await world.start(PROVIDER)
        provider = world.sharing[PROVIDER]
        assert provider.state(request_id) is S.PENDING
        await provider.approve(request_id, operator="director-wang")
        await world.sharing[REQUESTER].wait_state(request_id, S.GRANTED, timeout=WAIT)

        # The requester restarts: it still holds the grant.
        await world.stop(REQUESTER)
        await world.start(REQUESTER)
        requester = world.sharing[REQUESTER]
        assert [g.request_id for g in requester.held()] == [request_id]

        # Record 1 is acknowledged without being read (lost to the application): a gap.
        await provider.publish_records(code, PEOPLE[:1])
        async for delivery in world.nodes[REQUESTER].deliveries():
            await delivery.ack()
            break
        await provider.publish_records(code, PEOPLE[1:2])
        received = await next_records(world.nodes[REQUESTER], requester)
        assert [seq for seq, _ in received.records] == [2]
        assert received.missing == ((1, 1),)

        assert await requester.fill_gaps(PROVIDER, code) == [(1, 1)]
        resent = await next_records(world.nodes[REQUESTER], requester)
        assert resent.records == ((1, {"姓名": "张三"}),)
        assert resent.missing == ()
        # The provider's numbering went on across its restart.
        more = await provider.publish_records(code, PEOPLE[2:])
        assert more.first_seq == 3


@pytest.mark.asyncio
async def test_a_subscriber_reports_a_wrong_record_and_the_provider_answers(
    tmp_path: Path,
) -> None:
    async with federation(tmp_path) as world:
        code = await publish(world, ShareType.UNCONDITIONAL, share_conditions="")
        request_id = await request(world, code, ["姓名", "出生日期"])
        requester, provider = world.sharing[REQUESTER], world.sharing[PROVIDER]
        await requester.wait_state(request_id, S.GRANTED, timeout=WAIT)
        await provider.publish_records(code, PEOPLE[:1])
        received = await next_records(world.nodes[REQUESTER], requester)
        ((seq, _),) = received.records

        correction = await requester.report_correction(
            PROVIDER,
            code,
            seq,
            items=["出生日期"],
            text="户籍卡记载为1990-03-08",
            operator="clerk-li",
        )
        await eventually(lambda: bool(provider.corrections()))
        (reported,) = provider.corrections()
        assert (reported.correction_id, reported.seq, reported.items) == (
            correction,
            1,
            ("出生日期",),
        )
        await provider.answer_correction(
            correction, accepted=True, text="已更正，将推送新记录", operator="director-wang"
        )
        state = await requester.wait_correction(
            correction, CorrectionState.ACCEPTED, CorrectionState.REJECTED, timeout=WAIT
        )
        assert state is CorrectionState.ACCEPTED
        answer = requester.correction_answer(correction)
        assert answer is not None
        assert answer.text == "已更正，将推送新记录"
        assert provider.corrections() == []


@pytest.mark.asyncio
async def test_a_hub_forging_a_grant_is_refused_and_recorded(tmp_path: Path) -> None:
    async with federation(tmp_path) as world:
        code = await publish(world, ShareType.CONDITIONAL)
        request_id = await request(world, code, ["身份证号", "姓名"])
        requester = world.sharing[REQUESTER]
        await requester.wait_state(request_id, S.PENDING, timeout=WAIT)

        # The provider's own county hub, on the path, writes a grant in the provider's name.
        # It can only sign as itself: the requester sees who really sent it.
        forged = Decision(
            request_id=request_id,
            provider=PROVIDER,
            requester=REQUESTER,
            resource_code=code,
            version=99,
            at_ms=int(world.clock() * 1000),
            status=S.GRANTED,
            items=("身份证号", "姓名"),
            first_seq=1,
        )
        await world.nodes[AUTHORITY].send(
            [REQUESTER], forged.encode(), kind=forged.KIND, content_type=CONTENT_TYPE
        )
        events = world.events[REQUESTER].events
        await eventually(lambda: any(e.action == "refused sub.decision" for e in events))
        (refusal,) = [e for e in events if e.action == "refused sub.decision"]
        assert (refusal.actor, refusal.outcome) == (AUTHORITY, "not-authorised")
        assert requester.state(request_id) is S.PENDING
        assert requester.held() == []


@pytest.mark.asyncio
async def test_a_decision_the_node_could_not_take_yet_is_sent_later(tmp_path: Path) -> None:
    async with federation(tmp_path) as world:
        _code, request_id, provider, requester = await pending_request(world, ["姓名"])

        node = world.nodes[PROVIDER]
        real = node.send_many
        failures = []

        async def refuse_once(messages: list[Message]) -> object:
            if not failures:
                failures.append(len(messages))
                raise StoreError("simulated: the store is full for now")  # transient
            return await real(messages)

        node.send_many = refuse_once  # type: ignore[method-assign]
        await provider.approve(request_id, operator="director-wang")  # stored, not yet sent
        assert failures == [1]
        assert provider.state(request_id) is S.GRANTED
        # The sharing timers try the outbox again within a second.
        await requester.wait_state(request_id, S.GRANTED, timeout=WAIT)


def _stored_bytes(world: Sharing, name: str) -> bytes:
    """Everything of a node's store on disk: the database, its WAL and its shared memory."""
    base = world.federation.directory / f"{name}.sqlite"
    return b"".join(p.read_bytes() for p in base.parent.glob(base.name + "*") if p.is_file())


@pytest.mark.asyncio
async def test_the_provider_stores_no_record_in_clear(tmp_path: Path) -> None:
    """Issue 12, item 11: the resend window and the outbox hold only sealed records."""
    granted = "核验标记甲-granted-7f3a"
    withheld = "核验标记乙-withheld-7f3a"
    async with federation(tmp_path) as world:
        code, request_id, provider, requester = await pending_request(world, ["身份证号", "姓名"])
        await provider.approve(request_id, operator="director-wang", items=["姓名"])
        await requester.wait_state(request_id, S.GRANTED, timeout=WAIT)
        records = [{**person, "姓名": granted, "出生日期": withheld} for person in PEOPLE]
        await provider.publish_records(code, records)
        received = await next_records(world.nodes[REQUESTER], requester)
        assert [fields for _, fields in received.records] == [{"姓名": granted}] * len(PEOPLE)
        # The resend window still answers from what it keeps (sealed, granted items only).
        book = provider._state.book
        assert book is not None
        kept = book._stream.recent(code, 1, len(PEOPLE))
        assert [set(k.record) for k in kept] == [{"姓名"}] * len(PEOPLE)
        stored = _stored_bytes(world, PROVIDER)
    assert stored
    for marker in (granted, withheld, PEOPLE[0]["身份证号"]):
        assert str(marker).encode("utf-8") not in stored, marker
