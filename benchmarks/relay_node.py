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
import cProfile
import gc
import json
import logging
import os
import resource
import signal
import ssl
import sys
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import structlog
from _common import STAMP, Arrivals, burst, commands, emit, paced, stamped

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
from exchnode.core import LocalIdentity, PeerIdentity, StaticDirectory
from exchnode.federation import Relation, TransferRequest, TransferResponse
from exchnode.pki import (
    TrustStore,
    load_certificates_pem,
    load_crls_pem,
    load_local_identity,
    verify_node_certificate,
)
from exchnode.store import Store


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


class DriverFiles:
    """The PKI files the driver wrote (``relay.write_pki``), loaded and verified as a node would."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.now = datetime.now(UTC)
        self.trust = TrustStore(
            load_certificates_pem((folder / "root.pem").read_bytes()),
            load_crls_pem((folder / "crls.pem").read_bytes()),
        )
        self.bundle = load_certificates_pem((folder / "ca-bundle.pem").read_bytes())

    def identity(self, name: str) -> LocalIdentity:
        return load_local_identity(
            self.folder / f"{name}.chain.pem",
            self.folder / f"{name}.signing.key",
            self.folder / f"{name}.encryption.key",
            trust=self.trust,
            now=self.now,
        )

    def peers(self, names: Iterable[str]) -> list[PeerIdentity]:
        """The directory's entries for ``names``: their chains, verified."""
        peers = []
        for name in names:
            chain = (self.folder / f"{name}.chain.pem").read_bytes()
            leaf, *intermediates = load_certificates_pem(chain)
            peers.append(verify_node_certificate(leaf, intermediates, self.trust, self.now))
        return peers

    def tls(self, name: str) -> TlsFiles:
        folder = self.folder
        return TlsFiles(
            folder / f"{name}.chain.pem", folder / f"{name}.signing.key", folder / "verify.pem"
        )


def build_node(spec: dict[str, Any]) -> Node:
    files = DriverFiles(Path(spec["files"]))
    name = spec["name"]
    limits = NodeLimits(**spec.get("limits", {}))
    worker = spec.get("worker")
    return Node(
        identity=files.identity(name),
        # The directory: every node of the path.
        directory=StaticDirectory(files.peers(spec["names"])),
        store=store_of(spec),
        tls=files.tls(name),
        trust=files.trust,
        ca_bundle=files.bundle,
        config=NodeConfig(
            peers=[
                Peer(name=p["name"], relation=Relation(p["relation"]), url=p["url"])
                for p in spec["peers"]
            ],
            listen=("127.0.0.1", spec["port"]),
            limits=limits,
            timers=NodeTimers(**spec.get("timers", {})),
            worker=None if worker is None else WorkerShare(*worker),
            # An A/B knob for issue 14's cut-through (SPEC §16.4): on unless set to 0.
            cut_through=os.environ.get("EXCHNODE_BENCH_CUT_THROUGH", "1") != "0",
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


class Receiver(Arrivals):
    """Records every delivery from the node's start; acknowledges in batches."""

    def __init__(self, node: Node) -> None:
        super().__init__()
        self.node = node
        self._unacked: list[Delivery] = []
        self._ack_wake = asyncio.Event()
        self.acked = 0

    async def consume(self) -> None:
        clock = time.monotonic
        async for delivery in self.node.deliveries():
            self.record(delivery.payload, clock())
            self._unacked.append(delivery)
            self._ack_wake.set()

    async def acknowledge(self) -> None:
        while True:
            await self._ack_wake.wait()
            await asyncio.sleep(0.002)  # let a batch gather; latency is taken before the ack
            self._ack_wake.clear()
            batch, self._unacked = self._unacked, []
            if batch:
                await self.node.ack(batch)
                self.acked += len(batch)


async def send_burst(node: Node, command: dict[str, Any]) -> dict[str, Any]:
    """``inflight`` concurrent ``send_many`` calls of ``batch`` messages each."""
    filler = os.urandom(command["size"] - STAMP.size)
    recipient = [command["recipient"]]

    async def send(seqs: range, stamp: float) -> None:
        messages = [
            Message(recipients=recipient, payload=stamped(seq, stamp, filler)) for seq in seqs
        ]
        await node.send_many(messages)

    first, count = command["first"], command["count"]
    return await burst(send, first, count, batch=command["batch"], window=command["inflight"])


async def send_paced(node: Node, command: dict[str, Any]) -> dict[str, Any]:
    """Open loop, each message its own ``send`` call: the node's group commit batches them."""
    filler = os.urandom(command["size"] - STAMP.size)
    recipient = [command["recipient"]]

    def send(seq: int, due: float) -> Awaitable[Any]:
        return node.send(recipient, stamped(seq, due, filler))

    return await paced(send, command["first"], command["rate"], command["duration"])


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
        async for command in commands():
            kind = command["cmd"]
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
                emit("sent", **await send_burst(node, command))
            elif kind == "paced":
                emit("sent", **await send_paced(node, command))
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
                    command["first"],
                    command["count"],
                    command["timeout"],
                    expect=command.get("expect"),
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
