"""Prometheus metrics on running daemons (issue 15, item 3).

A county hub (520102) runs with two configured departments: 520102.gongan
(running) and 520102.minzheng (configured, never started: its link is down);
520102.shebao runs believing the hub is its parent, but the hub does not
list it, so the hub refuses it (``not-a-neighbour``).  The department sends
messages to minzheng, which wait at the hub, and two to the hub itself, of
which the hub's application receives and acknowledges one.  Then ``/metrics``,
scraped with the auditor's and the administrator's tokens and parsed with
prometheus-client's own parser, says what the nodes' state says: the queue to
the down peer with its count, bytes and a positive age, the link states, the
refusal by reason on both sides, custody times, the certificate's and CRLs'
expiry, the audit log's head; without a payload byte or a token in it.  The
operator's token, another node's, none: refused.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from exchnode.audit import Role
from exchnode.node.client import OperatorClient
from exchnode.node.metrics import METRICS
from tests.integration.daemons import TOKEN_FILES, DaemonFederation, until
from tests.unit.node.test_metrics import samples_of, value

pytestmark = pytest.mark.timeout(180)

HUB, GONGAN, MINZHENG, SHEBAO = "520102", "520102.gongan", "520102.minzheng", "520102.shebao"
QUEUED = 3  # messages from gongan to minzheng, waiting at the hub
PAYLOAD = b"METRICS-PAYLOAD-7f3a9c must never show in an exposition"


def token(fed: DaemonFederation, role: Role, name: str) -> str:
    return fed.token(name, role)


def scrape_raw(fed: DaemonFederation, name: str, bearer: str | None) -> tuple[int, str, str]:
    """GET /metrics: status, content type, body."""
    status, headers, body = fed.http(name, "/metrics", secret=bearer)
    return status, headers["Content-Type"], body.decode()


def scrape(fed: DaemonFederation, name: str, role: Role = Role.AUDITOR) -> list[Sample]:
    status, content_type, body = scrape_raw(fed, name, token(fed, role, name))
    assert status == 200, body
    assert content_type.startswith("text/plain; version=0.0.4"), content_type
    return samples_of(body.encode())


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonFederation]:
    federation = DaemonFederation(
        tmp_path_factory.mktemp("metrics"), [HUB, GONGAN, MINZHENG, SHEBAO]
    )
    hub = federation.config_path(HUB)
    text = hub.read_text("utf-8")
    unlisted = (
        f'[[peers]]\nname = "{SHEBAO}"\nrelation = "child"\nurl = "{federation.url(SHEBAO)}"\n'
    )
    assert unlisted in text
    assert "# head_interval = 10.0" in text
    text = text.replace(unlisted, "").replace("# head_interval = 10.0", "head_interval = 0.5")
    hub.write_text(text, "utf-8")
    with federation.serving(HUB, GONGAN, SHEBAO):
        asyncio.run(_traffic(federation))
        yield federation


async def _traffic(fed: DaemonFederation) -> None:
    """``QUEUED`` messages to the down department; two to the hub's application, one acked."""
    async with OperatorClient.for_config(fed.config(GONGAN)) as department:
        for _ in range(QUEUED):
            await department.send([MINZHENG], PAYLOAD)
        await department.send([HUB], PAYLOAD)
        await department.send([HUB], PAYLOAD)  # received, never acknowledged
    async with OperatorClient.for_config(fed.config(SHEBAO)) as unlisted:
        # a transfer the hub refuses item by item, and a call of the hub's endpoints it refuses
        await unlisted.send([HUB], PAYLOAD)
        await unlisted.catalog_search(beyond="1", scope="52")
    async with OperatorClient.for_config(fed.config(HUB)) as hub:
        received = []
        deadline = time.monotonic() + 30
        while not received:
            assert time.monotonic() < deadline, "the hub's application received nothing"
            received = await hub.receive(limit=1, wait=5)
        assert received[0].payload == PAYLOAD
        await hub.ack([received[0].id])


