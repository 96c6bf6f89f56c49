"""A node's audit log read from its store while the daemon is stopped (``audit ... --offline``).

Theory of operation
-------------------
An auditor may need to check a node that is down, or one that refuses to
start because its log is inconsistent.  This reads what the daemon would: the
config, the trust material and the node's own chain (``node.daemon``'s
loaders, nothing duplicated), then the store file.

* **The lock.**  The daemon's state-directory lock is taken first
  (``daemon.state_lock``), so a running daemon is named rather than waited
  for, and the daemon cannot start while the store is being read.
* **The store** is opened read-only (``SqliteStore(read_only=True)``): never
  created, migrated or written.  A missing or empty file, or one that is not
  an exchnode store, is an error naming it; an empty file stays empty.
* **The directory.**  Verification needs the key that signed the node's tree
  heads: the node's own.  ``load_own_peer`` verifies the node's chain against
  ``[trust]`` as peers do, without the private keys.  In static mode the
  directory is the daemon's own (``build_directory``: this node and every
  peer chain that verifies); in signed mode the node's own entry is all its
  signed directory could contribute here (the cached snapshots in the store
  hold other nodes), so it is a directory of this node alone.
* **The log** is handed to ``verify_log`` as stored: records and heads (read
  a page at a time, so a log of any length verifies in bounded memory), the
  seal, the checkpoint (decoded and verified there: one that fails is a
  ``bad-checkpoint`` finding) and the seq from which record times are
  checked -- what the daemon checks at its start, so a log this says is ok
  is one the daemon starts on.  ``witnessed``: heads of this node its parent
  keeps (``audit verify --witnessed``), checked like the node's own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from exchnode.aio import OWN_CERTIFICATES, earlier_identities
from exchnode.audit import read_log_view, stored_records, verify_stored
from exchnode.core import Directory, StaticDirectory
from exchnode.errors import StoreError, UsageError
from exchnode.store import SqliteStore

from .config import ConfigError, DaemonConfig
from .daemon import build_directory, load_own_peer, load_trust, state_lock
from .operator_audit import catalog_json, catalog_rows, record_json, report_json

__all__ = ["export_offline", "read_records_offline", "verify_offline"]


class _Quiet:
    """A logger that says nothing: the verbs print their own output."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def _directory(config: DaemonConfig, now: datetime, kept: bytes | None) -> Directory:
    """The keys the node's heads are checked with: its own, and those it rotated out (``kept``,
    the certificates its audit service keeps, each verified again here)."""
    trust = load_trust(config)
    own = load_own_peer(config, trust, now)
    earlier = earlier_identities(kept, config.name, trust.cas, trust.store, now)
    if config.directory.mode == "static":
        directory = build_directory(config, trust, own, now, _Quiet())
        for peer in earlier:
            directory.add(peer)
        return directory
    return StaticDirectory([*earlier, own])


@contextlib.contextmanager
def _stopped_store(config: DaemonConfig) -> Iterator[SqliteStore]:
    """The node's store, read-only, with the daemon's lock held; an error if the daemon runs."""
    if config.store.backend != "sqlite":
        raise UsageError(
            f"{config.path}: store.backend: --offline reads a SQLite store; for "
            f"{config.store_description}, leave out --offline to ask the running node"
        )
    path = config.store_path
    if not path.exists():
        raise ConfigError(
            f"{config.path}: node.state_dir: {path} does not exist (has this node ever run?)"
        )
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(state_lock(config.state_dir))
        except UsageError as exc:
            raise UsageError(f"{exc}, or leave out --offline to ask the running node") from None
        try:
            store = SqliteStore(path, read_only=True)
        except StoreError as exc:
            raise UsageError(f"{config.path}: node.state_dir: {exc}") from None
        stack.callback(store.close)
        yield store


def _verified(
    config: DaemonConfig,
    now: datetime | None,
    witnessed: Sequence[bytes] = (),
    *,
    with_records: bool = False,
) -> tuple[dict[str, Any], Sequence[tuple[int, bytes]], list[tuple[str, bytes]]]:
    """The stopped node's log checked end to end (the API's report), its catalog, and (if
    ``with_records``, for an export) its records; else they are read a page at a time."""
    at = now or datetime.now(UTC)
    with _stopped_store(config) as store:
        directory = _directory(config, at, store.get_meta(OWN_CERTIFICATES))
        view = read_log_view(store)
        catalog = catalog_rows(store)
        records: Sequence[tuple[int, bytes]] = (
            list(stored_records(store, view.size)) if with_records else ()
        )
        report = verify_stored(
            config.name,
            store,
            view,
            directory,
            witnessed,
            records=records if with_records else None,
        )
    return report_json(report, view.size, view.last_head), records, catalog


def verify_offline(
    config: DaemonConfig, now: datetime | None = None, witnessed: Sequence[bytes] = ()
) -> dict[str, Any]:
    """Check the stopped node's stored audit log end to end; the report as the API gives it.

    ``witnessed``: heads of this node its parent keeps, checked like its own.
    """
    return _verified(config, now, witnessed)[0]


def export_offline(
    config: DaemonConfig, now: datetime | None = None
) -> tuple[dict[str, Any], Sequence[tuple[int, bytes]], dict[str, Any]]:
    """For ``audit report --offline``: what ``/v1/audit/verify``, ``/export`` and ``/catalog``
    would answer, read once from the stopped node's store."""
    report, records, catalog = _verified(config, now, with_records=True)
    return report, records, catalog_json(catalog, config.name)


def read_records_offline(config: DaemonConfig, first: int, limit: int) -> dict[str, Any]:
    """A page of the stopped node's audit records, decoded, as the API gives it."""
    with _stopped_store(config) as store:
        size = store.audit_size()
        rows = store.audit_records(first, limit)
    following = rows[-1][0] + 1 if rows else None
    return {
        "size": size,
        "records": [record_json(seq, data) for seq, data in rows],
        "next": following if following is not None and following < size else None,
    }
