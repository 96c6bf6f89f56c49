"""Oversight reports from verified audit logs and the catalog (pure; issue 5, DOMAIN Oversight).

Theory of operation
-------------------
统一审计监督 and the 评价体系 score sharing per department: resources provided,
shared, used, and how fast requests were answered.  Everything here is read
off what the nodes already signed: their audit records (``audit_records``)
and the catalog (``catalog``).  The caller fetches and verifies; this module
only counts, so the same figures come out of a running federation
(``node.audit_report``), a stopped node's store, or a test's hand-built log.

Inputs, fed to an :class:`OversightBuilder` (or all at once to
:func:`build_report`):

* **Logs.**  Per node, its records in seq order (``add_records``, as many
  calls as pages) and how they were obtained (``set_status``): ``verified``;
  ``failed`` (the log has findings; the caller passes only the records under
  the largest signed head that still verifies); ``unreachable`` (nothing
  read).  A node is never dropped: the unreadable ones are named.
* **The catalog**: :class:`Resource` values (from a ``CatalogRecord``, a
  ``CatalogEntry``, or the operator API's JSON).  Copies from several nodes
  merge by version, a withdrawal (tombstone) outranking older copies.

What is counted, and from whose log (so nothing is counted twice):

* **Resources catalogued**, per provider: published entries, by share type,
  and the ratios (the plans' target: ≥ 50 % shared).
* **Subscriptions**, at the *provider* (its ``SubscriptionBook`` logs every
  step of a request it holds).  A provider-side case opens with action
  ``request`` whose outcome is the arrival state (``granted`` unconditional,
  ``pending`` conditional, ``not_shared``); the requester's own ``request``
  record says ``sent`` and is not a case.  Each case ends in exactly one of
  granted / refused (``not_shared`` included) / expired / pending, by its
  last decision, so ``requested = granted + refused + expired + pending``.
* **Answer times** of conditional requests: from the time a request became
  pending (arrival, or a sharing authority's re-review) to the provider's
  ``grant`` or ``refuse``, in hours and in working days
  (``workdays.WorkCalendar``: day 1 is the first working day after the
  request's date).  An answer is within the rule if made before
  ``calendar.deadline(pending_since, answer_days)``, the same deadline the
  book enforces; every ``expire`` is an answer over the rule.
* **Records**: ``records.publish`` at the provider (records provided),
  ``records.send`` (records × grants delivered), ``records.receive`` at the
  subscriber: counted as *received* by the subscriber and as *used* against
  the provider it names.  Outcomes are ``seq:a-b``; a ``count`` detail, when
  present, is the exact number.
* **Stale resources**: a published resource whose declared update cycle
  (plus ``stale_grace_s``) has passed since its last update, the later of
  its last ``records.publish`` in the provider's log and its catalog
  record's issue time.  ``irregular`` resources are never stale.
* **Zombie nodes**: a node whose last record of *traffic* is older than
  ``zombie_after_s`` (or that has none).  Traffic is connections, envelopes
  (custody), the catalog, subscriptions and records; not the node's own
  housekeeping: every start logs its configuration and certificate, an
  auditor's reading and pruning are ``administration``, a hub's periodic
  witnessing is ``witness``, and none of them may keep an idle node, or one
  restarted by a timer, looking alive.

A period (``since_ms``: a month or a year, for the monthly and yearly
reports) counts the requests that arrived in it, with their decisions
whenever made, and the records published, sent and received in it; the
catalog, stale resources and zombie nodes are as of ``now``.

The result is an ``oversight_report.OversightReport`` (re-exported here):
JSON, a fixed-width table, and CSV for auditors.
"""

from __future__ import annotations

import datetime as dt
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from exchnode.audit._oversight_report import (
    DAY_S,
    Department,
    Figures,
    LevelRow,
    LogStatus,
    NodeRow,
    OversightReport,
    StaleResource,
    level_name,
)
from exchnode.audit._records import AuditRecord, Category, SubjectKind
from exchnode.catalog import CatalogEntry, CatalogRecord, ShareType, UpdateCycle
from exchnode.core import Level, NodeName
from exchnode.errors import UsageError
from exchnode.sharing import DEFAULT_ANSWER_DAYS, WorkCalendar, check_answer_days, local_date

