"""Prometheus metrics at ``GET /metrics``: the node's state, read when it is scraped.

Theory of operation
-------------------
Nearly everything an operator graphs is state the node holds anyway, so a
custom collector (:class:`NodeCollector`) reads it at scrape time and keeps no
bookkeeping of its own: queues, link states, the directory, the catalog,
subscription requests, the audit log's head, certificate and CRL dates.  The
few numbers state does not hold -- traffic per link, refusals by reason,
custody times -- the library counts with an integer increment on its path
(``exchnode.aio``'s ``Node.metrics``, no lock, no I/O); the collector only
reads them.

**Cost.**  What needs the store -- queue depths per next hop (``Node.stats``:
memory for SQLite, one query per non-empty queue for PostgreSQL) -- is read
at most once per :data:`STORE_EVERY` seconds, however often Prometheus
scrapes, and within :data:`STORE_TIMEOUT` seconds: a store that does not
answer leaves the last numbers (``exchnode_metrics_store_age_seconds`` shows
how old), never a hung scrape.  The rest is O(neighbours) in memory;
exposition is prometheus-client's.  Labels are bounded: a neighbour (the
configured peers), a relation, a direction, a reason code (the library
bounds those), a CA's or certificate's subject; never a message, a sender,
a payload or a token.

**Access.**  Monitoring data is no secret, but it says who talks to whom and
how much; ``/metrics`` is an area of ``node.roles`` that admits the auditor and
the administrator, and nobody without a token.  Give Prometheus the auditor's
token (read-only): never the operator's, which can send as the department.

The metric names are listed in :data:`METRICS` (the Grafana dashboard in
``deploy/grafana/`` may use only these: ``tests/integration/test_daemon_metrics.py``).
"""

from __future__ import annotations

import asyncio
import platform
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING

import structlog
from aiohttp import web
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from exchnode.aio import HistogramSnapshot, Node, NodeMetrics, NodeStats
from exchnode.errors import ExchnodeError, UsageError
from exchnode.pki import CrlSet
from exchnode.sharing import RequestState

from .api import peer_state_json
from .peer_health import refusals_by_peer

if TYPE_CHECKING:
    from cryptography import x509

    from exchnode.aio import AuditService, CatalogService, SharingService

    from .inbox import Inbox
    from .operator import Handler

__all__ = ["METRICS", "STORE_EVERY", "STORE_TIMEOUT", "MetricsApi", "NodeCollector"]

#: The text format every Prometheus reads (the names here need none of 1.0.0's escaping).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Seconds between two reads of the store's queue depths, however often the node is scraped.
STORE_EVERY = 2.0
#: Seconds a scrape waits for the store before it serves the last depths read.
STORE_TIMEOUT = 3.0

#: The node's counters (``Node.stats().counters``) as Prometheus counters: name, help.
COUNTERS: dict[str, tuple[str, str]] = {
    "accepted": ("exchnode_envelopes_accepted", "Envelopes taken into custody."),
    "duplicates": ("exchnode_envelopes_duplicate", "Envelopes this node already held."),
    "refused": ("exchnode_envelopes_refused", "Envelopes refused from neighbours."),
    "deferred": ("exchnode_envelopes_deferred", "Envelopes deferred (full, or not verifiable)."),
    "forwarded": ("exchnode_envelopes_forwarded", "Envelopes a next hop took into custody."),
    "delivered": ("exchnode_envelopes_delivered", "Envelopes the application acknowledged."),
    "reports_sent": ("exchnode_reports_sent", "Non-delivery reports sent."),
    "receipts_sent": ("exchnode_receipts_sent", "Delivery receipts sent."),
    "receipts_refused": ("exchnode_receipts_refused", "Receipts that did not count as delivery."),
    "link_failures": ("exchnode_link_failures", "Transfers to neighbours that failed."),
    "revoked": ("exchnode_envelopes_revoked", "Envelopes ended here: their sender is revoked."),
    "pushed_back": ("exchnode_transfers_pushed_back", "Transfers answered 429: bytes in flight."),
    "cut_through": (
        "exchnode_envelopes_cut_through",
        "Envelopes sent on before this node's own commit of them returned.",
    ),
}

