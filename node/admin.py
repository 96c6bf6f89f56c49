"""The administrator's part of the local API (``/v1/admin``), and what the daemon puts on record.

Theory of operation
-------------------
The administrator runs the node -- configuration, keys and credentials, links
-- but neither exchanges data nor reads the audit log (``node.roles``).  The
endpoints use only the public ``Node`` API:

* ``GET /v1/admin/config`` -- the configuration the daemon runs with (paths,
  addresses, peers, limits, timers; never a secret or a token: files are named,
  not read), its SHA-256 at start and whether it changed since the previous
  start, and whether ``node.toml`` on disk still has that digest (a restart
  applies an edit; nothing is reloaded behind the administrator's back);
* ``GET /v1/admin/identity`` -- the node's certificate (serial, issuer,
  validity, days left), chain and key ids;
* ``GET /v1/admin/peers`` -- every configured link: relation, URL, state
  (``up``, ``down``, ``unknown``, or ``refused`` with the refusal: who
  refused whom and why), failures, retry time, queue towards it;
* ``POST /v1/admin/peers/<name>/retry`` -- "retry this link now"
  (``Node.poke``: the backoff is reset and the queue tried at once);
* ``POST /v1/admin/witnessed/<child>/reset`` -- a hub forgets the head it
  keeps for a child (after dealing with a flagged or re-installed one): the
  child's next head is taken as a first head; audited with the person;
* ``POST /v1/admin/credentials/reload`` -- re-read every role's token file
  (rotation without a restart; refused whole if any file is missing, short or
  equal to another role's, and the old tokens stay);
* ``GET /v1/admin/crls`` -- the CRLs the node checks peers against (newest
  per CA: issuer, number, dates, state) and what needs attention;
* ``POST /v1/admin/crls`` -- ``{"administrator": ..., "pem": "-----BEGIN X509
  CRL-----..."}``: CRLs for the running node (``node.trust``).  Checked by the
  one CRL check first, all or nothing (422 with the code and reason of each
  refused one, nothing taken); then kept in ``state_dir/crls`` and given to
  the node, which passes them on to every node (signed directory).  Audited
  (``key``, ``crl.add``, one record per CRL with its fingerprint);
* ``POST /v1/admin/crls/reload`` -- read ``[trust] crls`` (and the kept ones)
  again, as SIGHUP does; audited (``crl.reload``).

A changing call names the administrator acting in its body, ``{"administrator":
"..."}`` (a body field, like the operator's ``"operator"``, because names are
often Chinese).  Each is an audit record with ``Actor(administrator, name)``,
its outcome ``ok`` or ``refused`` with the code the API answered.

What the daemon notes at every start, with the node as the actor
(:func:`note_start`): the configuration's digest (``configuration``,
``config.loaded``, state ``new``, ``changed`` or ``unchanged``), the
certificate and signing key it runs with (``key``, ``certificate.loaded``,
same states), and each role's credential that appeared, changed or went away
since the last start (``key``, ``credential.changed``; a keyed one-way
fingerprint of each token is kept in the store's meta to notice it, never the
token).  The previous values live in the node's store meta (``daemon.*``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from exchnode.aio import WitnessService
from exchnode.audit import (
    NO_SUBJECT,
    Actor,
    Category,
    Outcome,
    Role,
    Subject,
    SubjectKind,
)
from exchnode.errors import CertificateError, UsageError
from exchnode.pki import load_crls_pem, read_private_file

from .api import HTTPProblem, json_body, node_subject, person
from .audited import record
from .backup import BackupApi
from .config import DaemonConfig
from .forms import iso_ms, iso_time
from .peers_admin import PeerAdmin
from .roles import PEOPLE, Credentials, token_key
from .trust import crl_health, crl_json, keep_added_crl, refused_json, reload_crls

if TYPE_CHECKING:
    from exchnode.aio import AuditService, Node

__all__ = [
    "AdminApi",
    "StartFacts",
    "config_digest",
    "config_json",
    "note_start",
    "read_credentials",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_META = "daemon."  # the daemon's own keys in the store's meta
_SHA256 = hashes.SHA256()
MAX_CRLS_ADDED = 64  # CRLs in one ``crl add``: one per CA is what a federation has


def config_digest(path: Path) -> bytes:
    """SHA-256 of the configuration file's bytes."""
    return hashlib.sha256(path.read_bytes()).digest()


