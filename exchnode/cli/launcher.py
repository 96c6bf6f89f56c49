"""``exchnode node <verb>``, ``exchnode send|receive|catalog|sub|audit``: launch the daemon.

``exchnode simulate`` launches the simulator (``python -P -m exchnode.sim``) the
same way: it runs the asyncio edge, which the ``cli`` layer may not import.

The reference daemon is installed with the library as ``exchnode.node`` (its
source is the top-level ``node/`` folder of the repository).  The library never
imports it, and these verbs do not either: they replace this process with
``python -P -m exchnode.node <verb> <args...>``.  ``-P`` keeps the current
directory off ``sys.path``, so no ``node.py`` or ``exchnode/`` lying there can
stand in for the daemon.  Every argument, ``--help`` included, goes to the
daemon's own command line.

An installation without the daemon (the library vendored on its own) exits 2
with one line.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from exchnode.cli import Subparsers

__all__ = ["DAEMON", "daemon_command", "daemon_installed", "register"]

#: exchnode verb -> (daemon verb or None for "the next argument", help)
_VERBS: dict[str, tuple[str | None, str]] = {
    "node": (None, "the reference daemon: init, run, send, receive, status, health"),
    "send": ("send", "send a file or stdin through the local node (= exchnode node send)"),
    "receive": ("receive", "take messages from the local node (= exchnode node receive)"),
    "catalog": ("catalog", "the resource catalog through the local node (= exchnode node catalog)"),
    "sub": ("sub", "subscriptions through the local node (= exchnode node sub)"),
    "audit": ("audit", "the node's audit log: verify, records (= exchnode node audit)"),
}


DAEMON = "exchnode.node"

#: exchnode verb -> (library module run with ``python -P -m``, help): tools beside the daemon
_MODULES: dict[str, tuple[str, str]] = {
    "simulate": (
        "exchnode.sim",
        "run a whole federation of real nodes in one process on simulated time, with faults",
    ),
}


def daemon_installed() -> bool:
    """Whether the reference daemon is importable beside this library."""
    try:
        return importlib.util.find_spec(DAEMON) is not None
    except ImportError:
        return False


def daemon_command(
    verb: str | None, rest: Sequence[str], environ: dict[str, str]
) -> tuple[list[str], dict[str, str]]:
    """The argv and environment that run the daemon's ``verb`` with ``rest``."""
    argv = [sys.executable, "-P", "-m", DAEMON]
    if verb is not None:
        argv.append(verb)
    argv.extend(rest)
    env = dict(environ)
    env["EXCHNODE_PROG"] = "exchnode node" if verb is None else "exchnode"
    return argv, env


def _execve(path: str, argv: list[str], env: dict[str, str]) -> None:  # pragma: no cover
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(path, argv, env)  # noqa: S606 - our own interpreter, argv passed through


def _launcher(exchnode_verb: str) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        if not daemon_installed():
            print(
                f"exchnode: error: 'exchnode {exchnode_verb}' runs the reference daemon "
                f"({DAEMON}), which this installation does not have; install the exchnode "
                "distribution whole (pip install exchnode, or python3 dev.py in a clone)",
                file=sys.stderr,
            )
            return 2
        verb = _VERBS[exchnode_verb][0]
        argv, env = daemon_command(verb, args.rest, dict(os.environ))
        _execve(sys.executable, argv, env)
        return 0  # not reached: the daemon's exit status is the process's

    return handler


def _module_launcher(module: str) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        env = dict(os.environ)
        env["EXCHNODE_PROG"] = "exchnode"
        _execve(sys.executable, [sys.executable, "-P", "-m", module, *args.rest], env)
        return 0  # not reached: the module's exit status is the process's

    return handler


def register(groups: Subparsers) -> None:
    for verb, (_, help_text) in _VERBS.items():
        # prefix_chars that no argument uses: everything after the verb, --help included,
        # is handed to the daemon's parser unread.
        parser = groups.add_parser(verb, help=help_text, add_help=False, prefix_chars="\x00")
        parser.add_argument("rest", nargs=argparse.REMAINDER)
        parser.set_defaults(handler=_launcher(verb))
    for verb, (module, help_text) in _MODULES.items():
        parser = groups.add_parser(verb, help=help_text, add_help=False, prefix_chars="\x00")
        parser.add_argument("rest", nargs=argparse.REMAINDER)
        parser.set_defaults(handler=_module_launcher(module))
