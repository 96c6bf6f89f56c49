"""``check``: is this node's configuration ready to run? Like ``nginx -t``, nothing started.

Theory of operation
-------------------
``exchnode node check --config FILE`` walks what ``run`` would read and bind,
in the order ``run`` does, with the same loaders, and collects every problem
instead of stopping at the first, so that one run of it lists everything to
fix:

1. the file parses (``load_config``; nothing else can be checked without it);
2. every file it names exists and reads: the identity's chain and keys, the
   role tokens (0600, distinct), the masking secret, the trust material;
3. the trust material: roots and CAs load, every CRL passes the one CRL check
   (``pki.check_crls``: its CA, its signature, its dates), every CA has a CRL
   (TLS refuses chains under a CA without one);
4. the node's keys match its certificate and its chain verifies against the
   trust as peers will verify it (``pki.load_local_identity``, as ``run``);
5. in static mode, each peer chain of the directory folder verifies (``run``
   would leave out one that does not);
6. the state: ``state_dir`` is not locked by a running daemon, and the store
   opens (SQLite read-only, never created here; PostgreSQL connects);
7. both listening addresses are free to bind (``[node] listen``,
   ``[operator] listen``).

Exit status 0 with one line ``<config>: ok: ...``; else 1 with one line per
problem, each naming the key that points at it.  Nothing is written.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from exchnode.errors import ExchnodeError, StoreError
from exchnode.pki import check_crls, load_local_identity
from exchnode.store import SqliteStore

from .admin import read_credentials
from .config import ConfigError, DaemonConfig, load_config
from .daemon import build_directory, load_own_peer, load_trust, read_masking_secret, state_lock
from .ports import address_in_use

__all__ = ["check_config"]


class _Problems:
    def __init__(self) -> None:
        self.lines: list[str] = []

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        """Run one check; a ConfigError or library error becomes a line, the rest goes on."""
        try:
            yield
        except (ExchnodeError, OSError) as exc:
            self.lines.append(" ".join(str(exc).split()))


def check_config(path: Path) -> tuple[list[str], str]:
    """(problems, summary): no problems means ``run`` would start with this file."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        return [str(exc)], ""
    problems = _Problems()
    now = datetime.now(UTC)
    with problems.step():
        config.check_files()
    if problems.lines:  # missing files: the checks below would only repeat them
        return problems.lines, ""
    with problems.step():
        read_credentials(config)
    with problems.step():
        read_masking_secret(config)
    summary = _trust_and_identity(config, now, problems)
    _state(config, problems)
    _ports(config, problems)
    return problems.lines, summary


def _trust_and_identity(config: DaemonConfig, now: datetime, problems: _Problems) -> str:
    trust = None
    with problems.step():
        trust = load_trust(config)
    if trust is None:
        return ""
    checked = check_crls(trust.crls, trust.cas, trust.store, now)
    for refused in checked.refused:
        problems.lines.append(
            f"{config.path}: trust.crls: CRL {refused.position + 1} of those read: "
            f"{refused.reason} [{refused.code}]"
        )
    for ca in [*trust.roots, *trust.cas]:
        if not trust.store.crls_issued_by(ca.subject):
            problems.lines.append(
                f"{config.path}: trust.crls: no CRL of the CA {ca.subject.rfc4514_string()}: "
                "TLS to nodes under it will fail"
            )
    with problems.step():
        try:
            load_local_identity(
                config.identity.chain,
                config.identity.signing_key,
                config.identity.encryption_key,
                config.identity.passphrase(config.path),
                trust=trust.store,
                now=now,
            )
        except ExchnodeError as exc:
            raise ConfigError(f"{config.path}: identity: {exc}") from None
    peers = 0
    if config.directory.mode == "static":
        left_out = _Collect()
        with problems.step():
            directory = build_directory(
                config, trust, load_own_peer(config, trust, now), now, left_out
            )
            peers = len(directory.names()) - 1
        for fields in left_out.warnings:
            problems.lines.append(
                f"{config.path}: directory.certificates: {fields.get('file')}: "
                f"{fields.get('reason')} [{fields.get('code')}] (run would leave it out)"
            )
    return (
        f"{len(trust.roots)} root(s), {len(trust.cas)} CA(s), "
        f"{len(checked.current.crls)} current CRL(s), {len(config.peers)} peer(s)"
        + (f", {peers} peer chain(s) in the directory" if config.directory.mode == "static" else "")
    )


class _Collect:
    """A logger that keeps the warnings ``build_directory`` gives (chains it leaves out)."""

    def __init__(self) -> None:
        self.warnings: list[dict[str, Any]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.warnings.append(fields)

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


def _state(config: DaemonConfig, problems: _Problems) -> None:
    if not config.state_dir.exists():
        return  # a first start creates it (and the store)
    with problems.step():
        try:
            with state_lock(config.state_dir, shared=True):
                if config.store.backend == "sqlite":
                    if config.store_path.exists():
                        SqliteStore(config.store_path, read_only=True).close()
                else:
                    opener = config.store_opener()
                    assert callable(opener)
                    opener().close()
        except StoreError as exc:
            raise ConfigError(f"{config.path}: store: {exc}") from None


def _ports(config: DaemonConfig, problems: _Problems) -> None:
    for key, (host, port) in (
        ("node.listen", config.listen),
        ("operator.listen", (config.operator.host, config.operator.port)),
    ):
        if port == 0:
            continue
        try:
            info = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)[0]
            with socket.socket(info[0], socket.SOCK_STREAM) as probe:
                # As asyncio's servers do: a port in TIME_WAIT is free to them.
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(info[4])
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                problems.lines.append(f"{config.path}: {address_in_use(key, host, port)}")
            else:
                problems.lines.append(
                    f"{config.path}: {key}: cannot listen on {host}:{port}: {exc.strerror or exc}"
                )
