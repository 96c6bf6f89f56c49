"""What the benchmarks' processes and drivers share: stamped payloads, senders, arrival records,
the readable tables.

Every load generator here sends the same payload, whatever carries it (an
exchnode node, an AMQP or a NATS client): a sequence number (8 bytes,
big-endian) and a ``time.monotonic()`` stamp (an IEEE double), then filler
up to the payload size.  On Linux ``time.monotonic()`` is
``CLOCK_MONOTONIC``, one clock for every process of the machine, so a
receiver subtracts the sender's stamp directly.  In ``paced`` mode the stamp
is the *scheduled* send time, so a late sender counts against latency (no
coordinated omission).

A benchmark process talks to its driver in JSON lines: commands on stdin
(:func:`commands`), events on stdout (:func:`emit`), logs on stderr.

Standard library only: the peers' clients import it without loading exchnode.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import struct
import sys
import time
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "STAMP",
    "Arrivals",
    "burst",
    "commands",
    "emit",
    "latency_figures",
    "paced",
    "percentile",
    "print_figures",
    "print_table",
    "stamped",
    "steady_rate",
]

STAMP = struct.Struct(">Qd")


def stamped(seq: int, stamp: float, filler: bytes) -> bytes:
    """The payload of message ``seq`` sent (or due) at ``stamp``."""
    return STAMP.pack(seq, stamp) + filler


# --- the process's side of the driver's protocol ------------------------------------------


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


async def commands() -> AsyncIterator[dict[str, Any]]:
    """The driver's commands, one JSON object a line, until ``stop`` or the end of stdin.

    Read in a thread: the event loop keeps running the node (or client) meanwhile.
    """
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            return
        command: dict[str, Any] = json.loads(line)
        if command["cmd"] == "stop":
            return
        yield command


# --- sending --------------------------------------------------------------------------------


async def burst(
    send: Callable[[range, float], Awaitable[Any]],
    first: int,
    count: int,
    *,
    batch: int = 1,
    window: int,
) -> dict[str, Any]:
    """Messages ``first`` .. ``first + count - 1`` as fast as ``send`` takes them.

    ``window`` sends outstanding at any time, each of up to ``batch`` numbers
    (a range), stamped with the time it starts.
    """
    clock = time.monotonic
    next_seq = first
    end = first + count

    async def worker() -> None:
        nonlocal next_seq
        while next_seq < end:
            start = next_seq
            n = min(batch, end - start)
            next_seq += n
            await send(range(start, start + n), clock())

    began = clock()
    await asyncio.gather(*(worker() for _ in range(window)))
    return {"count": count, "started": began, "finished": clock()}


async def paced(
    send: Callable[[int, float], Awaitable[Any]],
    first: int,
    rate: float,
    duration: float,
    start: float | None = None,
) -> dict[str, Any]:
    """Open loop: message *i* is due at ``start + i / rate``, sent then whatever came before.

    ``send(seq, due)`` is started as its own task at its due time (or as soon
    after as the loop gets to it: the worst such lag is reported), so a slow
    send never delays the next.  ``start`` defaults to 10 ms from now.
    """
    count = round(rate * duration)
    clock = time.monotonic
    if start is None:
        start = clock() + 0.01
    tasks: set[asyncio.Task[Any]] = set()
    sent = 0
    worst_lag = 0.0
    while sent < count:
        now = clock()
        due_until = min(count, math.floor((now - start) * rate) + 1)
        while sent < due_until:
            due = start + sent / rate
            worst_lag = max(worst_lag, now - due)
            task = asyncio.ensure_future(send(first + sent, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
        if sent < count:
            await asyncio.sleep(max(0.0, start + sent / rate - clock()))
    await asyncio.gather(*tasks)
    return {"count": count, "started": start, "finished": clock(), "worst_lag": worst_lag}


# --- receiving ------------------------------------------------------------------------------


class Arrivals:
    """Every message a receiver got since it started: sequence, stamp, arrival time."""

    def __init__(self) -> None:
        self.seqs: array[int] = array("q")
        self.sent: array[float] = array("d")
        self.got: array[float] = array("d")
        self.arrived = asyncio.Event()

    def record(self, payload: bytes, now: float) -> None:
        seq, stamp = STAMP.unpack_from(payload)
        self.seqs.append(seq)
        self.sent.append(stamp)
        self.got.append(now)
        self.arrived.set()

    async def collect(
        self,
        first: int,
        count: int,
        timeout: float,
        *,
        expect: int | None = None,
        settle: float = 0.0,
    ) -> dict[str, Any]:
        """Wait for the ``count`` messages numbered from ``first``; their records, arrival order.

        ``expect``: how many of them come here (default all: one receiver).
        Waits until that many distinct numbers arrived or ``timeout`` passed,
        then ``settle`` seconds more (a duplicate right behind the last
        message is counted too).
        """
        deadline = time.monotonic() + timeout
        end = first + count
        wanted = count if expect is None else expect
        have: set[int] = set()
        scanned = 0
        while True:
            seqs = self.seqs
            have.update(s for s in seqs[scanned:] if first <= s < end)
            scanned = len(seqs)
            if len(have) >= wanted or time.monotonic() > deadline:
                break
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), max(0.0, deadline - time.monotonic()))
        if settle:
            await asyncio.sleep(settle)
        return self.rows(first, end)

    def rows(self, first: int, end: int) -> dict[str, Any]:
        """The records of the numbers ``first`` .. ``end - 1`` that arrived, arrival order."""
        rows = [
            (s, a, b)
            for s, a, b in zip(self.seqs, self.sent, self.got, strict=True)
            if first <= s < end
        ]
        return {
            "received": len(rows),
            "distinct": len({s for s, _, _ in rows}),
            "sent": [a for _, a, _ in rows],
            "got": [b for _, _, b in rows],
        }


# --- the driver's figures -------------------------------------------------------------------


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def latency_figures(
    latencies: list[float], quantiles: tuple[int, ...] = (50, 90, 99)
) -> dict[str, float]:
    """``pNN_ms`` for each quantile and ``max_ms`` of ascending latencies in ms (none if empty)."""
    if not latencies:
        return {}
    figures = {f"p{q}_ms": round(percentile(latencies, q), 2) for q in quantiles}
    figures["max_ms"] = round(latencies[-1], 2)
    return figures


def steady_rate(arrivals: list[float], wall: float) -> tuple[float, bool, float]:
    """Messages a second over the arrivals after the first tenth, the pipeline filled.

    Returns ``(rate, steady, end_to_end)``: too few arrivals, or too short a
    window, for a steady state (a quick run) gives the end-to-end rate over
    ``wall`` (from the first send: includes filling the pipeline) instead.
    """
    ordered = sorted(arrivals)
    first = len(ordered) // 10
    span = ordered[-1] - ordered[first]
    end_to_end = len(ordered) / wall
    steady = len(ordered) - first >= 1000 and span >= 0.5
    return ((len(ordered) - 1 - first) / span if steady else end_to_end), steady, end_to_end


# --- the readable tables --------------------------------------------------------------------


def print_table(columns: Sequence[tuple[str, str]], rows: Iterable[Sequence[object]]) -> None:
    """A table as the benchmarks print it: the headings, a rule as wide, then a line a row.

    ``columns``: each column's heading and the format of its cells (``">10,.0f"``); a
    heading takes its cells' alignment and width, so the two cannot drift apart.
    """
    header = " ".join(f"{heading:{_alignment(spec)}}" for heading, spec in columns)
    print(header)
    print("-" * len(header))
    for row in rows:
        print(" ".join(f"{value:{spec}}" for value, (_, spec) in zip(row, columns, strict=True)))


def print_figures(
    columns: Sequence[tuple[str, str, str]], rows: Iterable[Mapping[str, object]]
) -> None:
    """:func:`print_table` of rows that hold their figures by name: (name, heading, format)."""
    print_table(
        [(heading, spec) for _, heading, spec in columns],
        ([row[name] for name, _, _ in columns] for row in rows),
    )


def _alignment(spec: str) -> str:
    """The alignment and width that open a cell's format: ``">10,.0f"`` -> ``">10"``."""
    rest = spec.lstrip("<>^").lstrip("0123456789")
    return spec[: len(spec) - len(rest)]
