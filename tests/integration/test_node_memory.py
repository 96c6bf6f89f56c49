"""Memory per neighbour is bounded: concurrent maximum-size transfers are pushed back, not buffered.

Issue 12, item 4: sixteen concurrent 60 MiB transfers from one neighbour took a
hub from 61 MiB to 1.1 GiB, because aiohttp reads every request's whole body
before its handler runs.  Now the link server reserves each request's size
against ``NodeLimits.max_inflight_bytes_per_neighbour`` and
``max_inflight_bytes`` before it reads a byte; what does not fit is answered
HTTP 429, unread.  The hub runs in its own process here, so that its peak
memory (``VmHWM``) is its own; the sender makes sixteen maximum-size transfers
at once, each on its own connection, and retries what was pushed back until
every one is TAKEN.  The hub's peak stays within the documented bound (about
8 x ``max_inflight_bytes`` above where it started; without the bound it grew
by 643 MiB here), and everything it took is in its store.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchnode.aio import LinkClient, make_context
from exchnode.aio._transport import LinkBusy
from exchnode.core import Outgoing, Sealer
from exchnode.federation import Item, PeerState, Status, TransferRequest
from exchnode.store import SqliteStore
from tests.integration.federation import Federation

CHILD = Path(__file__).with_name("limits_child.py")
HUB, GONGAN, MINZHENG = "520102", "520102.gongan", "520102.minzheng"
MIB = 1024 * 1024
TRANSFERS = 16
MAX_TRANSFER = 16 * MIB
LIMITS = {
    "max_transfer_bytes": MAX_TRANSFER,
    "max_inflight_bytes_per_neighbour": MAX_TRANSFER,
    "max_inflight_bytes": 2 * MAX_TRANSFER,
}
#: The documented bound (NodeLimits): receiving costs a multiple of the bytes in flight
#: (decoding and verifying copy an envelope several times, the store's cache fills), about
#: 8 x max_inflight_bytes above the idle footprint, however many transfers arrive at once.
BOUND = 8 * LIMITS["max_inflight_bytes"]


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of process ``pid``, in bytes."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024  # kB
    return values


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[Federation, subprocess.Popen[str]]]:
    names = [HUB, GONGAN, MINZHENG]
    federation = Federation(tmp_path, names)
    # The hub's recipient is down and not due for an hour: what the hub holds in memory is
    # what it receives, not what it would forward.
    with SqliteStore(tmp_path / f"{HUB}.sqlite") as store:
        later = int(time.time() * 1000) + 3_600_000
        store.set_peer_state(MINZHENG, PeerState(failures=10, next_attempt_ms=later))
    spec = federation.child_spec(HUB, limits=LIMITS)
    process = subprocess.Popen(
        [sys.executable, str(CHILD), str(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # the child prints "ready" once it listens
        assert line.strip() == "ready", f"hub child said {line!r}"
        yield federation, process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


@pytest.mark.asyncio
@pytest.mark.timeout(240)
async def test_concurrent_maximum_size_transfers_are_pushed_back_not_buffered(
    hub: tuple[Federation, subprocess.Popen[str]],
) -> None:
    federation, process = hub
    # One envelope per transfer, as large as a transfer may be (less its framing).
    sealer = Sealer(federation.nodes[GONGAN].identity, federation.shared_directory)
    now = time.time()
    envelopes = [
        sealer.seal(Outgoing([MINZHENG], os.urandom(MAX_TRANSFER - 128 * 1024)), now)
        for _ in range(TRANSFERS)
    ]
    context = make_context(federation.tls_files(GONGAN), server=False)
    clients = [
        LinkClient(HUB, federation.url(HUB), context, federation.authenticate, timeout=120)
        for _ in range(TRANSFERS)
    ]
    before = memory(process.pid)
    pushed_back = 0

    async def hand_over(client: LinkClient, data: bytes) -> None:
        nonlocal pushed_back
        deadline = time.monotonic() + 180
        while True:
            request = TransferRequest(GONGAN, os.urandom(16), (Item(data, (MINZHENG,)),))
            try:
                response = await client.transfer(request)
            except LinkBusy as exc:
                pushed_back += 1
                wait = exc.retry_after
            else:
                (result,) = response.results
                if result.status is Status.TAKEN:
                    return
                assert result.status is Status.DEFERRED, result
                wait = 0.2
            assert time.monotonic() < deadline, "a transfer was never taken"
            await asyncio.sleep(wait)

    try:
        await asyncio.gather(
            *(hand_over(c, e.data) for c, e in zip(clients, envelopes, strict=True))
        )
    finally:
        for client in clients:
            await client.close()
    after = memory(process.pid)
    grew = after["VmHWM"] - before["VmRSS"]
    evidence = (
        f"hub RSS {before['VmRSS'] / MIB:.0f} MiB before, peak {after['VmHWM'] / MIB:.0f} MiB "
        f"during {TRANSFERS} concurrent {MAX_TRANSFER // MIB} MiB transfers "
        f"(grew {grew / MIB:.0f} MiB, bound {BOUND / MIB:.0f} MiB); {pushed_back} pushed back"
    )
    print(evidence)  # the evidence, with -s
    assert grew < BOUND, evidence
    assert pushed_back > 0, evidence  # they did arrive together, and were pushed back

    # Nothing taken is lost: every envelope is in the hub's store, queued for its recipient.
    process.terminate()
    assert process.stdout is not None
    counters = json.loads(process.stdout.readline())
    assert process.wait(20) == 0
    assert counters["pushed_back"] == pushed_back
    with SqliteStore(federation.directory / f"{HUB}.sqlite") as store:
        queued = store.pending(MINZHENG, int(time.time() * 1000), 1000, 1 << 40)
    assert sorted(entry.message_id for entry in queued) == sorted(e.message_id for e in envelopes)
