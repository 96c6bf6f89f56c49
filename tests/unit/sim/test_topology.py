"""The shipped division list and the province tree built from it."""

from __future__ import annotations

import pytest

from exchnode.core import Level, parent_hub
from exchnode.errors import UsageError
from exchnode.sim import DEPARTMENTS, department_names, load_divisions, province_topology


def test_guizhou_ships_whole() -> None:
    divisions = load_divisions("52")
    by_level = {level: [d for d in divisions if d.level is level] for level in Level}
    assert [d.code for d in by_level[Level.PROVINCE]] == ["520000"]
    assert len(by_level[Level.CITY]) == 9  # 6 cities and 3 autonomous prefectures
    assert len(by_level[Level.COUNTY]) == 88
    names = {d.code: d.name for d in divisions}
    assert names["520000"] == "贵州省"
    assert names["520100"] == "贵阳市"
    assert names["522700"] == "黔南布依族苗族自治州"
    codes = [d.code for d in divisions]
    assert codes == sorted(codes)
    assert len(set(codes)) == len(codes)
    for county in by_level[Level.COUNTY]:  # every county under a listed city
        assert parent_hub(county.code) in names


def test_an_unknown_province_names_what_ships() -> None:
    with pytest.raises(UsageError, match="no division list for province 11; shipped: 52"):
        load_divisions("11")
    with pytest.raises(UsageError, match="two-digit"):
        load_divisions("520000")


def test_the_tree_follows_the_names() -> None:
    topology = province_topology("52", departments_per_county=3)
    assert topology.nodes[0] == "520000"
    assert len(topology.nodes) == 1 + 9 + 88 * 4
    assert len(topology.links) == len(topology.nodes) - 1
    for parent, child in topology.links:
        assert parent_hub(child) == parent
        assert topology.nodes.index(parent) < topology.nodes.index(child)
    assert topology.children("520102") == [
        "520102.gongan",
        "520102.minzheng",
        "520102.weijian",
    ]
    assert topology.division_names["520102"] == "南明区"


def test_a_smaller_province_and_departments_at_every_level() -> None:
    topology = province_topology(
        "52",
        departments_per_county=1,
        departments_per_city=2,
        departments_per_province=1,
        cities=2,
        counties_per_city=2,
    )
    assert topology.nodes[:2] == ("520000", "520000.gongan")
    assert set(topology.subtree("520100")) == {
        "520100",
        "520100.gongan",
        "520100.minzheng",
        "520102",
        "520102.gongan",
        "520103",
        "520103.gongan",
    }
    assert len(topology.departments) == 1 + 2 * 2 + 4


def test_department_names_go_past_the_named_ones() -> None:
    names = department_names(len(DEPARTMENTS) + 2)
    assert names[: len(DEPARTMENTS)] == list(DEPARTMENTS)
    assert names[-2:] == ["bumen-017", "bumen-018"]
    with pytest.raises(UsageError, match="departments_per_county"):
        province_topology("52", departments_per_county=-1)
