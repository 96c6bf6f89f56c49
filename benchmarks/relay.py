#!/usr/bin/env python3
"""Relay throughput and latency: real nodes in separate processes, durable at every hop.

    python3 dev.py bench relay [--json] [--quick] [--out DIR] [--dir DIR] [--repeat N]
                               [--hops 1,3,5] [--sizes 1KiB,64KiB] [--modes throughput,latency]
                               [--rate 1000] [--rate-64kib 200] [--duration 10]
                               [--audit on,off] [--profile DIR]

Every node of a path runs in its own OS process (``benchmarks/relay_node.py``)
with its own SQLite store (WAL, synchronous=FULL) on a real disk, and talks
to its neighbours over mutual TLS on loopback, exactly as deployed nodes do.
The sending application lives in the first node's process and the receiving
application in the last one's.  A *hop* is one link crossed:

* 1 hop: ``520102.gongan -> 520102.minzheng``, two departments of one county
  with a configured direct link;
* 3 hops: ``520102.gongan -> 520102 -> 520100 -> 520100.fagai``, a county
  department to a department of its city, through both hubs;
* 5 hops: ``520102.gongan -> 520102 -> 520100 -> 520000 -> 522300 ->
  522300.fagai``, a county department to a department of another city,
  through the province.

Each run starts a fresh federation (new stores, new processes), sends a
warm-up (TLS sessions, content-key epoch, caches; not counted), then:

* **throughput**: the sender keeps ``inflight`` ``send_many`` calls of
  ``batch`` messages going for as long as the node accepts them (its queue
  limit pushes back); the receiver acknowledges in batches.  msgs/s is the
  steady-state delivery rate at the receiving application, from the 10th
  percentile of arrivals to the last; MB/s counts payload bytes.
* **latency**: the sender sends open loop at ``--rate`` msgs/s (1 KiB;
  64 KiB at ``--rate-64kib``, below what 5 hops carry) for ``--duration``
  seconds, each message its own ``send`` call; latency is
  from the scheduled send time to the moment the receiving application gets
  the message (``time.monotonic()``, CLOCK_MONOTONIC: one clock for every
  process of the machine).

Every node keeps its audit log as a daemon does (``AuditService``: a custody
record per batch inside each group commit, a signed head every 10 s).
``--audit on,off`` runs each configuration both ways, alternating, and
judges issue 5's target: auditing costs at most 15% of the 3-hop 1 KiB
throughput.

Each configuration runs ``--repeat`` times (default 2): the table shows the
median and, in brackets, the range.  ``--out`` (default ``out/relay``) gets
``relay.json`` (the same object as ``--json``'s last line) and ``relay.png``
(matplotlib, the ``bench`` extra; without it the PNG is skipped and the JSON
says why).  ``--profile DIR`` writes a cProfile of each node process's event
loop thread (the store thread is not profiled).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import latency_figures, steady_rate
from cryptography.hazmat.primitives.serialization import Encoding

from exchnode.core import NodeName, parent_division
from exchnode.pki import write_private_key
from exchnode.testing import IssuedCA, SyntheticPKI, free_port

REPO = Path(__file__).resolve().parents[1]
CHILD = Path(__file__).resolve().with_name("relay_node.py")
READ_LIMIT = 1 << 30

PATHS: dict[int, list[str]] = {
    1: ["520102.gongan", "520102.minzheng"],
    3: ["520102.gongan", "520102", "520100", "520100.fagai"],
    5: ["520102.gongan", "520102", "520100", "520000", "522300", "522300.fagai"],
}
SIZES = {"1KiB": 1024, "64KiB": 65536}
TARGET_MSGS = 10_000.0  # 1 KiB over 3 hops, end to end
TARGET_P99_MS = 50.0  # at 1,000 msgs/s, 1 KiB over 3 hops
AUDIT_BUDGET = 0.15  # issue 5: auditing may cost at most 15% of that throughput
TARGET_HOPS, TARGET_SIZE = 3, "1KiB"


@dataclass(frozen=True)
class Settings:
    counts: dict[str, int]  # throughput run: messages per size
    warmup: int
    batch: int
    inflight: int
    sender_queue: int
    rates: dict[str, float]  # latency run: offered msgs/s per size
    duration: float
    repeat: int
    profile: Path | None
    patience: float  # seconds the warm-up may take before the run is declared stalled
    audits: tuple[bool, ...] = (True,)  # audit log on, off, or each in turn


# --- the federation on disk -------------------------------------------------------------


def parent_of(name: str) -> str | None:
    parsed = NodeName.parse(name)
    return parsed.division if not parsed.is_hub else parent_division(parsed.division)


def relation(me: str, other: str) -> str:
    if parent_of(me) == other:
        return "parent"
    if parent_of(other) == me:
        return "child"
    return "link"  # a configured direct link (the 1-hop path)


def describe(path: list[str]) -> str:
    return " -> ".join(path)


def write_pki(files: Path, names: list[str]) -> None:
    """Certificates, keys and CRLs for ``names``, as ``exchnode pki`` would leave them."""
    now = datetime.now(UTC).replace(microsecond=0)
    pki = SyntheticPKI(epoch=now - timedelta(days=1))
    root = pki.root("520000")
    cas: dict[str, IssuedCA] = {"520000": root}
    for name in names:
        division = NodeName.parse(name).division
        city = division[:4] + "00"
        if city == "520000" or division.endswith("0000"):
            issuer = root
        else:
            issuer = cas.get(city) or cas.setdefault(city, pki.ca(city, root))
        node = pki.node(name, issuer)
        (files / f"{name}.chain.pem").write_bytes(
            node.certificate.public_bytes(Encoding.PEM)
            + b"".join(c.public_bytes(Encoding.PEM) for c in node.chain)
        )
        write_private_key(files / f"{name}.signing.key", node.identity.signing_private_key)
        write_private_key(files / f"{name}.encryption.key", node.identity.encryption_private_key)
    root_pem = root.certificate.public_bytes(Encoding.PEM)
    crls = b"".join(
        pki.crl(ca, this_update=now - timedelta(hours=1)).public_bytes(Encoding.PEM)
        for ca in cas.values()
    )
    (files / "root.pem").write_bytes(root_pem)
    (files / "crls.pem").write_bytes(crls)
    (files / "verify.pem").write_bytes(root_pem + crls)
    intermediates = [ca.certificate for n, ca in cas.items() if n != "520000"]
    (files / "ca-bundle.pem").write_bytes(
        b"".join(c.public_bytes(Encoding.PEM) for c in intermediates)
    )


def filesystem_of(path: Path) -> dict[str, str]:
    """The mount holding ``path``: where the stores' flushes really go."""
    best = ("", "?", "?")
    resolved = str(path.resolve())
    with contextlib.suppress(OSError), open("/proc/mounts") as mounts:
        for line in mounts:
            device, point, kind, *_ = line.split()
            inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best[0]):
                best = (point, kind, device)
    return {"path": str(path), "mount": best[0], "type": best[1], "device": best[2]}


