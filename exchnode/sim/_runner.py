"""Run a scenario: real nodes over the in-memory network under the virtual clock.

Theory of operation
-------------------
:func:`simulate` builds a :class:`~exchnode.sim.VirtualClockLoop` and runs
:class:`Simulation` on it.  The simulation is a harness, not a model: every
node is the library's ``exchnode.aio.Node`` with its real services, its
store a ``MemoryStore`` that outlives the node (so a node that goes down and
comes up again is a new ``Node`` over the same store, as after a restart),
its links the :class:`~exchnode.sim.MemoryNetwork`'s, its clock the virtual
wall clock (``start`` plus the loop's time) and its randomness a
``SeededRandom`` derived from the seed, the node's name and how many times it
started.

Everything that happens is planned from the seed before the run: the
messages (sender, recipient, virtual time: exponential gaps at the
scenario's rate) and the faults.  Nothing consults the wall clock, ``id()``
or a set's iteration order, so the same scenario gives the same
deterministic figures (``Report.deterministic``) whatever the process's hash
seed.

The application on each department is a small loop: it sends what the plan
says when it says it, with an idempotency key (a send that failed -- keys
not known yet, the node closing -- is retried a minute later; a sender that
is down sends nothing, counted as not sent), and it consumes and
acknowledges what is delivered, recording the virtual time.  Each message
carries its index in the plan, so the report can say, for every message
sent, whether it was delivered exactly once.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import random as random_module
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from exchnode.aio import (
    AuditService,
    CatalogService,
    Node,
    NodeConfig,
    NodeService,
    NodeTimers,
    Peer,
    WitnessService,
)
from exchnode.catalog import (
    CatalogEntry,
    DataItem,
    DataType,
    Openness,
    ResourceFormat,
    ShareMethod,
    ShareType,
    UpdateCycle,
)
from exchnode.core import NodeName, StaticDirectory
from exchnode.errors import ExchnodeError, UsageError
from exchnode.federation import Relation
from exchnode.pki import TrustStore
from exchnode.sim._clock import CURRENT_NODE, VirtualClockLoop
from exchnode.sim._faults import Fault
from exchnode.sim._network import MemoryNetwork
from exchnode.sim._report import (
    CatalogReport,
    LinkReport,
    MessageReport,
    NodeReport,
    RecoveryReport,
    Report,
)
from exchnode.sim._topology import Topology, province_topology
from exchnode.store import MemoryStore
from exchnode.testing import IssuedCA, IssuedNode, SeededRandom, SyntheticPKI

__all__ = ["SERVICES", "SIMULATION_TIMERS", "Scenario", "Simulation", "simulate"]

#: the daemon's timers, but the expiry sweep once a minute instead of every second: an idle
#: node's cost under a simulated clock is its timers (messages live for days anyway)
SIMULATION_TIMERS = NodeTimers(expiry_interval=60.0)

#: the services a simulated node may run (the daemon runs all of them, and sharing)
SERVICES = ("audit", "witness", "catalog")

DEFAULT_START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday, 08:00 in China Standard Time
_SEND_RETRY = 60.0
_INDEX_BYTES = 8


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """What to simulate: the federation, how long, the workload, the faults, the seed.

    ``topology`` (default: Guizhou with ``departments_per_county`` and the
    limits given) and ``faults`` are data; ``messages_per_hour`` messages of
    ``payload_bytes`` go from a random department to another; ``drain``
    seconds after ``hours`` the run ends whatever is still under way;
    ``publishes_per_hour`` catalog entries are published by random departments
    (with the ``catalog`` service), and the report says when each reached the
    province hub (records flow up the tree).
    ``directory``: ``"signed"`` (every node runs the federation's signed node
    directory and learns keys from its neighbours) or ``"static"`` (every node
    is given every key).  ``latency``: every link's one-way latency;
    ``county_bandwidth``: bytes/s of the links below county hubs (None:
    unlimited).  ``audit_flush``: how often each node's audit service writes
    the events it buffers (the daemon's default is 0.2 s; under a simulated
    clock an idle node costs its timers, so 5 s by default: the records are
    the same, written in fewer batches).
    """

    province: str = "52"
    departments_per_county: int = 3
    departments_per_city: int = 0
    departments_per_province: int = 0
    cities: int | None = None
    counties_per_city: int | None = None
    topology: Topology | None = None
    hours: float = 12.0
    drain: float = 3600.0
    seed: int = 7
    faults: Sequence[Fault] = ()
    messages_per_hour: float = 60.0
    payload_bytes: int = 1024
    publishes_per_hour: float = 0.0
    directory: str = "signed"
    services: Sequence[str] = SERVICES
    timers: NodeTimers = SIMULATION_TIMERS
    latency: float = 0.002
    county_bandwidth: float | None = None
    audit_flush: float = 5.0
    start: datetime = DEFAULT_START

    def __post_init__(self) -> None:
        if not 0 < self.hours <= 24 * 30:
            raise UsageError(f"hours must be more than 0 and at most 720, got {self.hours}")
        if self.publishes_per_hour and "catalog" not in self.services:
            raise UsageError("publishes_per_hour needs the catalog service")
        if min(self.drain, self.messages_per_hour, self.publishes_per_hour, self.latency) < 0:
            raise UsageError(
                "drain, messages_per_hour, publishes_per_hour and latency cannot be negative"
            )
        if not 0 < self.audit_flush <= 60:
            raise UsageError(
                f"audit_flush must be more than 0 and at most 60 s, got {self.audit_flush}"
            )
        if not _INDEX_BYTES <= self.payload_bytes <= 16 * 1024**2:
            raise UsageError(f"payload_bytes must be 8 to 16 MiB, got {self.payload_bytes}")
        if self.directory not in ("signed", "static"):
            raise UsageError(f"directory must be 'signed' or 'static', got {self.directory!r}")
        unknown = sorted(set(self.services) - set(SERVICES))
        if unknown:
            raise UsageError(f"unknown service(s) {', '.join(unknown)}; known: {SERVICES}")
        if "witness" in self.services and "audit" not in self.services:
            raise UsageError("the witness service needs the audit service")
        if self.start.tzinfo is None:
            raise UsageError("start must be an aware datetime")

    def federation(self) -> Topology:
        if self.topology is not None:
            return self.topology
        return province_topology(
            self.province,
            departments_per_county=self.departments_per_county,
            departments_per_city=self.departments_per_city,
            departments_per_province=self.departments_per_province,
            cities=self.cities,
            counties_per_city=self.counties_per_city,
        )

    def describe(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("topology")
        data["faults"] = [asdict(f) for f in self.faults]
        data["timers"] = asdict(self.timers)
        data["services"] = list(self.services)
        data["start"] = self.start.isoformat()
        return data


@dataclass(frozen=True, slots=True)
class _Planned:
    index: int
    at: float
    sender: str
    recipient: str


@dataclass(slots=True)
class _Publication:
    index: int
    at: float
    provider: str
    published_at: float | None = None
    version: int = 0
    at_root: float | None = None

    @property
    def code(self) -> str:
        return f"101001/{self.index + 1:06d}"


def _arrivals(rng: random_module.Random, per_hour: float, hours: float) -> Iterator[float]:
    """The times (s) of a Poisson process of ``per_hour`` events over ``hours``, each drawn
    from ``rng`` only when taken: a caller may draw from ``rng`` between two arrivals."""
    mean_gap = 3600.0 / per_hour
    at = rng.expovariate(1.0 / mean_gap)
    while at < hours * 3600:
        yield at
        at += rng.expovariate(1.0 / mean_gap)


@dataclass(slots=True)
class _Outcome:
    sent_at: float | None = None
    deliveries: list[float] = field(default_factory=list)
    not_sent: bool = False


class _SimNode:
    """One simulated node: the store and identity that outlive each ``Node`` started over them."""

    def __init__(self, name: str, issued: IssuedNode, config: NodeConfig) -> None:
        self.name = name
        self.issued = issued
        self.config = config
        self.store = MemoryStore()
        self.context = contextvars.copy_context()
        self.context.run(CURRENT_NODE.set, name)
        self.node: Node | None = None
        self.catalog: CatalogService | None = None
        self.starts = 0
        self.sent = 0
        self.delivered = 0
        self.consumer: asyncio.Task[None] | None = None

    def task(self, work: Any, name: str) -> asyncio.Task[Any]:
        """A task whose callbacks are this node's (CPU accounting): a copy of its context."""
        return asyncio.get_running_loop().create_task(work, name=name, context=self.context.copy())


