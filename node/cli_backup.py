"""``node backup`` and ``node restore``: the node's state saved while it runs, put back checked.

``backup --to FILE`` asks the running node (``POST /v1/admin/backup``, the
administrator's token) for a consistent copy of its state and writes it to a
new FILE; ``restore --from FILE`` checks a backup and puts it in place while
the daemon is stopped.  ``node.backup`` explains what is in a backup (no
keys, no tokens) and every check.  Errors follow ``node.cli``'s policy: one
line, exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from exchnode.errors import UsageError

from .backup import STORE, restore
from .cli_common import add_config_option, add_verb, person
from .client import OperatorClient
from .config import load_config

__all__ = ["register"]


def _backup(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    who = person(args, "administrator")
    target: Path = args.to
    if target.exists():
        raise UsageError(f"--to: {target} exists; a backup never overwrites a file")

    async def run() -> int:
        async with OperatorClient.for_config(config, timeout=args.timeout) as client:
            return await client.admin_backup(who, target)

    size = asyncio.run(run())
    print(f"wrote {target} ({size} bytes): a backup of {config.name}, without its keys or tokens")
    return 0


def _restore(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    done = restore(config, args.source, replace=args.replace)
    manifest: dict[str, Any] = done.manifest
    print(
        f"checked {args.source}: node {manifest['node']}, taken {manifest['created']}, "
        f"{STORE} SHA-256 {manifest['files'][STORE]['sha256'][:16]}…, integrity ok, "
        f"audit log of {done.audit_records} records verifies"
    )
    if done.replaced is not None:
        print(f"kept the store that was there as {done.replaced}")
    print(f"restored {done.store}")
    for crl in done.crls:
        print(f"restored {crl}")
    if done.config_differs:
        print(
            f"note: {config.path} differs from the node.toml in the backup "
            "(the one in place is used)"
        )
    print(f"next: start the node (run --config {config.path})")
    return 0


def register(verbs: Any, prog: str) -> None:
    p = add_verb(
        verbs,
        "backup",
        _backup,
        "a consistent backup of the RUNNING node's state into a new file (no keys, no tokens)",
        f"""Example:
  {prog} backup --config /srv/exchnode/gongan/node.toml --to gongan-2026-12-07.tar

The node copies its SQLite store online, a few pages at a time (custody goes
on meanwhile), and sends one tar: manifest.json (node, time, store schema
version, SHA-256 of every member) signed by the node's key (manifest.sig),
store.sqlite, node.toml and the CRLs added while it ran.  NOT in it: the
node's private keys and certificate, the role tokens, masking.secret and the
trust folder -- keep those as you keep keys.
A node on PostgreSQL answers that pg_dump / pg_basebackup back it up instead.
Needs the administrator's token; the backup is an audit record.""",
    )
    add_config_option(p)
    p.add_argument("--to", required=True, type=Path, metavar="FILE", help="a new file")
    p.add_argument(
        "--administrator",
        help="who is acting, for the audit log (default: $EXCHNODE_ADMINISTRATOR, else the "
        "login name)",
    )
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds (default %(default)s)")

    p = add_verb(
        verbs,
        "restore",
        _restore,
        "check a backup and put it in place of the node's state (the daemon stopped)",
        f"""Example:
  {prog} restore --config /srv/exchnode/gongan/node.toml --from gongan-2026-12-07.tar

Refused while the daemon runs.  Before anything is replaced it checks every
member against the manifest's SHA-256, that the backup is of the node the
config names, the manifest's signature by the node's key, SQLite's integrity
check, and the audit log against its signed
heads with the node's keys (which must be in place, as the config names
them).  A store already there is replaced only with --replace, and kept
beside it as store.sqlite.replaced-<time>.""",
    )
    add_config_option(p)
    p.add_argument(
        "--from", dest="source", required=True, type=Path, metavar="FILE", help="the backup"
    )
    p.add_argument(
        "--replace", action="store_true", help="restore over a store that is there (kept aside)"
    )