def default_store_dir() -> Path:
    """The system temp dir if it shares the repository's filesystem (not tmpfs), else out/."""
    tmp = Path(tempfile.gettempdir())
    if tmp.stat().st_dev == REPO.stat().st_dev and filesystem_of(tmp)["type"] != "tmpfs":
        return tmp
    fallback = REPO / "out"
    fallback.mkdir(exist_ok=True)
    return fallback


# --- the node processes -----------------------------------------------------------------


class Child:
    """One node process: JSON commands in, JSON events out."""

    def __init__(self, name: str, process: asyncio.subprocess.Process, log: Path) -> None:
        self.name = name
        self.process = process
        self.log = log

    async def call(self, command: dict[str, Any], event: str, timeout: float) -> dict[str, Any]:
        await self.tell(command)
        return await self.expect(event, timeout)

    async def tell(self, command: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(command) + "\n").encode())
        await self.process.stdin.drain()

    async def expect(self, event: str, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"node {self.name} exited:\n{self.tail()}")
        answer: dict[str, Any] = json.loads(line)
        if answer.get("event") != event:
            raise RuntimeError(f"node {self.name}: expected {event}, got {answer}")
        return answer

    def tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
        return ""

    async def stop(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            await self.tell({"cmd": "stop"})
        try:
            await asyncio.wait_for(self.process.wait(), 60)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


async def start_federation(
    work: Path, path: list[str], settings: Settings, tag: str, audit: bool = True
) -> dict[str, Child]:
    files = work / "files"
    files.mkdir()
    write_pki(files, path)
    ports = {name: free_port() for name in path}
    children: dict[str, Child] = {}
    for index, name in enumerate(path):
        neighbours = [path[i] for i in (index - 1, index + 1) if 0 <= i < len(path)]
        role = "send" if index == 0 else "receive" if index == len(path) - 1 else "relay"
        spec: dict[str, Any] = {
            "name": name,
            "role": role,
            "files": str(files),
            "store": str(work / f"{name}.sqlite"),
            "port": ports[name],
            "names": path,
            "audit": audit,
            "peers": [
                {
                    "name": other,
                    "relation": relation(name, other),
                    "url": f"https://127.0.0.1:{ports[other]}",
                }
                for other in neighbours
            ],
        }
        if role == "send":
            spec["limits"] = {"max_queued_items": settings.sender_queue}
        if settings.profile is not None:
            spec["profile"] = str(settings.profile / f"{tag}-{name}.prof")
        children[name] = await launch(name, CHILD, spec, work)
    for child in children.values():
        await child.expect("ready", 120)
    return children


def store_dir(chosen: Path | None, flushes: str) -> tuple[Path, dict[str, str]]:
    """The folder the stores go in (``chosen``, else the default) and its mount.

    Warns when it is tmpfs: ``flushes`` (whose) then cost nothing, and the figures flatter.
    """
    base = chosen or default_store_dir()
    where = filesystem_of(base)
    if where["type"] == "tmpfs":
        print(f"warning: {base} is tmpfs; {flushes} flushes cost nothing there", file=sys.stderr)
    return base, where


class RunSpan:
    """A whole run's wall time and the machine's load around it, for the end of its report."""

    def __init__(self) -> None:
        self.began = time.time()
        self.load_before = os.getloadavg()

    def figures(self) -> dict[str, Any]:
        return {
            "elapsed_s": round(time.time() - self.began, 1),
            # 1-minute load averages before and after: other work on the machine skews the figures.
            "load_average": [round(self.load_before[0], 2), round(os.getloadavg()[0], 2)],
        }


def report_header(benchmark: str, quick: bool, where: dict[str, Any]) -> dict[str, Any]:
    """What every report of a run on node processes starts with: when, on what, how timed."""
    return {
        "benchmark": benchmark,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "quick": quick,
        "clock": "time.monotonic (" + time.get_clock_info("monotonic").implementation + ")",
        "stores": where,
    }


async def launch(name: str, script: Path, spec: dict[str, Any], work: Path) -> Child:
    """Start ``script`` on ``spec`` (written to ``work/NAME.json``), its log in ``work/NAME.log``.

    Shared with ``hub_sparse.py``, which runs this module's node processes
    beside its own children's process.
    """
    spec_path = work / f"{name}.json"
    spec_path.write_text(json.dumps(spec))
    log = work / f"{name}.log"
    with open(log, "wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            str(spec_path),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            cwd=REPO,
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join(
                    filter(None, [str(REPO), os.environ.get("PYTHONPATH")])
                ),
            },
            limit=READ_LIMIT,  # the receiver's records come back as one line
        )
    return Child(name, process, log)


