"""Backup of a running node and a restore that verifies (``exchnode node backup|restore``).

Theory of operation
-------------------
**Why through the daemon.**  The SQLite store holds its file's exclusive
lock from opening to closing (``exchnode.store``), so nothing else can read
the file while the node runs: a plain copy waits for the daemon to stop.  So
the administrator asks the daemon: ``POST /v1/admin/backup`` (body
``{"administrator": NAME}``) first stores every audit event emitted so far
and signs a tree head over them (``AuditService.sync``), then copies the
store with SQLite's online backup on the store's own connection
(``SqliteStore.backup``: a few pages per step, the store's lock let go
between steps, so custody goes on meanwhile and waits at most one step), and
answers with one tar file, streamed:

* ``manifest.json``: ``format``, ``node``, ``level``, ``created`` (ISO 8601
  with the offset, as every time the node shows), the store's
  ``schema_version``, and for every other member its ``bytes`` and
  ``sha256``; ``excluded`` says what is not in it;
* ``store.sqlite``: custody (queues, inbox, dedup records), the audit log
  with its heads and seal, peer states, the catalog, subscriptions, meta;
* ``node.toml``: the configuration the node ran with, for reference (a
  restore uses the configuration in place, and says if it differs);
* ``crls/*``: the CRLs added while the node ran (``admin crl add``);
* ``manifest.sig``: the node's Ed25519 signature over ``SIGNED_AS`` followed
  by the manifest's bytes (the prefix keeps it from ever reading as a
  signature of anything else the node signs).

**Not in it: secrets.**  The node's private keys and certificate
(``[identity]``), the role tokens, ``masking.secret`` and the trust folder
are not in a backup: they are secrets or the CA's, kept by whoever keeps the
node's keys.  A restore needs them in place, as the configuration names them.

**PostgreSQL.**  A node with ``[store] backend = "postgresql"`` is answered
409 ``backup-elsewhere``: PostgreSQL's own tools (``pg_dump --schema``, or
``pg_basebackup`` for the cluster) take consistent backups of a database in
use, and the node's other files are its configuration folder.

**Restore** (:func:`restore`) runs with the daemon stopped: it takes the
daemon's state-directory lock first (a running daemon is named and nothing
is touched), then reads the tar member by member (only the names above,
regular files; anything else is refused), and checks, before any state is
replaced: the manifest's digest of every member; the node name against the
configuration's; the manifest's signature by the node's key (its
certificate now, or one it rotated out and kept, each verified against the
trust folder), so that a backup changed and re-digested is refused; SQLite's
``PRAGMA integrity_check``; and the audit log
against its signed heads with the node's own keys (what ``audit verify
--offline`` checks, so the daemon starts on a store this accepts).  Only
then is the store put in place (``os.replace``, same filesystem); a store
already there is kept beside it as ``store.sqlite.replaced-<time>`` and is
replaced only with ``--replace``.  Any failure names what failed and leaves
the state directory as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import sqlite3
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web
from cryptography.exceptions import InvalidSignature

from exchnode.aio import OWN_CERTIFICATES, earlier_identities
from exchnode.audit import (
    Actor,
    Category,
    Outcome,
    Role,
    read_log_view,
    verify_stored,
)
from exchnode.errors import StoreError, UsageError
from exchnode.store import SqliteStore

from .api import HTTPProblem, json_body, person
from .audited import record
from .config import DaemonConfig
from .forms import iso_time

if TYPE_CHECKING:
    from exchnode.aio import AuditService, Node

__all__ = [
    "BACKUP_FORMAT",
    "BackupApi",
    "RestoreRefused",
    "Restored",
    "read_manifest",
    "restore",
]

BACKUP_FORMAT = "exchnode-backup/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
SIGNED_AS = b"exchnode backup manifest v1\x00"
STORE = "store.sqlite"
CONFIG = "node.toml"
CRLS = "crls/"
EXCLUDED = (
    "private keys and certificate ([identity])",
    "role tokens ([operator] *_token_file)",
    "masking.secret",
    "trust folder ([trust])",
)
_CHUNK = 1 << 20


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _schema_version(path: Path) -> int:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT value FROM store_info WHERE key = 'schema_version'").fetchone()
    finally:
        conn.close()
    return int(row[0])


def _version() -> str:
    try:
        return metadata.version("exchnode")
    except metadata.PackageNotFoundError:  # pragma: no cover - a bare checkout
        return "unknown"


# --- taking a backup (in the daemon) ---------------------------------------------------------


def _write_archive(
    config: DaemonConfig,
    store_copy: Path,
    target: Path,
    now: datetime,
    sign: Callable[[bytes], bytes],
) -> dict[str, Any]:
    """The tar of the store copy, the config and the added CRLs, with its manifest first."""
    members: list[tuple[str, Path]] = [(STORE, store_copy)]
    if config.path.is_file():
        members.append((CONFIG, config.path))
    crls = config.added_crls_dir
    if crls.is_dir():
        members += [(CRLS + p.name, p) for p in sorted(crls.iterdir()) if p.is_file()]
    manifest = {
        "format": BACKUP_FORMAT,
        "node": config.name,
        "level": config.level.name.lower(),
        "created": iso_time(now),
        "exchnode": _version(),
        "store": {"backend": "sqlite", "schema_version": _schema_version(store_copy)},
        "files": {
            name: {"bytes": path.stat().st_size, "sha256": _sha256(path)} for name, path in members
        },
        "excluded": list(EXCLUDED),
    }
    encoded = json.dumps(manifest, ensure_ascii=False, indent=2).encode()
    with tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in ((MANIFEST, encoded), (SIGNATURE, sign(SIGNED_AS + encoded))):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), int(now.timestamp()), 0o600
            tar.addfile(info, _BytesReader(data))
        for name, path in members:
            tar.add(path, arcname=name, recursive=False)
    return manifest


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._data, self._at = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._at + size
        chunk, self._at = self._data[self._at : end], min(end, len(self._data))
        return chunk


class BackupApi:
    """``POST /v1/admin/backup``: the running node's state as one tar (module docstring)."""

    def __init__(self, node: Node, config: DaemonConfig, audit: AuditService) -> None:
        self.node, self.config, self.audit = node, config, audit
        self._one_at_a_time = asyncio.Lock()
        self.log: Any = structlog.get_logger("node.backup").bind(node=node.name)

    def _record(self, who: str, outcome: Outcome, **detail: str | int | bytes) -> None:
        actor = Actor(Role.ADMINISTRATOR, who)
        record(self.audit, self.node, Category.ADMINISTRATION, "backup", actor, outcome, **detail)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        who = person(await json_body(request), Role.ADMINISTRATOR)
        store = self.node.store
        if not isinstance(store, SqliteStore):
            self._record(who, Outcome.refused("backup-elsewhere"))
            raise HTTPProblem(
                409,
                f"{self.node.name} keeps its state in {self.config.store_description}: back it "
                "up with PostgreSQL's tools (pg_dump --schema, or pg_basebackup for the "
                "cluster) and keep the node's folder; see node/README.md, Backup and restore",
                "backup-elsewhere",
            )
        if self._one_at_a_time.locked():
            raise HTTPProblem(409, "a backup of this node is already under way", "busy")
        async with self._one_at_a_time:
            await self.audit.sync()  # what happened so far is in the log, under a head
            now = datetime.now(UTC)
            work = Path(tempfile.mkdtemp(prefix=".backup-", dir=self.config.state_dir))
            try:
                copy, archive = work / STORE, work / "backup.tar"
                started = asyncio.get_running_loop().time()
                await asyncio.to_thread(store.backup, copy)
                sign = self.node.identity.signing_private_key.sign
                manifest = await asyncio.to_thread(
                    _write_archive, self.config, copy, archive, now, sign
                )
                took = asyncio.get_running_loop().time() - started
                digest = manifest["files"][STORE]["sha256"]
                self._record(who, Outcome.ok(), digest=bytes.fromhex(digest))
                self.log.info(
                    "backup taken",
                    administrator=who,
                    bytes=manifest["files"][STORE]["bytes"],
                    seconds=round(took, 3),
                )
                response = web.StreamResponse(
                    headers={
                        "Content-Type": "application/x-tar",
                        "Content-Length": str(archive.stat().st_size),
                        "Content-Disposition": f'attachment; filename="{self.node.name}.tar"',
                    }
                )
                await response.prepare(request)
                with archive.open("rb") as stream:
                    while chunk := await asyncio.to_thread(stream.read, _CHUNK):
                        await response.write(chunk)
                await response.write_eof()
                return response
            finally:
                for leftover in work.iterdir():
                    leftover.unlink(missing_ok=True)
                work.rmdir()


