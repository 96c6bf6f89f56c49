"""node.toml: one configuration file per node, validated on load.

Theory of operation
-------------------
The file is read with ``tomllib`` and checked section by section against the
schema below.  Every problem is a :class:`ConfigError` whose one-line message
names the file and the key (``node.toml: peers[1].relation: ...``); unknown
keys are errors too, so a misspelt setting fails loudly instead of silently
taking its default.  Values that the library also checks (``Peer``,
``NodeLimits``, ``NodeTimers``, the routing table) are built here, so their
complaints come out with the key attached; :attr:`DaemonConfig.node_config`
gathers them into the Node's ``NodeConfig``.

Relative paths resolve against the directory holding the config file, never
against the current directory, so a node's files can be moved as one folder.

Loading does not touch the files it names: ``send`` and ``receive`` read the
config only for the operator address and token.  ``run`` calls
:meth:`DaemonConfig.check_files` before it starts.

Sections (``node/README.md`` is the reference with every default)::

    [node]       name, level, listen, state_dir
    [identity]   chain, signing_key, encryption_key, passphrase_file | passphrase_env
    [trust]      roots, cas, crls (files, or directories of *.pem), crl_warning_hours,
                 certificate_warning_days, crl_poll_seconds
    [directory]  mode = "static" | "signed", certificates (static), advertise (signed)
    [[peers]]    name, relation = parent|child|link, url
    [limits]     the fields of exchnode.aio.NodeLimits
    [timers]     the fields of exchnode.aio.NodeTimers, plus drain_timeout
    [store]      backend = "sqlite" | "postgresql"; conninfo, schema, password_file, workers
                 (postgresql)
    [operator]   listen, token_file, administrator_token_file, auditor_token_file,
                 allow_remote, lease_seconds, max_body_bytes
    [catalog]    refresh
    [sharing]    answer_days, calendar, uncovered_years, holidays, workdays, removed, own_years,
                 masking_secret
    [audit]      flush, head_interval, retention_days, allow_short_retention,
                 witness_interval, witness_retention_days, witness_silent_rounds
    [log]        level, format
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.util
import ipaddress
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import exchnode.store as stores  # its PostgreSQL names load psycopg: used on demand
from exchnode.aio import (
    ADMISSION_POLICIES,
    Admission,
    NodeConfig,
    NodeLimits,
    NodeTimers,
    Peer,
    WorkerShare,
)
from exchnode.audit import Role
from exchnode.core import Level, NodeName
from exchnode.errors import ExchnodeError, UsageError
from exchnode.federation import Relation, Router
from exchnode.pki import read_passphrase_file, read_private_file
from exchnode.sharing import DEFAULT_ANSWER_DAYS, MAX_ANSWER_DAYS, WorkCalendar
from exchnode.store import Store

from .roles import token_key
from .workdays import LIBRARY, SOURCES, UNCOVERED, CalendarError, Overrides, build_calendar

__all__ = [
    "DIRECTORY_MODES",
    "MASKING_SECRET_BYTES",
    "AuditConfig",
    "CatalogConfig",
    "ConfigError",
    "DaemonConfig",
    "DirectoryConfig",
    "IdentityFiles",
    "LogConfig",
    "OperatorConfig",
    "SharingConfig",
    "TrustFiles",
    "load_config",
    "parse_address",
]

T = TypeVar("T")

#: How the node learns its peers' keys.  "static": a bundle of certificate chains
#: verified at startup (a closed deployment).  "signed": the federation's signed node
#: directory, pulled from and served to every neighbour (``exchnode.federation``).
DIRECTORY_MODES = ("static", "signed")
_WILDCARDS = {"0.0.0.0", "::", ""}  # noqa: S104 - recognised, not bound
LEVELS = {level.name.lower(): level for level in Level}
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("json", "console")
DEFAULT_LISTEN = "127.0.0.1:7443"
DEFAULT_OPERATOR = "127.0.0.1:7480"
MAX_BODY_DEFAULT = 64 * 1024 * 1024
MASKING_SECRET_BYTES = 32
DEFAULT_AUDIT_FLUSH = 0.2
DEFAULT_HEAD_INTERVAL = 10.0
MAX_AUDIT_FLUSH = 60.0
MAX_HEAD_INTERVAL = 86400.0
DEFAULT_RETENTION_DAYS = 183  # GB/T 22239 asks for at least six months
MAX_RETENTION_DAYS = 3650
DEFAULT_WITNESS_INTERVAL = 60.0
DEFAULT_WITNESS_RETENTION_DAYS = 180  # what a hub expects of its children, a little under theirs
MIN_RETENTION_DAYS = 183  # 等级保护 (GB/T 22239): audit records kept six months; less is forced
DEFAULT_WITNESS_SILENT_ROUNDS = 5  # rounds a child may not answer before it is judged silent
MAX_WITNESS_SILENT_ROUNDS = 10_000
#: Health warns of a CRL this many hours before its nextUpdate (a CA re-signs its 7-day CRL
#: daily, so a CRL this close to its end means the CA stopped; past it, TLS fails closed).
DEFAULT_CRL_WARNING_HOURS = 48.0
MAX_CRL_WARNING_HOURS = 24.0 * 365
DEFAULT_CERTIFICATE_WARNING_DAYS = 30.0
MAX_CERTIFICATE_WARNING_DAYS = 3650.0
DEFAULT_CRL_POLL_SECONDS = 30.0  # 0: CRL files are read again only on SIGHUP or admin reload
MAX_CRL_POLL_SECONDS = 86400.0


class ConfigError(UsageError):
    """A configuration problem: the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class IdentityFiles:
    chain: Path
    signing_key: Path
    encryption_key: Path
    passphrase_file: Path | None = None
    passphrase_env: str | None = None

    def passphrase(self, config_path: Path) -> bytes | None:
        """The keys' passphrase, from its file or environment variable (never logged)."""
        if self.passphrase_file is not None:
            return read_passphrase_file(self.passphrase_file)
        if self.passphrase_env is not None:
            value = os.environ.get(self.passphrase_env)
            if not value:
                raise ConfigError(
                    f"{config_path}: identity.passphrase_env: environment variable "
                    f"{self.passphrase_env} is not set or empty"
                )
            return value.encode()
        return None


