#!/usr/bin/env python3
"""Issue 13, item 1: the scoped, incremental node directory (format 2) in a whole province.

    .venv/bin/python benchmarks/_scale_directory.py [--quick] [--json]

A province of 10,000 nodes (``--quick``: 1,000): 1 province hub ``520000``, 9
city hubs, 88 county hubs (the first city has 10 counties, the others 9 or
10), the rest departments spread evenly under the 98 hubs, except that county
``520101`` always has 100 departments (10 with ``--quick``) so that its state
can be compared when the rest of the province doubles.  Certificates are real,
from :class:`exchnode.testing.SyntheticPKI` (one CA per division: root,
9 city CAs, 88 county CAs; every node its own key and certificate; nothing
shared); issuing them is timed.  Every node is one
:class:`~exchnode.federation.NodeDirectory`; pages are exchanged in process,
exactly as the :class:`~exchnode.aio.DirectoryService` exchanges them (same
methods, bytes counted on the wire form), with a simulated clock.

* **Refresh period** (one round): every node pulls each neighbour's feed page
  after page, the pulls in a random order (seeded): timers are not
  synchronised, and announcements are not modelled (they only make it faster).
* **Workload of addressing**: each department addresses 4 others: one
  department under its own hub, one under another hub of its city, two
  anywhere in the province (seeded); hubs address their neighbours.  After
  each round, each node resolves what it addresses that it does not hold
  (lookups up the hierarchy, as ``DirectoryService.resolve`` does: within
  the round, a lookup is round trips, not a period) and the round counts as
  converged when every node can seal to every node it addresses
  (``recipient`` answers).
* **State** per node: the bytes of the rows it keeps in its store
  (``NodeDirectory.footprint``: entries, CRLs with their CAs' chains,
  looked-up entries, positions).
* **Bytes per link**: the bytes of every page on a link in a round where
  nothing changed; and for one department whose certificate changed
  (restarted with a rotated key: its own link lists its feed again, a reset).
* **CPU per pull at a department**: ``time.process_time`` of verifying and
  applying one pull of its hub's feed, steady state and cold start.
* **National**: a department in one province resolves and seals to a
  department in another, through a national hub (two small provinces, real
  pages); national per-node state is extrapolated from the measured figures
  (said so in the row).
"""

from __future__ import annotations

import concurrent.futures
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from _scale_report import section_main

from exchnode.core import NodeName, Opener, Outgoing, Sealer, parent_hub
from exchnode.federation import Neighbour, NodeDirectory, Relation
from exchnode.pki import TrustStore
from exchnode.testing import IssuedCA, IssuedNode, SeededRandom, SyntheticPKI

LIFETIME = 24 * 3600.0
REFRESH = 60.0
MAX_ROUNDS = 8

#: Today's figures, from issue 13 (format 1, 10,000 nodes).
BEFORE = {
    "rounds": "1 (every node holds every node)",
    "department": "92 MB",
    "county": "grows with the province (16.4 MB snapshot per neighbour)",
    "idle_link": "16.4 MB (a whole snapshot per pull)",
    "province_link": "1.02 GB per refresh at the province hub",
    "change": "16.4 MB per link (whole snapshots)",
    "cpu": "12.1 s",
}


@dataclass
class Province:
    """The nodes of one province, their directories and what they address."""

    pki: SyntheticPKI
    root: IssuedCA
    issued: dict[str, IssuedNode] = field(default_factory=dict)
    dirs: dict[str, NodeDirectory] = field(default_factory=dict)
    addresses: dict[str, list[str]] = field(default_factory=dict)
    issue_s: float = 0.0
    clock: list[float] = field(default_factory=lambda: [0.0])

    def trust(self) -> TrustStore:
        # One object, as a node has one: directories cache what they derive from it.
        if self._trust is None:
            self._trust = TrustStore([self.root.certificate], self.crls)
        return self._trust

    _trust: TrustStore | None = None

    crls: list[Any] = field(default_factory=list)
    #: The CA of each hub's division (its city's when counties have none).
    cas: dict[str, IssuedCA] = field(default_factory=dict)


