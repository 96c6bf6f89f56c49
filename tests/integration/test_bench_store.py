"""benchmarks/store.py runs as a real process and reports what it says it does (never how fast)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.scripts import run_script


def test_store_benchmark_quick_json(tmp_path: Path) -> None:
    run = run_script(
        "benchmarks/store.py", "--quick", "--json", "--dir", str(tmp_path), timeout=100
    )
    table, report = run.lines, run.report

    assert report["benchmark"] == "store"
    assert report["quick"] is True
    rows = report["rows"]
    assert [(r["envelope"], r["batch"]) for r in rows] == [
        ("1KiB", 1),
        ("1KiB", 100),
        ("1KiB", 1000),
        ("64KiB", 100),
    ]
    for row in rows:
        for key in ("accept_per_s", "commits_per_s", "relay_per_s", "raw_insert_per_s"):
            assert row[key] > 0, (row["envelope"], row["batch"], key)
        # One commit per batch: the group commit the store exists for.
        assert row["accept_per_s"] / row["commits_per_s"] == pytest.approx(row["batch"], rel=0.01)

    (header_index,) = [i for i, line in enumerate(table) if "accept/s" in line]
    assert set(table[header_index + 1]) == {"-"}
    body = [line.split() for line in table[header_index + 2 : header_index + 2 + len(rows)]]
    assert [(cells[0], int(cells[1])) for cells in body] == [
        (r["envelope"], r["batch"]) for r in rows
    ]
    assert list(tmp_path.iterdir()) == []  # its databases are cleaned up
