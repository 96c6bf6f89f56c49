"""One node of a test federation in its own process, with limits: ``python limits_child.py SPEC``.

SPEC is a JSON file: directory, names, now (ISO), ports, name, and ``limits``
(keyword arguments of ``NodeLimits``).  The process rebuilds the same
federation as its parent (same certificates: the synthetic PKI is
deterministic), runs the named node until sent SIGTERM, prints ``ready``
once it is listening, and on SIGTERM prints the node's counters as one JSON
line before it stops.  Its own process, so that a test can read its memory
(``/proc/<pid>/status``) apart from the test's.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import structlog  # noqa: E402

from exchnode.aio import NodeLimits  # noqa: E402
from tests.integration.federation import Federation  # noqa: E402


async def main(spec_path: str) -> None:
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    spec = json.loads(Path(spec_path).read_text())
    federation = Federation.from_spec(spec)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with federation.node(spec["name"], limits=NodeLimits(**spec["limits"])) as node:
        print("ready", flush=True)
        await stop.wait()
        print(json.dumps((await node.stats()).counters), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