# --- one run ----------------------------------------------------------------------------


async def drained_stats(children: dict[str, Child]) -> dict[str, dict[str, Any]]:
    """Every node's stats once nothing is queued anywhere (the last settles run after delivery)."""
    deadline = time.monotonic() + 30
    while True:
        stats = {n: await c.call({"cmd": "stats"}, "stats", 60) for n, c in children.items()}
        if all(s["queued"] == 0 for s in stats.values()) or time.monotonic() > deadline:
            return stats
        await asyncio.sleep(0.05)


async def cpu_times(children: dict[str, Child]) -> dict[str, dict[str, float]]:
    """CPU seconds (user, system) each node process has used so far, all its threads."""
    return {n: await c.call({"cmd": "cpu"}, "cpu", 30) for n, c in children.items()}


async def run_once(
    mode: str,
    hops: int,
    size_label: str,
    settings: Settings,
    base: Path,
    tag: str,
    audit: bool = True,
) -> dict[str, Any]:
    path = PATHS[hops]
    size = SIZES[size_label]
    sender_name, receiver_name = path[0], path[-1]
    work = Path(tempfile.mkdtemp(prefix="exchnode-bench-relay-", dir=base))
    children: dict[str, Child] = {}
    try:
        children = await start_federation(work, path, settings, tag, audit)
        sender, receiver = children[sender_name], children[receiver_name]
        common = {"recipient": receiver_name, "size": size}

        warm = settings.warmup
        await sender.call(
            {"cmd": "burst", "first": 0, "count": warm, "batch": 64, "inflight": 1, **common},
            "sent",
            300,
        )
        warmed = await receiver.call(
            {"cmd": "collect", "first": 0, "count": warm, "timeout": settings.patience},
            "collected",
            settings.patience + 60,
        )
        if warmed["received"] < warm:
            raise RuntimeError(f"warm-up: {warmed['received']} of {warm} arrived")

        cpu_before = await cpu_times(children)
        if mode == "throughput":
            count = settings.counts[size_label]
            command = {
                "cmd": "burst",
                "first": warm,
                "count": count,
                "batch": settings.batch,
                "inflight": settings.inflight,
                **common,
            }
            budget = 60 + count / 100
        else:
            count = round(settings.rates[size_label] * settings.duration)
            command = {
                "cmd": "paced",
                "first": warm,
                "rate": settings.rates[size_label],
                "duration": settings.duration,
                **common,
            }
            budget = 60 + 3 * settings.duration
        sent, got = await asyncio.gather(
            sender.call(command, "sent", budget + 60),
            receiver.call(
                {"cmd": "collect", "first": warm, "count": count, "timeout": budget},
                "collected",
                budget + 60,
            ),
        )
        cpu_after = await cpu_times(children)
        stats = await drained_stats(children)
    finally:
        for child in children.values():
            await child.stop()
        logs = {n: c.tail() for n, c in children.items() if c.process.returncode}
        shutil.rmtree(work, ignore_errors=True)
        if logs:
            print(f"node processes failed: {logs}", file=sys.stderr)

    arrivals: list[float] = got["got"]
    latencies = sorted((b - a) * 1000 for a, b in zip(got["sent"], arrivals, strict=True))
    received = got["received"]
    started = float(sent["started"])
    wall = (arrivals[-1] - started) if arrivals else float("nan")
    row: dict[str, Any] = {
        "mode": mode,
        "size": size_label,
        "payload_bytes": size,
        "hops": hops,
        "path": path,
        "sent": count,
        "received": received,
        "distinct": got["distinct"],
        "complete": received == count == got["distinct"],
        "wall_s": round(wall, 3),
        # CPU seconds each node used during the measured phase (user + system, all threads).
        "cpu_s": {n: round(cpu_after[n]["seconds"] - cpu_before[n]["seconds"], 3) for n in path},
        "cpu_system_s": {
            n: round(cpu_after[n]["system"] - cpu_before[n]["system"], 3) for n in path
        },
        "cores_busy": round(
            sum(cpu_after[n]["seconds"] - cpu_before[n]["seconds"] for n in path) / wall, 2
        )
        if wall > 0
        else None,
        "forwarded": {n: stats[n]["counters"]["forwarded"] for n in path},
        "accepted": {n: stats[n]["counters"]["accepted"] for n in path},
        # sent on before the node's own commit of them returned (SPEC §16.4)
        "cut_through": {n: stats[n]["counters"]["cut_through"] for n in path},
        # CPU of the whole path per message measured: the figure load on the machine moves least.
        "cpu_us_per_msg": round(
            sum(cpu_after[n]["seconds"] - cpu_before[n]["seconds"] for n in path) / count * 1e6, 1
        )
        if count
        else None,
    }
    row.update(latency_figures(latencies))
    if mode == "throughput" and received > 1:
        rate, steady, end_to_end = steady_rate(arrivals, wall)
        row["msgs_per_s"] = round(rate, 1)
        row["MB_per_s"] = round(rate * size / 1e6, 2)
        row["steady_state"] = steady
        row["end_to_end_per_s"] = round(end_to_end, 1)
        row["send_accepted_per_s"] = round(count / (sent["finished"] - started), 1)
    if mode == "latency":
        offered = settings.rates[size_label]
        spread = max(arrivals) - min(arrivals) if received > 1 else 0.0
        delivered = (received - 1) / spread if spread > 0 else 0.0  # arrivals' own pace
        row["offered_per_s"] = offered
        row["delivered_per_s"] = round(delivered, 1)
        # Offered more than the path carries: the latencies are a growing queue, not a latency.
        row["saturated"] = delivered < 0.97 * offered
        row["sender_worst_lag_ms"] = round(sent["worst_lag"] * 1000, 2)
    return row


