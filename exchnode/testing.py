"""Test doubles that ship with the library: reproducible keys, randomness and PKI.

Integrators' tests, our own tests, the protocol's test vectors and the
benchmarks all need identities, certificates and "random" bytes that are the
same on every run.  Nothing here is fit for production: every key is a public
function of a label, and a :class:`SeededRandom` of its seed.

Keys: ``sha256(purpose || label)`` is the Ed25519 / X25519 seed, so
``seeded_identity("520102.gongan")`` and the node of that name in a
:class:`SyntheticPKI` hold the same keys.

The synthetic PKI builds certificate hierarchies in memory with the real,
checked builders.  Serial numbers count up from 1 and all times hang off a
fixed epoch; Ed25519 signatures are deterministic; so the same calls produce
the same certificates and CRLs byte for byte, on every machine, and the
vectors in ``protocol/vectors/`` can be regenerated and diffed.  Nothing in
exchnode's runtime imports this module.

    pki = SyntheticPKI()
    national = pki.root("000000")
    province = pki.ca("520000", national)
    node = pki.node("520000.fagai", province)
    trust = pki.trust_store([national], now=pki.epoch)
    now = pki.epoch + timedelta(days=1)
    peer = verify_node_certificate(node.certificate, node.chain, trust, now)
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from exchnode.core import LocalIdentity, NodeName, StaticDirectory
from exchnode.pki import (
    CA_VALIDITY,
    CRL_VALIDITY,
    NODE_VALIDITY,
    ROOT_VALIDITY,
    Revocation,
    TrustStore,
    build_crl,
    build_intermediate_ca,
    build_node_certificate,
    build_root_ca,
)

__all__ = [
    "DEFAULT_EPOCH",
    "IssuedCA",
    "IssuedNode",
    "SeededRandom",
    "SyntheticPKI",
    "free_port",
    "seeded_directory",
    "seeded_identity",
    "synthetic_encryption_key",
    "synthetic_signing_key",
]


class SeededRandom:
    """Reproducible bytes: SHA-256 over (seed, counter).  For tests and vectors only."""

    def __init__(self, seed: bytes | str) -> None:
        self._seed = seed.encode() if isinstance(seed, str) else seed
        self._counter = 0
        self._buffer = b""

    def __call__(self, size: int) -> bytes:
        while len(self._buffer) < size:
            block = hashlib.sha256(self._seed + self._counter.to_bytes(8, "big")).digest()
            self._buffer += block
            self._counter += 1
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out


def seeded_identity(name: str, seed: str | None = None) -> LocalIdentity:
    """A node identity whose keys derive from ``seed`` (default: the name), no certificate."""
    label = f"node:{name if seed is None else seed}"
    return LocalIdentity.from_keys(
        name, synthetic_signing_key(label), synthetic_encryption_key(label)
    )


def seeded_directory(*identities: LocalIdentity) -> StaticDirectory:
    return StaticDirectory(identity.peer for identity in identities)


DEFAULT_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def _seed(purpose: bytes, label: str) -> bytes:
    return hashlib.sha256(b"exchnode synthetic " + purpose + b"\x00" + label.encode()).digest()


def synthetic_signing_key(label: str) -> Ed25519PrivateKey:
    """An Ed25519 key everybody can recompute from ``label``: for tests only."""
    return Ed25519PrivateKey.from_private_bytes(_seed(b"signing key", label))


def synthetic_encryption_key(label: str) -> X25519PrivateKey:
    """An X25519 key everybody can recompute from ``label``: for tests only."""
    return X25519PrivateKey.from_private_bytes(_seed(b"encryption key", label))


@dataclass(frozen=True, slots=True, eq=False)
class IssuedCA:
    """A CA of the synthetic hierarchy: its key, certificate and issuers."""

    division: str
    key: Ed25519PrivateKey = field(repr=False)
    certificate: x509.Certificate
    #: This CA's issuers, nearest first, root last (empty for a root).
    issuers: tuple[x509.Certificate, ...] = ()

    @property
    def root(self) -> x509.Certificate:
        return self.issuers[-1] if self.issuers else self.certificate

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """The certificates a subordinate presents above itself: this CA and
        its issuers, without the root."""
        return (self.certificate, *self.issuers)[:-1] if self.issuers else ()


@dataclass(frozen=True, slots=True, eq=False)
class IssuedNode:
    """A node of the synthetic hierarchy."""

    identity: LocalIdentity
    certificate: x509.Certificate
    #: Intermediates between the node and the root (root excluded), nearest first.
    chain: tuple[x509.Certificate, ...]
    root: x509.Certificate


@dataclass(slots=True)
class SyntheticPKI:
    """Build certificate hierarchies in memory with the real, checked builders."""

    epoch: datetime = DEFAULT_EPOCH
    next_serial: int = 1
    revocations: dict[str, list[Revocation]] = field(default_factory=dict)
    cas: dict[str, IssuedCA] = field(default_factory=dict)

    def _serial(self) -> int:
        serial = self.next_serial
        self.next_serial += 1
        return serial

    def root(
        self,
        division: str,
        *,
        not_before: datetime | None = None,
        lifetime: timedelta = ROOT_VALIDITY,
        label: str | None = None,
    ) -> IssuedCA:
        """A self-signed root; ``label`` picks another key for the same name."""
        key = synthetic_signing_key(label or f"ca:{division}")
        start = self.epoch if not_before is None else not_before
        cert = build_root_ca(division, key, self._serial(), start, start + lifetime)
        ca = IssuedCA(division, key, cert)
        self.cas[division] = ca
        return ca

    def ca(
        self,
        division: str,
        issuer: IssuedCA,
        *,
        not_before: datetime | None = None,
        lifetime: timedelta = CA_VALIDITY,
        label: str | None = None,
    ) -> IssuedCA:
        """A sub-CA; ``label`` picks another key for the same name (a re-keyed CA)."""
        key = synthetic_signing_key(label or f"ca:{division}")
        start = self.epoch if not_before is None else not_before
        cert = build_intermediate_ca(
            division,
            key.public_key(),
            issuer.certificate,
            issuer.key,
            self._serial(),
            start,
            start + lifetime,
        )
        ca = IssuedCA(division, key, cert, (issuer.certificate, *issuer.issuers))
        self.cas[division] = ca
        return ca

    def node(
        self,
        name: str,
        issuer: IssuedCA,
        *,
        not_before: datetime | None = None,
        lifetime: timedelta = NODE_VALIDITY,
        generation: int = 0,
    ) -> IssuedNode:
        """A node certificate; ``generation`` > 0 gives the same name new keys (a rotation)."""
        seed = f"node:{name}" if generation == 0 else f"node:{name}:{generation}"
        signing = synthetic_signing_key(seed)
        encryption = synthetic_encryption_key(seed)
        start = self.epoch if not_before is None else not_before
        cert = build_node_certificate(
            name,
            signing.public_key(),
            encryption.public_key(),
            issuer.certificate,
            issuer.key,
            self._serial(),
            start,
            start + lifetime,
        )
        chain = issuer.chain
        identity = LocalIdentity.from_keys(
            NodeName.parse(name), signing, encryption, certificate=cert, chain=chain
        )
        return IssuedNode(identity, cert, chain, issuer.root)

    def revoke(
        self,
        certificate: x509.Certificate,
        issuer: IssuedCA,
        when: datetime | None = None,
        reason: x509.ReasonFlags = x509.ReasonFlags.key_compromise,
    ) -> None:
        """List ``certificate`` in ``issuer``'s future CRLs."""
        moment = self.epoch if when is None else when
        self.revocations.setdefault(issuer.division, []).append(
            Revocation(certificate.serial_number, moment, reason)
        )

    def crl(
        self,
        issuer: IssuedCA,
        *,
        this_update: datetime | None = None,
        validity: timedelta = CRL_VALIDITY,
        number: int = 1,
        signing_key: Ed25519PrivateKey | None = None,
    ) -> x509.CertificateRevocationList:
        """``issuer``'s CRL; ``signing_key`` lets a test sign it with the wrong key."""
        start = self.epoch if this_update is None else this_update
        entries = self.revocations.get(issuer.division, [])
        if signing_key is None:
            return build_crl(
                issuer.certificate, issuer.key, entries, number, start, start + validity
            )
        # A CRL with the right issuer DN but someone else's signature.
        impostor = IssuedCA(issuer.division, signing_key, issuer.certificate)
        return _sign_crl_unchecked(impostor, entries, number, start, start + validity)

    def trust_store(
        self,
        roots: Iterable[IssuedCA],
        *,
        now: datetime | None = None,
        crls_for: Iterable[IssuedCA] | None = None,
    ) -> TrustStore:
        """A trust store with ``roots`` and a fresh CRL (from ``now``) for every CA
        built so far, or only for ``crls_for``."""
        start = self.epoch if now is None else now
        issuers = list(self.cas.values()) if crls_for is None else list(crls_for)
        return TrustStore(
            [root.certificate for root in roots],
            [self.crl(ca, this_update=start) for ca in issuers],
        )


def _sign_crl_unchecked(
    ca: IssuedCA,
    entries: Iterable[Revocation],
    number: int,
    this_update: datetime,
    next_update: datetime,
) -> x509.CertificateRevocationList:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(this_update)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    for entry in entries:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(entry.serial)
            .revocation_date(entry.revocation_date)
            .build()
        )
    return builder.sign(ca.key, None)


_HANDED_OUT: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A loopback port to configure a test node on before it starts (its peers need the URL).

    Chosen *below* the kernel's ephemeral range: a port that is free now but inside that
    range can be taken by any outgoing connection (a node's own links, under load) before the
    node binds it.  The one function in this module that touches the system; tests only.
    """
    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    candidates = list(range(max(1024, low - 12_000), low))
    secrets.SystemRandom().shuffle(candidates)
    for port in candidates[:200]:
        if port in _HANDED_OUT:
            continue  # free, but already promised to another node of this process
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    with socket.socket() as sock:  # pragma: no cover - a crowded machine: any free port
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
