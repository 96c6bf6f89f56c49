"""benchmarks/scale.py runs its sections as a real process and reports each figure in one table.

Only the quick sections that take seconds run here (sharing, audit); the
directory and catalog sections' properties are unit-tested with their
packages, and their full runs are benchmarks, not tests.
"""

from __future__ import annotations

from tests.integration.scripts import run_script


def test_scale_benchmark_quick_json_reports_every_figure_in_one_table() -> None:
    run = run_script(
        "benchmarks/scale.py", "--quick", "--only", "sharing,audit", "--json", timeout=300
    )
    report = run.report
    assert report["benchmark"] == "scale"
    assert report["quick"] is True
    assert set(report["seconds"]) == {"sharing", "audit"}
    rows = report["rows"]
    assert {row["section"] for row in rows} == {"sharing", "audit"}
    for row in rows:
        assert set(row) >= {"section", "figure", "value", "unit", "target", "before", "met"}
        assert row["met"] in (True, False, None)
    assert not [row for row in rows if row["met"] is False], "a quick figure missed its bound"
    sharing = {row["figure"]: row for row in rows if row["section"] == "sharing"}
    reached = [row for figure, row in sharing.items() if "recipients reached" in figure]
    (reached_row,) = reached
    assert reached_row["value"] == 2000
    # The readable table: a header, a rule, one line per figure, then the summary.
    (header,) = [i for i, line in enumerate(run.lines) if line.startswith("section")]
    assert set(run.lines[header + 1].replace(" ", "")) == {"-"}
    body = run.lines[header + 2 : header + 2 + len(rows)]
    assert [line.split()[0] for line in body] == [row["section"] for row in rows]
    assert run.lines[-1].startswith(f"{len(rows)} figures, 0 target(s) not met")
