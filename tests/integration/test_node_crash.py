"""Nodes killed with SIGKILL at random moments during a flow of thousands of messages.

Each test runs one node of a county federation (hub ``520102`` between a
sending and a receiving department) in its own process (``node_child.py``)
and kills and restarts it again and again while messages flow: the relaying
hub, the sending department, the receiving department.  What the receiving
application saw is the test: every message the sender holds durably arrives,
none is acknowledged twice, nothing arrives that was not sent.

The plan of kills is random and reproducible: the seed is printed (pytest
shows it with a failure) and ``EXCHNODE_CRASH_SEED=n`` replays it.  The
instants are as random as the machine's timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import sqlite3
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from exchnode.aio import Message, Node
from exchnode.audit import Category, decode_record, verify_log
from exchnode.federation import BackoffPolicy
from exchnode.store import SqliteStore
from tests.integration.federation import Federation

CHILD = Path(__file__).with_name("node_child.py")
HUB, SENDER, RECEIVER = "520102", "520102.gongan", "520102.minzheng"
NAMES = [HUB, SENDER, RECEIVER]
KILLS = 6
FAST = BackoffPolicy(base_ms=50, cap_ms=500)
CATCH_UP = 90.0  # seconds for everything to arrive once the kills are over


def kill_plan() -> tuple[int, random.Random]:
    """This run's seed (printed: ``EXCHNODE_CRASH_SEED`` replays it) and the generator of
    its kills."""
    seed = int(os.environ.get("EXCHNODE_CRASH_SEED") or random.randrange(1 << 32))
    print(f"kill plan: EXCHNODE_CRASH_SEED={seed}")
    return seed, random.Random(seed)


async def send_until(sender: Node, done: asyncio.Event, *, batch: int, pause: float) -> int:
    """Numbered messages to the receiver, ``batch`` at a time, until ``done``; how many.

    A flow that lasts through every kill: the payloads are 0, 1, ... so that what
    arrives can be checked against what was sent, each held by the sender's node
    once ``send_many`` returned.
    """
    sent = 0
    while not done.is_set():
        numbers = range(sent, sent + batch)
        await sender.send_many(
            [Message(recipients=[RECEIVER], payload=f"{i}".encode()) for i in numbers]
        )
        sent += batch
        await asyncio.sleep(pause)
    return sent


class Child:
    """One node in a child process; each line it prints goes to ``on_line``."""

    def __init__(self, spec: Path, on_line: Callable[[str], None] = lambda line: None) -> None:
        self.spec = spec
        self.on_line = on_line
        self.process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self, **changes: Any) -> None:
        if changes:
            self.spec.write_text(json.dumps({**json.loads(self.spec.read_text()), **changes}))
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, str(CHILD), str(self.spec), stdout=asyncio.subprocess.PIPE
        )
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), 30)
        assert line.strip() == b"ready", f"the child said {line!r}"
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            self.on_line(line.decode().strip())

    async def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        await self._reap()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self._reap()

    async def _reap(self) -> None:
        assert self.process is not None
        await asyncio.wait_for(self.process.wait(), 10)
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 10)  # every line printed before the kill


def delivered_on_record(federation: Federation, name: str) -> Counter[str]:
    """Message id (hex) -> how many times the stopped node's verified audit log says it
    handed it to the application and had it acknowledged (``deliver``/``delivered``)."""
    with SqliteStore(federation.directory / f"{name}.sqlite") as store:
        records = store.audit_records(0, 1_000_000)
        report = verify_log(name, records, store.tree_heads(), federation.shared_directory)
    assert report.ok, report.findings
    out: Counter[str] = Counter()
    for _, data in records:
        entry = decode_record(data).entry
        if entry.category is Category.ENVELOPE and entry.outcome.code == "delivered":
            for message_id in entry.get("messages") or ():  # type: ignore[union-attr]
                out[message_id.hex()] += 1  # type: ignore[union-attr]
    return out


def queued_at(store: Path) -> int:
    """How many copies a killed node's store holds for its neighbours (read after the kill)."""
    with contextlib.closing(sqlite3.connect(store)) as conn:
        (count,) = conn.execute("SELECT count(*) FROM outbound").fetchone()
    return int(count)


