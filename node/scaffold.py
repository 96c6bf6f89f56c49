"""``init``: a node's folder -- starter config, role tokens, and its identity if a CA is at hand.

Theory of operation
-------------------
exchnode's CA tool generates a node's keys itself and hands them out with the
certificate (``exchnode pki issue-node``); there is no signing-request flow.
So ``init`` has two honest modes:

* **with ``--ca-dir``** (the CA store is on this machine, as in a test bed or
  the demo): the node's certificate and keys are issued into
  ``DIR/identity/`` by that store, keys 0600, and the federation's trust
  material (roots, every intermediate CA, every CA's current CRL) is
  exported into ``DIR/trust/`` unless ``--trust`` names a shared copy;
* **without**: the config is written pointing at ``DIR/identity/`` and
  ``DIR/trust/``, and the next steps say which command the CA operator runs
  and what to copy where.  ``run`` refuses to start until they are there,
  naming the missing file and the key that points at it.

With a CA, the node's chain is also copied into the directory folder
(``DIR/directory/`` or the shared ``--peer-directory``), where peers sharing
that folder find it.  Either way three random tokens, one per role
(``DIR/administrator.token``, ``DIR/operator.token``, ``DIR/auditor.token``,
each 0600 and different: ``node.roles``) guard the local API,
``DIR/masking.secret`` (0600, 32 random bytes) keys the provider's ``hash``
masks (never logged, never sent),
and the written config is loaded back with :func:`node.config.load_config`
before ``init`` reports success: ``init`` never leaves a file ``run`` would
reject for its shape.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding

from exchnode.aio import NodeLimits, NodeTimers
from exchnode.audit import Role
from exchnode.core import NodeName, parent_division
from exchnode.errors import ExchnodeError, UsageError
from exchnode.pki import NODE_VALIDITY, CAStore, write_private_file
from exchnode.sharing import DEFAULT_ANSWER_DAYS

from .config import (
    DEFAULT_LISTEN,
    DEFAULT_OPERATOR,
    DIRECTORY_MODES,
    LEVELS,
    MASKING_SECRET_BYTES,
    load_config,
    parse_address,
)

__all__ = [
    "TOKEN_NAMES",
    "InitOptions",
    "InitResult",
    "export_trust",
    "init_node",
    "render_config",
]

CONFIG_NAME = "node.toml"
TOKEN_NAME = "operator.token"  # noqa: S105 - a file name, not a secret
#: Each role's token file in a new node's folder (node.roles).
TOKEN_NAMES: dict[Role, str] = {
    Role.ADMINISTRATOR: "administrator.token",
    Role.OPERATOR: TOKEN_NAME,
    Role.AUDITOR: "auditor.token",
}
SECRET_NAME = "masking.secret"  # noqa: S105 - a file name, not a secret


@dataclass(frozen=True, slots=True, kw_only=True)
class InitOptions:
    name: str
    level: str
    directory: Path
    now: datetime
    ca_dir: Path | None = None
    issuer: str | None = None
    issuer_passphrase: bytes | None = field(default=None, repr=False)
    passphrase: bytes | None = field(default=None, repr=False)
    passphrase_file: Path | None = None
    listen: str = DEFAULT_LISTEN
    operator: str = DEFAULT_OPERATOR
    peers: tuple[tuple[str, str, str], ...] = ()  # (relation, name, url)
    trust: Path | None = None
    peer_directory: Path | None = None
    directory_mode: str = "signed"


@dataclass(frozen=True, slots=True)
class InitResult:
    config: Path
    issued_by: str | None
    next_steps: tuple[str, ...]


def export_trust(store: CAStore, out: Path) -> Path:
    """Write the store's public trust material: roots.pem, cas.pem, crls/<division>.crl.pem."""
    roots, intermediates, _ = store.trust_material()
    out.mkdir(parents=True, exist_ok=True)
    (out / "roots.pem").write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in roots))
    (out / "cas.pem").write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in intermediates))
    crls = out / "crls"
    crls.mkdir(exist_ok=True)
    for division in store.divisions():
        crl = store.read_crl(division)
        if crl is not None:
            (crls / f"{division}.crl.pem").write_bytes(crl.public_bytes(Encoding.PEM))
    return out


