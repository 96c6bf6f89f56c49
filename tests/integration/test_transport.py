"""Link transfers over HTTPS with mutual TLS, on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from exchnode.aio import LinkClient, LinkError, make_context
from exchnode.aio._transport import LinkServer
from exchnode.errors import UntrustedError
from exchnode.federation import Credit, Item, ItemResult, Status, TransferRequest, TransferResponse
from tests.integration.pki_files import Federation

REQUEST = TransferRequest(
    "522301.minzheng",
    b"\x05" * 16,
    (Item(b"sealed-1", ("520100.fagai",)), Item(b"sealed-2", ("520000.tongji",))),
)


class Recorder:
    """A custodian that takes everything and remembers who handed it over."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, TransferRequest]] = []

    async def __call__(self, neighbour: str, request: TransferRequest) -> TransferResponse:
        self.calls.append((neighbour, request))
        results = tuple(
            ItemResult(Status.TAKEN) if i == 0 else ItemResult(Status.DEFERRED)
            for i, _ in enumerate(request.items)
        )
        return TransferResponse(request.transfer_id, results, Credit(10, 1 << 20))


def run(test: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(asyncio.wait_for(test(), 60))


@pytest.fixture
def federation(tmp_path: Path) -> Federation:
    return Federation(tmp_path)


async def serve(federation: Federation, recorder: Recorder, **options: Any) -> LinkServer:
    server = LinkServer(
        recorder,
        federation.authenticate,
        make_context(federation.files(federation.hub), server=True),
        **options,
    )
    return server


def client_for(federation: Federation, port: int, neighbour: str = "520100") -> LinkClient:
    return LinkClient(
        neighbour,
        f"https://127.0.0.1:{port}",
        make_context(federation.files(federation.department), server=False),
        federation.authenticate,
        timeout=10,
    )


def test_a_transfer_moves_items_and_names_both_ends(federation: Federation) -> None:
    recorder = Recorder()

    async def scenario() -> TransferResponse:
        server = await serve(federation, recorder)
        _, port = await server.start()
        client = client_for(federation, port)
        try:
            return await client.transfer(REQUEST)
        finally:
            await client.close()
            await server.close()

    response = run(scenario)
    assert recorder.calls == [("522301.minzheng", REQUEST)]
    assert [r.status for r in response.results] == [Status.TAKEN, Status.DEFERRED]
    assert response.credit == Credit(10, 1 << 20)


def test_a_sender_claiming_another_name_is_refused(federation: Federation) -> None:
    recorder = Recorder()

    async def scenario() -> LinkError:
        server = await serve(federation, recorder)
        _, port = await server.start()
        client = client_for(federation, port)
        try:
            with pytest.raises(LinkError) as caught:
                await client.transfer(REQUEST._replace(sender="522301.gongan"))
            return caught.value
        finally:
            await client.close()
            await server.close()

    error = run(scenario)
    assert error.status == 403
    assert "the certificate says 522301.minzheng" in str(error)
    assert recorder.calls == []


def test_the_client_never_sends_to_the_wrong_neighbour(federation: Federation) -> None:
    recorder = Recorder()

    async def scenario() -> None:
        server = await serve(federation, recorder)
        _, port = await server.start()
        client = client_for(federation, port, neighbour="520300")
        try:
            with pytest.raises(UntrustedError, match="expected 520300"):
                await client.transfer(REQUEST)
        finally:
            await client.close()
            await server.close()

    run(scenario)
    assert recorder.calls == []  # checked before a byte of the transfer was written


def test_too_large_and_malformed_transfers(federation: Federation) -> None:
    recorder = Recorder()

    async def scenario() -> list[LinkError]:
        server = await serve(federation, recorder, max_transfer_bytes=64 * 1024)
        _, port = await server.start()
        client = client_for(federation, port)
        errors = []
        try:
            big = REQUEST._replace(items=(Item(b"x" * 100_000, ("520100.fagai",)),))
            for request in (big,):
                with pytest.raises(LinkError) as caught:
                    await client.transfer(request)
                errors.append(caught.value)
            async with client._session.post(
                f"https://127.0.0.1:{port}/exchnode/v1/transfer", data=b"\xc1garbage"
            ) as response:
                errors.append(LinkError(await response.text(), response.status))
        finally:
            await client.close()
            await server.close()
        return errors

    too_large, malformed = run(scenario)
    assert too_large.status == 413
    assert malformed.status == 400
    assert "[malformed]" in str(malformed)
    assert recorder.calls == []


def test_a_paused_server_answers_503_and_an_absent_one_is_unreachable(
    federation: Federation,
) -> None:
    recorder = Recorder()

    async def scenario() -> list[LinkError]:
        server = await serve(federation, recorder)
        _, port = await server.start()
        server.accepting = False
        client = client_for(federation, port)
        errors = []
        try:
            with pytest.raises(LinkError) as caught:
                await client.transfer(REQUEST)
            errors.append(caught.value)
            await server.close()
            with pytest.raises(LinkError) as caught:
                await client.transfer(REQUEST)
            errors.append(caught.value)
        finally:
            await client.close()
            await server.close()
        return errors

    paused, gone = run(scenario)
    assert paused.status == 503
    assert gone.status is None
    assert "unreachable" in str(gone)
