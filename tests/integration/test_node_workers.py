"""A hub run as two workers on one PostgreSQL store (issue 14): each queue moved by its owner.

The county hub 520102 runs as two Node processes' worth of workers (here two
Nodes in one test process, each with its own port, as two processes would
be), sharing one PostgreSQL schema.  By the hash of their names worker 0
owns the queue to 520102.minzheng and worker 1 the queue to 520102.gongan;
each department's link goes to the *other* worker, so every message is
taken by one worker and forwarded by the other, which hears of it only
through the store's signals.  Both ways, every message arrives exactly once,
and the worker that took them forwarded none.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from exchnode.aio import AuditService, DirectoryService, Node, NodeTimers, Peer, WorkerShare
from exchnode.errors import StoreError, UsageError
from exchnode.federation import Relation
from exchnode.store import PostgresStore
from exchnode.testing import PostgresCluster, free_port
from tests.integration.federation import Federation, started
from tests.integration.test_node import collect
from tests.postgres import throwaway_postgres

HUB = "520102"
GONGAN = "520102.gongan"
MINZHENG = "520102.minzheng"
NAMES = [HUB, GONGAN, MINZHENG]


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    yield from throwaway_postgres()


def test_each_hop_has_one_owner_the_same_in_every_worker() -> None:
    shares = [WorkerShare(index, 3) for index in range(3)]
    for hop in (GONGAN, MINZHENG, "520100", "520102.fagai"):
        owners = [share.index for share in shares if share.owns(hop)]
        assert len(owners) == 1
        assert {share.owner(hop) for share in shares} == {owners[0]}
    assert [share.delivers for share in shares] == [True, False, False]
    with pytest.raises(UsageError, match=r"worker index must be 0\.\.1"):
        WorkerShare(2, 2)
    with pytest.raises(UsageError, match=r"worker count must be 1\.\.256"):
        WorkerShare(0, 0)


def test_the_layout_this_test_relies_on() -> None:
    share = WorkerShare(0, 2)
    assert share.owner(MINZHENG) == 0
    assert share.owner(GONGAN) == 1


def _parent_at(port: int) -> list[Peer]:
    return [Peer(name=HUB, relation=Relation.PARENT, url=f"https://127.0.0.1:{port}")]


def _hub_as_two_workers(
    folder: Path, store: Any, each: tuple[dict[str, Any], dict[str, Any]]
) -> dict[str, Node]:
    """The departments first, then the hub as two workers on one ``store`` (``each``: the
    other Node arguments of worker 0 and worker 1).

    The departments start first: the workers' hellos reach them at once.  Each department's
    link goes to the worker that does not own its queue.
    """
    federation = Federation(folder, NAMES)
    second_port = free_port()
    return {
        GONGAN: federation.node(GONGAN, peers=_parent_at(second_port)),
        MINZHENG: federation.node(MINZHENG),
        "worker-0": federation.node(HUB, store=store, worker=WorkerShare(0, 2), **each[0]),
        "worker-1": federation.node(
            HUB,
            store=store,
            worker=WorkerShare(1, 2),
            listen=("127.0.0.1", second_port),
            **each[1],
        ),
    }


async def _both_ways(nodes: dict[str, Node], count: int, pause_every: int | None) -> None:
    """``count`` messages each way between the departments: each arrives exactly once.

    ``pause_every``: a short pause after so many sends (some alone, some together); none:
    the workers take and forward at once, their commits interleaved.
    """
    up = [f"up {i}".encode() for i in range(count)]
    down = [f"down {i}".encode() for i in range(count)]
    to_minzheng = asyncio.ensure_future(collect(nodes[MINZHENG], count))
    to_gongan = asyncio.ensure_future(collect(nodes[GONGAN], count))
    for i in range(count):
        await nodes[GONGAN].send([MINZHENG], up[i])
        await nodes[MINZHENG].send([GONGAN], down[i])
        if pause_every is not None and i % pause_every == 0:
            await asyncio.sleep(0.01)
    got_up = await asyncio.wait_for(to_minzheng, 30)
    got_down = await asyncio.wait_for(to_gongan, 30)
    assert sorted(d.payload for d in got_up) == sorted(up)
    assert sorted(d.payload for d in got_down) == sorted(down)


@pytest.mark.asyncio
@pytest.mark.timeout(90)
async def test_two_workers_each_forward_what_the_other_took(
    tmp_path: Path, cluster: PostgresCluster
) -> None:
    # Once the hellos are answered, nothing but the store's signals wakes a worker's forwarder.
    timers = NodeTimers(worker_poll=60.0)  # only the signals can wake the owner in time
    store = partial(PostgresStore, cluster.conninfo(), schema="hub_workers")
    nodes = _hub_as_two_workers(tmp_path, store, ({"timers": timers}, {"timers": timers}))
    count = 40
    async with started(nodes):
        await asyncio.sleep(0.5)  # the hellos answered
        await _both_ways(nodes, count, pause_every=8)
        await asyncio.sleep(0.3)  # nothing else comes
        assert [s for s in await _queued(nodes[MINZHENG])] == []
        first = await nodes["worker-0"].stats()
        second = await nodes["worker-1"].stats()
        # Worker 1 took GONGAN's messages and worker 0 forwarded them, and the other way round.
        assert second.handed_over.get(MINZHENG) is None
        assert first.handed_over[MINZHENG].count == count
        assert first.handed_over.get(GONGAN) is None
        assert second.handed_over[GONGAN].count == count
        assert first.counters["accepted"] == count
        assert second.counters["accepted"] == count
        assert first.queued.count == second.queued.count == 0  # one store, emptied


async def _queued(node: Node) -> list[object]:
    """What ``node`` still delivers within a moment (should be nothing: no duplicates)."""
    extra = asyncio.ensure_future(collect(node, 1))
    await asyncio.sleep(0.2)
    extra.cancel()
    try:
        return list(await extra)
    except asyncio.CancelledError:
        return []


@pytest.mark.asyncio
@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("audited", "refusal"),
    [
        (False, r"need a store they share.*not a SqliteStore"),  # none to carry the signals
        (True, r"cannot share one audit log.*use PostgresStore"),
    ],
    ids=["signals", "audit-log"],
)
async def test_workers_on_a_store_of_one_process_are_refused(
    tmp_path: Path, audited: bool, refusal: str
) -> None:
    federation = Federation(tmp_path, NAMES)
    services = [AuditService()] if audited else []
    node = federation.node(HUB, worker=WorkerShare(0, 2), services=services)  # SQLite
    with pytest.raises(UsageError, match=refusal):
        await node.start()


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_audited_workers_keep_one_log_that_verifies(
    tmp_path: Path, cluster: PostgresCluster
) -> None:
    """Both workers record custody in the hub's one log, gapless, chained and sealed."""
    audits = [AuditService(), AuditService()]
    store = partial(PostgresStore, cluster.conninfo(), schema="hub_audited")
    nodes = _hub_as_two_workers(
        tmp_path, store, ({"services": [audits[0]]}, {"services": [audits[1]]})
    )
    async with started(nodes):
        await asyncio.sleep(0.5)
        await _both_ways(nodes, 30, pause_every=None)
        await audits[1].flush_now()
        await audits[0].sync()  # worker 0 signs the heads, over the log as stored
        report = await audits[0].verify()
        assert report.ok, report.summary()
        size = audits[0].size
        # Each worker took 30 messages in and sent 30 out: custody records from both.
        assert size >= 4
        second = await audits[1].verify()  # the other worker verifies the same log
        assert second.ok, second.summary()