# --- restoring (the daemon stopped) ----------------------------------------------------------


class RestoreRefused(UsageError):
    """A backup that does not pass a restore's checks; the message says which and why."""

    code = "restore-refused"


def _member_name(name: str) -> str:
    if name in (MANIFEST, SIGNATURE, STORE, CONFIG):
        return name
    if name.startswith(CRLS):
        base = name[len(CRLS) :]
        if base and "/" not in base and base not in (".", "..") and not base.startswith("."):
            return name
    raise RestoreRefused(f"the backup holds {name!r}, which no exchnode backup holds")


def _unpack(source: Path, into: Path) -> dict[str, Path]:
    """Every member of the tar written under ``into``; only the names a backup has."""
    files: dict[str, Path] = {}
    try:
        with tarfile.open(source, "r:") as tar:
            for member in tar:
                name = _member_name(member.name)
                if not member.isfile():
                    raise RestoreRefused(f"the backup's {name} is not a regular file")
                if name in files:
                    raise RestoreRefused(f"the backup holds {name} twice")
                stream = tar.extractfile(member)
                assert stream is not None  # a regular file
                path = into / name.replace("/", "_")
                with path.open("wb") as out:
                    while chunk := stream.read(_CHUNK):
                        out.write(chunk)
                files[name] = path
    except tarfile.TarError as exc:
        raise RestoreRefused(f"{source} is not a backup tar ({exc})") from None
    return files


