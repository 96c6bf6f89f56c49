"""``run``: one node, served until SIGTERM, then drained.

Theory of operation
-------------------
Startup, in order, each step failing with a message that names what to fix:

1. load the trust material (roots, the federation's CA bundle, CRLs) and this
   node's identity, verifying its own chain exactly as peers will;
2. write the TLS verify bundle (roots + CRLs) into the state directory, from
   the same files, so TLS and ``pki_verify`` can never disagree;
3. build the directory of peers: ``[directory] mode = "static"``, every chain
   in the bundle verified with ``pki_verify.verify_node_certificate`` (a chain
   that fails -- revoked, expired, foreign -- is left out and logged); or
   ``mode = "signed"``, the library's signed node directory, which the node
   pulls from and serves to its neighbours;
4. attach the services every daemon node runs, in this order: the audit log
   (``AuditService``, ``[audit]``), the resource catalog (``CatalogService``,
   ``[catalog]``) and subscriptions (``SharingService``, ``[sharing]``: the
   working-day calendar and the masking secret, read from its 0600 file and
   never logged).  The catalog's and subscriptions' audit events go to the
   audit service, which is the record (signed tree heads over it), and each
   also becomes a log line (``audit event``) for the operators;
5. read each role's token (``[operator]``: administrator, operator, auditor;
   ``node.roles``); a role the config gives no token file is logged as
   ``role without a credential`` -- its part of the API refuses everyone;
6. start the operator API (``/health`` answers 503 "starting"), then the
   ``Node``; the audit service rebuilds the log from the store and checks it
   against the last signed head, so a log changed while the daemon was down
   stops the start (one line: the audit log is inconsistent); then the start
   goes on the record (``node.admin.note_start``: the config's digest and
   whether it changed since the last start, the certificate, each role's
   credential that changed); then ``/health`` answers 200, ``ready.json``
   appears in the state directory, a ``ready`` log line gives the bound URLs,
   and the startup heap is frozen (``gc.freeze``) so the collector stops
   rescanning it.

Revocation (``node.trust``): right after the node starts, every CRL of
``[trust] crls`` and ``state_dir/crls`` goes to ``Node.add_crls`` -- with the
signed directory into the snapshots this node serves, so a CRL given to any
one node reaches every node within a directory refresh.  SIGHUP reads the
CRL files again (as ``exchnode node admin crl reload`` does), and so does a
change of the files themselves (``[trust] crl_poll_seconds``), each reload
audited; a task logs any CRL near or past its nextUpdate, or missing, and any
certificate the node depends on near or past its end (``node.expiry``) at
start and every hour.

A hub with ``[store] workers = N`` (PostgreSQL) is this process, worker 0,
and N-1 worker processes it starts once it serves and keeps running
(``node.workers``: the supervisor; ``node.worker``: what a worker runs;
``node.worker_routes``: the services' endpoints answered here for all).

SIGTERM or SIGINT starts the drain: the operator API refuses new requests
(503) and waits, up to ``[timers] drain_timeout``, for those under way; the
workers, if any, are told to drain and waited for; then ``Node.close`` stops
taking transfers, finishes the commits under way and stops its tasks.  What
is still queued stays in the store for the next start.  Exit status 0 after
a clean drain, 1 if the drain timed out.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import gc
import json
import os
import signal
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import structlog
from cryptography import x509

from exchnode.aio import (
    AuditService,
    CatalogService,
    DirectoryService,
    LogSink,
    Node,
    NodeConfig,
    NodeService,
    SharingService,
    TlsFiles,
    WitnessService,
    loop_name,
    write_verify_bundle,
)
from exchnode.core import AuditEvent, LocalIdentity, PeerIdentity, StaticDirectory
from exchnode.errors import CertificateError, ExchnodeError, InconsistentLogError, UsageError
from exchnode.pki import (
    TrustStore,
    load_certificates_pem,
    load_local_identity,
    read_private_file,
    verify_node_certificate,
)

from .admin import AdminApi, StartFacts, note_start, read_credentials
from .config import MASKING_SECRET_BYTES, ConfigError, DaemonConfig
from .console import ConsoleApi
from .expiry import certificates_to_watch, trust_health, watch_expiry
from .metrics import MetricsApi
from .operator import OperatorApi
from .ports import address_in_use
from .roles import PEOPLE, Credentials, token_key
from .sd_notify import notify
from .trust import crl_files_state, expand, read_crls, reload_and_record, watch_crl_files
from .workdays import note_calendar, watch_calendar
from .worker_routes import WorkerRoutes
from .workers import Supervisor

__all__ = [
    "AuditAndLogSink",
    "Services",
    "TrustMaterial",
    "build_directory",
    "build_services",
    "expand",
    "load_own_peer",
    "load_trust",
    "serve",
    "state_lock",
]


def read_masking_secret(config: DaemonConfig) -> bytes:
    path = config.sharing.masking_secret
    try:
        secret = read_private_file(path)
    except UsageError as exc:
        raise ConfigError(f"{config.path}: sharing.masking_secret: {exc}") from None
    if len(secret) != MASKING_SECRET_BYTES:
        raise ConfigError(
            f"{config.path}: sharing.masking_secret: {path} holds {len(secret)} bytes, not "
            f"{MASKING_SECRET_BYTES} random bytes"
        )
    return secret


class AuditAndLogSink:
    """The services' event sink: the audit log (the record), then a log line (for operators)."""

    def __init__(self, audit: AuditService, log: Any) -> None:
        self.audit = audit
        self.lines = LogSink(log)

    def emit(self, event: AuditEvent) -> None:
        self.audit.emit(event)  # raises on an event that breaks the record schema: a bug
        self.lines.emit(event)


