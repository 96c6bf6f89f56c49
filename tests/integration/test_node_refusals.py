"""What a node refuses, on loopback: spoofed senders, wrong-subtree injections, revoked peers."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path

import pytest

from exchnode.aio import AuditService, LinkClient, LinkError, Node, make_context
from exchnode.audit import Category, decode_record
from exchnode.core import Outgoing, Sealer, decode_envelope
from exchnode.federation import Item, Status, TransferRequest
from exchnode.store import SqliteStore
from tests.integration.federation import Federation

CITY, COUNTY, GONGAN = "520100", "520102", "520102.gongan"
OUTSIDER = "522301.minzheng"
NAMES = ["520000", CITY, COUNTY, GONGAN, "520100.fagai", "522300", "522301", OUTSIDER]


def client_as(federation: Federation, me: str, neighbour: str) -> LinkClient:
    """A link client holding ``me``'s real credentials: a compromised node."""
    return LinkClient(
        neighbour,
        federation.url(neighbour),
        make_context(federation.tls_files(me), server=False),
        federation.authenticate,
        timeout=10,
    )


def sealed(federation: Federation, sender: str, recipients: list[str], now: float) -> bytes:
    sealer = Sealer(federation.nodes[sender].identity, federation.shared_directory)
    return sealer.seal(Outgoing(recipients, b"payload"), now).data


def audited(federation: Federation, name: str) -> Node:
    """The node with its audit log, so that what it refused can be read back from its record."""
    return federation.node(name, services=[AuditService(flush=0.05, head_interval=0.2)])


def ident(envelope: bytes) -> bytes:
    return decode_envelope(envelope).header.message_id


def refused_on_record(federation: Federation, name: str) -> dict[bytes, str]:
    """Message id -> the code the stopped node's audit log refused it with (custody)."""
    out: dict[bytes, str] = {}
    with SqliteStore(federation.directory / f"{name}.sqlite", read_only=True) as store:
        for _, data in store.audit_records(0, 100_000):
            entry = decode_record(data).entry
            if entry.category is Category.ENVELOPE and entry.outcome.status.value == "refused":
                for message_id in entry.get("messages") or ():  # type: ignore[union-attr]
                    out[message_id] = entry.outcome.code  # type: ignore[index]
    return out


def held(federation: Federation, name: str, sender: str, message_id: bytes) -> bool:
    """Whether the stopped node took the envelope into custody (its dedup record)."""
    with SqliteStore(federation.directory / f"{name}.sqlite", read_only=True) as store:
        return store.seen(sender, message_id) is not None


async def transfer(client: LinkClient, me: str, items: list[Item]) -> list[tuple[Status, str]]:
    try:
        response = await client.transfer(TransferRequest(me, b"\x01" * 16, tuple(items)))
    finally:
        await client.close()
    return [(r.status, r.code) for r in response.results]


@pytest.mark.asyncio
async def test_a_county_hub_cannot_speak_for_a_sender_outside_its_subtree(tmp_path: Path) -> None:
    federation = Federation(tmp_path, NAMES)
    now = time.time()
    async with audited(federation, CITY) as city:
        # The county hub relays a genuine envelope from another city's department: refused.
        genuine_foreign = sealed(federation, OUTSIDER, ["520100.fagai"], now)
        # And an envelope it forged "from" its own department, with its own key: refused.
        forged = bytearray(sealed(federation, GONGAN, ["520100.fagai"], now))
        forged[-5] ^= 1
        own = sealed(federation, GONGAN, ["520100.fagai"], now)
        results = await transfer(
            client_as(federation, COUNTY, CITY),
            COUNTY,
            [
                Item(genuine_foreign, ("520100.fagai",)),
                Item(bytes(forged), ("520100.fagai",)),
                Item(own, ("520100.fagai",)),
                Item(own, (OUTSIDER,)),  # a target the envelope does not name
            ],
        )
        seen = city.metrics()  # what monitoring counts of it (node/metrics.py)
    assert seen.refusals == {
        ("node", "item", "routing-refused"): 2,
        ("node", "item", "bad-signature"): 1,
    }
    assert seen.links[COUNTY].items_in == {"taken": 1, "refused": 3, "deferred": 0}
    assert seen.links[COUNTY].transfers_in == 1
    assert results == [
        (Status.REFUSED, "routing-refused"),
        (Status.REFUSED, "bad-signature"),
        (Status.TAKEN, ""),
        (Status.REFUSED, "routing-refused"),
    ]
    # Refused on the record, and nothing of a refused item kept; the genuine one is held.
    record = refused_on_record(federation, CITY)
    assert record[ident(genuine_foreign)] == "routing-refused"
    assert record[ident(bytes(forged))] == "bad-signature"
    assert not held(federation, CITY, OUTSIDER, ident(genuine_foreign))
    assert held(federation, CITY, GONGAN, ident(own))


@pytest.mark.asyncio
async def test_a_parent_cannot_inject_outside_the_childs_subtree(tmp_path: Path) -> None:
    federation = Federation(tmp_path, NAMES)
    async with audited(federation, COUNTY):
        envelope = sealed(federation, OUTSIDER, ["520100.fagai"], time.time())
        results = await transfer(
            client_as(federation, CITY, COUNTY), CITY, [Item(envelope, ("520100.fagai",))]
        )
    assert results == [(Status.REFUSED, "routing-refused")]
    assert refused_on_record(federation, COUNTY) == {ident(envelope): "routing-refused"}
    assert not held(federation, COUNTY, OUTSIDER, ident(envelope))


@pytest.mark.asyncio
async def test_a_stranger_that_is_not_a_neighbour_is_refused(tmp_path: Path) -> None:
    federation = Federation(tmp_path, NAMES)
    async with audited(federation, COUNTY):
        # The province hub is a valid node but not this county hub's neighbour.
        envelope = sealed(federation, "520000", [GONGAN], time.time())
        results = await transfer(
            client_as(federation, "520000", COUNTY), "520000", [Item(envelope, (GONGAN,))]
        )
    assert results == [(Status.REFUSED, "routing-refused")]
    assert refused_on_record(federation, COUNTY) == {ident(envelope): "routing-refused"}
    assert not held(federation, COUNTY, "520000", ident(envelope))


@pytest.mark.asyncio
async def test_a_revoked_peer_cannot_connect(tmp_path: Path) -> None:
    federation = Federation(tmp_path, NAMES)
    federation.pki.revoke(
        federation.nodes[COUNTY].certificate,
        federation.cas[CITY],
        when=federation.now - timedelta(hours=2),
    )
    async with federation.node(CITY) as city:
        envelope = sealed(federation, GONGAN, ["520100.fagai"], time.time())
        with pytest.raises(LinkError):
            await transfer(
                client_as(federation, COUNTY, CITY), COUNTY, [Item(envelope, ("520100.fagai",))]
            )
        stats = await city.stats()
    assert stats.counters["accepted"] == 0
    await asyncio.sleep(0)
