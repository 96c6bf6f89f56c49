"""The ``/metrics`` collector (``node.metrics``) over a node's state: values, cost, a slow store.

The daemon test (``tests/integration/test_daemon_metrics.py``) scrapes real
nodes; here the collector reads a stand-in with the node's read API and
chosen values, so that each family can be checked against exactly what the
state says -- and so that a hub of thousands of neighbours can be scraped
without running one.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from exchnode.aio import HistogramSnapshot, LinkMetrics, Node, NodeMetrics, NodeStats, Refusal
from exchnode.aio._context import COUNTERS
from exchnode.aio._observations import CUSTODY_BUCKETS
from exchnode.audit import Role
from exchnode.federation import PeerState
from exchnode.node import metrics
from exchnode.node.metrics import METRICS, MetricsApi
from exchnode.node.roles import area_of
from exchnode.store import QueueDepth
from exchnode.testing import SyntheticPKI

NOW = time.time()
HUB = "520100"


class StandIn:
    """What the collector reads of a Node, with values a test sets (``peers`` neighbours)."""

    def __init__(self, peers: int) -> None:
        pki = SyntheticPKI(epoch=datetime.fromtimestamp(NOW, UTC) - timedelta(days=1))
        root = pki.root("520000")
        ca = pki.ca("520100", root)
        pki.ca("522300", root)  # a CA the trust store gives no CRL
        self.name = HUB
        self.identity = pki.node(HUB, ca).identity
        self.trust = pki.trust_store([root], crls_for=[root, ca])
        self.ca_bundle = (ca.certificate, pki.cas["522300"].certificate)
        self.node_directory = None
        self.directory = self
        self.names_known = [f"520101.d{i}" for i in range(peers)]
        self.store_reads = 0
        self.store_delay = 0.0
        self.links = {
            name: LinkMetrics(
                name=name,
                relation="child",
                state=PeerState(failures=0, last_ok_ms=int(NOW * 1000)),
                transfers_out=7,
                transfers_failed=0,
                transfers_in=3,
                items_out={"taken": 9, "refused": 0, "deferred": 0},
                items_in={"taken": 4, "refused": 1, "deferred": 0},
                bytes_out=900,
                bytes_in=400,
                oldest_ms=None,
            )
            for name in self.names_known
        }
        self.outbound: dict[str, QueueDepth] = {}
        self.refusals: tuple[Refusal, ...] = ()
        self.custody: dict[str, HistogramSnapshot] = {}

    def names(self) -> list[str]:
        return self.names_known

    def metrics(self) -> NodeMetrics:
        return NodeMetrics(
            links=self.links,
            inbox_oldest_ms=None,
            custody=self.custody,
            refusals={("node", "neighbour", "not-a-neighbour"): 2},
            counters=dict.fromkeys(COUNTERS, 1),
        )

    async def stats(self) -> NodeStats:
        self.store_reads += 1
        await asyncio.sleep(self.store_delay)
        total = sum(d.count for d in self.outbound.values())
        return NodeStats(
            name=HUB,
            queued=QueueDepth(total, 10 * total),
            inbox=QueueDepth(0, 0),
            outbound=dict(self.outbound),
            peers={},
            counters={},
            handed_over={},
            refusals=self.refusals,
        )


def samples_of(body: bytes) -> list[Sample]:
    return [s for f in text_string_to_metric_families(body.decode()) for s in f.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float | None:
    """The one sample of ``name`` with ``labels`` (a subset of its own), or None."""
    found = [
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else None


async def scrape(node: StandIn) -> bytes:
    api = MetricsApi(cast(Node, node), process=False)
    await api.refresh()
    return api.exposition()


@pytest.mark.asyncio
async def test_each_family_says_what_the_state_says() -> None:
    node = StandIn(peers=3)
    started = time.time()
    down, up, refused = node.names_known
    node.links[down] = LinkMetrics(
        **{
            **{f: getattr(node.links[down], f) for f in LinkMetrics.__slots__},
            "state": PeerState(failures=4, next_attempt_ms=int(NOW * 1000) + 9_000),
            "oldest_ms": int((started - 30) * 1000),
        }
    )
    node.outbound = {down: QueueDepth(5, 5_000)}
    node.refusals = (Refusal(refused, None, HUB, "not-a-neighbour", "neighbour", 1, 2, 2),)
    counts = [0] * (len(CUSTODY_BUCKETS) + 1)
    counts[0], counts[-1] = 2, 1
    node.custody = {"parent": HistogramSnapshot(CUSTODY_BUCKETS, tuple(counts), 90_000.01, 3)}
    samples = samples_of(await scrape(node))

    assert value(samples, "exchnode_queue_messages", peer=down, relation="child") == 5
    assert value(samples, "exchnode_queue_bytes", peer=down) == 5_000
    assert value(samples, "exchnode_queue_messages", peer=up) == 0  # every neighbour, stable
    age = value(samples, "exchnode_queue_oldest_age_seconds", peer=down)
    assert age is not None
    assert 29 < age < 31 + time.time() - started
    assert value(samples, "exchnode_queue_oldest_age_seconds", peer=up) is None
    assert value(samples, "exchnode_queued_messages") == 5
    states = {
        (s.labels["peer"], s.labels["state"])
        for s in samples
        if s.name == "exchnode_link_state" and s.value == 1
    }
    assert states == {(down, "down"), (up, "up"), (refused, "refused")}
    assert value(samples, "exchnode_link_consecutive_failures", peer=down) == 4
    assert value(samples, "exchnode_refusals_standing", by="node") == 1
    assert (
        value(samples, "exchnode_link_messages_total", peer=up, direction="in", result="refused")
        == 1
    )
    assert value(samples, "exchnode_link_bytes_total", peer=up, direction="out") == 900
    assert (
        value(
            samples,
            "exchnode_refusals_total",
            by="node",
            kind="neighbour",
            reason="not-a-neighbour",
        )
        == 2
    )
    assert value(samples, "exchnode_custody_seconds_bucket", destination="parent", le="0.005") == 2
    assert (
        value(samples, "exchnode_custody_seconds_bucket", destination="parent", le="86400.0") == 2
    )
    assert value(samples, "exchnode_custody_seconds_bucket", destination="parent", le="+Inf") == 3
    assert value(samples, "exchnode_custody_seconds_sum", destination="parent") == 90_000.01
    assert value(samples, "exchnode_directory_nodes", mode="static") == 3
    node_expiry = value(samples, "exchnode_certificate_expiry_seconds", kind="node")
    assert node_expiry is not None
    assert node_expiry > 0
    crl = value(samples, "exchnode_crl_next_update_seconds", issuer="CN=520100,OU=ca,O=exchnode")
    assert crl is not None
    assert 0 < crl < 8 * 86400
    assert value(samples, "exchnode_crl_missing") == 1  # 522300 has none
    for key in COUNTERS:
        assert value(samples, metrics.COUNTERS[key][0] + "_total") == 1


def test_every_counter_of_the_node_has_its_metric() -> None:
    assert set(metrics.COUNTERS) == set(COUNTERS)
    assert len({name for name, _ in metrics.COUNTERS.values()}) == len(COUNTERS)
    assert all(name.startswith("exchnode_") for name in METRICS)


@pytest.mark.asyncio
async def test_families_are_stable_and_listed() -> None:
    node = StandIn(peers=1)
    families = {f.name for f in text_string_to_metric_families((await scrape(node)).decode())}
    assert families == set(METRICS)


@pytest.mark.asyncio
async def test_a_hub_with_thousands_of_neighbours_is_scraped_cheaply() -> None:
    node = StandIn(peers=3_000)
    node.outbound = {name: QueueDepth(1, 100) for name in node.names_known[::3]}
    api = MetricsApi(cast(Node, node), process=False)
    started = time.perf_counter()
    await api.refresh()
    body = api.exposition()
    took = time.perf_counter() - started
    lines = body.count(b"\n")
    print(f"\nscrape of 3,000 neighbours: {took * 1000:.0f} ms, {lines} lines, {len(body)} bytes")
    # What keeps a scrape cheap is its size, linear in the links with a small factor (one state
    # series per link, traffic once non-zero, queues only where something waits): ~10 lines a
    # link here. Its time (~0.2-0.4 s here) is the benchmark's business, not a unit test's.
    assert lines < 12 * 3_000 + 1_000
    for _ in range(5):  # scrapes in a row read the store once
        await api.refresh()
    assert node.store_reads == 1


@pytest.mark.asyncio
async def test_a_slow_store_does_not_hang_the_scrape(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "STORE_TIMEOUT", 0.05)
    node = StandIn(peers=2)
    node.store_delay = 1.0
    started = time.perf_counter()
    samples = samples_of(await scrape(node))
    assert time.perf_counter() - started < 0.9
    assert value(samples, "exchnode_queue_messages", peer=node.names_known[0]) is None
    assert value(samples, "exchnode_link_state", peer=node.names_known[0], state="up") == 1


def test_metrics_admit_the_auditor_and_the_administrator_only() -> None:
    area = area_of("/metrics")
    assert area is not None
    assert area.role is Role.AUDITOR  # the client presents the auditor's token
    assert area.needs == "auditor or administrator"
    assert area.admits(Role.AUDITOR)
    assert area.admits(Role.ADMINISTRATOR)
    assert not area.admits(Role.OPERATOR)
    assert not area.admits(Role.NODE)
    audit = area_of("/v1/audit/verify")
    assert audit is not None
    assert not audit.admits(Role.ADMINISTRATOR)  # the exception is /metrics alone
