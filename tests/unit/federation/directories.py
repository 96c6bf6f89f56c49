"""The federation of the directory tests: real certificates from a synthetic PKI.

root CA 520000 ── node 520000 (province hub P), node 520000.tongji (T)
 ├─ CA 520100 ── node 520100 (city hub C), node 520100.fagai (F)
 │   ├─ CA 520102 ── node 520102 (county hub K), node 520102.gongan (D)
 │   └─ CA 520103 ── node 520103 (county hub K3), node 520103.minzheng (M)
 └─ CA 520200 ── node 520200.jiaotong (J)
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import NamedTuple

from cryptography import x509

from exchnode.core import NodeName
from exchnode.federation import Neighbour, NodeDirectory, Relation, verify_snapshot
from exchnode.federation._directory_wire import DirectoryEntry, sign_snapshot
from exchnode.pki import TrustStore
from exchnode.testing import IssuedNode, SyntheticPKI

MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0


class Clock:
    """A clock the test steps by hand; NodeDirectory's lookups read it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Branch(NamedTuple):
    """The directories of one path down the tree, each node with its neighbours in it."""

    dept: NodeDirectory  # D, under K
    county: NodeDirectory  # K, under C
    city: NodeDirectory  # C, under P
    province: NodeDirectory  # P: C and T below
    tongji: NodeDirectory  # T, under P


class Federation:
    def __init__(self) -> None:
        self.pki = pki = SyntheticPKI()
        self.root = pki.root("520000")
        self.city = pki.ca("520100", self.root)
        self.county = pki.ca("520102", self.city)
        self.county3 = pki.ca("520103", self.city)
        self.city2 = pki.ca("520200", self.root)
        self.P = pki.node("520000", self.root)
        self.T = pki.node("520000.tongji", self.root)
        self.C = pki.node("520100", self.city)
        self.F = pki.node("520100.fagai", self.city)
        self.K = pki.node("520102", self.county)
        self.D = pki.node("520102.gongan", self.county)
        self.K3 = pki.node("520103", self.county3)
        self.M = pki.node("520103.minzheng", self.county3)
        self.J = pki.node("520200.jiaotong", self.city2)
        self.t0 = (pki.epoch + timedelta(days=1)).timestamp()
        # CRLs issued at the epoch, current for 7 days: taken before any revocation.
        self.crls = [pki.crl(ca) for ca in pki.cas.values()]

    def trust(self, crls: Iterable[x509.CertificateRevocationList] | None = None) -> TrustStore:
        return TrustStore([self.root.certificate], self.crls if crls is None else list(crls))

    def sign(
        self,
        issuer: IssuedNode,
        *others: IssuedNode,
        now: float | None = None,
        lifetime: float = DAY,
        crls: Iterable[x509.CertificateRevocationList] = (),
    ) -> bytes:
        entries = [entry(node) for node in (issuer, *others)]
        return sign_snapshot(
            issuer.identity, entries, crls, self.t0 if now is None else now, lifetime
        )

    def directory(
        self, node: IssuedNode, clock: Clock, parent: str | None = None, *children: str
    ) -> NodeDirectory:
        neighbours = [Neighbour(NodeName.parse(c), Relation.CHILD) for c in children]
        if parent is not None:
            neighbours.append(Neighbour(NodeName.parse(parent), Relation.PARENT))
        return NodeDirectory(node.identity, clock=clock, address=url(node), neighbours=neighbours)

    def branch(self, clock: Clock) -> Branch:
        """D, K, C, P and T, not pulled from each other yet."""
        return Branch(
            dept=self.directory(self.D, clock, "520102"),
            county=self.directory(self.K, clock, "520100", "520102.gongan"),
            city=self.directory(self.C, clock, "520000", "520102"),
            province=self.directory(self.P, clock, None, "520100", "520000.tongji"),
            tongji=self.directory(self.T, clock, "520000"),
        )

    def city_with_county(self, clock: Clock, parent: str | None = "520000") -> NodeDirectory:
        """C's directory (its parent, and the county 520102 below) after one pull of the
        county's format-1 snapshot (K and D)."""
        city = self.directory(self.C, clock, parent, "520102")
        snapshot = verify_snapshot(self.sign(self.K, self.D), self.trust(), self.t0, "520102")
        city.update("520102", snapshot, self.t0)
        return city


def url(node: IssuedNode) -> str:
    return f"https://{node.identity.name}.example:8443"


def entry(node: IssuedNode) -> DirectoryEntry:
    return DirectoryEntry.for_identity(node.identity, url(node))