class Services(NamedTuple):
    """What every daemon node runs on top of the ``Node``, in the order it is attached."""

    audit: AuditService
    witness: WitnessService
    catalog: CatalogService
    sharing: SharingService


def build_services(
    config: DaemonConfig, masking_secret: bytes, log: Any, *, accept_unsigned_tail: bool = False
) -> Services:
    """The audit, catalog and sharing services, from ``[audit]``, ``[catalog]``, ``[sharing]``."""
    audit = AuditService(
        flush=config.audit.flush,
        head_interval=config.audit.head_interval,
        retention=config.audit.retention_days * 86_400.0,
        accept_unsigned_tail=accept_unsigned_tail,
    )
    witness = WitnessService(
        audit,
        interval=config.audit.witness_interval,
        retention=config.audit.witness_retention_days * 86_400.0,
        silent_rounds=config.audit.witness_silent_rounds,
    )
    sink = AuditAndLogSink(audit, log)
    catalog = CatalogService(refresh=config.catalog.refresh, events=sink)
    sharing = SharingService(
        catalog,
        masking_secret=masking_secret,
        calendar=config.sharing.calendar,
        answer_days=config.sharing.answer_days,
        events=sink,
    )
    return Services(audit, witness, catalog, sharing)


class TrustMaterial:
    def __init__(
        self,
        roots: list[x509.Certificate],
        cas: list[x509.Certificate],
        crls: list[x509.CertificateRevocationList],
    ) -> None:
        self.roots, self.cas, self.crls = roots, cas, crls
        self.store = TrustStore(roots, crls)


def load_trust(config: DaemonConfig) -> TrustMaterial:
    def read(key: str, paths: tuple[Path, ...]) -> list[Any]:
        out: list[Any] = []
        for path in expand(paths):
            try:
                data = path.read_bytes()
                out.extend(load_certificates_pem(data))
            except CertificateError as exc:
                raise ConfigError(f"{config.path}: {key}: {path}: {exc}") from None
            except OSError as exc:
                raise ConfigError(f"{config.path}: {key}: {path}: {exc.strerror}") from None
        return out

    roots = read("trust.roots", config.trust.roots)
    if not roots:
        raise ConfigError(f"{config.path}: trust.roots: no root certificate found")
    # [trust] crls, and the CRLs the administrator added while it ran (node.trust)
    return TrustMaterial(roots, read("trust.cas", config.trust.cas), read_crls(config))


def load_identity(
    config: DaemonConfig, trust: TrustMaterial, now: datetime
) -> tuple[LocalIdentity, TlsFiles]:
    """The node's keys and chain, verified as its peers will verify them, and the files its
    links' TLS uses (the verify bundle written from ``trust`` now)."""
    passphrase = config.identity.passphrase(config.path)
    identity = load_local_identity(
        config.identity.chain,
        config.identity.signing_key,
        config.identity.encryption_key,
        passphrase,
        trust=trust.store,
        now=now,
    )
    verify = write_verify_bundle(config.verify_bundle_path, trust.roots, trust.crls)
    tls = TlsFiles(config.identity.chain, config.identity.signing_key, verify, passphrase)
    return identity, tls


