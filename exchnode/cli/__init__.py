"""The ``exchnode`` command: one argparse tree, one error policy.

Theory of operation
-------------------
Each command group is a module exposing ``register(subparsers)``; it adds its
sub-commands and sets ``handler`` (``Namespace -> int``) on each.  Adding a
group is adding its module name to :data:`COMMAND_GROUPS`.

The error policy lives here, once: an :class:`~exchnode.errors.ExchnodeError`
or an ``OSError`` becomes ONE line ``exchnode: error: <message>`` on stderr and
exit status 1 -- never a traceback; argparse reports usage errors itself
(status 2).  Rejections (a revoked certificate, say) also name the stable error
code in brackets, so scripts can match on it.  Nothing here prints a secret:
passphrases only ever come from a file or a prompt and are not echoed.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import TypeAlias

from exchnode.errors import ExchnodeError, RejectedError

__all__ = ["COMMAND_GROUPS", "Subparsers", "build_parser", "main"]

#: Modules that each add one command group (``exchnode <group> <verb>``).
COMMAND_GROUPS: tuple[str, ...] = (
    "exchnode.cli.pki",
    "exchnode.cli.envelope",
    "exchnode.cli.launcher",
    "exchnode.cli.completion",
)

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Handler: TypeAlias = Callable[[argparse.Namespace], int]


def _version() -> str:
    try:
        return metadata.version("exchnode")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exchnode",
        description="exchnode: signed, end-to-end encrypted exchange between government "
        "front-end nodes and hubs.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'exchnode <group> --help' for the verbs of a group.",
    )
    parser.add_argument("--version", action="version", version=f"exchnode {_version()}")
    groups = parser.add_subparsers(title="command groups", metavar="GROUP")
    groups.required = True
    for module_name in COMMAND_GROUPS:
        importlib.import_module(module_name).register(groups)
    return parser


def _one_line(message: str) -> str:
    return " ".join(message.split())


def _describe(exc: BaseException) -> str:
    if isinstance(exc, RejectedError):
        return f"{exc} [{exc.code}]"
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or exc}{where}"
    return str(exc)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except (ExchnodeError, OSError) as exc:
        print(f"exchnode: error: {_one_line(_describe(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("exchnode: interrupted", file=sys.stderr)
        return 130
