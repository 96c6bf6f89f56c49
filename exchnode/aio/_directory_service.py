"""The federation's signed node directory on a running node: served, pulled, resolved, stored.

Theory of operation
-------------------
:class:`DirectoryService` attaches a :class:`~exchnode.federation.NodeDirectory`
to a :class:`~exchnode.aio.Node` (``node_service``), which then looks every
key up in it through the :class:`~exchnode.core.Directory` protocol and knows
nothing else of it.  A node given no static directory runs one by default.

A node holds its own subtree, its path to the root, and the names it talks
to, never the network (SPEC §14.13):

* **Serving changes** (format 2).  ``GET /exchnode/v1/directory/changes``
  answers a neighbour with the next signed page of what this node says to it
  (its subtree to its parent and links, its path to its children) after the
  position the neighbour gives (``feed``, ``seq``, ``listing``).
* **Pulling changes.**  Every neighbour's feed is pulled at start, every
  ``refresh`` seconds, and at once when the neighbour announces a change
  (``POST /exchnode/v1/directory/changed``), page by page until it has no
  more.  Each page is verified (``NodeDirectory.apply_page``: chains, once,
  remembered) and its rows stored one by one in the node's store (meta keys
  under ``directory/v2/``), the position with them in the same transaction,
  so a restart continues where it stopped.  After a change, the node
  announces to the neighbours whose feed moved.
* **Resolving on demand.**  A name outside this node's subtree that it does
  not hold is asked of its parent (``POST /exchnode/v1/directory/lookup``),
  which answers from what it holds or asks its own parent in turn; the
  answer is verified here (trust never comes from the relay) and cached
  until it expires.  :meth:`resolve` is the node's seam (``Node.send`` awaits
  it for unknown recipients); a lookup that misses in the directory (an
  unknown signer at the intake or the inbox) resolves in the background and
  the node retries when the keys change.  Concurrent lookups of a name are
  one; a name the hierarchy does not know is not asked again for
  ``negative_ttl`` seconds.
* **The previous version** (SPEC §14.17).  A neighbour that answers 404 on
  the changes endpoint is pulled with format-1 snapshots, scoped as before;
  a format-1 neighbour pulling ``GET /exchnode/v1/directory`` gets a
  format-1 snapshot of what this node says to it, or, beyond format 1's
  limits, a 413 saying so and to upgrade.
* **Revocations.**  CRLs travel in the pages with their CAs' chains, and enter
  from local configuration through :meth:`DirectoryService.add_crls`: each is
  judged by the one CRL check (``pki.check_crls``) before anything is applied
  or served.  What the directory keeps reaches the node's TLS contexts and
  certificate checks (:meth:`Node.apply_crls <exchnode.aio.Node.apply_crls>`)
  after every change, and again at start for what the stored rows brought
  back.

**Following** (a hub run as several workers, ``exchnode.aio.WorkerShare``).
One worker (0) runs the directory as above; each other worker's service is
built with ``follow=`` seconds: it serves, pulls and announces nothing (its
neighbours' directory requests are worker 0's to answer), and takes the rows
worker 0 stores again whenever worker 0 says they changed (a meta value,
``directory/generation``, that worker 0 rewrites after each change it
applies and a follower reads every ``follow`` seconds), each chain verified
again as after a restart (remembered: only new chains cost).  It still asks
the parent for the names it misses (``resolve``), as any node does.

Whenever the keys change the service tells the node (``Node.keys_changed``),
which retries inbox entries it could not open yet and wakes ``wait_known``.
The directory's state changes only under one lock, in a worker thread (chain
verification is CPU), so lookups on the event loop always see a whole index.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
from aiohttp import web
from cryptography import x509

from exchnode.aio._config import NodeConfig
from exchnode.aio._service import ServiceMessage
from exchnode.aio._transport import Handler, LinkError
from exchnode.aio._waiting import wait_event
from exchnode.core import LocalIdentity, NodeName
from exchnode.errors import ExchnodeError, RejectedError, TooLargeError, UsageError
from exchnode.federation import (
    FEED_ID_BYTES,
    MAX_LOOKUP_NAMES,
    Audience,
    FeedPosition,
    Neighbour,
    NodeDirectory,
    PageReport,
    decode_lookup,
    encode_lookup,
    verify_snapshot,
)
from exchnode.pki import CrlCheck

if TYPE_CHECKING:
    from exchnode.aio._node import Node

__all__ = [
    "DIRECTORY_CHANGED_PATH",
    "DIRECTORY_CHANGES_PATH",
    "DIRECTORY_CONTENT_TYPE",
    "DIRECTORY_LOOKUP_PATH",
    "DIRECTORY_PATH",
    "DirectoryService",
]

DIRECTORY_PATH = "/exchnode/v1/directory"
DIRECTORY_CHANGED_PATH = "/exchnode/v1/directory/changed"
DIRECTORY_CHANGES_PATH = "/exchnode/v1/directory/changes"
DIRECTORY_LOOKUP_PATH = "/exchnode/v1/directory/lookup"
DIRECTORY_CONTENT_TYPE = "application/vnd.exchnode.directory+msgpack"
_OLD_CACHE_KEY = "directory"  # format 1's one-value cache, read once and deleted
_V1 = "directory/v1/"  # a format-1 neighbour's last snapshot, per source
_V2 = "directory/v2/"  # per source: state, rows, CRLs
_LOOKUPS = "directory/lookup/"  # per looked-up name: its entries
#: rewritten by worker 0 of a hub's workers after each change: followers then reload the rows
GENERATION_KEY = "directory/generation"
_MAX_PAGES_PER_PULL = 100_000
_MAX_PENDING = (
    4096  # names being asked of the parent at once  # a runaway server cannot keep a puller forever
)
T = TypeVar("T")


def _row_key(source: str, name: str, digest: bytes) -> str:
    return f"{_V2}{source}/row/{name}/{digest.hex()}"


class DirectoryService:
    """The node's signed node directory: see the module docstring.

    ``refresh``: seconds between pulls from every neighbour; ``lifetime``: how
    long what this node signs is vouched for; ``lookup_timeout``: how long a
    send waits for the hierarchy to resolve an unknown recipient;
    ``negative_ttl``: how long a name the hierarchy did not know is not asked
    again; ``follow``: this is a follower (a worker other than 0 of a hub run
    as several, see the module docstring) that looks for worker 0's changes
    every ``follow`` seconds.  :meth:`for_node` builds the one a node runs by
    default, from its :class:`~exchnode.aio.NodeConfig`.
    """

    kinds: frozenset[str] = frozenset()  # the directory moves over neighbour endpoints

    def __init__(
        self,
        directory: NodeDirectory,
        *,
        refresh: float = 60.0,
        lifetime: float = 24 * 3600.0,
        lookup_timeout: float = 5.0,
        negative_ttl: float = 5.0,
        follow: float | None = None,
    ) -> None:
        if min(refresh, lifetime, lookup_timeout) <= 0 or negative_ttl < 0:
            raise UsageError(
                f"refresh, lifetime and lookup_timeout must be positive, got "
                f"{refresh}, {lifetime}, {lookup_timeout}"
            )
        if follow is not None and not follow > 0:
            raise UsageError(f"follow must be positive seconds, got {follow!r}")
        self.follow = follow
        self._generation: bytes | None = None  # a follower: worker 0's last generation seen
        self.directory = directory
        self.refresh = refresh
        self.lifetime = lifetime
        self.lookup_timeout = lookup_timeout
        self.negative_ttl = negative_ttl
        self._node: Node | None = None
        self._neighbours: frozenset[str] = frozenset()
        self._wake = asyncio.Event()
        self._pull_requests: set[str] = set()
        self._lock = asyncio.Lock()
        self._format1: set[str] = set()
        self._announced: dict[Audience, int] = {}
        self._signed: dict[str, tuple[float, bytes]] = {}
        # Resolution: names asked of the parent, their waiters, and names it did not know.
        self._pending: dict[str, asyncio.Future[None]] = {}
        self._queued: list[str] = []
        self._resolve_wake = asyncio.Event()
        self._unknown_until: dict[str, float] = {}
        self.log: Any = structlog.get_logger("exchnode.node")

    @classmethod
    def for_node(
        cls,
        identity: LocalIdentity,
        config: NodeConfig,
        clock: Callable[[], float] = time.time,
        *,
        follow: float | None = None,
    ) -> DirectoryService:
        """The directory service of a node set up by ``config`` (``follow``: see the class).

        Its feeds get fresh random ids at each start: the rows it serves are
        recomputed from what it holds, so a neighbour must not continue from a
        position of the previous run; it resets, and lists once.
        """
        directory = NodeDirectory(
            identity,
            clock=clock,
            address=config.advertised_url,
            neighbours=[peer.neighbour for peer in config.peers],
            feed_ids=(os.urandom(FEED_ID_BYTES), os.urandom(FEED_ID_BYTES)),
        )
        return cls(
            directory,
            refresh=config.timers.directory_refresh,
            lifetime=config.timers.directory_lifetime,
            lookup_timeout=config.timers.directory_lookup_timeout,
            negative_ttl=config.timers.directory_negative_ttl,
            follow=follow,
        )

    # --- the service seam ------------------------------------------------------------

    async def start(self, node: Node) -> None:
        """Work from the stored rows at once, before any neighbour answers."""
        self._node = node
        self._neighbours = frozenset(node.neighbours())
        held = self.directory.neighbours()
        for name, relation in node.neighbours().items():  # peers kept in the store, not config
            if name not in held:
                self.directory.add_neighbour(Neighbour(NodeName.parse(name), relation))
        self.log = self.log.bind(node=node.name)
        if self.follow is not None:
            self._generation = await node.get_meta(GENERATION_KEY)
        await self._restore()
        self.directory.on_miss = self._missed
        node.apply_crls(self.directory.crls())
        if self.follow is None:
            node.run_task(self._sync, "directory")
        else:
            node.run_task(self._follow, "directory-follow")
        node.run_task(self._resolver, "directory-lookups")

    async def peers_changed(self) -> None:
        """The node's neighbours changed while it runs: pull from a new one now, drop a gone one."""
        node = self._running()
        now = node.neighbours()
        added = [name for name in now if name not in self._neighbours]
        removed = [name for name in self._neighbours if name not in now]
        if not added and not removed:
            return

        def change() -> None:
            for name in removed:
                self.directory.drop_neighbour(name)
            for name in added:
                self.directory.add_neighbour(Neighbour(NodeName.parse(name), now[name]))

        await self._changing(change)
        self._neighbours = frozenset(now)
        self._pull_requests.update(added)
        self._wake.set()

    def routes(self) -> Mapping[tuple[str, str], Handler]:
        if self.follow is not None:
            return {}  # a follower's neighbours are answered by worker 0
        return {
            ("GET", DIRECTORY_PATH): self._serve_snapshot,
            ("GET", DIRECTORY_CHANGES_PATH): self._serve_changes,
            ("POST", DIRECTORY_LOOKUP_PATH): self._serve_lookup,
            ("POST", DIRECTORY_CHANGED_PATH): self._announced_by,
        }

    async def take(self, message: ServiceMessage) -> None:
        raise UsageError("the directory takes no messages")  # kinds is empty: never called

    async def close(self) -> None:
        self.directory.on_miss = None
        for future in self._pending.values():
            if not future.done():
                future.cancel()

    async def _changing(self, work: Callable[[], T]) -> T:
        """Run a change of the directory's state: one at a time, off the event loop."""
        async with self._lock:
            return await asyncio.to_thread(work)

    # --- restart -----------------------------------------------------------------------

    async def _rows(self, prefix: str) -> list[tuple[str, bytes]]:
        node = self._running()
        rows: list[tuple[str, bytes]] = []
        after = ""
        while True:
            page = await node.meta_range(prefix, after=after, limit=1000)
            rows.extend(page)
            if len(page) < 1000:
                return rows
            after = page[-1][0]

    async def _restore(self, *, again: bool = False) -> None:
        """The stored rows taken (back): at start, and on a follower whenever they changed."""
        node = self._running()
        directory = self.directory
        old = await node.get_meta(_OLD_CACHE_KEY)
        if old is not None:  # format 1's one-value cache: used once, then kept per source
            outcomes = await self._changing(lambda: directory.restore(old, node.trust, node.now()))
            for outcome in outcomes:
                if outcome.error is not None:
                    self.log.warning(
                        "cached directory not used",
                        source=outcome.source,
                        code=outcome.error.code,
                        reason=str(outcome.error),
                    )
            changes: dict[str, bytes | None] = {_OLD_CACHE_KEY: None}
            for source, data in directory.cached_snapshots().items():
                changes[_V1 + source] = data
            await node.update_meta(changes)
        for key, data in await self._rows(_V1):
            source = key[len(_V1) :]
            if source not in self._neighbours:
                continue
            await self._restore_snapshot(source, data)
        lookups = [row for _, row in await self._rows(_LOOKUPS)]
        if lookups:
            dropped = await self._changing(
                functools.partial(directory.restore_lookups, lookups, node.trust, node.now())
            )
            for item in dropped:
                self.log.warning("stored lookup not used", code=item.code)
        for source in sorted(self._neighbours):
            prefix = f"{_V2}{source}/"
            rows = await self._rows(prefix)
            if not rows:
                continue
            state = next((v for k, v in rows if k == prefix + "state"), None)
            entries = [v for k, v in rows if k.startswith(prefix + "row/")]
            crls = [v for k, v in rows if k.startswith(prefix + "crl/")]
            dropped = await self._changing(
                functools.partial(
                    directory.restore_pull, source, state, entries, crls, node.trust, node.now()
                )
            )
            for item in dropped:
                self.log.warning("stored directory row not used", source=source, code=item.code)
            if not again:
                self.log.info("directory restored", source=source, rows=len(entries))

    async def _restore_snapshot(self, source: str, data: bytes) -> None:
        node = self._running()
        directory = self.directory

        def apply() -> None:
            verified = verify_snapshot(
                data,
                node.trust,
                node.now(),
                source,
                policy=directory.policy,
                wanted=directory.accepts_from(source),
            )
            directory.update(source, verified, node.now())

        try:
            await self._changing(apply)
        except RejectedError as exc:
            self.log.warning("cached directory not used", source=source, code=exc.code)

    async def _follow(self) -> None:
        """A follower: take worker 0's stored rows again each time it says they changed."""
        node = self._running()
        assert self.follow is not None
        while True:
            await asyncio.sleep(self.follow)
            generation = await node.get_meta(GENERATION_KEY)
            if generation == self._generation:
                continue
            self._generation = generation
            await self._restore(again=True)
            self._signed.clear()
            node.apply_crls(self.directory.crls())
            node.keys_changed()

    # --- revocations from local configuration ---------------------------------------------

    async def add_crls(self, crls: Iterable[x509.CertificateRevocationList]) -> CrlCheck:
        """Take fresh CRLs from a CA (local configuration) and pass them on to every neighbour.

        Each is judged first by ``pki.check_crls`` (candidate CAs: the node's CA
        bundle and own chain, the trusted roots); the check is returned --
        ``current``: taken, served and applied; ``refused``: not, and why (a
        genuine but stale one still revokes what it lists, SPEC §14.6).
        """
        node = self._running()
        given = list(crls)
        checked = node.check_crls(given)  # pki.check_crls: the one CRL check
        for refused in checked.refused:
            self.log.warning("crl not taken", code=refused.code, reason=refused.reason)
        # The directory applies the same check with the same candidates: the same verdicts.
        cas = (*node.ca_bundle, *node.identity.chain)
        await self._changing(
            lambda: self.directory.add_crls(given, node.trust, node.now(), cas=cas)
        )
        await self._changed(["local"])
        return checked

    # --- the endpoints -------------------------------------------------------------------

    def _not_a_neighbour(self, neighbour: str) -> web.Response:
        node = self._running()
        return web.Response(status=403, text=f"{neighbour} is not a neighbour of {node.name}")

    async def _serve_snapshot(self, neighbour: str, request: web.Request) -> web.Response:
        """Format 1 for a neighbour that has not moved on (SPEC §14.17)."""
        if neighbour not in self._neighbours:
            return self._not_a_neighbour(neighbour)
        now = self._running().now()
        held = self._signed.get(neighbour)
        if held is None or now - held[0] >= 1.0:
            try:
                data = await self._changing(
                    lambda: self.directory.snapshot_for(neighbour, now, self.lifetime)
                )
            except TooLargeError as exc:
                return web.Response(status=413, text=f"[{exc.code}] {exc}")
            held = self._signed[neighbour] = (now, data)
        return web.Response(body=held[1], content_type=DIRECTORY_CONTENT_TYPE)

    async def _serve_changes(self, neighbour: str, request: web.Request) -> web.Response:
        if neighbour not in self._neighbours:
            return self._not_a_neighbour(neighbour)
        try:
            since, listing = _position_query(request.query)
        except ValueError as exc:
            return web.Response(status=400, text=f"[malformed] {exc}")
        directory = self.directory
        now = self._running().now()
        audience = directory.audience_of(neighbour)
        data = await self._changing(
            lambda: directory.feed_page(audience, since, now, self.lifetime, listing=listing)
        )
        return web.Response(body=data, content_type=DIRECTORY_CONTENT_TYPE)

    async def _serve_lookup(self, neighbour: str, request: web.Request) -> web.Response:
        if neighbour not in self._neighbours:
            return self._not_a_neighbour(neighbour)
        try:
            names = decode_lookup(await request.read())
        except RejectedError as exc:
            return web.Response(status=400, text=f"[{exc.code}] {exc}")
        node = self._running()
        _, forward = self.directory.lookup_split(names, node.now())
        if forward:
            await self.resolve(forward)
        now = node.now()
        data = await self._changing(lambda: self.directory.lookup_answer(names, now, self.lifetime))
        return web.Response(body=data, content_type=DIRECTORY_CONTENT_TYPE)

    async def _announced_by(self, neighbour: str, request: web.Request) -> web.Response:
        if neighbour not in self._neighbours:
            return self._not_a_neighbour(neighbour)
        self._pull_requests.add(neighbour)
        self._wake.set()
        return web.Response(status=204)

    # --- pulling -------------------------------------------------------------------------

    async def _sync(self) -> None:
        """Pull every neighbour's changes now and then, and whoever announces a change at once."""
        node = self._running()
        await node.ready()
        first = True
        last_full = 0.0
        while True:
            now = node.now()
            if first or now - last_full >= self.refresh:
                names, last_full = set(self._neighbours), now
                # A neighbour on format 1 may have moved: probe it again (one 404 if not).
                self._format1.clear()
            else:
                names = set(self._pull_requests)
            self._pull_requests.clear()
            self._wake.clear()
            results = await asyncio.gather(*(self._pull(name) for name in sorted(names)))
            changed = [name for name, moved in zip(sorted(names), results, strict=True) if moved]
            if first or changed:
                await self._changed(changed)
            first = False
            await wait_event(self._wake, self.refresh)

    async def _pull(self, name: str) -> bool:
        """Pull one neighbour's changes; whether anything changed."""
        if name in self._format1:
            return await self._pull_snapshot(name)
        node = self._running()
        directory = self.directory
        changed = False
        for _ in range(_MAX_PAGES_PER_PULL):
            since, listing = directory.pull_position(name, node.now())
            try:
                data = await node.request(name, "GET", _changes_path(since, listing))
            except LinkError as exc:
                if exc.status == 404:  # a neighbour on format 1 (SPEC §14.17)
                    self.log.info("directory neighbour on format 1", neighbour=name)
                    self._format1.add(name)
                    await node.update_meta(await self._forget(f"{_V2}{name}/"))
                    return await self._pull_snapshot(name)
                self.log.info("directory not pulled", neighbour=name, error=str(exc))
                return changed
            except ExchnodeError as exc:
                self.log.info("directory not pulled", neighbour=name, error=str(exc))
                return changed
            try:
                report = await self._changing(
                    functools.partial(directory.apply_page, name, data, node.trust, node.now())
                )
            except RejectedError as exc:
                self._refused(name, exc)
                return changed
            await node.update_meta(self._stored(name, report))
            self._report_dropped(name, report.dropped)
            changed = changed or bool(report.rows or report.gone or report.crls)
            if not report.more:
                break
        return changed

    async def _pull_snapshot(self, name: str) -> bool:
        """A format-1 neighbour: its whole snapshot, as before (SPEC §14.17)."""
        node = self._running()
        directory = self.directory
        try:
            data = await node.request(name, "GET", DIRECTORY_PATH)
        except ExchnodeError as exc:
            self.log.info("directory not pulled", neighbour=name, error=str(exc))
            return False

        def apply() -> None:
            now = node.now()
            verified = verify_snapshot(
                data,
                node.trust,
                now,
                name,
                policy=directory.policy,
                wanted=directory.accepts_from(name),
            )
            report = directory.update(name, verified, now)
            self._report_dropped(name, report.dropped)

        try:
            await self._changing(apply)
        except RejectedError as exc:
            self._refused(name, exc)
            return False
        await node.update_meta({_V1 + name: data})
        # A snapshot replaces the source whole: count it a change (the announcement that
        # may follow is decided by the feeds' positions, which move only on a real change).
        return True

    def _stored(self, source: str, report: PageReport) -> dict[str, bytes | None]:
        changes: dict[str, bytes | None] = {}
        for name, digest in report.gone:
            changes[_row_key(source, name, digest)] = None
        for name, digest, row in report.rows:
            changes[_row_key(source, name, digest)] = row
        for authority, row in report.crls:
            changes[f"{_V2}{source}/crl/{authority.hex()}"] = row
        # Mid-listing the position is not kept: a restart lists again (the sweep is in memory).
        changes[f"{_V2}{source}/state"] = report.state
        if source in self._format1 or report.state is not None:
            changes[_V1 + source] = None
        return changes

    async def _forget(self, prefix: str) -> dict[str, bytes | None]:
        return {key: None for key, _ in await self._rows(prefix)}

    def _refused(self, name: str, exc: RejectedError) -> None:
        node = self._running()
        self.log.warning("directory refused", neighbour=name, code=exc.code, reason=str(exc))
        node.record_key_change("directory.refused", subject=name, refused=exc.code)

    def _report_dropped(self, name: str, dropped: Iterable[Any]) -> None:
        node = self._running()
        for item in dropped:
            node.record_key_change(  # a CRL has no name: no subject
                "directory.dropped", subject=item.name or None, refused=item.code, peer=name
            )
            self.log.warning(
                "directory entry dropped",
                neighbour=name,
                entry=item.name,
                code=item.code,
                reason=item.reason,
            )

    async def _changed(self, sources: list[str]) -> None:
        """Apply the kept CRLs, tell the node, and announce to the neighbours whose feed moved."""
        node = self._running()
        self._signed.clear()
        # Every time, not only when they changed: the first pull after a start brings the
        # stored CRLs back unchanged, and the node must apply them (each CRL only once).
        node.apply_crls(self.directory.crls())
        if self.follow is not None:  # a follower's local CRLs: applied, announced by worker 0
            node.keys_changed()
            return
        if sources:
            self.log.info("directory changed", sources=sources[:20])
            node.record_key_change("directory.changed", count=len(sources))
        node.keys_changed()
        if node.config.worker is not None:  # the other workers' followers reload the rows
            await node.set_meta(GENERATION_KEY, os.urandom(8))
        now = node.now()
        positions = await self._changing(lambda: self.directory.positions(now, self.lifetime))
        told: list[str] = []
        for audience, last in positions.items():
            if self._announced.get(audience) == last:
                continue
            self._announced[audience] = last
            told.extend(
                name for name in self._neighbours if self.directory.audience_of(name) is audience
            )

        async def tell(name: str) -> None:
            with contextlib.suppress(ExchnodeError):
                await node.request(name, "POST", DIRECTORY_CHANGED_PATH)

        await asyncio.gather(*(tell(name) for name in sorted(set(told))))

    # --- resolving on demand (SPEC §14.16) ------------------------------------------------

    async def resolve(self, names: Iterable[str], *, timeout: float | None = None) -> None:
        """Ask the hierarchy for the names outside this node's subtree that it does not hold.

        Returns once each has an answer, or after ``timeout`` (default
        ``lookup_timeout``); what was not found stays unknown, and the caller's
        lookup then fails as it would have (closed).
        """
        waiting = self._ask(names)
        if waiting:
            await asyncio.wait(waiting, timeout=self.lookup_timeout if timeout is None else timeout)

    def _ask(self, names: Iterable[str]) -> list[asyncio.Future[None]]:
        node = self._node
        directory = self.directory
        if node is None or directory.parent is None:
            return []
        now = node.now()
        waiting = []
        for name in dict.fromkeys(names):
            if not directory.wants(name) or directory.has_live(name, now):
                continue
            if self._unknown_until.get(name, 0.0) > now:
                continue
            future = self._pending.get(name)
            if future is None:
                if len(self._pending) >= _MAX_PENDING:  # a flood of bogus names: ask later
                    continue
                future = asyncio.get_running_loop().create_future()
                self._pending[name] = future
                self._queued.append(name)
                self._resolve_wake.set()
            waiting.append(future)
        return waiting

    def _missed(self, name: str) -> None:
        """A lookup found nothing live for ``name`` (an unknown signer): ask in the background."""
        with contextlib.suppress(RuntimeError):  # no running loop: nothing to wake
            self._ask([name])

    async def _resolver(self) -> None:
        """Ask the parent for the queued names, up to 64 a request, several requests at once."""
        node = self._running()
        await node.ready()
        while True:
            await self._resolve_wake.wait()
            self._resolve_wake.clear()
            batches = []
            while self._queued:
                batches.append(self._queued[:MAX_LOOKUP_NAMES])
                del self._queued[:MAX_LOOKUP_NAMES]
            await asyncio.gather(*(self._lookup(batch) for batch in batches))

    async def _lookup(self, names: list[str]) -> None:
        node = self._running()
        parent = self.directory.parent
        found = False
        try:
            if parent is None:
                return
            data = await asyncio.wait_for(
                node.request(parent, "POST", DIRECTORY_LOOKUP_PATH, encode_lookup(names)),
                self.lookup_timeout,
            )
            report = await self._changing(
                lambda: self.directory.apply_lookup(parent, data, names, node.trust, node.now())
            )
            until = node.now() + self.negative_ttl
            for name in report.unknown:
                self._unknown_until[name] = until
            changes: dict[str, bytes | None] = {}
            for name in (*report.found, *report.evicted):
                changes.update(await self._forget(f"{_LOOKUPS}{name}/"))
            for name, digest, row in report.rows:
                changes[f"{_LOOKUPS}{name}/{digest.hex()}"] = row
            if changes:
                await node.update_meta(changes)
            self._report_dropped(parent, report.dropped)
            found = bool(report.found)
        except (ExchnodeError, TimeoutError) as exc:
            self.log.info("directory lookup failed", names=names[:8], error=str(exc))
            if isinstance(exc, LinkError) and exc.status == 404:
                # A parent on format 1 has no lookups (SPEC §14.17): what it knows comes
                # in its snapshot; do not ask it again before the next refresh.
                until = node.now() + self.refresh
                self._unknown_until.update(dict.fromkeys(names, until))
        finally:
            for name in names:
                future = self._pending.pop(name, None)
                if future is not None and not future.done():
                    future.set_result(None)
            if len(self._unknown_until) > 65536:  # bounded: forget the oldest half
                for name in sorted(self._unknown_until, key=self._unknown_until.__getitem__)[
                    : len(self._unknown_until) // 2
                ]:
                    del self._unknown_until[name]
        if found:
            node.apply_crls(self.directory.crls())
            node.keys_changed()

    def _running(self) -> Node:
        if self._node is None:
            raise UsageError("the directory service is not attached to a running node")
        return self._node


def _changes_path(since: FeedPosition | None, listing: bool) -> str:
    feed, seq = (b"", 0) if since is None else since
    return f"{DIRECTORY_CHANGES_PATH}?feed={feed.hex()}&seq={seq}&listing={int(listing)}"


def _position_query(query: Mapping[str, str]) -> tuple[FeedPosition | None, bool]:
    """``feed`` (hex, empty for a first pull), ``seq``, ``listing`` from a changes request."""
    feed_hex, seq_text = query.get("feed", ""), query.get("seq", "0")
    listing_text = query.get("listing", "0")
    if len(feed_hex) not in (0, 2 * FEED_ID_BYTES) or listing_text not in ("0", "1"):
        raise ValueError("feed must be empty or 32 hex digits, listing 0 or 1")
    if not seq_text.isascii() or not seq_text.isdigit() or len(seq_text) > 19:
        raise ValueError("seq must be a non-negative integer")
    try:
        feed = bytes.fromhex(feed_hex)
    except ValueError:
        raise ValueError("feed must be hex") from None
    if not feed:
        return None, False
    return FeedPosition(feed, int(seq_text)), listing_text == "1"