__all__ = [
    "CYCLE_SECONDS",
    "DEFAULT_STALE_GRACE_S",
    "DEFAULT_ZOMBIE_AFTER_S",
    "TRAFFIC",
    "Department",
    "Figures",
    "LevelRow",
    "LogStatus",
    "NodeLog",
    "NodeRow",
    "OversightBuilder",
    "OversightReport",
    "Resource",
    "StaleResource",
    "build_report",
    "level_name",
    "working_days_between",
]

DEFAULT_ZOMBIE_AFTER_S: Final = 30 * DAY_S
DEFAULT_STALE_GRACE_S: Final = DAY_S
# How long each declared update cycle lasts; irregular resources are never stale.
CYCLE_SECONDS: Final[Mapping[UpdateCycle, int | None]] = {
    UpdateCycle.REAL_TIME: DAY_S,
    UpdateCycle.DAILY: DAY_S,
    UpdateCycle.WEEKLY: 7 * DAY_S,
    UpdateCycle.MONTHLY: 31 * DAY_S,
    UpdateCycle.QUARTERLY: 92 * DAY_S,
    UpdateCycle.YEARLY: 366 * DAY_S,
    UpdateCycle.IRREGULAR: None,
}
# What counts as traffic for zombie detection: not the node's housekeeping (see the module doc).
TRAFFIC: Final = frozenset(
    {
        Category.CONNECTION,
        Category.ENVELOPE,
        Category.CATALOG,
        Category.SUBSCRIPTION,
        Category.RECORD,
    }
)
_ARRIVAL = {"granted": "unconditional", "pending": "conditional", "not_shared": "not_shared"}
_SEQ_RANGE = re.compile(r"seq:([0-9]{1,19})-([0-9]{1,19})\Z")
_MS_PER_HOUR = 3_600_000
_LEVELS = tuple(Level)


def _level_of(name: str) -> Level:
    return NodeName.parse(name).level


def working_days_between(calendar: WorkCalendar, start_ms: int, end_ms: int) -> int:
    """Working days after the date of ``start_ms`` up to and including the date of ``end_ms``."""
    day, last, count = local_date(start_ms), local_date(end_ms), 0
    while day < last:
        day += dt.timedelta(days=1)
        count += calendar.is_working_day(day)
    return count


# --- inputs ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Resource:
    """What the report needs of one catalog record (a tombstone has no share type or cycle)."""

    provider: str
    code: str
    version: int
    updated_ms: int  # when the provider issued this version
    name: str = ""
    share_type: ShareType | None = None
    update_cycle: UpdateCycle | None = None
    withdrawn: bool = False

    def __post_init__(self) -> None:
        NodeName.parse(self.provider)
        if not self.withdrawn and (self.share_type is None or self.update_cycle is None):
            raise UsageError(
                f"resource {self.code} of {self.provider} needs its share type and cycle"
            )

    @classmethod
    def of_record(cls, record: CatalogRecord) -> Resource:
        entry = record.entry
        return cls(
            provider=record.provider,
            code=record.code,
            version=record.version,
            updated_ms=record.issued_ms,
            name=entry.name if entry is not None else "",
            share_type=entry.share_type if entry is not None else None,
            update_cycle=entry.update_cycle if entry is not None else None,
            withdrawn=record.withdrawn or entry is None,
        )

    @classmethod
    def of_entry(cls, entry: CatalogEntry, *, updated_ms: int, version: int = 0) -> Resource:
        return cls(
            provider=entry.provider,
            code=entry.code,
            version=version,
            updated_ms=updated_ms,
            name=entry.name,
            share_type=entry.share_type,
            update_cycle=entry.update_cycle,
        )


@dataclass(frozen=True, slots=True)
class NodeLog:
    """One node's log as read: its status and, unless unreachable, its records in seq order."""

    node: str
    status: LogStatus
    records: Sequence[AuditRecord] = ()
    problem: str = ""  # one line: why it failed or could not be read


# --- the figures -----------------------------------------------------------------------


