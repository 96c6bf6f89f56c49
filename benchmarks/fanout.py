#!/usr/bin/env python3
"""Fan-out: one provider publishing records to 1, 10 and 100 subscribers across the hierarchy.

    python3 dev.py bench fanout [--json] [--records N] [--subscribers 1,10,100] [--out DIR]

A federation of real nodes on loopback -- province 520000, cities 520100 and
520300, four counties, the provider ``520102.gongan`` and 100 subscribing
departments spread over every county, city and the province -- each node
with its own SQLite store (WAL, synchronous=FULL) and mutual TLS to its
neighbours, all in this one process (one event loop, one core for Python;
each node's store runs in its own thread).

The provider catalogues one unconditional resource per run; the run's
subscribers find it through catalog sync, subscribe and are granted.  Then the
provider publishes ``--records`` records (in batches of 100) and every
subscriber takes them off its node (``read_records``, then acknowledge).
Measured per run:

* **records/s delivered**: records × subscribers, over the time from the first
  publication to the last record read by the last subscriber;
* **bytes per link**: what each link carried (``NodeStats.handed_over``), and
  the most copies of one ``sub.records`` body any link carried.  Subscribers
  with the same grant share one body and one envelope, so every link carries
  each body once however many subscribers lie beyond it: ``max copies/link``
  is 1 and the provider's uplink carries the same bytes for 1 or 100
  subscribers.

``--json`` ends the output with one JSON object on its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import structlog

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the in-process federation builder of the test suite

from exchnode.aio import RECORDS_KIND, CatalogService, Node, SharingService  # noqa: E402
from exchnode.catalog import (  # noqa: E402
    CatalogEntry,
    DataItem,
    DataType,
    ResourceFormat,
    ShareMethod,
    ShareType,
    UpdateCycle,
)
from exchnode.sharing import RequestState  # noqa: E402
from exchnode.store import QueueDepth  # noqa: E402
from tests.integration.federation import Federation  # noqa: E402

PROVIDER = "520102.gongan"
HUBS = ["520000", "520100", "520300", "520102", "520103", "520302", "520303"]
WHERE = ["520102", "520103", "520302", "520303", "520100", "520300", "520000"]  # subscribers
BATCH = 100
WAIT = 120.0


def subscriber_names(count: int) -> list[str]:
    """``count`` departments spread round-robin over every county, city and the province."""
    return [f"{WHERE[i % len(WHERE)]}.s{i:03d}" for i in range(count)]


def resource(sequence: int) -> CatalogEntry:
    return CatalogEntry(
        provider=PROVIDER,
        code=f"101001/{sequence:06d}",
        classification="101001",
        name=f"人口变动记录 {sequence}",
        provider_code="11520102MB1234567X",
        summary="户籍人口的增量变动 population register changes",
        format=ResourceFormat.DATABASE,
        data_items=(
            DataItem("身份证号", DataType.CHARACTER),
            DataItem("姓名", DataType.CHARACTER),
            DataItem("变动类型", DataType.CHARACTER),
            DataItem("变动日期", DataType.DATE),
            DataItem("备注", DataType.MEMO),
        ),
        share_type=ShareType.UNCONDITIONAL,
        share_methods=frozenset({ShareMethod.SUBSCRIPTION_PUSH}),
        update_cycle=UpdateCycle.REAL_TIME,
        publish_date=date(2026, 11, 1),
    )


def record(seq: int) -> dict[str, Any]:
    return {
        "身份证号": f"5201021990{seq % 10000:04d}{seq % 9999:04d}",
        "姓名": "张三" if seq % 2 else "李四",
        "变动类型": "迁入",
        "变动日期": "2026-11-23",
        "备注": "x" * 200,
    }


class World:
    """Every node with a catalog and a sharing service, all in this process."""

    def __init__(self, directory: Path, subscribers: list[str]) -> None:
        self.names = [*HUBS, PROVIDER, *subscribers]
        self.federation = Federation(directory, self.names)
        self.nodes: dict[str, Node] = {}
        self.catalogs: dict[str, CatalogService] = {}
        self.sharing: dict[str, SharingService] = {}

    async def start(self) -> None:
        for name in self.names:
            catalog = CatalogService(refresh=300.0)
            sharing = SharingService(catalog, masking_secret=name.encode().ljust(32, b"k"))
            node = self.federation.node(name, services=[catalog, sharing])
            await node.start()
            self.nodes[name], self.catalogs[name], self.sharing[name] = node, catalog, sharing

    async def close(self) -> None:
        for node in self.nodes.values():
            await node.close()

    async def links(self) -> dict[tuple[str, str], QueueDepth]:
        out: dict[tuple[str, str], QueueDepth] = {}
        for name, node in self.nodes.items():
            for neighbour, carried in (await node.stats()).handed_over.items():
                out[(name, neighbour)] = carried
        return out


async def settled_links(
    world: World, before: dict[tuple[str, str], QueueDepth], envelopes: int
) -> dict[tuple[str, str], QueueDepth]:
    """What each link had carried once the provider's uplink counts every envelope it sent.

    A hop may send an envelope on before its own commit returns (cut-through), so a
    subscriber can have a record before the hop below counts its handover: read too
    early, the uplink would look short and every other link fuller than it.
    """
    deadline = time.monotonic() + 10
    while True:
        after = await world.links()
        uplink = after.get((PROVIDER, "520102"), QueueDepth()).count
        if uplink - before.get((PROVIDER, "520102"), QueueDepth()).count >= envelopes:
            return after
        if time.monotonic() > deadline:
            return after  # reported as it is: the ratio will show it
        await asyncio.sleep(0.02)


async def subscribe(world: World, code: str, subscribers: list[str]) -> None:
    await asyncio.gather(
        *(world.catalogs[s].wait_for(PROVIDER, code, timeout=WAIT) for s in subscribers)
    )
    ids = await asyncio.gather(
        *(
            world.sharing[s].subscribe(
                PROVIDER,
                code,
                purpose="人口变动同步",
                scope="本部门业务",
                items=["身份证号", "姓名", "变动类型", "变动日期", "备注"],
                operator="bench",
            )
            for s in subscribers
        )
    )
    await asyncio.gather(
        *(
            world.sharing[s].wait_state(request_id, RequestState.GRANTED, timeout=WAIT)
            for s, request_id in zip(subscribers, ids, strict=True)
        )
    )


async def consume(world: World, name: str, code: str, count: int) -> float:
    """Read and acknowledge ``count`` records of ``code``; when the last arrived."""
    node, sharing = world.nodes[name], world.sharing[name]
    seen: set[int] = set()
    async for delivery in node.deliveries():
        if delivery.kind == RECORDS_KIND:
            received = await sharing.read_records(delivery)
            if received.resource_code == code:
                seen.update(seq for seq, _ in received.records)
        await delivery.ack()
        if len(seen) >= count:
            return time.monotonic()
    raise RuntimeError(f"{name} stopped after {len(seen)} of {count} records")


async def one_run(
    world: World, sequence: int, subscribers: list[str], records: int
) -> dict[str, Any]:
    provider = world.sharing[PROVIDER]
    (entry,) = await world.catalogs[PROVIDER].publish([resource(sequence)])
    await subscribe(world, entry.code, subscribers)
    before = await world.links()
    readers = [
        asyncio.create_task(consume(world, name, entry.code, records)) for name in subscribers
    ]
    started = time.monotonic()
    envelopes = 0
    for first in range(0, records, BATCH):
        batch = [record(seq) for seq in range(first, min(first + BATCH, records))]
        envelopes += (await provider.publish_records(entry.code, batch)).envelopes
    finished = max(await asyncio.wait_for(asyncio.gather(*readers), WAIT))
    seconds = finished - started
    after = await settled_links(world, before, envelopes)
    carried = {
        link: QueueDepth(
            after[link].count - before.get(link, QueueDepth()).count,
            after[link].bytes - before.get(link, QueueDepth()).bytes,
        )
        for link in after
    }
    carried = {link: depth for link, depth in carried.items() if depth.count}
    uplink = carried.get((PROVIDER, "520102"), QueueDepth())
    # Other traffic (subscription answers, receipts) is small and counted too; records
    # envelopes dominate. A link carrying more envelopes than the provider sent would
    # mean a body travelled it twice.
    most = max(depth.count for depth in carried.values())
    return {
        "subscribers": len(subscribers),
        "records": records,
        "seconds": round(seconds, 3),
        "records_per_s_delivered": round(records * len(subscribers) / seconds, 1),
        "records_per_s_published": round(records / seconds, 1),
        "envelopes_published": envelopes,
        "links_used": len(carried),
        "uplink_envelopes": uplink.count,
        "uplink_bytes": uplink.bytes,
        "total_link_bytes": sum(d.bytes for d in carried.values()),
        "max_copies_per_link": round(most / max(uplink.count, 1), 2),
    }


def table(rows: Sequence[dict[str, Any]]) -> str:
    head = (
        f"{'subscribers':>11} {'records':>8} {'seconds':>8} {'delivered/s':>12} "
        f"{'envelopes':>9} {'links':>6} {'uplink bytes':>13} {'all links bytes':>16} "
        f"{'max copies/link':>15}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['subscribers']:>11} {r['records']:>8} {r['seconds']:>8.2f} "
            f"{r['records_per_s_delivered']:>12,.0f} {r['envelopes_published']:>9} "
            f"{r['links_used']:>6} {r['uplink_bytes']:>13,} {r['total_link_bytes']:>16,} "
            f"{r['max_copies_per_link']:>15}"
        )
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    sizes = sorted(int(x) for x in args.subscribers.split(","))
    everyone = subscriber_names(max(sizes))
    with tempfile.TemporaryDirectory(prefix="exchnode-fanout-") as tmp:
        world = World(Path(tmp), everyone)
        started = time.monotonic()
        print(f"starting {len(world.names)} nodes in one process ...", file=sys.stderr)
        await world.start()
        print(f"  up in {time.monotonic() - started:.1f} s", file=sys.stderr)
        rows = []
        try:
            for sequence, size in enumerate(sizes, start=1):
                print(f"run: {size} subscriber(s), {args.records} records ...", file=sys.stderr)
                rows.append(await one_run(world, sequence, everyone[:size], args.records))
        finally:
            await world.close()
    return {
        "benchmark": "fanout",
        "python": platform.python_version(),
        "process": "one process, one event loop; every node its own SQLite store and TLS",
        "record_bytes": len(json.dumps(record(0), ensure_ascii=False).encode()),
        "batch": BATCH,
        "rows": rows,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="end with one JSON object")
    parser.add_argument("--records", type=int, default=1000, help="records per run")
    parser.add_argument("--subscribers", default="1,10,100", help="subscriber counts")
    parser.add_argument("--out", type=Path, help="write fanout.json here too")
    parser.add_argument("--quick", action="store_true", help="tiny run (a smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.records, args.subscribers = 50, "1,3"
    if args.records < 1:
        parser.error("--records must be at least 1")
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    try:
        result = asyncio.run(main_async(args))
    except (RuntimeError, TimeoutError) as exc:
        print(f"fanout: error: {exc}", file=sys.stderr)
        return 1
    print(table(result["rows"]))
    print(
        "\ndelivered/s: records x subscribers over first publication to last record read. "
        "max copies/link: envelopes on the busiest link / envelopes the provider sent "
        "(1 = one copy per link)."
    )
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "fanout.json").write_text(json.dumps(result, indent=1, ensure_ascii=False))
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main(sys.argv[1:]))
