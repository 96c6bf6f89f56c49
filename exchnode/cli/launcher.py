"""``exchnode node <verb>``, ``exchnode send|receive|catalog|sub|audit``: launch the daemon.

The daemon is not part of the installed library: it lives in ``node/`` of the
exchnode source tree, next to the ``exchnode`` package (an editable install,
as ``dev.py`` makes, keeps them side by side).  These verbs do not import it.
They find that directory and replace this process with
``python -m node <verb> <args...>``, the source tree first on ``PYTHONPATH``.
Every argument, ``--help`` included, goes to the daemon's own command line.

Without a ``node/`` beside the package (a wheel installed from an index),
they exit 2 with one line saying where the daemon lives.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import exchnode

if TYPE_CHECKING:
    from exchnode.cli import Subparsers

__all__ = ["daemon_command", "register", "source_tree"]

#: exchnode verb -> (daemon verb or None for "the next argument", help)
_VERBS: dict[str, tuple[str | None, str]] = {
    "node": (None, "the reference daemon: init, run, send, receive, status, health (node/)"),
    "send": ("send", "send a file or stdin through the local node (= exchnode node send)"),
    "receive": ("receive", "take messages from the local node (= exchnode node receive)"),
    "catalog": ("catalog", "the resource catalog through the local node (= exchnode node catalog)"),
    "sub": ("sub", "subscriptions through the local node (= exchnode node sub)"),
    "audit": ("audit", "the node's audit log: verify, records (= exchnode node audit)"),
}


def source_tree() -> Path | None:
    """The directory holding ``node/`` next to the ``exchnode`` package, if there is one."""
    root = Path(exchnode.__file__).resolve().parent.parent
    if (root / "node" / "__main__.py").is_file():
        return root
    return None


def daemon_command(
    verb: str | None, rest: Sequence[str], root: Path, environ: dict[str, str]
) -> tuple[list[str], dict[str, str]]:
    """The argv and environment that run the daemon's ``verb`` with ``rest``."""
    argv = [sys.executable, "-m", "node"]
    if verb is not None:
        argv.append(verb)
    argv.extend(rest)
    env = dict(environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), environ.get("PYTHONPATH")]))
    env["EXCHNODE_PROG"] = "exchnode node" if verb is None else "exchnode"
    return argv, env


def _execve(path: str, argv: list[str], env: dict[str, str]) -> None:  # pragma: no cover
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(path, argv, env)  # noqa: S606 - our own interpreter, argv passed through


def _launcher(exchnode_verb: str) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        root = source_tree()
        if root is None:
            print(
                f"exchnode: error: 'exchnode {exchnode_verb}' runs the reference daemon, which "
                "lives in node/ of the exchnode source tree (a git clone, installed with "
                "'python3 dev.py'); this installation has no node/ next to "
                f"{Path(exchnode.__file__).resolve().parent}",
                file=sys.stderr,
            )
            return 2
        verb = _VERBS[exchnode_verb][0]
        argv, env = daemon_command(verb, args.rest, root, dict(os.environ))
        _execve(sys.executable, argv, env)
        return 0  # not reached: the daemon's exit status is the process's

    return handler


def register(groups: Subparsers) -> None:
    for verb, (_, help_text) in _VERBS.items():
        # prefix_chars that no argument uses: everything after the verb, --help included,
        # is handed to the daemon's parser unread.
        parser = groups.add_parser(verb, help=help_text, add_help=False, prefix_chars="\x00")
        parser.add_argument("rest", nargs=argparse.REMAINDER)
        parser.set_defaults(handler=_launcher(verb))
