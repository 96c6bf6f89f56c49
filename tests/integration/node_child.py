"""One node of a test federation, in its own process, to be killed: ``python node_child.py SPEC``.

SPEC is a JSON file: directory, names, now (ISO), ports, name, optional
backoff (base_ms, cap_ms), and optional ``role``:

* ``relay`` (the default): run the node until killed or sent SIGTERM;
* ``send``: send ``count`` messages to ``to``, from number ``start`` on, in
  batches of ``batch``, and print ``sent FIRST LAST`` once each batch's
  ``send_many`` has returned (the node holds them durably from then on);
* ``receive``: print ``got ID PAYLOAD`` for each delivery, acknowledge it,
  and print ``acked ID`` once the acknowledgement has returned.

With ``audit`` true the node keeps its audit log (custody on the record).

The process rebuilds the same federation as its parent (same certificates:
the synthetic PKI is deterministic) and prints ``ready`` once it is
listening.  A line is printed (and flushed) only after what it reports has
happened, so the parent's view after a SIGKILL is never ahead of the node's.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import structlog  # noqa: E402

from exchnode.aio import AuditService, Message, Node  # noqa: E402
from exchnode.federation import BackoffPolicy  # noqa: E402
from tests.integration.federation import Federation  # noqa: E402


def say(line: str) -> None:
    print(line, flush=True)


async def send(node: Node, spec: dict[str, Any]) -> None:
    start, count, size = spec["start"], spec["count"], spec.get("batch", 20)
    for first in range(start, count, size):
        last = min(first + size, count) - 1
        batch = [
            Message(recipients=[spec["to"]], payload=str(i).encode())
            for i in range(first, last + 1)
        ]
        await node.send_many(batch)
        say(f"sent {first} {last}")
        await asyncio.sleep(spec.get("pause", 0.01))


async def receive(node: Node) -> None:
    async for delivery in node.deliveries():
        say(f"got {delivery.message_id.hex()} {delivery.payload.decode()}")
        await delivery.ack()
        say(f"acked {delivery.message_id.hex()}")


async def main(spec_path: str) -> None:
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    spec = json.loads(Path(spec_path).read_text())
    federation = Federation.from_spec(spec)
    backoff = BackoffPolicy(**spec.get("backoff", {"base_ms": 50, "cap_ms": 500}))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    services = [AuditService(flush=0.05, head_interval=0.2)] if spec.get("audit") else []
    async with federation.node(spec["name"], backoff=backoff, services=services) as node:
        say("ready")
        role = spec.get("role", "relay")
        work = None
        if role == "send":
            work = asyncio.create_task(send(node, spec))
        elif role == "receive":
            work = asyncio.create_task(receive(node))
        await stop.wait()
        if work is not None:
            work.cancel()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