@pytest.mark.asyncio
@pytest.mark.timeout(240)
async def test_hub_killed_repeatedly_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    seed, rng = kill_plan()
    federation = Federation(tmp_path, NAMES)
    hub = Child(federation.child_spec(HUB))
    await hub.start()
    received: list[tuple[str, bytes, bytes]] = []
    held_at_kill: list[int] = []
    chaos_over = asyncio.Event()
    sent = 0
    try:
        async with (
            federation.node(SENDER, backoff=FAST) as sender,
            federation.node(RECEIVER, backoff=FAST) as receiver,
        ):

            async def consume() -> None:
                async for delivery in receiver.deliveries():
                    received.append((delivery.sender, delivery.message_id, delivery.payload))
                    await delivery.ack()

            async def chaos() -> None:
                for _ in range(KILLS):
                    await asyncio.sleep(rng.uniform(0.3, 1.0))
                    await hub.kill()
                    held_at_kill.append(queued_at(tmp_path / f"{HUB}.sqlite"))
                    await asyncio.sleep(rng.uniform(0.0, 0.5))
                    await hub.start()
                chaos_over.set()

            consumer = asyncio.create_task(consume())
            flow = send_until(sender, chaos_over, batch=50, pause=0.01)
            sent, _ = await asyncio.gather(flow, chaos())
            await wait_until(lambda: len({r[1] for r in received}) >= sent, CATCH_UP)
            consumer.cancel()
    finally:
        await hub.stop()

    where = f"(EXCHNODE_CRASH_SEED={seed}, held at each kill: {held_at_kill})"
    # A kill must have landed while the hub held messages, or the test tested nothing.
    assert any(held_at_kill), f"every kill missed the flow {where}"
    ids = [message_id for _, message_id, _ in received]
    assert len(ids) == len(set(ids)), f"the application saw a message twice {where}"
    assert sorted(int(p) for _, _, p in received) == list(range(sent)), f"lost {where}"
    assert {s for s, _, _ in received} == {SENDER}


@pytest.mark.asyncio
@pytest.mark.timeout(240)
async def test_receiver_killed_between_delivery_and_ack_sees_each_message_acked_once(
    tmp_path: Path,
) -> None:
    seed, rng = kill_plan()
    federation = Federation(tmp_path, NAMES)
    got: list[tuple[str, int]] = []
    acked: Counter[str] = Counter()
    after_ack: list[str] = []

    def on_line(line: str) -> None:
        verb, message_id, *rest = line.split()
        if verb == "got":
            if acked[message_id]:
                after_ack.append(message_id)  # delivered again after its ack returned
            got.append((message_id, int(rest[0])))
        elif verb == "acked":
            acked[message_id] += 1

    spec = federation.child_spec(RECEIVER, role="receive", audit=True)
    receiver = Child(spec, on_line)
    chaos_over = asyncio.Event()
    sent = 0
    try:
        async with (
            federation.node(HUB, backoff=FAST),
            federation.node(SENDER, backoff=FAST) as sender,
        ):
            await receiver.start()

            async def chaos() -> None:
                for _ in range(KILLS):
                    await asyncio.sleep(rng.uniform(0.3, 1.0))
                    await receiver.kill()
                    await asyncio.sleep(rng.uniform(0.0, 0.5))
                    await receiver.start()
                chaos_over.set()

            flow = send_until(sender, chaos_over, batch=25, pause=0.02)
            sent, _ = await asyncio.gather(flow, chaos())
            # Each message is got, then acked; a kill between the ack's commit and the
            # "acked" line leaves it acknowledged without the line, so the test waits
            # for every message to be got and for the node's inbox to be empty.
            await wait_until(
                lambda: len({payload for _, payload in got}) >= sent and len(acked) >= sent - KILLS,
                CATCH_UP,
                lambda: f"sent {sent}, got {len(got)}, acked {len(acked)} (seed {seed})",
            )
    finally:
        await receiver.stop()

    where = f"(EXCHNODE_CRASH_SEED={seed})"
    assert not after_ack, f"delivered again after an acknowledgement {where}: {after_ack[:5]}"
    assert all(n == 1 for n in acked.values()), f"acknowledged twice {where}"
    ids = {payload: message_id for message_id, payload in got}
    assert sorted(ids) == list(range(sent)), f"lost before delivery {where}"
    # The receiving node's own record: each message delivered to the application (its
    # acknowledgement committed) exactly once, and none left in its inbox.
    delivered = delivered_on_record(federation, RECEIVER)
    assert {ids[p] for p in range(sent)} == set(delivered), f"not acknowledged {where}"
    assert set(delivered.values()) == {1}, f"acknowledged twice on the record {where}"


