"""A federation of in-process nodes on loopback, with real TLS files and SQLite stores.

The topology follows the names: every node's parent is the hub of the
division one level up (a department's parent is the hub of its own
division), exactly as an operator would configure it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

from cryptography import x509

from exchnode.aio import AuditService, Node, NodeConfig, Peer, TlsFiles
from exchnode.core import NodeName, StaticDirectory, parent_hub
from exchnode.federation import Relation
from exchnode.pki import TrustStore, verify_node_certificate
from exchnode.testing import IssuedCA, IssuedNode, SyntheticPKI, free_port
from tests.integration.pki_files import write_tls_files

NOW = datetime.now(UTC).replace(microsecond=0)

CROSS_CITY = [
    "520000",
    "520100",
    "520102",
    "520102.gongan",
    "522300",
    "522301",
    "522301.minzheng",
]


parent_of = parent_hub

_CONFIG_FIELDS = frozenset(field.name for field in dataclasses.fields(NodeConfig))


@contextlib.asynccontextmanager
async def started(nodes: dict[str, Node]) -> AsyncIterator[dict[str, Node]]:
    """``nodes`` started in their order; all of them closed on the way out."""
    async with contextlib.AsyncExitStack() as stack:
        for node in nodes.values():
            await stack.enter_async_context(node)
        yield nodes


async def one_delivery(node: Node) -> bytes:
    """The payload of the next message ``node`` delivers, acknowledged."""
    async for delivery in node.deliveries():
        await delivery.ack()
        return delivery.payload
    raise AssertionError("node closed")


class Federation:
    """PKI, TLS files, ports and a shared directory for ``names``; builds ``Node`` objects."""

    def __init__(
        self,
        directory: Path,
        names: Iterable[str] = CROSS_CITY,
        *,
        now: datetime = NOW,
        ports: dict[str, int] | None = None,
    ) -> None:
        """``now`` and ``ports`` let another process rebuild the same federation (same certs)."""
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.names = list(names)
        self.now = now
        self.pki = SyntheticPKI(epoch=now - timedelta(days=1))
        self.root = self.pki.root("520000")
        self.cas: dict[str, IssuedCA] = {"520000": self.root}
        self.nodes: dict[str, IssuedNode] = {}
        for name in self.names:
            self.nodes[name] = self.pki.node(name, self._ca_for(name))
        self.ports = dict(ports) if ports else {name: free_port() for name in self.names}
        self.shared_directory = StaticDirectory(n.identity.peer for n in self.nodes.values())

    def child_spec(self, name: str, **settings: Any) -> Path:
        """A file from which a child process rebuilds this federation to run node ``name``.

        The synthetic PKI is deterministic, so ``now`` and the ports are all the
        child needs to hold the same certificates at the same addresses;
        ``settings`` are the child's own (its role, limits, ...).
        """
        spec = self.directory / f"{name}.json"
        spec.write_text(
            json.dumps(
                {
                    "directory": str(self.directory),
                    "names": self.names,
                    "now": self.now.isoformat(),
                    "ports": self.ports,
                    "name": name,
                    **settings,
                }
            )
        )
        return spec

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Federation:
        """In a child process: the federation a :meth:`child_spec` file describes."""
        return cls(
            Path(spec["directory"]),
            spec["names"],
            now=datetime.fromisoformat(spec["now"]),
            ports=spec["ports"],
        )

    def _ca_for(self, name: str) -> IssuedCA:
        division = NodeName.parse(name).division
        if division.endswith("0000"):
            return self.root
        city = division[:4] + "00"
        if city not in self.cas:
            self.cas[city] = self.pki.ca(city, self.root)
        return self.cas[city]

    @property
    def ca_bundle(self) -> list[Any]:
        return [ca.certificate for name, ca in self.cas.items() if name != "520000"]

    def trust(self) -> TrustStore:
        crls = [
            self.pki.crl(ca, this_update=self.now - timedelta(hours=1)) for ca in self.cas.values()
        ]
        return TrustStore([self.root.certificate], crls)

    def tls_files(self, name: str) -> TlsFiles:
        crls = [
            self.pki.crl(ca, this_update=self.now - timedelta(hours=1)) for ca in self.cas.values()
        ]
        return write_tls_files(self.directory, self.nodes[name], self.root, crls)

    def peers(self, name: str) -> list[Peer]:
        out = []
        parent = parent_of(name)
        for other in self.names:
            if other == parent:
                relation = Relation.PARENT
            elif parent_of(other) == name:
                relation = Relation.CHILD
            else:
                continue
            out.append(Peer(name=other, relation=relation, url=self.url(other)))
        return out

    def authenticate(self, certificate: x509.Certificate) -> str:
        """The peer's name, verified as a node verifies it (chain, CRLs, name constraints)."""
        peer = verify_node_certificate(certificate, self.ca_bundle, self.trust(), self.now)
        return str(peer.name)

    def url(self, name: str) -> str:
        return f"https://127.0.0.1:{self.ports[name]}"

    def config(self, name: str, **settings: Any) -> NodeConfig:
        """``name``'s NodeConfig: its neighbours, its port, and ``settings`` (NodeConfig fields)."""
        values: dict[str, Any] = {
            "peers": self.peers(name),
            "listen": ("127.0.0.1", self.ports[name]),
        }
        values.update(settings)
        return NodeConfig(**values)

    def node(self, name: str, **overrides: Any) -> Node:
        """A Node for ``name``; ``overrides`` are Node arguments or NodeConfig fields.

        A NodeConfig field (``timers``, ``backoff``, ``limits``, ...) goes into
        the node's ``config`` (see :meth:`config`), anything else to ``Node``.
        """
        settings = {key: overrides.pop(key) for key in list(overrides) if key in _CONFIG_FIELDS}
        options: dict[str, Any] = {
            "identity": self.nodes[name].identity,
            "directory": self.shared_directory,
            "store": self.directory / f"{name}.sqlite",
            "tls": self.tls_files(name),
            "trust": self.trust(),
            "ca_bundle": self.ca_bundle,
            "config": self.config(name, **settings),
        }
        options.update(overrides)
        return Node(**options)


class AuditedNodes:
    """Nodes of a federation started and stopped one at a time, each with its audit service.

    A test's world: its ``start`` builds the node and its services and fills
    ``nodes`` and ``audit`` (and whatever else it keeps by name).
    """

    def __init__(self, tmp_path: Path, names: list[str]) -> None:
        self.federation = Federation(tmp_path, names)
        self.nodes: dict[str, Node] = {}
        self.audit: dict[str, AuditService] = {}

    def store_path(self, name: str) -> Path:
        return self.federation.directory / f"{name}.sqlite"

    async def stop(self, name: str) -> None:
        await self.nodes.pop(name).close()  # stores everything and signs a last head

    async def close(self) -> None:
        for name in list(self.nodes):
            await self.stop(name)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
