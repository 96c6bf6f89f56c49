"""benchmarks/peers.py runs exchnode beside real RabbitMQ and NATS chains, and says what it saw.

One ``--quick --json`` run for the module (brokers start once: RabbitMQ's three
Erlang nodes take ~10 s); each system's test reads its rows.  What the report
says is checked, never how fast: every message delivered exactly once by each
system, CPU read for every server process, nothing judged, nothing left behind
(no broker process, no data folder).

A peer may be skipped only where its broker cannot be installed here (no
apt-get, not root, no network) or its Python client is missing (the ``test``
extra has them) -- and never when ``EXCHNODE_REQUIRE_PEERS=1`` (``.ci/run``),
as ``EXCHNODE_REQUIRE_POSTGRES`` does for PostgreSQL (tests/postgres.py).
exchnode's rows are never skipped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.integration.scripts import ScriptReport, quick_json

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

PATH = ["520102.gongan", "520102", "520100", "520100.fagai"]
BROKERS = {
    "rabbitmq": {"epmd", "rabbitmq-county", "rabbitmq-city", "rabbitmq-province"},
    "nats": {"nats-county", "nats-city", "nats-province"},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[ScriptReport, Path]:
    folder = tmp_path_factory.mktemp("peers")
    # apt-get may have to install both brokers first on a fresh machine (~1 min).
    script, _ = quick_json("benchmarks/peers.py", folder, timeout=540)
    return script, folder


def rows_of(run: tuple[ScriptReport, Path], system: str) -> list[dict[str, Any]]:
    return [row for row in run[0].report["rows"] if row["system"] == system]


def check_delivery(row: dict[str, Any]) -> None:
    """Both phases complete: every message sent arrived once, latencies ordered."""
    assert row["complete"] is True, row.get("error")
    for mode in ("throughput", "latency"):
        phase = row[mode]
        assert phase["mode"] == mode
        assert phase["sent"] == phase["received"] == phase["distinct"] > 0
        assert phase["complete"] is True
        assert 0 < phase["p50_ms"] <= phase["p99_ms"] <= phase["max_ms"]
        assert phase["cpu_us_per_msg"] > 0
    assert row["throughput"]["msgs_per_s"] > 0
    assert row["latency"]["delivered_per_s"] > 0


def test_report_shape(run: tuple[ScriptReport, Path]) -> None:
    script, folder = run
    report = script.report
    assert report["benchmark"] == "peers"
    assert report["quick"] is True
    assert "CLOCK_MONOTONIC" in report["clock"]
    settings = report["settings"]
    assert settings["systems"] == ["exchnode", "rabbitmq", "nats"]
    assert settings["path"] == PATH
    assert settings["payload_bytes"] == 1024
    # exchnode before the peers and after them (the machine's speed drifts), peers in between.
    assert [(r["system"], r.get("when")) for r in report["rows"]] == [
        ("exchnode", "before"),
        ("rabbitmq", None),
        ("nats", None),
        ("exchnode", "after"),
    ]
    # Five targets, none judged on a quick run; a ratio per peer.
    assert len(report["targets"]) == 5
    assert [t["met"] for t in report["targets"]] == [None] * 5
    assert set(report["ratios"]) == {"rabbitmq", "nats"}
    # The table names every system, then the target lines.
    table = "\n".join(script.lines)
    for name in ("exchnode (before)", "rabbitmq", "nats", "exchnode (after)"):
        assert name in table
    assert sum(line.startswith("target: ") for line in script.lines) == 5
    assert json.loads((folder / "out" / "peers.json").read_text())["rows"] == report["rows"]
    # Nothing left behind: no store, no broker folder, no broker process.
    assert list((folder / "stores").iterdir()) == []
    assert not leftover_processes(folder / "stores")


def leftover_processes(folder: Path) -> list[str]:
    """Processes whose command line or working directory is under ``folder``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if str(folder) in command or cwd.startswith(str(folder)):
            found.append(f"{entry}: {command}")
    return found


def test_exchnode_delivers_every_message_once(run: tuple[ScriptReport, Path]) -> None:
    rows = rows_of(run, "exchnode")
    assert [row["when"] for row in rows] == ["before", "after"]
    for row in rows:
        check_delivery(row)
        for mode in ("throughput", "latency"):
            assert row[mode]["path"] == PATH
            assert set(row[mode]["cpu_s"]) == set(PATH)


@pytest.mark.parametrize("system", ["rabbitmq", "nats"])
def test_peer_delivers_every_message_once(run: tuple[ScriptReport, Path], system: str) -> None:
    (row,) = rows_of(run, system)
    if not row["available"]:
        required = os.environ.get("EXCHNODE_REQUIRE_PEERS") == "1"
        if row["missing"] in {"install", "client"} and not required:
            pytest.skip(f"{system}: {row['reason']}")
        pytest.fail(f"{system} did not run: {row['reason']}")
    check_delivery(row)
    for mode in ("throughput", "latency"):
        phase = row[mode]
        assert set(phase["cpu_s"]) == BROKERS[system]  # every broker process read from /proc
        assert sum(phase["cpu_s"].values()) > 0
        assert sum(phase["client_cpu_s"].values()) > 0
