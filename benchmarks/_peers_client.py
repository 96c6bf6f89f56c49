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

Payload, as ``relay_node.py``'s (``_common``): sequence number and a
``time.monotonic()`` stamp (in ``paced`` mode the *scheduled* send time, so a
late sender counts against latency), then random filler up to the payload
size.  The consumer records, for every message from its start,
the sequence number, the stamp and the time it got it.

Protocol: JSON lines on stdin (commands: ``burst``, ``paced``, ``collect``,
``cpu``, ``stop``) and stdout (events: ``ready`` first, then one answer per
command); logs on stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from _common import STAMP, Arrivals, burst, commands, emit, paced, stamped

SUBJECT = "exchnode.bench"
DELIVER = "exchnode.bench.deliver"
DURABLE = "bench"

Publish = Callable[[bytes], Coroutine[Any, Any, None]]


def cpu() -> dict[str, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"seconds": usage.ru_utime + usage.ru_stime, "user": usage.ru_utime}


# --- sending ------------------------------------------------------------------------------


async def burst_publish(publish: Publish, command: dict[str, Any]) -> dict[str, Any]:
    """``count`` messages as fast as confirmed: ``window`` publishes outstanding at any time."""
    filler = os.urandom(command["size"] - STAMP.size)

    async def send(seqs: range, stamp: float) -> None:
        await publish(stamped(seqs[0], stamp, filler))

    return await burst(send, command["first"], command["count"], window=command["window"])


async def paced_publish(publish: Publish, command: dict[str, Any]) -> dict[str, Any]:
    """Open loop: message *i* due at ``start + i / rate``, stamped with that due time."""
    filler = os.urandom(command["size"] - STAMP.size)

    def send(seq: int, due: float) -> Coroutine[Any, Any, None]:
        return publish(stamped(seq, due, filler))

    return await paced(
        send, command["first"], command["rate"], command["duration"], command.get("start")
    )


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


async def amqp_consumer(spec: dict[str, Any], recorder: Arrivals) -> Callable[[], Awaitable[None]]:
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
        recorder.record(message.body, time.monotonic())
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


async def nats_consumer(spec: dict[str, Any], recorder: Arrivals) -> Callable[[], Awaitable[None]]:
    import nats
    from nats.aio.msg import Msg

    client = await nats.connect(spec["url"], pending_size=64 * 1024 * 1024)

    async def on_message(message: Msg) -> None:
        recorder.record(message.data, time.monotonic())
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
    recorder = Arrivals()
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
        async for command in commands():
            kind = command["cmd"]
            if kind == "cpu":
                emit("cpu", **cpu())
            elif kind == "burst" and publish is not None:
                emit("sent", **await burst_publish(publish, command))
            elif kind == "paced" and publish is not None:
                emit("sent", **await paced_publish(publish, command))
            elif kind == "collect" and publish is None:
                emit(
                    "collected",
                    **await recorder.collect(
                        command["first"], command["count"], command["timeout"], settle=0.2
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
