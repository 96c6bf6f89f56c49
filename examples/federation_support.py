"""The federation demo's shape and small helpers, shared by its parts.

Who is in the federation (a province, two cities, four counties, seven
departments at every level, one revoked department), how the hierarchy
routes (parent hubs, the hubs between two nodes), and the two ways the demo
talks on stderr (a log line, a rewritten progress line).  Kept apart so that
``federation.py`` (set-up, traffic, refusals, stopping) and
``federation_sharing.py`` (catalog and subscriptions) both import it and
neither imports the other's internals.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable

from exchnode.core import NATIONAL_DIVISION, parent_hub

PROVINCE = "520000"
CITIES = {"520100": ("520102", "520103"), "520300": ("520302", "520303")}
DEPARTMENTS = [
    "520000.tongji",  # province statistics bureau
    "520100.fagai",  # Guiyang development and reform commission
    "520300.jiaotong",  # Zunyi transport bureau
    "520102.gongan",  # Nanming district public security
    "520103.minzheng",  # Yunyan district civil affairs
    "520302.shebao",  # Honghuagang district social security
    "520303.weijian",  # Huichuan district health commission
]
REVOKED = "520102.tingyong"
LEVEL_NAMES = {1: "province", 2: "city", 3: "county"}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def print_rows(rows: list[tuple[str, object]]) -> None:
    """The summary's lines: a label in a column of its own, then its value."""
    for label, value in rows:
        print(f"{label:<20} {value}")


def parent_of(name: str) -> str | None:
    """The parent hub, or None at the top of this federation (the province)."""
    parent = parent_hub(name)
    return None if parent == NATIONAL_DIVISION else parent


def hubs_between(sender: str, recipient: str) -> list[str]:
    """The hubs an envelope passes: up to the lowest common ancestor, then down."""

    def ancestors(name: str) -> list[str]:
        chain: list[str] = []
        current = parent_of(name)
        while current is not None:
            chain.append(current)
            current = parent_of(current)
        return chain

    up, down = ancestors(sender), ancestors(recipient)
    common = next(h for h in up if h in down)
    return up[: up.index(common) + 1] + list(reversed(down[: down.index(common)]))


@contextlib.asynccontextmanager
async def progress(text: Callable[[], str]) -> AsyncIterator[None]:
    """Rewrite one progress line on a terminal (``text()``, five times a second) while the
    block runs."""
    stop = asyncio.Event()
    shown = asyncio.get_running_loop().create_task(_show(text, stop))
    try:
        yield
    finally:
        stop.set()
        await shown


async def _show(text: Callable[[], str], stop: asyncio.Event) -> None:
    if not sys.stderr.isatty():
        await stop.wait()
        return
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)
        sys.stderr.write(f"\r  {text()}")
        sys.stderr.flush()
    sys.stderr.write("\n")
