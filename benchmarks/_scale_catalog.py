#!/usr/bin/env python3
"""Issue 13 at province scale: a catalog at every level, stored per entry, changes by feed.

    .venv/bin/python benchmarks/_scale_catalog.py [--quick] [--json]

A province of 10,000 nodes (1,000 with ``--quick``): the province hub
``520000``, 9 city hubs, 88 county hubs, and departments under every hub,
each publishing 10 entries (so 99,020 entries, the size issue 13 measured the
old catalog at).  Every node is one pure :class:`~exchnode.catalog.CatalogState`
and every exchange goes through its real wire form (``FeedRequest``,
``RecordPage``, ``LookupRequest``, ``LookupAnswer``) and real verification
(``CatalogVerifier`` under a directory of every node), in one process.  Every
department has its own seeded key (``exchnode.testing.seeded_identity``): no
key is shared.

* **cold start**: refresh periods until every hub holds exactly its subtree,
  with the worst order in a period (each hub pulls its children as they were
  when the period began: no announcement helps), so a level costs a period.
* **state** per node kind: bytes of the rows a node stores (``all_rows``).  A
  department also holds what it looked up (20 entries of other branches).
* **one change** at a department of the measured county: bytes of each feed
  request and page on each link it climbs, at 10,000 nodes and again after the
  rest of the province doubled to 20,000 (2,000 and 1,000 with ``--quick``),
  and bytes of the rows written at each node (``take_rows``).  HTTP and TLS
  framing are not counted (a few hundred bytes per request).
* **county hub state** of the measured county at both sizes.
* **search beyond** a department (keyword, scope ``52``), answered by the
  province through its hubs: bytes on the department's link, results.

National figures are extrapolated from the measured per-node figures
(34 provinces under one national hub; the national hub holds the nation's
catalog, 34 times a province's; one more link per change), not run.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date

from _scale_report import section_main

from exchnode.catalog import (
    CatalogEntry,
    CatalogQuery,
    CatalogState,
    CatalogVerifier,
    DataItem,
    DataType,
    FeedPuller,
    FeedRequest,
    LookupAnswer,
    LookupRequest,
    Publication,
    RecordPage,
    ResourceFormat,
    ShareMethod,
    ShareType,
    UpdateCycle,
    Wanted,
    merge_verified,
    sign_records,
)
from exchnode.core import LocalIdentity, StaticDirectory
from exchnode.federation import Neighbour, Relation
from exchnode.testing import seeded_identity

PROVINCE = "520000"
CITIES = [f"52{c:02d}00" for c in range(1, 10)]  # 9 city hubs
ENTRIES = 10  # per department
LOOKED_UP = 20  # entries of other branches a department uses
MEASURED_COUNTY = "520101"
MEASURED_DEPARTMENTS = 50  # the measured county's departments, the same at both sizes
SIGNED_AT = 1_795_000_000.0
MB = 1_000_000
BEFORE_WRITTEN = "52.8 MB"  # issue 13: bytes written per change at 100,000 entries
BEFORE_STATE = "every entry (52.8 MB)"


def _counties() -> list[str]:
    """88 county hubs: 9 or 10 under each city (the measured one first)."""
    counties = []
    for index in range(88):
        city = CITIES[index % 9]
        counties.append(f"{city[:4]}{index // 9 + 1:02d}")
    return counties


COUNTIES = _counties()
HUBS = [PROVINCE, *CITIES, *COUNTIES]


def parent_of(name: str) -> str:
    if "." in name:
        return name.split(".")[0]
    if name in CITIES:
        return PROVINCE
    return f"{name[:4]}00"


def entry(provider: str, sequence: int, version: int = 1) -> CatalogEntry:
    return CatalogEntry(
        provider=provider,
        code=f"1{(sequence % 5) + 1:02d}001/{sequence:06d}",
        classification=f"1{(sequence % 5) + 1:02d}001",
        name=f"人口基本信息 {sequence}" + (f" 第{version}版" if version > 1 else ""),
        provider_code="11520102MB1234567X",
        summary="户籍人口的基本信息：姓名、身份证号、出生日期、住址",
        format=ResourceFormat.DATABASE,
        data_items=(
            DataItem("身份证号", DataType.CHARACTER, "公民身份号码"),
            DataItem("姓名", DataType.CHARACTER),
            DataItem("出生日期", DataType.DATE),
        ),
        share_type=ShareType.CONDITIONAL,
        share_conditions="仅限政务部门依法履职使用",
        share_methods=frozenset({ShareMethod.SUBSCRIPTION_PUSH}),
        update_cycle=UpdateCycle.DAILY,
        publish_date=date(2026, 1, 15),
    )


@dataclass
class Province:
    """Every node's catalog, the feeds between them, and the verifier every hub uses."""

    states: dict[str, CatalogState] = field(default_factory=dict)
    identities: dict[str, LocalIdentity] = field(default_factory=dict)
    children: dict[str, list[str]] = field(default_factory=dict)
    pullers: dict[tuple[str, str], FeedPuller] = field(default_factory=dict)
    directory: StaticDirectory = field(default_factory=lambda: StaticDirectory(()))
    verifier: CatalogVerifier | None = None
    departments: list[str] = field(default_factory=list)

    def add_hubs(self) -> None:
        for i, hub in enumerate(HUBS):
            self.states[hub] = CatalogState(hub, feed_id=i.to_bytes(16, "big"))
            self.children.setdefault(hub, [])
            if hub != PROVINCE:
                self.children.setdefault(parent_of(hub), []).append(hub)

    def add_departments(self, names: Iterable[str]) -> None:
        added = list(names)
        for name in added:
            identity = seeded_identity(name)
            self.identities[name] = identity
            state = CatalogState(name, feed_id=(len(self.states) + 1).to_bytes(16, "big"))
            for record in sign_records(
                identity, [Publication(entry(name, s), 1) for s in range(1, ENTRIES + 1)], SIGNED_AT
            ):
                state.apply(record)
            state.take_rows()
            self.states[name] = state
            self.children.setdefault(parent_of(name), []).append(name)
        self.departments += added
        self.directory = StaticDirectory(i.peer for i in self.identities.values())
        self.verifier = CatalogVerifier(self.directory)

    def pull(self, hub: str, child: str) -> tuple[int, int]:
        """``hub`` pulls ``child``'s feed to its end: (records learnt, bytes both ways)."""
        assert self.verifier is not None
        puller = self.pullers.setdefault(
            (hub, child), FeedPuller(Neighbour(self.states[child].me, Relation.CHILD))
        )
        to_parent = Neighbour(self.states[hub].me, Relation.PARENT)
        learnt = size = 0
        while True:
            request = puller.request().encode()
            page_bytes = (
                self.states[child].feed_page(FeedRequest.decode(request), to_parent).encode()
            )
            size += len(request) + len(page_bytes)
            page = RecordPage.decode(page_bytes)
            learnt += len(puller.take(self.states[hub], page, self.verifier).learnt)
            if not page.more:
                return learnt, size

    def period(self) -> int:
        """One refresh period, worst order: top-down, so each hub sees its children as they were."""
        learnt = 0
        for hub in HUBS:
            for child in self.children[hub]:
                learnt += self.pull(hub, child)[0]
        return learnt

    def subtree_complete(self) -> bool:
        """Every hub holds exactly the records of its subtree's departments."""
        held = {d: len(self.states[d]) - self.states[d].cached for d in self.departments}
        for hub in HUBS:
            scope = me_scope(hub)
            expected = sum(n for d, n in held.items() if d.startswith(scope))
            if sum(1 for _ in self.states[hub].subtree()) != expected:
                return False
        return True

    def ask(self, chain: Sequence[str], request: LookupRequest) -> tuple[LookupAnswer, list[int]]:
        """A lookup at ``chain[0]`` passed up: its answer and the bytes on each link it used."""
        assert self.verifier is not None
        state = self.states[chain[0]]
        plan = state.answer(LookupRequest.decode(request.encode()))
        if plan.ask is None or len(chain) == 1:
            return state.finish(plan, complete=True), []
        asked = plan.ask.encode()
        above, links = self.ask(chain[1:], plan.ask)
        answer_bytes = above.encode()
        parent = Neighbour(self.states[chain[1]].me, Relation.PARENT)
        merged = merge_verified(
            state, LookupAnswer.decode(answer_bytes).records, parent, self.verifier
        )
        answer = state.finish(plan, merged.records, complete=above.complete, more=above.more)
        return answer, [len(asked) + len(answer_bytes), *links]

    def chain(self, name: str) -> list[str]:
        names = [name]
        while names[-1] != PROVINCE:
            names.append(parent_of(names[-1]))
        return names


