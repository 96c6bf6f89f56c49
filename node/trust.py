"""Revocation on a running daemon: CRLs read, added, reloaded, kept and watched (``[trust]``).

Theory of operation
-------------------
A revocation helps only if it reaches every node.  The daemon therefore hands
every CRL it is given to its node (``Node.add_crls``), which judges each by
the one CRL check (``pki.check_crls``) before anything is applied or served.
With the signed directory (``[directory] mode = "signed"``) what it takes
goes into the snapshots this node signs, so every other node pulls it within
a directory refresh (changes are announced at once), applies it to its TLS
contexts and certificate checks, and cuts the open links of what it revokes;
with a static directory it applies here only.  CRLs come from:

* ``[trust] crls`` and the CRLs kept in ``state_dir/crls`` (below), at start;
* the same files again on **SIGHUP** or ``exchnode node admin crl reload``
  (after a CA operator wrote a fresh CRL into ``trust/crls/``), and by
  themselves when they change: :func:`watch_crl_files` looks at the ``[trust] crls`` files'
  size, mtime and inode every ``[trust] crl_poll_seconds`` (default 30, 0 =
  off) and reads them again when any changed, a file was added or one went.
  Every such reload is an audit record (``key``, ``crl.reload``, the node as
  actor, ``kind`` ``sighup`` or ``file-change``; refused
  ``invalid-configuration`` when a file does not read, and the CRLs in use
  stay); each CRL it brings is applied to the live TLS contexts and the
  certificate checks by the one path every CRL takes (``Node.add_crls``),
  which records ``crl.applied`` and cuts the links of what it revokes;
* ``exchnode node admin crl add FILE``: a PEM CRL the administrator gives
  the running node.  It is checked first (all or nothing: one that fails is
  answered with its code and reason and nothing is taken), then **kept** in
  ``state_dir/crls/`` (newest per CA, written atomically) before the node
  takes it, so a restart keeps it too.

**Health** (:func:`crl_health`) lists the newest CRL the node holds per CA:
issuer, number, this and next update, the seconds left, how many
certificates it revokes, and its state -- ``current``, ``expiring`` (within
``[trust] crl_warning_hours`` of its nextUpdate, default 48: well before it
runs out, when every node fails closed on that CA's chains, TLS included),
``stale`` (past it), ``early`` (not yet valid).  Its ``warnings`` name each
CRL not current and each CA that has no CRL at all.  :func:`watch_crls` logs
the same warnings at start and every hour.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from exchnode.aio import AuditService, Node
from exchnode.audit import Actor, Category, Outcome, Role
from exchnode.errors import CertificateError, ExchnodeError
from exchnode.pki import CrlCheck, CrlSet, load_crls_pem

from .audited import record
from .config import ConfigError, DaemonConfig
from .forms import iso_time

__all__ = [
    "WATCH_INTERVAL",
    "CrlFilesState",
    "crl_files_state",
    "crl_health",
    "crl_json",
    "expand",
    "keep_added_crl",
    "read_crls",
    "refused_json",
    "reload_and_record",
    "reload_crls",
    "watch_crl_files",
    "watch_crls",
]

#: Seconds between two checks of the CRLs' dates by :func:`watch_crls`.
WATCH_INTERVAL = 3600.0
_SHA256 = hashes.SHA256()

_CRL = x509.CertificateRevocationList


def expand(paths: Iterable[Path]) -> list[Path]:
    """Files as given; directories as their ``*.pem`` files, sorted."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(sorted(p for p in path.glob("*.pem") if p.is_file()))
        else:
            out.append(path)
    return out