def test_queue_to_a_down_peer_has_its_count_bytes_and_age(fed: DaemonFederation) -> None:
    def queued() -> list[Sample] | None:
        samples = scrape(fed, HUB)
        count = value(samples, "exchnode_queue_messages", peer=MINZHENG)
        age = value(samples, "exchnode_queue_oldest_age_seconds", peer=MINZHENG)
        down = value(samples, "exchnode_link_state", peer=MINZHENG, state="down")
        return samples if count == QUEUED and age and down == 1 else None

    samples = until(queued, f"the hub shows {QUEUED} queued for {MINZHENG}, its age, link down")
    assert value(samples, "exchnode_queue_messages", peer=MINZHENG, relation="child") == QUEUED
    assert (value(samples, "exchnode_queue_bytes", peer=MINZHENG) or 0) > QUEUED * len(PAYLOAD)
    age = value(samples, "exchnode_queue_oldest_age_seconds", peer=MINZHENG)
    assert age is not None
    assert 0 < age < 120
    states = [
        s for s in samples if s.name == "exchnode_link_state" and s.labels["peer"] == MINZHENG
    ]
    assert len(states) == 1  # one series per link: its current state
    assert (value(samples, "exchnode_link_consecutive_failures", peer=MINZHENG) or 0) >= 1
    failed = value(
        samples, "exchnode_link_transfers_total", peer=MINZHENG, direction="out", result="failed"
    )
    assert failed is not None
    assert failed >= 1
    # the department's traffic is counted (the hub has sent it nothing: its link is "unknown")
    assert value(samples, "exchnode_link_state", peer=GONGAN, state="unknown") == 1
    received = value(
        samples, "exchnode_link_messages_total", peer=GONGAN, direction="in", result="taken"
    )
    assert received is not None
    assert received >= QUEUED + 2
    assert value(samples, "exchnode_queue_messages", peer=GONGAN) == 0
    assert value(samples, "exchnode_queue_oldest_age_seconds", peer=GONGAN) is None
    assert (value(samples, "exchnode_queued_messages") or 0) >= QUEUED
    assert (value(samples, "exchnode_envelopes_accepted_total") or 0) >= QUEUED + 2


def test_custody_times_per_destination(fed: DaemonFederation) -> None:
    # The department handed its QUEUED + 2 messages to its parent; the hub delivered one.
    department = until(
        lambda: (
            s
            if (
                value(
                    s := scrape(fed, GONGAN), "exchnode_custody_seconds_count", destination="parent"
                )
                or 0
            )
            >= QUEUED + 2
            else None
        ),
        "the department's custody times towards its parent",
    )
    total = value(department, "exchnode_custody_seconds_sum", destination="parent")
    assert total is not None
    assert total > 0
    inf = value(department, "exchnode_custody_seconds_bucket", destination="parent", le="+Inf")
    assert inf == value(department, "exchnode_custody_seconds_count", destination="parent")
    sent = value(
        department, "exchnode_link_messages_total", peer=HUB, direction="out", result="taken"
    )
    assert sent is not None
    assert sent >= QUEUED + 2
    hub = scrape(fed, HUB)
    assert value(hub, "exchnode_custody_seconds_count", destination="local") == 1
    assert value(hub, "exchnode_custody_seconds_count", destination="child") is None
    assert value(hub, "exchnode_envelopes_delivered_total") == 1
    # the other one waits for the application's acknowledgement
    assert value(hub, "exchnode_inbox_messages") == 1
    waiting = value(hub, "exchnode_inbox_oldest_age_seconds")
    assert waiting is not None
    assert 0 < waiting < 120
    held = value(hub, "exchnode_operator_deliveries", state="held")
    leased = value(hub, "exchnode_operator_deliveries", state="leased")
    assert (held, leased) in ((1, 0), (0, 1))


def test_refusals_are_counted_by_reason_on_both_sides(fed: DaemonFederation) -> None:
    def refused(name: str, by: str, kind: str, reason: str) -> float:
        samples = scrape(fed, name)
        return value(samples, "exchnode_refusals_total", by=by, kind=kind, reason=reason) or 0

    # the hub refused shebao's call (it is no neighbour) and the items of its transfer
    until(lambda: refused(HUB, "node", "neighbour", "not-a-neighbour"), "the hub's refusal")
    until(lambda: refused(HUB, "node", "item", "routing-refused"), "the hub's item refusal")
    # shebao counts the same refusals as the hub's
    until(lambda: refused(SHEBAO, "peer", "link", "not-a-neighbour"), "shebao hears of it")
    until(lambda: refused(SHEBAO, "peer", "item", "routing-refused"), "shebao's items refused")
    # (whether the refusal still stands depends on what the hub answered last: the counts stay)
    samples = scrape(fed, SHEBAO)
    assert value(samples, "exchnode_refusals_total", by="node", reason="not-a-neighbour") is None


