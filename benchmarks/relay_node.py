#!/usr/bin/env python3
"""One node of the relay benchmark, in its own process (driven by benchmarks/relay.py).

    python benchmarks/relay_node.py SPEC.json

Uses only the exchnode library API: it loads its identity and its peers'
certificates from the files the driver wrote (verifying every chain as a
node would), runs one :class:`~exchnode.aio.Node` on an SQLite store, and
plays the application role the spec names:

* ``relay``: nothing more; the node only holds and forwards.
* ``send``: on command, sends ``burst`` (as fast as the node takes them,
  ``inflight`` concurrent ``send_many`` calls of ``batch`` messages) or
  ``paced`` (open loop: message *i* is due at ``start + i / rate``; each is
  its own ``send`` call, so the node's group commit batches what is due).
* ``receive``: consumes ``deliveries()`` from the start, acknowledges in
  batches, and records for each message its sequence number, the send time
  stamped in its payload and the time the application got it.

Payload: sequence number (8 bytes, big-endian) and a ``time.monotonic()``
stamp (an IEEE double), then filler up to the payload size.  On Linux
``time.monotonic()`` is ``CLOCK_MONOTONIC``, one clock for every process of
the machine, so the receiver subtracts the sender's stamp directly.  In
``paced`` mode the stamp is the *scheduled* time, so a late sender counts
against latency (no coordinated omission).

Protocol: one JSON object per line on stdin (commands) and stdout (events);
logs go to stderr.  The first event is ``ready``.  ``kill -USR1 PID`` writes
every asyncio task's stack to the log (a stalled run shows where it waits).

For ``benchmarks/hub_sparse.py`` (a hub with many children) the spec may also
say ``count_links`` (a ``links`` command answers the TLS handshakes and
transfers this process made and took: :class:`LinkCounters`) and
``profile_window`` (``profile`` is then written only between the commands
``profile-start`` and ``profile-stop``, on the loop thread's CPU clock, so
that start-up and warm-up stay out of it); ``timers`` and ``limits`` are
``NodeTimers`` and ``NodeLimits`` fields.  A hub on PostgreSQL (issue 14)
says ``postgres`` (``{"conninfo": ..., "schema": ...}``: a ``PostgresStore``
instead of the SQLite file ``store``) and, run as one of several workers,
``worker`` (``[index, count]``: ``NodeConfig.worker``, every worker on the
same port); ``collect`` may say ``expect``, how many of its ``count``
numbers this receiver gets (the others go to another receiver).
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import gc
import json
import logging
import math
import os
import resource
import signal
import ssl
import struct
import sys
import time
import weakref
from array import array
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import structlog

from exchnode.aio import (
    AuditService,
    Delivery,
    LinkClient,
    Message,
    Node,
    NodeConfig,
    NodeLimits,
    NodeTimers,
    Peer,
    TlsFiles,
    WorkerShare,
)
from exchnode.aio import run as run_loop
from exchnode.core import StaticDirectory
from exchnode.federation import Relation, TransferRequest, TransferResponse
from exchnode.pki import (
    TrustStore,
    load_certificates_pem,
    load_crls_pem,
    load_local_identity,
    verify_node_certificate,
)
from exchnode.store import Store

STAMP = struct.Struct(">Qd")


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread: loop and store
    return usage.ru_utime + usage.ru_stime


class LinkCounters:
    """TLS handshakes and transfers of this process, counted at public seams, not in exchnode.

    Issue 14's question is how many handshakes and transfers a hub pays per
    message, and the library keeps no such counters.  Every TLS connection
    asyncio makes or accepts starts with ``SSLContext.wrap_bio`` (its
    ``server_side`` says which end this process is), and every transfer a
    forwarder sends goes through the public ``LinkClient.transfer``: wrapping
    both counts them without touching the library.  The contexts seen are
    kept (weakly) so that OpenSSL's own session counters can be added up as a
    cross-check (``accept``/``connect``: handshakes started, ``hits``:
    sessions resumed, none expected since the clients keep no session).
    """

    def __init__(self) -> None:
        self.handshakes = {"server": 0, "client": 0}
        self.transfers = 0
        self.items = 0
        self.contexts: weakref.WeakSet[ssl.SSLContext] = weakref.WeakSet()

    def install(self) -> None:
        counters = self
        wrap_bio = ssl.SSLContext.wrap_bio
        transfer = LinkClient.transfer

        def counted_wrap_bio(
            self: ssl.SSLContext,
            incoming: ssl.MemoryBIO,
            outgoing: ssl.MemoryBIO,
            server_side: bool = False,
            server_hostname: str | bytes | None = None,
            session: ssl.SSLSession | None = None,
        ) -> ssl.SSLObject:
            counters.handshakes["server" if server_side else "client"] += 1
            counters.contexts.add(self)
            return wrap_bio(self, incoming, outgoing, server_side, server_hostname, session)

        async def counted_transfer(
            client: LinkClient, request: TransferRequest
        ) -> TransferResponse:
            counters.transfers += 1
            counters.items += len(request.items)
            return await transfer(client, request)

        ssl.SSLContext.wrap_bio = counted_wrap_bio  # type: ignore[method-assign]
        LinkClient.transfer = counted_transfer  # type: ignore[method-assign,assignment]

    def snapshot(self) -> dict[str, Any]:
        openssl: dict[str, int] = {}
        for context in list(self.contexts):
            for key, value in context.session_stats().items():
                openssl[key] = openssl.get(key, 0) + value
        return {
            "handshakes": dict(self.handshakes),
            "transfers": self.transfers,
            "items": self.items,
            "openssl": {k: openssl.get(k, 0) for k in ("accept", "connect", "hits", "misses")},
        }


class WindowProfiler:
    """A cProfile of the event loop thread between two commands, on that thread's CPU clock.

    The default wall clock would charge the loop's idle waits in ``epoll`` to
    the profile, and a process clock would charge the store thread's commits
    to whatever the loop runs meanwhile; ``time.thread_time`` counts only
    what the loop thread itself burns.
    """

    def __init__(self, target: str) -> None:
        self.target = target
        self.profiler = cProfile.Profile(time.thread_time)
        self.running = False

    def start(self) -> None:
        if not self.running:
            self.profiler.enable()
            self.running = True

    def stop(self) -> None:
        if self.running:
            self.profiler.disable()
            self.running = False
            self.profiler.dump_stats(self.target)


def build_node(spec: dict[str, Any]) -> Node:
    files = Path(spec["files"])
    name = spec["name"]
    now = datetime.now(UTC)
    trust = TrustStore(
        load_certificates_pem((files / "root.pem").read_bytes()),
        load_crls_pem((files / "crls.pem").read_bytes()),
    )
    bundle = load_certificates_pem((files / "ca-bundle.pem").read_bytes())
    identity = load_local_identity(
        files / f"{name}.chain.pem",
        files / f"{name}.signing.key",
        files / f"{name}.encryption.key",
        trust=trust,
        now=now,
    )
    peers = []
    for other in spec["names"]:  # the directory: every node of the path, chains verified
        leaf, *intermediates = load_certificates_pem((files / f"{other}.chain.pem").read_bytes())
        peers.append(verify_node_certificate(leaf, intermediates, trust, now))
    limits = NodeLimits(**spec.get("limits", {}))
    worker = spec.get("worker")
    return Node(
        identity=identity,
        directory=StaticDirectory(peers),
        store=store_of(spec),
        tls=TlsFiles(
            files / f"{name}.chain.pem", files / f"{name}.signing.key", files / "verify.pem"
        ),
        trust=trust,
        ca_bundle=bundle,
        config=NodeConfig(
            peers=[
                Peer(name=p["name"], relation=Relation(p["relation"]), url=p["url"])
                for p in spec["peers"]
            ],
            listen=("127.0.0.1", spec["port"]),
            limits=limits,
            timers=NodeTimers(**spec.get("timers", {})),
            worker=None if worker is None else WorkerShare(*worker),
        ),
        # As a daemon runs it: custody records in every group commit, heads every 10 s.
        services=[AuditService()] if spec.get("audit", True) else [],
    )


def store_of(spec: dict[str, Any]) -> Path | Callable[[], Store]:
    """The spec's SQLite file, or its PostgreSQL schema (opened by the node as it starts)."""
    postgres = spec.get("postgres")
    if postgres is None:
        return Path(spec["store"])
    from exchnode.store import PostgresStore  # psycopg: only a hub on PostgreSQL needs it

    return partial(PostgresStore, postgres["conninfo"], schema=postgres["schema"])


