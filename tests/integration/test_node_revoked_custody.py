"""Envelopes of a revoked sender in a hop's custody: custody ends once, on the record, no report.

Issue 12, item 3: the review watched a hub retry 14 envelopes of a revoked
sender 3,303 times in 7.4 minutes (830 KB of log), on course for their 7-day
expiry, with nothing on the record: the next hop answered each attempt
``unknown-signer``, DEFERRED.  A signer that is revoked is not merely unknown:
nothing will ever make its envelopes verify.  So:

* the hop that holds them and knows the sender is revoked takes them out of
  its queue once, with a ``drop`` record ``refused revoked`` naming each;
* a next hop that knows answers REFUSED ``revoked`` (not DEFERRED), and the
  hop that holds them ends custody on that answer, with its ``relay`` record;
* no non-delivery report goes to the revoked sender;
* a condition that repeats (items deferred for the same reason by the same
  neighbour) is logged at most once per ``log_repeat_interval``, with the
  count of what was left out.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import pytest
import structlog

from exchnode.aio import AuditService, Node, NodeTimers
from exchnode.audit import Category, decode_record, verify_log
from exchnode.core import NodeName
from exchnode.federation import (
    BackoffPolicy,
    Neighbour,
    NodeDirectory,
    Relation,
    verify_snapshot,
)
from exchnode.store import SqliteStore
from tests.integration.federation import Federation, started

PROVINCE, TONGJI = "520000", "520000.tongji"
CITY, GONGAN = "520100", "520100.gongan"
NAMES = [PROVINCE, TONGJI, CITY, GONGAN]
COUNT = 14  # as in the review
FAST = BackoffPolicy(base_ms=100, cap_ms=500)


async def until(condition: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


def custody_records(federation: Federation, name: str) -> Counter[tuple[str, str, str, bytes]]:
    """(action, counterpart, outcome code, message id) → times on ``name``'s verified record."""
    with SqliteStore(federation.directory / f"{name}.sqlite") as store:
        records = store.audit_records(0, 100_000)
        report = verify_log(name, records, store.tree_heads(), federation.shared_directory)
    assert report.ok, report.findings
    seen: Counter[tuple[str, str, str, bytes]] = Counter()
    for _, data in records:
        entry = decode_record(data).entry
        if entry.category is not Category.ENVELOPE:
            continue
        for message_id in entry.get("messages") or ():  # type: ignore[union-attr]
            seen[(entry.action, str(entry.subject.value), entry.outcome.code, message_id)] += 1
    return seen


def revoke(federation: Federation, name: str) -> object:
    """Revoke ``name``'s certificate; its CA's new CRL."""
    ca = federation.cas["520100"]  # the city CA issues 520100.gongan
    federation.pki.revoke(
        federation.nodes[name].certificate, ca, when=federation.now - timedelta(minutes=5)
    )
    return federation.pki.crl(ca, this_update=federation.now - timedelta(minutes=1), number=2)


def audited() -> AuditService:
    return AuditService(flush=0.05, head_interval=0.2)