def _nearest_ca(store: CAStore, node: NodeName) -> str:
    """The CA of the node's own division, else of the nearest division above it."""
    division: str | None = node.division
    while division is not None:
        if (store.ca_directory(division) / "ca.crt").is_file():
            return division
        division = parent_division(division)
    raise UsageError(f"{store.directory} holds no CA whose division contains {node}; give --issuer")


def _toml(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path.resolve())


def _parent_guess(node: NodeName) -> str | None:
    if not node.is_hub:
        return node.division
    return parent_division(node.division)


def _defaults(kind: type, skip: tuple[str, ...] = ()) -> list[str]:
    instance = kind()
    return [
        f"# {spec.name} = {getattr(instance, spec.name)!r}"
        for spec in dataclasses.fields(kind)
        if spec.name not in skip
    ]


def render_config(
    options: InitOptions, *, trust_dir: str, peer_dir: str, passphrase_file: str | None
) -> str:
    node = NodeName.parse(options.name)
    lines = [
        f"# exchnode reference daemon: configuration of {node} ({options.level}).",
        f"# Written by 'exchnode node init' at {options.now:%Y-%m-%d %H:%M:%S %Z}.",
        "# Reference: node/README.md.  Relative paths are relative to this file.",
        "",
        "[node]",
        f"name = {_toml(str(node))}",
        f"level = {_toml(options.level)}  # national, province, city or county; checked "
        "against the name",
        f"listen = {_toml(options.listen)}  # neighbours connect here (mutual TLS)",
        'state_dir = "state"  # the store, the TLS verify bundle, ready.json',
        "",
        "[identity]",
        "# Issued by the CA ('exchnode pki issue-node'); the signing key is also the TLS key.",
        'chain = "identity/chain.pem"',
        'signing_key = "identity/signing.key"',
        'encryption_key = "identity/encryption.key"',
    ]
    if passphrase_file is not None:
        lines.append(f"passphrase_file = {_toml(passphrase_file)}")
    else:
        lines.append('# passphrase_file = "passphrase"  # or passphrase_env = "EXN_PASSPHRASE"')
    lines += [
        "",
        "[trust]",
        "# The federation's public material: the root(s), every intermediate CA (for the",
        "# division name constraints), and every CA's current CRL (TLS checks them all).",
        f"roots = {_toml(trust_dir + '/roots.pem')}",
        f"cas = {_toml(trust_dir + '/cas.pem')}",
        f"crls = {_toml(trust_dir + '/crls')}  # a directory of *.pem, or a list of files",
        "",
        "[directory]",
        "# Where peers' keys come from.  static: their certificate chains (one node per *.pem",
        "# file), each verified at startup to the roots above; one that fails (revoked,",
        "# expired) is left out.  signed: the federation's signed node directory, pulled from",
        "# and served to every neighbour; advertise is the https://host:port published for",
        "# this node (default: node.listen).",
    ]
    if options.directory_mode == "signed":
        lines += [
            'mode = "signed"',
            f"# advertise = {_toml('https://' + options.listen)}",
            f"# static: certificates = {_toml(peer_dir)}",
        ]
    else:
        lines += [
            'mode = "static"',
            f"certificates = {_toml(peer_dir)}",
        ]
    lines += [
        "",
        "# One [[peers]] table per neighbour: its parent hub, its children, its links.",
    ]
    if options.peers:
        for relation, name, url in options.peers:
            lines += [
                "[[peers]]",
                f"name = {_toml(name)}",
                f"relation = {_toml(relation)}",
                f"url = {_toml(url)}",
                "",
            ]
    else:
        guess = _parent_guess(node)
        lines += [
            "# [[peers]]",
            f"# name = {_toml(guess or '520000')}",
            '# relation = "parent"  # parent, child or link',
            '# url = "https://hub.example:7443"',
            "",
        ]
    lines += [
        "[limits]",
        *_defaults(NodeLimits),
        "",
        "[timers]  # seconds",
        *_defaults(NodeTimers),
        "# drain_timeout = 10.0  # SIGTERM: how long requests under way may take",
        "",
        "[operator]",
        "# The local API for this department's systems, 'exchnode send/receive' and the",
        "# node's administration.  Loopback only unless allow_remote = true.  Every call but",
        "# /health needs a token, and each of the three roles has its own (GB/T 39477):",
        f"listen = {_toml(options.operator)}",
        f"token_file = {_toml(TOKEN_NAMES[Role.OPERATOR])}  # operator: send, receive, "
        "catalog, subscriptions",
        f"administrator_token_file = {_toml(TOKEN_NAMES[Role.ADMINISTRATOR])}  # "
        "configuration, keys, links (/v1/admin)",
        f"auditor_token_file = {_toml(TOKEN_NAMES[Role.AUDITOR])}  # the audit log, "
        "read only (/v1/audit)",
        "# lease_seconds = 60.0  # a received, unacknowledged message is offered again after",
        "# max_body_bytes = 67108864",
        "",
        "[catalog]",
        "# The resource catalog (政务信息资源目录): this node pulls what its neighbours hold",
        "# at start, at once when one announces a change, and every refresh seconds.",
        "# refresh = 60.0",
        "",
        "[sharing]",
        "# Subscriptions under the sharing rules.  A conditional request not answered within",
        "# answer_days working days (China Standard Time) expires.  Holidays and make-up",
        "# working days (调休) come from chinese-calendar; these lists are overrides only:",
        "# holidays added, workdays (weekend days) added, removed (the library's days that do",
        "# not apply here); own_years: years the library does not cover yet, listed in full.",
        f"# answer_days = {DEFAULT_ANSWER_DAYS}",
        '# holidays = ["2026-10-01", "2026-10-02"]',
        '# workdays = ["2026-09-27"]',
        "# removed = []",
        "# own_years = []",
        f"masking_secret = {_toml(SECRET_NAME)}  # {MASKING_SECRET_BYTES} random bytes, 0600: "
        "keys 'hash' masks",
        "",
        "[audit]",
        "# The tamper-evident audit log (in the store): events reach it within flush seconds,",
        "# and the node signs a tree head over it every head_interval seconds if it grew.",
        "# flush = 0.2",
        "# head_interval = 10.0",
        "# Records older than retention_days are deleted below a signed checkpoint (at least",
        "# six months: GB/T 22239).  A hub checks its children's heads every witness_interval",
        "# seconds, and accepts a child's pruned history only once what it kept is",
        "# witness_retention_days old.",
        "# retention_days = 183",
        "# allow_short_retention = false  # true to keep records under 183 days (refused else)",
        "# witness_interval = 60.0",
        "# witness_retention_days = 180",
        "# A child that does not answer witness_silent_rounds rounds in a row is judged silent.",
        "# witness_silent_rounds = 5",
        "",
    ]
    if node.is_hub:
        lines += [
            "# [store]  # a hub that outgrows the SQLite file in state_dir (node/README.md §2)",
            '# backend = "postgresql"',
            '# conninfo = "host=/run/postgresql dbname=exchnode"  # the password: password_file',
            "# workers = 4  # processes on the one database, one per core (postgresql only)",
            "",
        ]
    lines += [
        "[log]",
        'level = "info"  # debug, info, warning, error',
        'format = "json"  # json (one object per line on stderr) or console',
        "",
    ]
    return "\n".join(lines)