def me_scope(hub: str) -> str:
    if hub == PROVINCE:
        return "52"
    return hub[:4] if hub in CITIES else hub


def _departments(count: int, start: int, skip_measured: bool) -> list[str]:
    """``count`` departments spread over the hubs; the measured county gets its fixed share."""
    names: list[str] = []
    hubs = [h for h in HUBS if h != MEASURED_COUNTY]
    if not skip_measured:
        names += [f"{MEASURED_COUNTY}.m{i:04d}" for i in range(MEASURED_DEPARTMENTS)]
    index = start
    while len(names) < count:
        hub = hubs[index % len(hubs)]
        names.append(f"{hub}.d{index:05d}")
        index += 1
    return names


def _state_bytes(province: Province, names: Iterable[str]) -> int:
    return max(province.states[n].stored_bytes() for n in names)


def _change(province: Province, department: str, version: int) -> tuple[list[int], list[int]]:
    """A new version of one entry at ``department``: bytes per link up, rows written per node."""
    identity = province.identities[department]
    (record,) = sign_records(
        identity, [Publication(entry(department, 3, version), version)], SIGNED_AT
    )
    path = province.chain(department)
    for name in path:
        province.states[name].take_rows()  # what earlier steps left unwritten is not this change's
    state = province.states[department]
    state.apply(record)
    written = [sum(len(k) + len(v or b"") for k, v in state.take_rows().items())]
    links = []
    for child, hub in itertools.pairwise(path):
        learnt, size = province.pull(hub, child)
        assert learnt == 1, (hub, child, learnt)
        links.append(size)
        rows = province.states[hub].take_rows()
        written.append(sum(len(k) + len(v or b"") for k, v in rows.items()))
    for hub in path[1:]:
        assert province.states[hub].version(department, record.code) == version
    return links, written


