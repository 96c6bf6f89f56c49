"""Custody on the record: every hop logs what it took, from whom, and where it went.

A message's custody chain is read back from the three nodes' stores after
they stop: the sender accepted its own message and relayed it to the hub,
the hub accepted it from the sender and relayed it on, the recipient
accepted it from the hub and delivered it.  Each id is on each record once,
and every log verifies end to end under its signed heads.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes

from exchnode.aio import AuditService, Node
from exchnode.audit import Category, decode_record, verify_log
from exchnode.store import SqliteStore
from tests.integration.federation import Federation
from tests.integration.test_node import collect

HUB, SENDER, RECIPIENT = "520102", "520102.gongan", "520102.minzheng"
NAMES = [HUB, SENDER, RECIPIENT]
COUNT = 150  # more than one record's worth of ids (64) per hop


def start(federation: Federation, name: str) -> Node:
    return federation.node(name, services=[AuditService(flush=0.05, head_interval=0.2)])


def custody(federation: Federation, name: str) -> Counter[tuple[str, str, str, bytes]]:
    """(action, counterpart, outcome code, message id) → how many times it is on the record."""
    with SqliteStore(federation.directory / f"{name}.sqlite") as store:
        records = store.audit_records(0, 100_000)
        report = verify_log(name, records, store.tree_heads(), federation.shared_directory)
    assert report.ok, report.findings
    assert report.verified_size == len(records)  # the last head covers every record
    seen: Counter[tuple[str, str, str, bytes]] = Counter()
    for _, data in records:
        entry = decode_record(data).entry
        if entry.category is not Category.ENVELOPE:
            continue
        ids = entry.get("messages") or ()
        assert entry.get("count") == len(ids)  # type: ignore[arg-type]
        for message_id in ids:  # type: ignore[union-attr]
            seen[(entry.action, str(entry.subject.value), entry.outcome.code, message_id)] += 1
    return seen


@pytest.mark.asyncio
async def test_every_hop_records_the_custody_of_every_message(tmp_path: Path) -> None:
    federation = Federation(tmp_path, NAMES)
    nodes = {name: start(federation, name) for name in NAMES}
    for node in nodes.values():
        await node.start()
    try:
        sent = [await nodes[SENDER].send([RECIPIENT], f"m{i}".encode()) for i in range(COUNT)]
        await asyncio.wait_for(collect(nodes[RECIPIENT], COUNT), 30)
    finally:
        for node in nodes.values():
            await node.close()
    ids = [s.message_id for s in sent]
    chains = {
        SENDER: [("accept", SENDER, "accepted"), ("relay", HUB, "taken")],
        HUB: [("accept", SENDER, "accepted"), ("relay", RECIPIENT, "taken")],
        RECIPIENT: [("accept", HUB, "accepted"), ("deliver", "", "delivered")],
    }
    for name, chain in chains.items():
        seen = custody(federation, name)
        for action, counterpart, code in chain:
            assert all(seen[(action, counterpart, code, i)] == 1 for i in ids), (name, action)
        mine = sum(n for key, n in seen.items() if key[3] in set(ids))
        assert mine == 2 * COUNT, name  # nothing else was said about these messages


@pytest.mark.asyncio
async def test_a_link_going_down_and_coming_back_is_on_the_record(tmp_path: Path) -> None:
    federation = Federation(tmp_path, NAMES)
    sender = start(federation, SENDER)
    await sender.start()
    try:
        message = await sender.send([RECIPIENT], b"waits for the hub")
        hub, recipient = start(federation, HUB), start(federation, RECIPIENT)
        # The first attempts fail, the hub not being up: wait until one has.
        deadline = asyncio.get_running_loop().time() + 20
        while (await sender.stats()).peers[HUB].failures == 0:
            assert asyncio.get_running_loop().time() < deadline, "no attempt ever failed"
            await asyncio.sleep(0.05)
        await hub.start()
        await recipient.start()
        sender.poke(HUB)
        await asyncio.wait_for(collect(recipient, 1), 30)
        await hub.close()
        await recipient.close()
    finally:
        await sender.close()
    with SqliteStore(federation.directory / f"{SENDER}.sqlite") as store:
        entries = [decode_record(data).entry for _, data in store.audit_records(0, 1000)]
    links = [(e.action, e.subject.value) for e in entries if e.category is Category.CONNECTION]
    assert links[:2] == [("link.down", HUB), ("link.up", HUB)]
    relayed = [e for e in entries if e.action == "relay"]
    assert relayed[0].get("messages") == (message.message_id,)


@pytest.mark.asyncio
async def test_a_revocation_and_new_keys_are_on_the_record(tmp_path: Path) -> None:
    """Key events: the signed directory learning keys, and a CRL applied, with its fingerprint."""
    federation = Federation(tmp_path, NAMES)
    nodes = {
        name: federation.node(
            name, directory=None, services=[AuditService(flush=0.05, head_interval=0.2)]
        )
        for name in NAMES
    }
    for node in nodes.values():
        await node.start()
    try:
        await nodes[SENDER].wait_known([RECIPIENT], timeout=20)
        ca = federation.cas["520100"]  # the city CA issues its counties' nodes
        federation.pki.revoke(
            federation.nodes[RECIPIENT].certificate, ca, when=federation.now - timedelta(minutes=5)
        )
        crl = federation.pki.crl(ca, this_update=federation.now - timedelta(minutes=1), number=2)
        await nodes[HUB].add_crls([crl])
    finally:
        for node in nodes.values():
            await node.close()
    with SqliteStore(federation.directory / f"{HUB}.sqlite") as store:
        entries = [decode_record(data).entry for _, data in store.audit_records(0, 10_000)]
    keys = [e for e in entries if e.category is Category.KEY]
    applied = [e for e in keys if e.action == "crl.applied"]
    assert [e.get("digest") for e in applied] == [crl.fingerprint(hashes.SHA256())]
    assert applied[0].get("count") == 1  # one revoked serial
    assert any(e.action == "directory.changed" and (e.get("count") or 0) > 0 for e in keys)