@dataclass(frozen=True, slots=True)
class TrustFiles:
    """Roots, the federation's CA bundle (intermediates) and every CA's CRL.

    ``crl_warning_hours``: health and the log warn of a CRL that many hours
    before its nextUpdate, when nodes start to fail closed on it.
    """

    roots: tuple[Path, ...]
    cas: tuple[Path, ...]
    crls: tuple[Path, ...]
    crl_warning_hours: float = DEFAULT_CRL_WARNING_HOURS
    #: health and the log warn of this node's certificate, its chain or a root ending this soon
    certificate_warning_days: float = DEFAULT_CERTIFICATE_WARNING_DAYS
    #: how often the CRL files are checked for a change (0: only SIGHUP and admin reload)
    crl_poll_seconds: float = DEFAULT_CRL_POLL_SECONDS


@dataclass(frozen=True, slots=True)
class DirectoryConfig:
    mode: str
    certificates: tuple[Path, ...] = ()  # static mode
    advertise: str | None = None  # signed mode: the URL published for this node


@dataclass(frozen=True, slots=True)
class OperatorConfig:
    """The local API (``node.operator``) and the credential of each role (``node.roles``).

    ``token_file`` is the operator's.  A config written before the roles were
    separated names no administrator or auditor file: those roles then have no
    credential, and their parts of the API refuse everyone (the daemon says so
    at start).
    """

    host: str
    port: int
    token_file: Path
    allow_remote: bool = False
    lease_seconds: float = 60.0
    max_body_bytes: int = MAX_BODY_DEFAULT
    administrator_token_file: Path | None = None
    auditor_token_file: Path | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def token_files(self) -> dict[Role, Path]:
        """Each role's token file, for the roles that have one."""
        files = {
            Role.ADMINISTRATOR: self.administrator_token_file,
            Role.OPERATOR: self.token_file,
            Role.AUDITOR: self.auditor_token_file,
        }
        return {role: path for role, path in files.items() if path is not None}


@dataclass(frozen=True, slots=True)
class CatalogConfig:
    refresh: float = 60.0  # seconds between full anti-entropy pulls from every neighbour