def _layout(total: int, county_depts: int, province: str = "52") -> dict[str, list[str]]:
    """Hub name → department names: 98 hubs, ``county_depts`` under county ``xx0101``."""
    cities = [f"{province}{c:02}00" for c in range(1, 10)]
    counties = [
        f"{city[:4]}{k:02}" for i, city in enumerate(cities) for k in range(1, 11 - (i > 7))
    ]
    counties = counties[:88]
    hubs = [f"{province}0000", *cities, *counties]
    fixed = f"{province}0101"
    rest = total - len(hubs) - county_depts
    others = [hub for hub in hubs if hub != fixed]
    layout: dict[str, list[str]] = {hub: [] for hub in hubs}
    layout[fixed] = [f"{fixed}.d{i}" for i in range(county_depts)]
    for i in range(rest):
        hub = others[i % len(others)]
        layout[hub].append(f"{hub}.d{i // len(others)}")
    return layout


def build(total: int, county_depts: int, seed: int, *, county_cas: bool = False) -> Province:
    pki = SyntheticPKI()
    root = pki.root("520000")
    layout = _layout(total, county_depts)
    started = time.perf_counter()
    cas: dict[str, IssuedCA] = {}
    for hub in layout:
        level = NodeName.parse(hub).level
        if level == 1:
            cas[hub] = root
        elif level == 2:
            cas[hub] = pki.ca(hub, root)
        elif county_cas:
            cas[hub] = pki.ca(hub, cas[hub[:4] + "00"])
        else:  # the county's nodes certified by its city's CA: 10 CAs, 10 CRLs
            cas[hub] = cas[hub[:4] + "00"]
    province = Province(pki, root)
    province.cas = cas
    for hub, depts in layout.items():
        province.issued[hub] = pki.node(hub, cas[hub])
        for dept in depts:
            province.issued[dept] = pki.node(dept, cas[hub])
    province.issue_s = time.perf_counter() - started
    epoch = pki.epoch + timedelta(days=1)
    province.clock[0] = epoch.timestamp()
    province.crls = [
        pki.crl(ca, this_update=pki.epoch) for ca in {id(c): c for c in cas.values()}.values()
    ]
    children: dict[str, list[str]] = {name: [] for name in province.issued}
    for name in province.issued:
        parent = parent_hub(name)
        if parent in children:
            children[parent].append(name)
    for name, node in province.issued.items():
        parent = parent_hub(name)
        neighbours = [Neighbour(NodeName.parse(c), Relation.CHILD) for c in children[name]]
        if parent in province.issued:
            neighbours.append(Neighbour(NodeName.parse(parent), Relation.PARENT))
        province.dirs[name] = NodeDirectory(
            node.identity,
            clock=lambda: province.clock[0],
            address=f"https://{name}.example:8443",
            neighbours=neighbours,
            feed_ids=(
                random.Random(f"{seed}{name}u").randbytes(16),
                random.Random(f"{seed}{name}d").randbytes(16),
            ),
        )
    # CRLs enter at the province hub, as an administrator's `crl add` would.
    province.dirs["520000"].add_crls(
        province.crls,
        province.trust(),
        province.clock[0],
        cas=[c.certificate for c in cas.values()],
    )
    rng = random.Random(seed)
    depts = [n for n in province.issued if not NodeName.parse(n).is_hub]
    by_hub: dict[str, list[str]] = {}
    for dept in depts:
        by_hub.setdefault(NodeName.parse(dept).division, []).append(dept)
    for name in province.issued:
        parsed = NodeName.parse(name)
        if parsed.is_hub:
            up = parent_hub(name)
            province.addresses[name] = [*children[name], *([up] if up in province.issued else [])]
            continue
        own = [d for d in by_hub[parsed.division] if d != name]
        city = parsed.division[:4]
        cousins = [h for h in by_hub if h.startswith(city) and h != parsed.division]
        wanted = [rng.choice(own)] if own else []
        if cousins:
            wanted.append(rng.choice(by_hub[rng.choice(cousins)]))
        wanted += rng.sample(depts, 2)
        province.addresses[name] = [w for w in dict.fromkeys(wanted) if w != name]
    return province


