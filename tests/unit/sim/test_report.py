"""The report: deterministic figures apart from measured ones, a table, one JSON line."""

from __future__ import annotations

import json

from exchnode.sim import LinkReport, MessageReport, NodeReport, RecoveryReport, Report, deep_size


def report(lost: int = 0) -> Report:
    return Report(
        scenario={"seed": 7},
        nodes=[NodeReport("520100", 1000, 20, 30, 0, 0, 1, cpu_seconds=0.25)],
        links=[LinkReport("520000", "520100", 10, 20, 1, 2, 3, 0, 0.5, 0.25)],
        messages=MessageReport(10, 10, 10 - lost, lost, 0, 0, 0.1, 2.0, 7300.0, None),
        recoveries=[RecoveryReport(7200.0, "up 520100", 4, 90.0)],
        keys_known_at=0.5,
        simulated_seconds=43200.0,
        faults_applied=["2:00:00.000 up 520100"],
        wall_seconds=12.5,
        cpu_seconds=11.0,
        callbacks=1234,
    )


def test_measured_figures_are_kept_out_of_the_deterministic_ones() -> None:
    data = report().deterministic()
    assert "wall_seconds" not in data
    assert "cpu_seconds" not in data
    assert "cpu_seconds" not in data["nodes"][0]
    assert data["messages"]["exactly_once"] is True
    assert data["nodes"][0]["state_bytes"] == 1000


def test_the_table_says_whether_every_message_arrived_exactly_once() -> None:
    assert "every message sent delivered exactly once" in report().table()
    table = report(lost=1).table()
    assert "NOT exactly once" in table
    assert "up 520100" in table
    assert "2.03 h" in table  # the longest latency, in hours
    line = report().json_line()
    assert "\n" not in line
    assert json.loads(line)["links"][0]["transfers"] == 2


def test_deep_size_counts_data_and_not_what_it_calls() -> None:
    payload = bytes(10_000)
    holder = {"a": [payload, payload], "hook": print}
    assert 10_000 < deep_size(holder) < 11_000  # the shared bytes once, not the function
    assert deep_size({"a": [bytes(20_000)]}) > 20_000