@dataclass(frozen=True, slots=True)
class AuditConfig:
    flush: float = DEFAULT_AUDIT_FLUSH  # s: events reach the store's audit log within this
    head_interval: float = DEFAULT_HEAD_INTERVAL  # s: a signed tree head, if the log grew
    retention_days: int = DEFAULT_RETENTION_DAYS  # records older than this are pruned
    witness_interval: float = DEFAULT_WITNESS_INTERVAL  # s: a hub checks its children's heads
    witness_retention_days: int = DEFAULT_WITNESS_RETENTION_DAYS  # pruning expected of children
    witness_silent_rounds: int = DEFAULT_WITNESS_SILENT_ROUNDS  # then a child is ``silent``
    allow_short_retention: bool = False  # retention_days under 183, forced by the operator


@dataclass(frozen=True, slots=True)
class SharingConfig:
    masking_secret: Path  # 32 random bytes, 0600: the provider's key for ``hash`` masks
    answer_days: int = DEFAULT_ANSWER_DAYS
    calendar: WorkCalendar = field(default_factory=WorkCalendar)
    #: where the calendar's lists come from (``node.workdays``), e.g. "chinese-calendar 1.11.0 ..."
    calendar_source: str = "none"
    #: overrides that change a day the library decides: warned of at every start
    calendar_notes: tuple[str, ...] = ()


