"""A hub's failover to its standby on a synchronous replica (issue 14, 两地三中心).

The county hub keeps its store in a PostgreSQL primary with one synchronous
streaming standby (``exchnode.testing.PostgresStandby``): a commit returns
only once the standby has flushed it.  The standby hub is a copy of the
hub's folder -- the same identity, tokens and addresses -- whose ``[store]
conninfo`` names the standby.  Messages flow from one department to the
other through the hub; in the middle of the flow the primary site is lost
(the hub daemon and every PostgreSQL process SIGKILLed), the standby is
promoted and the standby hub started on the same address (a moved VIP).
The receiving application then counts every message the sender's node
accepted exactly once: nothing the hub acknowledged was lost, nothing
delivered twice.

The loss is timed to the windows that matter.  The receiving department's
node is frozen (SIGSTOP) while the hub's queue towards it grows: the
entries the hub had acknowledged to the sender, and only it held, must all
be on the standby (and a transfer it had sent the frozen node comes again
from the standby hub: a duplicate there).  Then the standby is frozen too,
until a commit of the hub waits for it (``wait_event = 'SyncRep'``): flushed
on the primary, not answered, so the sender keeps those items and sends
them again to the standby hub, which has them or not, depending on whether
their WAL reached the standby -- delivered once either way.  A standby hub
started before the promotion refuses to open its store.  The first test
shows what synchronous means: with the standby gone, a commit does not
return.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exchnode.errors import StoreError
from exchnode.node.client import OperatorClient
from exchnode.store import PostgresStore
from exchnode.testing import PostgresCluster, PostgresStandby
from tests.integration.daemons import NODE, DaemonFederation, node_env
from tests.postgres import REPLICATION_PROGRAMS, throwaway_postgres

pytestmark = pytest.mark.timeout(240)

HUB = "520102"
GONGAN = "520102.gongan"  # sends
MINZHENG = "520102.minzheng"  # receives
SCHEMA = "hub_520102"
STANDBY = "hub_standby"
BATCH = 5  # messages per send-many call
PACE = 0.05  # seconds between calls: about 100 messages a second
BACKLOG = 30  # entries the hub holds for the frozen receiver when its site is lost


@pytest.fixture
def primary() -> Iterator[PostgresCluster]:
    yield from throwaway_postgres(fsync=True, programs=REPLICATION_PROGRAMS)


@pytest.fixture
def standby(primary: PostgresCluster) -> Iterator[PostgresStandby]:
    with PostgresStandby(primary, STANDBY, synchronous=True) as standby:
        yield standby


def use_postgres(config: Path, conninfo: str) -> None:
    with config.open("a") as out:
        out.write(f'\n[store]\nbackend = "postgresql"\nconninfo = "{conninfo}"\n')
        out.write(f'schema = "{SCHEMA}"\n')


def start_daemon(federation: DaemonFederation, name: str, config: Path) -> None:
    """``name``'s daemon from ``config`` (the standby's copy), logging where ``name``'s does."""
    with federation.log_path(name).open("ab") as log:
        federation.processes[name] = subprocess.Popen(
            [*NODE, "run", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            cwd="/",
            env=node_env(),
        )


def waiting_for_standby(primary: PostgresCluster) -> int:
    """How many of the primary's sessions wait for their commit to reach the standby."""
    return int(primary.sql("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'"))


def test_a_commit_on_the_primary_waits_for_its_synchronous_standby(
    primary: PostgresCluster, standby: PostgresStandby
) -> None:
    assert primary.sync_states() == {STANDBY: "sync"}
    with PostgresStore(primary.conninfo(), schema=SCHEMA) as store:
        store.set_meta("before", b"1")  # returned: flushed on the standby too
        standby.kill()  # the standby's site is lost
        committing = threading.Thread(target=store.set_meta, args=("during", b"2"), daemon=True)
        committing.start()
        committing.join(2.0)
        assert committing.is_alive(), "a commit returned with its synchronous standby gone"
        # The operator's choice to run unprotected releases the commit waiting.
        primary.set_synchronous_standbys([])
        committing.join(20.0)
        assert not committing.is_alive()
        assert store.get_meta("during") == b"2"


def test_a_commit_whose_wait_for_the_standby_is_cancelled_is_not_taken(
    primary: PostgresCluster, standby: PostgresStandby
) -> None:
    """PostgreSQL commits locally when the wait is cancelled, saying so in a WARNING only:
    the store refuses such a commit (not acknowledged: the previous hop sends it again)."""
    with PostgresStore(primary.conninfo(), schema=SCHEMA) as store:
        store.set_meta("before", b"1")
        standby.kill()
        failures: list[BaseException] = []

        def commit() -> None:
            try:
                store.set_meta("during", b"2")
            except BaseException as exc:
                failures.append(exc)

        committing = threading.Thread(target=commit, daemon=True)
        committing.start()
        deadline = time.monotonic() + 20
        while waiting_for_standby(primary) == 0:
            assert time.monotonic() < deadline, "the commit never waited for the standby"
            time.sleep(0.05)
        primary.sql(  # an operator cancels the wait
            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE wait_event = 'SyncRep'"
        )
        committing.join(20.0)
        assert not committing.is_alive()
        assert len(failures) == 1
        assert isinstance(failures[0], StoreError)
        assert "not confirmed by the synchronous standby" in str(failures[0])
        primary.set_synchronous_standbys([])  # run unprotected: commits return again
        store.delete_meta("before")  # and the session is still usable


def test_the_standby_hub_takes_over_with_nothing_lost_or_duplicated(
    primary: PostgresCluster, standby: PostgresStandby, tmp_path: Path
) -> None:
    federation = DaemonFederation(tmp_path, [HUB, GONGAN, MINZHENG])
    # The standby site's hub: the same folder (identity, tokens, addresses), its own state_dir.
    standby_config = tmp_path / "standby" / HUB / "node.toml"
    shutil.copytree(federation.folder(HUB), standby_config.parent)
    use_postgres(federation.config_path(HUB), primary.conninfo())
    use_postgres(standby_config, standby.conninfo())
    assert primary.sync_states() == {STANDBY: "sync"}
    try:
        federation.start(HUB, GONGAN, MINZHENG)
        federation.wait_ready(HUB, GONGAN, MINZHENG)
        report = asyncio.run(flow(federation, primary, standby, standby_config))
    finally:
        federation.kill_all()
    sent, received, payloads = report["sent"], report["received"], report["payloads"]
    counters = report["counters"]  # the hub's and the receiver's, for a failure's message
    assert len(sent) == len(set(sent)) > 300
    twice = sorted({m for m in received if received.count(m) > 1})
    assert not twice, f"{len(twice)} delivered more than once: {twice[:3]}; {counters}"
    lost = set(sent) - set(received)
    assert not lost, f"{len(lost)} lost: {sorted(lost)[:3]}; {counters}"
    assert set(received) <= set(sent)  # and nothing the sender did not send
    assert sorted(payloads) == list(range(len(sent)))
    # The hub's custody at the loss (acknowledged to the sender, held only there) survived it.
    assert report["standby_held"] >= report["held_at_loss"] >= BACKLOG
    assert report["sent_after_takeover"] > 0
    status, errors = report["early_start"]
    assert status == 1, errors
    assert "the server is a standby in recovery (read-only); promote it" in errors
    with PostgresStore(standby.conninfo(), schema=SCHEMA) as store:
        assert store.totals().count == 0  # everything forwarded and acknowledged


async def flow(
    federation: DaemonFederation,
    primary: PostgresCluster,
    standby: PostgresStandby,
    standby_config: Path,
) -> dict[str, Any]:
    """Send and receive all along; lose the primary site in the middle; take over."""
    sent: list[str] = []  # message ids the sender's node accepted
    received: list[str] = []  # message ids the receiving application got, repeats included
    payloads: list[int] = []
    sending = asyncio.Event()
    sending.set()
    gongan = OperatorClient.for_config(federation.config(GONGAN), timeout=120)
    minzheng = OperatorClient.for_config(federation.config(MINZHENG), timeout=120)
    report: dict[str, Any] = {}

    async def send() -> None:
        number = 0
        while sending.is_set():
            batch = [{"to": [MINZHENG], "payload": str(number + i).encode()} for i in range(BATCH)]
            answers = await gongan.send_many(batch)
            sent.extend(answer["message_id"] for answer in answers)
            number += BATCH
            await asyncio.sleep(PACE)

    async def receive() -> None:
        while True:
            deliveries = await minzheng.receive(limit=200, wait=1.0)
            for delivery in deliveries:
                received.append(delivery.message_id)
                payloads.append(int(delivery.payload))
            if deliveries:  # acknowledged once counted: a lost answer would show as a repeat
                await minzheng.ack(delivery.id for delivery in deliveries)

    def hub_holds() -> int:
        outbound = federation.health(HUB)[1].get("outbound", {})
        return int(outbound.get(MINZHENG, {}).get("count", 0))

    loops: list[asyncio.Task[None]] = []

    async def wait_for(check: Any, what: str, timeout: float = 60.0) -> Any:
        """``check``'s first truthy answer (asked in a thread: it blocks), failing as ``until``;
        and at once if the sending or receiving loop failed."""
        deadline = time.monotonic() + timeout
        while True:
            for task in loops:
                if task.done():
                    task.result()  # its error, if it failed
            value = await asyncio.to_thread(check)
            if value:
                return value
            assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
            await asyncio.sleep(0.1)

    async with gongan, minzheng:
        senders = asyncio.create_task(send())
        receivers = asyncio.create_task(receive())
        loops += [senders, receivers]
        await wait_for(lambda: len(received) >= 100, "the flow under way")
        receiver = federation.processes[MINZHENG]
        receiver.send_signal(signal.SIGSTOP)  # the receiver is slow: the hub's queue grows
        try:
            held = await wait_for(lambda: (n := hub_holds()) >= BACKLOG and n, "a backlog")
            # The standby hangs: the hub's next commit is flushed on the primary, and waits.
            await asyncio.to_thread(standby.freeze)
            try:
                await wait_for(lambda: waiting_for_standby(primary), "a commit waiting")
                # The primary site is lost: its hub and every process of its database, at once.
                hub = federation.processes.pop(HUB)
                hub.kill()
                await asyncio.to_thread(primary.kill)
                await asyncio.to_thread(hub.wait, 10)
            finally:
                standby.thaw()
        finally:
            receiver.send_signal(signal.SIGCONT)
        report["held_at_loss"] = held
        sent_at_loss = len(sent)
        # The standby, still read-only, once it has applied all it flushed: the custody it holds.
        await asyncio.to_thread(standby.wait_replayed)
        report["standby_held"] = int(
            await asyncio.to_thread(
                standby.sql,
                f"SELECT count(*) FROM {SCHEMA}.outbound WHERE next_hop = '{MINZHENG}'",
            )
        )
        # Started too early, on a standby still in recovery, the standby hub refuses.
        early = await asyncio.to_thread(
            subprocess.run,
            [*NODE, "run", "--config", str(standby_config)],
            capture_output=True,
            timeout=60,
            cwd="/",
            env=node_env(),
            check=False,
        )
        report["early_start"] = (early.returncode, early.stderr.decode(errors="replace"))
        # The takeover: the old primary is fenced (dead), promote, start the standby hub.
        await asyncio.to_thread(standby.promote)
        start_daemon(federation, HUB, standby_config)
        await asyncio.to_thread(federation.wait_ready, HUB)
        took_over = len(sent)
        await wait_for(lambda: len(sent) >= took_over + 100, "sending after the takeover")
        sending.clear()
        await senders
        report["sent_after_takeover"] = len(sent) - sent_at_loss
        everything = set(sent)
        await wait_for(lambda: everything <= set(received), "every message received", 120.0)
        await asyncio.sleep(2.0)  # a late repeat would arrive now
        report["counters"] = {n: federation.health(n)[1]["counters"] for n in (HUB, MINZHENG)}
        receivers.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await receivers
    report.update(sent=sent, received=received, payloads=payloads)
    return report