#: Every metric family this module exposes (prometheus-client's own come on top).
METRICS: tuple[str, ...] = (
    "exchnode_build_info",
    "exchnode_node_info",
    "exchnode_serving",
    "exchnode_metrics_store_age_seconds",
    "exchnode_queue_messages",
    "exchnode_queue_bytes",
    "exchnode_queue_oldest_age_seconds",
    "exchnode_queued_messages",
    "exchnode_queued_bytes",
    "exchnode_inbox_messages",
    "exchnode_inbox_bytes",
    "exchnode_inbox_oldest_age_seconds",
    "exchnode_operator_deliveries",
    "exchnode_link_state",
    "exchnode_link_consecutive_failures",
    "exchnode_link_transfers",
    "exchnode_link_messages",
    "exchnode_link_bytes",
    "exchnode_refusals",
    "exchnode_refusals_standing",
    "exchnode_custody_seconds",
    "exchnode_directory_nodes",
    "exchnode_catalog_entries",
    "exchnode_subscription_requests",
    "exchnode_subscriptions_held",
    "exchnode_sharing_parked_messages",
    "exchnode_audit_records",
    "exchnode_audit_head_size",
    "exchnode_audit_head_age_seconds",
    "exchnode_certificate_expiry_seconds",
    "exchnode_crl_next_update_seconds",
    "exchnode_crl_missing",
    *(name for name, _ in COUNTERS.values()),
)


@dataclass(slots=True)
class _StoreRead:
    """What the last read of the store gave, and when (monotonic seconds)."""

    stats: NodeStats | None = None
    at: float = 0.0
    pending: asyncio.Task[NodeStats] | None = field(default=None, repr=False)