STORE_BACKENDS = ("sqlite", "postgresql")
#: a hub's worker processes at most (``exchnode.aio.WorkerShare`` takes up to 256; more
#: processes than a host has cores only adds switching)
MAX_WORKERS = 64
#: a unix socket's path is at most this many bytes (Linux ``sun_path``, less its NUL)
MAX_SOCKET_PATH = 107


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """Where the node keeps its state: SQLite in ``state_dir`` (the default) or PostgreSQL.

    PostgreSQL is for a hub that outgrows SQLite (``exchnode.store.PostgresStore``).
    ``conninfo`` is a libpq connection string without a password: the config
    file is not a secret, so the password comes from ``password_file`` (0600)
    or libpq's own ``PGPASSFILE``.

    ``workers``: the hub runs as that many processes on the one database
    (``node.workers``); more than one needs PostgreSQL, whose store the
    processes share.
    """

    backend: str = "sqlite"
    conninfo: str = ""
    schema: str = "exchnode"
    password_file: Path | None = None
    workers: int = 1


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = "info"
    format: str = "json"


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    path: Path
    name: str
    level: Level
    listen: tuple[str, int]
    state_dir: Path
    identity: IdentityFiles
    trust: TrustFiles
    directory: DirectoryConfig
    peers: tuple[Peer, ...]
    limits: NodeLimits
    timers: NodeTimers
    drain_timeout: float
    operator: OperatorConfig
    sharing: SharingConfig
    catalog: CatalogConfig = field(default_factory=CatalogConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    log: LogConfig = field(default_factory=LogConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    admission: Admission = field(default_factory=Admission)

    @property
    def node_config(self) -> NodeConfig:
        """The Node's settings, one to one: ``[[peers]]``, ``[node] listen``,
        ``[directory] advertise``, ``[limits]``, ``[timers]`` (less ``drain_timeout``,
        the daemon's own); backoff and the seal and open policies are the library's.
        """
        return self.worker_node_config(0)

    def worker_node_config(self, index: int) -> NodeConfig:
        """:attr:`node_config` for worker ``index`` of ``[store] workers`` (0: the daemon
        itself); with one worker the node is one process (no ``WorkerShare``)."""
        count = self.store.workers
        return NodeConfig(
            peers=self.peers,
            listen=self.listen,
            advertise=self.directory.advertise,
            limits=self.limits,
            timers=self.timers,
            admission=self.admission,
            worker=WorkerShare(index, count) if count > 1 else None,
        )

    @property
    def store_path(self) -> Path:
        """The SQLite store's file (``[store] backend = "sqlite"``)."""
        return self.state_dir / "store.sqlite"

    @property
    def store_description(self) -> str:
        """The store in messages: the SQLite file, or PostgreSQL's database and schema."""
        if self.store.backend == "sqlite":
            return str(self.store_path)
        return stores.postgres_description(self.store.conninfo, self.store.schema)

    def store_opener(self) -> Path | Callable[[], Store]:
        """What ``Node(store=...)`` takes: the SQLite file, or a callable that connects."""
        if self.store.backend == "sqlite":
            return self.store_path
        conninfo = self.store.conninfo
        if self.store.password_file is not None:
            password = read_private_file(self.store.password_file).decode("utf-8").strip()
            conninfo = stores.postgres_with_password(conninfo, password)
        return partial(stores.PostgresStore, conninfo, schema=self.store.schema)

    @property
    def verify_bundle_path(self) -> Path:
        return self.state_dir / "verify.pem"

    @property
    def added_crls_dir(self) -> Path:
        """CRLs added while the node ran (``admin crl add``), kept for the next start."""
        return self.state_dir / "crls"

    @property
    def ready_path(self) -> Path:
        return self.state_dir / "ready.json"

    @property
    def worker_socket_path(self) -> Path:
        """Where worker 0 answers the services' endpoints for the other workers (0600)."""
        return self.state_dir / "workers.sock"

    def check_files(self) -> None:
        """Everything ``run`` reads must exist; the error names the key that points at it."""
        required: list[tuple[str, Path]] = [
            ("identity.chain", self.identity.chain),
            ("identity.signing_key", self.identity.signing_key),
            ("identity.encryption_key", self.identity.encryption_key),
            *(
                (f"operator.{token_key(role)}", path)
                for role, path in self.operator.token_files().items()
            ),
            ("sharing.masking_secret", self.sharing.masking_secret),
        ]
        if self.identity.passphrase_file is not None:
            required.append(("identity.passphrase_file", self.identity.passphrase_file))
        required += [("trust.roots", p) for p in self.trust.roots]
        required += [("trust.cas", p) for p in self.trust.cas]
        required += [("trust.crls", p) for p in self.trust.crls]
        required += [("directory.certificates", p) for p in self.directory.certificates]
        for key, path in required:
            if not path.exists():
                hint = ""
                if key.startswith("identity."):
                    hint = (
                        f" (the CA issues it: 'exchnode pki issue-node {self.name} --issuer "
                        f"<CA> --dir <pki> --out {path.parent}')"
                    )
                elif key == "sharing.masking_secret":
                    hint = (
                        f" ('init' writes one; or: head -c {MASKING_SECRET_BYTES} /dev/urandom "
                        f"> {path} && chmod 600 {path})"
                    )
                raise ConfigError(f"{self.path}: {key}: {path} does not exist{hint}")


# --- reading values ------------------------------------------------------------------


class _Section:
    """One table of the file: typed getters that name the key, and an unknown-key check."""

    def __init__(self, path: Path, prefix: str, table: object) -> None:
        self.path = path
        self.prefix = prefix
        if not isinstance(table, dict):
            raise self.error("", f"must be a table, got {type(table).__name__}")
        self.table: dict[str, Any] = table
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if name else self.prefix

    def error(self, name: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.path}: {self.key(name)}: {problem}")

    def get(self, name: str, kind: type[T], default: T | None = None) -> T:
        self.seen.add(name)
        if name not in self.table:
            if default is None:
                raise self.error(name, "is required")
            return default
        value = self.table[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.error(name, f"must be {_KIND_NAMES.get(kind, kind.__name__)}, got {value!r}")
        return value

    def optional(self, name: str, kind: type[T]) -> T | None:
        if name not in self.table:
            self.seen.add(name)
            return None
        return self.get(name, kind)

    def choice(
        self, name: str, choices: Mapping[str, T] | tuple[str, ...], default: str | None
    ) -> str:
        value = self.get(name, str, default)
        if value not in choices:
            raise self.error(name, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def path_value(self, name: str, default: str | None = None) -> Path:
        return self.resolve(name, self.get(name, str, default))

    def resolve(self, name: str, text: str) -> Path:
        if not text:
            raise self.error(name, "is an empty path")
        path = Path(text).expanduser()
        return path if path.is_absolute() else self.path.parent / path

    def paths(self, name: str, default: tuple[str, ...]) -> tuple[Path, ...]:
        """A path or a list of paths."""
        self.seen.add(name)
        raw = self.table.get(name, list(default))
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
            raise self.error(name, f"must be a path or a list of paths, got {raw!r}")
        return tuple(self.resolve(name, item) for item in raw)

    def positive(self, name: str, kind: type[T], default: T) -> T:
        value = self.get(name, kind, default)
        if value <= 0:  # type: ignore[operator]
            raise self.error(name, f"must be positive, got {value!r}")
        return value

    def finish(self) -> None:
        unknown = sorted(set(self.table) - self.seen)
        if unknown:
            raise self.error(unknown[0], "unknown setting (misspelt?)")


_KIND_NAMES: dict[type, str] = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
}


def parse_address(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` into (host, port); ValueError with the reason."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"must be host:port, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"write an IPv6 address in brackets, [{host}]:{port_text}")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range")
    return host, port


def _address(section: _Section, name: str, default: str) -> tuple[str, int]:
    try:
        return parse_address(section.get(name, str, default))
    except ValueError as exc:
        raise section.error(name, str(exc)) from None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _build(section: _Section, name: str, make: Callable[[], T]) -> T:
    try:
        return make()
    except ExchnodeError as exc:
        raise section.error(name, str(exc)) from None


# --- the sections ------------------------------------------------------------------------

_TOP_LEVEL = {
    "node",
    "identity",
    "trust",
    "directory",
    "peers",
    "limits",
    "timers",
    "store",
    "operator",
    "catalog",
    "sharing",
    "audit",
    "log",
    "admission",
}


def load_config(path: Path | str) -> DaemonConfig:
    """Read and validate ``path``; raise :class:`ConfigError` naming file and key."""
    config_path = Path(path).resolve()
    try:
        with config_path.open("rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{config_path}: no such config file") from None
    except IsADirectoryError:
        raise ConfigError(f"{config_path}: is a directory, not a config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config_path}: not valid TOML: {exc}") from None
    unknown = sorted(set(document) - _TOP_LEVEL)
    if unknown:
        raise ConfigError(f"{config_path}: {unknown[0]}: unknown section (misspelt?)")
    if "node" not in document:
        raise ConfigError(f"{config_path}: node: the [node] section is required")

    def section(name: str) -> _Section:
        return _Section(config_path, name, document.get(name, {}))

    node = section("node")
    name = node.get("name", str)
    parsed = _build(node, "name", lambda: NodeName.parse(name))
    level_name = node.choice("level", LEVELS, None)
    level = LEVELS[level_name]
    if parsed.level is not level:
        kind = "hub" if parsed.is_hub else "department"
        raise node.error(
            "level",
            f"{level_name!r} does not match {name}, a {parsed.level.name.lower()} {kind}",
        )
    listen = _address(node, "listen", DEFAULT_LISTEN)
    state_dir = node.path_value("state_dir", "state")
    node.finish()

    ident = section("identity")
    passphrase_file = ident.optional("passphrase_file", str)
    passphrase_env = ident.optional("passphrase_env", str)
    if passphrase_file is not None and passphrase_env is not None:
        raise ident.error("passphrase_env", "give passphrase_file or passphrase_env, not both")
    identity = IdentityFiles(
        chain=ident.path_value("chain", "identity/chain.pem"),
        signing_key=ident.path_value("signing_key", "identity/signing.key"),
        encryption_key=ident.path_value("encryption_key", "identity/encryption.key"),
        passphrase_file=(
            ident.resolve("passphrase_file", passphrase_file) if passphrase_file else None
        ),
        passphrase_env=passphrase_env or None,
    )
    ident.finish()

    trust_section = section("trust")
    crl_warning = trust_section.positive("crl_warning_hours", float, DEFAULT_CRL_WARNING_HOURS)
    if crl_warning > MAX_CRL_WARNING_HOURS:
        raise trust_section.error(
            "crl_warning_hours", f"must be at most {MAX_CRL_WARNING_HOURS:g}, got {crl_warning!r}"
        )
    certificate_warning = trust_section.positive(
        "certificate_warning_days", float, DEFAULT_CERTIFICATE_WARNING_DAYS
    )
    if certificate_warning > MAX_CERTIFICATE_WARNING_DAYS:
        raise trust_section.error(
            "certificate_warning_days",
            f"must be at most {MAX_CERTIFICATE_WARNING_DAYS:g}, got {certificate_warning!r}",
        )
    crl_poll = trust_section.get("crl_poll_seconds", float, DEFAULT_CRL_POLL_SECONDS)
    if not 0 <= crl_poll <= MAX_CRL_POLL_SECONDS:
        raise trust_section.error(
            "crl_poll_seconds",
            f"must be 0 (off) to {MAX_CRL_POLL_SECONDS:g} seconds, got {crl_poll!r}",
        )
    trust = TrustFiles(
        roots=trust_section.paths("roots", ("trust/roots.pem",)),
        cas=trust_section.paths("cas", ("trust/cas.pem",)),
        crls=trust_section.paths("crls", ("trust/crls",)),
        crl_warning_hours=crl_warning,
        certificate_warning_days=certificate_warning,
        crl_poll_seconds=crl_poll,
    )
    if not trust.roots:
        raise trust_section.error("roots", "needs at least one root certificate file")
    trust_section.finish()

    dir_section = section("directory")
    mode = dir_section.choice("mode", DIRECTORY_MODES, "signed")
    if mode == "static":
        if "advertise" in dir_section.table:
            raise dir_section.error("advertise", 'only for mode = "signed"')
        directory = DirectoryConfig(mode, dir_section.paths("certificates", ("directory",)))
    else:
        if "certificates" in dir_section.table:
            raise dir_section.error(
                "certificates", 'only for mode = "static"; the signed directory learns them'
            )
        advertise = dir_section.optional("advertise", str)
        if advertise is None and listen[0] in _WILDCARDS:
            raise dir_section.error(
                "advertise",
                f"is required when node.listen is the wildcard {listen[0] or '*'}: "
                "the https://host:port peers reach this node at",
            )
        if advertise is not None:
            _build(
                dir_section,
                "advertise",
                partial(Peer, name=name, relation=Relation.LINK, url=advertise),
            )
        directory = DirectoryConfig(mode, advertise=advertise)
    dir_section.finish()

    peers = _peers(config_path, document.get("peers", []))
    _build(
        _Section(config_path, "peers", {}),
        "",
        lambda: Router(parsed, [peer.neighbour for peer in peers]),
    )

    limits_section = section("limits")
    limits = _dataclass_section(limits_section, NodeLimits, int)
    timers_section = section("timers")
    drain_timeout = timers_section.positive("drain_timeout", float, 10.0)
    timers = _dataclass_section(timers_section, NodeTimers, float)
    store = _store(section("store"))
    if store.workers > 1 and len(os.fsencode(state_dir / "workers.sock")) > MAX_SOCKET_PATH:
        raise node.error(
            "state_dir",
            f"{state_dir} is too long for the unix socket (workers.sock, at most "
            f"{MAX_SOCKET_PATH} bytes) through which the workers (store.workers) reach worker 0",
        )

    op = section("operator")
    host, port = _address(op, "listen", DEFAULT_OPERATOR)
    allow_remote = op.get("allow_remote", bool, False)
    if not allow_remote and not _is_loopback(host):
        raise op.error(
            "listen",
            f"{host} is not a loopback address; the operator API can send as this node, "
            "so it listens on loopback only unless allow_remote = true",
        )
    operator = OperatorConfig(
        host=host,
        port=port,
        token_file=op.path_value("token_file", "operator.token"),
        allow_remote=allow_remote,
        lease_seconds=op.positive("lease_seconds", float, 60.0),
        max_body_bytes=op.positive("max_body_bytes", int, MAX_BODY_DEFAULT),
        administrator_token_file=_optional_path(op, "administrator_token_file"),
        auditor_token_file=_optional_path(op, "auditor_token_file"),
    )
    _distinct_token_files(op, operator)
    op.finish()

    catalog_section = section("catalog")
    catalog = CatalogConfig(refresh=catalog_section.positive("refresh", float, 60.0))
    catalog_section.finish()
    sharing = _sharing(section("sharing"))
    audit = _audit(section("audit"))

    log_section = section("log")
    log = LogConfig(
        level=log_section.choice("level", LOG_LEVELS, "info"),
        format=log_section.choice("format", LOG_FORMATS, "json"),
    )
    log_section.finish()
    admission_section = section("admission")
    admission = _admission(admission_section, store.workers)

    return DaemonConfig(
        path=config_path,
        name=str(parsed),
        level=level,
        listen=listen,
        state_dir=state_dir,
        identity=identity,
        trust=trust,
        directory=directory,
        peers=peers,
        limits=limits,
        timers=timers,
        drain_timeout=drain_timeout,
        operator=operator,
        sharing=sharing,
        catalog=catalog,
        audit=audit,
        log=log,
        store=store,
        admission=admission,
    )


def _admission(section: _Section, workers: int) -> Admission:
    """``[admission]``: whom a hub admits as a child on its first hello (``aio.Admission``).

    A hub run as several workers admits no one (``policy = "none"``, its default
    there): a child admitted by the worker its hello reached would be a stranger to
    the others, which take its transfers and forward its queue, until they restart;
    its children are listed in ``[[peers]]`` and reloaded (SIGHUP) instead.
    """
    policy = section.choice("policy", ADMISSION_POLICIES, "division" if workers == 1 else "none")
    if workers > 1 and policy != "none":
        raise section.error(
            "policy",
            f"{policy!r} admits children on their hello, which a hub run as {workers} workers "
            '(store.workers) cannot share between them: use policy = "none" and list the '
            "children in [[peers]] (reloaded on SIGHUP)",
        )
    allow = section.get("allow", list, [])
    section.finish()
    if policy != "allow-list" and allow:
        raise section.error("allow", f'is used only with policy = "allow-list", not {policy!r}')
    return _build(section, "allow", lambda: Admission(policy=policy, allow=tuple(allow)))


def _store(section: _Section) -> StoreConfig:
    backend = section.choice("backend", STORE_BACKENDS, "sqlite")
    workers = section.positive("workers", int, 1)
    if workers > MAX_WORKERS:
        raise section.error("workers", f"must be at most {MAX_WORKERS}, got {workers}")
    if backend == "sqlite":
        for name in ("conninfo", "schema", "password_file"):
            if name in section.table:
                raise section.error(name, 'is for backend = "postgresql" only')
        if workers > 1:
            raise section.error(
                "workers",
                f'{workers} worker processes need backend = "postgresql": a SQLite store is '
                "one process's (its file is locked by the one that opened it)",
            )
        section.finish()
        return StoreConfig()
    conninfo = section.get("conninfo", str)
    schema = section.get("schema", str, "exchnode")
    if importlib.util.find_spec("psycopg") is None:
        raise section.error("backend", "needs psycopg 3: pip install 'exchnode[postgres]'")
    try:
        stores.check_postgres_target(conninfo, schema)
    except UsageError as exc:
        key = "schema" if str(exc).startswith("schema") else "conninfo"
        raise section.error(key, str(exc)) from None
    password_file = _optional_path(section, "password_file")
    section.finish()
    return StoreConfig(backend, conninfo, schema, password_file, workers)


def _optional_path(section: _Section, name: str) -> Path | None:
    text = section.optional(name, str)
    return None if text is None else section.resolve(name, text)


def _distinct_token_files(section: _Section, operator: OperatorConfig) -> None:
    """One file per role: a file shared by two roles would be one credential for both."""
    seen: dict[Path, Role] = {}
    for role, path in operator.token_files().items():
        other = seen.get(path)
        if other is not None:
            raise section.error(
                token_key(role),
                f"{path} is also the {other.value}'s token file: each role needs its own "
                "credential",
            )
        seen[path] = role


def _audit(section: _Section) -> AuditConfig:
    """``[audit]``: bounded, since events wait in memory for ``flush`` (lost in a crash)."""
    values: dict[str, float] = {}
    for name, default, high in (
        ("flush", DEFAULT_AUDIT_FLUSH, MAX_AUDIT_FLUSH),
        ("head_interval", DEFAULT_HEAD_INTERVAL, MAX_HEAD_INTERVAL),
        ("witness_interval", DEFAULT_WITNESS_INTERVAL, MAX_HEAD_INTERVAL),
    ):
        value = section.positive(name, float, default)
        if not value <= high:
            raise section.error(name, f"must be at most {high:g} seconds, got {value!r}")
        values[name] = value
    days: dict[str, int] = {}
    for name, default_days in (
        ("retention_days", DEFAULT_RETENTION_DAYS),
        ("witness_retention_days", DEFAULT_WITNESS_RETENTION_DAYS),
    ):
        value_days = section.positive(name, int, default_days)
        if value_days > MAX_RETENTION_DAYS:
            raise section.error(
                name, f"must be at most {MAX_RETENTION_DAYS} days, got {value_days}"
            )
        days[name] = value_days
    forced = section.get("allow_short_retention", bool, False)
    if days["retention_days"] < MIN_RETENTION_DAYS and not forced:
        raise section.error(
            "retention_days",
            f"{days['retention_days']} days is under the {MIN_RETENTION_DAYS} days (six "
            "months) the protection-level rules (等级保护) ask audit records be kept; set "
            "audit.allow_short_retention = true to force it",
        )
    silent_rounds = section.positive("witness_silent_rounds", int, DEFAULT_WITNESS_SILENT_ROUNDS)
    if silent_rounds > MAX_WITNESS_SILENT_ROUNDS:
        raise section.error(
            "witness_silent_rounds",
            f"must be at most {MAX_WITNESS_SILENT_ROUNDS}, got {silent_rounds}",
        )
    section.finish()
    return AuditConfig(
        flush=values["flush"],
        head_interval=values["head_interval"],
        witness_interval=values["witness_interval"],
        retention_days=days["retention_days"],
        witness_retention_days=days["witness_retention_days"],
        witness_silent_rounds=silent_rounds,
        allow_short_retention=forced,
    )


def _sharing(section: _Section) -> SharingConfig:
    answer_days = section.positive("answer_days", int, DEFAULT_ANSWER_DAYS)
    if answer_days > MAX_ANSWER_DAYS:
        raise section.error("answer_days", f"must be at most {MAX_ANSWER_DAYS}, got {answer_days}")
    source = section.choice("calendar", SOURCES, LIBRARY)
    uncovered = section.choice("uncovered_years", UNCOVERED, "weekends")
    overrides = Overrides(
        holidays=[dt.date.fromisoformat(day) for day in _dates(section, "holidays")],
        workdays=[dt.date.fromisoformat(day) for day in _dates(section, "workdays")],
        removed=[dt.date.fromisoformat(day) for day in _dates(section, "removed")],
        own_years=_years(section, "own_years"),
    )
    try:
        built = build_calendar(source, overrides, uncovered)
    except CalendarError as exc:
        raise section.error(exc.key, str(exc)) from None
    secret = section.path_value("masking_secret", "masking.secret")
    section.finish()
    return SharingConfig(
        masking_secret=secret,
        answer_days=answer_days,
        calendar=built.calendar,
        calendar_source=built.source,
        calendar_notes=built.notes,
    )


def _years(section: _Section, name: str) -> list[int]:
    section.seen.add(name)
    raw = section.table.get(name, [])
    if not isinstance(raw, list) or not all(
        isinstance(year, int) and not isinstance(year, bool) for year in raw
    ):
        raise section.error(name, f"must be a list of years (2027), got {raw!r}")
    return list(raw)


def _dates(section: _Section, name: str) -> list[str]:
    """A list of ISO dates (TOML dates or strings), each checked, as ISO strings."""
    section.seen.add(name)
    raw = section.table.get(name, [])
    if not isinstance(raw, list):
        raise section.error(name, f"must be a list of dates (YYYY-MM-DD), got {raw!r}")
    out = []
    for index, value in enumerate(raw):
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            out.append(value.isoformat())
            continue
        if not isinstance(value, str):
            raise section.error(f"{name}[{index}]", f"must be a date (YYYY-MM-DD), got {value!r}")
        try:
            out.append(dt.date.fromisoformat(value).isoformat())
        except ValueError:
            raise section.error(
                f"{name}[{index}]", f"{value!r} is not a date (YYYY-MM-DD)"
            ) from None
    return out


def _peers(path: Path, raw: object) -> tuple[Peer, ...]:
    if not isinstance(raw, list):
        raise ConfigError(f"{path}: peers: must be an array of tables ([[peers]])")
    peers: list[Peer] = []
    names: set[str] = set()
    for index, table in enumerate(raw):
        entry = _Section(path, f"peers[{index}]", table)
        name = entry.get("name", str)
        relation_text = entry.choice("relation", {r.value: r for r in Relation}, None)
        url = entry.get("url", str)
        entry.finish()
        if name in names:
            raise entry.error("name", f"{name} is listed twice")
        names.add(name)
        _build(entry, "name", partial(NodeName.parse, name))
        relation = Relation(relation_text)
        peer = _build(entry, "url", partial(Peer, name=name, relation=relation, url=url))
        peers.append(peer)
    return tuple(peers)


def _dataclass_section(section: _Section, kind: type[T], number: type) -> T:
    """The section's keys as keyword arguments of ``kind`` (NodeLimits or NodeTimers)."""
    values: dict[str, Any] = {}
    for spec in dataclasses.fields(kind):  # type: ignore[arg-type]
        if spec.name in section.table:
            values[spec.name] = section.positive(spec.name, number, 1)
    section.finish()
    try:
        return kind(**values)
    except ExchnodeError as exc:
        raise section.error("", str(exc)) from None