def signed(federation: Federation, name: str, **options: object) -> Node:
    """A node on the signed node directory, with the audit log."""
    return federation.node(name, directory=None, services=[audited()], **options)


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_the_hop_holding_a_revoked_senders_envelopes_ends_their_custody_once(
    tmp_path: Path,
) -> None:
    federation = Federation(tmp_path, NAMES)
    nodes = {name: signed(federation, name, backoff=FAST) for name in NAMES}
    async with started(nodes):
        city = nodes[CITY]
        await nodes[GONGAN].wait_known([TONGJI], timeout=30)
        await nodes[PROVINCE].close()  # the envelopes stay in the city's custody
        sent = [await nodes[GONGAN].send([TONGJI], f"m{i}".encode()) for i in range(COUNT)]

        async def all_at_city() -> bool:
            depth = (await city.stats()).outbound.get(PROVINCE)
            return depth is not None and depth.count == COUNT

        await until(all_at_city, 30, "the city to hold the envelopes")

        # The sender's certificate is revoked; the city learns it (its CA's new CRL).
        await city.add_crls([revoke(federation, GONGAN)])  # type: ignore[list-item]

        async def released() -> bool:
            return PROVINCE not in (await city.stats()).outbound

        # Its forwarder to the province (still down) ends their custody at its next attempt.
        await until(released, 15, "the city to end custody of the revoked sender's envelopes")
        directory = city.node_directory
        assert directory is not None
        assert directory.revoked_keys(GONGAN)
        stats = await city.stats()
        assert stats.counters["revoked"] == COUNT
        assert stats.counters["reports_sent"] == 0  # no report to a revoked sender
    seen = custody_records(federation, CITY)
    for message in sent:
        mine = {key: n for key, n in seen.items() if key[3] == message.message_id}
        assert mine == {
            ("accept", GONGAN, "accepted", message.message_id): 1,
            ("drop", PROVINCE, "revoked", message.message_id): 1,
        }


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_a_next_hop_that_knows_the_sender_is_revoked_refuses_and_custody_ends(
    tmp_path: Path,
) -> None:
    federation = Federation(tmp_path, NAMES)
    # The city (and the others) work from a static directory: it never hears of the
    # revocation.  Only the province runs the signed directory.
    nodes = {
        name: signed(federation, name, backoff=FAST)
        if name == PROVINCE
        else federation.node(name, backoff=FAST, services=[audited()])
        for name in NAMES
    }
    async with started(nodes):
        city, province = nodes[CITY], nodes[PROVINCE]
        # The province holds the department's entry, relayed by the city (as the signed
        # directory would have it), then takes the CRL that revokes it.
        known = province.node_directory
        assert known is not None
        now, trust = time.time(), federation.trust()
        department = NodeDirectory(federation.nodes[GONGAN].identity, clock=time.time)
        relay = NodeDirectory(
            federation.nodes[CITY].identity,
            clock=time.time,
            neighbours=[Neighbour(NodeName.parse(GONGAN), Relation.CHILD)],
        )
        relay.update(GONGAN, verify_snapshot(department.sign(now, 600), trust, now, GONGAN), now)
        known.update(CITY, verify_snapshot(relay.sign(now, 600), trust, now, CITY), now)
        assert GONGAN in known.names(now)
        await province.add_crls([revoke(federation, GONGAN)])  # type: ignore[list-item]

        sent = [await nodes[GONGAN].send([TONGJI], f"m{i}".encode()) for i in range(COUNT)]

        async def settled() -> bool:
            stats = await city.stats()
            return PROVINCE not in stats.outbound and stats.counters["forwarded"] == COUNT

        await until(settled, 15, "the city to end custody on the province's refusals")
        assert known.revoked_keys(GONGAN)
        stats = await city.stats()
        assert stats.counters["revoked"] == COUNT
        assert stats.counters["reports_sent"] == 0
        for message in sent:  # the sender hears nothing: no report was sent
            assert not (await nodes[GONGAN].status(message.message_id)).reports
    at_city, at_province = custody_records(federation, CITY), custody_records(federation, PROVINCE)
    for message in sent:
        assert {k: n for k, n in at_city.items() if k[3] == message.message_id} == {
            ("accept", GONGAN, "accepted", message.message_id): 1,
            ("relay", PROVINCE, "revoked", message.message_id): 1,
        }
        assert at_province[("accept", CITY, "revoked", message.message_id)] == 1


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_items_deferred_again_and_again_are_logged_once_per_interval(
    tmp_path: Path,
) -> None:
    """The province cannot verify the department's envelopes (it never learns its key) and
    defers them at every attempt; its log says so once per interval, with the count."""
    federation = Federation(tmp_path, NAMES)
    interval = 1.0
    timers = NodeTimers(log_repeat_interval=interval, deferred_pause=0.01, deferred_pause_max=0.02)
    with structlog.testing.capture_logs() as logs:
        # The province runs the signed directory; the others a static one it cannot pull.
        nodes = {
            name: federation.node(name, directory=None, timers=timers)
            if name == PROVINCE
            else federation.node(name, timers=timers)
            for name in NAMES
        }
        async with started(nodes):
            province = nodes[PROVINCE]
            await nodes[GONGAN].send([TONGJI], b"nobody at the province knows my key")

            async def deferred_often() -> bool:
                return (await province.stats()).counters["deferred"] >= 40

            began = time.monotonic()
            await until(deferred_often, 30, "the province to defer the item again and again")
            await asyncio.sleep(interval)  # one more interval: its line carries the count
            elapsed = time.monotonic() - began
            deferrals = (await province.stats()).counters["deferred"]
    lines = [
        line
        for line in logs
        if line.get("event") == "item deferred" and line.get("node") == PROVINCE
    ]
    print(f"{len(lines)} 'item deferred' lines for {deferrals} deferrals in {elapsed:.1f} s")
    assert lines
    assert all(line["code"] == "unknown-signer" for line in lines)
    # One line per interval (plus the first), however many deferrals.
    assert len(lines) <= elapsed / interval + 2, (len(lines), deferrals, elapsed)
    assert len(lines) < deferrals / 4, (len(lines), deferrals)
    # What was left out is counted on the next line.
    assert sum(line.get("repeated", 0) for line in lines) + len(lines) <= deferrals
    assert any(line.get("repeated", 0) > 0 for line in lines), lines
