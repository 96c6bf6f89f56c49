"""The signed node directory between live nodes: keys found without manual exchange,
revocations spreading, a cache that outlives a hub, and failing closed once it expires."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import timedelta
from pathlib import Path

import pytest

from exchnode.aio import Node, NodeTimers
from exchnode.errors import DirectoryExpiredError, ExchnodeError
from tests.integration.federation import CROSS_CITY, Federation, one_delivery, started

GONGAN, MINZHENG = "520102.gongan", "522301.minzheng"


def running(
    federation: Federation, names: list[str], **options: object
) -> contextlib.AbstractAsyncContextManager[dict[str, Node]]:
    return started({name: federation.node(name, directory=None, **options) for name in names})


@pytest.mark.asyncio
async def test_any_node_finds_any_other_nodes_keys_through_the_hubs(tmp_path: Path) -> None:
    federation = Federation(tmp_path)
    async with running(federation, CROSS_CITY) as nodes:
        # Nobody was given anyone's certificate: each starts knowing only itself.
        await nodes[GONGAN].wait_known([MINZHENG], timeout=20)
        await nodes[MINZHENG].wait_known([GONGAN], timeout=20)
        sent = await nodes[GONGAN].send([MINZHENG], b"found you", receipt=True)
        assert await asyncio.wait_for(one_delivery(nodes[MINZHENG]), 20) == b"found you"
        status = await nodes[GONGAN].wait_status(sent.message_id, [MINZHENG], timeout=20)
        assert status.delivered_to == {MINZHENG}
        # The province holds its whole subtree; a department only its path to the root
        # and the node it addressed, never the rest of the network (SPEC §14.13).
        province, dept = nodes["520000"].node_directory, nodes[GONGAN].node_directory
        assert province is not None
        assert dept is not None
        assert set(province.names(time.time())) == set(CROSS_CITY)
        assert set(dept.names(time.time())) == {"520000", "520100", "520102", GONGAN, MINZHENG}


@pytest.mark.asyncio
async def test_a_revocation_entered_at_one_hub_reaches_every_node(tmp_path: Path) -> None:
    federation = Federation(tmp_path)
    async with running(federation, CROSS_CITY) as nodes:
        await nodes[GONGAN].wait_known([MINZHENG], timeout=20)
        ca = federation.cas["522300"]
        federation.pki.revoke(
            federation.nodes[MINZHENG].certificate, ca, when=federation.now - timedelta(minutes=5)
        )
        crl = federation.pki.crl(ca, this_update=federation.now - timedelta(minutes=1), number=2)
        await nodes["522300"].add_crls([crl])
        for _ in range(200):
            try:
                nodes[GONGAN].directory.recipient(MINZHENG)
            except ExchnodeError:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the revocation did not reach 520102.gongan")
        with pytest.raises(ExchnodeError):
            await nodes[GONGAN].send([MINZHENG], b"to a revoked node")


@pytest.mark.asyncio
async def test_the_cache_outlives_the_hub_then_fails_closed_when_it_expires(
    tmp_path: Path,
) -> None:
    names = ["520102", GONGAN, "520102.minzheng"]
    federation = Federation(tmp_path, names)
    short = {"timers": NodeTimers(directory_lifetime=3.0, directory_refresh=0.5)}
    async with running(federation, names, **short) as nodes:
        await nodes[GONGAN].wait_known(["520102.minzheng"], timeout=20)
    # The hub is gone; the department restarts and works from its cache.
    async with running(federation, [GONGAN, "520102.minzheng"], **short) as nodes:
        await nodes[GONGAN].send(["520102.minzheng"], b"queued while the hub is away")
        # Past the snapshot's expiry (3 s) the lookup fails closed; wait for that, no longer.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while True:
            try:
                nodes[GONGAN].directory.recipient("520102.minzheng")
            except DirectoryExpiredError:
                break
            assert loop.time() < deadline, "the cached directory never expired"
            await asyncio.sleep(0.1)
        with pytest.raises(DirectoryExpiredError, match=r"520102\.minzheng"):
            await nodes[GONGAN].send(["520102.minzheng"], b"refused")


@pytest.mark.asyncio
async def test_a_send_resolves_its_recipient_and_each_relay_resolves_the_signer(
    tmp_path: Path,
) -> None:
    """Nobody holds the other department: the send looks it up; each hub on the way down,
    meeting a signer it does not hold, defers the item, looks the signer up, takes the retry."""
    federation = Federation(tmp_path)
    async with running(federation, CROSS_CITY) as nodes:
        # Wait only until the province holds both subtrees (what a lookup is answered from).
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        province = nodes["520000"].node_directory
        assert province is not None
        while not {GONGAN, MINZHENG} <= set(province.names(time.time())):
            assert loop.time() < deadline, "the province never held both departments"
            await asyncio.sleep(0.1)
        for name in (GONGAN, "522301", MINZHENG):
            directory = nodes[name].node_directory
            assert directory is not None
            held = set(directory.names(time.time()))
            assert (GONGAN in held) is (name == GONGAN)
        sent = await nodes[GONGAN].send([MINZHENG], b"looked up", receipt=True)
        assert await asyncio.wait_for(one_delivery(nodes[MINZHENG]), 30) == b"looked up"
        status = await nodes[GONGAN].wait_status(sent.message_id, [MINZHENG], timeout=30)
        assert status.delivered_to == {MINZHENG}