def _check_options(options: InitOptions) -> NodeName:
    try:
        node = NodeName.parse(options.name)
    except ExchnodeError as exc:
        raise UsageError(f"--name: {exc}") from None
    level = LEVELS.get(options.level)
    if level is None:
        raise UsageError(f"--level must be one of {', '.join(LEVELS)}, got {options.level!r}")
    if node.level is not level:
        kind = "hub" if node.is_hub else "department"
        raise UsageError(
            f"--level {options.level} does not match {node}, a {node.level.name.lower()} {kind}"
        )
    for flag, value in (("--listen", options.listen), ("--operator", options.operator)):
        try:
            parse_address(value)
        except ValueError as exc:
            raise UsageError(f"{flag}: {exc}") from None
    if options.directory_mode not in DIRECTORY_MODES:
        raise UsageError(
            f"--directory-mode must be one of {', '.join(DIRECTORY_MODES)}, "
            f"got {options.directory_mode!r}"
        )
    if (options.directory / CONFIG_NAME).exists():
        raise UsageError(f"{options.directory / CONFIG_NAME} already exists; not overwriting it")
    return node


def init_node(options: InitOptions) -> InitResult:
    node = _check_options(options)
    out = options.directory
    issued_by: str | None = None
    store: CAStore | None = None
    if options.ca_dir is not None:
        store = CAStore(options.ca_dir)
        issued_by = options.issuer or _nearest_ca(store, node)
        store.preflight_node(str(node), issued_by, out / "identity")
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    next_steps: list[str] = []
    if store is not None and issued_by is not None:
        store.issue_node(
            str(node),
            issued_by,
            out / "identity",
            now=options.now,
            lifetime=NODE_VALIDITY,
            issuer_passphrase=options.issuer_passphrase,
            passphrase=options.passphrase,
        )
    else:
        (out / "identity").mkdir(mode=0o700, exist_ok=True)
        next_steps.append(
            f"have your CA issue the certificate and keys: 'exchnode pki issue-node {node} "
            f"--issuer <CA division> --dir <pki dir> --out <bundle>', then copy chain.pem, "
            f"signing.key and encryption.key into {out / 'identity'} (keep the keys 0600)"
        )
    if options.trust is not None:
        trust_dir = _relative(options.trust, out)
    elif store is not None:
        export_trust(store, out / "trust")
        trust_dir = "trust"
    else:
        (out / "trust" / "crls").mkdir(parents=True, exist_ok=True)
        trust_dir = "trust"
        next_steps.append(
            f"put the federation's roots.pem, cas.pem (every intermediate CA) and crls/ "
            f"(every CA's current CRL) into {out / 'trust'}"
        )
    directory = options.peer_directory if options.peer_directory is not None else out / "directory"
    directory.mkdir(parents=True, exist_ok=True)
    peer_dir = _relative(directory, out)
    if store is not None:
        # Publish this node's chain where its peers (sharing the folder) will look.
        shutil.copyfile(out / "identity" / "chain.pem", directory / f"{node}.pem")
    if options.peer_directory is None and options.directory_mode == "static":
        next_steps.append(
            f"put the chain.pem of every node this one exchanges with into {directory} "
            "(one <name>.pem per node)"
        )
    if not options.peers:
        next_steps.append(f"add a [[peers]] table for each neighbour to {out / CONFIG_NAME}")
    for token_name in TOKEN_NAMES.values():  # three independent draws: never equal
        write_private_file(out / token_name, (secrets.token_urlsafe(32) + "\n").encode())
    write_private_file(out / SECRET_NAME, secrets.token_bytes(MASKING_SECRET_BYTES))
    passphrase_file = (
        str(options.passphrase_file.resolve()) if options.passphrase_file is not None else None
    )
    text = render_config(
        options, trust_dir=trust_dir, peer_dir=peer_dir, passphrase_file=passphrase_file
    )
    config_path = out / CONFIG_NAME
    config_path.write_text(text, encoding="utf-8")
    load_config(config_path)  # what init writes, run must be able to read
    return InitResult(config_path, issued_by, tuple(next_steps))
