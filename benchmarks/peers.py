#!/usr/bin/env python3
"""exchnode's 3-hop path beside RabbitMQ and NATS chains doing the same work, in one run.

    python3 dev.py bench peers [--json] [--quick] [--systems exchnode,rabbitmq,nats]
                               [--count N] [--rate 1000] [--duration 10]
                               [--publishers N] [--window N]
                               [--dir DIR] [--out DIR]

Issue 14 asks how exchnode's hot path compares with the message brokers a
ministry would otherwise deploy, measured on the same machine in the same
run, because this machine's speed drifts by tens of percent from minute to
minute and figures from different hours do not compare.  The workload is the
same for every system: 1 KiB payloads published at the county level and
consumed at the province end of a three-hop chain, every message stored at
every hop before it moves on, and consumed with an explicit acknowledgement:

* **exchnode**: ``relay.py``'s 3-hop path, ``520102.gongan -> 520102 ->
  520100 -> 520100.fagai`` (its ``run_once``: four node processes, SQLite WAL
  ``synchronous=FULL`` on disk, mutual TLS on loopback, audit log on), run
  **before and after** the peers; the targets are judged on the mean of the
  two, and both are reported.
* **RabbitMQ** (Debian's ``rabbitmq-server`` 3.10): three nodes on loopback,
  county -> city -> province by exchange federation with ``ack-mode:
  on-confirm``, a durable queue at the province, persistent messages,
  publisher confirms at the county, explicit acks at the province.  Why
  exchange federation and not queue federation (which does not chain), how
  the nodes are isolated (names, ports, epmd, cookie, folders), and why the
  Erlang schedulers do not busy-wait: ``_peers_brokers.py``.
* **NATS** (Debian's ``nats-server`` 2.9): three servers chained as leaf
  nodes, JetStream in each (its own domain), a file stream at the county
  sourced by one at the city, sourced by one at the province, a durable push
  consumer with explicit acks there.  JetStream writes to the page cache and
  fsyncs only in the background: **NATS here is not durable per message** as
  the other two are (exchnode fsyncs each group commit, RabbitMQ's classic
  queues fsync before they confirm or pass custody on).

A broker that is not installed is installed with ``apt-get`` first (said on
stderr; ``_peers_system.py``); where that is impossible its row says why and
the rest still runs.  Brokers live in temporary folders under ``--dir`` and
are killed, folders removed, however the run ends (errors, Ctrl-C, SIGTERM).

Each system is measured twice, after a warm-up (and, for the peers, probes
until one message gets through: an exchange-federated RabbitMQ drops what is
published before its links exist):

* **flat out**: ``--count`` messages published as fast as they are confirmed
  at the county; msgs/s is the steady-state delivery rate at the consumer
  (10th percentile of arrivals to the last), as ``relay.py`` computes it;
* **at ``--rate`` msgs/s** (1,000): open loop for ``--duration`` seconds, each
  message stamped with its *scheduled* send time (a late sender counts);
  latency to the moment the consumer gets it, p50/p99/max, on
  ``time.monotonic()`` (one clock for every process of the machine).

**CPU per message**: user + system seconds of every server process during
the phase, divided by the messages: exchnode's four node processes (the
sending and receiving applications run inside them), every process of each
broker's session from ``/proc`` (``beam.smp``, its ``erl_child_setup`` and
``inet_gethost``, the wrapper shell, and ``epmd``; ``nats-server``).  The
peers' clients are separate processes, reported apart ("client").  The "2
cores/CPU" column divides the machine's cores by the servers' CPU per
message: what they would carry with the machine to themselves, clients free.

**The clients** (``_peers_client.py``) are ``aiormq`` (the AMQP layer under
``aio-pika``, without its per-message wrappers) and ``nats-py``, each
publisher and the consumer in a process of its own; flat out, ``--publishers``
(2) processes each keep ``--window`` (500) publishes unconfirmed.  Are they
the bottleneck?  Measured on this 2-core VM (2026-12-07, 20,000 messages per
run, other sessions' tests running):

* RabbitMQ: 1, 2 and 3 publisher connections gave 1,465, 1,716 and 1,511
  msgs/s, the same within the noise, and no client process came near a core
  (each publisher 10-20% of one, the consumer ~15%).  The chain is bound by
  CPU: its three brokers spend 520-640 µs per message, and the Python
  clients another 230-300 µs (publish with confirm, deliver, ack), a quarter
  of the machine.  A client costing nothing would leave the brokers the
  rate in the "2 cores/CPU" column (~3,000 msgs/s), an upper bound the
  README quotes beside the measured one.  The write coalescing nats-py does
  (one ``send`` per loop turn instead of one per message) was tried for
  aiormq: no difference in either side's CPU, so it is not used.
* NATS: 1 publisher 9,234 msgs/s, 2 publishers 11,605 (same load); a window
  of 2,000 instead of 500 and 10,000 unacknowledged deliveries instead of
  2,000 changed nothing (10,961).  In a full run on a quieter machine, 2
  publishers reached 18,186 msgs/s with the servers (1.13 cores) and the
  clients (0.85) filling both cores: CPU-bound as well, the clients taking
  43% of it (51 against 68 µs per message), so NATS too is shown above its
  measured rate by the "2 cores/CPU" column.  The default of 2 publishers is
  the better one for both peers.

**What is not the same**: exchnode seals every message end to end (signed,
encrypted), verifies it at every hop and carries it over mutual TLS; the
peers carry plaintext over plain TCP.  Nothing here gives them TLS, which
would cost them CPU: the comparison favours the peers.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import latency_figures, steady_rate
from _peers_brokers import EXCHANGE, LEVELS, Chain, NatsChain, RabbitChain
from _peers_system import Unavailable, kill_all, note
from relay import (
    PATHS,
    REPO,
    Child,
    RunSpan,
    Settings,
    default_store_dir,
    filesystem_of,
    launch,
    report_header,
    run_once,
)

CLIENT = Path(__file__).resolve().with_name("_peers_client.py")
SYSTEMS = ("exchnode", "rabbitmq", "nats")
HOPS, SIZE_LABEL, SIZE = 3, "1KiB", 1024
TARGET_VS_RABBITMQ = 1.3  # exchnode flat out >= 1.3 x RabbitMQ's, same run
TARGET_MSGS = 9_500.0  # exchnode flat out, msgs/s
TARGET_P50_MS, TARGET_P99_MS = 3.0, 7.0  # exchnode at 1,000 msgs/s
TARGET_CPU_US = 600.0  # exchnode at 1,000 msgs/s, CPU per message over the path
CLIENT_LIBRARIES = {"rabbitmq": "aiormq", "nats": "nats"}


@dataclass(frozen=True)
class PeerSettings:
    count: int  # flat-out run: messages
    warmup: int
    rate: float  # latency run: offered msgs/s, open loop
    duration: float  # latency run: seconds
    publishers: int  # flat-out run: publisher processes, one connection each
    window: int  # outstanding (unconfirmed) publishes per publisher
    prefetch: int  # consumer: unacknowledged deliveries in flight
    patience: float  # seconds for brokers to start and the warm-up to arrive


# --- one peer ---------------------------------------------------------------------------------


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: round(after[name] - before[name], 3) for name in before}


async def client_cpu(clients: list[Child]) -> dict[str, float]:
    answers = [await c.call({"cmd": "cpu"}, "cpu", 30) for c in clients]
    return {c.name: float(a["seconds"]) for c, a in zip(clients, answers, strict=True)}


def cpu_bound(cpu_us_per_msg: float | None) -> float | None:
    """The rate the servers would carry with every core of the machine to themselves."""
    if not cpu_us_per_msg:
        return None
    return round((os.cpu_count() or 1) * 1e6 / cpu_us_per_msg, 1)


def summarise_run(
    mode: str,
    count: int,
    got: dict[str, Any],
    sent: list[dict[str, Any]],
    servers: dict[str, float],
    clients: dict[str, float],
    rate: float,
) -> dict[str, Any]:
    """What one measured phase says: delivery, rate or latency, CPU per message."""
    arrivals: list[float] = got["got"]
    received = got["received"]
    started = min(float(s["started"]) for s in sent)
    wall = (max(arrivals) - started) if arrivals else float("nan")
    row: dict[str, Any] = {
        "mode": mode,
        "sent": count,
        "received": received,
        "distinct": got["distinct"],
        "complete": received == count == got["distinct"],
        "wall_s": round(wall, 3),
        "cpu_s": servers,
        "client_cpu_s": clients,
        "cpu_us_per_msg": round(sum(servers.values()) / count * 1e6, 1) if count else None,
        "client_cpu_us_per_msg": round(sum(clients.values()) / count * 1e6, 1) if count else None,
        "cores_busy": round(sum(servers.values()) / wall, 2) if wall > 0 else None,
    }
    latencies = sorted((b - a) * 1000 for a, b in zip(got["sent"], arrivals, strict=True))
    row.update(latency_figures(latencies))
    if mode == "throughput" and received > 1:
        rate, steady, end_to_end = steady_rate(arrivals, wall)
        row["msgs_per_s"] = round(rate, 1)
        row["steady_state"] = steady
        row["end_to_end_per_s"] = round(end_to_end, 1)
        finished = max(float(s["finished"]) for s in sent)
        row["publish_confirmed_per_s"] = round(count / (finished - started), 1)
        row["cpu_bound_per_s"] = cpu_bound(row["cpu_us_per_msg"])
    if mode == "latency":
        spread = max(arrivals) - min(arrivals) if received > 1 else 0.0
        delivered = (received - 1) / spread if spread > 0 else 0.0
        row["offered_per_s"] = rate
        row["delivered_per_s"] = round(delivered, 1)
        row["saturated"] = delivered < 0.97 * rate
        row["sender_worst_lag_ms"] = round(max(s.get("worst_lag", 0.0) for s in sent) * 1000, 2)
    return row


class PeerRun:
    """One peer's chain and clients, for a warm-up, a flat-out run and a latency run."""

    def __init__(self, system: str, chain: Chain, settings: PeerSettings) -> None:
        self.system = system
        self.chain = chain
        self.settings = settings
        self.work = chain.folder / "clients"
        self.work.mkdir()
        self.consumer: Child | None = None
        self.publishers: list[Child] = []
        self.next_seq = 0

    def endpoint(self, level: str) -> str:
        if isinstance(self.chain, RabbitChain):
            return self.chain.uri(level)
        assert isinstance(self.chain, NatsChain)
        return self.chain.url(level)

    def spec(self, role: str, level: str) -> dict[str, Any]:
        prefix = "amqp" if self.system == "rabbitmq" else "nats"
        spec: dict[str, Any] = {
            "role": f"{prefix}-{role}",
            "url": self.endpoint(level),
            "window": self.settings.window,
            "prefetch": self.settings.prefetch,
        }
        if isinstance(self.chain, RabbitChain):
            spec["exchange"] = EXCHANGE
        return spec

    async def start(self) -> None:
        settings = self.settings
        await asyncio.to_thread(self.chain.wait_ready, settings.patience)
        if isinstance(self.chain, NatsChain):
            setup = await launch(
                "nats-setup",
                CLIENT,
                {
                    "role": "nats-setup",
                    "urls": {level: self.chain.url(level) for level in LEVELS},
                    "max_ack_pending": settings.prefetch,
                },
                self.work,
            )
            try:
                await setup.expect("ready", settings.patience)
            finally:
                await setup.stop()
        self.consumer = await launch(
            "consumer", CLIENT, self.spec("consume", "province"), self.work
        )
        await self.consumer.expect("ready", settings.patience)
        for index in range(settings.publishers):
            publisher = await launch(
                f"publisher{index}", CLIENT, self.spec("publish", "county"), self.work
            )
            self.publishers.append(publisher)
            await publisher.expect("ready", settings.patience)

    async def collect(self, first: int, count: int, timeout: float) -> dict[str, Any]:
        assert self.consumer is not None
        return await self.consumer.call(
            {"cmd": "collect", "first": first, "count": count, "timeout": timeout},
            "collected",
            timeout + 60,
        )

    async def probe(self) -> None:
        """One message at a time until one reaches the province: every link is up.

        An exchange-federated RabbitMQ routes a message published before its
        links exist nowhere, so nothing is counted before a probe got through.
        """
        deadline = time.monotonic() + self.settings.patience
        while True:
            first, self.next_seq = self.next_seq, self.next_seq + 1
            command = {"cmd": "burst", "first": first, "count": 1, "size": SIZE, "window": 1}
            await self.publishers[0].call(command, "sent", self.settings.patience)
            got = await self.collect(first, 1, 1.0)
            if got["distinct"]:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.system}: no probe reached the province in {self.settings.patience:g} s"
                )

    async def warm_up(self) -> None:
        warm = self.settings.warmup
        first, self.next_seq = self.next_seq, self.next_seq + warm
        command = {"cmd": "burst", "first": first, "count": warm, "size": SIZE, "window": 16}
        got: dict[str, Any]
        _, got = await asyncio.gather(
            self.publishers[0].call(command, "sent", self.settings.patience + 60),
            self.collect(first, warm, self.settings.patience),
        )
        if got["distinct"] < warm:
            raise RuntimeError(
                f"{self.system} warm-up: {got['distinct']} of {warm} arrived within "
                f"{self.settings.patience:g} s"
            )

    async def measure(self, mode: str) -> dict[str, Any]:
        settings = self.settings
        clients = [*self.publishers, *([self.consumer] if self.consumer else [])]
        first = self.next_seq
        if mode == "throughput":
            count = settings.count
            share = -(-count // len(self.publishers))
            commands = []
            for index, publisher in enumerate(self.publishers):
                start = first + index * share
                n = max(0, min(share, first + count - start))
                commands.append(
                    (
                        publisher,
                        {
                            "cmd": "burst",
                            "first": start,
                            "count": n,
                            "size": SIZE,
                            "window": settings.window,
                        },
                    )
                )
            budget = 60 + count / 200
        else:
            count = round(settings.rate * settings.duration)
            commands = [
                (
                    self.publishers[0],
                    {
                        "cmd": "paced",
                        "first": first,
                        "rate": settings.rate,
                        "duration": settings.duration,
                        "size": SIZE,
                    },
                )
            ]
            budget = 60 + 3 * settings.duration
        self.next_seq = first + count
        servers_before = self.chain.cpu_seconds()
        clients_before = await client_cpu(clients)
        results = await asyncio.gather(
            self.collect(first, count, budget),
            *(publisher.call(command, "sent", budget + 60) for publisher, command in commands),
        )
        servers_after = self.chain.cpu_seconds()
        clients_after = await client_cpu(clients)
        if not self.chain.alive():
            raise RuntimeError(f"a {self.system} broker died: {self.chain.tails()}")
        got, sent = results[0], list(results[1:])
        return summarise_run(
            mode,
            count,
            got,
            sent,
            cpu_delta(servers_before, servers_after),
            cpu_delta(clients_before, clients_after),
            settings.rate,
        )

    async def stop(self, kill: bool) -> None:
        """The clients: asked to stop after a clean run; else killed (they may be mid-command)."""
        for child in [*self.publishers, *([self.consumer] if self.consumer else [])]:
            if not kill:
                await child.stop()
            elif child.process.returncode is None:
                child.process.kill()
                await child.process.wait()


def make_chain(system: str, base: Path, settings: PeerSettings) -> Chain:
    library = CLIENT_LIBRARIES[system]
    if importlib.util.find_spec(library) is None:
        raise Unavailable(
            f"the Python client {library} is not installed (the 'bench' extra: "
            "python3 dev.py bench peers installs it)",
            kind="client",
        )
    if system == "rabbitmq":
        return RabbitChain(base)
    return NatsChain(base)


async def run_peer(system: str, settings: PeerSettings, base: Path) -> dict[str, Any]:
    """One peer measured: its row, or why it could not run (the rest of the benchmark goes on)."""
    row: dict[str, Any] = {"system": system, "available": True}
    began = time.monotonic()
    try:
        chain = await asyncio.to_thread(make_chain, system, base, settings)
    except Unavailable as why:
        note(f"{system}: not measured: {why}")
        return {"system": system, "available": False, "reason": str(why), "missing": why.kind}
    run = PeerRun(system, chain, settings)
    clean = False
    try:
        await run.start()
        await run.probe()
        row["started_s"] = round(time.monotonic() - began, 1)
        await run.warm_up()
        for mode in ("throughput", "latency"):
            print(f"running {system} {mode}...", file=sys.stderr, flush=True)
            row[mode] = await run.measure(mode)
        clean = True
    except Exception as error:  # a failed peer is reported; the other systems still run
        note(f"{system} failed: {error!r}")
        row["error"] = f"{type(error).__name__}: {error}"
        logs = {
            c.name: c.tail() for c in [*run.publishers, *([run.consumer] if run.consumer else [])]
        }
        row["logs"] = {**chain.tails(), **logs}
    finally:  # also on Ctrl-C and SIGTERM (cancellation): no client or broker outlives the run
        try:
            await run.stop(kill=not clean)
        finally:
            chain.stop()
    row["complete"] = "error" not in row and all(
        row[m]["complete"] for m in ("throughput", "latency")
    )
    return row


# --- exchnode ----------------------------------------------------------------------------------


async def run_exchnode(when: str, settings: Settings, base: Path) -> dict[str, Any]:
    row: dict[str, Any] = {"system": "exchnode", "when": when, "available": True}
    for mode in ("throughput", "latency"):
        print(f"running exchnode {mode} ({when})...", file=sys.stderr, flush=True)
        run = await run_once(mode, HOPS, SIZE_LABEL, settings, base, f"peers-{when}-{mode}")
        run["client_cpu_us_per_msg"] = None  # the applications run inside the nodes' processes
        if mode == "throughput":
            run["cpu_bound_per_s"] = cpu_bound(run["cpu_us_per_msg"])
        row[mode] = run
    row["complete"] = all(row[m]["complete"] for m in ("throughput", "latency"))
    return row


# --- the table and the targets ---------------------------------------------------------------


def value(row: dict[str, Any], mode: str, key: str) -> float | None:
    found = row.get(mode, {}).get(key) if row.get("available") else None
    return float(found) if isinstance(found, int | float) else None


def mean_of(rows: list[dict[str, Any]], mode: str, key: str) -> float | None:
    values = [v for v in (value(r, mode, key) for r in rows) if v is not None]
    return round(statistics.fmean(values), 2) if values else None


def cell(number: float | None, digits: int = 0) -> str:
    return "-" if number is None else f"{number:,.{digits}f}"


def row_note(row: dict[str, Any]) -> str:
    if not row.get("available"):
        return f"not measured: {row['reason']}"
    if "error" in row:
        return f"FAILED: {row['error'][:120]}"
    notes = {
        "exchnode": "4 node processes, SQLite synchronous=FULL; CPU includes both applications",
        "rabbitmq": "exchange federation, on-confirm; classic durable queues, fsynced",
        "nats": "JetStream file streams, sourced; page cache only (not fsynced)",
    }
    text = notes[row["system"]]
    if row["system"] == "rabbitmq" and row.get("federation") == "exchange":
        text = text.replace("queue federation", "exchange federation")
    incomplete = [m for m in ("throughput", "latency") if not row[m]["complete"]]
    if incomplete:
        text += f"; INCOMPLETE: {', '.join(incomplete)}"
    if row.get("latency", {}).get("saturated"):
        text += "; * saturated at the offered rate"
    return text


def label(row: dict[str, Any]) -> str:
    return f"exchnode ({row['when']})" if row["system"] == "exchnode" else row["system"]


def print_table(rows: list[dict[str, Any]], rate: float) -> None:
    print(f"path: {' -> '.join(PATHS[HOPS])} (exchnode); county -> city -> province (peers)")
    print()
    cores = f"{os.cpu_count()} cores/CPU"
    flat_head = f"{'msgs/s':>8} {'CPU µs':>7} {'client':>7} {cores:>13}"
    paced_head = f"{'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'CPU µs':>7} {'client':>7}"
    left, right = " flat out ", f" at {rate:,.0f} msgs/s "
    print(f"{'':<19} {left:-^{len(flat_head)}}   {right:-^{len(paced_head)}}")
    header = f"{'system':<19} {flat_head}   {paced_head}   note"
    print(header)
    print("-" * (len(header) + 40))
    for row in rows:
        flat, paced = "throughput", "latency"
        print(
            f"{label(row):<19} {cell(value(row, flat, 'msgs_per_s')):>8} "
            f"{cell(value(row, flat, 'cpu_us_per_msg')):>7} "
            f"{cell(value(row, flat, 'client_cpu_us_per_msg')):>7} "
            f"{cell(value(row, flat, 'cpu_bound_per_s')):>13}   "
            f"{cell(value(row, paced, 'p50_ms'), 1):>7} {cell(value(row, paced, 'p99_ms'), 1):>7} "
            f"{cell(value(row, paced, 'max_ms'), 1):>7} "
            f"{cell(value(row, paced, 'cpu_us_per_msg')):>7} "
            f"{cell(value(row, paced, 'client_cpu_us_per_msg')):>7}   {row_note(row)}"
        )


def targets(rows: list[dict[str, Any]], quick: bool, rate: float) -> list[dict[str, Any]]:
    """Each target with the figure that decides it (exchnode: the mean of before and after)."""
    exchnode = [r for r in rows if r["system"] == "exchnode" and r.get("complete")]
    rabbit = next((r for r in rows if r["system"] == "rabbitmq"), None)
    flat = mean_of(exchnode, "throughput", "msgs_per_s")
    rabbit_flat = value(rabbit, "throughput", "msgs_per_s") if rabbit else None
    ratio = round(flat / rabbit_flat, 3) if flat is not None and rabbit_flat else None
    judged = not quick
    at_rate = judged and rate == 1000.0

    # what; at least (>=) or at most (<=) the target, as the table writes it; the figure; judged?
    checks: list[tuple[str, str, float, str, float | None, bool]] = [
        ("exchnode flat out vs RabbitMQ (same run), 1 KiB over 3 hops",
         ">=", TARGET_VS_RABBITMQ, f"{TARGET_VS_RABBITMQ:g} x", ratio, judged),
        ("exchnode flat out, 1 KiB over 3 hops",
         ">=", TARGET_MSGS, f"{TARGET_MSGS:,.0f} msgs/s", flat, judged),
        ("exchnode p50 latency at 1,000 msgs/s, 1 KiB over 3 hops",
         "<=", TARGET_P50_MS, f"{TARGET_P50_MS:g} ms", mean_of(exchnode, "latency", "p50_ms"),
         at_rate),
        ("exchnode p99 latency at 1,000 msgs/s, 1 KiB over 3 hops",
         "<=", TARGET_P99_MS, f"{TARGET_P99_MS:g} ms", mean_of(exchnode, "latency", "p99_ms"),
         at_rate),
        ("exchnode CPU per message over the path at 1,000 msgs/s",
         "<=", TARGET_CPU_US, f"{TARGET_CPU_US:g} µs",
         mean_of(exchnode, "latency", "cpu_us_per_msg"), at_rate),
    ]  # fmt: skip
    return [
        {
            "target": target,
            "want": f"{sense} {text}",
            "value": figure,
            "met": None
            if not judge or figure is None
            else (figure >= limit if sense == ">=" else figure <= limit),
        }
        for target, sense, limit, text, figure, judge in checks
    ]


def ratios(rows: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """exchnode (mean of before and after) over each peer: flat-out rate, p99, CPU per message."""
    exchnode = [r for r in rows if r["system"] == "exchnode" and r.get("complete")]
    out: dict[str, dict[str, float | None]] = {}
    for peer in (r for r in rows if r["system"] != "exchnode"):
        figures: dict[str, float | None] = {}
        for name, mode, key in (
            ("msgs_per_s", "throughput", "msgs_per_s"),
            ("p99_ms", "latency", "p99_ms"),
            ("cpu_us_per_msg_at_rate", "latency", "cpu_us_per_msg"),
        ):
            ours, theirs = mean_of(exchnode, mode, key), value(peer, mode, key)
            figures[name] = round(ours / theirs, 3) if ours is not None and theirs else None
        out[peer["system"]] = figures
    return out


# --- main ---------------------------------------------------------------------------------------


async def run_all(
    systems: list[str], exchnode: Settings, peers: PeerSettings, base: Path
) -> list[dict[str, Any]]:
    task = asyncio.current_task()
    if task is not None:  # SIGTERM as Ctrl-C: cancel, so that every cleanup runs
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    rows: list[dict[str, Any]] = []
    others = [s for s in systems if s != "exchnode"]
    if "exchnode" in systems:
        rows.append(await run_exchnode("before", exchnode, base))
    for system in others:
        row = await run_peer(system, peers, base)
        rows.append(row)
    if "exchnode" in systems and others:  # the machine's speed drifts: bracket the peers
        rows.append(await run_exchnode("after", exchnode, base))
    return rows


def code_version() -> dict[str, Any]:
    """The commit measured, and which tracked files differed from it (others work in this tree)."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout if done.returncode == 0 else ""

    modified = [line[3:] for line in git("status", "--porcelain").splitlines() if line[:2] != "??"]
    return {"commit": git("rev-parse", "--short", "HEAD").strip() or None, "modified": modified}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="end with one JSON object")
    parser.add_argument("--quick", action="store_true", help="tiny runs (a smoke test)")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="exchnode,rabbitmq,nats")
    parser.add_argument("--count", type=int, help="flat-out run: messages (default 40,000)")
    parser.add_argument("--rate", type=float, help="latency run: msgs/s (default 1,000)")
    parser.add_argument("--duration", type=float, help="latency run: seconds (default 10)")
    parser.add_argument(
        "--publishers", type=int, default=2, help="peers: publisher processes flat out (2)"
    )
    parser.add_argument(
        "--window", type=int, default=500, help="peers: unconfirmed publishes per publisher (500)"
    )
    parser.add_argument("--out", type=Path, default=REPO / "out" / "peers", help="JSON here")
    parser.add_argument("--dir", type=Path, help="stores and brokers' data (default: temp on disk)")
    args = parser.parse_args(argv)

    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    if not systems or not set(systems) <= set(SYSTEMS) or len(set(systems)) < len(systems):
        parser.error(f"--systems: some of {','.join(SYSTEMS)}")
    if args.publishers < 1 or args.window < 1:
        parser.error("--publishers and --window: at least 1")
    quick = args.quick
    count = args.count or (1_000 if quick else 40_000)
    rate = args.rate or (200.0 if quick else 1000.0)
    duration = args.duration or (1.0 if quick else 10.0)
    exchnode = Settings(
        counts={SIZE_LABEL: count},
        warmup=20 if quick else 500,
        batch=256,
        inflight=4,
        sender_queue=8192,
        rates={SIZE_LABEL: rate},
        duration=duration,
        repeat=1,
        profile=None,
        patience=60.0 if quick else 120.0,
    )
    peers = PeerSettings(
        count=count,
        warmup=50 if quick else 500,
        rate=rate,
        duration=duration,
        publishers=args.publishers,
        window=args.window,
        prefetch=2000,
        patience=120.0,
    )
    base = args.dir or default_store_dir()
    base.mkdir(parents=True, exist_ok=True)
    where = filesystem_of(base)
    span = RunSpan()
    try:
        rows = asyncio.run(run_all(systems, exchnode, peers, base))
    except asyncio.CancelledError:  # SIGTERM, turned into a cancellation by run_all
        note("terminated; brokers stopped, their folders removed")
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:  # Ctrl-C: asyncio.run cancelled the run the same way
        note("interrupted; brokers stopped, their folders removed")
        return 128 + signal.SIGINT
    finally:
        kill_all()
    checks = targets(rows, quick, rate)
    print_table(rows, rate)
    legend = (
        f"flat out: {count:,} messages published at the county as fast as they are confirmed "
        f"(peers: {peers.publishers} publisher processes, {peers.window} unconfirmed each); "
        f"msgs/s = steady-state delivery rate at the province's consumer (10th percentile of "
        f"arrivals to the last).  At {rate:,.0f} msgs/s: open loop for {duration:g} s, latency "
        f"from the scheduled send to the consumer (CLOCK_MONOTONIC).  CPU µs: per message, "
        f"every server process (exchnode: its 4 nodes, the applications inside them; peers: "
        f"every broker process, from /proc); client: the peers' Python clients; "
        f"{os.cpu_count()} cores/CPU: the rate if the servers had every core to themselves.  "
        f"Data under {base} ({where['type']} on {where['device']})."
    )
    print("\n" + textwrap.fill(legend, 100))
    if any(row["system"] == "exchnode" for row in rows):
        for peer, figures in ratios(rows).items():
            text = ", ".join(f"{name} {cell(v, 2)} x" for name, v in figures.items())
            print(f"exchnode / {peer} (exchnode: mean of before and after): {text}")
    for check in checks:
        verdict = {True: "met", False: "NOT met", None: "not judged (quick or not run)"}[
            check["met"]
        ]
        print(f"target: {check['target']} {check['want']}: {check['value']} -> {verdict}")

    report: dict[str, Any] = {
        **report_header("peers", quick, where),
        "code": code_version(),
        "settings": {
            "systems": systems,
            "payload_bytes": SIZE,
            "hops": HOPS,
            "path": PATHS[HOPS],
            "count": count,
            "rate": rate,
            "duration_s": duration,
            "exchnode": {
                "warmup": exchnode.warmup,
                "batch": exchnode.batch,
                "inflight": exchnode.inflight,
                "sender_max_queued_items": exchnode.sender_queue,
            },
            "peers": {
                "warmup": peers.warmup,
                "publishers": peers.publishers,
                "window": peers.window,
                "prefetch": peers.prefetch,
            },
        },
        "rows": rows,
        "ratios": ratios(rows),
        "targets": checks,
        **span.figures(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "peers.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"results: {args.out / 'peers.json'}")
    if args.json:
        print(json.dumps(report))
    ran = [row for row in rows if row.get("available")]
    return 0 if all(row.get("complete") for row in ran) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
