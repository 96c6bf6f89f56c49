"""The catalog on a running node: publish, feeds up the tree, lookups beyond it (I/O edge).

Theory of operation
-------------------
:class:`CatalogService` attaches a :class:`~exchnode.catalog.CatalogState`
to a :class:`~exchnode.aio.Node` (``node_service``).  The state is a catalog
at this node's level (SPEC §18.6): its subtree's records, and a bounded cache
of what it asked its parent for.  The service does four things:

* **Publishing.**  A department node signs changes to its own entries
  (``catalog.sign_records``: one signature for a batch), merges them, writes
  the rows they touched, and tells its parent that its feed moved.
* **Feeds up** (§18.11).  A hub pulls each child's feed: the signed records of
  the child's subtree changed since its position, page by page, each verified
  under the directory and merged; the rows and the new position are written
  in one transaction.  It pulls at start, every ``refresh`` seconds, and at
  once when the child announces a change (``POST changed``); whatever it
  learnt, it announces to its own parent.  One changed entry so costs one
  page on each link up to the top, whatever the catalog's size.
* **Lookups up** (§18.12).  ``lookup`` and ``search_beyond`` answer from what
  the node holds and ask the parent the rest; a hub serves its children's
  lookups the same way, passing up what its subtree and cache do not hold
  (identical questions in flight are asked once; each is bounded by
  ``lookup_timeout`` and then answered as incomplete).  Every ``refresh`` a
  node asks its parent for what is newer of what it caches, so a used
  record's new version reaches its user.
* **Format 1** (§18.10).  A neighbour that answers 404 on the new endpoints
  speaks format 1: it is reconciled with §18.7 within the new scope, and the
  §18.7 endpoints serve such neighbours from what this node holds, with a
  413 saying to upgrade where format 1's limits would be exceeded.

The state is kept as rows of the store's ``meta`` (``catalog.``, see
``catalog._rows``): a change writes its own rows only.  The single value
(``meta`` key ``catalog``) of format 1 is migrated at the first start.  A
record whose signer is not (yet) in the directory is skipped and pulled again
soon: directory and catalog travel separately and either may arrive first.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import structlog
from aiohttp import web

from exchnode.aio._service import ServiceMessage
from exchnode.aio._transport import Handler, LinkError
from exchnode.aio._waiting import wait_event
from exchnode.catalog import (
    MAX_LOOKUP_KEYS,
    ROWS_PREFIX,
    CatalogEntry,
    CatalogQuery,
    CatalogRecord,
    CatalogState,
    CatalogVerifier,
    FeedPuller,
    FeedRequest,
    LookupAnswer,
    LookupRequest,
    Merged,
    Publication,
    RecordPage,
    Summary,
    Wanted,
    Withdrawal,
    decode_position,
    decode_providers,
    decode_record,
    decode_records,
    decode_versions,
    decode_wanted,
    encode_position,
    encode_providers,
    encode_records,
    encode_versions,
    encode_wanted,
    merge_verified,
    position_key,
    sign_records,
)
from exchnode.core import AuditEvent, EventSink, NodeName
from exchnode.errors import (
    ExchnodeError,
    RejectedError,
    TooLargeError,
    UsageError,
)
from exchnode.federation import FEED_ID_BYTES, Neighbour, Relation

if TYPE_CHECKING:
    from exchnode.aio._node import Node

__all__ = [
    "CATALOG_CHANGED_PATH",
    "CATALOG_FEED_PATH",
    "CATALOG_LOOKUP_PATH",
    "CATALOG_RECORDS_PATH",
    "CATALOG_SUMMARY_PATH",
    "CATALOG_VERSIONS_PATH",
    "STATE_KEY",
    "CatalogService",
    "Found",
    "read_catalog_rows",
]

_Asked = TypeVar("_Asked")  # what a request to an endpoint decodes to

CATALOG_SUMMARY_PATH = "/exchnode/v1/catalog/summary"
CATALOG_VERSIONS_PATH = "/exchnode/v1/catalog/versions"
CATALOG_RECORDS_PATH = "/exchnode/v1/catalog/records"
CATALOG_CHANGED_PATH = "/exchnode/v1/catalog/changed"
CATALOG_FEED_PATH = "/exchnode/v1/catalog/feed"
CATALOG_LOOKUP_PATH = "/exchnode/v1/catalog/lookup"
_CONTENT_TYPE = "application/vnd.exchnode.catalog+msgpack"
#: Format 1's single stored value, migrated to rows at the first start (auditors read the rows).
STATE_KEY = "catalog"
_RETRY_SOON = 1.0  # seconds: a pull that skipped records for an unknown signer
_ROWS_PAGE = 1000


class Found(NamedTuple):
    """A search beyond this node: one page of results, whether every hub asked answered, more."""

    records: list[CatalogRecord]
    complete: bool
    more: bool


async def read_catalog_rows(node: Node) -> list[tuple[str, bytes]]:
    """Every catalog row of ``node``'s store, page by page (for ``CatalogState.from_rows``)."""
    rows: list[tuple[str, bytes]] = []
    after = ""
    while True:
        page = await node.meta_range(ROWS_PREFIX, after=after, limit=_ROWS_PAGE)
        rows.extend(page)
        if len(page) < _ROWS_PAGE:
            return rows
        after = page[-1][0]