def build_node(
    config: DaemonConfig,
    trust: TrustMaterial,
    identity: LocalIdentity,
    tls: TlsFiles,
    node_config: NodeConfig,
    directory: StaticDirectory | None,
    services: list[NodeService],
) -> Node:
    """The Node of ``config`` (worker 0's, or a worker's ``node_config``) on its store."""
    return Node(
        identity=identity,
        store=config.store_opener(),
        tls=tls,
        trust=trust.store,
        ca_bundle=trust.cas,
        config=node_config,
        directory=directory,
        services=services,
    )


def load_own_peer(config: DaemonConfig, trust: TrustMaterial, now: datetime) -> PeerIdentity:
    """This node's public identity, its chain verified as peers verify it (no private key).

    For readers of the node's files while the daemon is stopped (``audit verify
    --offline``); ``run`` gets the same from ``load_local_identity`` with the keys.
    """
    path = config.identity.chain
    try:
        certificates = load_certificates_pem(path.read_bytes())
        peer = verify_node_certificate(
            certificates[0], [*certificates[1:], *trust.cas], trust.store, now
        )
    except CertificateError as exc:
        raise ConfigError(f"{config.path}: identity.chain: {path}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{config.path}: identity.chain: {path}: {exc.strerror}") from None
    if str(peer.name) != config.name:
        raise ConfigError(
            f"{config.path}: identity.chain: {path} certifies {peer.name}, not {config.name}"
        )
    return peer


def build_directory(
    config: DaemonConfig,
    trust: TrustMaterial,
    own: PeerIdentity,
    now: datetime,
    log: Any,
) -> StaticDirectory:
    """The static directory: this node (``own``), and every peer chain that verifies."""
    verified = []
    for path in expand(config.directory.certificates):
        try:
            certificates = load_certificates_pem(path.read_bytes())
            peer = verify_node_certificate(
                certificates[0], [*certificates[1:], *trust.cas], trust.store, now
            )
        except CertificateError as exc:
            log.warning(
                "directory certificate left out", file=str(path), code=exc.code, reason=str(exc)
            )
            continue
        except OSError as exc:
            raise ConfigError(
                f"{config.path}: directory.certificates: {path}: {exc.strerror}"
            ) from None
        if str(peer.name) != config.name:
            verified.append(peer)
    # Oldest first: for a name with a renewed certificate, the newest is sealed to.
    verified.sort(key=lambda p: p.certificate.not_valid_before_utc if p.certificate else now)
    directory = StaticDirectory([own, *verified])
    log.info("directory loaded", mode=config.directory.mode, peers=len(directory.names()) - 1)
    return directory


def _check_crls(trust: TrustMaterial, log: Any) -> None:
    for ca in [*trust.roots, *trust.cas]:
        if not trust.store.crls_issued_by(ca.subject):
            log.warning(
                "no CRL for a CA: TLS to nodes under it will fail",
                ca=ca.subject.rfc4514_string(),
            )


def _write_ready(path: Path, content: dict[str, Any]) -> None:
    handle, temporary = tempfile.mkstemp(prefix=".ready.", dir=path.parent)
    with os.fdopen(handle, "w") as out:
        json.dump(content, out)
        out.write("\n")
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)


async def serve(config: DaemonConfig, *, accept_unsigned_tail: bool = False) -> int:
    """Run the node of ``config`` until SIGTERM/SIGINT; the exit status.

    ``accept_unsigned_tail``: this start only (``run --accept-unsigned-audit-tail``), see
    ``AuditService``."""
    log = structlog.get_logger("node.daemon").bind(node=config.name)
    config.check_files()
    config.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with state_lock(config.state_dir) as lock_fd:
        assert lock_fd is not None  # held exclusively: always a descriptor
        return await _serve(config, log, accept_unsigned_tail, lock_fd)