@dataclass(slots=True)
class _Tally:
    """The counts of one department (or a sum of them), while building."""

    resources: dict[str, int] = field(default_factory=dict)  # share type -> published entries
    requested: int = 0
    granted: int = 0
    refused: int = 0
    refused_not_shared: int = 0
    expired: int = 0
    pending: int = 0
    escalated: int = 0
    revoked: int = 0
    within: int = 0
    over: int = 0
    hours: list[float] = field(default_factory=list)
    workdays: list[int] = field(default_factory=list)
    published: int = 0
    sent: int = 0
    used: int = 0
    received: int = 0

    def add(self, other: _Tally) -> None:
        """Add ``other``'s counts to this one's (a level's sum of its departments)."""
        for name in self.__slots__:
            mine, theirs = getattr(self, name), getattr(other, name)
            if isinstance(mine, int):
                setattr(self, name, mine + theirs)
            elif isinstance(mine, list):
                mine.extend(theirs)
            else:
                for key, n in theirs.items():
                    mine[key] = mine.get(key, 0) + n


def _median(values: Sequence[float]) -> float | None:
    return round(float(statistics.median(values)), 2) if values else None


def _figures(t: _Tally) -> Figures:
    return Figures(
        resources=sum(t.resources.values()),
        unconditional=t.resources.get(ShareType.UNCONDITIONAL.value, 0),
        conditional=t.resources.get(ShareType.CONDITIONAL.value, 0),
        not_shared=t.resources.get(ShareType.NOT_SHARED.value, 0),
        requested=t.requested,
        granted=t.granted,
        refused=t.refused,
        refused_not_shared=t.refused_not_shared,
        expired=t.expired,
        pending=t.pending,
        escalated=t.escalated,
        revoked=t.revoked,
        conditional_answers=len(t.hours),
        answers_within_rule=t.within,
        answers_over_rule=t.over,
        answer_hours_median=_median(t.hours),
        answer_hours_max=round(max(t.hours), 2) if t.hours else None,
        answer_workdays_median=_median(t.workdays),
        answer_workdays_max=max(t.workdays) if t.workdays else None,
        records_published=t.published,
        records_sent=t.sent,
        records_used=t.used,
        records_received=t.received,
    )


# --- building --------------------------------------------------------------------------


@dataclass(slots=True)
class _Case:
    """A request as its provider's log tells it."""

    requester: str
    share: str
    state: str
    counted: bool
    pending_since: int | None = None
    escalated: bool = False
    revoked: bool = False


def _range_count(record: AuditRecord) -> int:
    count = record.entry.get("count")
    if isinstance(count, int):
        return count
    match = _SEQ_RANGE.match(record.entry.outcome.code)
    if match is None:
        return 0
    first, last = int(match[1]), int(match[2])
    return last - first + 1 if last >= first else 0


def _resource_of(record: AuditRecord) -> str | None:
    subject = record.entry.subject
    if subject.kind is SubjectKind.RESOURCE and isinstance(subject.value, str):
        return subject.value
    resource = record.entry.get("resource")
    return resource if isinstance(resource, str) else None


