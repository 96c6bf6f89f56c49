"""The node: custody, routing, forwarding and delivery around one durable store (I/O edge).

Theory of operation
-------------------
A :class:`Node` is what an integrator embeds and what the daemon runs.  It
composes the pure parts -- routing, sealing and verification, the link
protocol, backoff, reports, node messages (``exchnode.core``,
``exchnode.federation``) -- around a :class:`~exchnode.store.Store` and the
aiohttp transport (``_transport``).  The Node is the composition and the
API: its lifecycle, its links, the application's calls and the seam for
services.  The work is done by its parts, each in its own module, sharing
one ``NodeContext`` (``_context``: the store thread, the custody log, the
queue totals):

* **custody in** (``_intake``): items from neighbours verified, checked
  against the neighbour's place and routed; everything that arrived while
  the previous commit ran goes to the store in one transaction (group
  commit), and only then is it answered TAKEN; a full node answers DEFERRED
  and grants no credit (back-pressure, nothing dropped);
* **custody out** (``_forwarder``): one forwarder per neighbour moves its
  queue, backing off (persisted, jittered) while it is unreachable;
* **the node's own envelopes** (``_outbox``): the application's messages,
  receipts and non-delivery reports, sealed in batches and committed like
  any arrival;
* **delivery** (``_inbox``): the inbox opened and handed to the
  application (until it acknowledges), to a service, or to the **status
  book** (``_status_book``) of receipts and reports for this node's own
  messages;
* **expiry** (here): a timer takes expired entries out of every queue and
  reports each to its sender (never a report on a report).

**Keys** come from a :class:`~exchnode.core.Directory`: a static one given,
or by default the federation's signed node directory, run by a
:class:`~exchnode.aio.DirectoryService` attached like any other service
(``_directory_service``); it hands new CRLs to :meth:`Node.apply_crls`.

Crash safety follows from the store's contract: nothing is acknowledged
before it is durable, nothing is removed before the next hop or the
application has acknowledged it, and dedup at every hop turns the repeats a
crash causes into no-ops.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from exchnode.aio._config import NodeConfig, NodeLimits, NodeTimers, Peer
from exchnode.aio._context import NodeContext
from exchnode.aio._delivery import Delivery, DeliveryStatus, Message, Sent
from exchnode.aio._directory_service import DirectoryService
from exchnode.aio._forwarder import Forwarder
from exchnode.aio._inbox import Inbox
from exchnode.aio._intake import Intake
from exchnode.aio._observations import LinkMetrics, NodeMetrics
from exchnode.aio._outbox import Outbox
from exchnode.aio._peer_trust import PeerTrust
from exchnode.aio._refusals import Refusal, Refusals
from exchnode.aio._service import CustodyLog, NodeService, PeersAware
from exchnode.aio._status_book import StatusBook
from exchnode.aio._tls import TlsFiles
from exchnode.aio._transport import Handler, LinkClient, LinkError, LinkServer, Network
from exchnode.aio._waiting import wait_event
from exchnode.aio._workers import WorkerSignals
from exchnode.audit import DetailValue
from exchnode.core import (
    RESERVED_KINDS,
    Directory,
    LocalIdentity,
    NodeName,
    Opener,
    ReceiptVerifier,
    Sealer,
    StaticDirectory,
)
from exchnode.errors import ExchnodeError, UsageError
from exchnode.federation import NodeDirectory, PeerState, Relation, Router
from exchnode.pki import CrlCheck, TrustStore
from exchnode.store import (
    HELLO,
    AcceptItem,
    AcceptOutcome,
    QueueDepth,
    SharedAuditStore,
    Signal,
    SignallingStore,
    SignalWatch,
    Store,
)

__all__ = ["PEER_SOURCES", "Node", "NodeStats"]

T = TypeVar("T")

_SHA256 = hashes.SHA256()

#: where a node's peers come from: its configuration, admitted on hello, added while it ran
PEER_SOURCES = ("config", "admitted", "added")
#: the store's rows of peers not in the configuration: ``peers/<name>`` -> JSON
_PEER_ROWS = "peers/"


@dataclass(frozen=True, slots=True)
class NodeStats:
    """A snapshot for health checks and operators."""

    name: str
    queued: QueueDepth
    inbox: QueueDepth
    outbound: dict[str, QueueDepth]
    peers: dict[str, PeerState]
    counters: dict[str, int]
    #: per neighbour: envelopes and envelope bytes it took into custody from this node
    handed_over: dict[str, QueueDepth]
    #: the last refusal per peer and direction that has not ended since (newest first)
    refusals: tuple[Refusal, ...] = ()


class Node:
    """One exchange node.  Use as an async context manager (``async with Node(...) as node``).

    The arguments say who the node is, whom it believes, where it keeps its
    state and how it is set up:

    * ``identity``, ``tls``: its keys and certificate chain, and the files
      its links' mutual TLS uses;
    * ``trust``, ``ca_bundle``: the roots and CRLs, and the federation's
      intermediate CAs, that every neighbour's certificate is verified
      against (new CRLs are added while it runs: :meth:`apply_crls`);
    * ``directory``: where other nodes' keys come from.  None (the default)
      runs the federation's signed node directory (a
      :class:`~exchnode.aio.DirectoryService`, pulled from and served to
      every neighbour; ``node_directory``); pass a ``StaticDirectory`` for a
      closed setup;
    * ``store``: a :class:`~exchnode.store.Store` (the caller's to close), a path for
      SQLite, or a callable that opens one (``partial(PostgresStore, conninfo)``),
      called in the node's store thread; the node closes what it opened;
    * ``config``: a :class:`~exchnode.aio.NodeConfig` -- neighbours, listen
      and advertised addresses, limits, timers, backoff, policies -- the
      plain values the daemon reads from ``node.toml`` (default: listen on
      a free loopback port, no neighbours);
    * ``services``: capabilities attached to the node (``NodeService``),
      such as the audit log, the catalog and subscriptions; started in
      order after the directory service, closed in reverse;
    * ``clock``, ``random``: time and randomness (a test passes its own);
    * ``network``: links over an in-memory network instead of TCP and TLS
      (``exchnode.sim``'s; then ``tls`` is not needed, and ``listen`` only
      says whether the node serves).  The daemon never passes one.
    """

    def __init__(
        self,
        *,
        identity: LocalIdentity,
        store: Store | str | os.PathLike[str] | Callable[[], Store],
        tls: TlsFiles | None = None,
        trust: TrustStore,
        ca_bundle: Sequence[x509.Certificate] = (),
        config: NodeConfig | None = None,
        directory: Directory | None = None,
        services: Sequence[NodeService] = (),
        clock: Callable[[], float] = time.time,
        random: Callable[[int], bytes] = os.urandom,
        network: Network | None = None,
    ) -> None:
        if tls is None and network is None:
            raise UsageError("a node needs its TLS files (tls=), unless it runs on a network=")
        self._network = network
        if config is None:
            config = NodeConfig()
        elif not isinstance(config, NodeConfig):
            raise UsageError(f"config must be a NodeConfig, got {type(config).__name__}")
        self.identity = identity
        self.name = str(identity.name)
        self.config = config
        self._store_arg = store
        self._peer_trust = PeerTrust(identity, trust, ca_bundle, tls, clock)
        self._peers: dict[str, Peer] = {peer.name: peer for peer in config.peers}
        self._sources: dict[str, str] = dict.fromkeys(self._peers, "config")
        self._peers_lock = asyncio.Lock()
        self._forwarding: dict[str, asyncio.Task[None]] = {}
        keys, self._directory_service, self._services = _directory_and_services(
            identity, config, clock, directory, services
        )
        self.directory: Directory = keys
        service_for: dict[str, NodeService] = {}
        for service in self._services:
            for kind in service.kinds:
                if kind in RESERVED_KINDS or kind in service_for:
                    raise UsageError(f"message kind {kind!r} is already taken")
                service_for[kind] = service
        self.router = Router(identity.name, [peer.neighbour for peer in self._peers.values()])
        self._clock = clock
        self._random = random
        self._context = context = NodeContext(
            self.name, clock, log_repeat_interval=config.timers.log_repeat_interval
        )
        if isinstance(keys, NodeDirectory):  # what it knows of revoked signers
            context.revoked_keys = keys.revoked_keys
        elif isinstance(keys, StaticDirectory):  # what apply_crls took out of it
            static_revoked = self._peer_trust.static_revoked
            context.revoked_keys = lambda name: static_revoked.get(name, set())
        self.log = context.log
        self.counters = context.counters
        self._refusals = Refusals(context, interval=config.timers.log_repeat_interval)
        sealer = Sealer(identity, keys, config.seal_policy, random)
        self._opener = Opener(identity, keys, config.open_policy, replay=None)
        policy = config.open_policy
        receipts = ReceiptVerifier(keys, freshness=policy.freshness, suites=policy.suites)
        self._status = StatusBook(context, receipts)
        self._outbox = Outbox(
            context, identity, sealer, self.router, keys, self._commit_own, self._status
        )
        self._inbox = Inbox(
            context,
            self._opener,
            self._outbox,
            self._status,
            service_for,
            limits=config.limits,
            timers=config.timers,
        )
        self._forwarders: dict[str, Forwarder] = {}  # by neighbour, made at start
        self._intake = Intake(
            context,
            self.router,
            self._opener.verifier,  # one verifier for custody and opening: one cache
            self._inbox,
            self._forwarders,
            config.limits,
            deferred=self._refusals.deferred,
            cut_through=config.cut_through,
        )
        self._server: LinkServer | None = None
        self._clients: dict[str, LinkClient] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = asyncio.Event()  # set once the parent had its first hello (``_greet``)
        self._started = False
        self._closing = False
        self._keys_event = asyncio.Event()
        self.address: tuple[str, int] | None = None
        self._signals: WorkerSignals | None = None  # a hub run as several workers
        self._watch: SignalWatch | None = None
        self._shared: SignallingStore | None = None

    @property
    def limits(self) -> NodeLimits:
        return self.config.limits

    @property
    def timers(self) -> NodeTimers:
        return self.config.timers

    # --- lifecycle ------------------------------------------------------------------

    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def url(self) -> str:
        if self.address is None:
            raise UsageError(f"{self.name} is not listening")
        host, port = self.address
        return f"https://{host}:{port}"

    async def start(self) -> None:
        """Open the store, restore state, start the services, serve; on failure, undo it all."""
        try:
            await self._start()
        except BaseException:
            await self.close()
            raise

    async def _start(self) -> None:
        context = self._context
        store = await context.open(self._store_arg)
        await self._restore_peers()
        for service in self._services:
            await service.start(self)
        network = self._network
        self._client_context = (
            None if network is not None else self._peer_trust.tls_context(server=False)
        )
        for peer in self._peers.values():
            await self._make_link(peer)
        share = self.config.worker
        if share is not None:
            if not isinstance(store, SignallingStore):
                raise UsageError(
                    f"{self.name} is worker {share.index} of {share.count}: its workers need a "
                    f"store they share that carries their signals (PostgresStore), "
                    f"not a {type(store).__name__}"
                )
            self._signals = signals = WorkerSignals(
                share, self._forwarders, self._inbox.wake, self.log
            )
            self._watch = await context.run(
                partial(
                    store.watch,
                    signals.heard,
                    worker=share.index,
                    owner=signals.owner,
                    on_error=signals.lost,
                )
            )
            self._shared = store
        self._intake.start()
        self._outbox.start()
        self._inbox.start()
        listen = self.config.listen
        if listen is not None:
            server_context = (
                None if network is not None else self._peer_trust.tls_context(server=True)
            )
            routes: dict[tuple[str, str], Handler] = {}
            for service in self._services:
                for key, handler in service.routes().items():
                    if key in routes:
                        raise UsageError(f"endpoint {key[0]} {key[1]} is already served")
                    routes[key] = handler
            self._server = LinkServer(
                self._intake.custody,
                self._peer_trust.authenticate,
                server_context,
                host=listen[0],
                port=listen[1],
                max_transfer_bytes=self.limits.max_transfer_bytes,
                on_hello=self._hello_from,
                admit=self._admit,
                routes=routes,
                neighbours=self._peers,
                refusals=self._refusals,
                in_flight=self._intake.in_flight,
                network=network,
                reuse_port=share is not None,
            )
            self.address = await self._server.start()
        loop = asyncio.get_running_loop()
        for name, forwarder in self._forwarders.items():
            if self._moves(name):
                self._forwarding[name] = self._run_task(forwarder.run, f"forward-{name}")
        self._tasks.append(loop.create_task(self._greet(), name="hello"))
        if share is None or share.delivers:
            self._run_task(self._inbox.pump, "inbox")
        if self._signals is not None:
            self._run_task(partial(self._signals.poll, self.timers.worker_poll), "worker-poll")
        self._run_task(
            lambda: self._outbox.expire(self.timers.expiry_interval, self._flush_removals),
            "expiry",
        )
        self._run_task(self._refusals.run, "refusals")
        self._started = True
        self.log.info("node started", url=self.url if self.address else None)

    async def _hello_parent_first(self) -> None:
        """One hello to the parent before the services' loops run (bounded, 2 s): then ``ready``.

        A hub may admit this node on its hello (``Admission``); the directory
        and catalog pulls that follow at once would otherwise race it and be
        refused as a stranger's.  Whatever the answer, the greeting goes on.
        """
        parent = next((n for n, p in self._peers.items() if p.relation is Relation.PARENT), None)
        client = None if parent is None else self._clients.get(parent)
        if client is None or not self._moves(parent or ""):
            return
        with contextlib.suppress(ExchnodeError, TimeoutError):
            async with asyncio.timeout(min(2.0, self.timers.link_timeout)):
                await client.hello(self._own_url())

    def _run_task(self, work: Callable[[], Awaitable[None]], name: str) -> asyncio.Task[None]:
        """Run one of the node's loops for as long as the node runs, restarting it after a bug.

        A loop that died silently would stop a queue for good (nothing forwarded to one
        neighbour, nothing delivered): log the failure loudly and start the loop again.
        Everything a loop does is durable or repeatable, so a restart loses nothing.
        """

        async def supervise() -> None:
            while True:
                try:
                    await work()
                    return
                except Exception:  # any bug: log it, keep the node serving
                    self.log.exception("node task failed; restarting it", task=name)
                    await asyncio.sleep(1.0)

        task = asyncio.get_running_loop().create_task(supervise(), name=name)
        self._tasks.append(task)
        return task

    def _moves(self, hop: str) -> bool:
        """Whether this process forwards ``hop``'s queue (always, unless it is one of several
        workers and another one owns the hop: ``WorkerShare``)."""
        share = self.config.worker
        return share is None or share.owns(hop)

    async def _flush_removals(self) -> None:
        for forwarder in self._forwarders.values():
            await forwarder.flush_removals()

    async def close(self) -> None:
        """Drain and stop: refuse new transfers, finish the commits under way, stop the tasks.

        Whatever is queued stays in the store for the next start.
        """
        if self._closing:
            return
        self._closing = True
        context = self._context
        started = context.running
        if started:
            self._refusals.flush()  # the counts held go on the record while it still takes them
            # Last attached, first closed: a service listed first (the audit log) still
            # takes what the others emit while they close.
            for service in reversed(self._services):
                try:
                    await service.close()
                except Exception:
                    self.log.exception(
                        "service did not close cleanly", service=type(service).__name__
                    )
        if self._server is not None:
            self._server.accepting = False
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if started:
            try:
                await self._flush_removals()  # what neighbours took leaves the store now
            except Exception:
                self.log.exception("removals not committed; resent after the restart")
        await self._outbox.close()
        await self._inbox.close()
        await self._intake.close()
        custody_log = context.custody_log
        if custody_log is not None and started:
            try:
                await custody_log.drained()  # nothing moves now: a last signed head
            except Exception:
                self.log.exception("audit log not drained cleanly")
        if self._server is not None:
            await self._server.close()
        for client in self._clients.values():
            await client.close()
        self._inbox.end()
        if self._watch is not None:
            await context.run(self._watch.close)
            self._watch = None
        await context.close()
        if started:
            self.log.info("node stopped")

    @property
    def store(self) -> Store:
        return self._context.store

    def attach_custody_log(self, log: CustodyLog) -> None:
        """Record every custody change in ``log``, inside the store transaction that makes it.

        The audit service calls this from its ``start``, before the node takes
        or moves anything; one log per node -- also for a hub run as several
        workers, whose store then lets each follow the log as stored
        (``exchnode.store.SharedAuditStore``).
        """
        share = self.config.worker
        if share is not None and share.count > 1 and not isinstance(self.store, SharedAuditStore):
            raise UsageError(
                f"{self.name} runs as {share.count} workers, and its store cannot share one "
                f"audit log between them ({type(self.store).__name__}): use PostgresStore"
            )
        self._context.attach_custody_log(log)

    async def _commit_own(self, items: list[AcceptItem]) -> list[AcceptOutcome]:
        """The outbox's envelopes, committed like any arrival (the intake is made after it)."""
        return await self._intake.commit(items)

    # --- peers ----------------------------------------------------------------------

    def _hello_from(self, neighbour: str) -> None:
        if neighbour in self._peers:
            self.log.info("neighbour says hello", neighbour=neighbour)
            self.poke(neighbour)

    async def _greet(self) -> None:
        """Tell every neighbour this node is up, so that each serves its queue for us now.

        Without it a neighbour that backed off while we were down would wait
        out its backoff (minutes) before catching up.  A neighbour that is not
        reachable yet (started after us) is greeted again, backing off from 1 s
        to a minute, until it answers: with nothing queued for it, nothing else
        would reach it, and its answer is also how a node learns soon that a
        neighbour refuses it (a 403 is on the record and in health).
        """

        try:
            await self._hello_parent_first()
        finally:
            self._ready.set()
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            # The node closed during the first hello and the cancellation did not surface as
            # CancelledError (it was absorbed on the way: seen with wait_for's bounded hello):
            # stop here, or the greetings started below outlive the node and its close waits
            # for them for ever.
            raise asyncio.CancelledError
        await asyncio.gather(*(self._greet_one(n) for n in self._clients if self._moves(n)))

    async def _greet_one(self, name: str) -> None:
        """Greet one neighbour until it answers (see ``_greet``); a refusal is asked again."""
        delay = 1.0
        said = None
        while True:
            client = self._clients.get(name)
            if client is None:
                return  # removed meanwhile
            try:
                await client.hello(self._own_url())
            except LinkError as exc:
                if exc.status == 403:
                    # Refused (noted by the client: health shows it): said loudly once, and
                    # asked again now and then, so an admission on the other side is
                    # noticed within a minute without a restart here.
                    if str(exc) != said:
                        said = str(exc)
                        self.log.warning("neighbour refuses this node", neighbour=name, error=said)
                    await asyncio.sleep(max(delay, 5.0))
                    delay = min(max(delay, 5.0) * 2, 60.0)
                    continue
                if exc.status is not None or exc.refused is not None:
                    self.log.info("neighbour answered hello", neighbour=name, error=str(exc))
                    return  # it answered (a refusal is noted by the client): greeted
                if delay == 1.0:
                    self.log.info("neighbour not reachable yet", neighbour=name, error=str(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)
                continue
            except ExchnodeError as exc:
                self.log.info("neighbour not greeted", neighbour=name, error=str(exc))
                return
            if said is not None:
                self.log.info("neighbour admits this node now", neighbour=name)
            if name in self._peers:
                self.poke(name)
            return

    def poke(self, name: str) -> None:
        """Treat ``name`` as reachable now: try its queue at once (an operator's "retry now")."""
        if name not in self._peers:
            raise UsageError(f"{name} is not a neighbour of {self.name}")
        forwarder = self._forwarders.get(name)
        if forwarder is None:
            raise UsageError(f"node {self.name} is not running")
        shared = self._shared
        if shared is not None and not self._moves(name):  # another worker owns it: tell that one
            asyncio.get_running_loop().create_task(self._signal(shared, Signal(HELLO, name)))
            return
        forwarder.poke()

    async def _signal(self, store: SignallingStore, signal: Signal) -> None:
        try:
            await self._context.run(store.signal, signal)
        except ExchnodeError as exc:  # a hint only: the owner's periodic look makes up for it
            self.log.warning("worker signal not sent", signal=signal.kind, error=str(exc))

    # --- peers added and removed while the node runs ------------------------------------

    def _own_url(self) -> str | None:
        """Where neighbours reach this node, said in its hello (a hub may admit it)."""
        if self.config.advertise is not None:
            return self.config.advertise
        if self.address is None:
            return None
        host, port = self.address
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(host).is_unspecified:
                return None  # a wildcard is no address to dial: [directory] advertise says it
        return f"https://{host}:{port}" if ":" not in host else f"https://[{host}]:{port}"

    def peers(self) -> dict[str, tuple[Peer, str]]:
        """Every neighbour with where it comes from (``PEER_SOURCES``)."""
        return {name: (peer, self._sources[name]) for name, peer in self._peers.items()}

    async def _restore_peers(self) -> None:
        """The peers admitted or added in earlier runs (the configuration's win a clash)."""
        for key, data in await self.meta_range(_PEER_ROWS):
            name = key[len(_PEER_ROWS) :]
            if name in self._peers:
                continue
            try:
                row = json.loads(data)
                peer = Peer(name=name, relation=Relation(row["relation"]), url=row["url"])
                self.router.add(peer.neighbour)
            except (ValueError, KeyError, TypeError, ExchnodeError) as exc:
                self.log.error("stored peer not used", peer=name, error=str(exc))
                continue
            self._peers[name] = peer
            self._sources[name] = row.get("source", "added")

    async def _make_link(self, peer: Peer) -> None:
        """The client and forwarder of one neighbour (its backoff state from the store)."""
        context = self._context
        state = await context.run(context.store.peer_state, peer.name)
        network = self._network
        client = LinkClient(
            peer.name,
            peer.url,
            self._client_context,
            self._peer_trust.authenticate,
            timeout=self.timers.link_timeout,
            refusals=self._refusals,
            connector=None if network is None else network.connector(),
        )
        self._clients[peer.name] = client
        self._forwarders[peer.name] = Forwarder(
            context,
            client,
            state,
            limits=self.limits,
            timers=self.timers,
            backoff=self.config.backoff,
            random=self._random,
            report=self._outbox.report,
            relation=peer.relation.value,
        )

    async def add_peer(self, peer: Peer, *, source: str = "added") -> None:
        """Take ``peer`` as a neighbour now, without a restart.

        ``source`` ``added`` or ``admitted``: kept in the store, so it is a
        neighbour again after a restart (until :meth:`remove_peer`);
        ``config``: the caller's configuration holds it (the daemon's file, on
        SIGHUP).  Raises :class:`UsageError` for a name that is already a
        neighbour or that the routing rules refuse (a child outside this
        hub's division, a second parent).
        """
        if source not in PEER_SOURCES:
            raise UsageError(f"a peer's source is one of {', '.join(PEER_SOURCES)}")
        share = self.config.worker
        if source != "config" and share is not None and share.count > 1:
            # One worker's change would not reach the others (which forward the new hop,
            # by its hash) until they restart: the file, reloaded by each, is the one source.
            raise UsageError(
                f"{self.name} runs as {share.count} workers: give each the peer in [[peers]] "
                "and reload them (SIGHUP)"
            )
        async with self._peers_lock:
            if peer.name in self._peers:
                raise UsageError(f"{peer.name} is already a neighbour of {self.name}")
            self.router.add(peer.neighbour)
            try:
                if source != "config":
                    row = {"relation": peer.relation.value, "url": peer.url, "source": source}
                    await self.set_meta(_PEER_ROWS + peer.name, json.dumps(row).encode())
            except BaseException:
                self.router.remove(peer.name)
                raise
            self._peers[peer.name] = peer
            self._sources[peer.name] = source
            if self._context.running and not self._closing:
                await self._make_link(peer)
                if self._started and self._moves(peer.name):
                    forwarder = self._forwarders[peer.name]
                    self._forwarding[peer.name] = self._run_task(
                        forwarder.run, f"forward-{peer.name}"
                    )
                    # Greeted at once: a child refused until now learns it is admitted.
                    self._tasks.append(
                        asyncio.get_running_loop().create_task(
                            self._greet_one(peer.name), name=f"hello-{peer.name}"
                        )
                    )
                await self._tell_services()
        self.log.info("peer added", peer=peer.name, relation=peer.relation.value, source=source)

    async def remove_peer(self, name: str) -> Peer:
        """Stop exchanging with ``name`` now; what is queued for it stays in the store."""
        async with self._peers_lock:
            peer = self._peers.get(name)
            if peer is None:
                raise UsageError(f"{name} is not a neighbour of {self.name}")
            self.router.remove(name)
            del self._peers[name]
            source = self._sources.pop(name)
            if source != "config" and self._context.running:
                await self.update_meta({_PEER_ROWS + name: None})
            task = self._forwarding.pop(name, None)
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                self._tasks.remove(task)
            forwarder = self._forwarders.pop(name, None)
            if forwarder is not None:
                with contextlib.suppress(ExchnodeError):
                    await forwarder.flush_removals()
            client = self._clients.pop(name, None)
            if client is not None:
                await client.close()
            if self._context.running and not self._closing:
                await self._tell_services()
        self.log.info("peer removed", peer=name, source=source)
        return peer

    async def _tell_services(self) -> None:
        for service in self._services:
            if isinstance(service, PeersAware):
                await service.peers_changed()

    async def _admit(self, name: str, url: str | None) -> str | None:
        """A stranger's hello: admit it as a child by ``config.admission``, or say why not."""
        admission = self.config.admission
        why = admission.judge(self.identity.name, NodeName.parse(name), url)
        if why is None and self._directory_service is None:
            # A static directory is exactly whom the operator listed: it learns no keys, so
            # an admitted child could neither be verified nor sealed to.
            why = (
                f"{name} is not admitted by {self.name}: {self.name} runs a static directory, "
                "which admits no one (its operator adds the peer and its chain, and restarts)"
            )
        if why is None and url is not None:
            try:
                await self.add_peer(
                    Peer(name=name, relation=Relation.CHILD, url=url), source="admitted"
                )
            except UsageError as exc:
                if name in self._peers:
                    return None  # a hello that crossed this one admitted it meanwhile
                why = f"{name} is not admitted by {self.name}: {exc}"
        if why is not None:
            return why
        self.record_key_change("peer.admitted", subject=name, kind=admission.policy)
        self.log.info("child admitted", child=name, url=url, policy=admission.policy)
        return None

    # --- the application's messages ------------------------------------------------

    async def send(
        self,
        recipients: Sequence[str],
        payload: bytes,
        *,
        kind: str = "data",
        content_type: str = "application/octet-stream",
        ttl: float | None = None,
        receipt: bool = False,
        idempotency_key: str | None = None,
    ) -> Sent:
        """Seal ``payload`` to ``recipients`` and take it into custody.

        Returns once the envelope is durably stored here; the node then
        delivers it however long the way takes, until it expires.  Raises
        :class:`UsageError` for a recipient that is unknown or unroutable.
        With ``idempotency_key`` a retry of a send whose answer was lost
        returns the first message (``Sent.repeated``) instead of a second one
        (see :class:`Message`).
        """
        message = Message(
            recipients=recipients,
            payload=payload,
            kind=kind,
            content_type=content_type,
            ttl=ttl,
            receipt=receipt,
            idempotency_key=idempotency_key,
        )
        (result,) = await self.send_many([message])
        return result

    async def send_many(self, messages: Sequence[Message]) -> list[Sent]:
        """Send several messages; one signature and one commit for all of them.

        All succeed or the first error is raised (those before it are sent).
        """
        for message in messages:
            if not isinstance(message, Message):
                raise UsageError(f"send_many takes Message values, got {type(message).__name__}")
        await self._wait_for_room(len(messages), sum(len(m.payload) for m in messages))
        if self._directory_service is not None:
            # A node holds its subtree and path, not the network: recipients it does not
            # hold are asked of the hierarchy first (bounded); still unknown fails as before.
            await self._directory_service.resolve(r for m in messages for r in m.recipients)
        results = await self._outbox.send(list(messages))
        sent: list[Sent] = []
        for result in results:
            if isinstance(result, ExchnodeError):
                raise self._unadmitted(result)
            sent.append(result)
        return sent

    def _unadmitted(self, error: ExchnodeError) -> ExchnodeError:
        """A recipient unknown because the parent refuses this node says so, not "unknown"."""
        parent = next((n for n, p in self._peers.items() if p.relation is Relation.PARENT), None)
        refusal = None if parent is None else self._refusals.by_peer(parent)
        if refusal is None or "not in the directory" not in str(error):
            return error
        said = f": {refusal.text}" if refusal.text else ""
        return UsageError(
            f"{error}; the hub {parent} has not admitted this node yet ({refusal.reason}){said}"
        )

    async def _wait_for_room(self, count: int, size: int) -> None:
        space = self._context.space
        while not self._intake.has_room(count, size) and self._context.queued.count:
            # Back-pressure reaches the application too: wait for the queues to drain.
            space.clear()
            await wait_event(space, 0.5)

    # --- expiry --------------------------------------------------------------------------

    # --- delivery to the application, and the status of what it sent --------------------

    def deliveries(self) -> AsyncIterator[Delivery]:
        """Messages for this node's application, oldest first; acknowledge each with ``ack``.

        One consumer at a time.  Ends when the node closes.
        """
        return self._inbox.deliveries()

    async def ack(self, deliveries: Iterable[Delivery]) -> None:
        """Acknowledge deliveries: they leave the inbox, and receipts go out where asked."""
        await self._inbox.ack(deliveries)

    async def status(self, message_id: bytes) -> DeliveryStatus:
        """Receipts and non-delivery reports received so far for a message this node sent."""
        return await self._status.status(message_id)

    async def wait_status(
        self,
        message_id: bytes,
        recipients: Sequence[str] | None = None,
        *,
        timeout: float | None = None,
    ) -> DeliveryStatus:
        """Wait until every one of ``recipients`` (any one, if None) has a receipt or report."""
        return await self._status.wait(message_id, recipients, timeout)

    # --- for services (``NodeService``) --------------------------------------------------

    def neighbours(self) -> dict[str, Relation]:
        """Each neighbour's name and how it stands to this node."""
        return {name: peer.relation for name, peer in self._peers.items()}

    async def request(
        self, neighbour: str, method: str, path: str, data: bytes | None = None
    ) -> bytes:
        """Call a neighbour's authenticated endpoint (mutual TLS, its name checked)."""
        client = self._clients.get(neighbour)
        if client is None:
            raise UsageError(f"{neighbour} is not a neighbour of {self.name}")
        return await client.request(method, path, data)

    async def get_meta(self, key: str) -> bytes | None:
        """A value a service keeps in this node's store."""
        return await self._context.run(self.store.get_meta, key)

    async def set_meta(self, key: str, value: bytes) -> None:
        """Durably keep ``value`` under ``key`` (returns once committed)."""
        await self._context.run(self.store.set_meta, key, value)

    async def update_meta(self, changes: Mapping[str, bytes | None]) -> None:
        """Durably set (bytes) or delete (None) many keys at once: a service's rows, per change."""
        await self._context.run(self.store.update_meta, changes)

    async def meta_range(
        self, prefix: str, *, after: str = "", limit: int = 1000
    ) -> list[tuple[str, bytes]]:
        """One page of a service's rows under ``prefix``, in key order, after ``after``."""
        return await self._context.run(self.store.meta_range, prefix, after=after, limit=limit)

    async def run_in_store(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a store call in the node's store thread, in order with the node's own."""
        return await self._context.run(fn, *args)

    def run_task(self, work: Callable[[], Awaitable[None]], name: str) -> None:
        """Run a service's loop for as long as the node runs, restarted after a bug."""
        self._run_task(work, name)

    async def ready(self) -> None:
        """Return once the node is serving (a service's loop may start before that)."""
        await self._ready.wait()

    def now(self) -> float:
        """The node's clock, in seconds since 1970 (a test may pass its own)."""
        return self._clock()

    # --- keys and trust -----------------------------------------------------------------

    @property
    def trust(self) -> TrustStore:
        """The roots and CRLs peers are checked against now (with every CRL applied since)."""
        return self._peer_trust.trust

    @property
    def ca_bundle(self) -> tuple[x509.Certificate, ...]:
        """The federation's intermediate CAs peers' chains are completed from."""
        return self._peer_trust.ca_bundle

    @property
    def node_directory(self) -> NodeDirectory | None:
        """The signed node directory this node runs (None: it was given a static one)."""
        service = self._directory_service
        return None if service is None else service.directory

    def apply_crls(self, crls: Sequence[x509.CertificateRevocationList]) -> None:
        """New revocations reach both layers of peer checks: TLS and ``verify_node_certificate``.

        For the directory service (its CRLs travel with the directory); each
        CRL is applied once, and goes on the audit record (``crl.applied``).
        """
        new = self._peer_trust.apply_crls(crls)
        if not new:
            return
        self._revoke_static()
        cut = self._server.close_connections(self._peer_trust.refused_now) if self._server else 0
        self.log.info("revocation lists applied", count=len(new), connections_cut=cut)
        now_ms = self._context.now_ms()
        self._context.log_entries(
            [
                self._context.recorder.key(
                    now_ms,
                    "crl.applied",
                    digest=crl.fingerprint(_SHA256),
                    count=len(list(crl)),
                )
                for crl in new
            ]
        )

    def _revoke_static(self) -> None:
        """A static directory drops what the CRLs now revoke (see ``revoke_static``)."""
        if not isinstance(self.directory, StaticDirectory):
            return
        dropped = self._peer_trust.revoke_static(self.directory)
        for peer in dropped:
            self.record_key_change("directory.dropped", subject=str(peer.name), refused="revoked")
        if dropped:
            self.log.warning("revoked identities left the directory", names=len(dropped))
            self.keys_changed()

    def record_key_change(
        self,
        action: str,
        *,
        subject: str | None = None,
        refused: str | None = None,
        **detail: DetailValue,
    ) -> None:
        """Put a change of whom the node trusts on its audit record (category ``key``).

        For the directory service: ``directory.changed``, ``directory.refused``,
        ``directory.dropped`` (``exchnode.audit.CustodyRecorder.key``).
        """
        recorder = self._context.recorder
        entry = recorder.key(
            self._context.now_ms(), action, subject=subject, refused=refused, **detail
        )
        self._context.log_entries([entry])

    def keys_changed(self) -> None:
        """The directory's keys changed: retry what could not be opened, wake ``wait_known``."""
        self._inbox.rescan()
        self._keys_event.set()
        self._keys_event = asyncio.Event()

    async def add_crls(self, crls: Iterable[x509.CertificateRevocationList]) -> CrlCheck:
        """Take fresh CRLs from a CA (local configuration) and pass them on to every neighbour.

        Each is judged by the one CRL check (``pki.check_crls``; candidate CAs:
        the CA bundle, this node's chain, the roots) before anything is applied
        or served; the check is returned (``current``: taken; ``refused``: not,
        with the code and why).  With a static directory they are applied here
        only; with the signed one they travel to every node in its snapshots.
        """
        given = list(crls)
        if self._directory_service is not None:
            return await self._directory_service.add_crls(given)
        checked = self.check_crls(given)
        self.apply_crls(checked.current.crls)
        return checked

    def check_crls(self, crls: Sequence[x509.CertificateRevocationList]) -> CrlCheck:
        """The one CRL check (``pki.check_crls``) of CRLs given to this node, now.

        Candidate CAs: the CA bundle, this node's own chain and the trusted
        roots; the CAs are verified under the trust store with ``crls`` added.
        Nothing is applied.
        """
        return self._peer_trust.check_crls(crls)

    async def wait_known(self, names: Iterable[str], *, timeout: float | None = None) -> None:
        """Wait until this node can seal to every one of ``names`` (the directory has them)."""
        wanted = list(names)

        async def known() -> None:
            while True:
                event = self._keys_event
                missing = []
                for name in wanted:
                    try:
                        self.directory.recipient(name)
                    except ExchnodeError:
                        missing.append(name)
                if not missing:
                    return
                await wait_event(event, 0.5)

        await asyncio.wait_for(known(), timeout)

    def metrics(self) -> NodeMetrics:
        """What monitoring reads, from memory: no store call, O(neighbours).

        Per neighbour its link state, traffic and the oldest entry waiting for
        it; the application's oldest unacknowledged delivery; custody times per
        destination; refusals by reason (``_observations`` says how each is
        kept).  Queue depths, which may need the store, are :meth:`stats`'s.
        """
        links = {}
        for name, forwarder in self._forwarders.items():
            traffic = forwarder.traffic
            links[name] = LinkMetrics(
                name=name,
                relation=forwarder.relation,
                state=forwarder.state,
                transfers_out=traffic.transfers_out,
                transfers_failed=traffic.transfers_failed,
                transfers_in=traffic.transfers_in,
                items_out=dict(traffic.items_out),
                items_in=dict(traffic.items_in),
                bytes_out=traffic.bytes_out,
                bytes_in=traffic.bytes_in,
                oldest_ms=forwarder.oldest_ms,
            )
        context = self._context
        return NodeMetrics(
            links=links,
            inbox_oldest_ms=self._inbox.oldest_handed_ms(),
            custody=context.custody.snapshot(),
            refusals=context.refusal_counts.snapshot(),
            counters=dict(context.counters),
        )

    async def stats(self) -> NodeStats:
        store = self.store

        def run() -> tuple[QueueDepth, QueueDepth, dict[str, QueueDepth]]:
            return (
                store.totals(),
                store.inbox_depth(),
                {hop: store.queue_depth(hop) for hop in store.next_hops()},
            )

        queued, inbox, outbound = await self._context.run(run)
        forwarders = self._forwarders.values()
        return NodeStats(
            self.name,
            queued,
            inbox,
            outbound,
            {f.hop: f.state for f in forwarders},
            dict(self.counters),
            {f.hop: f.handed_over for f in forwarders if f.handed_over is not None},
            self._refusals.current(),
        )


def _directory_and_services(
    identity: LocalIdentity,
    config: NodeConfig,
    clock: Callable[[], float],
    directory: Directory | None,
    services: Sequence[NodeService],
) -> tuple[Directory, DirectoryService | None, tuple[NodeService, ...]]:
    """Where the node looks keys up, the directory service that runs it (if any), the services.

    No directory given: the node runs the signed directory -- the
    DirectoryService among ``services``, else one made from ``config``.  The
    directory service goes first: its cache is restored before the other
    services start, and it closes last.
    """
    attached = [s for s in services if isinstance(s, DirectoryService)]
    if len(attached) > 1:
        raise UsageError("a node runs one DirectoryService")
    if not attached:
        if directory is not None:
            return directory, None, tuple(services)
        service = DirectoryService.for_node(identity, config, clock)
    else:
        service = attached[0]
        if directory is not None and directory is not service.directory:
            raise UsageError("give a directory or a DirectoryService, not both")
    rest = tuple(s for s in services if s is not service)
    return service.directory, service, (service, *rest)
