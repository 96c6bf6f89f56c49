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
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
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
    node binds it.  With :class:`PostgresCluster`, what in this module touches the system;
    tests only.
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


class PostgresCluster:
    """A throwaway PostgreSQL server for tests and benchmarks: created, started, removed.

    ``start`` runs ``initdb`` into a fresh temporary folder, creates one
    database (``database``) in single-user mode (no client program needed),
    and starts ``postgres`` listening on a unix socket in that folder only --
    and, with ``tcp=True``, on 127.0.0.1 at a free port -- with ``trust``
    authentication: nothing outside this machine's loopback can reach it,
    and the folder is the server user's alone.  ``stop`` shuts the server
    down (fast mode) and removes the folder.  The server binaries are found
    on ``PATH`` (``initdb``, ``postgres``), or in ``bin_dir``.

    ``fsync=False`` makes the cluster fast and *not durable*: right for a
    test session (nothing survives it anyway), wrong for a benchmark of
    custody, which must pay for the flush a real server pays for.

    PostgreSQL refuses to run as root; when this process is root the
    cluster runs as the ``postgres`` user (else ``nobody``), its folder
    handed to that user.  Never for production: trust authentication, no
    tuning, everything deleted on ``stop``.
    """

    SUPERUSER = "exchnode"

    def __init__(
        self,
        *,
        database: str = "exchnode",
        fsync: bool = True,
        tcp: bool = False,
        bin_dir: str | os.PathLike[str] | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        self.database = database
        self.fsync = fsync
        self.tcp = tcp
        self.timeout_s = timeout_s
        self._bin = Path(bin_dir) if bin_dir is not None else None
        self.folder: Path | None = None
        self.port = 5432  # names the socket file; a real port only with tcp
        self._server: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"PostgresCluster({str(self.folder) if self.folder else 'not started'})"

    def conninfo(self, database: str | None = None) -> str:
        """A libpq connection string for ``database`` (default: the one created) over the socket."""
        if self.folder is None:
            raise RuntimeError("the PostgreSQL cluster is not started")
        dbname = database or self.database
        return f"host={self.folder} port={self.port} dbname={dbname} user={self.SUPERUSER}"

    def tcp_conninfo(self, database: str | None = None) -> str:
        """The same over 127.0.0.1 (``tcp=True`` only)."""
        if self.folder is None or not self.tcp:
            raise RuntimeError("the PostgreSQL cluster does not listen on TCP")
        dbname = database or self.database
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user={self.SUPERUSER}"

    def _program(self, name: str) -> str:
        found = str(self._bin / name) if self._bin is not None else shutil.which(name)
        if found is None or not Path(found).exists():
            raise RuntimeError(f"PostgreSQL's {name} is not on PATH (give bin_dir)")
        return found

    def _as_server_user(self, folder: Path) -> list[str]:
        """The prefix that runs a command as the server's user (nothing unless we are root)."""
        if os.geteuid() != 0:
            return []
        for name in ("postgres", "nobody"):
            with contextlib.suppress(KeyError):
                user = pwd.getpwnam(name)
                break
        else:
            raise RuntimeError("running as root and no postgres or nobody user to run PostgreSQL")
        for path in (folder, *folder.rglob("*")):
            os.chown(path, user.pw_uid, user.pw_gid)
        if shutil.which("setpriv"):  # execs in place: the server's pid is the child's
            return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
        return ["runuser", "-u", user.pw_name, "--"]

    def start(self) -> PostgresCluster:
        if self.folder is not None:
            raise RuntimeError("the PostgreSQL cluster is already started")
        folder = Path(tempfile.mkdtemp(prefix="exchnode-pg-"))
        self.folder = folder
        try:
            self._start(folder)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, folder: Path) -> None:
        data = folder / "data"
        prefix = self._as_server_user(folder)
        initdb = [self._program("initdb"), "-D", str(data), "-U", self.SUPERUSER, "-A", "trust"]
        self._run([*prefix, *initdb, "-E", "UTF8", "--locale=C", "--no-sync"])
        settings = {
            "fsync": "on" if self.fsync else "off",
            "synchronous_commit": "on",
            "listen_addresses": "127.0.0.1" if self.tcp else "",
            "unix_socket_directories": str(folder),
            "unix_socket_permissions": "0700",
            "max_connections": "40",
            "shared_buffers": "32MB",
        }
        if self.tcp:
            self.port = free_port()
        options = [f"--{key}={value}" for key, value in settings.items()]
        postgres = self._program("postgres")
        # The database, made before the server listens: single-user mode needs no client.
        self._run(
            [*prefix, postgres, "--single", "-D", str(data), *options, "postgres"],
            stdin=f'CREATE DATABASE "{self.database}"\n'.encode(),
        )
        log = (folder / "server.log").open("wb")
        with log:
            self._server = subprocess.Popen(  # noqa: S603 - our own arguments, no shell
                [*prefix, postgres, "-D", str(data), "-p", str(self.port), *options],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + self.timeout_s
        pid_file = data / "postmaster.pid"
        while True:
            if self._server.poll() is not None:
                raise RuntimeError(f"PostgreSQL did not start; see {folder / 'server.log'}")
            with contextlib.suppress(OSError):
                lines = pid_file.read_text().splitlines()
                if len(lines) >= 8 and lines[7].strip() == "ready":  # what pg_ctl waits for
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL not ready in {self.timeout_s} s")
            time.sleep(0.05)

    def _run(self, argv: list[str], stdin: bytes | None = None) -> None:
        done = subprocess.run(  # noqa: S603 - our own arguments, no shell
            argv, input=stdin, capture_output=True, timeout=self.timeout_s, check=False
        )
        if done.returncode != 0:
            tail = done.stderr.decode(errors="replace")[-2000:]
            raise RuntimeError(f"{Path(argv[0]).name} failed ({done.returncode}): {tail}")

    def stop(self) -> None:
        """Shut the server down (fast: sessions are ended) and remove its folder.  Idempotent."""
        server, self._server = self._server, None
        if server is not None and server.poll() is None:
            server.send_signal(signal.SIGINT)  # fast shutdown
            try:
                server.wait(timeout=self.timeout_s)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=self.timeout_s)
        folder, self.folder = self.folder, None
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
