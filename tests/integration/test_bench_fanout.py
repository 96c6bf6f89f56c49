"""benchmarks/fanout.py runs a real federation and reports what it measured (never how fast)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.scripts import run_script


def test_fanout_benchmark_quick_json(tmp_path: Path) -> None:
    run = run_script(
        "benchmarks/fanout.py", "--quick", "--json", "--out", str(tmp_path), timeout=110
    )
    table, report = run.lines, run.report
    assert report == json.loads((tmp_path / "fanout.json").read_text())
    assert "max copies/link" in table[0]

    one, three = report["rows"]
    assert (one["subscribers"], three["subscribers"]) == (1, 3)
    for row in (one, three):
        assert row["records"] == 50
        assert row["envelopes_published"] == 1  # 50 records, one body, every subscriber
        assert row["max_copies_per_link"] == 1.0
        assert row["uplink_envelopes"] == 1
    # More subscribers use more links, but the provider's uplink carries the body once.
    assert three["links_used"] > one["links_used"]
    assert three["total_link_bytes"] > one["total_link_bytes"]
