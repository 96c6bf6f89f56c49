"""The node: custody, routing, forwarding and delivery around one durable store (I/O edge).

Theory of operation
-------------------
A :class:`Node` is what an integrator embeds and what the daemon runs.  It
composes the pure parts -- routing (``routing``), sealing and verification
(``sealing``), the link protocol (``link``), backoff (``backoff``), reports
(``reports``), node messages (``messages``) -- around a :class:`~exchnode.store.Store`
and the aiohttp transport (``transport``).

**Custody in.**  Items arrive from neighbours (``LinkServer`` calls
:meth:`_custody`) and from the local application (:meth:`send`).  Each
received item is verified as a hub verifies (signature, freshness; never a
payload), checked against the neighbour's place (``Router.accept``) and
routed.  All items that arrived while the previous commit ran go to the
store in *one* transaction (``batcher.Batcher``: group commit).  Only when
that transaction has returned is an item answered TAKEN.  A full node
answers DEFERRED and grants no credit: back-pressure, nothing dropped.

**The store thread.**  Every store call runs in one dedicated worker
thread, in submission order, so the event loop never waits on a disk.

**Custody out.**  One forwarder task per neighbour takes the oldest entries
of that neighbour's queue (within the credit it last granted), transfers
them, and removes exactly those answered TAKEN (``store.forwarded``).  A
refusal ends the item with a non-delivery report to its sender; a failure
to connect backs off (persisted, jittered) until the neighbour is due again
-- or until it reaches *us*, which proves it is back and makes it due at
once.  A forwarder sleeps on an event set when its queue gains entries, so
a partition heals without waiting for new traffic.

**Delivery.**  An inbox pump opens inbox entries (``Opener`` without a
replay window: the store's dedup record is the persisted window) and hands
application messages to :meth:`deliveries`.  An entry leaves the inbox when
the application acknowledges it; a receipt, if the sender asked for one, is
signed and sent back in the same step.  Receipts and non-delivery reports
for this node's own messages are consumed by the node and recorded, in the
store, as the message's :class:`~exchnode.aio.DeliveryStatus`.

**Expiry.**  A timer takes expired entries out of every queue and reports
each to its sender (never a report on a report).

Crash safety follows from the store's contract: nothing is acknowledged
before it is durable, nothing is removed before the next hop or the
application has acknowledged it, and dedup at every hop turns the repeats a
crash causes into no-ops.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import structlog
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from exchnode.aio._batcher import Batcher
from exchnode.aio._config import NodeLimits, NodeTimers, Peer
from exchnode.aio._delivery import Delivery, DeliveryStatus, Message, Sent
from exchnode.aio._service import CustodyLog, NodeService, ServiceMessage
from exchnode.aio._tls import TlsFiles, make_context
from exchnode.aio._transport import Handler, LinkClient, LinkError, LinkServer
from exchnode.aio._waiting import wait_event
from exchnode.audit import AuditEntry, CustodyRecorder
from exchnode.core import (
    NDR_KIND,
    NDR_TTL,
    RECEIPT_CONTENT_TYPE,
    RECEIPT_KIND,
    RESERVED_KINDS,
    Directory,
    Envelope,
    LocalIdentity,
    Opened,
    Opener,
    OpenPolicy,
    Outgoing,
    PeerIdentity,
    ReceiptVerifier,
    SealedEnvelope,
    Sealer,
    SealPolicy,
    decode_app_message,
    decode_envelope,
    decode_ndr,
    decode_receipt_bundle,
    encode_app_message,
    encode_receipt_bundle,
    issue_receipts,
    ndr_outgoing,
    pack,
    unpack,
)
from exchnode.errors import (
    DecryptionError,
    DirectoryExpiredError,
    ExchnodeError,
    MalformedError,
    RejectedError,
    RoutingRefusedError,
    UnknownSignerError,
    UsageError,
)
from exchnode.federation import (
    DEFAULT_BACKOFF,
    BackoffPolicy,
    Credit,
    Item,
    ItemResult,
    NodeDirectory,
    Relation,
    Route,
    Router,
    Status,
    TransferRequest,
    TransferResponse,
    came_back,
    due,
    failed,
    succeeded,
    verify_snapshot,
)
from exchnode.pki import TrustStore, verify_node_certificate
from exchnode.store import (
    AcceptItem,
    AcceptOutcome,
    AcceptStatus,
    AuditRow,
    ExpiredEntry,
    InboundEntry,
    OutboundEntry,
    PeerState,
    QueueDepth,
    SqliteStore,
    Store,
)

__all__ = ["Node", "NodeStats"]

T = TypeVar("T")

_AUTH_CACHE_SECONDS = 60.0
_STATUS_PREFIX = "status:"
_DIRECTORY_KEY = "directory"
_VERIFIED_CACHE = 8192  # envelopes verified on arrival, awaiting the inbox pump
DIRECTORY_PATH = "/exchnode/v1/directory"
DIRECTORY_CHANGED_PATH = "/exchnode/v1/directory/changed"
DIRECTORY_CONTENT_TYPE = "application/vnd.exchnode.core+msgpack"
# Failures that time cures: the directory has not converged yet, or a cache is being refreshed.
# A custodian defers these (the previous hop retries) instead of refusing them for good.
_TEMPORARY = (UnknownSignerError, DirectoryExpiredError)
_SHA256 = hashes.SHA256()


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


class Node:
    """One exchange node.  Use as an async context manager (``async with Node(...) as node``)."""

    def __init__(
        self,
        *,
        identity: LocalIdentity,
        store: Store | str | os.PathLike[str],
        tls: TlsFiles,
        trust: TrustStore,
        ca_bundle: Sequence[x509.Certificate] = (),
        peers: Iterable[Peer] = (),
        listen: tuple[str, int] | None = ("127.0.0.1", 0),
        limits: NodeLimits | None = None,
        timers: NodeTimers | None = None,
        backoff: BackoffPolicy = DEFAULT_BACKOFF,
        seal_policy: SealPolicy | None = None,
        open_policy: OpenPolicy | None = None,
        clock: Callable[[], float] = time.time,
        random: Callable[[int], bytes] = os.urandom,
        directory: Directory | None = None,
        advertise: str | None = None,
        services: Sequence[NodeService] = (),
    ) -> None:
        """``directory``: where keys come from.  None (the default) runs the federation's
        signed node directory (``node_directory``), pulled from and served to every
        neighbour; pass a ``StaticDirectory`` for a closed setup.  ``advertise``: the URL
        this node publishes in the directory (default: from ``listen``).  ``services``:
        capabilities attached to the node (``node_service``), such as the catalog.
        """
        self.identity = identity
        self.name = str(identity.name)
        self._store_arg = store
        self._store: Store | None = None
        self._tls = tls
        self._trust = trust
        self._ca_bundle = tuple(ca_bundle)
        self._peers = {peer.name: peer for peer in peers}
        self._services = tuple(services)
        self._service_for: dict[str, NodeService] = {}
        for service in self._services:
            for kind in service.kinds:
                if kind in RESERVED_KINDS or kind in self._service_for:
                    raise UsageError(f"message kind {kind!r} is already taken")
                self._service_for[kind] = service
        self.router = Router(identity.name, [peer.neighbour for peer in self._peers.values()])
        self._listen = listen
        self.node_directory: NodeDirectory | None = None
        if directory is None:
            if advertise is None and listen is not None and listen[1]:
                advertise = f"https://{listen[0]}:{listen[1]}"
            self.node_directory = NodeDirectory(
                identity,
                clock=clock,
                address=advertise or "",
                neighbours=[peer.neighbour for peer in self._peers.values()],
            )
            directory = self.node_directory
        self.directory: Directory = directory
        self.limits = limits or NodeLimits()
        self.timers = timers or NodeTimers()
        self._backoff = backoff
        self._clock = clock
        self._random = random
        self._sealer = Sealer(identity, directory, seal_policy, random)
        self._opener = Opener(identity, directory, open_policy, replay=None)
        # One verifier for custody and opening: one cache of authenticated batches.
        self._verifier = self._opener.verifier
        # Envelopes verified on arrival and waiting in the inbox: opened without a second parse.
        self._verified: OrderedDict[tuple[str, bytes], tuple[Envelope, PeerIdentity]] = (
            OrderedDict()
        )
        self._receipts = ReceiptVerifier(directory)
        self._custody_log: CustodyLog | None = None
        self._recorder = CustodyRecorder(self.name)
        self.log = structlog.get_logger("exchnode.aio").bind(node=self.name)

        self._executor: ThreadPoolExecutor | None = None
        self._server: LinkServer | None = None
        self._clients: dict[str, LinkClient] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._wakes: dict[str, asyncio.Event] = {name: asyncio.Event() for name in self._peers}
        self._peer_states: dict[str, PeerState] = {}
        self._ready = asyncio.Event()
        self._handed_over: dict[str, QueueDepth] = {}
        self._inbox_wake = asyncio.Event()
        self._space = asyncio.Event()
        self._queued = QueueDepth()
        self._uncommitted = [0, 0]
        self._auth_cache: dict[bytes, tuple[str, float]] = {}
        self._deliveries: asyncio.Queue[Delivery | None] = asyncio.Queue(
            self.limits.deliveries_buffered
        )
        self._handed: set[int] = set()
        self._status_waiters: dict[bytes, list[asyncio.Event]] = {}
        self._consuming = False
        self._closing = False
        self._contexts: list[Any] = []
        self._crls_applied: set[bytes] = set()
        self._directory_wake = asyncio.Event()
        self._directory_changed_event = asyncio.Event()
        self._pull_requests: set[str] = set()
        self._signed: tuple[float, bytes] | None = None
        self._rescan_inbox = False
        self.address: tuple[str, int] | None = None
        self.counters: dict[str, int] = {
            "accepted": 0,
            "duplicates": 0,
            "refused": 0,
            "deferred": 0,
            "forwarded": 0,
            "delivered": 0,
            "reports_sent": 0,
            "receipts_sent": 0,
            "link_failures": 0,
        }
        self._commits: Batcher[AcceptItem, AcceptOutcome] = Batcher(
            self._commit, max_items=4 * self.limits.transfer_items
        )
        self._sends: Batcher[Message, Sent | ExchnodeError] = Batcher(
            self._seal_and_commit, max_items=self._sealer.policy.max_batch
        )
        self._acks: Batcher[Delivery, None] = Batcher(self._acknowledge, max_items=1024)

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
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"store-{self.name}")
        store = self._store_arg
        if isinstance(store, str | os.PathLike):
            path = Path(store)
            self._store = await self._db(SqliteStore, path)
        else:
            self._store = store
        self._queued = await self._db(self._store.totals)
        for name in self._peers:
            self._peer_states[name] = await self._db(self._store.peer_state, name)
        await self._restore_directory()
        for service in self._services:
            await service.start(self)
        client_context = make_context(self._tls, server=False)
        self._contexts.append(client_context)
        for peer in self._peers.values():
            self._clients[peer.name] = LinkClient(
                peer.name,
                peer.url,
                client_context,
                self._authenticate,
                timeout=self.timers.link_timeout,
            )
        for batcher in (self._commits, self._sends, self._acks):
            batcher.start()
        if self._listen is not None:
            server_context = make_context(self._tls, server=True)
            self._contexts.append(server_context)
            routes: dict[tuple[str, str], Handler] = {}
            if self.node_directory is not None:
                routes[("GET", DIRECTORY_PATH)] = self._serve_directory
                routes[("POST", DIRECTORY_CHANGED_PATH)] = self._directory_announced
            for service in self._services:
                for key, handler in service.routes().items():
                    if key in routes:
                        raise UsageError(f"endpoint {key[0]} {key[1]} is already served")
                    routes[key] = handler
            self._server = LinkServer(
                self._custody,
                self._authenticate,
                server_context,
                host=self._listen[0],
                port=self._listen[1],
                max_transfer_bytes=self.limits.max_transfer_bytes,
                on_hello=self._hello_from,
                routes=routes,
            )
            self.address = await self._server.start()
        loop = asyncio.get_running_loop()
        for name in self._peers:
            self._run_task(partial(self._forward, name), f"forward-{name}")
        self._tasks.append(loop.create_task(self._greet(), name="hello"))
        if self.node_directory is not None:
            self._run_task(self._sync_directory, "directory")
        self._run_task(self._pump_inbox, "inbox")
        self._run_task(self._expire, "expiry")
        self._ready.set()
        self.log.info("node started", url=self.url if self.address else None)

    def _run_task(self, work: Callable[[], Awaitable[None]], name: str) -> None:
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

        self._tasks.append(asyncio.get_running_loop().create_task(supervise(), name=name))

    async def close(self) -> None:
        """Drain and stop: refuse new transfers, finish the commits under way, stop the tasks.

        Whatever is queued stays in the store for the next start.
        """
        if self._closing:
            return
        self._closing = True
        started = self._executor is not None
        if started:
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
        for batcher in (self._sends, self._acks, self._commits):
            await batcher.close()
        if self._custody_log is not None and started:
            try:
                await self._custody_log.drained()  # nothing moves now: a last signed head
            except Exception:
                self.log.exception("audit log not drained cleanly")
        if self._server is not None:
            await self._server.close()
        for client in self._clients.values():
            await client.close()
        with contextlib.suppress(asyncio.QueueFull):
            self._deliveries.put_nowait(None)
        if self._store is not None and self._store is not self._store_arg:
            await self._db(self._store.close)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if started:
            self.log.info("node stopped")

    # --- the store thread -------------------------------------------------------------

    async def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a store call in the store thread, after every call submitted before it."""
        if self._executor is None:
            raise UsageError(f"node {self.name} is not running")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(fn, *args, **kwargs))

    @property
    def store(self) -> Store:
        if self._store is None:
            raise UsageError(f"node {self.name} is not running")
        return self._store

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _refresh_totals(self) -> None:
        """Run in the store thread after a change; the loop reads ``_queued`` without waiting."""
        self._queued = self.store.totals()

    def _has_room(self, count: int, size: int) -> bool:
        limits = self.limits
        return (
            self._queued.count + self._uncommitted[0] + count <= limits.max_queued_items
            and self._queued.bytes + self._uncommitted[1] + size <= limits.max_queued_bytes
        )

    def _credit(self) -> Credit:
        limits = self.limits
        items = limits.max_queued_items - self._queued.count - self._uncommitted[0]
        size = limits.max_queued_bytes - self._queued.bytes - self._uncommitted[1]
        return Credit(
            max(0, min(items, limits.transfer_items)), max(0, min(size, limits.transfer_bytes))
        )

    async def _commit(self, items: list[AcceptItem]) -> list[AcceptOutcome]:
        """One transaction for everything that arrived since the last one (group commit)."""
        now_ms = self._now_ms()

        def run(log: CustodyLog | None) -> list[AcceptOutcome]:
            if log is None:
                outcomes = self.store.accept(items, now_ms)
            else:
                outcomes = self.store.accept(
                    items,
                    now_ms,
                    audit=lambda found: log.encode(self._recorder.accepted(now_ms, items, found)),
                )
            self._refresh_totals()
            return outcomes

        outcomes: list[AcceptOutcome] = await self._db(self._audited, run)
        for outcome in outcomes:
            if outcome.status is AcceptStatus.ACCEPTED:
                self.counters["accepted"] += 1
                for hop in outcome.forward:
                    self._wakes[hop].set()
                if outcome.local:
                    self._inbox_wake.set()
            elif outcome.status is AcceptStatus.DUPLICATE:
                self.counters["duplicates"] += 1
        return outcomes

    # --- the audit log's custody records ---------------------------------------------

    def attach_custody_log(self, log: CustodyLog) -> None:
        """Record every custody change in ``log``, inside the store transaction that makes it.

        The audit service calls this from its ``start``, before the node takes
        or moves anything; one log per node.
        """
        if self._custody_log is not None and self._custody_log is not log:
            raise UsageError(f"{self.name} already has a custody log")
        self._custody_log = log

    def _audited(self, call: Callable[[CustodyLog | None], T]) -> T:
        """Run a store call that may log custody (store thread); undo the log's part on failure."""
        log = self._custody_log
        if log is None:
            return call(None)
        mark = log.mark()
        try:
            return call(log)
        except BaseException:
            log.rollback(mark)
            raise

    def _log_entries(self, entries: list[AuditEntry]) -> None:
        """Records of no custody change (refusals, links): buffered by the audit log."""
        log = self._custody_log
        if log is not None:
            for entry in entries:
                log.append_entry(entry)

    # --- peers ----------------------------------------------------------------------

    def _authenticate(self, certificate: x509.Certificate) -> str:
        """The peer's node name, from its certificate verified with the name constraints."""
        fingerprint = certificate.fingerprint(_SHA256)
        now = self._clock()
        cached = self._auth_cache.get(fingerprint)
        if cached is not None and now - cached[1] < _AUTH_CACHE_SECONDS:
            return cached[0]
        moment = datetime.fromtimestamp(now, UTC)
        peer = verify_node_certificate(certificate, self._ca_bundle, self._trust, moment)
        name = str(peer.name)
        if len(self._auth_cache) > 1024:
            self._auth_cache.clear()
        self._auth_cache[fingerprint] = (name, now)
        return name

    def _set_peer_state(self, name: str, state: PeerState) -> None:
        previous = self._peer_states.get(name)
        self._peer_states[name] = state
        if previous is None or (previous.failures, previous.next_attempt_ms) != (
            state.failures,
            state.next_attempt_ms,
        ):
            # Persist only transitions: a write per transfer would cost a flush each.
            asyncio.get_running_loop().create_task(self._db(self.store.set_peer_state, name, state))

    def _hello_from(self, neighbour: str) -> None:
        if neighbour in self._peers:
            self.log.info("neighbour says hello", neighbour=neighbour)
            self.poke(neighbour)

    async def _greet(self) -> None:
        """Tell every neighbour this node is up, so that each serves its queue for us now.

        Without it a neighbour that backed off while we were down would wait
        out its backoff (minutes) before catching up.
        """

        async def greet(name: str) -> None:
            try:
                await self._clients[name].hello()
            except ExchnodeError as exc:
                self.log.info("neighbour not reachable yet", neighbour=name, error=str(exc))
                return
            self.poke(name)

        await asyncio.gather(*(greet(name) for name in self._clients))

    def poke(self, name: str) -> None:
        """Treat ``name`` as reachable now: try its queue at once (an operator's "retry now")."""
        if name not in self._peers:
            raise UsageError(f"{name} is not a neighbour of {self.name}")
        state = self._peer_states.get(name, PeerState())
        self._set_peer_state(name, came_back(state, self._now_ms()))
        self._wakes[name].set()

    # --- custody in: from neighbours ----------------------------------------------------

    async def _custody(self, neighbour: str, request: TransferRequest) -> TransferResponse:
        """Decide every item of a transfer; TAKEN only once the store holds it."""
        if neighbour not in self._peers:
            self.log.warning("transfer refused", neighbour=neighbour, code="routing-refused")
            refusal = ItemResult(
                Status.REFUSED, "routing-refused", f"{neighbour} is not a neighbour of {self.name}"
            )
            self.counters["refused"] += len(request.items)
            self._log_entries(
                self._recorder.refused(
                    self._now_ms(),
                    neighbour,
                    [("routing-refused", _peek_id(item.envelope)) for item in request.items],
                )
            )
            return TransferResponse(
                request.transfer_id, tuple(refusal for _ in request.items), Credit(0, 0)
            )
        state = self._peer_states.get(neighbour)
        if state is not None and state.failures:
            # It reached us, so it is up: serve its queue now, not after the backoff.
            self.poke(neighbour)
        now = self._clock()
        results: list[ItemResult] = [ItemResult(Status.DEFERRED)] * len(request.items)
        items: list[AcceptItem] = []
        positions: list[int] = []
        refusals: list[tuple[str, bytes | None]] = []
        count, size = 0, 0
        for position, item in enumerate(request.items):
            if not self._has_room(count + 1, size + len(item.envelope)):
                self.counters["deferred"] += 1
                continue  # DEFERRED: the sender keeps it and slows down
            try:
                accept_item = self._check_item(neighbour, item, now)
            except _TEMPORARY as exc:
                self.counters["deferred"] += 1
                self.log.info("item deferred", neighbour=neighbour, code=exc.code, reason=str(exc))
                continue
            except RejectedError as exc:
                results[position] = ItemResult(Status.REFUSED, exc.code, str(exc))
                refusals.append((exc.code, _peek_id(item.envelope)))
                self.counters["refused"] += 1
                self.log.warning(
                    "item refused", neighbour=neighbour, code=exc.code, reason=str(exc)
                )
                continue
            items.append(accept_item)
            positions.append(position)
            count += 1
            size += len(item.envelope)
        if refusals:
            self._log_entries(self._recorder.refused(self._now_ms(), neighbour, refusals))
        if items:
            self._uncommitted[0] += count
            self._uncommitted[1] += size
            try:
                outcomes = await self._commits.submit(items)
            finally:
                self._uncommitted[0] -= count
                self._uncommitted[1] -= size
            for position, outcome in zip(positions, outcomes, strict=True):
                results[position] = _answer(outcome)
        return TransferResponse(request.transfer_id, tuple(results), self._credit())

    def _check_item(self, neighbour: str, item: Item, now: float) -> AcceptItem:
        envelope, signer = self._verifier.verify_sender(item.envelope, now)
        header = envelope.header
        relation = self.router.accept(
            neighbour, header.sender, header.recipient_names, item.targets
        )
        route = self.router.route(item.targets, came_from=relation)
        if route.unroutable:
            raise RoutingRefusedError(f"{self.name} has no route to {', '.join(route.unroutable)}")
        if route.local:
            self._remember_verified(envelope, signer)
        return AcceptItem.from_route(
            sender=header.sender,
            message_id=header.message_id,
            digest=envelope.digest,
            data=item.envelope,
            expires_ms=header.expires_ms,
            route=route,
            came_from=neighbour,
        )

    # --- custody in: from the application ------------------------------------------------

    async def send(
        self,
        recipients: Sequence[str],
        payload: bytes,
        *,
        kind: str = "data",
        content_type: str = "application/octet-stream",
        ttl: float | None = None,
        receipt: bool = False,
    ) -> Sent:
        """Seal ``payload`` to ``recipients`` and take it into custody.

        Returns once the envelope is durably stored here; the node then
        delivers it however long the way takes, until it expires.  Raises
        :class:`UsageError` for a recipient that is unknown or unroutable.
        """
        message = Message(
            recipients=recipients,
            payload=payload,
            kind=kind,
            content_type=content_type,
            ttl=ttl,
            receipt=receipt,
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
        results = await self._sends.submit(list(messages))
        sent: list[Sent] = []
        for result in results:
            if isinstance(result, ExchnodeError):
                raise result
            sent.append(result)
        return sent

    async def _wait_for_room(self, count: int, size: int) -> None:
        while not self._has_room(count, size) and self._queued.count:
            # Back-pressure reaches the application too: wait for the queues to drain.
            self._space.clear()
            await wait_event(self._space, 0.5)

    def _prepare(self, message: Message) -> tuple[Outgoing, Route]:
        """Check a message before sealing it; its route is kept for the commit."""
        recipients = tuple(dict.fromkeys(message.recipients))
        if not recipients:
            raise UsageError("a message needs at least one recipient")
        route = self.router.route(recipients)
        if route.unroutable:
            raise UsageError(
                f"{self.name} has no route to {', '.join(route.unroutable)}: "
                "not in its scope and no parent or link leads there"
            )
        for recipient in recipients:
            self.directory.recipient(recipient)  # unknown or expired: fail before sealing
        outgoing = Outgoing(
            recipients,
            encode_app_message(message.payload, want_receipt=message.receipt),
            kind=message.kind,
            content_type=message.content_type,
            ttl=message.ttl,
        )
        return outgoing, route

    def _own_item(self, envelope: SealedEnvelope, route: Route) -> AcceptItem:
        """An envelope this node sealed, offered to its own store like any arrival."""
        return AcceptItem.from_route(
            sender=self.name,
            message_id=envelope.message_id,
            digest=envelope.digest,
            data=envelope.data,
            expires_ms=envelope.expires_ms,
            route=route,
        )

    async def _seal_and_commit(self, messages: list[Message]) -> list[Sent | ExchnodeError]:
        results: list[Sent | ExchnodeError | None] = [None] * len(messages)
        ready: list[tuple[int, Outgoing, Route]] = []
        for index, message in enumerate(messages):
            try:
                ready.append((index, *self._prepare(message)))
            except ExchnodeError as exc:
                results[index] = exc
        sealed = self._seal_each(ready, results)
        if sealed:
            outcomes = await self._commits.submit(
                [self._own_item(envelope, route) for _, envelope, route in sealed]
            )
            for (index, envelope, _), outcome in zip(sealed, outcomes, strict=True):
                if outcome.acknowledge:
                    results[index] = Sent(
                        envelope.message_id,
                        envelope.digest,
                        envelope.recipients,
                        envelope.expires_ms,
                    )
                else:  # pragma: no cover - fresh ids do not collide or expire at once
                    results[index] = UsageError(f"the store refused the message: {outcome.status}")
        return [r if r is not None else UsageError("not sealed") for r in results]

    def _seal_each(
        self,
        ready: list[tuple[int, Outgoing, Route]],
        results: list[Sent | ExchnodeError | None],
    ) -> list[tuple[int, SealedEnvelope, Route]]:
        """Seal as one batch; if the batch fails, one by one to find the culprits."""
        if not ready:
            return []
        now = self._clock()
        try:
            envelopes = self._sealer.seal_batch([outgoing for _, outgoing, _ in ready], now)
            return [
                (index, envelope, route)
                for (index, _, route), envelope in zip(ready, envelopes, strict=True)
            ]
        except ExchnodeError:
            sealed = []
            for index, outgoing, route in ready:
                try:
                    sealed.append((index, self._sealer.seal(outgoing, now), route))
                except ExchnodeError as exc:
                    results[index] = exc
            return sealed

    # --- custody out: forwarding to neighbours ---------------------------------------------

    async def _forward(self, hop: str) -> None:
        client = self._clients[hop]
        wake = self._wakes[hop]
        credit = Credit(self.limits.transfer_items, self.limits.transfer_bytes)
        pause = self.timers.deferred_pause
        while True:
            state = self._peer_states.get(hop, PeerState())
            now_ms = self._now_ms()
            if not due(state, now_ms):
                await _wait(wake, (state.next_attempt_ms - now_ms) / 1000)
                continue
            wake.clear()
            entries: list[OutboundEntry] = await self._db(
                self.store.pending, hop, now_ms, max(credit.items, 1), max(credit.bytes, 1)
            )
            if not entries:
                await wake.wait()
                continue
            request = TransferRequest(
                self.name,
                self._random(16),
                tuple(Item(entry.data, entry.targets) for entry in entries),
            )
            try:
                response = await client.transfer(request)
            except (LinkError, ExchnodeError) as exc:
                self.counters["link_failures"] += 1
                new_state = failed(state, now_ms, self._random, self._backoff)
                if not state.failures:  # it worked (or was never tried): now it is down
                    self._log_entries([self._recorder.link(now_ms, hop, up=False, failures=1)])
                self._set_peer_state(hop, new_state)
                self.log.warning(
                    "link failed",
                    neighbour=hop,
                    error=str(exc),
                    failures=new_state.failures,
                    retry_in_ms=new_state.next_attempt_ms - now_ms,
                )
                continue
            if state.failures or state.last_ok_ms is None:
                if state.failures:
                    self.log.info("link restored", neighbour=hop, after_failures=state.failures)
                self._log_entries(
                    [self._recorder.link(now_ms, hop, up=True, failures=state.failures)]
                )
                self._set_peer_state(hop, succeeded(state, now_ms))
            await self._settle(hop, entries, response)
            credit = response.credit
            if not any(r.status is Status.TAKEN for r in response.results) and any(
                r.status is Status.DEFERRED for r in response.results
            ):
                await _wait(wake, pause)  # the neighbour is full: slow down
                pause = min(pause * 2, self.timers.deferred_pause_max)
            else:
                pause = self.timers.deferred_pause

    async def _settle(
        self, hop: str, entries: list[OutboundEntry], response: TransferResponse
    ) -> None:
        """Forget what the neighbour took; report what it refused for good."""
        done: list[int] = []
        refused: list[tuple[OutboundEntry, ItemResult]] = []
        taken_ids: list[bytes] = []  # for the relay's audit record
        taken_bytes = 0
        for entry, result in zip(entries, response.results, strict=True):
            if result.status is Status.TAKEN:
                done.append(entry.seq)
                taken_ids.append(entry.message_id)
                taken_bytes += len(entry.data)
            elif result.status is Status.REFUSED:
                refused.append((entry, result))
                done.append(entry.seq)
        if refused:
            self.log.warning(
                "neighbour refused items",
                neighbour=hop,
                count=len(refused),
                codes=sorted({r.code for _, r in refused}),
            )
            await self._report(
                [
                    (entry.sender, entry.message_id, entry.digest, entry.targets, entry.data)
                    for entry, _ in refused
                ],
                [(result.code, f"{hop} refused it: {result.reason}") for _, result in refused],
            )
        before = self._handed_over.get(hop, QueueDepth(0, 0))
        self._handed_over[hop] = QueueDepth(
            before.count + len(taken_ids), before.bytes + taken_bytes
        )
        if done:
            now_ms = self._now_ms()
            refused_ids = [(result.code, entry.message_id) for entry, result in refused]

            def run(log: CustodyLog | None) -> int:
                records: list[AuditRow] = []
                if log is not None:
                    records = log.encode(
                        self._recorder.relayed(now_ms, hop, taken_ids, refused_ids)
                    )
                removed = self.store.forwarded(hop, done, audit=records)
                self._refresh_totals()
                return removed

            self.counters["forwarded"] += await self._db(self._audited, run)
            self._space.set()

    # --- non-delivery reports ----------------------------------------------------------

    async def _report(
        self,
        lost: list[tuple[str, bytes, bytes, tuple[str, ...], bytes]],
        reasons: list[tuple[str, str]],
    ) -> None:
        """Tell each lost envelope's sender; never report on a report or a receipt."""
        now = self._clock()
        outgoing: list[Outgoing] = []
        for (sender, message_id, digest, targets, data), (code, reason) in zip(
            lost, reasons, strict=True
        ):
            try:
                kind = decode_envelope(data).header.kind
            except RejectedError:  # pragma: no cover - it was verified on the way in
                kind = NDR_KIND
            if kind in RESERVED_KINDS:
                continue
            item = ndr_outgoing(
                sender=sender,
                message_id=message_id,
                digest=digest,
                targets=targets,
                code=code,
                reason=reason,
                reporter=self.name,
                now=now,
            )
            if sender == self.name:
                await self._record_status(message_id, ndr=item.payload)
                continue
            try:
                self.directory.recipient(sender)
                route = self.router.route([sender])
            except ExchnodeError as exc:
                self.log.warning("report not sent", sender=sender, error=str(exc))
                continue
            if route.unroutable:
                self.log.warning("report not sent", sender=sender, error="no route")
                continue
            outgoing.append(item)
        if not outgoing:
            return
        envelopes = self._sealer.seal_batch(outgoing, now)
        items = [
            self._own_item(envelope, self.router.route(item.recipients))
            for envelope, item in zip(envelopes, outgoing, strict=True)
        ]
        await self._commits.submit(items)
        self.counters["reports_sent"] += len(items)

    async def _expire(self) -> None:
        while True:
            await asyncio.sleep(self.timers.expiry_interval)
            now_ms = self._now_ms()

            def run(log: CustodyLog | None, now_ms: int = now_ms) -> list[ExpiredEntry]:
                expired = self.store.take_expired(
                    now_ms,
                    1000,
                    audit=None
                    if log is None
                    else lambda found: log.encode(self._recorder.expired(now_ms, found)),
                )
                self.store.prune(now_ms)
                self._refresh_totals()
                return expired

            expired = await self._db(self._audited, run)
            if not expired:
                continue
            self.log.info("expired", count=len(expired))
            await self._report(
                [(e.sender, e.message_id, e.digest, e.targets, e.data) for e in expired],
                [
                    (
                        "expired-in-queue",
                        f"expired at {self.name} waiting for "
                        + (e.next_hop if e.next_hop else "the recipient's application"),
                    )
                    for e in expired
                ],
            )
            self._space.set()

    # --- delivery to the application ---------------------------------------------------

    async def deliveries(self) -> AsyncIterator[Delivery]:
        """Messages for this node's application, oldest first; acknowledge each with ``ack``.

        One consumer at a time.  Ends when the node closes.
        """
        if self._consuming:
            raise UsageError("deliveries() already has a consumer")
        self._consuming = True
        try:
            while True:
                delivery = await self._deliveries.get()
                if delivery is None:
                    return
                yield delivery
        finally:
            self._consuming = False

    async def ack(self, deliveries: Iterable[Delivery]) -> None:
        """Acknowledge deliveries: they leave the inbox, and receipts go out where asked."""
        batch = list(deliveries)
        for delivery in batch:
            if not isinstance(delivery, Delivery):
                raise UsageError(f"ack takes Delivery values, got {type(delivery).__name__}")
        await self._acks.submit(batch)

    async def _ack_one(self, delivery: Delivery) -> None:
        await self._acks.submit([delivery])

    async def _acknowledge(self, batch: list[Delivery]) -> list[None]:
        fresh = [d for d in batch if d.seq in self._handed]
        now = self._clock()
        wanting = [d for d in fresh if d.receipt_requested]
        if wanting:
            await self._send_receipts([d.opened for d in wanting], now)
        seqs = [d.seq for d in fresh]
        if seqs:
            now_ms = self._now_ms()
            ids = [d.message_id for d in fresh]
            remove = partial(
                self._remove_delivered, seqs=seqs, ids=ids, now_ms=now_ms, consumed=False
            )
            self.counters["delivered"] += await self._db(self._audited, remove)
            self._handed.difference_update(seqs)
            self._space.set()
        return [None] * len(batch)

    def _remove_delivered(
        self,
        log: CustodyLog | None,
        seqs: list[int],
        ids: list[bytes],
        now_ms: int,
        consumed: bool,
    ) -> int:
        """Inbox entries done with (store thread), with their record in the same transaction."""
        records = (
            []
            if log is None
            else log.encode(self._recorder.delivered(now_ms, ids, consumed=consumed))
        )
        removed = self.store.delivered(seqs, audit=records)
        self._refresh_totals()
        return removed

    async def _send_receipts(self, opened: list[Opened], now: float) -> None:
        signed = issue_receipts(self.identity, opened, now)
        by_sender: dict[str, list[bytes]] = {}
        for item, receipt in zip(opened, signed, strict=True):
            by_sender.setdefault(item.header.sender, []).append(receipt)
        outgoing = []
        for sender, receipts in by_sender.items():
            if sender == self.name:
                for receipt in receipts:
                    await self._take_receipt(receipt)
                continue
            outgoing.append(
                Outgoing(
                    [sender],
                    encode_receipt_bundle(receipts),
                    kind=RECEIPT_KIND,
                    content_type=RECEIPT_CONTENT_TYPE,
                    ttl=NDR_TTL,
                )
            )
        if not outgoing:
            return
        envelopes = self._sealer.seal_batch(outgoing, now)
        items = []
        for envelope, bundle in zip(envelopes, outgoing, strict=True):
            route = self.router.route(bundle.recipients)
            if route.unroutable:
                self.log.warning("receipt not sent", sender=bundle.recipients[0], error="no route")
                continue
            items.append(self._own_item(envelope, route))
        if items:
            await self._commits.submit(items)
            self.counters["receipts_sent"] += len(items)

    async def _pump_inbox(self) -> None:
        """Open inbox entries; hand application messages over, consume the node's own."""
        after = 0
        last_scan = self._clock()
        while True:
            if self._rescan_inbox or self._clock() - last_scan >= self.timers.inbox_rescan:
                # Retry what could not be opened yet (e.g. its signer was not known).
                after, last_scan, self._rescan_inbox = 0, self._clock(), False
            self._inbox_wake.clear()
            entries: list[InboundEntry] = await self._db(
                self.store.inbox, self._now_ms(), 256, after=after
            )
            if not entries:
                await _wait(self._inbox_wake, self.timers.inbox_rescan)
                continue
            consumed: list[int] = []
            ids: list[bytes] = []
            for entry in entries:
                after = entry.seq
                if entry.seq in self._handed:
                    continue
                done = await self._open_entry(entry)
                if done:
                    consumed.append(entry.seq)
                    ids.append(entry.message_id)
            if consumed:
                remove = partial(
                    self._remove_delivered,
                    seqs=consumed,
                    ids=ids,
                    now_ms=self._now_ms(),
                    consumed=True,
                )
                await self._db(self._audited, remove)

    def _remember_verified(self, envelope: Envelope, signer: PeerIdentity) -> None:
        verified = self._verified
        verified[(envelope.header.sender, envelope.header.message_id)] = (envelope, signer)
        if len(verified) > _VERIFIED_CACHE:
            verified.popitem(last=False)

    def _open(self, entry: InboundEntry, now: float) -> Opened:
        """Open an inbox entry, reusing its verification on arrival when it is still at hand.

        The cached envelope is used only for the very bytes stored (same
        digest); after a restart, or once it has left the cache, the entry is
        parsed and verified again from the store.
        """
        cached = self._verified.pop((entry.sender, entry.message_id), None)
        if cached is not None and cached[0].digest == entry.digest:
            return self._opener.open_verified(cached[0], cached[1], now)
        return self._opener.open(entry.data, now)

    async def _open_entry(self, entry: InboundEntry) -> bool:
        """Handle one inbox entry; True if the node consumed it (remove it from the inbox)."""
        now = self._clock()
        try:
            opened = self._open(entry, now)
        except ExchnodeError as exc:
            # Undecryptable or malformed after passing the signature check on the way in: the
            # sender sealed it wrongly and retrying cannot help.  Anything else (an unknown
            # signer, an expired directory) may heal: keep it for the next scan.
            permanent = isinstance(exc, DecryptionError | MalformedError)
            (self.log.error if permanent else self.log.warning)(
                "undeliverable" if permanent else "cannot open yet",
                sender=entry.sender,
                message_id=entry.message_id.hex(),
                code=exc.code,
                reason=str(exc),
            )
            return permanent
        header = opened.header
        service = self._service_for.get(header.kind)
        if service is not None:
            return await self._to_service(service, opened)
        if header.kind == NDR_KIND:
            await self._take_report(opened)
            return True
        if header.kind == RECEIPT_KIND:
            await self._take_receipts(opened)
            return True
        try:
            message = decode_app_message(opened.plaintext)
        except RejectedError as exc:
            self.log.error("undeliverable", sender=header.sender, code=exc.code, reason=str(exc))
            return True
        self._handed.add(entry.seq)
        await self._deliveries.put(
            Delivery(
                sender=header.sender,
                message_id=header.message_id,
                kind=header.kind,
                content_type=header.content_type,
                payload=message.payload,
                created_ms=header.created_ms,
                expires_ms=header.expires_ms,
                receipt_requested=message.want_receipt,
                seq=entry.seq,
                opened=opened,
                _ack=self._ack_one,
            )
        )
        return False

    async def _to_service(self, service: NodeService, opened: Opened) -> bool:
        header = opened.header
        try:
            message = decode_app_message(opened.plaintext)
            await service.take(
                ServiceMessage(
                    sender=header.sender,
                    message_id=header.message_id,
                    kind=header.kind,
                    content_type=header.content_type,
                    payload=message.payload,
                    created_ms=header.created_ms,
                    expires_ms=header.expires_ms,
                )
            )
        except RejectedError as exc:
            # The message itself is wrong: offering it again cannot help.
            self.log.error(
                "service message refused", sender=header.sender, code=exc.code, reason=str(exc)
            )
            return True
        except Exception:
            self.log.exception(
                "service message not taken; kept for the next scan",
                sender=header.sender,
                kind=header.kind,
            )
            return False
        return True

    # --- for services (``node_service``) ------------------------------------------------------

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
        return await self._db(self.store.get_meta, key)

    async def set_meta(self, key: str, value: bytes) -> None:
        """Durably keep ``value`` under ``key`` (returns once committed)."""
        await self._db(self.store.set_meta, key, value)

    async def run_in_store(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a store call in the node's store thread, in order with the node's own."""
        return await self._db(fn, *args)

    def run_task(self, work: Callable[[], Awaitable[None]], name: str) -> None:
        """Run a service's loop for as long as the node runs, restarted after a bug."""
        self._run_task(work, name)

    async def ready(self) -> None:
        """Return once the node is serving (a service's loop may start before that)."""
        await self._ready.wait()

    def now(self) -> float:
        """The node's clock, in seconds since 1970 (a test may pass its own)."""
        return self._clock()

    # --- the node directory ----------------------------------------------------------------

    async def _restore_directory(self) -> None:
        """Work from the cached snapshots at once, before any neighbour answers."""
        directory = self.node_directory
        if directory is None:
            return
        cached = await self._db(self.store.get_meta, _DIRECTORY_KEY)
        if cached is None:
            return
        for outcome in directory.restore(cached, self._trust, self._clock()):
            if outcome.error is not None:
                self.log.warning(
                    "cached directory not used",
                    source=outcome.source,
                    code=outcome.error.code,
                    reason=str(outcome.error),
                )

    def _not_a_neighbour(self, neighbour: str) -> web.Response:
        return web.Response(status=403, text=f"{neighbour} is not a neighbour of {self.name}")

    async def _serve_directory(self, neighbour: str, request: web.Request) -> web.Response:
        directory = self.node_directory
        if directory is None or neighbour not in self._peers:
            return self._not_a_neighbour(neighbour)
        now = self._clock()
        if self._signed is None or now - self._signed[0] >= 1.0:
            self._signed = (now, directory.sign(now, self.timers.directory_lifetime))
        return web.Response(body=self._signed[1], content_type=DIRECTORY_CONTENT_TYPE)

    async def _directory_announced(self, neighbour: str, request: web.Request) -> web.Response:
        if neighbour not in self._peers:
            return self._not_a_neighbour(neighbour)
        self._pull_requests.add(neighbour)
        self._directory_wake.set()
        return web.Response(status=204)

    def _directory_view(self) -> tuple[frozenset[tuple[str, str]], frozenset[bytes]]:
        directory = self.node_directory
        assert directory is not None
        now = self._clock()
        entries = frozenset((e.name, e.address) for e in directory.snapshot_entries(now))
        crls = frozenset(crl.fingerprint(_SHA256) for crl in directory.crls())
        return entries, crls

    async def _pull(self, name: str) -> None:
        directory = self.node_directory
        assert directory is not None
        try:
            data = await self._clients[name].request("GET", DIRECTORY_PATH)
        except ExchnodeError as exc:
            self.log.info("directory not pulled", neighbour=name, error=str(exc))
            return
        now = self._clock()
        try:
            verified = await asyncio.to_thread(
                verify_snapshot,
                data,
                self._trust,
                now,
                name,
                policy=directory.policy,
                wanted=directory.accepts_from(name),
            )
            report = directory.update(name, verified, now)
        except RejectedError as exc:
            self.log.warning("directory refused", neighbour=name, code=exc.code, reason=str(exc))
            self._log_entries(
                [
                    self._recorder.key(
                        self._now_ms(), "directory.refused", subject=name, refused=exc.code
                    )
                ]
            )
            return
        for dropped in report.dropped:
            self._log_entries(
                [
                    self._recorder.key(
                        self._now_ms(),
                        "directory.dropped",
                        subject=dropped.name,
                        refused=dropped.code,
                        peer=name,
                    )
                ]
            )
            self.log.warning(
                "directory entry dropped",
                neighbour=name,
                entry=dropped.name,
                code=dropped.code,
                reason=dropped.reason,
            )

    async def _sync_directory(self) -> None:
        """Pull every neighbour's snapshot now and then, and whoever announces a change at once."""
        first = True
        last_full = 0.0
        while True:
            now = self._clock()
            if first or now - last_full >= self.timers.directory_refresh:
                names, last_full = set(self._peers), now
            else:
                names = set(self._pull_requests)
            self._pull_requests.clear()
            self._directory_wake.clear()
            before = self._directory_view()
            await asyncio.gather(*(self._pull(name) for name in sorted(names)))
            after = self._directory_view()
            if first or after != before:
                await self._directory_changed(before, after, announce=True)
            first = False
            await _wait(self._directory_wake, self.timers.directory_refresh)

    async def _directory_changed(
        self,
        before: tuple[frozenset[tuple[str, str]], frozenset[bytes]],
        after: tuple[frozenset[tuple[str, str]], frozenset[bytes]],
        *,
        announce: bool,
    ) -> None:
        directory = self.node_directory
        assert directory is not None
        self._signed = None
        await self._db(self.store.set_meta, _DIRECTORY_KEY, directory.encode())
        if after[1] != before[1]:
            self._apply_crls(directory.crls())
        added = sorted(name for name, _ in after[0] - before[0])
        if added or after[1] != before[1]:
            self.log.info("directory changed", known=len(after[0]), new=added[:20])
            self._log_entries(
                [self._recorder.key(self._now_ms(), "directory.changed", count=len(added))]
            )
        self._rescan_inbox = True
        self._inbox_wake.set()
        self._directory_changed_event.set()
        self._directory_changed_event = asyncio.Event()
        if announce:

            async def tell(name: str) -> None:
                with contextlib.suppress(ExchnodeError):
                    await self._clients[name].request("POST", DIRECTORY_CHANGED_PATH)

            await asyncio.gather(*(tell(name) for name in self._clients))

    def _apply_crls(self, crls: Sequence[x509.CertificateRevocationList]) -> None:
        """New revocations reach both layers of peer checks: TLS and ``pki_verify``."""
        new = [crl for crl in crls if crl.fingerprint(_SHA256) not in self._crls_applied]
        if not new:
            return
        self._trust = self._trust.with_crls((*self._trust.crls, *new))
        self._auth_cache.clear()
        pem = b"".join(crl.public_bytes(Encoding.PEM) for crl in new)
        with tempfile.NamedTemporaryFile(suffix=".pem") as bundle:
            bundle.write(pem)
            bundle.flush()
            for context in self._contexts:
                # Adds to the live X509 store; OpenSSL prefers the newest CRL of an issuer.
                context.load_verify_locations(cafile=bundle.name)
        self._crls_applied.update(crl.fingerprint(_SHA256) for crl in new)
        self.log.info("revocation lists applied", count=len(new))
        now_ms = self._now_ms()
        self._log_entries(
            [
                self._recorder.key(
                    now_ms,
                    "crl.applied",
                    digest=crl.fingerprint(_SHA256),
                    count=len(list(crl)),
                )
                for crl in new
            ]
        )

    async def add_crls(self, crls: Iterable[x509.CertificateRevocationList]) -> None:
        """Take fresh CRLs from a CA (local configuration) and pass them on to every neighbour."""
        given = list(crls)
        directory = self.node_directory
        if directory is None:
            self._apply_crls(given)
            return
        before = self._directory_view()
        dropped = directory.add_crls(given, self._trust, self._clock())
        for item in dropped:
            self.log.warning("crl not taken", field=item.field, code=item.code, reason=item.reason)
        await self._directory_changed(before, self._directory_view(), announce=True)

    async def wait_known(self, names: Iterable[str], *, timeout: float | None = None) -> None:
        """Wait until this node can seal to every one of ``names`` (the directory has them)."""
        wanted = list(names)

        async def known() -> None:
            while True:
                event = self._directory_changed_event
                missing = []
                for name in wanted:
                    try:
                        self.directory.recipient(name)
                    except ExchnodeError:
                        missing.append(name)
                if not missing:
                    return
                await _wait(event, 0.5)

        await asyncio.wait_for(known(), timeout)

    # --- status of sent messages ----------------------------------------------------------

    async def _take_report(self, opened: Opened) -> None:
        try:
            report = decode_ndr(opened.plaintext)
        except RejectedError as exc:
            self.log.warning("bad report", reporter=opened.header.sender, reason=str(exc))
            return
        if report.reporter != opened.header.sender:
            self.log.warning("report names another reporter", signer=opened.header.sender)
            return
        self.log.warning(
            "non-delivery",
            message_id=report.message_id.hex(),
            reporter=report.reporter,
            code=report.code,
            targets=list(report.targets),
        )
        await self._record_status(report.message_id, ndr=opened.plaintext)

    async def _take_receipts(self, opened: Opened) -> None:
        try:
            receipts = decode_receipt_bundle(opened.plaintext)
        except RejectedError as exc:
            self.log.warning("bad receipts", sender=opened.header.sender, reason=str(exc))
            return
        for data in receipts:
            await self._take_receipt(data, opened.header.sender)

    async def _take_receipt(self, data: bytes, carrier: str | None = None) -> None:
        try:
            receipt = self._receipts.verify(data)
        except RejectedError as exc:
            self.log.warning("bad receipt", sender=carrier, code=exc.code, reason=str(exc))
            return
        if receipt.sender != self.name or (carrier is not None and receipt.recipient != carrier):
            self.log.warning("receipt for someone else", recipient=receipt.recipient)
            return
        await self._record_status(receipt.message_id, receipt=data)

    async def _record_status(
        self, message_id: bytes, *, receipt: bytes | None = None, ndr: bytes | None = None
    ) -> None:
        key = _STATUS_PREFIX + message_id.hex()

        def run() -> None:
            receipts, reports = _decode_status(self.store.get_meta(key))
            if receipt is not None and receipt not in receipts:
                receipts.append(receipt)
            if ndr is not None and ndr not in reports:
                reports.append(ndr)
            self.store.set_meta(key, pack([receipts, reports]))

        await self._db(run)
        for event in self._status_waiters.pop(message_id, []):
            event.set()

    async def status(self, message_id: bytes) -> DeliveryStatus:
        """Receipts and non-delivery reports received so far for a message this node sent."""
        raw = await self._db(self.store.get_meta, _STATUS_PREFIX + message_id.hex())
        receipts, reports = _decode_status(raw)
        return DeliveryStatus(
            message_id,
            tuple(self._receipts.verify(r) for r in receipts),
            tuple(decode_ndr(r) for r in reports),
        )

    async def wait_status(
        self,
        message_id: bytes,
        recipients: Sequence[str] | None = None,
        *,
        timeout: float | None = None,
    ) -> DeliveryStatus:
        """Wait until every one of ``recipients`` (any one, if None) has a receipt or report."""

        async def settled() -> DeliveryStatus:
            while True:
                event = asyncio.Event()
                self._status_waiters.setdefault(message_id, []).append(event)
                current = await self.status(message_id)
                if current.settled(recipients):
                    return current
                await event.wait()

        return await asyncio.wait_for(settled(), timeout)

    async def stats(self) -> NodeStats:
        def run() -> tuple[QueueDepth, QueueDepth, dict[str, QueueDepth]]:
            store = self.store
            return (
                store.totals(),
                store.inbox_depth(),
                {hop: store.queue_depth(hop) for hop in store.next_hops()},
            )

        queued, inbox, outbound = await self._db(run)
        return NodeStats(
            self.name,
            queued,
            inbox,
            outbound,
            dict(self._peer_states),
            dict(self.counters),
            dict(self._handed_over),
        )


def _peek_id(data: bytes) -> bytes | None:
    """The message id of a refused envelope, for the audit record, if it can be read at all."""
    try:
        return decode_envelope(data).header.message_id
    except RejectedError:
        return None


def _answer(outcome: AcceptOutcome) -> ItemResult:
    if outcome.acknowledge:
        return ItemResult(Status.TAKEN)
    if outcome.status is AcceptStatus.EXPIRED:
        return ItemResult(Status.REFUSED, "expired", "the envelope expired before it was taken")
    return ItemResult(
        Status.REFUSED, "replayed", "another envelope with this sender and id was taken first"
    )


def _decode_status(raw: bytes | None) -> tuple[list[bytes], list[bytes]]:
    if raw is None:
        return [], []
    value = unpack(raw, what="status", max_size=len(raw), max_array=1 << 16)
    receipts, reports = value
    return list(receipts), list(reports)


async def _wait(event: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds`` or until ``event`` is set, whichever comes first."""
    await wait_event(event, seconds)