class Wire:
    """Counts the bytes of every page per link; runs one pull or lookup as the service does."""

    def __init__(self, province: Province) -> None:
        self.p = province
        self.bytes: dict[tuple[str, str], int] = {}
        self.cpu: dict[str, list[float]] = {}

    def pull(self, into: str, source: str) -> None:
        p = self.p
        asker, server = p.dirs[into], p.dirs[source]
        now = p.clock[0]
        for _ in range(10_000):
            since, listing = asker.pull_position(source, now)
            page = server.feed_page(server.audience_of(into), since, now, LIFETIME, listing=listing)
            self.bytes[(into, source)] = self.bytes.get((into, source), 0) + len(page) + 120
            started = time.process_time()
            report = asker.apply_page(source, page, p.trust(), now)
            self.cpu.setdefault(into, []).append(time.process_time() - started)
            if not report.more:
                return

    def resolve(self, name: str, wanted: list[str]) -> None:
        """``DirectoryService.resolve``: ask the parent, which asks its own first."""
        p = self.p
        asker = p.dirs[name]
        now = p.clock[0]
        missing = [w for w in wanted if asker.wants(w) and not asker.has_live(w, now)]
        parent = asker.parent
        if not missing or parent is None:
            return
        server = p.dirs[parent]
        _, forward = server.lookup_split(missing, now)
        if forward:
            self.resolve(parent, forward)
        answer = server.lookup_answer(missing, now, LIFETIME)
        self.bytes[(name, parent)] = self.bytes.get((name, parent), 0) + len(answer) + 120
        asker.apply_lookup(parent, answer, missing, p.trust(), now)


def links(province: Province) -> list[tuple[str, str]]:
    pairs = []
    for name, directory in province.dirs.items():
        for neighbour in directory.neighbours():
            pairs.append((name, neighbour))
    return pairs


def round_(province: Province, wire: Wire, rng: random.Random) -> None:
    pairs = links(province)
    rng.shuffle(pairs)
    for into, source in pairs:
        wire.pull(into, source)


def sealable(province: Province, wire: Wire) -> int:
    """Resolve what each node addresses; how many (node, addressed) pairs still fail."""
    failing = 0
    now = province.clock[0]
    for name, wanted in province.addresses.items():
        wire.resolve(name, wanted)
        directory = province.dirs[name]
        for target in wanted:
            try:
                directory.recipient_at(target, now)
            except Exception:
                failing += 1
    return failing


def converge(province: Province, seed: int, *, addressing: bool = True) -> tuple[int, Wire]:
    """Rounds until every node seals to all it addresses (without ``addressing``: 3 rounds)."""
    wire = Wire(province)
    rng = random.Random(seed)
    for rounds in range(1, MAX_ROUNDS + 1):
        round_(province, wire, rng)
        if (sealable(province, wire) == 0) if addressing else rounds == 3:
            return rounds, wire
        province.clock[0] += REFRESH
    return MAX_ROUNDS + 1, wire


def _kb(n: float) -> float:
    return round(n / 1024, 1)


def _first(province: Province, level: int, *, hub: bool = True) -> str:
    for name in province.dirs:
        parsed = NodeName.parse(name)
        if parsed.is_hub == hub and parsed.level == level:
            return name
    raise LookupError(level)


def measure_county_cas(total: int) -> dict[str, Any]:
    """One CA per county (98 CAs, 98 CRLs everywhere): a department's state and CPU."""
    province = build(total, 2, seed=7, county_cas=True)
    rounds, wire = converge(province, seed=7)
    dept = "520101.d0"
    cold = max(wire.cpu[dept])
    province.clock[0] += REFRESH
    idle = Wire(province)
    round_(province, idle, random.Random(1))
    return {
        "rounds": rounds,
        "state": province.dirs[dept].footprint(),
        "cold_pull_s": cold,
        "steady_pull_s": max(idle.cpu[dept]),
        "crls": len(province.dirs[dept].crls()),
    }


def measure_county(total: int, county_depts: int) -> dict[str, Any]:
    """The doubled province: only the county hub's state is wanted (no addressing workload)."""
    province = build(total, county_depts, seed=13)
    converge(province, seed=13, addressing=False)
    return {"placed": province.dirs["520101"].footprint(lookups=False)}