@pytest.mark.asyncio
@pytest.mark.timeout(240)
async def test_sender_killed_mid_flow_delivers_everything_it_held_once(tmp_path: Path) -> None:
    seed, rng = kill_plan()
    federation = Federation(tmp_path, NAMES)
    batch, total = 20, 100_000
    confirmed: set[int] = set()  # numbers whose send_many returned: the node holds them
    in_doubt: set[int] = set()  # sent when the process died: held or not, never twice
    last = -1

    def on_line(line: str) -> None:
        nonlocal last
        verb, first, end = line.split()
        assert verb == "sent"
        confirmed.update(range(int(first), int(end) + 1))
        last = int(end)

    spec = federation.child_spec(
        SENDER, role="send", to=RECEIVER, start=0, count=total, batch=batch
    )
    sender = Child(spec, on_line)
    received: list[tuple[bytes, int]] = []
    try:
        async with (
            federation.node(HUB, backoff=FAST),
            federation.node(RECEIVER, backoff=FAST) as receiver,
        ):

            async def consume() -> None:
                async for delivery in receiver.deliveries():
                    received.append((delivery.message_id, int(delivery.payload)))
                    await delivery.ack()

            consumer = asyncio.create_task(consume())
            await sender.start()
            for kill in range(KILLS):
                await asyncio.sleep(rng.uniform(0.3, 1.0))
                await sender.kill()
                # The batch after the last one confirmed may or may not have been stored:
                # a client without an answer does not know (it is not sent again here).
                in_doubt.update(range(last + 1, last + 1 + batch))
                last += batch
                await asyncio.sleep(rng.uniform(0.0, 0.5))
                # After the last kill it sends nothing more and forwards what it holds.
                await sender.start(start=last + 1 if kill < KILLS - 1 else total)
            await wait_until(lambda: confirmed <= {n for _, n in received}, CATCH_UP)
            consumer.cancel()
    finally:
        await sender.stop()

    where = f"(EXCHNODE_CRASH_SEED={seed})"
    numbers = [n for _, n in received]
    assert len(confirmed) > KILLS * batch, f"the flow was too short to test anything {where}"
    assert len(numbers) == len(set(numbers)), f"a message arrived twice {where}"
    assert len({m for m, _ in received}) == len(received), f"an id arrived twice {where}"
    assert confirmed <= set(numbers), f"lost {sorted(confirmed - set(numbers))[:5]} {where}"
    assert set(numbers) <= confirmed | in_doubt, f"arrived but never sent {where}"


async def wait_until(
    condition: Callable[[], bool], timeout: float, state: Callable[[], str] = str
) -> None:
    """Wait for ``condition``; fail naming the time limit and ``state()`` if it does not come."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"not reached within {timeout} s: {state()}")
        await asyncio.sleep(0.05)