class Simulation:
    """One run of a :class:`Scenario` on the running :class:`VirtualClockLoop`."""

    def __init__(
        self, scenario: Scenario, *, progress: Callable[[str], None] | None = None
    ) -> None:
        self.scenario = scenario
        self.topology = scenario.federation()
        self._progress = progress
        loop = asyncio.get_running_loop()
        if not isinstance(loop, VirtualClockLoop):
            raise UsageError("a simulation runs on a VirtualClockLoop (use simulate())")
        self.loop = loop
        self.network = MemoryNetwork(loop)
        self._epoch = scenario.start.timestamp()
        self._check_faults(scenario.faults)
        self._pki, self._trust, self._bundle = self._build_pki()
        self.nodes: dict[str, _SimNode] = {}
        for name in self.topology.nodes:
            self.nodes[name] = _SimNode(name, self._issued[name], self._config(name))
        for parent, child in self.topology.links:
            self.network.add_link(parent, child)
            bandwidth = scenario.county_bandwidth if "." in child else None
            self.network.shape(parent, child, latency=scenario.latency, bandwidth=bandwidth)
        self._static = (
            StaticDirectory(issued.identity.peer for issued in self._issued.values())
            if scenario.directory == "static"
            else None
        )
        self.plan = self._plan()
        self.publications = self._plan_publications()
        self.outcomes = {planned.index: _Outcome() for planned in self.plan}
        self._applied: list[str] = []
        self._keys_known: dict[str, float | None] = {}
        self._addressing = 0
        self._process_started = 0.0

    # --- building ----------------------------------------------------------------------

    def clock(self) -> float:
        return self._epoch + self.loop.time()

    def _build_pki(self) -> tuple[SyntheticPKI, TrustStore, list[Any]]:
        scenario = self.scenario
        pki = SyntheticPKI(epoch=scenario.start - timedelta(days=1))
        root_name = self.topology.nodes[0].split(".")[0]
        root = pki.root(root_name)
        cas: dict[str, IssuedCA] = {root_name: root}
        self._issued: dict[str, IssuedNode] = {}
        for name in self.topology.nodes:
            division = NodeName.parse(name).division
            city = division[:4] + "00"
            if division == root_name or city == root_name:
                issuer = root
            else:
                if city not in cas:
                    cas[city] = pki.ca(city, root)
                issuer = cas[city]
            self._issued[name] = pki.node(name, issuer)
        validity = max(timedelta(days=7), timedelta(hours=scenario.hours + 48))
        this_update = scenario.start - timedelta(hours=1)
        crls = [pki.crl(ca, this_update=this_update, validity=validity) for ca in cas.values()]
        bundle = [ca.certificate for name, ca in cas.items() if name != root_name]
        return pki, TrustStore([root.certificate], crls), bundle

    def _config(self, name: str) -> NodeConfig:
        peers = []
        parent = self.topology.parents.get(name)
        if parent is not None:
            peers.append(Peer(name=parent, relation=Relation.PARENT, url=self.network.url(parent)))
        for child in self.topology.children(name):
            peers.append(Peer(name=child, relation=Relation.CHILD, url=self.network.url(child)))
        host = MemoryNetwork.host(name)
        return NodeConfig(
            peers=peers,
            listen=(host, 443),
            advertise=self.network.url(name),
            timers=self.scenario.timers,
        )

    def _check_faults(self, faults: Sequence[Fault]) -> None:
        names = set(self.topology.nodes)
        links = {frozenset(link) for link in self.topology.links}
        for number, fault in enumerate(faults, start=1):
            if fault.node is not None and fault.node not in names:
                raise UsageError(f"fault {number} ({fault.fault}): no node {fault.node}")
            for a, b in fault.links:
                if frozenset((a, b)) not in links:
                    raise UsageError(f"fault {number} ({fault.fault}): no link {a}-{b}")
            if fault.at > self.scenario.hours * 3600 + self.scenario.drain:
                raise UsageError(f"fault {number} ({fault.fault}) is after the end of the run")

    def _plan(self) -> list[_Planned]:
        scenario = self.scenario
        departments = self.topology.departments
        if len(departments) < 2 or scenario.messages_per_hour == 0:
            return []
        # The plan, not a key: a seeded, reproducible generator is what is wanted here.
        rng = random_module.Random(f"exchnode-sim-plan:{scenario.seed}")  # noqa: S311
        plan: list[_Planned] = []
        for at in _arrivals(rng, scenario.messages_per_hour, scenario.hours):
            sender, recipient = rng.sample(departments, 2)
            plan.append(_Planned(len(plan), at, sender, recipient))
        return plan

    def _plan_publications(self) -> list[_Publication]:
        scenario = self.scenario
        departments = self.topology.departments
        if not departments or scenario.publishes_per_hour == 0:
            return []
        rng = random_module.Random(f"exchnode-sim-catalog:{scenario.seed}")  # noqa: S311
        planned: list[_Publication] = []
        for at in _arrivals(rng, scenario.publishes_per_hour, scenario.hours):
            planned.append(_Publication(len(planned), at, rng.choice(departments)))
        return planned

    def _services(self) -> list[NodeService]:
        chosen = self.scenario.services
        services: list[NodeService] = []
        audit = None
        if "audit" in chosen:
            audit = AuditService(flush=self.scenario.audit_flush)
            services.append(audit)
        if "witness" in chosen and audit is not None:
            services.append(WitnessService(audit))
        if "catalog" in chosen:
            services.append(CatalogService())
        return services

    # --- nodes up and down ---------------------------------------------------------------

    async def _start(self, sim: _SimNode) -> None:
        sim.starts += 1
        seed = f"exchnode-sim:{self.scenario.seed}:{sim.name}:{sim.starts}"
        endpoint = self.network.endpoint(sim.name, sim.issued.certificate, sim.context)
        services = self._services()
        node = Node(
            identity=sim.issued.identity,
            store=sim.store,
            trust=self._trust,
            ca_bundle=self._bundle,
            config=sim.config,
            directory=self._static,
            services=services,
            clock=self.clock,
            random=SeededRandom(seed),
            network=endpoint,
        )
        await sim.task(node.start(), f"start-{sim.name}")
        sim.node = node
        sim.catalog = next((s for s in services if isinstance(s, CatalogService)), None)
        sim.consumer = sim.task(self._consume(sim, node), f"consume-{sim.name}")

    async def _stop(self, sim: _SimNode) -> None:
        node, sim.node, sim.catalog = sim.node, None, None
        if node is None:
            return
        await sim.task(node.close(), f"close-{sim.name}")
        self.network.disconnect(sim.name)
        if sim.consumer is not None:
            await sim.consumer
            sim.consumer = None

    async def _consume(self, sim: _SimNode, node: Node) -> None:
        async for delivery in node.deliveries():
            index = int.from_bytes(delivery.payload[:_INDEX_BYTES], "big")
            outcome = self.outcomes.get(index)
            if outcome is not None:
                outcome.deliveries.append(self.loop.time())
            sim.delivered += 1
            try:
                await delivery.ack()
            except ExchnodeError:
                return  # the node is closing: the delivery is offered again after the restart

    # --- the workload --------------------------------------------------------------------

    async def _send(self, planned: _Planned) -> None:
        sim = self.nodes[planned.sender]
        payload = planned.index.to_bytes(_INDEX_BYTES, "big")
        payload += bytes(self.scenario.payload_bytes - _INDEX_BYTES)
        end = self.scenario.hours * 3600
        outcome = self.outcomes[planned.index]
        while True:
            node = sim.node
            if node is None:
                outcome.not_sent = True  # the sender is down: its application cannot send
                return
            try:
                # The key makes a retry of a send whose answer was lost the same message.
                await node.send(
                    [planned.recipient], payload, idempotency_key=f"sim-{planned.index}"
                )
            except ExchnodeError:
                # Unknown recipient (its keys have not reached this node yet), or closing.
                if self.loop.time() + _SEND_RETRY >= end:
                    outcome.not_sent = True
                    return
                await asyncio.sleep(_SEND_RETRY)
                continue
            outcome.sent_at = self.loop.time()
            sim.sent += 1
            return

    async def _workload(self) -> None:
        sends: list[asyncio.Task[None]] = []
        for planned in self.plan:
            await asyncio.sleep(max(0.0, planned.at - self.loop.time()))
            sim = self.nodes[planned.sender]
            sends.append(sim.task(self._send(planned), f"send-{planned.index}"))
        await asyncio.gather(*sends)

    async def _publish(self, publication: _Publication) -> None:
        sim = self.nodes[publication.provider]
        if sim.node is None or sim.catalog is None:
            return  # the provider is down: nothing published
        entry = _catalog_entry(publication.provider, publication.code)
        try:
            (record,) = await sim.catalog.publish([entry], operator="sim")
        except ExchnodeError:
            return  # closing meanwhile
        publication.published_at = self.loop.time()
        publication.version = record.version

    async def _catalog_workload(self) -> None:
        for publication in self.publications:
            await asyncio.sleep(max(0.0, publication.at - self.loop.time()))
            sim = self.nodes[publication.provider]
            await sim.task(self._publish(publication), f"publish-{publication.index}")

    async def _watch_catalog(self) -> None:
        """Every 30 s: which published entries the province hub holds by now."""
        root = self.nodes[self.topology.nodes[0]]
        while True:
            await asyncio.sleep(30.0)
            service = root.catalog
            if service is None:
                continue
            for publication in self.publications:
                if publication.published_at is None or publication.at_root is not None:
                    continue
                held = service.get(publication.provider, publication.code)
                if held is not None and held.version >= publication.version:
                    publication.at_root = self.loop.time()

    async def _watch_keys(self, sim: _SimNode, names: list[str]) -> None:
        while sim.node is None:
            await asyncio.sleep(1.0)
        try:
            await sim.node.wait_known(names)
        except ExchnodeError:
            self._keys_known[sim.name] = None
            return
        self._keys_known[sim.name] = self.loop.time()

    # --- faults -------------------------------------------------------------------------

    async def _faults(self) -> None:
        for fault in self.scenario.faults:
            await asyncio.sleep(max(0.0, fault.at - self.loop.time()))
            await self._apply(fault)
            self._applied.append(f"{_hours(self.loop.time())} {fault.describe()}")

    async def _apply(self, fault: Fault) -> None:
        network = self.network
        if fault.fault == "down" and fault.node is not None:
            await self._stop(self.nodes[fault.node])
        elif fault.fault == "up" and fault.node is not None:
            if self.nodes[fault.node].node is None:
                await self._start(self.nodes[fault.node])
        elif fault.fault in ("cut", "partition"):
            for a, b in fault.links:
                network.cut(a, b)
        elif fault.fault in ("restore", "heal"):
            for a, b in fault.links:
                network.restore(a, b)
        elif fault.fault == "slow":
            for a, b in fault.links:
                network.shape(a, b, latency=fault.latency, bandwidth=fault.bandwidth)

    async def _report_progress(self) -> None:
        total = self.scenario.hours * 3600 + self.scenario.drain
        started = time.perf_counter()
        while self.loop.time() < total:
            await asyncio.sleep(3600.0)
            if self._progress is not None:
                delivered = sum(1 for o in self.outcomes.values() if o.deliveries)
                self._progress(
                    f"{_hours(self.loop.time())} simulated, {time.perf_counter() - started:.0f} s "
                    f"wall: {delivered} of {len(self.plan)} messages delivered"
                )

    # --- the run -------------------------------------------------------------------------

    async def start_all(self) -> None:
        """Start every node, parents first, as an operator brings a province up."""
        for name in self.topology.nodes:
            if self.nodes[name].node is None:
                await self._start(self.nodes[name])

    async def stop_all(self) -> None:
        """Close every running node, children first (their stores stay)."""
        for name in reversed(self.topology.nodes):
            await self._stop(self.nodes[name])

    async def run(self) -> Report:
        """Start the federation, run the workload and the faults, drain, stop: the report."""
        started = time.perf_counter()
        self._process_started = time.process_time()
        scenario = self.scenario
        await self.start_all()
        addressed: dict[str, set[str]] = {}
        for planned in self.plan:
            addressed.setdefault(planned.sender, set()).add(planned.recipient)
        self._addressing = len(addressed)
        watchers = [
            asyncio.get_running_loop().create_task(
                self._watch_keys(self.nodes[sender], sorted(names))
            )
            for sender, names in sorted(addressed.items())
        ]
        progress = self.loop.create_task(self._report_progress())
        faults = self.loop.create_task(self._faults())
        catalog = [self.loop.create_task(self._catalog_workload())]
        if self.publications:
            catalog.append(self.loop.create_task(self._watch_catalog()))
        await self._workload()
        end = scenario.hours * 3600
        await asyncio.sleep(max(0.0, end - self.loop.time()))
        deadline = end + scenario.drain
        while self.loop.time() < deadline and not self._all_delivered():
            await asyncio.sleep(min(60.0, deadline - self.loop.time()))
        finished = self.loop.time()
        for task in (faults, progress, *watchers, *catalog):
            task.cancel()
        await asyncio.gather(faults, progress, *watchers, *catalog, return_exceptions=True)
        await self.stop_all()
        return self._report(finished, time.perf_counter() - started)

    def _all_delivered(self) -> bool:
        messages = all(o.deliveries or o.sent_at is None for o in self.outcomes.values())
        return messages and all(
            p.at_root is not None or p.published_at is None for p in self.publications
        )

    # --- the report -----------------------------------------------------------------------

    def _report(self, finished: float, wall: float) -> Report:
        cpu = self.loop.cpu_by_node
        node_figures = self.network.node_figures
        nodes = [
            NodeReport(
                name=name,
                state_bytes=deep_size(sim.store),
                bytes_sent=node_figures[name][0],
                bytes_received=node_figures[name][1],
                sent=sim.sent,
                delivered=sim.delivered,
                restarts=sim.starts - 1,
                cpu_seconds=round(cpu.get(name, 0.0), 6),
            )
            for name, sim in self.nodes.items()
        ]
        links = []
        for figures in self.network.links():
            parent, child = figures.ends
            links.append(
                LinkReport(
                    parent=parent,
                    child=child,
                    bytes_down=figures.sent[parent],
                    bytes_up=figures.sent[child],
                    connections=figures.connections,
                    transfers=figures.requests.get("POST /exchnode/v1/transfer", 0),
                    requests=sum(figures.requests.values()),
                    resets=figures.resets,
                    busy_down=round(figures.busy[parent], 6),
                    busy_up=round(figures.busy[child], 6),
                )
            )
        known = list(self._keys_known.values())
        keys_known_at = None
        if len(known) == self._addressing and None not in known:
            keys_known_at = max((k for k in known if k is not None), default=0.0)
        return Report(
            scenario=self.scenario.describe(),
            nodes=nodes,
            links=links,
            messages=self._messages(),
            recoveries=self._recoveries(),
            catalog=self._catalog_report(),
            keys_known_at=keys_known_at,
            simulated_seconds=finished,
            faults_applied=list(self._applied),
            wall_seconds=round(wall, 3),
            cpu_seconds=round(sum(cpu.values()), 6),
            process_cpu_seconds=round(time.process_time() - self._process_started, 3),
            callbacks=self.loop.callbacks,
        )

    def _messages(self) -> MessageReport:
        outcomes = self.outcomes.values()
        sent = [o for o in outcomes if o.sent_at is not None]
        latencies = sorted(
            min(o.deliveries) - o.sent_at for o in sent if o.deliveries and o.sent_at
        )
        delivered_at = [min(o.deliveries) for o in sent if o.deliveries]
        lost = sum(1 for o in sent if not o.deliveries)
        return MessageReport(
            planned=len(self.plan),
            sent=len(sent),
            delivered=sum(1 for o in outcomes if o.deliveries),
            lost=lost,
            duplicated=sum(1 for o in outcomes if len(o.deliveries) > 1),
            not_sent=sum(1 for o in outcomes if o.not_sent),
            latency_p50=_rounded(_quantile(latencies, 0.5)),
            latency_p99=_rounded(_quantile(latencies, 0.99)),
            latency_max=_rounded(latencies[-1] if latencies else None),
            all_delivered_at=_rounded(max(delivered_at)) if delivered_at and not lost else None,
        )

    def _catalog_report(self) -> CatalogReport | None:
        if not self.publications:
            return None
        published = [p for p in self.publications if p.published_at is not None]
        climbs = sorted(
            p.at_root - p.published_at
            for p in published
            if p.at_root is not None and p.published_at is not None
        )
        return CatalogReport(
            planned=len(self.publications),
            published=len(published),
            at_province=len(climbs),
            to_province_p50=_rounded(_quantile(climbs, 0.5)),
            to_province_max=_rounded(climbs[-1] if climbs else None),
        )

    def _recoveries(self) -> list[RecoveryReport]:
        recoveries = []
        for fault in self.scenario.faults:
            if fault.fault not in ("up", "restore", "heal"):
                continue
            waited = [
                o
                for o in self.outcomes.values()
                if o.sent_at is not None
                and o.sent_at < fault.at
                and (not o.deliveries or min(o.deliveries) > fault.at)
            ]
            caught_up = None
            if all(o.deliveries for o in waited):
                last = max((min(o.deliveries) for o in waited), default=fault.at)
                caught_up = _rounded(last - fault.at)
            recoveries.append(RecoveryReport(fault.at, fault.describe(), len(waited), caught_up))
        return recoveries


