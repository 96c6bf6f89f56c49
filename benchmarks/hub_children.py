#!/usr/bin/env python3
"""Many child departments of one hub, in one process (driven by benchmarks/hub_sparse.py).

    python benchmarks/hub_children.py SPEC.json

Issue 14's sparse hub has a thousand children, each sending now and then.
A process per child would not fit a 2-core machine, so this one runs many
real :class:`~exchnode.aio.Node` s on one event loop: each has its own
certificate and keys (from the files the driver wrote), its own mutual-TLS
contexts and link client (so its own connection to the hub, kept alive or
not exactly as a lone department's would be), its own listening server (the
hub greets its children at start, as deployed) and a ``MemoryStore`` (the
children's durability is not what is measured; their stores only have to be
cheap).  The children keep no audit log and check expiry once a minute: both
are their own cost, never the hub's, and on one core for all of them the
default second would cost more than their messages.

Commands (one JSON object per line on stdin; events on stdout, as
``relay_node.py``):

* ``start``: start every child (bounded concurrency) and answer ``started``
  with the time it took and the process's resident memory;
* ``send``: rounds ``first_round`` .. ``first_round + rounds - 1``; in round
  *k* child *i* sends one message due at ``start + k * interval + i *
  interval / N`` (the children evenly spread, so the hub sees a steady
  ``N / interval`` msgs/s and every transfer into it carries one message).
  Each message is its own ``send``; its payload is sequence number ``k * N
  + i`` and the *scheduled* time (``_common.stamped``), so a late child
  counts against latency.  Answers ``sent`` once every send has returned;
  The schedule runs in the background: ``links`` and ``cpu`` are answered
  while it runs, and ``sent`` comes whenever it is done;
* ``links``, ``cpu``, ``stop``: as ``relay_node.py``.

The spec's ``receiver`` is every child's recipient, unless it says
``receivers`` (several departments under the hub): child *i* then sends to
``receivers[i % len(receivers)]``, so that a hub run as several workers
forwards to next hops owned by different workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import structlog
from _common import STAMP, commands, emit, stamped
from relay_node import DriverFiles, LinkCounters, cpu_seconds, dump_tasks

from exchnode.aio import Node, NodeConfig, NodeTimers, Peer
from exchnode.aio import run as run_loop
from exchnode.core import StaticDirectory
from exchnode.federation import Relation
from exchnode.store import MemoryStore

STARTING_AT_ONCE = 32  # children starting concurrently: bounded, so the hub's accept queue holds


def resident_bytes() -> int:
    """This process's resident memory now (Linux ``VmRSS``), 0 where unknown."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def recipients_of(spec: dict[str, Any]) -> list[str]:
    """The receiving departments, taken in turn by the children (by their index)."""
    return list(spec.get("receivers") or [spec["receiver"]])


def build_children(spec: dict[str, Any]) -> list[Node]:
    files = DriverFiles(Path(spec["files"]))
    known = files.peers((spec["hub"], *recipients_of(spec)))  # all a child seals to or hears from
    hub = Peer(name=spec["hub"], relation=Relation.PARENT, url=spec["hub_url"])
    timers = NodeTimers(expiry_interval=60.0)
    return [
        Node(
            identity=files.identity(name),
            directory=StaticDirectory(known),
            store=MemoryStore(),
            tls=files.tls(name),
            trust=files.trust,
            ca_bundle=files.bundle,
            config=NodeConfig(peers=[hub], listen=("127.0.0.1", port), timers=timers),
        )
        for name, port in zip(spec["children"], spec["ports"], strict=True)
    ]


async def start_all(nodes: list[Node]) -> None:
    gate = asyncio.Semaphore(STARTING_AT_ONCE)

    async def start(node: Node) -> None:
        async with gate:
            await node.start()

    await asyncio.gather(*(start(node) for node in nodes))


async def send_rounds(
    nodes: list[Node],
    indices: list[int],
    total: int,
    recipients: list[str],
    command: dict[str, Any],
) -> dict[str, Any]:
    """The schedule of the module docstring; returns once every send has returned.

    ``indices``: each node's place among all ``total`` children (of every
    children process), which fixes its slot in the round and its sequence
    numbers; child *i* sends to ``recipients[i % len(recipients)]``.
    """
    first_round, rounds = command["first_round"], command["rounds"]
    interval, size = command["interval"], command["size"]
    filler = os.urandom(size - STAMP.size)
    clock = time.monotonic
    start = command.get("start") or clock() + 0.05
    busy: dict[int, asyncio.Task[Any]] = {}  # child -> its send still under way
    tasks: set[asyncio.Task[Any]] = set()
    worst_lag = 0.0
    overlapped = 0
    order = sorted(zip(indices, nodes, strict=True), key=lambda pair: pair[0])
    for k in range(first_round, first_round + rounds):
        base = start + (k - first_round) * interval
        for i, node in order:
            due = base + i * interval / total
            wait = due - clock()
            if wait > 0:
                await asyncio.sleep(wait)
            worst_lag = max(worst_lag, clock() - due)
            previous = busy.get(i)
            if previous is not None and not previous.done():
                overlapped += 1  # its last send has not returned: one at a time, so wait
                await previous
            to = [recipients[i % len(recipients)]]
            task = asyncio.create_task(node.send(to, stamped(k * total + i, due, filler)))
            busy[i] = task
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    return {
        "count": rounds * len(nodes),
        "started": start,
        "finished": clock(),
        "worst_lag": worst_lag,
        "overlapped": overlapped,
    }


async def serve(spec: dict[str, Any]) -> None:
    counters = LinkCounters()
    counters.install()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, dump_tasks)
    began = time.monotonic()
    nodes = build_children(spec)
    sending: set[asyncio.Task[dict[str, Any]]] = set()

    def report_sent(task: asyncio.Task[dict[str, Any]]) -> None:
        sending.discard(task)
        if task.cancelled():
            return
        problem = task.exception()
        if problem is not None:
            emit("error", message=f"send failed: {problem!r}")
        else:
            emit("sent", **task.result())

    emit("ready", pid=os.getpid(), children=len(nodes), seconds=round(time.monotonic() - began, 2))
    try:
        async for command in commands():
            kind = command["cmd"]
            if kind == "start":
                began = time.monotonic()
                before = resident_bytes()
                try:
                    await start_all(nodes)
                except Exception as exc:
                    emit("error", message=f"start failed: {exc!r}")
                    raise
                gc.collect()
                gc.freeze()  # as relay_node: the start-up heap is never garbage
                emit(
                    "started",
                    seconds=round(time.monotonic() - began, 2),
                    rss_bytes=resident_bytes(),
                    rss_before_start=before,
                )
            elif kind == "send":  # in the background: ``links`` and ``cpu`` answered meanwhile
                task = loop.create_task(
                    send_rounds(nodes, spec["indices"], spec["total"], recipients_of(spec), command)
                )
                task.add_done_callback(report_sent)
                sending.add(task)
            elif kind == "links":
                emit("links", **counters.snapshot())
            elif kind == "cpu":
                emit("cpu", seconds=cpu_seconds())
            else:
                emit("error", message=f"children cannot {kind!r}")
    finally:
        for task in list(sending):
            task.cancel()
        await asyncio.gather(*sending, return_exceptions=True)
        await asyncio.gather(*(node.close() for node in nodes), return_exceptions=True)


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
    )
    run_loop(serve(spec))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