class NodeCollector(Collector):
    """The node's state as metric families, read at each scrape (sync: prometheus-client's)."""

    def __init__(
        self,
        node: Node,
        *,
        audit: AuditService | None = None,
        catalog: CatalogService | None = None,
        sharing: SharingService | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.node = node
        self.audit = audit
        self.catalog = catalog
        self.sharing = sharing
        self.clock = clock
        self.serving: Callable[[], bool] = lambda: True
        self.inbox: Inbox | None = None  # the operator API's, once it exists
        #: the store's numbers, as last read (:meth:`MetricsApi.refresh`)
        self.stats: NodeStats | None = None
        self.stats_age: float | None = None
        self._version = _version()

    def describe(self) -> Iterable[Metric]:
        return ()  # families depend on state: the registry calls collect, not this

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        node = self.node
        live = node.metrics()
        yield from self._info()
        yield from self._queues(live, now)
        yield from self._links(live)
        yield from self._custody(live.custody)
        yield from self._refusals(live)
        yield from self._counters(live.counters)
        yield from self._services(now)
        yield from self._expiry(now)

    # --- the families ------------------------------------------------------------------

    def _info(self) -> Iterator[Metric]:
        build = GaugeMetricFamily(
            "exchnode_build_info",
            "The exchnode version this daemon runs, and its Python.",
            labels=["version", "python_version"],
        )
        build.add_metric([self._version, platform.python_version()], 1)
        yield build
        info = GaugeMetricFamily("exchnode_node_info", "The node's name.", labels=["node"])
        info.add_metric([self.node.name], 1)
        yield info
        yield GaugeMetricFamily(
            "exchnode_serving",
            "1 while the node serves (0: starting or draining).",
            value=1 if self.serving() else 0,
        )
        age = GaugeMetricFamily(
            "exchnode_metrics_store_age_seconds",
            "Age of the queue depths read from the store (read at most every few seconds).",
            labels=[],
        )
        if self.stats_age is not None:
            age.add_metric([], self.stats_age)
        yield age

    def _queues(self, live: NodeMetrics, now: float) -> Iterator[Metric]:
        relations = {name: link.relation for name, link in live.links.items()}
        stats = self.stats
        peer = ["peer", "relation"]
        count = GaugeMetricFamily(
            "exchnode_queue_messages",
            "Entries queued for a next hop (expired ones until taken).",
            labels=peer,
        )
        size = GaugeMetricFamily(
            "exchnode_queue_bytes", "Envelope bytes queued for a next hop.", labels=peer
        )
        totals = {
            name: GaugeMetricFamily(name, text, labels=[])
            for name, text in (
                ("exchnode_queued_messages", "Entries queued in all, outbound and inbox."),
                ("exchnode_queued_bytes", "Envelope bytes queued in all."),
                ("exchnode_inbox_messages", "Entries waiting in the inbox for the application."),
                ("exchnode_inbox_bytes", "Envelope bytes in the inbox."),
            )
        }
        if stats is not None:  # None: the store has not answered yet
            for hop in sorted(set(relations) | set(stats.outbound)):
                depth = stats.outbound.get(hop)
                labels = [hop, relations.get(hop, "none")]
                count.add_metric(labels, depth.count if depth is not None else 0)
                size.add_metric(labels, depth.bytes if depth is not None else 0)
            totals["exchnode_queued_messages"].add_metric([], stats.queued.count)
            totals["exchnode_queued_bytes"].add_metric([], stats.queued.bytes)
            totals["exchnode_inbox_messages"].add_metric([], stats.inbox.count)
            totals["exchnode_inbox_bytes"].add_metric([], stats.inbox.bytes)
        yield from (count, size, *totals.values())
        oldest = GaugeMetricFamily(
            "exchnode_queue_oldest_age_seconds",
            "Seconds since the oldest entry waiting for a next hop was taken into custody "
            "(absent: nothing waits, or not known yet).",
            labels=["peer", "relation"],
        )
        for name, link in sorted(live.links.items()):
            if link.oldest_ms is not None:
                oldest.add_metric([name, link.relation], max(now - link.oldest_ms / 1000, 0.0))
        yield oldest
        inbox_oldest = GaugeMetricFamily(
            "exchnode_inbox_oldest_age_seconds",
            "Seconds since the oldest delivery the application has not acknowledged was taken "
            "into custody (absent: none).",
            labels=[],
        )
        if live.inbox_oldest_ms is not None:
            inbox_oldest.add_metric([], max(now - live.inbox_oldest_ms / 1000, 0.0))
        yield inbox_oldest
        held = GaugeMetricFamily(
            "exchnode_operator_deliveries",
            "Deliveries the operator API holds for its clients: waiting, or leased.",
            labels=["state"],
        )
        if self.inbox is not None:
            held.add_metric(["held"], self.inbox.held)
            held.add_metric(["leased"], self.inbox.leased)
        yield held

    def _links(self, live: NodeMetrics) -> Iterator[Metric]:
        """Per neighbour: its state, and what moved over its link.

        On a hub of thousands of children most links are quiet, so a link
        costs one series while it is quiet and up: its state.  The state is one
        series (``state`` the current one, value 1) rather than one per possible
        state; failures are shown while there are some; traffic counters appear
        once they count something (as a client library's labelled children do).
        """
        refused = refusals_by_peer(self.stats.refusals) if self.stats is not None else {}
        now_ms = int(self.clock() * 1000)
        peer = ["peer", "relation"]
        state = GaugeMetricFamily(
            "exchnode_link_state",
            "1, labelled with the link's current state: up, down, unknown (never tried), refused.",
            labels=[*peer, "state"],
        )
        failures = GaugeMetricFamily(
            "exchnode_link_consecutive_failures",
            "Failed attempts since the link last worked (absent: none).",
            labels=peer,
        )
        transfers = CounterMetricFamily(
            "exchnode_link_transfers",
            "Transfers over the link: sent and answered, sent and failed, received.",
            labels=[*peer, "direction", "result"],
        )
        messages = CounterMetricFamily(
            "exchnode_link_messages",
            "Envelopes over the link, each way, by what became of them.",
            labels=[*peer, "direction", "result"],
        )
        sizes = CounterMetricFamily(
            "exchnode_link_bytes",
            "Envelope bytes: taken by the neighbour (out), received from it (in).",
            labels=[*peer, "direction"],
        )
        for name, link in sorted(live.links.items()):
            labels = [name, link.relation]
            current = "refused" if name in refused else peer_state_json(link.state, now_ms)["state"]
            state.add_metric([*labels, current], 1)
            if link.state.failures:
                failures.add_metric(labels, link.state.failures)
            for direction, result, number in (
                ("out", "answered", link.transfers_out),
                ("out", "failed", link.transfers_failed),
                ("in", "received", link.transfers_in),
            ):
                if number:
                    transfers.add_metric([*labels, direction, result], number)
            for direction, items in (("out", link.items_out), ("in", link.items_in)):
                for result, number in items.items():
                    if number:
                        messages.add_metric([*labels, direction, result], number)
            if link.bytes_out:
                sizes.add_metric([*labels, "out"], link.bytes_out)
            if link.bytes_in:
                sizes.add_metric([*labels, "in"], link.bytes_in)
        yield from (state, failures, transfers, messages, sizes)

    def _custody(self, custody: Mapping[str, HistogramSnapshot]) -> Iterator[Metric]:
        family = HistogramMetricFamily(
            "exchnode_custody_seconds",
            "Seconds from the commit that took an envelope into custody to its handover: the "
            "next hop's TAKEN (destination: its relation) or delivery here (local).",
            labels=["destination"],
        )
        for destination, histogram in sorted(custody.items()):
            running = 0
            buckets: list[tuple[str, float]] = []
            for bound, number in zip(histogram.bounds, histogram.counts, strict=False):
                running += number
                buckets.append((_float_text(bound), running))
            buckets.append(("+Inf", histogram.count))
            family.add_metric([destination], buckets, histogram.total)
        yield family

    def _refusals(self, live: NodeMetrics) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "exchnode_refusals",
            "Refusals by who refused (node: this node; peer: a neighbour), where, and why.",
            labels=["by", "kind", "reason"],
        )
        for (by, kind, reason), number in sorted(live.refusals.items()):
            family.add_metric([by, kind, reason], number)
        yield family
        if self.stats is not None:
            standing = GaugeMetricFamily(
                "exchnode_refusals_standing",
                "Refusals between this node and a peer not ended since, by direction.",
                labels=["by"],
            )
            mine = sum(1 for r in self.stats.refusals if r.by == self.node.name)
            standing.add_metric(["node"], mine)
            standing.add_metric(["peer"], len(self.stats.refusals) - mine)
            yield standing

    def _counters(self, counters: Mapping[str, int]) -> Iterator[Metric]:
        for key, (name, text) in COUNTERS.items():
            if key in counters:
                yield CounterMetricFamily(name, text, value=counters[key])

    def _services(self, now: float) -> Iterator[Metric]:
        node = self.node
        signed = node.node_directory
        directory = GaugeMetricFamily(
            "exchnode_directory_nodes", "Nodes whose keys the directory holds.", labels=["mode"]
        )
        if signed is not None:
            directory.add_metric(["signed"], len(signed.names(now)))
        else:
            names = getattr(node.directory, "names", None)
            if callable(names):
                directory.add_metric(["static"], len(names()))
        yield directory
        catalog = GaugeMetricFamily(
            "exchnode_catalog_entries",
            "Catalog records held (this node's subtree and what it cached).",
            labels=[],
        )
        if self.catalog is not None:
            with _not_started():
                catalog.add_metric([], len(self.catalog.state))
        yield catalog
        yield from self._sharing()
        yield from self._audit(now)

    def _sharing(self) -> Iterator[Metric]:
        """Requests as provider, grants and parked messages: none at a hub (it has neither)."""
        sharing = self.sharing
        requests = GaugeMetricFamily(
            "exchnode_subscription_requests",
            "Subscription requests this node received as provider, by state (pending: waiting "
            "for an answer).",
            labels=["state"],
        )
        held = GaugeMetricFamily(
            "exchnode_subscriptions_held", "Grants this node holds as subscriber.", labels=[]
        )
        parked = GaugeMetricFamily(
            "exchnode_sharing_parked_messages",
            "Subscription messages the node refused for good, waiting for an operator.",
            labels=[],
        )
        if sharing is not None:
            with _not_started():
                counts = dict.fromkeys((state.value for state in RequestState), 0)
                for request in sharing.requests():
                    state = sharing.state(request.request_id)
                    if state is not None:
                        counts[state.value] += 1
                for state_name, number in counts.items():
                    requests.add_metric([state_name], number)
            with _not_started():
                held.add_metric([], len(sharing.held()))
            with _not_started():
                parked.add_metric([], len(sharing.parked()))
        yield from (requests, held, parked)

    def _audit(self, now: float) -> Iterator[Metric]:
        records = GaugeMetricFamily(
            "exchnode_audit_records",
            "Records in the audit log (pending ones included).",
            labels=[],
        )
        head_size = GaugeMetricFamily(
            "exchnode_audit_head_size", "Records under the newest signed tree head.", labels=[]
        )
        head_age = GaugeMetricFamily(
            "exchnode_audit_head_age_seconds",
            "Seconds since the newest signed tree head (signed every head_interval while the "
            "log grows; absent before the first).",
            labels=[],
        )
        if self.audit is not None:
            with _not_started():
                records.add_metric([], self.audit.size)
                head = self.audit.last_head
                if head is not None:
                    head_size.add_metric([], head.tree_size)
                    head_age.add_metric([], max(now - head.timestamp_ms / 1000, 0.0))
        yield from (records, head_size, head_age)

    def _expiry(self, now: float) -> Iterator[Metric]:
        certificates = GaugeMetricFamily(
            "exchnode_certificate_expiry_seconds",
            "Seconds until notAfter: the node's own chain and the trusted roots (negative: "
            "expired).",
            labels=["subject", "kind"],
        )
        seen: set[tuple[str, str]] = set()
        identity = self.node.identity
        if identity.peer.certificate is not None:
            _add_expiry(certificates, identity.peer.certificate, "node", now, seen)
        for ca in identity.chain:
            _add_expiry(certificates, ca, "ca", now, seen)
        for root in self.node.trust.roots:
            _add_expiry(certificates, root, "root", now, seen)
        yield certificates
        crls = GaugeMetricFamily(
            "exchnode_crl_next_update_seconds",
            "Seconds until a CA's newest CRL's nextUpdate (past it, every node fails closed on "
            "that CA's chains).",
            labels=["issuer"],
        )
        held = CrlSet(self.node.trust.crls).crls
        for crl in held:
            next_update = crl.next_update_utc
            if next_update is not None:
                crls.add_metric([crl.issuer.rfc4514_string()], next_update.timestamp() - now)
        yield crls
        issuers = {crl.issuer for crl in held}
        cas = [*self.node.trust.roots, *self.node.ca_bundle]
        missing = {ca.subject for ca in cas if ca.subject not in issuers}
        yield GaugeMetricFamily(
            "exchnode_crl_missing",
            "CAs with no CRL at all: TLS to every node under them fails.",
            value=len(missing),
        )


