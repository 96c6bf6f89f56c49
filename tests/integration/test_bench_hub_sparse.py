"""benchmarks/hub_sparse.py runs a hub, its children and a receiver as processes, and says so.

What its report says is checked, never how fast: every message delivered once,
one message per transfer into the hub, the hub's CPU per message measured.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.scripts import quick_json

pytestmark = pytest.mark.slow


def test_hub_sparse_benchmark_quick_json(tmp_path: Path) -> None:
    run, out = quick_json("benchmarks/hub_sparse.py", tmp_path, timeout=60)
    table, report = run.lines, run.report

    assert report["benchmark"] == "hub_sparse"
    assert report["quick"] is True
    settings = report["settings"]
    children = settings["children"]
    assert children > 0
    (row,) = report["rows"]
    assert row["interval_s"] == settings["intervals_s"][0]
    # Every message arrived exactly once.
    assert (
        row["sent"] == row["received"] == row["distinct"] == children * sum(row["rounds"].values())
    )
    assert row["lost"] == row["duplicated"] == 0
    assert row["complete"] is True
    # The hub took and passed on each of them once (nothing else was sent).
    assert report["hub_counters"]["accepted"] == report["hub_counters"]["forwarded"] == row["sent"]
    assert report["hub_queued_after"] == 0
    # Sparse: one message per transfer into the hub; CPU per message measured.
    assert row["items_per_transfer_in"] == 1.0
    assert row["messages"] == children * row["rounds"]["measured"]
    assert row["hub_cpu_us_per_msg"] > 0
    assert 0 <= row["hub_loop_us_per_msg"] <= row["hub_cpu_us_per_msg"]
    assert 0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]
    assert row["hub_handshakes_per_msg"]["server"] >= 0
    # Issue 14's figures beside the measured one; a quick run judges nothing.
    (check,) = report["targets"]
    assert (check["before_us"], check["target_us"], check["met"]) == (3300.0, 500.0, None)
    assert any("hub µs/msg" in line for line in table)
    assert json.loads((out / "hub_sparse.json").read_text())["rows"] == report["rows"]
    assert list((tmp_path / "stores").iterdir()) == []  # its stores are cleaned up
