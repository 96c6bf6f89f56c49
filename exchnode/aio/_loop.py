"""Which event loop a node's process runs on: uvloop where it is installed, else asyncio's.

uvloop (libuv under a Cython loop) runs the same protocols, transports and TLS
with less interpreter work per callback; on a hub carrying one message per
transfer, where most of the CPU is loop machinery, it cut the hub's CPU per
message by about a sixth (benchmarks/README.md, "uvloop"). It is a choice of
the process, not of the library: :func:`run` is what the daemon, the CLI and
the benchmarks call instead of :func:`asyncio.run`.

``EXCHNODE_LOOP`` overrides the choice: ``auto`` (the default: uvloop when it
imports), ``uvloop`` (required: an error when it is missing) or ``asyncio``.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from exchnode.errors import UsageError

__all__ = ["LOOP_CHOICES", "chosen_loop", "loop_factory", "loop_name", "run"]

T = TypeVar("T")

#: The values ``EXCHNODE_LOOP`` takes.
LOOP_CHOICES = ("auto", "uvloop", "asyncio")


def _choice(choice: str | None) -> str:
    wanted = (choice if choice is not None else os.environ.get("EXCHNODE_LOOP", "auto")).strip()
    if wanted not in LOOP_CHOICES:
        raise UsageError(
            f"EXCHNODE_LOOP must be one of {', '.join(LOOP_CHOICES)}, got {wanted[:32]!r}"
        )
    return wanted or "auto"


def loop_factory(choice: str | None = None) -> Callable[[], asyncio.AbstractEventLoop]:
    """The factory of the loop ``choice`` (default: ``EXCHNODE_LOOP``) names."""
    wanted = _choice(choice)
    if wanted == "asyncio":
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError:
        if wanted == "uvloop":
            raise UsageError("EXCHNODE_LOOP=uvloop but uvloop is not installed") from None
        return asyncio.new_event_loop
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def loop_name(loop: asyncio.AbstractEventLoop | None = None) -> str:
    """``uvloop`` or ``asyncio``: what the running (or given) loop is, for logs and reports."""
    current = loop if loop is not None else asyncio.get_running_loop()
    return "uvloop" if type(current).__module__.startswith("uvloop") else "asyncio"


def chosen_loop(choice: str | None = None) -> str:
    """``uvloop`` or ``asyncio``: the loop :func:`run` would start, without starting one."""
    return "asyncio" if loop_factory(choice) is asyncio.new_event_loop else "uvloop"


#: Seconds uvloop is run on after ``main`` returns, for TLS closes it began to finish.
CLOSE_GRACE = 0.1


def run(main: Coroutine[Any, Any, T], *, choice: str | None = None) -> T:
    """:func:`asyncio.run` on the chosen loop (see the module docstring).

    On uvloop, connections whose TLS close ``main`` began (a client session
    closed, a server stopped) are given :data:`CLOSE_GRACE` to finish: libuv
    refuses to close a loop with a handle still open (``EBUSY``, where
    asyncio's loop closes and warns), and a process that did its work would
    otherwise exit with an error.  One still open after that is left to the
    process's exit: the loop's own clean-up is not the caller's result.
    """
    runner = asyncio.Runner(loop_factory=loop_factory(choice))
    try:
        return runner.run(main)
    finally:
        try:
            if loop_name(runner.get_loop()) == "uvloop":
                runner.run(asyncio.sleep(CLOSE_GRACE))
            runner.close()
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise
