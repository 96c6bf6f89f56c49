#!/usr/bin/env python3
"""A client of the peers benchmark, in its own process (driven by ``benchmarks/peers.py``).

    python benchmarks/_peers_client.py SPEC.json

Roles (``spec["role"]``):

* ``amqp-publish``: one AMQP connection to the county broker, one channel in
  publisher-confirm mode, persistent messages (``delivery_mode=2``) to the
  county's federated exchange.
* ``amqp-consume``: one connection to the province broker, ``basic.qos``
  prefetch, explicit acknowledgements (``multiple`` over what arrived in the
  last ~2 ms, as exchnode's receiver acknowledges in batches).
* ``nats-setup``: makes the JetStream streams (county: ``COUNTY`` on the
  subject; city: ``CITY`` sourcing ``COUNTY`` through ``$JS.county.API``;
  province: ``PROVINCE`` sourcing ``CITY`` through ``$JS.city.API``; all file
  storage) and the province's durable push consumer (explicit acks), then
  says ``ready`` and stops.
* ``nats-publish``: JetStream publish to the county, each message
  acknowledged by the county's stream (``publish_async``: a window of
  outstanding acks, as AMQP confirms).
* ``nats-consume``: the province's push consumer, every message acknowledged
  (``AckExplicit``).

The AMQP client is ``aiormq``, the protocol layer ``aio-pika`` is built on:
the benchmark wants the broker's cost, and every microsecond the client
spends per message is taken from the same two cores the brokers run on.
Publishers and consumers are separate processes (the driver may start
several publishers, each with its own connection), so that neither side's
Python is the other's bottleneck.

Payload, as ``relay_node.py``'s: sequence number (8 bytes, big-endian) and a
``time.monotonic()`` stamp (an IEEE double; in ``paced`` mode the *scheduled*
send time, so a late sender counts against latency), then random filler up to
the payload size.  The consumer records, for every message from its start,
the sequence number, the stamp and the time it got it.

Protocol: JSON lines on stdin (commands: ``burst``, ``paced``, ``collect``,
``cpu``, ``stop``) and stdout (events: ``ready`` first, then one answer per
command); logs on stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import resource
import struct
import sys
import time
from array import array
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

STAMP = struct.Struct(">Qd")
SUBJECT = "exchnode.bench"
DELIVER = "exchnode.bench.deliver"
DURABLE = "bench"

Publish = Callable[[bytes], Coroutine[Any, Any, None]]


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def cpu() -> dict[str, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"seconds": usage.ru_utime + usage.ru_stime, "user": usage.ru_utime}


class Recorder:
    """Every message the consumer got since it started: sequence, stamp, arrival."""

    def __init__(self) -> None:
        self.seqs: array[int] = array("q")
        self.sent: array[float] = array("d")
        self.got: array[float] = array("d")
        self.arrived = asyncio.Event()

    def record(self, body: bytes) -> None:
        now = time.monotonic()
        seq, stamp = STAMP.unpack_from(body)
        self.seqs.append(seq)
        self.sent.append(stamp)
        self.got.append(now)
        self.arrived.set()

    async def collect(self, first: int, count: int, timeout: float) -> dict[str, Any]:
        """Wait for the ``count`` messages numbered from ``first``; their records, arrival order."""
        deadline = time.monotonic() + timeout
        end = first + count
        wanted: set[int] = set()
        scanned = 0
        while True:
            seqs = self.seqs
            wanted.update(s for s in seqs[scanned:] if first <= s < end)
            scanned = len(seqs)
            if len(wanted) >= count or time.monotonic() > deadline:
                break
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), max(0.0, deadline - time.monotonic()))
        await asyncio.sleep(0.2)  # a duplicate right behind the last message is counted too
        rows = [
            (s, a, b)
            for s, a, b in zip(self.seqs, self.sent, self.got, strict=True)
            if first <= s < end
        ]
        return {
            "received": len(rows),
            "distinct": len({s for s, _, _ in rows}),
            "sent": [a for _, a, _ in rows],
            "got": [b for _, _, b in rows],
        }


# --- sending ------------------------------------------------------------------------------


def body(seq: int, stamp: float, filler: bytes) -> bytes:
    return STAMP.pack(seq, stamp) + filler


async def burst(publish: Publish, command: dict[str, Any]) -> dict[str, Any]:
    """``count`` messages as fast as confirmed: ``window`` publishes outstanding at any time."""
    first, count, size, window = (
        command["first"],
        command["count"],
        command["size"],
        command["window"],
    )
    filler = os.urandom(size - STAMP.size)
    clock = time.monotonic
    next_seq = first
    end = first + count

    async def worker() -> None:
        nonlocal next_seq
        while next_seq < end:
            seq = next_seq
            next_seq += 1
            await publish(body(seq, clock(), filler))

    began = clock()
    await asyncio.gather(*(worker() for _ in range(window)))
    return {"count": count, "started": began, "finished": clock()}


async def paced(publish: Publish, command: dict[str, Any]) -> dict[str, Any]:
    """Open loop: message *i* due at ``start + i / rate``, stamped with that due time."""
    first, rate, duration, size = (
        command["first"],
        command["rate"],
        command["duration"],
        command["size"],
    )
    count = round(rate * duration)
    filler = os.urandom(size - STAMP.size)
    clock = time.monotonic
    start = command.get("start") or clock() + 0.01
    tasks: set[asyncio.Task[None]] = set()
    sent = 0
    worst_lag = 0.0
    while sent < count:
        now = clock()
        due_until = min(count, math.floor((now - start) * rate) + 1)
        while sent < due_until:
            due = start + sent / rate
            worst_lag = max(worst_lag, now - due)
            task = asyncio.create_task(publish(body(first + sent, due, filler)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
        if sent < count:
            await asyncio.sleep(max(0.0, start + sent / rate - clock()))
    await asyncio.gather(*tasks)
    return {"count": count, "started": start, "finished": clock(), "worst_lag": worst_lag}


# --- AMQP (aiormq) ------------------------------------------------------------------------


async def amqp_publisher(spec: dict[str, Any]) -> tuple[Publish, Callable[[], Awaitable[None]]]:
    import aiormq
    from pamqp.commands import Basic

    connection = aiormq.Connection(spec["url"])
    await connection.connect()
    channel = await connection.channel(publisher_confirms=True)
    exchange = spec["exchange"]
    tag = 0

    async def publish(payload: bytes) -> None:
        nonlocal tag
        tag += 1
        # A message id of our own: aiormq otherwise draws a UUID per message.
        properties = Basic.Properties(delivery_mode=2, message_id=str(tag))
        confirmation = await channel.basic_publish(
            payload, exchange=exchange, routing_key=SUBJECT, properties=properties
        )
        if not isinstance(confirmation, Basic.Ack):
            raise RuntimeError(f"the county broker did not confirm a message: {confirmation!r}")

    return publish, connection.close


async def amqp_consumer(spec: dict[str, Any], recorder: Recorder) -> Callable[[], Awaitable[None]]:
    import aiormq
    from aiormq.abc import DeliveredMessage

    connection = aiormq.Connection(spec["url"])
    await connection.connect()
    channel = await connection.channel(publisher_confirms=False)
    await channel.basic_qos(prefetch_count=spec["prefetch"])
    last_tag = 0
    acked_tag = 0
    wake = asyncio.Event()

    async def on_message(message: DeliveredMessage) -> None:
        nonlocal last_tag
        recorder.record(message.body)
        tag = getattr(message.delivery, "delivery_tag", None)  # a Deliver's, here
        if tag is not None and tag > last_tag:
            last_tag = tag
        wake.set()

    async def acknowledge() -> None:
        nonlocal acked_tag
        while True:
            await wake.wait()
            await asyncio.sleep(0.002)  # let a batch gather; latency is taken before the ack
            wake.clear()
            if last_tag > acked_tag:
                acked_tag = last_tag
                await channel.basic_ack(acked_tag, multiple=True)

    acker = asyncio.create_task(acknowledge())
    await channel.basic_consume(SUBJECT, on_message, no_ack=False)

    async def close() -> None:
        acker.cancel()
        await asyncio.gather(acker, return_exceptions=True)
        await connection.close()

    return close


# --- NATS (nats-py) -----------------------------------------------------------------------


async def nats_setup(spec: dict[str, Any]) -> None:
    import nats
    from nats.js.api import (
        AckPolicy,
        ConsumerConfig,
        ExternalStream,
        RetentionPolicy,
        StorageType,
        StreamConfig,
        StreamSource,
    )

    urls = spec["urls"]
    upstream = {"city": ("COUNTY", "county"), "province": ("CITY", "city")}
    for level, name in (("county", "COUNTY"), ("city", "CITY"), ("province", "PROVINCE")):
        client = await nats.connect(urls[level])
        try:
            js = client.jetstream()
            config = StreamConfig(
                name=name,
                storage=StorageType.FILE,
                retention=RetentionPolicy.LIMITS,
                num_replicas=1,
            )
            if level == "county":
                config.subjects = [SUBJECT]
            else:
                source, domain = upstream[level]
                config.sources = [
                    StreamSource(name=source, external=ExternalStream(api=f"$JS.{domain}.API"))
                ]
            await js.add_stream(config)
            if level == "province":
                await js.add_consumer(
                    name,
                    ConsumerConfig(
                        durable_name=DURABLE,
                        deliver_subject=DELIVER,
                        ack_policy=AckPolicy.EXPLICIT,
                        max_ack_pending=spec["max_ack_pending"],
                    ),
                )
        finally:
            await client.close()


async def nats_publisher(spec: dict[str, Any]) -> tuple[Publish, Callable[[], Awaitable[None]]]:
    import nats

    client = await nats.connect(spec["url"], pending_size=64 * 1024 * 1024)
    js = client.jetstream(publish_async_max_pending=spec["window"])

    async def publish(payload: bytes) -> None:
        ack = await (await js.publish_async(SUBJECT, payload))
        if ack.stream != "COUNTY":
            raise RuntimeError(f"published into {ack.stream}, not COUNTY")

    return publish, client.close


async def nats_consumer(spec: dict[str, Any], recorder: Recorder) -> Callable[[], Awaitable[None]]:
    import nats
    from nats.aio.msg import Msg

    client = await nats.connect(spec["url"], pending_size=64 * 1024 * 1024)

    async def on_message(message: Msg) -> None:
        recorder.record(message.data)
        await message.ack()

    await client.subscribe(DELIVER, cb=on_message, pending_msgs_limit=1_000_000)
    return client.close


# --- the process ------------------------------------------------------------------------


async def serve(spec: dict[str, Any]) -> None:
    role = spec["role"]
    if role == "nats-setup":
        await nats_setup(spec)
        emit("ready", pid=os.getpid())
        return
    recorder = Recorder()
    publish: Publish | None = None
    if role == "amqp-publish":
        publish, close = await amqp_publisher(spec)
    elif role == "nats-publish":
        publish, close = await nats_publisher(spec)
    elif role == "amqp-consume":
        close = await amqp_consumer(spec, recorder)
    elif role == "nats-consume":
        close = await nats_consumer(spec, recorder)
    else:
        raise ValueError(f"unknown role {role!r}")
    emit("ready", pid=os.getpid())
    try:
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line:
                break
            command = json.loads(line)
            kind = command["cmd"]
            if kind == "stop":
                break
            if kind == "cpu":
                emit("cpu", **cpu())
            elif kind == "burst" and publish is not None:
                emit("sent", **await burst(publish, command))
            elif kind == "paced" and publish is not None:
                emit("sent", **await paced(publish, command))
            elif kind == "collect" and publish is None:
                emit(
                    "collected",
                    **await recorder.collect(
                        command["first"], command["count"], command["timeout"]
                    ),
                )
            else:
                emit("error", message=f"{role} cannot {kind!r}")
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(close(), 10)


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    asyncio.run(serve(spec))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