class OversightBuilder:
    """Logs and catalog records in, any order, page by page; ``build`` at the end."""

    def __init__(
        self,
        *,
        calendar: WorkCalendar | None = None,
        answer_days: int = DEFAULT_ANSWER_DAYS,
        zombie_after_s: int = DEFAULT_ZOMBIE_AFTER_S,
        stale_grace_s: int = DEFAULT_STALE_GRACE_S,
        since_ms: int | None = None,
        traffic: frozenset[Category] = TRAFFIC,
    ) -> None:
        self.calendar = calendar or WorkCalendar()
        check_answer_days(answer_days)  # a bad answer_days fails here
        if zombie_after_s <= 0 or stale_grace_s < 0:
            raise UsageError("zombie_after_s must be positive and stale_grace_s not negative")
        self.answer_days = answer_days
        self.zombie_after_s = zombie_after_s
        self.stale_grace_s = stale_grace_s
        self.since_ms = since_ms
        self.traffic = traffic
        self._resources: dict[tuple[str, str], Resource] = {}
        self._status: dict[str, tuple[LogStatus, str]] = {}
        self._tally: dict[str, _Tally] = {}
        self._cases: dict[str, dict[bytes, _Case]] = {}
        self._published: dict[tuple[str, str], int] = {}
        self._read: dict[str, int] = {}
        self._last_traffic: dict[str, int] = {}

    # -- inputs

    def add_resources(self, resources: Iterable[Resource | CatalogRecord]) -> None:
        for item in resources:
            resource = item if isinstance(item, Resource) else Resource.of_record(item)
            key = (resource.provider, resource.code)
            held = self._resources.get(key)
            if held is None or (resource.version, resource.withdrawn) > (
                held.version,
                held.withdrawn,
            ):
                self._resources[key] = resource

    def set_status(self, node: str, status: LogStatus, problem: str = "") -> None:
        """How ``node``'s log was read; every node given a status is in the report."""
        NodeName.parse(node)
        if status is LogStatus.NOT_READ:
            raise UsageError("not-read is for providers known only from the catalog")
        self._status[node] = (status, problem)
        self._read.setdefault(node, 0)

    def add_records(self, node: str, records: Iterable[AuditRecord]) -> None:
        """The next records of ``node``'s log, in seq order (call once per page)."""
        if node not in self._status:
            self.set_status(node, LogStatus.VERIFIED)
        cases = self._cases.setdefault(node, {})
        since = self.since_ms
        for record in records:
            if record.node != node:
                raise UsageError(f"a record of {record.node} in the log of {node}")
            self._read[node] += 1
            entry = record.entry
            at = entry.time_ms
            if entry.category in self.traffic and at > self._last_traffic.get(node, -1):
                self._last_traffic[node] = at
            in_period = since is None or at >= since
            category = entry.category
            if category is Category.SUBSCRIPTION:
                self._subscription(node, cases, record, in_period)
            elif category is Category.RECORD and in_period:
                self._records(node, record)
            if category is Category.RECORD and entry.action == "records.publish":
                code = _resource_of(record)
                if code is not None:
                    key = (node, code)
                    self._published[key] = max(self._published.get(key, at), at)

    def _tally_of(self, department: str) -> _Tally:
        tally = self._tally.get(department)
        if tally is None:
            tally = self._tally[department] = _Tally()
        return tally

    def _subscription(
        self, node: str, cases: dict[bytes, _Case], record: AuditRecord, in_period: bool
    ) -> None:
        entry = record.entry
        subject = entry.subject
        if subject.kind is not SubjectKind.REQUEST or not isinstance(subject.value, bytes):
            return
        action, at, outcome = entry.action, entry.time_ms, entry.outcome.code
        case = cases.get(subject.value)
        if action == "request" and outcome in _ARRIVAL:
            if case is not None:
                return  # a second arrival of one id: the book answers repeats with nothing
            requester = entry.get("counterpart")
            case = cases[subject.value] = _Case(
                requester=requester if isinstance(requester, str) else "",
                share=_ARRIVAL[outcome],
                state="refused" if outcome == "not_shared" else outcome,
                counted=in_period,
                pending_since=at if outcome == "pending" else None,
            )
            if in_period:
                tally = self._tally_of(node)
                tally.requested += 1
                tally.refused_not_shared += outcome == "not_shared"
            return
        if case is None:
            return  # the requester's or the authority's side of a request: not a provider case
        tally = self._tally_of(node) if case.counted else _Tally()
        if action in ("grant", "refuse"):
            if case.pending_since is not None:
                deadline = self.calendar.deadline(case.pending_since, self.answer_days)
                tally.hours.append((at - case.pending_since) / _MS_PER_HOUR)
                tally.workdays.append(working_days_between(self.calendar, case.pending_since, at))
                if at < deadline:
                    tally.within += 1
                else:
                    tally.over += 1
            case.state = "granted" if action == "grant" else "refused"
            case.pending_since = None
        elif action == "expire":
            tally.over += case.state == "pending"
            case.state, case.pending_since = "expired", None
        elif action == "re-review":
            case.state, case.pending_since = "pending", at
        elif action == "escalate":
            case.escalated = True
        elif action in ("revoke", "lapse"):
            case.revoked = case.revoked or action == "revoke"

    def _records(self, node: str, record: AuditRecord) -> None:
        action, n = record.entry.action, _range_count(record)
        if action == "records.publish":
            self._tally_of(node).published += n
        elif action == "records.send":
            self._tally_of(node).sent += n
        elif action == "records.receive":
            self._tally_of(node).received += n
            provider = record.entry.get("counterpart")
            if isinstance(provider, str):
                self._tally_of(provider).used += n

    # -- the report

    def build(self, now_ms: int) -> OversightReport:
        tallies = {name: _Tally() for name in self._tally}
        for name, tally in self._tally.items():
            tallies[name].add(tally)
        # Departments: every department node read, and any node (a hub too) that
        # provides, was asked, or used records; a quiet hub is in the node list only.
        for node in self._status:
            if not NodeName.parse(node).is_hub:
                tallies.setdefault(node, _Tally())
        for node, cases in self._cases.items():
            if not cases:
                continue
            tally = tallies.setdefault(node, _Tally())
            for case in cases.values():
                if not case.counted:
                    continue
                bucket = case.state
                tally.granted += bucket == "granted"
                tally.refused += bucket == "refused"
                tally.expired += bucket == "expired"
                tally.pending += bucket == "pending"
                tally.escalated += case.escalated
                tally.revoked += case.revoked
        stale: list[StaleResource] = []
        for (provider, _), resource in sorted(self._resources.items()):
            shares = tallies.setdefault(provider, _Tally()).resources
            if resource.withdrawn or resource.share_type is None:
                continue  # its provider is listed, with what it still publishes
            shares[resource.share_type.value] = shares.get(resource.share_type.value, 0) + 1
            stale_one = self._stale(resource, now_ms)
            if stale_one is not None:
                stale.append(stale_one)
        departments = []
        for name in sorted(tallies, key=lambda n: (_level_of(n), n)):
            log = self._status.get(name, (LogStatus.NOT_READ, ""))[0]
            departments.append(
                Department(
                    name=name, level=_level_of(name), log=log, figures=_figures(tallies[name])
                )
            )
        levels = []
        every = _Tally()
        for level in _LEVELS:
            names = [d.name for d in departments if d.level is level]
            if not names:
                continue
            total = _Tally()
            for name in names:
                total.add(tallies[name])
            every.add(total)
            levels.append(LevelRow(level=level, departments=len(names), figures=_figures(total)))
        totals = LevelRow(level=None, departments=len(departments), figures=_figures(every))
        nodes = []
        for node in sorted(self._status, key=lambda n: (_level_of(n), n)):
            status, problem = self._status[node]
            last = self._last_traffic.get(node)
            zombie = (
                None
                if status is LogStatus.UNREACHABLE
                else last is None or now_ms - last > self.zombie_after_s * 1000
            )
            nodes.append(
                NodeRow(
                    node=node,
                    log=status,
                    records=self._read.get(node, 0),
                    last_traffic_ms=last,
                    zombie=zombie,
                    problem=problem,
                )
            )
        return OversightReport(
            generated_ms=now_ms,
            since_ms=self.since_ms,
            answer_days=self.answer_days,
            zombie_after_s=self.zombie_after_s,
            stale_grace_s=self.stale_grace_s,
            departments=tuple(departments),
            levels=tuple(levels),
            totals=totals,
            stale=tuple(stale),
            nodes=tuple(nodes),
        )

    def _stale(self, resource: Resource, now_ms: int) -> StaleResource | None:
        assert resource.update_cycle is not None
        cycle = CYCLE_SECONDS[resource.update_cycle]
        if cycle is None:
            return None
        published = self._published.get((resource.provider, resource.code))
        if published is not None and published >= resource.updated_ms:
            last, source = published, "records"
        else:
            last, source = resource.updated_ms, "catalog"
        due = last + (cycle + self.stale_grace_s) * 1000
        if now_ms <= due:
            return None
        return StaleResource(
            provider=resource.provider,
            code=resource.code,
            name=resource.name,
            update_cycle=resource.update_cycle,
            last_update_ms=last,
            source=source,
            due_ms=due,
        )


def build_report(
    logs: Mapping[str, NodeLog | Sequence[AuditRecord]],
    resources: Iterable[Resource | CatalogRecord],
    *,
    now_ms: int,
    calendar: WorkCalendar | None = None,
    answer_days: int = DEFAULT_ANSWER_DAYS,
    zombie_after_s: int = DEFAULT_ZOMBIE_AFTER_S,
    stale_grace_s: int = DEFAULT_STALE_GRACE_S,
    since_ms: int | None = None,
) -> OversightReport:
    """The report of ``logs`` (node name → its records, or a :class:`NodeLog`) and the catalog."""
    builder = OversightBuilder(
        calendar=calendar,
        answer_days=answer_days,
        zombie_after_s=zombie_after_s,
        stale_grace_s=stale_grace_s,
        since_ms=since_ms,
    )
    for name, log in sorted(logs.items()):
        if isinstance(log, NodeLog):
            if log.node != name:
                raise UsageError(f"the log of {log.node} given as {name}'s")
            builder.set_status(name, log.status, log.problem)
            builder.add_records(name, log.records)
        else:
            builder.add_records(name, log)
    builder.add_resources(resources)
    return builder.build(now_ms)
