"""One node of a test federation, in its own process, to be killed: ``python node_child.py SPEC``.

SPEC is a JSON file: directory, names, now (ISO), ports, name, and optional
backoff (base_ms, cap_ms).  The process rebuilds the same federation as its
parent (same certificates: the synthetic PKI is deterministic), runs the
named node until killed or sent SIGTERM, and prints ``ready`` once it is
listening.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import structlog  # noqa: E402

from exchnode.federation import BackoffPolicy  # noqa: E402
from tests.integration.federation import Federation  # noqa: E402


async def main(spec_path: str) -> None:
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    spec = json.loads(Path(spec_path).read_text())
    federation = Federation(
        Path(spec["directory"]),
        spec["names"],
        now=datetime.fromisoformat(spec["now"]),
        ports=spec["ports"],
    )
    backoff = BackoffPolicy(**spec.get("backoff", {"base_ms": 50, "cap_ms": 500}))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with federation.node(spec["name"], backoff=backoff):
        print("ready", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