class CatalogService:
    """The node's catalog: see the module docstring."""

    kinds: frozenset[str] = frozenset()  # the catalog moves over neighbour endpoints

    def __init__(
        self,
        *,
        refresh: float = 60.0,
        events: EventSink | None = None,
        lookup_timeout: float = 10.0,
        max_cached: int | None = None,
    ) -> None:
        if refresh <= 0:
            raise UsageError(f"refresh must be positive seconds, got {refresh!r}")
        if lookup_timeout <= 0:
            raise UsageError(f"lookup_timeout must be positive seconds, got {lookup_timeout!r}")
        self.refresh = refresh
        self.lookup_timeout = lookup_timeout
        self.max_cached = max_cached
        self.events = events
        self._node: Node | None = None
        self._state: CatalogState | None = None
        self._verifier: CatalogVerifier | None = None
        self._neighbours: dict[str, Neighbour] = {}
        self._parent: str | None = None
        self._pullers: dict[str, FeedPuller] = {}
        self._format1: set[str] = set()  # neighbours that answered 404 on format 2's endpoints
        self._asking: dict[bytes, asyncio.Future[tuple[list[CatalogRecord], bool, bool]]] = {}
        self._wake = asyncio.Event()
        self._pull_from: set[str] = set()
        self._changed = asyncio.Condition()
        self._lock = asyncio.Lock()  # one write of the state's rows at a time
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
        parents = [n for n, b in self._neighbours.items() if b.relation is Relation.PARENT]
        self._parent = parents[0] if parents else None
        self._state = await self._load(node)
        rows = await read_catalog_rows(node)
        positions = {key: value for key, value in rows if key.startswith(position_key(""))}
        for name, neighbour in self._neighbours.items():
            if neighbour.relation is not Relation.CHILD:
                continue
            stored = positions.get(position_key(name))
            position = None
            if stored is not None:
                with contextlib.suppress(RejectedError):
                    position = decode_position(position_key(name), stored)
            self._pullers[name] = FeedPuller(neighbour, position)
        node.run_task(self._sync, "catalog")

    async def peers_changed(self) -> None:
        """The neighbours changed while the node runs: a new child's feed is pulled afresh."""
        node, _ = self._running()
        now = node.neighbours()
        for name in [n for n in self._neighbours if n not in now]:
            del self._neighbours[name]
            self._pullers.pop(name, None)
        for name, relation in now.items():
            if name in self._neighbours:
                continue
            neighbour = Neighbour(NodeName.parse(name), relation)
            self._neighbours[name] = neighbour
            if relation is Relation.CHILD:
                self._pullers[name] = FeedPuller(neighbour, None)
            self._pull_from.add(name)
        self._wake.set()

    async def _load(self, node: Node) -> CatalogState:
        """The stored rows; else format 1's value, migrated; else a new state with a new feed."""
        rows = await read_catalog_rows(node)
        if rows:
            try:
                return CatalogState.from_rows(rows, node.name, max_cached=self.max_cached)
            except RejectedError as exc:
                # Our own store: a damaged copy is re-learnt from the children (a new feed
                # id makes the parent list this node's subtree again).
                self.log.error("stored catalog not used", code=exc.code, reason=str(exc))
                await node.update_meta(dict.fromkeys((k for k, _ in rows), None))
        fresh = CatalogState(
            node.name, feed_id=os.urandom(FEED_ID_BYTES), max_cached=self.max_cached
        )
        old = await node.get_meta(STATE_KEY)
        if old is None:
            await node.update_meta(fresh.take_rows())
            return fresh
        try:
            state = CatalogState.from_snapshot(
                old, node.name, feed_id=fresh.feed_id, max_cached=self.max_cached
            )
        except RejectedError as exc:
            self.log.error("format 1 catalog not migrated", code=exc.code, reason=str(exc))
            state = fresh
        changes: dict[str, bytes | None] = {**state.all_rows(), STATE_KEY: None}
        await node.update_meta(changes)  # one transaction: rows in, the old value out
        state.take_rows()
        self.log.info("catalog migrated to rows", records=len(state))
        return state

    def routes(self) -> Mapping[tuple[str, str], Handler]:
        return {
            ("GET", CATALOG_SUMMARY_PATH): self._serve_summary,
            ("POST", CATALOG_VERSIONS_PATH): self._serve_versions,
            ("POST", CATALOG_RECORDS_PATH): self._serve_records,
            ("POST", CATALOG_CHANGED_PATH): self._announced,
            ("POST", CATALOG_FEED_PATH): self._serve_feed,
            ("POST", CATALOG_LOOKUP_PATH): self._serve_lookup,
        }

    async def take(self, message: ServiceMessage) -> None:
        raise UsageError("the catalog takes no messages")  # kinds is empty: never called

    async def close(self) -> None:
        for pending in list(self._asking.values()):
            pending.cancel()

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
            await node.update_meta(state.take_rows())
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
        """The record this node holds (its subtree's, or cached); see ``lookup`` for the rest."""
        return self.state.get(provider, code)

    async def lookup(self, provider: str, code: str) -> CatalogRecord | None:
        """The record of ``provider``'s ``code``: held here, else asked up the tree (§18.12).

        None if no hub up to the top knows it (or none could be asked in time).
        """
        held = self.state.get(provider, code)
        if held is not None:
            return held
        answer = await self._resolve(LookupRequest((Wanted(provider, code, 0),)))
        for data in answer.records:
            record = decode_record(data)  # from this node's state: verified when merged
            if (record.provider, record.code) == (provider, code):
                return record
        return None

    async def search_beyond(self, query: CatalogQuery) -> Found:
        """``query`` answered by the hubs up the tree that cover its scope (§18.12).

        A sync ``search`` stays the search of what this node holds: a call that
        may wait on the network is a different call, not a flag.
        """
        answer = await self._resolve(LookupRequest((), query))
        records = sorted(
            (decode_record(data) for data in answer.records), key=lambda r: (r.code, r.provider)
        )
        return Found(records, answer.complete, answer.more)

    async def wait_for(
        self, provider: str, code: str, *, version: int = 1, timeout: float | None = None
    ) -> CatalogRecord:
        """Wait until this node holds ``version`` (or newer) of ``provider``'s ``code``.

        A record of this node's subtree arrives by its feed; one from beyond
        that it does not hold is looked up (again every second while it is
        missing); one it caches is renewed by the refresh from its parent.
        """

        async def held() -> CatalogRecord:
            while True:
                record = self.state.get(provider, code)
                if record is not None and record.version >= version:
                    return record
                if record is None and not self.state.holds_subtree(provider):
                    record = await self.lookup(provider, code)
                    if record is not None and record.version >= version:
                        return record
                async with self._changed:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), _RETRY_SOON)

        return await asyncio.wait_for(held(), timeout)

    # --- lookups (§18.12) ------------------------------------------------------------

    async def _resolve(self, request: LookupRequest) -> LookupAnswer:
        """Answer ``request`` from this node, asking its parent what it does not hold."""
        _, state = self._running()
        plan = state.answer(request)
        if plan.ask is None or self._parent is None:
            return state.finish(plan, complete=True)
        above, complete, more = await self._ask_parent(plan.ask)
        return state.finish(plan, above, complete=complete, more=more)

    async def _ask_parent(self, ask: LookupRequest) -> tuple[list[CatalogRecord], bool, bool]:
        """The parent's verified answer to ``ask``; identical questions in flight are asked once."""
        body = ask.encode()
        pending = self._asking.get(body)
        if pending is None:
            pending = asyncio.ensure_future(self._ask_parent_once(ask, body))
            self._asking[body] = pending
            pending.add_done_callback(lambda _: self._asking.pop(body, None))
        return await asyncio.shield(pending)

    async def _ask_parent_once(
        self, ask: LookupRequest, body: bytes
    ) -> tuple[list[CatalogRecord], bool, bool]:
        node, _ = self._running()
        parent = self._parent
        assert parent is not None
        try:
            data = await asyncio.wait_for(
                node.request(parent, "POST", CATALOG_LOOKUP_PATH, body), self.lookup_timeout
            )
            answer = LookupAnswer.decode(data)
        except LinkError as exc:
            if exc.status == 404:
                return await self._lookup_format1(parent, ask)
            self.log.info("catalog lookup not answered", neighbour=parent, error=str(exc))
            return [], False, False
        except (ExchnodeError, TimeoutError) as exc:
            self.log.info("catalog lookup not answered", neighbour=parent, error=str(exc))
            return [], False, False
        merged = await self._merge(parent, answer.records)
        return merged.records, answer.complete, answer.more

    async def _lookup_format1(
        self, parent: str, ask: LookupRequest
    ) -> tuple[list[CatalogRecord], bool, bool]:
        """A parent of format 1: a §18.7 pull that asks for the looked-up keys too; no search."""
        self._format1.add(parent)
        _, state = self._running()
        keys = {(k.provider, k.code) for k in ask.keys}
        await self._pull_format1(parent, asked=keys)
        found = [r for r in (state.get(p, c) for p, c in sorted(keys)) if r is not None]
        return found, ask.query is None, False

    async def _refresh_from_parent(self) -> bool:
        """Ask the parent what is newer of what this node caches (§18.12); whether it changed."""
        _, state = self._running()
        parent = self._parent
        if parent is None:
            return False
        if parent in self._format1:
            return await self._pull_format1(parent, asked=())
        cached = state.cached_versions()
        changed = False
        for start in range(0, len(cached), MAX_LOOKUP_KEYS):
            page = LookupRequest(tuple(cached[start : start + MAX_LOOKUP_KEYS]))
            before = len(self._format1)
            records, _, _ = await self._ask_parent_once(page, page.encode())
            changed = changed or bool(records)
            if len(self._format1) != before:
                break  # the parent turned out to be of format 1: pulled by §18.7 already
        return changed

    async def _recover_own(self) -> None:
        """A department starting with no records of its own asks its parent for them (§18.12).

        After a lost store, so that its next version follows the highest it
        signed before (§18.5); the parent's subtree holds every one of them.
        """
        node, state = self._running()
        if state.me.is_hub or self._parent is None:
            return
        if any(True for _ in state.subtree()):
            return
        query = CatalogQuery(provider=node.name, status=None, limit=1000)
        while True:
            ask = LookupRequest((), query)
            records, _, more = await self._ask_parent_once(ask, ask.encode())
            if not more or not records:
                break
            last = max((r.code, r.provider) for r in records)
            query = CatalogQuery(provider=node.name, status=None, limit=1000, after=last)
        recovered = sum(1 for _ in state.subtree())
        if recovered:
            self.log.info("own catalog entries recovered from the parent", records=recovered)
            await self._after_change()

    # --- feeds (§18.11): the puller ----------------------------------------------------

    async def _sync(self) -> None:
        # The node's links exist only once it serves: before that, every call would fail.
        await self._running()[0].ready()
        await self._recover_own()
        first, last_full, retry = True, 0.0, False
        while True:
            node, _ = self._running()
            now = node.now()
            full = first or retry or now - last_full >= self.refresh
            if full:
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
                await self._after_change()
            first = False
            await wait_event(self._wake, _RETRY_SOON if retry else self.refresh)

    async def _pull(self, name: str) -> tuple[bool, bool]:
        """One exchange with ``name``: (whether the state changed, whether to retry soon)."""
        relation = self._neighbours[name].relation
        try:
            if relation is Relation.PARENT:
                return await self._refresh_from_parent(), False
            if relation is not Relation.CHILD:
                return False, False  # links carry no catalog (§18.6)
            if name in self._format1:
                return await self._pull_format1(name), False
            return await self._pull_feed(name)
        except ExchnodeError as exc:
            self.log.info("catalog not pulled", neighbour=name, error=str(exc))
            return False, False

    async def _pull_feed(self, name: str) -> tuple[bool, bool]:
        node, state = self._running()
        puller = self._pullers[name]
        assert self._verifier is not None
        changed = False
        while True:
            try:
                data = await node.request(
                    name, "POST", CATALOG_FEED_PATH, puller.request().encode()
                )
            except LinkError as exc:
                if exc.status != 404:
                    raise
                self._format1.add(name)
                self.log.info("catalog neighbour speaks format 1", neighbour=name)
                return await self._pull_format1(name), False
            page = RecordPage.decode(data)
            async with self._lock:
                merged = puller.take(state, page, self._verifier)
                rows = state.take_rows()
                if puller.position is not None:
                    rows[position_key(name)] = encode_position(puller.position)
                await node.update_meta(rows)
            self._report(name, merged)
            changed = changed or bool(merged.learnt)
            if merged.waiting:
                return changed, True
            if not page.more:
                return changed, False

    async def _pull_format1(self, name: str, asked: Iterable[tuple[str, str]] = ()) -> bool:
        """§18.7 with a neighbour of format 1, within the new scope; whether it changed."""
        node, state = self._running()
        source = self._neighbours[name]
        summary = Summary.decode(await node.request(name, "GET", CATALOG_SUMMARY_PATH))
        providers = state.diff(summary, source, asked=asked)
        if not providers:
            return False
        versions = decode_versions(
            await node.request(name, "POST", CATALOG_VERSIONS_PATH, encode_providers(providers))
        )
        wanted = state.wanted(versions, source, asked=asked)
        if not wanted:
            return False
        records = decode_records(
            await node.request(name, "POST", CATALOG_RECORDS_PATH, encode_wanted(wanted))
        )
        return bool((await self._merge(name, records)).learnt)

    async def _merge(self, name: str, records: Sequence[bytes]) -> Merged:
        node, state = self._running()
        assert self._verifier is not None
        async with self._lock:
            merged = merge_verified(state, records, self._neighbours[name], self._verifier)
            await node.update_meta(state.take_rows())
        self._report(name, merged)
        return merged

    def _report(self, name: str, merged: Merged) -> None:
        if merged.waiting:
            self.log.info("catalog record waits for its signer", neighbour=name)
        for data, exc in merged.refused:
            # Altered on the way, signed by someone else than its provider, or equivocation.
            self.log.warning(
                "catalog record refused", neighbour=name, code=exc.code, reason=str(exc)
            )
            self._emit_refusal(name, exc, data)
        for record in merged.learnt:
            self._emit("catalog.learn", record, counterpart=name)

    async def _after_change(self) -> None:
        """Wake local waiters; tell the parent (its feed pull) and format-1 children (§18.7)."""
        node, _ = self._running()
        async with self._changed:
            self._changed.notify_all()

        async def tell(name: str) -> None:
            with contextlib.suppress(ExchnodeError):
                await node.request(name, "POST", CATALOG_CHANGED_PATH)

        told = [n for n in self._neighbours if n == self._parent or n in self._format1]
        await asyncio.gather(*(tell(name) for name in told))

    # --- serving -------------------------------------------------------------------------

    def _neighbour(self, name: str) -> Neighbour | None:
        return self._neighbours.get(name)

    def _caller(
        self, name: str, relation: Relation | None = None, refusal: str = ""
    ) -> Neighbour | web.Response:
        """The neighbour calling an endpoint, if its relation may (format 1's: any); else the
        404 or 403."""
        neighbour = self._neighbour(name)
        if neighbour is None:
            return _not_a_neighbour(name)
        if relation is not None and neighbour.relation is not relation:
            return web.Response(status=403, text=f"{name}: {refusal}")
        return neighbour

    async def _serve_feed(self, name: str, request: web.Request) -> web.StreamResponse:
        refusal = "a node serves its feed to its parent only"
        asked = await _asked(
            self._caller(name, Relation.PARENT, refusal), request, FeedRequest.decode
        )
        if isinstance(asked, web.Response):
            return asked
        neighbour, feed = asked
        return _answer(self.state.feed_page(feed, neighbour).encode())

    async def _serve_lookup(self, name: str, request: web.Request) -> web.StreamResponse:
        refusal = "a node answers its children's lookups only"
        asked = await _asked(
            self._caller(name, Relation.CHILD, refusal), request, LookupRequest.decode
        )
        if isinstance(asked, web.Response):
            return asked
        return _answer((await self._resolve(asked[1])).encode())

    async def _serve_summary(self, name: str, request: web.Request) -> web.StreamResponse:
        neighbour = self._neighbour(name)
        if neighbour is None:
            return _not_a_neighbour(name)
        try:
            return _answer(self.state.summary(to=neighbour).encode())
        except TooLargeError as exc:
            return _too_large(exc)

    async def _serve_versions(self, name: str, request: web.Request) -> web.StreamResponse:
        asked = await _asked(self._caller(name), request, decode_providers, format1=True)
        if isinstance(asked, web.Response):
            return asked
        neighbour, providers = asked
        try:
            return _answer(encode_versions(self.state.versions(providers, to=neighbour)))
        except TooLargeError as exc:
            return _too_large(exc)

    async def _serve_records(self, name: str, request: web.Request) -> web.StreamResponse:
        asked = await _asked(self._caller(name), request, decode_wanted, format1=True)
        if isinstance(asked, web.Response):
            return asked
        neighbour, wanted = asked
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