def test_certificates_crls_directory_and_audit(fed: DaemonFederation) -> None:
    samples = until(
        lambda: s if value(s := scrape(fed, HUB), "exchnode_audit_head_age_seconds") else None,
        "the hub signs a tree head",
    )
    node_certificate = [
        s
        for s in samples
        if s.name == "exchnode_certificate_expiry_seconds" and s.labels["kind"] == "node"
    ]
    assert len(node_certificate) == 1
    assert node_certificate[0].value > 86400
    assert f"CN={HUB}" in node_certificate[0].labels["subject"]
    root = value(samples, "exchnode_certificate_expiry_seconds", kind="root")
    assert root is not None
    assert root > node_certificate[0].value
    crls = [s for s in samples if s.name == "exchnode_crl_next_update_seconds"]
    assert crls
    assert all(s.value > 0 for s in crls)
    assert value(samples, "exchnode_crl_missing") == 0
    assert value(samples, "exchnode_directory_nodes", mode="static") == 4
    records = value(samples, "exchnode_audit_records")
    head = value(samples, "exchnode_audit_head_size")
    assert records is not None
    assert head is not None
    assert 0 < head <= records
    head_age = value(samples, "exchnode_audit_head_age_seconds")
    assert head_age is not None
    assert 0 <= head_age < 60
    assert value(samples, "exchnode_catalog_entries") == 0
    assert value(samples, "exchnode_subscription_requests", state="pending") is None  # a hub
    assert value(samples, "exchnode_serving") == 1
    assert value(samples, "exchnode_node_info", node=HUB) == 1
    assert value(samples, "exchnode_build_info") == 1
    # prometheus-client's process collector
    assert (value(samples, "process_resident_memory_bytes") or 0) > 0
    # every family the module lists is exposed, and no other of its own
    for name in (HUB, GONGAN):
        body = scrape_raw(fed, name, token(fed, Role.AUDITOR, name))[2]
        families = {f.name for f in text_string_to_metric_families(body)}
        assert {f for f in families if f.startswith("exchnode_")} == set(METRICS)


def test_access_is_the_auditors_and_the_administrators(fed: DaemonFederation) -> None:
    assert scrape_raw(fed, HUB, token(fed, Role.ADMINISTRATOR, HUB))[0] == 200
    status, _, body = scrape_raw(fed, HUB, token(fed, Role.OPERATOR, HUB))
    assert status == 403
    answer = json.loads(body)
    assert answer["code"] == "forbidden"
    assert "needs the auditor or administrator role" in answer["error"]
    for bearer in (None, "not-a-token-of-this-node", token(fed, Role.AUDITOR, GONGAN)):
        status, _, body = scrape_raw(fed, HUB, bearer)
        assert (status, json.loads(body)["code"]) == (401, "unauthorized")


def test_no_payload_or_token_in_the_exposition(fed: DaemonFederation) -> None:
    for name in (HUB, GONGAN):
        body = scrape_raw(fed, name, token(fed, Role.AUDITOR, name))[2]
        assert PAYLOAD.decode() not in body
        assert "METRICS-PAYLOAD" not in body
        for role in TOKEN_FILES:
            assert token(fed, role, name) not in body
        secret = (fed.folder(name) / "masking.secret").read_bytes()
        assert secret.hex() not in body


def test_the_grafana_dashboard_uses_only_exposed_metrics(fed: DaemonFederation) -> None:
    """Every metric named in the dashboard's expressions is one a daemon serves."""
    served: set[str] = set()
    for name in (HUB, GONGAN, SHEBAO):  # the names a family exposes, with samples or not yet
        body = scrape_raw(fed, name, token(fed, Role.AUDITOR, name))[2]
        for family in text_string_to_metric_families(body):
            suffixes = {
                "counter": ("_total",),
                "histogram": ("_bucket", "_sum", "_count"),
            }.get(family.type, ("",))
            served.update(family.name + suffix for suffix in suffixes)
    dashboard = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "exchnode.json"
    used = dashboard_metrics(json.loads(dashboard.read_text("utf-8")))
    assert used, "the dashboard names no metric"
    assert not used - served, sorted(used - served)


def dashboard_metrics(dashboard: Any) -> set[str]:
    """The metric names in every query of a Grafana dashboard (panels, rows, variables)."""
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, item in node.items():
                if key in ("expr", "query", "definition") and isinstance(item, str):
                    names.update(re.findall(r"\b((?:exchnode|process|python)_[a-z0-9_]+)", item))
                else:
                    walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(dashboard)
    return names
