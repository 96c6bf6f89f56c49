"""A relaying hub killed with SIGKILL at random moments during a flow of thousands of messages.

The sender and the receiving application run here; the county hub between
them runs in its own process (``node_child.py``) and is killed and restarted
again and again while messages flow.  The receiving application's view is
the test: every message arrives, none twice.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from exchnode.aio import Message
from exchnode.federation import BackoffPolicy
from tests.integration.federation import Federation

CHILD = Path(__file__).with_name("node_child.py")
HUB, SENDER, RECEIVER = "520102", "520102.gongan", "520102.minzheng"
MESSAGES = 3000
KILLS = 6


class HubProcess:
    def __init__(self, spec: Path) -> None:
        self.spec = spec
        self.process: subprocess.Popen[str] | None = None

    async def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(CHILD), str(self.spec)],
            stdout=subprocess.PIPE,
            text=True,
        )
        stdout = self.process.stdout
        assert stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(stdout.readline), 30)
        assert line.strip() == "ready", f"hub child said {line!r}"

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self._reap()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self._reap()

    def _reap(self) -> None:
        assert self.process is not None
        self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.mark.asyncio
@pytest.mark.timeout(180)
async def test_hub_killed_repeatedly_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    names = [HUB, SENDER, RECEIVER]
    federation = Federation(tmp_path, names)
    spec = tmp_path / "hub.json"
    spec.write_text(
        json.dumps(
            {
                "directory": str(tmp_path),
                "names": names,
                "now": federation.now.isoformat(),
                "ports": federation.ports,
                "name": HUB,
            }
        )
    )
    fast = BackoffPolicy(base_ms=50, cap_ms=500)
    hub = HubProcess(spec)
    await hub.start()
    rng = random.Random(20261123)
    received: list[tuple[str, bytes, bytes]] = []
    try:
        async with (
            federation.node(SENDER, backoff=fast) as sender,
            federation.node(RECEIVER, backoff=fast) as receiver,
        ):

            async def produce() -> None:
                for start in range(0, MESSAGES, 50):
                    batch = [
                        Message(recipients=[RECEIVER], payload=f"{i}".encode())
                        for i in range(start, min(start + 50, MESSAGES))
                    ]
                    await sender.send_many(batch)
                    await asyncio.sleep(0.01)

            async def consume() -> None:
                async for delivery in receiver.deliveries():
                    received.append((delivery.sender, delivery.message_id, delivery.payload))
                    await delivery.ack()
                    if len({r[1] for r in received}) == MESSAGES:
                        return

            async def chaos() -> None:
                for _ in range(KILLS):
                    await asyncio.sleep(rng.uniform(0.2, 1.0))
                    hub.kill()
                    await asyncio.sleep(rng.uniform(0.0, 0.5))
                    await hub.start()

            consumer = asyncio.create_task(consume())
            await asyncio.gather(produce(), chaos())
            started = time.monotonic()
            await asyncio.wait_for(consumer, 90)
            assert time.monotonic() - started < 90
    finally:
        hub.stop()

    ids = [message_id for _, message_id, _ in received]
    assert len(ids) == len(set(ids)), "the application saw a message twice"
    payloads = sorted(int(p) for _, _, p in received)
    assert payloads == list(range(MESSAGES)), "a message was lost"
    assert {s for s, _, _ in received} == {SENDER}
