"""The catalog on a running node: publish, search, and anti-entropy with every neighbour (I/O edge).

Theory of operation
-------------------
:class:`CatalogService` attaches a :class:`~exchnode.catalog.CatalogState`
to a :class:`~exchnode.aio.Node` (``node_service``).  It does three things:

* **Publishing.**  A department node signs changes to its own entries
  (``catalog.sign_records``: one signature for a batch), merges them into its
  state, stores the state, and tells its neighbours that something changed.
* **Anti-entropy** (SPEC §18.7) over the neighbour links' mutual TLS, as a
  puller: ``GET summary`` → the providers whose digests differ → ``POST
  versions`` → the records it lacks → ``POST records`` → verify each under
  the directory (only the provider can have signed it) and merge.  Every
  node pulls from every neighbour at start, every ``refresh`` seconds, and
  at once when a neighbour announces a change (``POST changed``); after a
  pull that changed its state it announces to its own neighbours.  So a
  change climbs to the province and comes down to every node in a few
  round trips, and after a partition the next pull catches up, sending only
  the records that differ.
* **Reading**: ``search`` and ``get`` over the merged state.

The state is kept in the node's store (``meta`` key ``catalog``), written
before a change is announced, and restored at start.  A record whose signer
is not (yet) in the directory is skipped and pulled again soon: directory and
catalog travel separately and either may arrive first.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from exchnode.aio._service import ServiceMessage
from exchnode.aio._transport import Handler
from exchnode.aio._waiting import wait_event
from exchnode.catalog import (
    CatalogEntry,
    CatalogRecord,
    CatalogState,
    CatalogVerifier,
    Outcome,
    Publication,
    Summary,
    Withdrawal,
    decode_providers,
    decode_record,
    decode_records,
    decode_versions,
    decode_wanted,
    encode_providers,
    encode_records,
    encode_versions,
    encode_wanted,
    sign_records,
)
from exchnode.core import AuditEvent, EventSink, NodeName
from exchnode.errors import (
    DirectoryExpiredError,
    EquivocationError,
    ExchnodeError,
    RejectedError,
    UnknownSignerError,
    UsageError,
)
from exchnode.federation import Neighbour

if TYPE_CHECKING:
    from exchnode.aio._node import Node

__all__ = [
    "CATALOG_CHANGED_PATH",
    "CATALOG_RECORDS_PATH",
    "CATALOG_SUMMARY_PATH",
    "CATALOG_VERSIONS_PATH",
    "CatalogService",
]

CATALOG_SUMMARY_PATH = "/exchnode/v1/catalog/summary"
CATALOG_VERSIONS_PATH = "/exchnode/v1/catalog/versions"
CATALOG_RECORDS_PATH = "/exchnode/v1/catalog/records"
CATALOG_CHANGED_PATH = "/exchnode/v1/catalog/changed"
_CONTENT_TYPE = "application/vnd.exchnode.catalog+msgpack"
STATE_KEY = "catalog"  # the store meta key of a node's catalog state (auditors read it)
_RETRY_SOON = 1.0  # seconds: a pull that skipped records for an unknown signer


class CatalogService:
    """The node's catalog: see the module docstring."""

    kinds: frozenset[str] = frozenset()  # the catalog moves over neighbour endpoints

    def __init__(self, *, refresh: float = 60.0, events: EventSink | None = None) -> None:
        if refresh <= 0:
            raise UsageError(f"refresh must be positive seconds, got {refresh!r}")
        self.refresh = refresh
        self.events = events
        self._node: Node | None = None
        self._state: CatalogState | None = None
        self._verifier: CatalogVerifier | None = None
        self._neighbours: dict[str, Neighbour] = {}
        self._wake = asyncio.Event()
        self._pull_from: set[str] = set()
        self._changed = asyncio.Condition()
        self._lock = asyncio.Lock()  # one change of the state and its stored copy at a time
        self.log: Any = structlog.get_logger("exchnode.catalog")

    # --- the service seam ------------------------------------------------------------

    async def start(self, node: Node) -> None:
        self._node = node
        self.log = self.log.bind(node=node.name)
        self._verifier = CatalogVerifier(node.directory)
        self._neighbours = {
            name: Neighbour(NodeName.parse(name), relation)
            for name, relation in node.neighbours().items()
        }
        stored = await node.get_meta(STATE_KEY)
        self._state = CatalogState(node.name)
        if stored is not None:
            try:
                self._state = CatalogState.restore(stored, node.name)
            except RejectedError as exc:
                # Our own store: a damaged copy is re-learnt from the neighbours.
                self.log.error("stored catalog not used", code=exc.code, reason=str(exc))
        node.run_task(self._sync, "catalog")

    def routes(self) -> Mapping[tuple[str, str], Handler]:
        return {
            ("GET", CATALOG_SUMMARY_PATH): self._serve_summary,
            ("POST", CATALOG_VERSIONS_PATH): self._serve_versions,
            ("POST", CATALOG_RECORDS_PATH): self._serve_records,
            ("POST", CATALOG_CHANGED_PATH): self._announced,
        }

    async def take(self, message: ServiceMessage) -> None:
        raise UsageError("the catalog takes no messages")  # kinds is empty: never called

    async def close(self) -> None:
        pass

    # --- publishing ------------------------------------------------------------------

    async def publish(
        self, entries: Sequence[CatalogEntry], *, operator: str | None = None
    ) -> list[CatalogRecord]:
        """Sign and publish this node's ``entries`` (new ones, or new versions), one signature.

        ``operator``: who published, for the audit trail (the node signs either way).
        """
        node, state = self._running()
        for entry in entries:
            if not isinstance(entry, CatalogEntry):
                raise UsageError(f"publish takes CatalogEntry values, got {type(entry).__name__}")
            if entry.provider != node.name:
                raise UsageError(
                    f"{node.name} cannot publish {entry.code}: its provider is {entry.provider} "
                    "(one source per datum)"
                )
        return await self._sign_and_apply(
            [Publication(entry, state.next_version(entry.code)) for entry in entries], operator
        )

    async def withdraw(
        self, code: str, reason: str, *, operator: str | None = None
    ) -> CatalogRecord:
        """Withdraw one of this node's entries: a signed tombstone that travels like an entry."""
        node, state = self._running()
        held = state.get(node.name, code)
        if held is None or held.withdrawn:
            raise UsageError(f"{node.name} has no published entry {code} to withdraw")
        change = Withdrawal(code, state.next_version(code), reason)
        (record,) = await self._sign_and_apply([change], operator)
        return record

    async def _sign_and_apply(
        self, changes: list[Publication | Withdrawal], operator: str | None
    ) -> list[CatalogRecord]:
        node, state = self._running()
        if not changes:
            return []
        async with self._lock:
            records = sign_records(node.identity, changes, node.now())
            for record in records:
                state.apply(record)
            await node.set_meta(STATE_KEY, state.encode())
        for record in records:
            action = "catalog.withdraw" if record.withdrawn else "catalog.publish"
            self._emit(action, record, actor=operator)
            self.log.info(
                "catalog entry signed",
                code=record.code,
                version=record.version,
                withdrawn=record.withdrawn,
            )
        await self._after_change()
        return records

    # --- reading ---------------------------------------------------------------------

    @property
    def state(self) -> CatalogState:
        return self._running()[1]

    def search(self, **criteria: Any) -> list[CatalogRecord]:
        """``CatalogState.search`` over what this node holds (published entries by default)."""
        return self.state.search(**criteria)

    def get(self, provider: str, code: str) -> CatalogRecord | None:
        return self.state.get(provider, code)

    async def wait_for(
        self, provider: str, code: str, *, version: int = 1, timeout: float | None = None
    ) -> CatalogRecord:
        """Wait until this node holds ``version`` (or newer) of ``provider``'s ``code``."""

        async def held() -> CatalogRecord:
            async with self._changed:
                while True:
                    record = self.state.get(provider, code)
                    if record is not None and record.version >= version:
                        return record
                    await self._changed.wait()

        return await asyncio.wait_for(held(), timeout)

    # --- anti-entropy: the puller ----------------------------------------------------

    async def _sync(self) -> None:
        first, last_full, retry = True, 0.0, False
        while True:
            node, _ = self._running()
            now = node.now()
            if first or retry or now - last_full >= self.refresh:
                names = set(self._neighbours)
                if not retry:
                    last_full = now
            else:
                names = set(self._pull_from)
            self._pull_from.clear()
            self._wake.clear()
            results = await asyncio.gather(*(self._pull(name) for name in sorted(names)))
            changed = any(result[0] for result in results)
            retry = any(result[1] for result in results)
            if changed:
                await self._after_change(persist=True)
            first = False
            await wait_event(self._wake, _RETRY_SOON if retry else self.refresh)

    async def _pull(self, name: str) -> tuple[bool, bool]:
        """One exchange with ``name``: (whether the state changed, whether to retry soon)."""
        node, state = self._running()
        source = self._neighbours[name]
        try:
            summary = Summary.decode(await node.request(name, "GET", CATALOG_SUMMARY_PATH))
            providers = state.diff(summary, source)
            if not providers:
                return False, False
            versions = decode_versions(
                await node.request(name, "POST", CATALOG_VERSIONS_PATH, encode_providers(providers))
            )
            wanted = state.wanted(versions, source)
            if not wanted:
                return False, False
            records = decode_records(
                await node.request(name, "POST", CATALOG_RECORDS_PATH, encode_wanted(wanted))
            )
        except ExchnodeError as exc:
            self.log.info("catalog not pulled", neighbour=name, error=str(exc))
            return False, False
        return self._merge(name, source, records)

    def _merge(self, name: str, source: Neighbour, records: Sequence[bytes]) -> tuple[bool, bool]:
        _, state = self._running()
        assert self._verifier is not None
        changed = retry = False
        for data in records:
            try:
                record = self._verifier.verify(data)
                outcome = state.apply(record, source)
            except (UnknownSignerError, DirectoryExpiredError) as exc:
                self.log.info(
                    "catalog record waits for its signer", neighbour=name, reason=str(exc)
                )
                retry = True
                continue
            except EquivocationError as exc:
                self.log.warning("catalog equivocation", neighbour=name, reason=str(exc))
                self._emit_refusal(name, exc, data)
                continue
            except RejectedError as exc:
                # Altered on the way, or signed by someone else than its provider.
                self.log.warning(
                    "catalog record refused", neighbour=name, code=exc.code, reason=str(exc)
                )
                self._emit_refusal(name, exc, data)
                continue
            if outcome in (Outcome.NEW, Outcome.UPDATED):
                changed = True
                self._emit("catalog.learn", record, counterpart=name)
        return changed, retry

    async def _after_change(self, *, persist: bool = False) -> None:
        node, state = self._running()
        if persist:
            async with self._lock:
                await node.set_meta(STATE_KEY, state.encode())
        async with self._changed:
            self._changed.notify_all()

        async def tell(name: str) -> None:
            with contextlib.suppress(ExchnodeError):
                await node.request(name, "POST", CATALOG_CHANGED_PATH)

        await asyncio.gather(*(tell(name) for name in self._neighbours))

    # --- anti-entropy: serving -------------------------------------------------------

    def _neighbour(self, name: str) -> Neighbour | None:
        return self._neighbours.get(name)

    async def _serve_summary(self, name: str, request: web.Request) -> web.StreamResponse:
        neighbour = self._neighbour(name)
        if neighbour is None:
            return _not_a_neighbour(name)
        return _answer(self.state.summary(to=neighbour).encode())

    async def _serve_versions(self, name: str, request: web.Request) -> web.StreamResponse:
        neighbour = self._neighbour(name)
        if neighbour is None:
            return _not_a_neighbour(name)
        try:
            providers = decode_providers(await request.read())
        except RejectedError as exc:
            return web.Response(status=400, text=str(exc))
        return _answer(encode_versions(self.state.versions(providers, to=neighbour)))

    async def _serve_records(self, name: str, request: web.Request) -> web.StreamResponse:
        neighbour = self._neighbour(name)
        if neighbour is None:
            return _not_a_neighbour(name)
        try:
            wanted = decode_wanted(await request.read())
        except RejectedError as exc:
            return web.Response(status=400, text=str(exc))
        return _answer(encode_records(self.state.entries_for(wanted, to=neighbour)))

    async def _announced(self, name: str, request: web.Request) -> web.StreamResponse:
        if self._neighbour(name) is None:
            return _not_a_neighbour(name)
        self._pull_from.add(name)
        self._wake.set()
        return web.Response(status=204)

    # --- helpers ---------------------------------------------------------------------

    def _running(self) -> tuple[Node, CatalogState]:
        if self._node is None or self._state is None:
            raise UsageError("the catalog service is not attached to a running node")
        return self._node, self._state

    def _emit_refusal(self, neighbour: str, exc: RejectedError, data: bytes) -> None:
        self._event("catalog.refused", neighbour, _code_of(data), exc.code, self._running()[0].name)

    def _emit(
        self,
        action: str,
        record: CatalogRecord,
        *,
        counterpart: str = "",
        actor: str | None = None,
    ) -> None:
        outcome = "withdrawn" if record.withdrawn else f"v{record.version}"
        actor = actor or self._running()[0].name
        self._event(action, actor, record.code, outcome, counterpart or record.provider)

    def _event(self, action: str, actor: str, code: str, outcome: str, counterpart: str) -> None:
        if self.events is None:
            return
        self.events.emit(
            AuditEvent(
                at_ms=int(self._running()[0].now() * 1000),
                actor=actor,
                action=action,
                resource_code=code,
                request_id=b"",
                outcome=outcome,
                counterpart=counterpart,
            )
        )


def _code_of(data: bytes) -> str:
    """The resource code a refused record claims, if it can be read at all."""
    try:
        return decode_record(data).code
    except RejectedError:
        return ""


def _answer(body: bytes) -> web.Response:
    return web.Response(body=body, content_type=_CONTENT_TYPE)


def _not_a_neighbour(name: str) -> web.Response:
    return web.Response(status=403, text=f"{name} is not a neighbour")
