"""The in-memory network: real aiohttp over it, certificates as TLS shows them, links in time."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509

from exchnode.aio import Network
from exchnode.sim import MemoryNetwork, VirtualClockLoop
from exchnode.testing import SyntheticPKI

PKI = SyntheticPKI()
ROOT = PKI.root("520000")
HUB = PKI.node("520000", ROOT)
CHILD = PKI.node("520000.gongan", ROOT)
PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


def run(main: Callable[[MemoryNetwork], Awaitable[object]]) -> object:
    loop = VirtualClockLoop()

    async def wrapped() -> object:
        network = MemoryNetwork(loop)
        network.add_link("520000", "520000.gongan")
        return await main(network)

    try:
        return loop.run_until_complete(wrapped())
    finally:
        loop.close()


async def serve(network: MemoryNetwork) -> tuple[web.AppRunner, list[bytes]]:
    """The hub serves POST /echo and records the certificate each request came with."""
    seen: list[bytes] = []

    async def echo(request: web.Request) -> web.Response:
        assert request.transport is not None
        der = request.transport.get_extra_info("ssl_object").getpeercert(binary_form=True)
        seen.append(der)
        return web.Response(body=await request.read())

    app = web.Application(client_max_size=2 * len(PAYLOAD))
    app.router.add_post("/echo", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    endpoint = network.endpoint("520000", HUB.certificate, contextvars.copy_context())
    assert runner.server is not None
    assert endpoint.listen(("ignored", 0), runner.server) == ("520000.sim.invalid", 443)
    return runner, seen


def client(network: MemoryNetwork, timeout: float = 30.0) -> aiohttp.ClientSession:
    endpoint: Network = network.endpoint(
        "520000.gongan", CHILD.certificate, contextvars.copy_context()
    )
    return aiohttp.ClientSession(
        connector=endpoint.connector(), timeout=aiohttp.ClientTimeout(total=timeout)
    )


def test_a_request_and_its_answer_cross_with_the_certificates_tls_would_show() -> None:
    async def main(network: MemoryNetwork) -> None:
        runner, seen = await serve(network)
        async with (
            client(network) as session,
            session.post(network.url("520000") + "/echo", data=b"hello") as response,
        ):
            assert await response.read() == b"hello"
        assert [x509.load_der_x509_certificate(der) for der in seen] == [CHILD.certificate]
        (figures,) = network.links()
        assert figures.sent["520000.gongan"] > len(b"hello")
        assert figures.sent["520000"] > len(b"hello")
        assert figures.connections == 1
        assert figures.requests == {"POST /echo": 1}
        assert network.node_figures["520000"][1] == figures.sent["520000.gongan"]
        await runner.cleanup()

    run(main)


def test_latency_and_bandwidth_cost_virtual_time() -> None:
    async def main(network: MemoryNetwork) -> float:
        runner, _ = await serve(network)
        network.shape("520000", "520000.gongan", latency=0.05, bandwidth=1024**2)
        loop = asyncio.get_running_loop()
        async with client(network) as session:
            started = loop.time()
            async with session.post(network.url("520000") + "/echo", data=PAYLOAD) as response:
                assert await response.read() == PAYLOAD
            elapsed = loop.time() - started
        await runner.cleanup()
        return elapsed

    elapsed = run(main)
    assert isinstance(elapsed, float)
    # two round trips to connect, 1 MiB each way at 1 MiB/s, a latency each way
    assert 2.0 + 0.3 <= elapsed < 2.0 + 0.3 + 0.1


def test_a_cut_link_times_out_and_a_node_not_listening_refuses() -> None:
    async def main(network: MemoryNetwork) -> None:
        runner, _ = await serve(network)
        loop = asyncio.get_running_loop()
        network.cut("520000", "520000.gongan")
        async with client(network, timeout=30.0) as session:
            started = loop.time()
            with pytest.raises(TimeoutError):
                await session.post(network.url("520000") + "/echo", data=b"x")
            assert loop.time() - started == pytest.approx(30.0)
        network.restore("520000", "520000.gongan")
        network.endpoint("520000", HUB.certificate, contextvars.copy_context()).stop_listening()
        async with client(network) as session:
            with pytest.raises(aiohttp.ClientOSError, match="not listening"):
                await session.post(network.url("520000") + "/echo", data=b"x")
        await runner.cleanup()

    run(main)


def test_cutting_a_link_resets_its_open_connections() -> None:
    async def main(network: MemoryNetwork) -> None:
        runner, _ = await serve(network)
        network.shape("520000", "520000.gongan", latency=0.0, bandwidth=1024.0)  # slow: 1 KiB/s
        async with client(network) as session:

            async def cut_soon() -> None:
                await asyncio.sleep(5)
                network.cut("520000", "520000.gongan")

            cutter = asyncio.get_running_loop().create_task(cut_soon())
            with pytest.raises(aiohttp.ClientError):
                async with session.post(network.url("520000") + "/echo", data=PAYLOAD) as reply:
                    await reply.read()
            await cutter
        (figures,) = network.links()
        assert figures.resets >= 1
        await runner.cleanup()

    run(main)