def read_crls(config: DaemonConfig) -> list[_CRL]:
    """``[trust] crls`` and the CRLs kept in ``state_dir/crls``; ConfigError naming the file."""
    out: list[_CRL] = []
    sources = [("trust.crls", path) for path in expand(config.trust.crls)]
    added = config.added_crls_dir
    if added.is_dir():
        sources += [("node.state_dir (crls)", path) for path in expand([added])]
    for key, path in sources:
        try:
            out.extend(load_crls_pem(path.read_bytes()))
        except CertificateError as exc:
            raise ConfigError(f"{config.path}: {key}: {path}: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"{config.path}: {key}: {path}: {exc.strerror}") from None
    return out


async def reload_crls(node: Node, config: DaemonConfig, log: Any) -> CrlCheck:
    """Read the CRL files again and hand them to the node (SIGHUP, ``admin crl reload``)."""
    crls = read_crls(config)
    checked = await node.add_crls(crls)
    log.info(
        "crls reloaded",
        files_crls=len(crls),
        current=len(checked.current.crls),
        refused=[r.code for r in checked.refused],
    )
    return checked


#: What the CRL files look like on disk: (path, inode, size, mtime in ns) per file, sorted.
CrlFilesState = tuple[tuple[str, int, int, int], ...]


def crl_files_state(config: DaemonConfig, *, with_added: bool = False) -> CrlFilesState:
    """The ``[trust] crls`` files' identity and dates now: any write, replacement, addition or
    removal changes it (a rename over a file changes the inode, an edit the size or mtime).

    ``state_dir/crls`` is left out unless ``with_added``: only this daemon writes it (``admin
    crl add``), after the node has taken the CRL, so watching it would only reload what is
    already in use -- except on the other workers of a hub (``node.worker``), which learn
    of an added CRL only there."""
    paths = list(expand(config.trust.crls))
    if with_added and config.added_crls_dir.is_dir():
        paths += expand([config.added_crls_dir])
    out = []
    for path in paths:
        try:
            status = path.stat()
        except OSError:
            out.append((str(path), -1, -1, -1))  # missing now: a change when it comes back
            continue
        out.append((str(path), status.st_ino, status.st_size, status.st_mtime_ns))
    return tuple(sorted(out))


async def reload_and_record(
    node: Node, config: DaemonConfig, audit: AuditService, log: Any, kind: str
) -> CrlCheck | None:
    """:func:`reload_crls` on the node's own initiative (``kind``: what made it), audited."""

    def note(outcome: Outcome, **detail: str | int) -> None:
        actor = Actor(Role.NODE, config.name)
        record(audit, node, Category.KEY, "crl.reload", actor, outcome, kind=kind, **detail)

    try:
        checked = await reload_crls(node, config, log)
    except (ExchnodeError, OSError) as exc:
        log.error("crls not reloaded; the ones in use stay", kind=kind, error=str(exc))
        note(Outcome.refused("invalid-configuration"))
        return None
    note(Outcome.ok(), count=len(checked.current.crls))
    return checked


async def watch_crl_files(
    config: DaemonConfig,
    reload: Callable[[str], Awaitable[object]],
    log: Any,
    since: CrlFilesState,
    *,
    with_added: bool = False,
) -> None:
    """Call ``reload("file-change")`` whenever the CRL files differ from the last look.

    ``since``: the files as they were when the CRLs in use were read.  A file
    caught half-written fails to read (logged, audited, the CRLs in use stay);
    finishing the write changes it again, which reads it again.
    """
    interval = config.trust.crl_poll_seconds
    if interval <= 0:
        return
    last = since
    while True:
        await asyncio.sleep(interval)
        now = crl_files_state(config, with_added=with_added)
        if now == last:
            continue
        last = now
        log.info("crl files changed", files=len(now))
        await reload("file-change")


def _authority(crl: _CRL) -> bytes:
    """What tells one CA's CRLs from another's: its issuer DN and authority key id."""
    try:
        key_id = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
        identifier = key_id.value.key_identifier or b""
    except x509.ExtensionNotFound:
        identifier = b""
    return crl.issuer.public_bytes() + b"\x00" + identifier


def keep_added_crl(config: DaemonConfig, crl: _CRL) -> Path:
    """Keep a CRL that passed the check in ``state_dir/crls`` (newest per CA), atomically.

    Returns the file.  A CRL older than the one kept for its CA leaves the file as it is.
    """
    directory = config.added_crls_dir
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = directory / f"{hashlib.sha256(_authority(crl)).hexdigest()[:32]}.crl.pem"
    held: list[_CRL] = []
    if target.is_file():
        try:
            held = list(load_crls_pem(target.read_bytes()))
        except CertificateError:
            held = []  # a damaged file is replaced by the checked CRL
    (newest,) = CrlSet([*held, crl]).crls
    if held and newest.fingerprint(_SHA256) == held[0].fingerprint(_SHA256):
        return target
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=directory)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(newest.public_bytes(Encoding.PEM))
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def _iso(moment: datetime | None) -> str | None:
    return iso_time(moment)


