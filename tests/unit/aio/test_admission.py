"""Whom a hub admits as a child on its first hello (``aio.Admission``), and the router's removal."""

from __future__ import annotations

import pytest

from exchnode.aio import Admission, NodeConfig
from exchnode.core import NodeName
from exchnode.errors import RoutingRefusedError, UsageError
from exchnode.federation import Neighbour, Relation, Router

URL = "https://10.1.2.7:7443"
COUNTY, CITY = NodeName.parse("520102"), NodeName.parse("520100")


def judge(admission: Admission, me: NodeName, candidate: str, url: str | None = URL) -> str | None:
    return admission.judge(me, NodeName.parse(candidate), url)


def test_division_admits_what_hangs_under_the_hub_in_the_hierarchy() -> None:
    division = Admission()
    assert judge(division, COUNTY, "520102.minzheng") is None
    assert judge(division, CITY, "520102") is None  # a county hub under its city
    assert judge(division, CITY, "520100.jiaoyu") is None
    assert judge(division, CITY, "520102.minzheng") == (
        "520102.minzheng is not admitted by 520100: its parent in the hierarchy is 520102, "
        'not 520100 (admission policy "division"; an allow-list can admit it)'
    )
    assert judge(division, COUNTY, "520103.waishi") == (
        "520103.waishi is not admitted by 520102: it lies outside 520102's division"
    )
    assert judge(division, COUNTY, "520102.minzheng", None) == (
        "520102.minzheng is not admitted by 520102: its hello names no link URL to reach it at "
        "(set [directory] advertise, or listen on an address that is not a wildcard)"
    )


def test_an_allow_list_admits_only_what_it_lists_within_the_division() -> None:
    allow = Admission(policy="allow-list", allow=("520102.min*", "520105.*"))
    assert judge(allow, CITY, "520102.minzheng") is None  # listed: not the plain hierarchy
    assert "does not list it" in str(judge(allow, CITY, "520102.gongan"))
    assert "outside 520102's division" in str(judge(allow, COUNTY, "520105.x"))


def test_none_and_departments_admit_no_one() -> None:
    assert 'policy is "none"' in str(judge(Admission(policy="none"), COUNTY, "520102.a"))
    department = NodeName.parse("520102.gongan")
    assert judge(Admission(), department, "520102.a") == (
        "520102.a is not admitted by 520102.gongan: a department has no children"
    )


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"policy": "sometimes"}, "must be one of division, allow-list, none"),
        ({"policy": "allow-list", "allow": "520102.*"}, "a list of names or patterns"),
        ({"policy": "allow-list", "allow": ["Bad Name"]}, "is no node name or pattern"),
        ({"allow": ["520102.*"]}, 'used only with policy "allow-list"'),
    ],
)
def test_bad_admission_settings_are_refused(kwargs: dict[str, object], problem: str) -> None:
    with pytest.raises(UsageError, match=problem):
        Admission(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="admission must be a Admission"):
        NodeConfig(admission="division")  # type: ignore[arg-type]


def test_the_router_forgets_a_removed_neighbour() -> None:
    child = Neighbour(NodeName.parse("520102.minzheng"), Relation.CHILD)
    router = Router(COUNTY, [child, Neighbour(CITY, Relation.PARENT)])
    assert router.next_hop(child.name) == "520102.minzheng"
    assert router.remove("520102.minzheng") == child
    assert router.next_hop(child.name) is None  # within the county: no way down any more
    assert router.remove("520100").relation is Relation.PARENT
    assert router.next_hop(NodeName.parse("520300")) is None
    with pytest.raises(RoutingRefusedError):
        router.remove("520100")
    router.add(child)  # and back
    assert router.next_hop(child.name) == "520102.minzheng"