@pytest.mark.asyncio
@pytest.mark.timeout(90)
async def test_a_commit_refused_after_it_was_made_leaves_the_log_whole(
    tmp_path: Path, cluster: PostgresCluster
) -> None:
    """A commit PostgreSQL made but the store refuses (its synchronous standby never
    confirmed it) is answered as not taken: sent again, answered by dedup; the log state,
    rolled back in memory though the records are stored, follows the stored log again."""
    federation = Federation(tmp_path, NAMES)
    audit = AuditService()
    nodes: dict[str, Node] = {
        GONGAN: federation.node(GONGAN),
        MINZHENG: federation.node(MINZHENG),
        HUB: federation.node(
            HUB,
            store=partial(PostgresStore, cluster.conninfo(), schema="hub_unconfirmed"),
            services=[audit],
        ),
    }
    async with started(nodes):
        store: Any = nodes[HUB].store
        accept, refused = store.accept, []

        def accept_then_refuse(*args: Any, **kwargs: Any) -> Any:
            outcomes = accept(*args, **kwargs)  # committed
            if not refused:
                refused.append(True)
                raise StoreError("committed on the primary but not confirmed (simulated)")
            return outcomes

        store.accept = accept_then_refuse
        payloads = [f"m{i}".encode() for i in range(10)]
        receiving = asyncio.ensure_future(collect(nodes[MINZHENG], len(payloads)))
        for payload in payloads:
            await nodes[GONGAN].send([MINZHENG], payload)
        got = await asyncio.wait_for(receiving, 30)
        assert sorted(d.payload for d in got) == sorted(payloads)  # each once
        assert refused
        await audit.sync()
        report = await audit.verify()
        assert report.ok, report.summary()


@pytest.mark.asyncio
@pytest.mark.timeout(90)
async def test_a_following_directory_takes_what_worker_0_stores(
    tmp_path: Path, cluster: PostgresCluster
) -> None:
    """Worker 1's directory follows worker 0's: it pulls and serves nothing, and takes the
    rows worker 0 stores once worker 0 says they changed (started first, on an empty store,
    nothing but that reload can bring it the departments)."""
    federation = Federation(tmp_path, NAMES)
    store = partial(PostgresStore, cluster.conninfo(), schema="hub_follow")
    config = federation.config(HUB, worker=WorkerShare(1, 2), listen=("127.0.0.1", free_port()))
    follower = DirectoryService.for_node(federation.nodes[HUB].identity, config, follow=0.2)
    assert follower.routes() == {}  # its neighbours' requests are worker 0's to answer
    nodes: dict[str, Node] = {
        "worker-1": federation.node(
            HUB, store=store, config=config, directory=None, services=[follower]
        ),
        "worker-0": federation.node(HUB, store=store, worker=WorkerShare(0, 2), directory=None),
        GONGAN: federation.node(GONGAN, directory=None),
        MINZHENG: federation.node(MINZHENG, directory=None),
    }
    async with started(nodes):
        leader = nodes["worker-0"].node_directory
        assert leader is not None

        def known(directory: Any) -> set[str]:
            return {GONGAN, MINZHENG} & set(directory.names(time.time()))

        async with asyncio.timeout(30):
            while known(leader) != {GONGAN, MINZHENG}:
                await asyncio.sleep(0.1)
            while known(follower.directory) != {GONGAN, MINZHENG}:
                await asyncio.sleep(0.1)