# --- the matrix, the table, the figures -----------------------------------------------------


def summarise(runs: list[dict[str, Any]], key: str) -> dict[str, float] | None:
    values = [r[key] for r in runs if isinstance(r.get(key), int | float)]
    if not values:
        return None
    return {
        "median": round(statistics.median(values), 2),
        "min": min(values),
        "max": max(values),
    }


def fmt(summary: dict[str, float] | None, digits: int = 0) -> str:
    if summary is None:
        return "-"
    m, lo, hi = summary["median"], summary["min"], summary["max"]
    if lo == hi:
        return f"{m:,.{digits}f}"
    return f"{m:,.{digits}f} [{lo:,.{digits}f}-{hi:,.{digits}f}]"


def median(summary: dict[str, float] | None) -> str:
    return "-" if summary is None else f"{summary['median']:.2f}"


def print_table(rows: list[dict[str, Any]]) -> None:
    print("paths (hops = links crossed; every node a separate process with its own store):")
    for hops, path in PATHS.items():
        print(f"  {hops} hop{'s' if hops > 1 else ' '}: {describe(path)}")
    print()
    header = (
        f"{'mode':<10} {'size':>5} {'hops':>4} {'audit':>5} {'msgs/s':>24} {'MB/s':>18} "
        f"{'p50 ms':>16} {'p99 ms':>18} {'max ms':>18} {'cores':>5} {'runs':>4}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        throughput = row["mode"] == "throughput"
        mark = "*" if any(run.get("saturated") for run in row["runs"]) else ""
        print(
            f"{row['mode']:<10} {row['size']:>5} {row['hops']:>4} "
            f"{'on' if row['audit'] else 'off':>5} "
            f"{fmt(row['msgs_per_s'] if throughput else row['delivered_per_s']) + mark:>24} "
            f"{fmt(row['MB_per_s'], 1) if throughput else '-':>18} "
            f"{fmt(row['p50_ms'], 1):>16} {fmt(row['p99_ms'], 1):>18} "
            f"{fmt(row['max_ms'], 1):>18} {median(row['cores_busy']):>5} {len(row['runs']):>4}"
        )


def plot(
    rows: list[dict[str, Any]], target: Path, title: str, rates: dict[str, float]
) -> str | None:
    """Write the PNG; None on success, else why not."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib import ticker
    except ImportError:
        return "matplotlib is not installed (the 'bench' extra: python3 dev.py bench relay)"
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    audited = any(r["audit"] for r in rows)  # plot the deployed configuration when it ran
    for color, size in zip(("tab:blue", "tab:orange"), SIZES, strict=True):
        for axis, mode, key in ((left, "throughput", "msgs_per_s"), (right, "latency", "p99_ms")):
            points = [
                r
                for r in rows
                if r["mode"] == mode and r["size"] == size and r[key] and r["audit"] is audited
            ]
            if not points:
                continue
            xs = [r["hops"] for r in points]
            mid = [r[key]["median"] for r in points]
            err = [
                [m - r[key]["min"] for m, r in zip(mid, points, strict=True)],
                [r[key]["max"] - m for m, r in zip(mid, points, strict=True)],
            ]
            label = f"{size} p99" if mode == "latency" else size
            axis.errorbar(xs, mid, yerr=err, marker="o", capsize=4, label=label, color=color)
            if mode == "throughput":
                for x, r in zip(xs, points, strict=True):
                    axis.annotate(
                        f"{r['MB_per_s']['median']:.0f} MB/s",
                        (x, r[key]["median"]),
                        textcoords="offset points",
                        xytext=(6, 6),
                        fontsize=8,
                    )
            else:
                p50 = [r["p50_ms"]["median"] for r in points]
                axis.plot(xs, p50, marker="x", linestyle=":", label=f"{size} p50", color=color)
    left.axhline(TARGET_MSGS, color="grey", linestyle="--", label="target, 1 KiB over 3 hops")
    left.set(title="Throughput (sender as fast as accepted)", xlabel="hops", ylabel="msgs/s")
    left.set_yscale("log")
    right.axhline(TARGET_P99_MS, color="grey", linestyle="--", label="p99 target (1 KiB, 3 hops)")
    offered = ", ".join(f"{size} at {rate:,.0f}/s" for size, rate in rates.items())
    right.set(title=f"Latency, open loop: {offered}", xlabel="hops", ylabel="ms, send -> delivery")
    right.set_yscale("log")
    for axis in (left, right):
        axis.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
        axis.yaxis.set_minor_formatter(ticker.NullFormatter())
        axis.set_xticks(sorted(PATHS))
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(target, dpi=110)
    plt.close(figure)
    return None


def parse_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


async def run_matrix(
    modes: list[str], hops_list: list[int], sizes: list[str], settings: Settings, base: Path
) -> list[dict[str, Any]]:
    rows = []
    for mode in modes:
        for size in sizes:
            for hops in hops_list:
                runs: dict[bool, list[dict[str, Any]]] = {audit: [] for audit in settings.audits}
                for attempt in range(settings.repeat):
                    for audit in settings.audits:  # alternating: load drifts hit both alike
                        tag = f"{mode}-{size}-{hops}hops-audit-{'on' if audit else 'off'}-{attempt}"
                        print(f"running {tag}...", file=sys.stderr, flush=True)
                        runs[audit].append(
                            await run_once(mode, hops, size, settings, base, tag, audit)
                        )
                for audit in settings.audits:
                    row: dict[str, Any] = {
                        "mode": mode,
                        "size": size,
                        "payload_bytes": SIZES[size],
                        "hops": hops,
                        "audit": audit,
                        "path": PATHS[hops],
                        "complete": all(r["complete"] for r in runs[audit]),
                        "saturated": any(r.get("saturated", False) for r in runs[audit]),
                        "runs": runs[audit],
                    }
                    for key in ("msgs_per_s", "MB_per_s", "delivered_per_s", "p50_ms", "p90_ms"):
                        row[key] = summarise(runs[audit], key)
                    for key in ("p99_ms", "max_ms", "cores_busy", "cpu_us_per_msg"):
                        row[key] = summarise(runs[audit], key)
                    rows.append(row)
    return rows


def targets(rows: list[dict[str, Any]], rate: float, quick: bool) -> list[dict[str, Any]]:
    """Each target with the median that decides it; ``met`` is None when not judged."""

    def find(mode: str, audit: bool | None = None) -> dict[str, Any] | None:
        """The target's row; by default audited, as deployed, if that was run."""
        found = [
            row
            for row in rows
            if (row["mode"], row["size"], row["hops"]) == (mode, TARGET_SIZE, TARGET_HOPS)
            and (audit is None or row["audit"] is audit)
        ]
        found.sort(key=lambda row: not row["audit"])
        return found[0] if found else None

    out = []
    throughput = find("throughput")
    value = throughput["msgs_per_s"]["median"] if throughput and throughput["msgs_per_s"] else None
    out.append(
        {
            "target": "throughput, 1 KiB over 3 hops, end to end",
            "want": f">= {TARGET_MSGS:,.0f} msgs/s",
            "median": value,
            "met": None if quick or value is None else value >= TARGET_MSGS,
        }
    )
    latency = find("latency")
    value = latency["p99_ms"]["median"] if latency and latency["p99_ms"] else None
    out.append(
        {
            "target": f"p99 latency, 1 KiB over 3 hops at {rate:,.0f} msgs/s",
            "want": f"<= {TARGET_P99_MS:.0f} ms",
            "median": value,
            "met": None if quick or value is None or rate < 1000 else value <= TARGET_P99_MS,
        }
    )
    on, off = find("throughput", True), find("throughput", False)
    if on is not None and off is not None and on["msgs_per_s"] and off["msgs_per_s"]:
        cost = 1 - on["msgs_per_s"]["median"] / off["msgs_per_s"]["median"]
        cpu = [row["cpu_us_per_msg"]["median"] for row in (on, off)]
        rates = [row["msgs_per_s"]["median"] for row in (on, off)]
        out.append(
            {
                "target": "auditing's cost to 1 KiB throughput over 3 hops (on vs off)",
                "want": f"<= {AUDIT_BUDGET:.0%}",
                "median": round(cost, 4),
                "msgs_per_s": {"on": rates[0], "off": rates[1]},
                # The same cost in CPU per message over the path: steadier than a rate.
                "cpu_us_per_msg": {"on": cpu[0], "off": cpu[1]},
                "cpu_cost": round(cpu[0] / cpu[1] - 1, 4),
                "met": None if quick else cost <= AUDIT_BUDGET,
            }
        )
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="end with one JSON object")
    parser.add_argument("--quick", action="store_true", help="tiny runs (a smoke test)")
    parser.add_argument("--out", type=Path, default=REPO / "out" / "relay", help="JSON + PNG here")
    parser.add_argument("--dir", type=Path, help="where the stores go (default: temp dir on disk)")
    parser.add_argument("--repeat", type=int, help="runs per configuration (default 2; quick 1)")
    parser.add_argument("--hops", default="1,3,5", help="which paths (1, 3, 5)")
    parser.add_argument("--sizes", default="1KiB,64KiB", help="payload sizes (1KiB, 64KiB)")
    parser.add_argument("--modes", default="throughput,latency", help="throughput, latency")
    parser.add_argument("--rate", type=float, help="latency run, 1 KiB: msgs/s (default 1000)")
    parser.add_argument("--rate-64kib", type=float, help="latency run, 64 KiB (default 200)")
    parser.add_argument("--duration", type=float, help="latency run: seconds (default 10)")
    parser.add_argument("--count", type=int, help="throughput run: messages (default by size)")
    parser.add_argument("--profile", type=Path, help="cProfile each node process into DIR")
    parser.add_argument(
        "--audit", default="on", help="audit log: on, off, or on,off to measure its cost"
    )
    args = parser.parse_args(argv)

    hops_list = [int(h) for h in parse_list(args.hops)]
    sizes = parse_list(args.sizes)
    modes = parse_list(args.modes)
    if not set(hops_list) <= set(PATHS) or not set(sizes) <= set(SIZES):
        parser.error(f"hops from {sorted(PATHS)}, sizes from {list(SIZES)}")
    if not set(modes) <= {"throughput", "latency"}:
        parser.error("modes: throughput, latency")
    audit_list = parse_list(args.audit)
    if (
        not audit_list
        or not set(audit_list) <= {"on", "off"}
        or len(set(audit_list)) < len(audit_list)
    ):
        parser.error("--audit: on, off, or on,off")
    quick = args.quick
    counts = {"1KiB": 400, "64KiB": 40} if quick else {"1KiB": 40_000, "64KiB": 4_000}
    if args.count:
        counts = dict.fromkeys(counts, args.count)
    settings = Settings(
        counts=counts,
        warmup=20 if quick else 500,
        batch=256,
        inflight=4,
        sender_queue=8192,
        rates={
            "1KiB": args.rate or (200.0 if quick else 1000.0),
            "64KiB": args.rate_64kib or (100.0 if quick else 200.0),
        },
        duration=args.duration or (0.5 if quick else 10.0),
        repeat=args.repeat or (1 if quick else 2),
        profile=args.profile,
        patience=30.0 if quick else 120.0,
        audits=tuple(a == "on" for a in audit_list),
    )
    if settings.profile is not None:
        settings.profile.mkdir(parents=True, exist_ok=True)
    base, where = store_dir(args.dir, "the stores'")
    span = RunSpan()
    rows = asyncio.run(run_matrix(modes, hops_list, sizes, settings, base))
    checks = targets(rows, settings.rates[TARGET_SIZE], quick)

    print_table(rows)
    rate_text = ", ".join(f"{size} at {rate:,.0f} msgs/s" for size, rate in settings.rates.items())
    print(
        f"\nmsgs/s: steady-state delivery rate at the receiving application (10th percentile of "
        f"arrivals to last; from the first send if too short, as with --quick) for throughput "
        f"runs, achieved delivery rate for latency runs "
        f"(offered {rate_text} open loop for {settings.duration:g} s; * = saturated: "
        f"delivered < 97% of offered, so its latency is a growing queue).  "
        f"Latency: scheduled send -> application gets it, CLOCK_MONOTONIC.  median [range] "
        f"of {settings.repeat} run(s), each on a fresh federation.  Stores: SQLite WAL, "
        f"synchronous=FULL, under {base} ({where['type']} on {where['device']})."
    )
    for check in checks:
        verdict = {True: "met", False: "NOT met", None: "not judged (quick or not run)"}[
            check["met"]
        ]
        detail = ""
        if "cpu_us_per_msg" in check:
            rates, cpu = check["msgs_per_s"], check["cpu_us_per_msg"]
            detail = (
                f" ({rates['on']:,.0f} vs {rates['off']:,.0f} msgs/s; CPU per message over the "
                f"path {cpu['on']:.0f} vs {cpu['off']:.0f} µs, {check['cpu_cost']:+.1%})"
            )
        print(
            f"target: {check['target']} {check['want']}: median {check['median']}{detail} "
            f"-> {verdict}"
        )

    report: dict[str, Any] = {
        **report_header("relay", quick, where),
        "settings": {
            "counts": settings.counts,
            "warmup": settings.warmup,
            "batch": settings.batch,
            "inflight": settings.inflight,
            "sender_max_queued_items": settings.sender_queue,
            "rates": settings.rates,
            "duration_s": settings.duration,
            "repeat": settings.repeat,
            "audit": list(audit_list),
        },
        "paths": {str(h): PATHS[h] for h in hops_list},
        "rows": rows,
        "targets": checks,
        **span.figures(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    title = (
        f"exchnode relay, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{report['date']}{' (quick)' if quick else ''}"
    )
    problem = plot(rows, args.out / "relay.png", title, settings.rates)
    report["plot"] = None if problem else str(args.out / "relay.png")
    if problem:
        report["plot_skipped"] = problem
        print(f"plot: skipped, {problem}", file=sys.stderr)
    (args.out / "relay.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"results: {args.out / 'relay.json'}" + (f", {report['plot']}" if report["plot"] else ""))
    if args.json:
        print(json.dumps(report))
    return 0 if all(row["complete"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