def measure_province(total: int, county_depts: int) -> dict[str, Any]:
    province = build(total, county_depts, seed=13)
    started = time.process_time()
    rounds, wire = converge(province, seed=13)
    cold_cpu = time.process_time() - started
    dept = "520101.d0"
    county, city, top = "520101", "520100", "520000"
    cold_pull = max(wire.cpu.get(dept, [0.0]))  # the costliest: the page that brings the CRLs
    state = {name: province.dirs[name].footprint() for name in (dept, county, city, top)}
    placed = province.dirs[county].footprint(lookups=False)
    dept_states = [
        province.dirs[n].footprint() for n in province.dirs if not NodeName.parse(n).is_hub
    ]
    # A refresh period with no change.
    province.clock[0] += REFRESH
    idle = Wire(province)
    round_(province, idle, random.Random(1))
    idle_cpu = idle.cpu[dept]
    per_link: dict[tuple[str, ...], int] = {}
    for (into, source), size in idle.bytes.items():
        key = tuple(sorted((into, source)))
        per_link[key] = per_link.get(key, 0) + size
    province_link = sum(size for (a, b), size in per_link.items() if top in (a, b))
    # One department's entry changes: it restarts with a rotated certificate.
    province.clock[0] += REFRESH
    changed = "520101.d1"
    ca = province.cas["520101"]
    rotated = province.pki.node(changed, ca, generation=1)
    old = province.dirs[changed]
    province.dirs[changed] = NodeDirectory(
        rotated.identity,
        clock=lambda: province.clock[0],
        address=f"https://{changed}.example:8443",
        neighbours=list(old.neighbours().values()),
        feed_ids=(b"\x07" * 16, b"\x08" * 16),
    )
    change = Wire(province)
    # The change climbs the path within one period: pull bottom-up along it, then the rest.
    for into, source in [(county, changed), (city, county), (top, city)]:
        change.pull(into, source)
    others = [pair for pair in links(province) if pair not in change.bytes]
    for into, source in others:
        change.pull(into, source)
    path_bytes = [
        change.bytes[(county, changed)],
        change.bytes[(city, county)],
        change.bytes[(top, city)],
    ]
    unrelated = max(
        size
        for (into, source), size in change.bytes.items()
        if changed not in (into, source) and (into, source) not in ((city, county), (top, city))
    )
    return {
        "issue_s": province.issue_s,
        "rounds": rounds,
        "placed": placed,
        "cold_cpu_s": cold_cpu,
        "cold_pull_s": cold_pull,
        "steady_pull_s": max(idle_cpu),
        "state": state,
        "dept_max": max(dept_states),
        "idle_link_max": max(per_link.values()),
        "idle_link_mean": sum(per_link.values()) / len(per_link),
        "province_link": province_link,
        "path_bytes": path_bytes,
        "unrelated_max": unrelated,
        "nodes": len(province.dirs),
    }


def national() -> dict[str, Any]:
    """Two small provinces under a national hub: one department seals to the other's."""
    pki = SyntheticPKI()
    root = pki.root("000000")
    cas = {"520000": pki.ca("520000", root), "530000": pki.ca("530000", root)}
    cas["520100"] = pki.ca("520100", cas["520000"])
    cas["530100"] = pki.ca("530100", cas["530000"])
    tree = {
        "000000": ("000000", None),
        "520000": ("520000", "000000"),
        "520100": ("520100", "520000"),
        "520100.gongan": ("520100", "520100"),
        "530000": ("530000", "000000"),
        "530100": ("530100", "530000"),
        "530100.minzheng": ("530100", "530100"),
    }
    issued = {n: pki.node(n, root if ca == "000000" else cas[ca]) for n, (ca, _) in tree.items()}
    crls = [pki.crl(c) for c in (root, *cas.values())]
    now = (pki.epoch + timedelta(days=1)).timestamp()
    dirs: dict[str, NodeDirectory] = {}
    for name, (_, parent) in tree.items():
        neighbours = [
            Neighbour(NodeName.parse(c), Relation.CHILD) for c, (_, p) in tree.items() if p == name
        ]
        if parent is not None:
            neighbours.append(Neighbour(NodeName.parse(parent), Relation.PARENT))
        dirs[name] = NodeDirectory(issued[name].identity, clock=lambda: now, neighbours=neighbours)
    province = Province(pki, root, issued, dirs)
    province.clock[0] = now
    province.crls = crls
    wire = Wire(province)
    for _ in range(4):  # the tree is 4 deep: in this order, a change climbs one level a round
        for into in dirs:
            for source in dirs[into].neighbours():
                wire.pull(into, source)
    a, b = "520100.gongan", "530100.minzheng"
    wire.resolve(a, [b])
    wire.resolve(b, [a])
    sealed = Sealer(issued[a].identity, dirs[a], random=SeededRandom("national")).seal(
        Outgoing([b], b"across provinces"), now
    )
    opened = Opener(issued[b].identity, dirs[b]).open(sealed.data, now)
    return {"reached": opened.plaintext == b"across provinces"}


