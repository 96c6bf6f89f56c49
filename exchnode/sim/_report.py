"""What a simulation reports: per node, per link, the messages, convergence (values and rendering).

Two kinds of figures live here, kept apart on purpose.  Everything that
follows from the scenario and its seed -- bytes, counts, state sizes,
virtual times -- is **deterministic**: the same scenario gives the same
values on every run (:meth:`Report.deterministic`, what the tests compare).
CPU seconds and wall time are **measured** on this machine and vary.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["CatalogReport", "LinkReport", "MessageReport", "NodeReport", "RecoveryReport", "Report"]


@dataclass(frozen=True, slots=True)
class NodeReport:
    name: str
    #: bytes the node's store holds at the end (its Python objects, deep size)
    state_bytes: int
    bytes_sent: int
    bytes_received: int
    sent: int  # messages its application sent
    delivered: int  # messages its application received (repeats included)
    restarts: int
    cpu_seconds: float  # measured


@dataclass(frozen=True, slots=True)
class LinkReport:
    parent: str
    child: str
    bytes_down: int  # parent to child
    bytes_up: int  # child to parent
    connections: int
    transfers: int  # POST /exchnode/v1/transfer
    requests: int  # every request, transfers included
    resets: int  # connections cut by a fault
    busy_down: float  # seconds the link spent sending parent to child (its bandwidth)
    busy_up: float


@dataclass(frozen=True, slots=True)
class MessageReport:
    planned: int
    sent: int
    delivered: int  # distinct messages delivered
    lost: int  # sent, never delivered by the end
    duplicated: int  # delivered more than once
    not_sent: int  # the sender was down or could never seal to the recipient
    latency_p50: float | None
    latency_p99: float | None
    latency_max: float | None
    #: virtual seconds from the start until the last sent message was delivered
    all_delivered_at: float | None

    @property
    def exactly_once(self) -> bool:
        return self.lost == 0 and self.duplicated == 0


@dataclass(frozen=True, slots=True)
class CatalogReport:
    """Catalog entries published, and how long each took to reach the province hub."""

    planned: int
    published: int  # the provider was up
    at_province: int  # held by the province hub by the end (polled every 30 s)
    to_province_p50: float | None
    to_province_max: float | None


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """After a node came up or a link was restored: how long until what waited got through."""

    at: float
    fault: str
    #: messages sent before ``at`` and delivered after it
    waited: int
    #: seconds from ``at`` until the last of those was delivered (None: some never were)
    caught_up_after: float | None


@dataclass(frozen=True, slots=True)
class Report:
    scenario: dict[str, Any]
    nodes: list[NodeReport]
    links: list[LinkReport]
    messages: MessageReport
    recoveries: list[RecoveryReport]
    #: virtual seconds until every department knew the keys of all it addresses (None: never)
    keys_known_at: float | None
    simulated_seconds: float
    faults_applied: list[str] = field(default_factory=list)
    catalog: CatalogReport | None = None
    #: measured, not deterministic
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0  # the nodes' callbacks, summed
    process_cpu_seconds: float = 0.0  # the whole process: the harness and the loop included
    callbacks: int = 0

    def deterministic(self) -> dict[str, Any]:
        """Everything that follows from the scenario and its seed (no CPU, no wall time)."""
        data = self.to_json()
        for name in ("wall_seconds", "cpu_seconds", "process_cpu_seconds", "callbacks"):
            data.pop(name)
        for node in data["nodes"]:
            node.pop("cpu_seconds")
        return data

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["messages"]["exactly_once"] = self.messages.exactly_once
        return data

    def json_line(self) -> str:
        return json.dumps(self.to_json(), ensure_ascii=False, separators=(",", ":"))

    def table(self, *, top: int = 15) -> str:
        """A readable summary: the messages, recoveries, the busiest nodes and links."""
        m = self.messages
        lines = [
            f"simulated {self.simulated_seconds / 3600:.2f} h of {len(self.nodes)} nodes, "
            f"{len(self.links)} links in {self.wall_seconds:.1f} s wall, "
            f"{self.process_cpu_seconds:.1f} s CPU ({self.cpu_seconds:.1f} s in the nodes)",
            "",
            f"messages: {m.planned} planned, {m.sent} sent, {m.delivered} delivered, "
            f"{m.lost} lost, {m.duplicated} duplicated, {m.not_sent} not sent -- "
            + (
                "every message sent delivered exactly once"
                if m.exactly_once
                else "NOT exactly once"
            ),
            f"latency: p50 {_seconds(m.latency_p50)}, p99 {_seconds(m.latency_p99)}, "
            f"max {_seconds(m.latency_max)}; all delivered at {_seconds(m.all_delivered_at)}",
            "keys: every department could seal to its recipients at "
            + _seconds(self.keys_known_at),
        ]
        if self.catalog is not None:
            c = self.catalog
            lines.append(
                f"catalog: {c.planned} planned, {c.published} published, {c.at_province} at the "
                f"province hub; p50 {_seconds(c.to_province_p50)}, "
                f"max {_seconds(c.to_province_max)} to get there"
            )
        if self.faults_applied:
            lines += ["", "faults:", *(f"  {line}" for line in self.faults_applied)]
        if self.recoveries:
            lines += ["", "recoveries:"]
            for r in self.recoveries:
                lines.append(
                    f"  {_seconds(r.at):>10} {r.fault:<40} {r.waited:>6} waited, "
                    f"caught up after {_seconds(r.caught_up_after)}"
                )
        lines += ["", f"nodes (top {top} by bytes sent and received):"]
        header = f"  {'node':<24}{'state B':>12}{'sent B':>12}{'recv B':>12}"
        lines.append(header + f"{'msgs out':>10}{'msgs in':>9}{'restarts':>9}{'CPU s':>9}")
        busiest = sorted(self.nodes, key=lambda n: (-(n.bytes_sent + n.bytes_received), n.name))
        for n in busiest[:top]:
            lines.append(
                f"  {n.name:<24}{n.state_bytes:>12,}{n.bytes_sent:>12,}{n.bytes_received:>12,}"
                f"{n.sent:>10}{n.delivered:>9}{n.restarts:>9}{n.cpu_seconds:>9.2f}"
            )
        lines += ["", f"links (top {top} by bytes):"]
        lines.append(
            f"  {'parent':<10}{'child':<24}{'down B':>12}{'up B':>12}"
            f"{'conns':>7}{'transfers':>10}{'requests':>9}{'resets':>7}{'busy s':>9}"
        )
        heaviest = sorted(self.links, key=lambda k: (-(k.bytes_down + k.bytes_up), k.child))
        for k in heaviest[:top]:
            lines.append(
                f"  {k.parent:<10}{k.child:<24}{k.bytes_down:>12,}{k.bytes_up:>12,}"
                f"{k.connections:>7}{k.transfers:>10}{k.requests:>9}{k.resets:>7}"
                f"{k.busy_down + k.busy_up:>9.1f}"
            )
        return "\n".join(lines)


def _seconds(value: float | None) -> str:
    if value is None:
        return "never"
    if value >= 3600:
        return f"{value / 3600:.2f} h"
    if value >= 60:
        return f"{value / 60:.1f} min"
    return f"{value:.2f} s"
