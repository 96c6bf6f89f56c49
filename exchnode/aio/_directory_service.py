"""The federation's signed node directory on a running node: served, pulled, cached (I/O edge).

Theory of operation
-------------------
:class:`DirectoryService` attaches a :class:`~exchnode.federation.NodeDirectory`
to a :class:`~exchnode.aio.Node` (``node_service``), which then looks every
key up in it through the :class:`~exchnode.core.Directory` protocol and knows
nothing else of it.  A node given no static directory runs one by default.

* **Serving.**  ``GET /exchnode/v1/directory`` answers a neighbour with a
  snapshot of what this node knows, signed by it (re-signed at most once a
  second) and valid for ``lifetime`` seconds: how long the neighbours keep
  working from their copy if this node goes away.
* **Pulling.**  Every neighbour's snapshot is pulled at start, every
  ``refresh`` seconds, and at once when the neighbour announces a change
  (``POST /exchnode/v1/directory/changed``).  Each is verified
  (``verify_snapshot``: every entry's chain, under the node's trust store)
  and scoped by the neighbour's relation; a refused snapshot or entry goes
  on the audit record.  After a pull that changed what this node knows, it
  announces to its own neighbours, so a change spreads in a few round trips.
* **Caching.**  The directory is kept in the node's store (``meta`` key
  ``directory``), written before a change is announced, and restored at
  start, so a node works from its cache before any neighbour answers.
* **Revocations.**  CRLs travel in the snapshots, and enter from local
  configuration through :meth:`DirectoryService.add_crls` (the daemon's
  ``[trust] crls`` at start and on reload, and the administrator's ``crl
  add``): each is judged by the one CRL check (``pki.check_crls``, with the
  node's CA bundle and own chain as candidate CAs) before anything is
  applied or served.  What the directory keeps reaches the node's TLS
  contexts and certificate checks (:meth:`Node.apply_crls
  <exchnode.aio.Node.apply_crls>`: new connections and open ones) after
  every change, and again at start for what the cache brought back.

Whenever the keys change the service tells the node (``Node.keys_changed``),
which retries inbox entries it could not open yet and wakes ``wait_known``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from exchnode.aio._config import NodeConfig
from exchnode.aio._service import ServiceMessage
from exchnode.aio._transport import Handler
from exchnode.aio._waiting import wait_event
from exchnode.core import LocalIdentity
from exchnode.errors import ExchnodeError, RejectedError, UsageError
from exchnode.federation import NodeDirectory, verify_snapshot
from exchnode.pki import CrlCheck

if TYPE_CHECKING:
    from exchnode.aio._node import Node

__all__ = [
    "DIRECTORY_CHANGED_PATH",
    "DIRECTORY_CONTENT_TYPE",
    "DIRECTORY_PATH",
    "DirectoryService",
]

DIRECTORY_PATH = "/exchnode/v1/directory"
DIRECTORY_CHANGED_PATH = "/exchnode/v1/directory/changed"
DIRECTORY_CONTENT_TYPE = "application/vnd.exchnode.directory+msgpack"
_DIRECTORY_KEY = "directory"  # the store meta key of the cached directory
_SHA256 = hashes.SHA256()

#: what the service compares before and after a pull: (name, address) entries, CRL fingerprints
_View = tuple[frozenset[tuple[str, str]], frozenset[bytes]]


class DirectoryService:
    """The node's signed node directory: see the module docstring.

    ``refresh``: seconds between full pulls from every neighbour;
    ``lifetime``: how long the snapshots this node signs are valid.
    :meth:`for_node` builds the one a node runs by default, from its
    :class:`~exchnode.aio.NodeConfig` (``timers.directory_refresh``,
    ``timers.directory_lifetime``, ``advertise``, ``peers``).
    """

    kinds: frozenset[str] = frozenset()  # the directory moves over neighbour endpoints

    def __init__(
        self, directory: NodeDirectory, *, refresh: float = 60.0, lifetime: float = 24 * 3600.0
    ) -> None:
        if refresh <= 0 or lifetime <= 0:
            raise UsageError(f"refresh and lifetime must be positive, got {refresh}, {lifetime}")
        self.directory = directory
        self.refresh = refresh
        self.lifetime = lifetime
        self._node: Node | None = None
        self._neighbours: frozenset[str] = frozenset()
        self._wake = asyncio.Event()
        self._pull_requests: set[str] = set()
        self._signed: tuple[float, bytes] | None = None
        self.log: Any = structlog.get_logger("exchnode.node")

    @classmethod
    def for_node(
        cls,
        identity: LocalIdentity,
        config: NodeConfig,
        clock: Callable[[], float] = time.time,
    ) -> DirectoryService:
        """The directory service of a node set up by ``config``."""
        directory = NodeDirectory(
            identity,
            clock=clock,
            address=config.advertised_url,
            neighbours=[peer.neighbour for peer in config.peers],
        )
        return cls(
            directory,
            refresh=config.timers.directory_refresh,
            lifetime=config.timers.directory_lifetime,
        )

    # --- the service seam ------------------------------------------------------------

    async def start(self, node: Node) -> None:
        """Work from the cached snapshots at once, before any neighbour answers."""
        self._node = node
        self._neighbours = frozenset(node.neighbours())
        self.log = self.log.bind(node=node.name)
        cached = await node.get_meta(_DIRECTORY_KEY)
        if cached is not None:
            for outcome in self.directory.restore(cached, node.trust, node.now()):
                if outcome.error is not None:
                    self.log.warning(
                        "cached directory not used",
                        source=outcome.source,
                        code=outcome.error.code,
                        reason=str(outcome.error),
                    )
        node.run_task(self._sync, "directory")

    def routes(self) -> Mapping[tuple[str, str], Handler]:
        return {
            ("GET", DIRECTORY_PATH): self._serve,
            ("POST", DIRECTORY_CHANGED_PATH): self._announced,
        }

    async def take(self, message: ServiceMessage) -> None:
        raise UsageError("the directory takes no messages")  # kinds is empty: never called

    async def close(self) -> None:
        pass  # its loop is the node's to stop; everything it learnt is already stored

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
        before = self._view()
        # The directory applies the same check with the same candidates: the same verdicts.
        cas = (*node.ca_bundle, *node.identity.chain)
        self.directory.add_crls(given, node.trust, node.now(), cas=cas)
        await self._changed(before, self._view(), announce=True)
        return checked

    # --- the endpoints -------------------------------------------------------------------

    def _not_a_neighbour(self, neighbour: str) -> web.Response:
        node = self._running()
        return web.Response(status=403, text=f"{neighbour} is not a neighbour of {node.name}")

    async def _serve(self, neighbour: str, request: web.Request) -> web.Response:
        if neighbour not in self._neighbours:
            return self._not_a_neighbour(neighbour)
        now = self._running().now()
        if self._signed is None or now - self._signed[0] >= 1.0:
            self._signed = (now, self.directory.sign(now, self.lifetime))
        return web.Response(body=self._signed[1], content_type=DIRECTORY_CONTENT_TYPE)

    async def _announced(self, neighbour: str, request: web.Request) -> web.Response:
        if neighbour not in self._neighbours:
            return self._not_a_neighbour(neighbour)
        self._pull_requests.add(neighbour)
        self._wake.set()
        return web.Response(status=204)

    # --- pulling -------------------------------------------------------------------------

    async def _sync(self) -> None:
        """Pull every neighbour's snapshot now and then, and whoever announces a change at once."""
        node = self._running()
        await node.ready()
        first = True
        last_full = 0.0
        while True:
            now = node.now()
            if first or now - last_full >= self.refresh:
                names, last_full = set(self._neighbours), now
            else:
                names = set(self._pull_requests)
            self._pull_requests.clear()
            self._wake.clear()
            before = self._view()
            await asyncio.gather(*(self._pull(name) for name in sorted(names)))
            after = self._view()
            if first or after != before:
                await self._changed(before, after, announce=True)
            first = False
            await wait_event(self._wake, self.refresh)

    def _view(self) -> _View:
        now = self._running().now()
        entries = frozenset((e.name, e.address) for e in self.directory.snapshot_entries(now))
        crls = frozenset(crl.fingerprint(_SHA256) for crl in self.directory.crls())
        return entries, crls

    async def _pull(self, name: str) -> None:
        node = self._running()
        directory = self.directory
        try:
            data = await node.request(name, "GET", DIRECTORY_PATH)
        except ExchnodeError as exc:
            self.log.info("directory not pulled", neighbour=name, error=str(exc))
            return
        now = node.now()
        try:
            verified = await asyncio.to_thread(
                verify_snapshot,
                data,
                node.trust,
                now,
                name,
                policy=directory.policy,
                wanted=directory.accepts_from(name),
            )
            report = directory.update(name, verified, now)
        except RejectedError as exc:
            self.log.warning("directory refused", neighbour=name, code=exc.code, reason=str(exc))
            node.record_key_change("directory.refused", subject=name, refused=exc.code)
            return
        for dropped in report.dropped:
            node.record_key_change(  # a CRL has no name: no subject
                "directory.dropped", subject=dropped.name or None, refused=dropped.code, peer=name
            )
            self.log.warning(
                "directory entry dropped",
                neighbour=name,
                entry=dropped.name,
                code=dropped.code,
                reason=dropped.reason,
            )

    async def _changed(self, before: _View, after: _View, *, announce: bool) -> None:
        """Store the directory, apply new CRLs, tell the node and (``announce``) the neighbours."""
        node = self._running()
        self._signed = None
        await node.set_meta(_DIRECTORY_KEY, self.directory.encode())
        # Every time, not only when they changed: the first pull after a start brings the
        # cached CRLs back unchanged, and the node must apply them (each CRL only once).
        node.apply_crls(self.directory.crls())
        added = sorted(name for name, _ in after[0] - before[0])
        if added or after[1] != before[1]:
            self.log.info("directory changed", known=len(after[0]), new=added[:20])
            node.record_key_change("directory.changed", count=len(added))
        node.keys_changed()
        if announce:

            async def tell(name: str) -> None:
                with contextlib.suppress(ExchnodeError):
                    await node.request(name, "POST", DIRECTORY_CHANGED_PATH)

            await asyncio.gather(*(tell(name) for name in self._neighbours))

    def _running(self) -> Node:
        if self._node is None:
            raise UsageError("the directory service is not attached to a running node")
        return self._node