def read_manifest(files: dict[str, Path]) -> dict[str, Any]:
    """The manifest, checked: its format, and every member's size and SHA-256."""
    if MANIFEST not in files:
        raise RestoreRefused("the backup has no manifest.json")
    try:
        manifest = json.loads(files[MANIFEST].read_bytes())
    except ValueError as exc:
        raise RestoreRefused(f"manifest.json is not JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BACKUP_FORMAT:
        raise RestoreRefused(f"manifest.json: format is not {BACKUP_FORMAT!r}")
    listed = manifest.get("files")
    if not isinstance(listed, dict) or STORE not in listed:
        raise RestoreRefused("manifest.json lists no store.sqlite")
    for name in files.keys() - {MANIFEST, SIGNATURE}:
        if name not in listed:
            raise RestoreRefused(f"the backup holds {name}, which its manifest does not list")
    for name, expected in listed.items():
        if name not in files:
            raise RestoreRefused(f"the manifest lists {name}, which the backup does not hold")
        actual = _sha256(files[name])
        if not isinstance(expected, dict) or expected.get("sha256") != actual:
            raise RestoreRefused(
                f"{name}: its SHA-256 is {actual}, the manifest says "
                f"{expected.get('sha256') if isinstance(expected, dict) else expected}: "
                "the backup was changed or damaged"
            )
    return manifest


def _check_signature(config: DaemonConfig, files: dict[str, Path], now: datetime) -> None:
    """The manifest signed by this node: its key now, or one it rotated out and kept."""
    from .daemon import load_own_peer, load_trust  # the daemon imports this module

    if SIGNATURE not in files:
        raise RestoreRefused("the backup has no manifest.sig: it is not signed by the node")
    signature = files[SIGNATURE].read_bytes()
    signed = SIGNED_AS + files[MANIFEST].read_bytes()
    trust = load_trust(config)
    keys = [load_own_peer(config, trust, now)]
    try:
        kept = SqliteStore(files[STORE], read_only=True)
    except StoreError as exc:
        raise RestoreRefused(f"store.sqlite: {exc}") from None
    try:
        stored = kept.get_meta(OWN_CERTIFICATES)
    finally:
        kept.close()
    keys += earlier_identities(stored, config.name, trust.cas, trust.store, now)
    for peer in keys:
        try:
            peer.signing_key.verify(signature, signed)
        except InvalidSignature:
            continue
        return
    raise RestoreRefused(
        f"manifest.sig: the manifest is not signed by {config.name}'s key (now or earlier): "
        "the backup was changed, or is not this node's"
    )


def _integrity(path: Path) -> None:
    conn = sqlite3.connect(path)
    try:
        rows = [row[0] for row in conn.execute("PRAGMA integrity_check(20)")]
    except sqlite3.DatabaseError as exc:
        raise RestoreRefused(f"store.sqlite is not a SQLite database: {exc}") from None
    finally:
        conn.close()
    if rows != ["ok"]:
        raise RestoreRefused(f"store.sqlite fails SQLite's integrity check: {'; '.join(rows)}")


def _audit_findings(config: DaemonConfig, path: Path, now: datetime) -> tuple[int, list[str]]:
    """The backup's audit log checked against its signed heads with the node's own keys."""
    from .audit_offline import _directory  # the daemon's loaders; it imports this module

    try:
        store = SqliteStore(path, read_only=True)
    except StoreError as exc:
        raise RestoreRefused(f"store.sqlite: {exc}") from None
    try:
        directory = _directory(config, now, store.get_meta(OWN_CERTIFICATES))
        view = read_log_view(store)
        report = verify_stored(config.name, store, view, directory, ())
    finally:
        store.close()
    findings = [f"{f.kind.value} ({f.seq}): {f.message}" for f in report.findings]
    return view.size, findings


@dataclass(frozen=True, slots=True)
class Restored:
    """What a restore did: the backup's manifest, the log size it verified, what it moved."""

    manifest: dict[str, Any]
    audit_records: int
    store: Path
    replaced: Path | None
    crls: tuple[Path, ...]
    config_differs: bool


@contextlib.contextmanager
def _work_dir(state_dir: Path) -> Iterator[Path]:
    work = Path(tempfile.mkdtemp(prefix=".restore-", dir=state_dir))
    try:
        yield work
    finally:
        for leftover in work.iterdir():
            leftover.unlink(missing_ok=True)
        work.rmdir()


def restore(
    config: DaemonConfig, source: Path, *, replace: bool = False, now: datetime | None = None
) -> Restored:
    """Check the backup ``source`` and put its state in place (the module docstring)."""
    from .daemon import state_lock  # the daemon imports this module

    if config.store.backend != "sqlite":
        raise UsageError(
            f"{config.path}: store.backend: this node keeps its state in "
            f"{config.store_description}: restore it with PostgreSQL's tools (pg_restore)"
        )
    at = now or datetime.now(UTC)
    config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with state_lock(config.state_dir), _work_dir(config.state_dir) as work:
        files = _unpack(source, work)
        manifest = read_manifest(files)
        if manifest.get("node") != config.name:
            raise RestoreRefused(
                f"the backup is of node {manifest.get('node')!r}, and {config.path} is the "
                f"config of {config.name!r}"
            )
        store_copy = files[STORE]
        _check_signature(config, files, at)
        _integrity(store_copy)
        records, findings = _audit_findings(config, store_copy, at)
        if findings:
            raise RestoreRefused(
                f"the backup's audit log does not verify: {'; '.join(findings[:5])}"
                + (f" (and {len(findings) - 5} more)" if len(findings) > 5 else "")
            )
        target = config.store_path
        replaced = None
        if target.exists():
            if not replace:
                raise RestoreRefused(
                    f"{target} exists: give --replace to keep it aside and restore over it"
                )
            replaced = target.with_name(f"{target.name}.replaced-{at.strftime('%Y%m%dT%H%M%SZ')}")
            os.replace(target, replaced)
            for side in ("-wal", "-shm"):  # a crashed daemon's log goes with its store
                if Path(f"{target}{side}").exists():
                    os.replace(f"{target}{side}", f"{replaced}{side}")
        os.chmod(store_copy, 0o600)
        os.replace(store_copy, target)
        crls: list[Path] = []
        for name, path in files.items():
            if name.startswith(CRLS):
                config.added_crls_dir.mkdir(exist_ok=True, mode=0o700)
                kept = config.added_crls_dir / name[len(CRLS) :]
                if not kept.exists():
                    os.replace(path, kept)
                    crls.append(kept)
        _fsync_dir(config.state_dir)
        differs = CONFIG in files and (
            not config.path.is_file() or _sha256(config.path) != _sha256(files[CONFIG])
        )
    return Restored(manifest, records, target, replaced, tuple(crls), differs)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