@contextlib.contextmanager
def state_lock(state_dir: Path, *, shared: bool = False) -> Iterator[int | None]:
    """One daemon per state directory: a second one stops before it touches anything.

    Yields the locked file's descriptor: a hub's workers inherit it (``node.workers``), so
    the directory stays locked while any of them lives.

    ``shared``: the same question asked by a reader that writes nothing (``check`` reading
    the store): no lock file is created (None is yielded for a directory no daemon ever
    locked), and the lock is held shared, so two readers do not stop each other but a daemon
    stops them (and they it).
    """
    path = state_dir / "daemon.lock"
    if shared and not path.exists():
        yield None
        return
    if shared:
        fd, mode = os.open(path, os.O_RDONLY), fcntl.LOCK_SH
    else:
        fd, mode = os.open(path, os.O_CREAT | os.O_RDWR, 0o600), fcntl.LOCK_EX
    try:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
            raise UsageError(
                f"{state_dir} is in use by another daemon (pid {holder}, or the workers it "
                "started, which hold it until they have drained); stop it first"
            ) from None
        if not shared:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        yield fd
    finally:
        os.close(fd)  # releases the lock


async def _serve(config: DaemonConfig, log: Any, accept_unsigned_tail: bool, lock_fd: int) -> int:
    now = datetime.now(UTC)
    masking_secret = read_masking_secret(config)  # before anything logs: a config problem
    crl_files = crl_files_state(config)  # before reading them: a change after is seen
    trust = load_trust(config)
    _check_crls(trust, log)
    identity, tls = load_identity(config, trust, now)
    directory: StaticDirectory | None = None  # None: the node runs the signed directory
    if config.directory.mode == "static":
        directory = build_directory(config, trust, identity.peer, now, log)
    note_calendar(config, log)
    credentials = Credentials(read_credentials(config))
    for role in PEOPLE:
        if role not in credentials.roles:
            log.warning(
                "role without a credential",
                role=role.value,
                key=f"operator.{token_key(role)}",
                effect=f"nobody can use the {role.value}'s part of the API; name a 0600 token "
                "file there and restart",
            )
    audit, witness, catalog, sharing = build_services(
        config, masking_secret, log, accept_unsigned_tail=accept_unsigned_tail
    )
    services: list[NodeService] = [audit, witness, catalog, sharing]
    if directory is None:  # the one the Node would make: held here for its endpoints' sake
        services.insert(0, DirectoryService.for_node(identity, config.node_config))
    node = build_node(config, trust, identity, tls, config.node_config, directory, services)
    workers: Supervisor | None = None
    worker_routes: WorkerRoutes | None = None
    watched = certificates_to_watch(
        identity.peer.certificate, identity.chain, trust.cas, trust.roots
    )
    cert_days, crl_hours = config.trust.certificate_warning_days, config.trust.crl_warning_hours
    facts: list[StartFacts] = []
    metrics = MetricsApi(node, audit=audit, catalog=catalog, sharing=sharing)
    api = OperatorApi(
        node,
        trust_health=lambda: trust_health(
            node, watched, certificate_warning_days=cert_days, crl_warning_hours=crl_hours
        ),
        host=config.operator.host,
        port=config.operator.port,
        credentials=credentials,
        lease_seconds=config.operator.lease_seconds,
        max_body_bytes=config.operator.max_body_bytes,
        capacity=config.limits.deliveries_buffered,
        catalog=catalog,
        sharing=sharing,
        audit=audit,
        witness=witness,
        admin=(
            admin := AdminApi(
                node, config, credentials, audit, lambda: facts[-1] if facts else None, witness
            )
        ),
        metrics=metrics,
        console=ConsoleApi(node, config, catalog=catalog, sharing=sharing, witness=witness),
    )
    metrics.watch_inbox(api.inbox, lambda: api.phase == "serving")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.info("already draining", signal=signal.Signals(signum).name)
        else:
            log.info("draining", signal=signal.Signals(signum).name)
            notify("STOPPING=1", log)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    reloads: set[asyncio.Task[None]] = set()

    async def reload(kind: str) -> None:
        await reload_and_record(node, config, audit, log, kind)

    async def hangup() -> None:
        await reload("sighup")
        try:
            await admin.peers.reload()  # [[peers]] again: node.peers_admin
        except ConfigError as exc:
            log.error("peers not reloaded; the ones in use stay", error=str(exc))

    def on_hangup() -> None:
        if not node_started:
            log.info("SIGHUP ignored: the node is not serving yet; its start reads the CRLs")
            return
        log.info("reloading crls and peers", signal="SIGHUP")
        if workers is not None:
            workers.send(signal.SIGHUP)  # each reloads its own
        task = loop.create_task(hangup(), name="crl-reload")
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    node_started = False
    try:
        with _naming_the_setting(
            config, "operator.listen", config.operator.host, config.operator.port
        ):
            operator_address = await api.start()
        try:
            with _naming_the_setting(config, "node.listen", *config.listen):
                await node.start()
        except InconsistentLogError as exc:
            raise InconsistentLogError(
                f"the audit log in {config.store_description} is inconsistent ({exc}); the node "
                "will not sign over a log changed while it was down: see what changed with "
                f"'exchnode audit verify --offline --config {config.path}'"
            ) from None
        node_started = True
        facts.append(await note_start(node, audit, config, credentials, log))
        # Into the signed directory: from here they travel to every node (node.trust).
        await node.add_crls(trust.crls)
        node.run_task(
            lambda: watch_expiry(
                node,
                watched,
                certificate_warning_days=cert_days,
                crl_warning_hours=crl_hours,
                log=log,
            ),
            "expiry-watch",
        )
        node.run_task(lambda: watch_crl_files(config, reload, log, crl_files), "crl-files")
        node.run_task(lambda: watch_calendar(config, log), "calendar-watch")
        operator_url = f"http://{_host(operator_address[0])}:{operator_address[1]}"
        ready: dict[str, Any] = {
            "name": config.name,
            "pid": os.getpid(),
            "link_url": node.url,
            "operator_url": operator_url,
        }
        if config.store.workers > 1:
            worker_routes = WorkerRoutes(
                _neighbour_routes(services),
                config.worker_socket_path,
                max_body_bytes=config.limits.max_transfer_bytes,
            )
            await worker_routes.start()

            def workers_changed(pids: dict[int, int]) -> None:
                ready["workers"] = {str(index): pid for index, pid in pids.items()}
                if api.phase == "serving":
                    _write_ready(config.ready_path, ready)

            workers = Supervisor(config, lock_fd, log, workers_changed)
            workers.start()
            # The administrator's reload of [[peers]] reaches them as SIGHUP does.
            admin.peers.others_reload = partial(workers.send, signal.SIGHUP)
        api.serving()
        _write_ready(config.ready_path, ready)
        log.info(
            "ready",
            link_url=node.url,
            operator_url=operator_url,
            peers=len(config.peers),
            loop=loop_name(),
            worker_count=config.store.workers,
        )
        notify(f"READY=1\nSTATUS=serving {config.name} at {node.url}", log)  # Type=notify
        gc.collect()
        gc.freeze()
        await stop.wait()
        return await _drain(config, node, api, log, workers)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)
        if workers is not None:
            workers.kill()  # after a drain: nothing left; after a failure: they go too
        if worker_routes is not None:
            await worker_routes.close()
        with contextlib.suppress(FileNotFoundError):
            config.ready_path.unlink()
        # A start that failed after the node started (or anything before the drain) still
        # closes it: its store session and sockets.  After a drain this returns at once.
        with contextlib.suppress(ExchnodeError, OSError):
            await node.close()
        await api.close()


