"""Routing along the hierarchy: decisions, splitting, acceptance, loop freedom."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchnode.core import NodeName, parent_division
from exchnode.errors import RoutingRefusedError, UsageError
from exchnode.federation import Neighbour, Relation, Router


def network(names: Iterable[str], links: Iterable[tuple[str, str]] = ()) -> dict[str, Router]:
    """Routers for a hierarchy: each node's parent is the nearest existing ancestor hub."""
    names = sorted(set(names))
    routers = {name: Router(name) for name in names}
    for name in names:
        node = NodeName.parse(name)
        division: str | None = node.division if not node.is_hub else parent_division(node.division)
        while division is not None and division not in routers:
            division = parent_division(division)
        if division is None:
            continue
        routers[name].add(Neighbour(NodeName.parse(division), Relation.PARENT))
        routers[division].add(Neighbour(node, Relation.CHILD))
    for a, b in links:
        routers[a].add(Neighbour(NodeName.parse(b), Relation.LINK))
        routers[b].add(Neighbour(NodeName.parse(a), Relation.LINK))
    return routers


def deliver(routers: dict[str, Router], sender: str, recipients: list[str]) -> dict[str, object]:
    """Forward one envelope hop by hop through every router, checking acceptance."""
    delivered: Counter[str] = Counter()
    unroutable: list[str] = []
    copies: Counter[tuple[str, str]] = Counter()
    longest = 0
    pending: list[tuple[str, Relation | None, tuple[str, ...], list[str]]] = [
        (sender, None, tuple(recipients), [sender])
    ]
    while pending:
        at, came_from, targets, path = pending.pop()
        assert len(path) <= 16, f"runaway path {path}"
        longest = max(longest, len(path))
        route = routers[at].route(targets, came_from=came_from)
        delivered.update(route.local)
        unroutable.extend(route.unroutable)
        for hop, hop_targets in route.forward.items():
            copies[(at, hop)] += 1
            relation = routers[hop].accept(at, sender, recipients, hop_targets)
            pending.append((hop, relation, hop_targets, [*path, hop]))
    return {"delivered": delivered, "unroutable": unroutable, "copies": copies, "longest": longest}


GUIZHOU = [
    "520000",
    "520000.tongji",
    "520100",
    "520100.fagai",
    "520102",
    "520102.gongan",
    "520103",
    "520103.minzheng",
    "520300",
    "520302",
    "520302.shebao",
    "529001",  # a county administered directly by the province: no city hub above it
    "529001.gongan",
    "530000",
    "530100",
    "530102.gongan",
]


@pytest.fixture
def guizhou() -> dict[str, Router]:
    return network(GUIZHOU, links=[("520000", "530000")])


def test_up_to_the_common_ancestor_and_down(guizhou) -> None:
    router = guizhou["520102.gongan"]
    assert router.next_hop(NodeName.parse("520103.minzheng")) == "520102"
    assert guizhou["520102"].next_hop(NodeName.parse("520103.minzheng")) == "520100"
    assert guizhou["520100"].next_hop(NodeName.parse("520103.minzheng")) == "520103"
    assert guizhou["520103"].next_hop(NodeName.parse("520103.minzheng")) == "520103.minzheng"
    assert guizhou["520100"].next_hop(NodeName.parse("520302.shebao")) == "520000"
    assert guizhou["520000"].next_hop(NodeName.parse("520302.shebao")) == "520300"


def test_a_directly_administered_county_hangs_under_the_province(guizhou) -> None:
    assert guizhou["520000"].next_hop(NodeName.parse("529001.gongan")) == "529001"
    assert guizhou["529001"].next_hop(NodeName.parse("520102.gongan")) == "520000"


def test_a_configured_link_crosses_provinces(guizhou) -> None:
    assert guizhou["520000"].next_hop(NodeName.parse("530102.gongan")) == "530000"
    assert guizhou["530000"].next_hop(NodeName.parse("530102.gongan")) == "530100"


def test_the_most_specific_child_wins() -> None:
    """A county hub docked straight to the province while its city hub also exists."""
    province = Router(
        "520000",
        [
            Neighbour(NodeName.parse("520100"), Relation.CHILD),
            Neighbour(NodeName.parse("520102"), Relation.CHILD),
            Neighbour(NodeName.parse("520103.gongan"), Relation.CHILD),
        ],
    )
    assert province.next_hop(NodeName.parse("520102.gongan")) == "520102"
    assert province.next_hop(NodeName.parse("520103.gongan")) == "520103.gongan"
    assert province.next_hop(NodeName.parse("520103.minzheng")) == "520100"


def test_local_delivery_and_hub_as_recipient(guizhou) -> None:
    route = guizhou["520100"].route(["520100", "520100.fagai", "520102.gongan"])
    assert route.local == ("520100",)
    assert route.forward == {"520100.fagai": ("520100.fagai",), "520102": ("520102.gongan",)}