def _state(crl: _CRL, now: datetime, warning_s: float) -> tuple[str, float | None]:
    next_update = crl.next_update_utc
    if crl.last_update_utc > now:
        return "early", None
    if next_update is None:
        return "stale", None  # a CRL without nextUpdate is never current (SPEC §3.7 step 6)
    left = (next_update - now).total_seconds()
    if left <= 0:
        return "stale", left
    return ("expiring" if left <= warning_s else "current"), left


def _number(crl: _CRL) -> int | None:
    try:
        return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
    except x509.ExtensionNotFound:
        return None


def crl_json(crl: _CRL, now: datetime, warning_s: float) -> dict[str, Any]:
    """One CRL as health and the administrator see it (public facts only)."""
    state, left = _state(crl, now, warning_s)
    return {
        "issuer": crl.issuer.rfc4514_string(),
        "number": _number(crl),
        "this_update": _iso(crl.last_update_utc),
        "next_update": _iso(crl.next_update_utc),
        "seconds_left": None if left is None else round(left),
        "revoked": len(list(crl)),
        "state": state,
        "sha256": crl.fingerprint(_SHA256).hex(),
    }


def refused_json(checked: CrlCheck) -> list[dict[str, Any]]:
    return [{"position": r.position, "code": r.code, "reason": r.reason} for r in checked.refused]


def crl_health(node: Node, warning_hours: float, now: datetime | None = None) -> dict[str, Any]:
    """The CRLs the node checks peers against (newest per CA), and what needs attention."""
    moment = datetime.now(UTC) if now is None else now
    warning_s = warning_hours * 3600.0
    trust = node.trust
    crls = CrlSet(trust.crls).crls
    listed = [crl_json(crl, moment, warning_s) for crl in crls]
    warnings: list[dict[str, Any]] = []
    for item in listed:
        if item["state"] != "current":
            warnings.append(
                {
                    "issuer": item["issuer"],
                    "state": item["state"],
                    "next_update": item["next_update"],
                    "problem": _problem(item["state"], warning_hours),
                }
            )
    issuers = {crl.issuer for crl in crls}
    for ca in _cas(node):
        if ca.subject not in issuers:
            warnings.append(
                {
                    "issuer": ca.subject.rfc4514_string(),
                    "state": "missing",
                    "next_update": None,
                    "problem": "no CRL for this CA: TLS to every node under it fails",
                }
            )
    return {"crl_warning_hours": warning_hours, "crls": listed, "warnings": warnings}


def _problem(state: str, warning_hours: float) -> str:
    return {
        "expiring": f"nextUpdate within {warning_hours:g} h: nodes fail closed on this CA's "
        "chains once it passes; have the CA re-sign it ('exchnode pki crl') and add it "
        "('exchnode node admin crl add')",
        "stale": "past its nextUpdate: every node fails closed on this CA's chains, TLS "
        "included, until a fresh CRL arrives",
        "early": "not valid yet (thisUpdate in the future): check the clocks",
    }.get(state, state)


def _cas(node: Node) -> Sequence[x509.Certificate]:
    seen: dict[bytes, x509.Certificate] = {}
    for ca in (*node.trust.roots, *node.ca_bundle):
        seen.setdefault(ca.public_bytes(Encoding.DER), ca)
    return list(seen.values())


async def watch_crls(node: Node, warning_hours: float, log: Any) -> None:
    """Log every CRL that needs attention, at start and every :data:`WATCH_INTERVAL` seconds."""
    while True:
        for warning in crl_health(node, warning_hours)["warnings"]:
            log.warning("crl needs attention", **warning)
        await asyncio.sleep(WATCH_INTERVAL)
