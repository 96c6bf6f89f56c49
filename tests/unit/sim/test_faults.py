"""The fault schedule: times, rates, links, and errors that name the fault and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from exchnode.errors import UsageError
from exchnode.sim import Fault, load_schedule, parse_duration, parse_schedule


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(90, 90.0), ("90s", 90.0), ("30m", 1800.0), ("2h", 7200.0), ("200ms", 0.2), ("1d", 86400.0)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["2 hours", "-1", "h", True, None, "1.5.2h"])
def test_bad_durations_are_refused(text: object) -> None:
    with pytest.raises(UsageError, match="at"):
        parse_duration(text, "at")


def test_a_toml_schedule_sorted_by_time(tmp_path: Path) -> None:
    path = tmp_path / "faults.toml"
    path.write_text(
        """
[[faults]]
at = "8h"
fault = "up"
node = "520100"

[[faults]]
at = "2h"
fault = "down"
node = "520100"

[[faults]]
at = "1h"
fault = "slow"
link = "520102-520102.bumen-017"
latency = "200ms"
bandwidth = "1Mbit"

[[faults]]
at = "3h"
fault = "partition"
links = ["520000-520100", "520100-520102"]
""",
        encoding="utf-8",
    )
    faults = load_schedule(path)
    assert [f.fault for f in faults] == ["slow", "down", "partition", "up"]
    slow = faults[0]
    assert slow.links == (("520102", "520102.bumen-017"),)
    assert slow.latency == 0.2
    assert slow.bandwidth == 125_000.0
    assert faults[1] == Fault(7200.0, "down", node="520100")
    assert faults[2].links == (("520000", "520100"), ("520100", "520102"))


def test_a_json_schedule(tmp_path: Path) -> None:
    path = tmp_path / "faults.json"
    path.write_text('[{"at": 60, "fault": "cut", "link": "520100-520000"}]', encoding="utf-8")
    assert load_schedule(path) == [Fault(60.0, "cut", links=(("520100", "520000"),))]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([{"at": "1h", "fault": "explode", "node": "520100"}], "fault 1: fault must be one of"),
        ([{"fault": "down", "node": "520100"}], "fault 1: 'at' is missing"),
        ([{"at": "1h", "fault": "down"}], r"fault 1 \(down\): node must be"),
        ([{"at": "1h", "fault": "down", "node": "x", "link": "a-b"}], "unknown field"),
        ([{"at": "1h", "fault": "cut", "link": "520100"}], "link must be two node names"),
        ([{"at": "1h", "fault": "heal", "links": []}], "links must be a non-empty list"),
        (
            [{"at": 0, "fault": "down", "node": "1"}, {"at": "x", "fault": "up", "node": "1"}],
            "fault 2: at must be",
        ),
        ([{"at": 1, "fault": "slow", "link": "520100-520000", "bandwidth": "fast"}], "bandwidth"),
        ({"faults": [], "other": 1}, "only 'faults'"),
    ],
)
def test_bad_schedules_name_what_is_wrong(raw: object, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_schedule(raw)


def test_an_unreadable_schedule_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "faults.toml"
    path.write_text("[[faults]\nat=", encoding="utf-8")
    with pytest.raises(UsageError, match=r"faults\.toml is not valid TOML"):
        load_schedule(path)
    with pytest.raises(UsageError, match="cannot read"):
        load_schedule(tmp_path / "absent.toml")