def section(quick: bool) -> list[dict[str, object]]:
    total, county = (1_000, 10) if quick else (10_000, 100)
    # Two processes: the province, and the doubled province for the county hub's state.
    with concurrent.futures.ProcessPoolExecutor(2) as pool:
        doubled_job = pool.submit(measure_county, 2 * total, county)
        base = measure_province(total, county)
        nat = national()
        per_county = measure_county_cas(200)
        doubled = doubled_job.result()
    s = base["state"]
    county_growth = doubled["placed"] / base["placed"]
    # One county CA's CRL row (its CRL and the chain of 2 CAs), as measured above.
    crl_row = max(0, per_county["state"] - s["520101.d0"]) / 88
    dept_values = f"{_kb(s['520101.d0'])}; {_kb(base['dept_max'])}"
    cpu = f"{base['steady_pull_s'] * 1000:.2f}; {base['cold_pull_s'] * 1000:.1f}"
    cpu98 = f"{per_county['steady_pull_s'] * 1000:.2f}; {per_county['cold_pull_s'] * 1000:.1f}"
    mb = 1024 * 1024
    return [
        _row(f"issue {base['nodes']:,} node certificates (SyntheticPKI)",
             round(base["issue_s"], 2), "s"),
        _row("refresh periods from cold start until every node seals to all it addresses",
             base["rounds"], "periods", "<= 3", BEFORE["rounds"], base["rounds"] <= 3),
        _row("department state (520101.d0; the largest of all departments)", dept_values,
             "KiB", "<= 1 MB", BEFORE["department"], base["dept_max"] <= mb),
        _row("county hub state (520101; of which its cache of looked-up names)",
             f"{_kb(s['520101'])}; {_kb(s['520101'] - base['placed'])}", "KiB"),
        _row("city hub state (520100)", _kb(s["520100"]), "KiB"),
        _row("province hub state (520000)", _kb(s["520000"]), "KiB", "-",
             "1,015,729,685 B, refused by SQLite"),
        _row(f"county hub state but its lookup cache, at {2 * total:,} nodes / at {total:,}",
             round(county_growth, 3), "x", "unchanged (<= 1.05)", BEFORE["county"],
             county_growth <= 1.05),
        _row("bytes per link per refresh, no change (largest; mean)",
             f"{base['idle_link_max']:,}; {base['idle_link_mean']:,.0f}", "B", "O(1)",
             BEFORE["idle_link"]),
        _row("bytes per refresh on all the province hub's links, no change",
             f"{base['province_link']:,}", "B", "-", BEFORE["province_link"]),
        _row("one changed entry: bytes dept->county (a reset), county->city, city->province",
             ", ".join(f"{b:,}" for b in base["path_bytes"]), "B",
             "the entry, past its own link", BEFORE["change"]),
        _row("one changed entry: the largest exchange on any other link",
             f"{base['unrelated_max']:,}", "B", "an empty page"),
        _row("CPU per pull at a department: steady; costliest in the cold start", cpu, "ms",
             "-", BEFORE["cpu"]),
        _row("one CA per county (98 CRLs, 200 nodes): department state",
             _kb(per_county["state"]), "KiB", "<= 1 MB", BEFORE["department"],
             per_county["state"] <= mb),
        _row("one CA per county: CPU per pull at a department: steady; costliest cold", cpu98,
             "ms", "-", BEFORE["cpu"]),
        _row("national: a department seals to a department of another province",
             nat["reached"], "bool", "True", "-", bool(nat["reached"])),
        _row("national department state, extrapolated: this one + CRL rows of 3,210 CAs",
             _kb(s["520101.d0"] + 3210 * crl_row), "KiB", "<= 1 MB",
             "~1.3 GB (140,000 entries)", s["520101.d0"] + 3210 * crl_row <= mb),
    ]  # fmt: skip


def _row(
    figure: str,
    value: object,
    unit: str,
    target: str = "-",
    before: str = "-",
    met: bool | None = None,
) -> dict[str, object]:
    return {
        "figure": figure,
        "value": value,
        "unit": unit,
        "target": target,
        "before": before,
        "met": met,
    }


def main(argv: list[str]) -> int:
    return section_main(
        "scale_directory",
        __doc__ or "",
        lambda args: section(args.quick),
        argv,
        quick_help="1,000 nodes (and 2,000)",
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