def _catalog_entry(provider: str, code: str) -> CatalogEntry:
    """An unconditional database entry of ``provider`` (a department's typical resource)."""
    return CatalogEntry(
        provider=provider,
        code=code,
        classification="101001",
        name="人口基本信息",
        provider_code="11520102MB1234567X",
        summary="户籍人口的基本信息",
        format=ResourceFormat.DATABASE,
        data_items=(
            DataItem("姓名", DataType.CHARACTER),
            DataItem("出生日期", DataType.DATE),
        ),
        share_type=ShareType.UNCONDITIONAL,
        share_methods=frozenset({ShareMethod.QUERY_INTERFACE}),
        openness=Openness.NOT_OPEN,
        update_cycle=UpdateCycle.DAILY,
        publish_date=date(2026, 1, 5),
    )


def simulate(scenario: Scenario, *, progress: Callable[[str], None] | None = None) -> Report:
    """Run ``scenario`` on a fresh :class:`VirtualClockLoop`; the report when it ends."""
    loop = VirtualClockLoop()
    try:

        async def main() -> Report:
            return await Simulation(scenario, progress=progress).run()

        return loop.run_until_complete(main())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


_DATA_MODULES = ("builtins", "collections", "exchnode.store", "exchnode.federation")


def deep_size(root: object) -> int:
    """The bytes of ``root`` and the data it holds.

    Only plain data is followed -- containers, bytes, numbers, the store's and
    federation's records -- never a callable or another package's object, so a
    store that holds a hook into the audit service does not count the node.
    """
    seen: set[int] = set()
    stack = [root]
    total = 0
    while stack:
        item = stack.pop()
        if id(item) in seen or callable(item):
            continue
        if item is not root and not type(item).__module__.startswith(_DATA_MODULES):
            continue
        seen.add(id(item))
        total += sys.getsizeof(item)
        stack.extend(gc.get_referents(item))
    return total


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, int(q * len(values)))]


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _hours(seconds: float) -> str:
    millis = round(seconds * 1000)  # virtual time sums floats: 299.99999... is 5 minutes
    return f"{millis // 3_600_000:d}:{millis // 60_000 % 60:02d}:{millis % 60_000 / 1000:06.3f}"
