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
import re
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
    node binds it.  Under pytest-xdist each worker (and what it starts, which inherits its
    environment) takes its own slice of that span, so two workers never promise the same
    port.  With :class:`PostgresCluster`, what in this module touches the system; tests only.
    """
    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    start = max(1024, low - 12_000)
    worker, workers = os.environ.get("PYTEST_XDIST_WORKER", ""), 1
    with contextlib.suppress(ValueError):
        workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if worker.startswith("gw") and worker[2:].isdigit() and workers > 1:
        width = (low - start) // workers
        start += width * (int(worker[2:]) % workers)
        low = start + width
    candidates = list(range(start, low))
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

    **Replication** (issue 14: a standby hub takes over when the primary site
    is lost).  Every cluster starts ready to be a primary: ``wal_level =
    replica``, WAL senders and replication slots to spare, and initdb's
    ``pg_hba.conf`` admits replication connections over the same socket and
    loopback, with the same ``trust``.  :class:`PostgresStandby` makes a
    streaming standby of it (``pg_basebackup -R``), synchronous by default;
    :meth:`kill` ends the server as a lost site ends (SIGKILL, every process
    at once, no shutdown).  ``synchronous_standby_names`` is never on the
    command line but set by ``ALTER SYSTEM`` as standbys are attached
    (:meth:`set_synchronous_standbys`): a primary without a standby yet
    must not wait for one, and a command-line setting could not be changed
    without a restart.  :meth:`sql` runs a statement through ``psql``
    (the module imports no database driver).
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
        #: the standbys every commit waits for (``synchronous_standby_names``)
        self.synchronous_standbys: tuple[str, ...] = ()
        #: True once :meth:`kill` ended the server (its folder stays until ``stop``)
        self.killed = False
        self._frozen: list[int] = []  # the processes freeze() stopped

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.folder) if self.folder else 'not started'})"

    @property
    def running(self) -> bool:
        """Whether the server process is alive (started, neither stopped nor killed)."""
        return self._server is not None and self._server.poll() is None

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
        """The prefix that runs a command as the server's user (nothing unless we are root).

        Hands ``folder`` (everything in it) to that user: call it before the
        server runs there, not on a live data folder (files come and go).
        """
        user = _server_user()
        if user is None:
            return []
        for path in (folder, *folder.rglob("*")):
            os.chown(path, user.pw_uid, user.pw_gid)
        return _user_prefix(user)

    def start(self) -> PostgresCluster:
        if self.folder is not None:
            raise RuntimeError("the PostgreSQL cluster is already started")
        folder = Path(tempfile.mkdtemp(prefix=self._FOLDER_PREFIX))
        self.folder = folder
        try:
            self._start(folder)
        except BaseException:
            self.stop()
            raise
        return self

    _FOLDER_PREFIX = "exchnode-pg-"

    def _settings(self, folder: Path) -> dict[str, str]:
        """The server's settings, given on its command line (they win over any file)."""
        return {
            "fsync": "on" if self.fsync else "off",
            "synchronous_commit": "on",
            "listen_addresses": "127.0.0.1" if self.tcp else "",
            "unix_socket_directories": str(folder),
            "unix_socket_permissions": "0700",
            "max_connections": "40",
            "shared_buffers": "32MB",
            # Ready to be a primary: a standby needs WAL of this level, a sender and a slot.
            "wal_level": "replica",
            "max_wal_senders": "8",
            "max_replication_slots": "8",
        }

    def _start(self, folder: Path) -> None:
        data = folder / "data"
        prefix = self._as_server_user(folder)
        initdb = [self._program("initdb"), "-D", str(data), "-U", self.SUPERUSER, "-A", "trust"]
        self._run([*prefix, *initdb, "-E", "UTF8", "--locale=C", "--no-sync"])
        settings = self._settings(folder)
        if self.tcp:
            self.port = free_port()
        options = [f"--{key}={value}" for key, value in settings.items()]
        # The database, made before the server listens: single-user mode needs no client.
        self._run(
            [*prefix, self._program("postgres"), "--single", "-D", str(data), *options, "postgres"],
            stdin=f'CREATE DATABASE "{self.database}"\n'.encode(),
        )
        self._launch(folder, prefix, options, ready=("ready",))

    def _launch(
        self, folder: Path, prefix: list[str], options: list[str], ready: tuple[str, ...]
    ) -> None:
        """Start ``postgres`` on ``folder/data``; return once its pid file says one of ``ready``."""
        data = folder / "data"
        postgres = [self._program("postgres"), "-D", str(data), "-p", str(self.port), *options]
        log = (folder / "server.log").open("ab")
        with log:
            self._server = subprocess.Popen(  # noqa: S603 - our own arguments, no shell
                [*prefix, *postgres],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + self.timeout_s
        pid_file = data / "postmaster.pid"
        while True:
            if self._server.poll() is not None:
                raise RuntimeError(f"PostgreSQL did not start: {_log_tail(folder)}")
            with contextlib.suppress(OSError):
                lines = pid_file.read_text().splitlines()
                # What pg_ctl waits for: "ready" (a hot standby says "standby" in some versions).
                if len(lines) >= 8 and lines[7].strip() in ready:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"PostgreSQL not ready in {self.timeout_s} s: {_log_tail(folder)}"
                )
            time.sleep(0.05)

    def _run(self, argv: list[str], stdin: bytes | None = None) -> str:
        """Run a program to its end: its output, or RuntimeError with the end of its errors."""
        done = subprocess.run(  # noqa: S603 - our own arguments, no shell
            argv, input=stdin, capture_output=True, timeout=self.timeout_s, check=False
        )
        if done.returncode != 0:
            tail = done.stderr.decode(errors="replace")[-2000:]
            raise RuntimeError(f"{Path(argv[0]).name} failed ({done.returncode}): {tail}")
        return done.stdout.decode(errors="replace")

    def sql(self, statement: str, database: str | None = None) -> str:
        """Run one SQL statement with ``psql`` as the superuser; its rows, ``|`` between fields.

        For the test's view of the server (``pg_stat_replication``,
        ``pg_is_in_recovery()``) and for what an operator types (``ALTER
        SYSTEM``, ``pg_promote``): the module imports no driver (its layer
        may not), and psql is what an operator would use anyway.
        """
        if self.folder is None or not self.running:
            raise RuntimeError("the PostgreSQL cluster is not running")
        user = _server_user()
        psql = [
            self._program("psql"), "-X", "-q", "-A", "-t", "-F", "|", "-v", "ON_ERROR_STOP=1",
            "-h", str(self.folder), "-p", str(self.port), "-U", self.SUPERUSER,
            "-d", database or self.database, "-c", statement,
        ]  # fmt: skip
        prefix = [] if user is None else _user_prefix(user)
        return self._run([*prefix, *psql]).strip()

    def set_synchronous_standbys(self, names: Iterable[str]) -> None:
        """Make every commit wait until each of ``names`` has flushed it (none: commit alone).

        ``synchronous_standby_names = 'FIRST n (a, b, ...)'`` with n the number
        of names, by ``ALTER SYSTEM`` and a reload: the commits under way
        follow at once (an empty list releases those waiting for a standby
        that is gone -- an operator's choice to run unprotected).
        """
        chosen = tuple(dict.fromkeys(names))
        for name in chosen:
            _check_standby_name(name)
        value = f"FIRST {len(chosen)} ({', '.join(chosen)})" if chosen else ""
        self.sql(f"ALTER SYSTEM SET synchronous_standby_names = '{value}'")
        self.sql("SELECT pg_reload_conf()")
        self.synchronous_standbys = chosen

    def sync_states(self) -> dict[str, str]:
        """Each streaming standby's ``sync_state`` (``sync``, ``async``, ...), by its name."""
        rows = self.sql(
            "SELECT application_name, sync_state FROM pg_stat_replication WHERE state = 'streaming'"
        )
        return dict(row.split("|", 1) for row in rows.splitlines() if "|" in row)

    def freeze(self) -> None:
        """Stop every process of the server (SIGSTOP) without ending it: a site that hangs.

        Why: to hold commits in flight.  A primary whose synchronous standby
        is frozen flushes each commit's WAL locally and waits for the
        standby's answer -- the moment a test wants to lose the primary at.
        :meth:`thaw` lets it run on.
        """
        if not self.running:
            raise RuntimeError("the PostgreSQL cluster is not running")
        assert self._server is not None  # running
        self._frozen = _freeze_tree(self._server.pid)

    def thaw(self) -> None:
        """Let the processes :meth:`freeze` stopped run again."""
        frozen, self._frozen = self._frozen, []
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def kill(self) -> None:
        """End the server as a lost site ends: every process of it SIGKILLed at once, no shutdown.

        Not SIGKILL of the postmaster alone: its children (each in a session of
        its own, so no process group reaches them) would live on for a moment,
        and a backend could still commit or a WAL sender stream.  So the whole
        tree is frozen first (SIGSTOP, each process before its children are
        listed, so none forks unseen), then killed.  The folder stays, as a lost
        site's disks do, until :meth:`stop`.  Linux (``/proc``) only.
        """
        server = self._server
        if server is None:
            raise RuntimeError("the PostgreSQL cluster is not started")
        if server.poll() is None:
            frozen = _freeze_tree(server.pid)
            for pid in frozen:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self._frozen = []
            server.wait(timeout=self.timeout_s)
            deadline = time.monotonic() + self.timeout_s
            while any(_alive(pid) for pid in frozen):
                if time.monotonic() > deadline:
                    raise RuntimeError("PostgreSQL's processes outlived SIGKILL")
                time.sleep(0.01)
        self.killed = True

    def stop(self) -> None:
        """Shut the server down (fast: sessions are ended) and remove its folder.  Idempotent."""
        self.thaw()  # a frozen server would not hear the shutdown
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
            if self.killed:
                _release_shared_memory(folder / "data")
            shutil.rmtree(folder, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class PostgresStandby(PostgresCluster):
    """A streaming standby of a :class:`PostgresCluster`: base backup, started, promotable.

    Why: a hub's custody may be acknowledged only once it survives the loss
    of the hub's site (issue 14, 两地三中心).  With a *synchronous* standby
    the primary's commit returns only after the standby has flushed its WAL,
    so a test can kill the primary at any moment, :meth:`promote` this
    server and find every acknowledged commit here.

    ``start`` takes a base backup of ``primary`` (``pg_basebackup -R``:
    ``standby.signal`` and ``primary_conninfo`` written, WAL streamed during
    the copy) with a replication slot named ``name`` (the primary keeps the
    WAL this standby has not had yet), starts it as a hot standby whose
    ``cluster_name`` -- the name it reports to the primary -- is ``name``,
    and, with ``synchronous=True``, adds ``name`` to the primary's
    synchronous standbys; it returns once the primary shows it streaming
    (``sync_state = 'sync'`` when synchronous).  ``stop`` removes it from
    the primary's synchronous standbys (else every later commit there would
    wait for ever) and drops its slot; :meth:`kill` does neither, as a lost
    site would not.  A ``synchronous_standby_names`` the base backup copied
    is dropped here: once promoted, this server waits for no standby until
    one is attached to it.
    """

    _FOLDER_PREFIX = "exchnode-pg-standby-"

    def __init__(
        self,
        primary: PostgresCluster,
        name: str = "standby",
        *,
        synchronous: bool = True,
        tcp: bool = False,
        timeout_s: float | None = None,
    ) -> None:
        _check_standby_name(name)
        super().__init__(
            database=primary.database,
            fsync=primary.fsync,
            tcp=tcp,
            bin_dir=primary._bin,
            timeout_s=primary.timeout_s if timeout_s is None else timeout_s,
        )
        self.primary = primary
        self.name = name
        self.synchronous = synchronous
        #: True once :meth:`promote` made this server a primary
        self.promoted = False

    def start(self) -> PostgresStandby:
        if self.primary.folder is None or not self.primary.running:
            raise RuntimeError("the primary of this standby is not running")
        super().start()
        return self

    def __enter__(self) -> PostgresStandby:
        return self.start()

    def _start(self, folder: Path) -> None:
        primary = self.primary
        assert primary.folder is not None  # checked by start
        data = folder / "data"
        prefix = self._as_server_user(folder)
        backup = [
            self._program("pg_basebackup"), "-D", str(data),
            "-h", str(primary.folder), "-p", str(primary.port), "-U", primary.SUPERUSER,
            "-R", "-X", "stream", "-c", "fast", "-C", "-S", self.name,
        ]  # fmt: skip
        # --no-sync as initdb's: a test loses processes, never the machine's page cache.
        self._run([*prefix, *backup, "--no-sync"])
        auto = data / "postgresql.auto.conf"
        lines = auto.read_text().splitlines(keepends=True)
        auto.write_text("".join(x for x in lines if not x.startswith("synchronous_standby_names")))
        if self.tcp:
            self.port = free_port()
        settings = self._settings(folder) | {"cluster_name": self.name, "hot_standby": "on"}
        options = [f"--{key}={value}" for key, value in settings.items()]
        self._launch(folder, prefix, options, ready=("ready", "standby"))
        if self.synchronous:
            primary.set_synchronous_standbys((*primary.synchronous_standbys, self.name))
        wanted = "sync" if self.synchronous else "async"
        deadline = time.monotonic() + self.timeout_s
        while primary.sync_states().get(self.name) != wanted:
            if time.monotonic() > deadline:
                raise RuntimeError(f"standby {self.name} not streaming ({wanted}) in time")
            time.sleep(0.05)

    def wait_replayed(self) -> None:
        """Return once every WAL record this standby has flushed is also applied (visible).

        A synchronous commit returns when the standby has *flushed* it
        (``synchronous_commit = on``), not applied it: reading the standby
        right after is reading what it has replayed so far.  This waits until
        replay has reached what was received, so the rows of every commit
        the primary returned are there to count.
        """
        deadline = time.monotonic() + self.timeout_s
        caught_up = "SELECT pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn()"
        while self.sql(caught_up) != "t":
            if time.monotonic() > deadline:
                raise RuntimeError(f"standby {self.name} has not replayed what it received")
            time.sleep(0.05)

    def promote(self) -> None:
        """Make this standby a primary; return once it accepts writes.

        The takeover's step after the old primary is fenced (killed, or cut
        off): ``pg_promote(wait => true)`` ends recovery, then this waits
        until ``pg_is_in_recovery()`` is false, so a hub started next opens
        its store on a writable server.
        """
        if self.sql(f"SELECT pg_promote(true, {max(1, int(self.timeout_s))})") != "t":
            raise RuntimeError(f"standby {self.name} was not promoted in {self.timeout_s} s")
        deadline = time.monotonic() + self.timeout_s
        while self.sql("SELECT pg_is_in_recovery()") != "f":
            if time.monotonic() > deadline:
                raise RuntimeError(f"standby {self.name} still in recovery after promotion")
            time.sleep(0.05)
        self.promoted = True

    def stop(self) -> None:
        """Detach from the primary (still running: no more waiting for this one), then stop."""
        primary = self.primary
        attached = self.folder is not None and not self.promoted and primary.running
        try:
            if attached and self.name in primary.synchronous_standbys:
                primary.set_synchronous_standbys(
                    name for name in primary.synchronous_standbys if name != self.name
                )
        finally:
            super().stop()
        if attached:
            # Its WAL sender ends as this server goes; until then the slot is in use.
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline:
                try:
                    primary.sql(f"SELECT pg_drop_replication_slot('{self.name}')")
                    break
                except (RuntimeError, subprocess.SubprocessError):
                    time.sleep(0.05)


_STANDBY_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")


def _check_standby_name(name: str) -> None:
    """A standby's name is a slot name and an application name: lower-case letters, digits, _."""
    if not isinstance(name, str) or not _STANDBY_NAME.fullmatch(name):
        raise ValueError(f"a standby's name is a lower-case identifier, got {name!r}")


def _log_tail(folder: Path) -> str:
    """The end of the server's log: the folder goes with a failed start, so say it here."""
    try:
        return (folder / "server.log").read_text(errors="replace")[-2000:]
    except OSError:
        return "(no server log)"


def _server_user() -> pwd.struct_passwd | None:
    """The user PostgreSQL runs as when we are root (it refuses root); None when we are not."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root and no postgres or nobody user to run PostgreSQL")


def _user_prefix(user: pwd.struct_passwd) -> list[str]:
    if shutil.which("setpriv"):  # execs in place: the server's pid is the child's
        return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
    return ["runuser", "-u", user.pw_name, "--"]


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from ``/proc``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _freeze_tree(root: int) -> list[int]:
    """SIGSTOP ``root`` and all its descendants, each before its children are listed."""
    frozen: list[int] = []
    waiting = [root]
    while waiting:
        pid = waiting.pop()
        try:
            os.kill(pid, signal.SIGSTOP)
        except ProcessLookupError:
            continue
        frozen.append(pid)
        waiting += _children(pid)
    return frozen


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie does not: it only waits to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :][:1] not in ("Z", "X")


def _release_shared_memory(data: Path) -> None:
    """Remove the System V segment a killed server leaves (its id is in ``postmaster.pid``).

    A server that shuts down removes it; one killed cannot, and each killed
    test cluster would leave one behind for good.
    """
    with contextlib.suppress(OSError, IndexError, ValueError, subprocess.SubprocessError):
        _key, shmid = (data / "postmaster.pid").read_text().splitlines()[6].split()
        ipcrm = shutil.which("ipcrm")
        if int(shmid) >= 0 and ipcrm is not None:
            subprocess.run(  # noqa: S603 - a found program and a number
                [ipcrm, "-m", str(int(shmid))], capture_output=True, timeout=10, check=False
            )