def dump_tasks() -> None:
    """On SIGUSR1: every task's stack to the log, to see where a stalled node waits."""
    for task in asyncio.all_tasks():
        task.print_stack(file=sys.stderr)
    sys.stderr.flush()


def payload(seq: int, stamp: float, filler: bytes) -> bytes:
    return STAMP.pack(seq, stamp) + filler


class Receiver:
    """Records every delivery from the node's start; acknowledges in batches."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.seqs: array[int] = array("q")
        self.sent: array[float] = array("d")
        self.got: array[float] = array("d")
        self.arrived = asyncio.Event()
        self._unacked: list[Delivery] = []
        self._ack_wake = asyncio.Event()
        self.acked = 0

    async def consume(self) -> None:
        clock = time.monotonic
        async for delivery in self.node.deliveries():
            now = clock()
            seq, stamp = STAMP.unpack_from(delivery.payload)
            self.seqs.append(seq)
            self.sent.append(stamp)
            self.got.append(now)
            self._unacked.append(delivery)
            self._ack_wake.set()
            self.arrived.set()

    async def acknowledge(self) -> None:
        while True:
            await self._ack_wake.wait()
            await asyncio.sleep(0.002)  # let a batch gather; latency is taken before the ack
            self._ack_wake.clear()
            batch, self._unacked = self._unacked, []
            if batch:
                await self.node.ack(batch)
                self.acked += len(batch)

    async def collect(
        self, first: int, count: int, timeout: float, expect: int | None = None
    ) -> dict[str, Any]:
        """Wait for the ``count`` messages numbered from ``first``; their records, arrival order.

        ``expect``: how many of them come here (default all: one receiver).
        """
        deadline = time.monotonic() + timeout
        end = first + count
        wanted = count if expect is None else expect
        have = scanned = 0
        while True:
            seqs = self.seqs
            have += sum(1 for i in range(scanned, len(seqs)) if first <= seqs[i] < end)
            scanned = len(seqs)
            if have >= wanted or time.monotonic() > deadline:
                break
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), max(0.0, deadline - time.monotonic()))
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


async def burst(node: Node, command: dict[str, Any]) -> dict[str, Any]:
    first, count, size = command["first"], command["count"], command["size"]
    batch, inflight = command["batch"], command["inflight"]
    filler = os.urandom(size - STAMP.size)
    recipient = [command["recipient"]]
    clock = time.monotonic
    next_seq = first
    end = first + count

    async def worker() -> None:
        nonlocal next_seq
        while next_seq < end:
            start = next_seq
            n = min(batch, end - start)
            next_seq += n
            stamp = clock()
            messages = [
                Message(recipients=recipient, payload=payload(seq, stamp, filler))
                for seq in range(start, start + n)
            ]
            await node.send_many(messages)

    begun = clock()
    await asyncio.gather(*(worker() for _ in range(inflight)))
    return {"count": count, "started": begun, "finished": clock()}


async def paced(node: Node, command: dict[str, Any]) -> dict[str, Any]:
    first, rate, duration, size = (
        command["first"],
        command["rate"],
        command["duration"],
        command["size"],
    )
    count = round(rate * duration)
    filler = os.urandom(size - STAMP.size)
    recipient = [command["recipient"]]
    clock = time.monotonic
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
            task = asyncio.create_task(node.send(recipient, payload(first + sent, due, filler)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
        if sent < count:
            await asyncio.sleep(max(0.0, start + sent / rate - clock()))
    await asyncio.gather(*tasks)
    return {"count": count, "started": start, "finished": clock(), "worst_lag": worst_lag}


async def serve(spec: dict[str, Any], window: WindowProfiler | None = None) -> None:
    counters = None
    if spec.get("count_links"):
        counters = LinkCounters()
        counters.install()  # before the node makes its contexts and clients
    node = build_node(spec)
    role = spec["role"]
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, dump_tasks)
    background: list[asyncio.Task[None]] = []
    async with node:
        receiver = None
        if role == "receive":
            receiver = Receiver(node)
            background.append(loop.create_task(receiver.consume()))
            background.append(loop.create_task(receiver.acknowledge()))
        if spec.get("gc_freeze", True):
            gc.collect()
            gc.freeze()  # as seal_open: the startup heap is never garbage
        emit("ready", name=node.name, pid=os.getpid(), url=node.url)
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line:
                break
            command = json.loads(line)
            kind = command["cmd"]
            if kind == "stop":
                break
            if kind == "cpu":
                usage = resource.getrusage(resource.RUSAGE_SELF)
                emit("cpu", seconds=cpu_seconds(), user=usage.ru_utime, system=usage.ru_stime)
            elif kind == "stats":
                stats = await node.stats()
                emit(
                    "stats",
                    counters=stats.counters,
                    queued=stats.queued.count,
                    inbox=stats.inbox.count,
                    cpu=cpu_seconds(),
                )
            elif kind == "burst":
                emit("sent", **await burst(node, command))
            elif kind == "paced":
                emit("sent", **await paced(node, command))
            elif kind == "links" and counters is not None:
                emit("links", **counters.snapshot())
            elif kind == "profile-start" and window is not None:
                window.start()
                emit("profiling", on=True)
            elif kind == "profile-stop" and window is not None:
                window.stop()
                emit("profiling", on=False, path=window.target)
            elif kind == "collect" and receiver is not None:
                result = await receiver.collect(
                    command["first"], command["count"], command["timeout"], command.get("expect")
                )
                emit("collected", **result)
            else:
                emit("error", message=f"{node.name} ({role}) cannot {kind!r}")
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
    )
    profile_to = spec.get("profile")
    if profile_to and spec.get("profile_window"):
        window = WindowProfiler(profile_to)
        try:
            run_loop(serve(spec, window))
        finally:
            window.stop()
        return 0
    profiler = cProfile.Profile() if profile_to else None
    if profiler is not None:
        profiler.enable()
    try:
        run_loop(serve(spec))
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile_to)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