async def _asked(
    caller: Neighbour | web.Response,
    request: web.Request,
    decode: Callable[[bytes], _Asked],
    *,
    format1: bool = False,
) -> tuple[Neighbour, _Asked] | web.Response:
    """The calling neighbour and what it asks, decoded; else the refusal (404, 403) or 400."""
    if isinstance(caller, web.Response):
        return caller
    try:
        return caller, decode(await request.read())
    except RejectedError as exc:
        return _bad_request(exc, format1=format1)


def _answer(body: bytes) -> web.Response:
    return web.Response(body=body, content_type=_CONTENT_TYPE)


def _bad_request(exc: RejectedError, *, format1: bool = False) -> web.Response:
    """400 naming the code and field; a format-1 request beyond its limits is a 413 (§18.10)."""
    if format1 and isinstance(exc, TooLargeError):
        return _too_large(exc)
    return web.Response(status=400, text=f"[{exc.code}] {exc}")


def _too_large(exc: TooLargeError) -> web.Response:
    """A limit exceeded: refused, saying why and what to do (SPEC §18.10)."""
    hint = "" if "format 2" in str(exc) else "; upgrade to catalog format 2 (SPEC §18.10)"
    return web.Response(status=413, text=f"[{exc.code}] {exc}{hint}")


def _not_a_neighbour(name: str) -> web.Response:
    return web.Response(status=403, text=f"{name} is not a neighbour")
