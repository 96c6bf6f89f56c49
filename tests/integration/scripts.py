"""Run an example or a benchmark as a real process and read what it reports.

Every example and benchmark ends its standard output with one JSON object (the
project's rule for benchmarks), after a readable table or summary.  Their tests
check what that report says, never how fast; this is the one place that runs
the script the way a user does, warnings being errors in it and in every process
it starts, and splits its output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, slots=True)
class ScriptReport:
    """What a script that exited cleanly printed: the readable lines, then its JSON object."""

    lines: list[str]
    report: dict[str, Any]
    stderr: str


def run_script(script: str, *argv: str, timeout: float = 120) -> ScriptReport:
    """Run ``script`` (a path below the repository) and insist it exited 0 without a traceback."""
    completed = subprocess.run(
        [sys.executable, str(REPO / script), *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    assert completed.returncode == 0, completed.stderr
    assert "Traceback" not in completed.stderr
    lines = completed.stdout.rstrip("\n").splitlines()
    assert lines, f"{script} printed nothing"
    report = json.loads(lines[-1])
    assert isinstance(report, dict), f"{script}: the last line is not one JSON object"
    return ScriptReport(lines[:-1], report, completed.stderr)


def quick_json(script: str, folder: Path, timeout: float) -> tuple[ScriptReport, Path]:
    """``script --quick --json``, its stores and its output files in ``folder``: the run and
    where the output went."""
    stores, out = folder / "stores", folder / "out"
    stores.mkdir()
    run = run_script(
        script, "--quick", "--json", "--dir", str(stores), "--out", str(out), timeout=timeout
    )
    return run, out