def read_credentials(config: DaemonConfig) -> dict[Role, str]:
    """Each configured role's token, read from its 0600 file; errors name the key and file."""
    tokens: dict[Role, str] = {}
    for role, path in config.operator.token_files().items():
        try:
            tokens[role] = read_private_file(path).decode("utf-8", "replace").strip()
        except UsageError as exc:
            raise UsageError(f"{config.path}: operator.{token_key(role)}: {exc}") from None
    try:
        Credentials.check(tokens)
    except UsageError as exc:
        raise UsageError(f"{config.path}: [operator] token files: {exc}") from None
    return tokens


def _serial_bytes(serial: int) -> bytes:
    return serial.to_bytes(max((serial.bit_length() + 7) // 8, 1), "big")


def _iso(ms: int) -> str:
    return iso_ms(ms) or ""


def _paths(paths: tuple[Path, ...]) -> list[str]:
    return [str(p) for p in paths]


def config_json(config: DaemonConfig) -> dict[str, Any]:
    """The effective configuration, as the daemon runs it: paths named, no secret read."""
    identity, operator, sharing = config.identity, config.operator, config.sharing
    return {
        "path": str(config.path),
        "node": {
            "name": config.name,
            "level": config.level.name.lower(),
            "listen": f"{config.listen[0]}:{config.listen[1]}",
            "state_dir": str(config.state_dir),
        },
        "identity": {
            "chain": str(identity.chain),
            "signing_key": str(identity.signing_key),
            "encryption_key": str(identity.encryption_key),
            "passphrase": (
                "file"
                if identity.passphrase_file is not None
                else "env"
                if identity.passphrase_env is not None
                else None
            ),
        },
        "trust": {
            "roots": _paths(config.trust.roots),
            "cas": _paths(config.trust.cas),
            "crls": _paths(config.trust.crls),
        },
        "directory": {
            "mode": config.directory.mode,
            "certificates": _paths(config.directory.certificates),
            "advertise": config.directory.advertise,
        },
        "peers": [
            {"name": p.name, "relation": p.relation.value, "url": p.url} for p in config.peers
        ],
        "limits": dataclasses.asdict(config.limits),
        "timers": dataclasses.asdict(config.timers) | {"drain_timeout": config.drain_timeout},
        "operator": {
            "listen": operator.url,
            "allow_remote": operator.allow_remote,
            "lease_seconds": operator.lease_seconds,
            "max_body_bytes": operator.max_body_bytes,
            "roles": {
                role.value: {
                    "key": token_key(role),
                    "token_file": (
                        str(operator.token_files()[role])
                        if role in operator.token_files()
                        else None
                    ),
                }
                for role in PEOPLE
            },
        },
        "catalog": {"refresh": config.catalog.refresh},
        "sharing": {
            "answer_days": sharing.answer_days,
            "calendar": sharing.calendar_source,
            "holidays": sorted(d.isoformat() for d in sharing.calendar.holidays),
            "workdays": sorted(d.isoformat() for d in sharing.calendar.makeup_workdays),
            "masking_secret": str(sharing.masking_secret),
        },
        "audit": {"flush": config.audit.flush, "head_interval": config.audit.head_interval},
        "log": {"level": config.log.level, "format": config.log.format},
    }


# --- on the record at start ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class StartFacts:
    """What the daemon noted at start, for ``GET /v1/admin/config``."""

    config_digest: bytes
    config_state: str  # new, changed, unchanged: against the previous start


class _Remembered:
    """Values kept in the store's meta between starts, compared now, written once on record.

    The new values are written only after the records that mention them are in
    the store (``AuditService.sync``), so a crash in between makes the next
    start report the change again rather than never.
    """

    def __init__(self, node: Node) -> None:
        self.node = node
        self._writes: list[tuple[str, bytes]] = []

    async def compare(self, key: str, value: bytes | None) -> str | None:
        """new, changed, unchanged or removed (None: absent then and now)."""
        previous = await self.node.get_meta(_META + key)
        stored = None if previous in (None, b"") else previous
        if value is None:
            if stored is None:
                return None
            self._writes.append((_META + key, b""))
            return "removed"
        if stored == value:
            return "unchanged"
        self._writes.append((_META + key, value))
        return "new" if stored is None else "changed"

    async def commit(self, audit: AuditService) -> None:
        if self._writes:
            await audit.sync()
            for key, value in self._writes:
                await self.node.set_meta(key, value)
            self._writes.clear()


async def _note_credentials(
    remembered: _Remembered, audit: AuditService, credentials: Credentials, actor: Actor
) -> dict[str, str]:
    node = remembered.node
    fingerprints = credentials.fingerprints()
    states: dict[str, str] = {}
    for role in PEOPLE:
        state = await remembered.compare(f"credential.{role.value}", fingerprints.get(role))
        if state is None:
            continue
        states[role.value] = state
        if state != "unchanged":
            setting = Subject(SubjectKind.SETTING, f"operator.{token_key(role)}")
            changed = Outcome.ok(state)
            record(
                audit,
                node,
                Category.KEY,
                "credential.changed",
                actor,
                changed,
                setting,
                kind=role.value,
            )
    return states


async def note_credentials(
    node: Node, audit: AuditService, credentials: Credentials, actor: Actor
) -> dict[str, str]:
    """A ``credential.changed`` record per role whose token appeared, changed or went away."""
    remembered = _Remembered(node)
    states = await _note_credentials(remembered, audit, credentials, actor)
    await remembered.commit(audit)
    return states


async def note_start(
    node: Node, audit: AuditService, config: DaemonConfig, credentials: Credentials, log: Any
) -> StartFacts:
    """The configuration, certificate and credentials the node starts with, on the record."""
    actor = Actor.node(node.name)
    now_ms = int(node.now() * 1000)
    remembered = _Remembered(node)
    digest = config_digest(config.path)

    def loaded(
        category: Category, action: str, state: str, subject: Subject, **detail: bytes
    ) -> None:  # the start's records, all of one moment
        record(audit, node, category, action, actor, Outcome.ok(state), subject, now_ms, **detail)

    config_state = await remembered.compare("config-digest", digest) or "new"
    loaded(Category.CONFIGURATION, "config.loaded", config_state, NO_SUBJECT, digest=digest)
    peer = node.identity.peer
    certificate = peer.certificate
    if certificate is not None:
        serial = _serial_bytes(certificate.serial_number)
        state = await remembered.compare("certificate", serial + peer.signing_key_id) or "new"
        held = Subject(SubjectKind.CERTIFICATE, serial)
        loaded(Category.KEY, "certificate.loaded", state, held, key_id=peer.signing_key_id)
    roles = await _note_credentials(remembered, audit, credentials, actor)
    await remembered.commit(audit)
    log.info("configuration on record", digest=digest.hex(), state=config_state, roles=roles)
    return StartFacts(digest, config_state)


# --- the endpoints --------------------------------------------------------------------------


class AdminApi:
    """The administrator's endpoints of one node's operator API."""

    def __init__(
        self,
        node: Node,
        config: DaemonConfig,
        credentials: Credentials,
        audit: AuditService,
        facts: Callable[[], StartFacts | None],
        witness: WitnessService | None = None,
    ) -> None:
        self.node = node
        self.witness = witness
        self.config = config
        self.credentials = credentials
        self.audit = audit
        self._facts = facts
        self.backup = BackupApi(node, config, audit)
        self.log: Any = structlog.get_logger("node.admin").bind(node=node.name)
        self.peers = PeerAdmin(node, config, audit)  # list, add, remove, reload (SIGHUP too)

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("GET", "/v1/admin/config", self._config),
            ("GET", "/v1/admin/identity", self._identity),
            *self.peers.routes(),
            ("POST", "/v1/admin/peers/{name}/retry", self._retry),
            ("POST", "/v1/admin/credentials/reload", self._reload),
            ("POST", "/v1/admin/witnessed/{child}/reset", self._witness_reset),
            ("GET", "/v1/admin/crls", self._crls),
            ("POST", "/v1/admin/crls", self._crl_add),
            ("POST", "/v1/admin/crls/reload", self._crl_reload),
            ("POST", "/v1/admin/backup", self.backup.handle),
        ]

    def _record(
        self,
        action: str,
        who: str,
        outcome: Outcome,
        *,
        category: Category = Category.ADMINISTRATION,
        subject: Subject = NO_SUBJECT,
        **detail: str | int | bytes,
    ) -> None:
        actor = Actor(Role.ADMINISTRATOR, who)
        record(self.audit, self.node, category, action, actor, outcome, subject, **detail)
        self.log.info(
            "administration",
            action=action,
            administrator=who,
            outcome=outcome.status.value,
            code=outcome.code,
        )

    async def _config(self, request: web.Request) -> web.Response:
        facts = self._facts()
        try:
            on_disk: str | None = config_digest(self.config.path).hex()
        except OSError:
            on_disk = None
        running = facts.config_digest.hex() if facts is not None else None
        body = config_json(self.config) | {
            "digest": running,
            "state_at_start": facts.config_state if facts is not None else None,
            "file_digest": on_disk,
            "file_changed": on_disk != running,
            "credentials": [role.value for role in self.credentials.roles],
        }
        return web.json_response(body)

    async def _identity(self, request: web.Request) -> web.Response:
        identity = self.node.identity
        peer = identity.peer
        certificate = peer.certificate
        body: dict[str, Any] = {
            "name": self.node.name,
            "signing_key_id": peer.signing_key_id.hex(),
            "encryption_key_id": peer.encryption_key_id.hex(),
            "certificate": None,
            "chain": [c.subject.rfc4514_string() for c in identity.chain],
        }
        if certificate is not None:
            now = time.time()
            not_after = certificate.not_valid_after_utc
            issuer = certificate.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
            body["certificate"] = {
                "serial": _serial_bytes(certificate.serial_number).hex(),
                "subject": certificate.subject.rfc4514_string(),
                "issuer": certificate.issuer.rfc4514_string(),
                "issuer_name": str(issuer[0].value) if issuer else None,
                "not_before": iso_time(certificate.not_valid_before_utc),
                "not_after": iso_time(not_after),
                "days_left": round((not_after.timestamp() - now) / 86400, 1),
            }
        return web.json_response(body)

    async def _retry(self, request: web.Request) -> web.Response:
        who = person(await json_body(request), Role.ADMINISTRATOR)
        name = request.match_info["name"]
        subject = node_subject(name)
        try:
            self.node.poke(name)
        except UsageError:
            self._record("peer.retry", who, Outcome.refused("unknown-peer"), subject=subject)
            problem = f"{name} is not a neighbour of {self.node.name}"
            raise HTTPProblem(404, problem, "unknown-peer") from None
        self._record("peer.retry", who, Outcome.ok(), subject=subject)
        return web.json_response({"peer": name, "retrying": True})

    async def _witness_reset(self, request: web.Request) -> web.Response:
        """Forget the head kept for a child (after dealing with a flagged or re-installed one)."""
        who = person(await json_body(request), Role.ADMINISTRATOR)
        child = request.match_info["child"]
        try:
            if self.witness is None:
                raise UsageError(f"{self.node.name} witnesses no children")
            await self.witness.reset(child, operator=who, role=Role.ADMINISTRATOR)
        except UsageError as exc:
            subject = node_subject(child)
            self._record("witness.reset", who, Outcome.refused("unknown-child"), subject=subject)
            raise HTTPProblem(404, str(exc), "unknown-child") from None
        return web.json_response({"child": child, "reset": True})

    async def _reload(self, request: web.Request) -> web.Response:
        who = person(await json_body(request), Role.ADMINISTRATOR)
        try:
            tokens = read_credentials(self.config)
        except UsageError as exc:
            refused = Outcome.refused("invalid-credentials")
            self._record("credentials.reload", who, refused, category=Category.KEY)
            problem = f"{exc}; the tokens in use stay"
            raise HTTPProblem(409, problem, "invalid-credentials") from None
        self.credentials.replace(tokens)
        states = await note_credentials(
            self.node, self.audit, self.credentials, Actor(Role.ADMINISTRATOR, who)
        )
        changed = sum(1 for state in states.values() if state != "unchanged")
        self._record("credentials.reload", who, Outcome.ok(), category=Category.KEY, count=changed)
        return web.json_response({"roles": states})

    # --- revocation (node.trust) ------------------------------------------------------------

    async def _crls(self, request: web.Request) -> web.Response:
        return web.json_response(crl_health(self.node, self.config.trust.crl_warning_hours))

    async def _crl_add(self, request: web.Request) -> web.Response:
        """CRLs for the running node: checked (all or nothing), kept, then taken and passed on."""
        document = await json_body(request)
        who = person(document, Role.ADMINISTRATOR)
        pem = document.get("pem")
        if not isinstance(pem, str) or "-----BEGIN X509 CRL-----" not in pem:
            raise HTTPProblem(400, "pem: give the CRL as PEM text (-----BEGIN X509 CRL-----)")
        try:
            crls = load_crls_pem(pem.encode("utf-8"))
        except (CertificateError, UnicodeEncodeError) as exc:
            self._record(
                "crl.add", who, Outcome.refused("malformed-certificate"), category=Category.KEY
            )
            raise HTTPProblem(400, f"pem: {exc}", "malformed-certificate") from None
        if not 1 <= len(crls) <= MAX_CRLS_ADDED:
            raise HTTPProblem(400, f"pem: give 1 to {MAX_CRLS_ADDED} CRLs, got {len(crls)}")
        checked = self.node.check_crls(crls)
        if checked.refused:
            for refused in checked.refused:
                self._record(
                    "crl.add",
                    who,
                    Outcome.refused(refused.code),
                    category=Category.KEY,
                    digest=crls[refused.position].fingerprint(_SHA256),
                )
            first = checked.refused[0]
            problem = "; ".join(
                f"crls[{r.position}]: {r.reason} [{r.code}]" for r in checked.refused
            )
            raise HTTPProblem(422, f"{problem}; nothing was taken", first.code)
        for crl in crls:  # durable before the node takes it: a restart keeps it
            keep_added_crl(self.config, crl)
        await self.node.add_crls(crls)
        now = datetime.now(UTC)
        warning_s = self.config.trust.crl_warning_hours * 3600.0
        for crl in crls:
            self._record(
                "crl.add",
                who,
                Outcome.ok(),
                category=Category.KEY,
                digest=crl.fingerprint(_SHA256),
                count=len(list(crl)),
            )
        return web.json_response({"taken": [crl_json(crl, now, warning_s) for crl in crls]})

    async def _crl_reload(self, request: web.Request) -> web.Response:
        """``[trust] crls`` and the kept CRLs read again (as on SIGHUP)."""
        who = person(await json_body(request), Role.ADMINISTRATOR)
        try:
            checked = await reload_crls(self.node, self.config, self.log)
        except UsageError as exc:
            refused = Outcome.refused("invalid-configuration")
            self._record("crl.reload", who, refused, category=Category.KEY)
            raise HTTPProblem(
                409, f"{exc}; the CRLs in use stay", "invalid-configuration"
            ) from None
        self._record(
            "crl.reload", who, Outcome.ok(), category=Category.KEY, count=len(checked.current.crls)
        )
        now = datetime.now(UTC)
        warning_s = self.config.trust.crl_warning_hours * 3600.0
        return web.json_response(
            {
                "current": [crl_json(crl, now, warning_s) for crl in checked.current.crls],
                "refused": refused_json(checked),
            }
        )
