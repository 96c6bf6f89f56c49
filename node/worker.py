"""``run --worker i``: worker i (1..N-1) of a hub run as ``[store] workers = N`` processes.

Theory of operation
-------------------
Started by worker 0 (``node.workers.Supervisor``), never by hand
(:func:`~node.workers.inherited_fds`).  A worker is a ``Node`` with the hub's
identity, TLS and trust, on the hub's store, as ``WorkerShare(i, N)``: it
takes the transfers of the links the kernel gives it and forwards the queues
of the next hops it owns.  It has no operator API and runs, of the services:

* the **audit log** (``AuditService``) as the node's custody log: its custody
  records go into the hub's one log, in the transactions that make them
  (heads, checkpoints and pruning are worker 0's: the library's rule);
* the **directory** as a follower: with ``[directory] mode = "signed"`` a
  ``DirectoryService`` that serves and pulls nothing and takes the rows
  worker 0 stores again whenever worker 0 says they changed (checked every
  :data:`FOLLOW_SECONDS`); with ``mode = "static"`` the same folder of
  chains worker 0 reads;
* a ``RouteProxy`` (``node.worker_routes``): the services' neighbour
  endpoints, answered by worker 0 over its unix socket.

The catalog, subscriptions, witnessing, the inbox's delivery and admission
are worker 0's alone.  CRLs: the files at start, when they change, and on
SIGHUP (with ``[[peers]]``), as worker 0 reads them; the ones an
administrator adds (``state_dir/crls``) too, since only worker 0 takes the
call.  SIGTERM or SIGINT -- or worker 0's end, seen as end-of-file on the
pipe it holds -- drains the node (``Node.close`` within
``[timers] drain_timeout``): exit 0, or 1 if the drain timed out.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog

from exchnode.aio import (
    AuditService,
    DirectoryService,
    Node,
    NodeService,
    loop_name,
)
from exchnode.core import StaticDirectory
from exchnode.errors import ExchnodeError

from . import early_signals
from .config import ConfigError, DaemonConfig
from .peers_admin import PeerAdmin
from .ports import address_in_use
from .trust import crl_files_state, reload_crls, watch_crl_files
from .worker_routes import RouteProxy, fetch_routes
from .workers import inherited_fds

__all__ = ["FOLLOW_SECONDS", "serve_worker"]

#: how often a worker's directory looks for worker 0's changes (one meta read)
FOLLOW_SECONDS = 1.0


async def serve_worker(config: DaemonConfig, index: int) -> int:
    """Run worker ``index`` of the hub of ``config`` until told to stop; the exit status."""
    log = structlog.get_logger("node.worker").bind(node=config.name)
    inherited = inherited_fds(config, index)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    reloading: list[Callable[[], None]] = []  # how to reload, once the worker serves

    def on_signal(signum: int) -> None:
        # systemd's stop signals every process of the unit, and worker 0 passes it on too.
        if not stop.is_set():
            log.info("draining", signal=signal.Signals(signum).name)
        stop.set()

    def on_parent_gone() -> None:
        loop.remove_reader(inherited.parent)
        if not stop.is_set():
            log.warning("worker 0 is gone; draining")
            stop.set()

    def on_hangup() -> None:
        if not reloading:  # its start reads the CRLs and peers
            log.info("SIGHUP ignored: the worker is not serving yet")
            return
        reloading[0]()

    # From the first moment: SIGHUP's default would end the process, and worker 0's end
    # must be seen however early it comes.
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    for asked in early_signals.stop_asked:  # told to stop while it was starting
        on_signal(asked)
    loop.add_reader(inherited.parent, on_parent_gone)
    node: Node | None = None
    try:
        node, audit = await _start(config, index, log)
        reloading.append(_reloader(node, config, audit, log))
        if not stop.is_set():
            log.info("worker serving", link_url=node.url, worker_count=config.store.workers,
                     loop=loop_name())  # fmt: skip
            await stop.wait()
        return await _drain(config, node, log)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(inherited.parent)
        if node is not None:  # anything before the drain still closes it (else at once)
            with contextlib.suppress(ExchnodeError, OSError):
                await node.close()


async def _start(config: DaemonConfig, index: int, log: Any) -> tuple[Node, AuditService]:
    """Worker ``index``'s node, built from ``config`` and serving (closed again if it fails),
    and its audit service."""
    from .daemon import build_directory, build_node, load_identity, load_trust  # cycle

    now = datetime.now(UTC)
    crl_files = crl_files_state(config, with_added=True)  # before reading them
    trust = load_trust(config)
    identity, tls = load_identity(config, trust, now)
    node_config = config.worker_node_config(index)
    services: list[NodeService] = []
    directory: StaticDirectory | None = None
    if config.directory.mode == "static":
        directory = build_directory(config, trust, identity.peer, now, log)
    else:
        services.append(DirectoryService.for_node(identity, node_config, follow=FOLLOW_SECONDS))
    audit = AuditService(
        flush=config.audit.flush,
        head_interval=config.audit.head_interval,
        retention=config.audit.retention_days * 86_400.0,
    )
    services.append(audit)
    timeout = config.timers.link_timeout
    keys = await fetch_routes(config.worker_socket_path, timeout=timeout)
    services.append(RouteProxy(config.worker_socket_path, keys, timeout=timeout))
    node = build_node(config, trust, identity, tls, node_config, directory, services)
    try:
        await node.start()
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        in_use = address_in_use("node.listen", *config.listen)
        raise ConfigError(f"{config.path}: {in_use}") from None
    try:
        await node.add_crls(trust.crls)

        async def reload(kind: str) -> None:
            with contextlib.suppress(ExchnodeError, OSError):  # reload_crls logged what failed
                await reload_crls(node, config, log.bind(kind=kind))

        node.run_task(
            lambda: watch_crl_files(config, reload, log, crl_files, with_added=True), "crl-files"
        )
    except BaseException:
        with contextlib.suppress(ExchnodeError, OSError):
            await node.close()
        raise
    return node, audit


def _reloader(
    node: Node, config: DaemonConfig, audit: AuditService, log: Any
) -> Callable[[], None]:
    """SIGHUP on a serving worker: the CRL files and ``[[peers]]`` again, in a task."""
    peers = PeerAdmin(node, config, audit)
    tasks: set[asyncio.Task[None]] = set()

    async def hangup() -> None:
        with contextlib.suppress(ExchnodeError, OSError):  # reload_crls logged what failed
            await reload_crls(node, config, log.bind(kind="sighup"))
        try:
            await peers.reload()
        except ConfigError as exc:
            log.error("peers not reloaded; the ones in use stay", error=str(exc))

    def start() -> None:
        task = asyncio.get_running_loop().create_task(hangup(), name="reload")
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    return start


async def _drain(config: DaemonConfig, node: Node, log: Any) -> int:
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        await asyncio.wait_for(node.close(), config.drain_timeout)
    except TimeoutError:
        log.error("drain timed out; queued items stay in the store", timeout=config.drain_timeout)
        return 1
    log.info("stopped", seconds=round(loop.time() - started, 3))
    return 0