@contextlib.contextmanager
def _naming_the_setting(config: DaemonConfig, key: str, host: str, port: int) -> Iterator[None]:
    """A port another process holds is said with the setting that names it, not as an errno."""
    try:
        yield
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise ConfigError(f"{config.path}: {address_in_use(key, host, port)}") from None


def _neighbour_routes(services: list[NodeService]) -> dict[tuple[str, str], Any]:
    """Every service's neighbour endpoints: what worker 0 answers for the other workers."""
    routes: dict[tuple[str, str], Any] = {}
    for service in services:
        routes.update(service.routes())
    return routes


async def _drain(
    config: DaemonConfig, node: Node, api: OperatorApi, log: Any, workers: Supervisor | None
) -> int:
    started = loop_time()
    clean = await api.drain(config.drain_timeout)
    if not clean:
        log.warning("operator requests still running at the drain deadline")
    workers_drained = True
    if workers is not None:  # they drain while this one still answers their proxied requests
        remaining = max(config.drain_timeout - (loop_time() - started), 1.0)
        workers_drained = await workers.stop(remaining)
        if not workers_drained:
            log.warning("a worker did not drain cleanly")
    remaining = max(config.drain_timeout - (loop_time() - started), 1.0)
    try:
        await asyncio.wait_for(node.close(), remaining)
    except TimeoutError:
        log.error("drain timed out; queued items stay in the store", timeout=config.drain_timeout)
        return 1
    log.info("stopped", seconds=round(loop_time() - started, 3))
    return 0 if workers_drained else 1


def loop_time() -> float:
    return asyncio.get_running_loop().time()


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
