"""``exchnode simulate``: real nodes over the in-memory network under the simulated clock.

Each scenario is a small slice of Guizhou (two cities, two counties each, two
departments per county: 15 nodes) so that hours of simulated time cost
seconds.  The faults are the issue's: a deterministic schedule gives the same
report twice (and in a process with another hash seed), a partition heals
with every message delivered exactly once, a city hub down for six hours
catches up without loss, a slow county link shows in the link figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from exchnode.sim import Report, Scenario, parse_schedule, simulate

SMALL = Scenario(
    cities=2,
    counties_per_city=2,
    departments_per_county=2,
    messages_per_hour=40,
    directory="static",
    services=("audit",),
    seed=11,
)

FAULTS = [
    {"at": "10m", "fault": "cut", "link": "520102-520102.gongan"},
    {"at": "20m", "fault": "down", "node": "520200"},
    {"at": "35m", "fault": "restore", "link": "520102-520102.gongan"},
    {"at": "50m", "fault": "up", "node": "520200"},
]


def run(scenario: Scenario) -> Report:
    return simulate(scenario)


def check_exactly_once(report: Report) -> None:
    messages = report.messages
    assert messages.sent > 0
    assert messages.lost == 0, messages
    assert messages.duplicated == 0, messages
    assert messages.delivered == messages.sent
    assert messages.exactly_once


def test_a_fault_schedule_gives_the_same_report_twice_and_under_another_hash_seed(
    tmp_path: Path,
) -> None:
    scenario = replace(SMALL, hours=1.0, faults=parse_schedule(FAULTS))
    first = run(scenario)
    check_exactly_once(first)
    assert len(first.faults_applied) == 4
    assert run(scenario).deterministic() == first.deterministic()

    schedule = tmp_path / "faults.json"
    schedule.write_text(json.dumps(FAULTS), encoding="utf-8")
    child = subprocess.run(
        [
            sys.executable,
            "-P",
            "-m",
            "exchnode.sim",
            "--cities=2",
            "--counties-per-city=2",
            "--departments-per-county=2",
            "--messages-per-hour=40",
            "--directory=static",
            "--services=audit",
            "--seed=11",
            "--hours=1",
            f"--faults={schedule}",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=110,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    assert "every message sent delivered exactly once" in child.stdout
    other: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    for name in ("wall_seconds", "cpu_seconds", "process_cpu_seconds", "callbacks"):
        other.pop(name)
    for node in other["nodes"]:
        node.pop("cpu_seconds")
    assert other == json.loads(json.dumps(first.deterministic()))


def test_a_partition_heals_and_every_message_is_delivered_exactly_once() -> None:
    # The two cities cut off from the province and from each other's counties, for an hour.
    partition = ["520000-520100", "520000-520200", "520100-520103"]
    scenario = replace(
        SMALL,
        hours=2.0,
        faults=parse_schedule(
            [
                {"at": "20m", "fault": "partition", "links": partition},
                {"at": "80m", "fault": "heal", "links": partition},
            ]
        ),
    )
    report = run(scenario)
    check_exactly_once(report)
    (heal,) = report.recoveries
    assert heal.waited > 0  # messages across the partition waited for it to heal
    assert heal.caught_up_after is not None
    assert heal.caught_up_after < 600  # within the backoff's reach, not hours
    assert sum(link.resets for link in report.links) >= 0
    cut = {tuple(sorted(p.split("-"))) for p in partition}
    crossing = [link for link in report.links if (link.parent, link.child) in cut]
    assert all(link.transfers > 0 for link in crossing)


def test_a_city_hub_down_for_six_hours_catches_up_without_loss() -> None:
    scenario = replace(
        SMALL,
        hours=8.0,
        messages_per_hour=12,
        services=(),  # custody is the point; the audit log's timers would triple the cost
        faults=parse_schedule(
            [
                {"at": "1h", "fault": "down", "node": "520100"},
                {"at": "7h", "fault": "up", "node": "520100"},
            ]
        ),
    )
    report = run(scenario)
    check_exactly_once(report)
    (up,) = report.recoveries
    assert up.waited >= 10  # six hours of messages through 520100 held by its neighbours
    assert up.caught_up_after is not None
    assert up.caught_up_after < 900
    hub = next(node for node in report.nodes if node.name == "520100")
    assert hub.restarts == 1
    assert report.messages.latency_max is not None
    assert report.messages.latency_max > 5 * 3600


def test_a_slow_county_link_shows_in_the_link_figures() -> None:
    slow = "520102-520102.gongan"
    base = replace(SMALL, hours=1.0, payload_bytes=64 * 1024, messages_per_hour=60)
    fast = run(base)
    slowed = run(
        replace(
            base,
            faults=parse_schedule(
                [
                    {
                        "at": 0,
                        "fault": "slow",
                        "link": slow,
                        "latency": "100ms",
                        "bandwidth": "256kbit",
                    }
                ]
            ),
        )
    )
    check_exactly_once(slowed)

    def link(report: Report) -> Any:
        return next(k for k in report.links if (k.parent, k.child) == ("520102", "520102.gongan"))

    assert link(fast).busy_down + link(fast).busy_up == 0.0  # unlimited bandwidth
    busy = link(slowed).busy_down + link(slowed).busy_up
    # every byte that crossed it, at 32,000 bytes/s
    assert busy == pytest.approx((link(slowed).bytes_down + link(slowed).bytes_up) / 32_000)
    assert busy > 1.0
    assert slowed.messages.latency_max is not None
    assert fast.messages.latency_max is not None
    assert slowed.messages.latency_max > fast.messages.latency_max + 1.0


def test_catalog_entries_climb_to_the_province_hub() -> None:
    report = run(replace(SMALL, hours=1.0, services=("audit", "catalog"), publishes_per_hour=20))
    check_exactly_once(report)
    catalog = report.catalog
    assert catalog is not None
    assert catalog.published == catalog.planned > 0
    assert catalog.at_province == catalog.published
    assert catalog.to_province_max is not None
    assert catalog.to_province_max < 300  # a few pulls up three levels, not hours


def test_a_bad_schedule_is_refused_naming_the_fault(tmp_path: Path) -> None:
    schedule = tmp_path / "faults.toml"
    schedule.write_text('[[faults]]\nat = "1h"\nfault = "down"\nnode = "529999"\n')
    child = subprocess.run(
        [sys.executable, "-P", "-m", "exchnode.sim", "--cities=1", f"--faults={schedule}"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )
    assert child.returncode == 2
    assert child.stdout == ""
    assert "error: fault 1 (down): no node 529999" in child.stderr
