"""benchmarks/relay.py runs real node processes and reports what it says (never how fast)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.scripts import quick_json

PATHS = {
    "1": ["520102.gongan", "520102.minzheng"],
    "3": ["520102.gongan", "520102", "520100", "520100.fagai"],
    "5": ["520102.gongan", "520102", "520100", "520000", "522300", "522300.fagai"],
}


def test_relay_benchmark_quick_json(tmp_path: Path) -> None:
    run, out = quick_json("benchmarks/relay.py", tmp_path, timeout=110)
    table, report = run.lines, run.report

    assert report["benchmark"] == "relay"
    assert report["quick"] is True
    assert report["paths"] == PATHS
    assert "CLOCK_MONOTONIC" in report["clock"]
    rows = report["rows"]
    assert [(r["mode"], r["size"], r["hops"]) for r in rows] == [
        (mode, size, hops)
        for mode in ("throughput", "latency")
        for size in ("1KiB", "64KiB")
        for hops in (1, 3, 5)
    ]
    for row in rows:
        assert row["path"] == PATHS[str(row["hops"])]
        assert row["audit"] is True  # nodes keep their audit log by default, as daemons do
        assert row["complete"] is True
        for run in row["runs"]:
            # Every message arrived exactly once, through every node of the path.
            assert run["received"] == run["distinct"] == run["sent"] > 0
            path = run["path"]
            warm = report["settings"]["warmup"]
            for relay in path[:-1]:
                assert run["forwarded"][relay] == run["sent"] + warm
            assert run["accepted"][path[-1]] == run["sent"] + warm
            assert 0 < run["p50_ms"] <= run["p99_ms"] <= run["max_ms"]
            assert set(run["cpu_s"]) == set(path)
        key = "msgs_per_s" if row["mode"] == "throughput" else "delivered_per_s"
        assert row[key]["min"] <= row[key]["median"] <= row[key]["max"]

    assert [t["met"] for t in report["targets"]] == [None, None]  # quick runs judge nothing

    (header_index,) = [i for i, line in enumerate(table) if "msgs/s" in line and "mode" in line]
    body = [line.split() for line in table[header_index + 2 : header_index + 2 + len(rows)]]
    assert [(cells[0], cells[1], int(cells[2])) for cells in body] == [
        (r["mode"], r["size"], r["hops"]) for r in rows
    ]
    assert json.loads((out / "relay.json").read_text())["rows"] == rows
    if report["plot"] is not None:  # matplotlib is the optional 'bench' extra
        assert (out / "relay.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert "matplotlib" in report["plot_skipped"]
    assert list((tmp_path / "stores").iterdir()) == []  # its stores are cleaned up
