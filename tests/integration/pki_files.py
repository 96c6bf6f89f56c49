"""A small federation's TLS material on disk, from the synthetic PKI (shared by tests)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from exchnode.aio import TlsFiles
from exchnode.pki import TrustStore, verify_node_certificate, write_private_key
from exchnode.testing import IssuedCA, IssuedNode, SyntheticPKI

NOW = datetime.now(UTC).replace(microsecond=0)


def write_tls_files(
    directory: Path,
    node: IssuedNode,
    root: IssuedCA,
    crls: Iterable[x509.CertificateRevocationList],
) -> TlsFiles:
    """``node``'s TLS files in ``directory``, as a node is given them.

    Its chain, its signing key (written once: a key already there is kept), and
    what it verifies peers against: the root followed by ``crls``.
    """
    name = str(node.identity.name)
    chain = directory / f"{name}.chain.pem"
    chain.write_bytes(
        node.certificate.public_bytes(Encoding.PEM)
        + b"".join(c.public_bytes(Encoding.PEM) for c in node.chain)
    )
    key = directory / f"{name}.key"
    if not key.exists():
        write_private_key(key, node.identity.signing_private_key)
    verify = directory / f"{name}.verify.pem"
    verify.write_bytes(
        root.certificate.public_bytes(Encoding.PEM)
        + b"".join(crl.public_bytes(Encoding.PEM) for crl in crls)
    )
    return TlsFiles(chain, key, verify)


class Federation:
    """Root 520000, CAs 520100 and 522300, a city hub and a county department."""

    def __init__(self, directory: Path, label: str = "") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.pki = SyntheticPKI(epoch=NOW - timedelta(days=1))
        self.root = self.pki.root("520000", label=f"{label}root" if label else None)
        self.cas: list[IssuedCA] = [
            self.root,
            self.pki.ca("520100", self.root),
            self.pki.ca("522300", self.root),
        ]
        self.hub = self.pki.node("520100", self.cas[1])
        self.department = self.pki.node("522301.minzheng", self.cas[2])

    def files(self, node: IssuedNode, *, crl_age: timedelta = timedelta(hours=1)) -> TlsFiles:
        crls = [self.pki.crl(ca, this_update=NOW - crl_age) for ca in self.cas]
        return write_tls_files(self.directory, node, self.root, crls)

    def trust(self) -> TrustStore:
        crls = [self.pki.crl(ca, this_update=NOW - timedelta(hours=1)) for ca in self.cas]
        return TrustStore([self.root.certificate], crls)

    def authenticate(self, certificate: object) -> str:
        """The second layer of checks, as a node runs it: pki_verify with the CA bundle."""
        bundle = [ca.certificate for ca in self.cas[1:]]
        peer = verify_node_certificate(certificate, bundle, self.trust(), NOW)  # type: ignore[arg-type]
        return str(peer.name)