def _add_expiry(
    family: GaugeMetricFamily,
    certificate: x509.Certificate,
    kind: str,
    now: float,
    seen: set[tuple[str, str]],
) -> None:
    subject = certificate.subject.rfc4514_string()
    if (subject, kind) in seen:
        return
    seen.add((subject, kind))
    family.add_metric([subject, kind], certificate.not_valid_after_utc.timestamp() - now)


class _not_started:
    """A service not started yet (or a hub asked for a provider's numbers): leave it out."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: object, tb: object) -> bool:
        return kind is not None and issubclass(kind, UsageError)


def _retrieved(task: asyncio.Task[NodeStats]) -> None:
    """A store read no scrape waited for to its end: its failure was logged by the scrape."""
    if not task.cancelled():
        task.exception()


class _Collected(Collector):
    """Families already collected, for ``generate_latest`` to write elsewhere."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def _float_text(bound: float) -> str:
    return repr(float(bound))


def _version() -> str:
    try:
        return metadata.version("exchnode")
    except metadata.PackageNotFoundError:
        return "unknown"


class MetricsApi:
    """The ``/metrics`` route group: the collector, its registry, and the store read's cache."""

    def __init__(
        self,
        node: Node,
        *,
        audit: AuditService | None = None,
        catalog: CatalogService | None = None,
        sharing: SharingService | None = None,
        process: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``process``: add prometheus-client's process, platform and GC collectors."""
        self.collector = NodeCollector(
            node, audit=audit, catalog=catalog, sharing=sharing, clock=clock
        )
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        if process:
            for default in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
                self.registry.register(default)
        self._store = _StoreRead()
        self.log = structlog.get_logger("node.metrics")

    def watch_inbox(self, inbox: Inbox, serving: Callable[[], bool]) -> None:
        """The operator API's deliveries and phase, for the exposition."""
        self.collector.inbox = inbox
        self.collector.serving = serving

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [("GET", "/metrics", self._metrics)]

    async def refresh(self) -> None:
        """Read the store's numbers if the last read is older than :data:`STORE_EVERY`.

        One read at a time: scrapes that come meanwhile wait for it, within
        :data:`STORE_TIMEOUT`, then go on with the last numbers.
        """
        store = self._store
        if store.stats is not None and time.monotonic() - store.at < STORE_EVERY:
            self.collector.stats_age = time.monotonic() - store.at
            return
        if store.pending is None or store.pending.done():
            store.pending = asyncio.get_running_loop().create_task(self.collector.node.stats())
            store.pending.add_done_callback(_retrieved)
        try:
            store.stats = await asyncio.wait_for(asyncio.shield(store.pending), STORE_TIMEOUT)
            store.at = time.monotonic()
        except TimeoutError:
            self.log.warning("metrics served without fresh queue depths: the store is slow")
        except ExchnodeError as exc:  # stopping between the guard and the store call
            self.log.warning("metrics served without fresh queue depths", error=str(exc))
        self.collector.stats = store.stats
        self.collector.stats_age = time.monotonic() - store.at if store.stats else None

    def exposition(self) -> bytes:
        """The text format, as prometheus-client writes it (in the calling thread)."""
        return generate_latest(self.registry)

    async def render(self) -> bytes:
        """The text format: the state read in the loop, the text written in a worker thread.

        Reading is a copy of the state (the loop's, so read in the loop);
        writing the text is most of a large scrape's time, and needs nothing
        of the loop, so it does not hold up the node's traffic.
        """
        families = _Collected(list(self.registry.collect()))
        return await asyncio.to_thread(generate_latest, families)

    async def _metrics(self, request: web.Request) -> web.Response:
        await self.refresh()
        response = web.Response(body=await self.render())
        response.headers["Content-Type"] = CONTENT_TYPE
        return response
