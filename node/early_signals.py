"""A hub's worker told to stop while it is still starting: remembered, not fatal.

Worker 0 starts its workers and, when it drains, sends each SIGTERM.  A
worker still importing and connecting has no handler yet, and SIGTERM's
default ends it at once: worker 0 then sees a worker killed by a signal and
exits 1 for a drain that lost nothing (``systemctl restart`` just after a
start did it).  So ``python -m exchnode.node run --worker`` installs this
first thing, before the daemon's imports: SIGTERM and SIGINT are only
remembered until the worker's loop takes them over, and the worker then
drains (at once) as if they had come a moment later.
"""

from __future__ import annotations

import signal
from types import FrameType

__all__ = ["install", "stop_asked"]

#: the signals that arrived before the worker's loop handled them
stop_asked: list[int] = []


def _remember(signum: int, frame: FrameType | None) -> None:
    stop_asked.append(signum)


def install() -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _remember)