def _measure(quick: bool) -> list[dict[str, object]]:
    nodes = 1_000 if quick else 10_000
    started = time.perf_counter()
    province = Province()
    province.add_hubs()
    province.add_departments(_departments(nodes - len(HUBS), 0, skip_measured=False))
    periods = 0
    while not province.subtree_complete():
        periods += 1
        province.period()
        if periods > 10:
            break
    for state in province.states.values():
        state.take_rows()
    # A department of the measured county uses 20 entries of other branches (looked up).
    user = f"{MEASURED_COUNTY}.m0000"
    far = [d for d in province.departments if not d.startswith(MEASURED_COUNTY[:4])][:LOOKED_UP]
    keys = [Wanted(d, f"102001/{1:06d}", 0) for d in far]
    lookup_answer, lookup_links = province.ask(
        province.chain(user), LookupRequest(tuple(sorted(keys)))
    )
    search, search_links = province.ask(
        province.chain(user), LookupRequest((), CatalogQuery(scope="52", keyword="人口基本信息 7"))
    )
    department = _state_bytes(province, [user])
    cached = province.states[user].cached
    county = province.states[MEASURED_COUNTY].stored_bytes()
    cities = _state_bytes(province, CITIES)
    whole = province.states[PROVINCE].stored_bytes()
    links_small, written_small = _change(province, f"{MEASURED_COUNTY}.m0001", 2)
    county_changed = province.states[MEASURED_COUNTY].stored_bytes()
    setup_small = time.perf_counter() - started

    # The rest of the province doubles; the measured county keeps its departments.
    province.add_departments(_departments(nodes, nodes, skip_measured=True))
    for _ in range(periods):
        province.period()
    assert province.subtree_complete()
    for state in province.states.values():
        state.take_rows()
    county_doubled = province.states[MEASURED_COUNTY].stored_bytes()
    links_big, written_big = _change(province, f"{MEASURED_COUNTY}.m0001", 3)
    entries = sum(1 for _ in province.states[PROVINCE].subtree())
    big_nodes = len(HUBS) + len(province.departments)
    small_entries = (nodes - len(HUBS)) * ENTRIES
    national_hub = 34 * whole
    size = f"{nodes:,}"
    rows: list[dict[str, object]] = [
        _row(f"refresh periods until every hub holds its subtree ({size} nodes, worst order)",
             periods, "periods", "<= 3", "never (65,536 limit)", periods <= 3),
        _row(f"entries in the province's catalog ({size} nodes)", small_entries, "entries",
             None, None, None),
        _row(f"department catalog state (own {ENTRIES}, cached {cached}: lookups and a search)",
             department, "bytes",
             "<= 1 MB (directory not counted)", BEFORE_STATE, department <= MB),
        _row("county hub catalog state", county, "bytes", None, BEFORE_STATE, None),
        _row("city hub catalog state (largest)", cities, "bytes", None, BEFORE_STATE, None),
        _row("province hub catalog state", whole, "bytes", None, BEFORE_STATE, None),
        _row(f"county hub state at {big_nodes:,} nodes (rest doubled)", county_doubled, "bytes",
             f"= {county_changed:,} (at {size})", None, county_doubled == county_changed),
        _row(f"one change: bytes per link, dept→county→city→province ({size})",
             "/".join(str(n) for n in links_small), "bytes", "<= 10 KB each", None,
             max(links_small) <= 10_000),
        _row(f"one change: bytes per link, same path ({big_nodes:,} nodes)",
             "/".join(str(n) for n in links_big), "bytes", "independent of size", None,
             links_big == links_small),
        _row("one change: rows written per node on its path (max)", max(written_small),
             "bytes", "O(change): one row", BEFORE_WRITTEN,
             written_big == written_small and max(written_small) <= 2_000),
        _row("one change reaches every hub above it", "yes", None, "yes", None, True),
        _row("lookup of 20 entries beyond a department: bytes dept↔county",
             lookup_links[0], "bytes", None, None, len(lookup_answer.records) == LOOKED_UP),
        _row("search beyond a department (scope 52): results / bytes dept↔county",
             f"{len(search.records)} / {search_links[0]}", None, "answered by the province",
             None, search.complete and len(search_links) == 3),
        _row("NATIONAL (extrapolated): national hub catalog state", national_hub, "bytes",
             None, BEFORE_STATE, None),
        _row("NATIONAL (extrapolated): department / county hub state", f"{department} / {county}",
             "bytes", "<= 1 MB / independent of size", BEFORE_STATE, department <= MB),
        _row("NATIONAL (extrapolated): one change, bytes per link (4 links)",
             "/".join(str(n) for n in [*links_small, links_small[-1]]), "bytes", "<= 10 KB each",
             None, max(links_small) <= 10_000),
        _row("NATIONAL (extrapolated): refresh periods from cold start, worst order",
             periods + 1, "periods", "one per level", None, None),
        _row(f"entries at {big_nodes:,} nodes / seconds to build and converge {size}",
             f"{entries:,} / {setup_small:.0f}", None, None, None, None),
    ]  # fmt: skip
    return rows


def _row(
    figure: str, value: object, unit: str | None, target: str | None, before: str | None,
    met: bool | None,
) -> dict[str, object]:  # fmt: skip
    return {
        "figure": figure,
        "value": value,
        "unit": unit or "",
        "target": target,
        "before": before,
        "met": met,
    }


def section(quick: bool) -> list[dict[str, object]]:
    """The rows of this section (see the module docstring)."""
    return _measure(quick)


def main(argv: list[str]) -> int:
    return section_main(
        "scale_catalog",
        __doc__ or "",
        lambda args: section(args.quick),
        argv,
        quick_help="1,000 and 2,000 nodes",
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
