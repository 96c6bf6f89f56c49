"""benchmarks/hub_sparse.py runs a hub, its children and a receiver as processes, and says so.

What its report says is checked, never how fast: every message delivered once,
one message per transfer into the hub, the hub's CPU per message measured -- on
SQLite, and on PostgreSQL as one and as two workers (issue 14).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.scripts import quick_json, run_script
from tests.postgres import require_postgres

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


@pytest.mark.timeout(300)
def test_hub_sparse_benchmark_quick_on_postgresql_with_one_and_two_workers(tmp_path: Path) -> None:
    require_postgres()
    stores, out = tmp_path / "stores", tmp_path / "out"
    stores.mkdir()
    run = run_script(
        "benchmarks/hub_sparse.py",
        "--quick", "--json", "--store", "postgresql", "--workers", "1,2",
        "--dir", str(stores), "--out", str(out),
        timeout=280,
    )  # fmt: skip
    table, report = run.lines, run.report

    settings = report["settings"]
    assert (settings["store"], settings["workers"], settings["hub_audit"]) == (
        "postgresql",
        [1, 2],
        False,
    )
    assert settings["receivers"] == ["520102.fagai", "520102.minzheng"]
    assert settings["postgres"]["fsync"] is True
    children = settings["children"]
    one, two = report["rows"]
    assert [(r["store"], r["workers"], r["audit"]) for r in (one, two)] == [
        ("postgresql", 1, False),
        ("postgresql", 2, False),
    ]
    for row in (one, two):
        # Every message arrived exactly once, at one of the two receivers.
        total = children * sum(row["rounds"].values())
        assert row["sent"] == row["received"] == row["distinct"] == total
        assert row["lost"] == row["duplicated"] == 0
        assert row["complete"] is True
        assert row["items_per_transfer_in"] == 1.0
        # The hub's CPU: its worker processes and the PostgreSQL server, both measured.
        assert row["hub_workers_cpu_us_per_msg"] > 0
        assert row["postgres_cpu_us_per_msg"] > 0
        assert row["postgres_processes"] > 1  # the postmaster and its children
        split = row["hub_workers_cpu_us_per_msg"] + row["postgres_cpu_us_per_msg"]
        assert abs(row["hub_cpu_us_per_msg"] - split) <= 0.2
        assert row["delivered_msgs_per_s"] > 0
        assert 0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]
    assert len(one["per_worker"]) == 1
    # Two workers: each forwarded the queue it owns (one receiver each).
    assert len(two["per_worker"]) == 2
    assert all(w["forwarded"] > 0 for w in two["per_worker"])
    for federation, row in zip(report["runs"], (one, two), strict=True):
        assert federation["workers"] == row["workers"]
        assert federation["hub_queued_after"] == 0
        # Every worker counts what it took: together, every message once.
        assert federation["hub_counters"]["accepted"] == row["sent"]
        assert federation["receiver_counters"]["delivered"] == row["sent"]
        assert len(federation["hub_workers_counters"]) == row["workers"]
    # Judged only on a full run; the figures are there.
    (flat,) = report["flat"]
    assert (flat["from_workers"], flat["workers"], flat["met"]) == (1, 2, None)
    assert report["estimate"]["cores"] == 16
    assert report["estimate"]["msgs_per_s"] > 0
    assert [t["met"] for t in report["targets"]] == [None, None]
    assert any("16-core estimate" in line for line in table)
    assert any("flat from 1 to 2 workers" in line for line in table)
    assert list(stores.iterdir()) == []  # its stores are cleaned up