def test_one_copy_per_link_splitting_where_paths_part(guizhou) -> None:
    recipients = ["520103.minzheng", "520100.fagai", "520302.shebao", "530102.gongan"]
    result = deliver(guizhou, "520102.gongan", recipients)
    assert result["delivered"] == Counter(recipients)
    assert result["unroutable"] == []
    copies = result["copies"]
    assert copies[("520102.gongan", "520102")] == 1  # one copy leaves the department
    assert copies[("520102", "520100")] == 1  # and climbs once
    assert copies[("520100", "520000")] == 1  # towards Zunyi and Yunnan, once
    assert max(copies.values()) == 1


def test_an_unknown_destination_is_unroutable_not_bounced(guizhou) -> None:
    route = guizhou["520000"].route(["520102.nobody", "540000.zangqu"])
    assert route.unroutable == ("540000.zangqu",)
    assert route.forward == {"520100": ("520102.nobody",)}
    assert guizhou["520102"].route(["520102.nobody"]).unroutable == ("520102.nobody",)


def test_from_the_parent_only_downwards(guizhou) -> None:
    hub = guizhou["520100"]
    assert hub.accept("520000", "520302.shebao", ["520102.gongan"], ["520102.gongan"]) is (
        Relation.PARENT
    )
    with pytest.raises(RoutingRefusedError, match="outside 520100's scope"):
        hub.accept("520000", "520000.tongji", ["520302.shebao"], ["520302.shebao"])
    route = hub.route(["520302.shebao"], came_from=Relation.PARENT)
    assert route.unroutable == ("520302.shebao",)


def test_a_child_cannot_speak_for_another_subtree(guizhou) -> None:
    hub = guizhou["520100"]
    hub.accept("520102", "520102.gongan", ["520103.minzheng"], ["520103.minzheng"])
    with pytest.raises(RoutingRefusedError, match="outside its scope"):
        hub.accept("520102", "520103.minzheng", ["520302.shebao"], ["520302.shebao"])
    with pytest.raises(RoutingRefusedError, match="outside its scope"):
        hub.accept("520100.fagai", "520102.gongan", ["520000.tongji"], ["520000.tongji"])


def test_a_link_is_confined_both_ways(guizhou) -> None:
    province = guizhou["520000"]
    province.accept("530000", "530102.gongan", ["520102.gongan"], ["520102.gongan"])
    with pytest.raises(RoutingRefusedError, match="outside its scope"):
        province.accept("530000", "520302.shebao", ["520102.gongan"], ["520102.gongan"])
    with pytest.raises(RoutingRefusedError, match="outside 520000's scope"):
        province.accept("530000", "530102.gongan", ["540000"], ["540000"])


def test_targets_must_be_signed_recipients(guizhou) -> None:
    with pytest.raises(RoutingRefusedError, match="not recipients"):
        guizhou["520100"].accept("520102", "520102.gongan", ["520100.fagai"], ["520000.tongji"])
    with pytest.raises(RoutingRefusedError, match="no targets"):
        guizhou["520100"].accept("520102", "520102.gongan", ["520100.fagai"], [])


def test_strangers_are_refused(guizhou) -> None:
    with pytest.raises(RoutingRefusedError, match="not a neighbour"):
        guizhou["520100"].accept("520302", "520302.shebao", ["520100"], ["520100"])


@pytest.mark.parametrize(
    ("me", "neighbour", "message"),
    [
        ("520100", Neighbour(NodeName.parse("520300"), Relation.CHILD), "outside"),
        ("520100.fagai", Neighbour(NodeName.parse("520100.x"), Relation.CHILD), "cannot have"),
        ("520100", Neighbour(NodeName.parse("520000.tongji"), Relation.PARENT), "must be a hub"),
        ("520100", Neighbour(NodeName.parse("520100"), Relation.LINK), "its own neighbour"),
    ],
)
def test_table_mistakes_are_usage_errors(me, neighbour, message) -> None:
    with pytest.raises(UsageError, match=message):
        Router(me, [neighbour])


# --- every envelope reaches every recipient exactly once, over any hierarchy ----------

# Provinces 52 and 53; cities 01 and 03, and 90 for counties administered
# directly by the province (their city code names no hub); counties 02 and 03.
divisions = st.builds(
    lambda p, c, k: f"{p:02d}{c:02d}{k:02d}",
    st.sampled_from([52, 53]),
    st.sampled_from([0, 1, 3, 90]),
    st.sampled_from([0, 2, 3]),
).filter(lambda d: d[2:4] != "00" or d[4:6] == "00")
departments = st.builds(
    lambda d, dept: f"{d}.{dept}", divisions, st.sampled_from(["gongan", "minzheng", "tongji"])
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(divisions | departments, min_size=2, max_size=25, unique=True),
    st.booleans(),
    st.data(),
)
def test_delivery_is_exactly_once_with_no_loops(names, linked, data) -> None:
    names = sorted({*names, "520000", "530000"})
    links = [("520000", "530000")] if linked else []
    routers = network(names, links)
    sender = data.draw(st.sampled_from(names), label="sender")
    recipients = data.draw(st.lists(st.sampled_from(names), min_size=1, unique=True), label="to")
    result = deliver(routers, sender, recipients)
    reachable = set(recipients) if linked else {r for r in recipients if r[:2] == sender[:2]}
    assert result["delivered"] == Counter(reachable)
    assert set(result["unroutable"]) == set(recipients) - reachable
    assert max(result["copies"].values(), default=1) == 1
