"""Link transfers over HTTPS with mutual TLS, on loopback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from exchnode.aio import LinkClient, LinkError, make_context
from exchnode.aio._transport import LinkServer
from exchnode.errors import CertificateRevokedError, UntrustedError
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


@dataclass(frozen=True, slots=True)
class Link:
    server: LinkServer
    client: LinkClient
    port: int


@contextlib.asynccontextmanager
async def linked(
    federation: Federation, recorder: Recorder, *, neighbour: str = "520100", **options: Any
) -> AsyncIterator[Link]:
    """The hub's link server (``options`` its settings) and the department's client of it.

    Both are closed on the way out, whatever the test did to them.
    """
    server = await serve(federation, recorder, **options)
    _, port = await server.start()
    client = client_for(federation, port, neighbour)
    try:
        yield Link(server, client, port)
    finally:
        await client.close()
        await server.close()


def test_a_transfer_moves_items_and_names_both_ends(federation: Federation) -> None:
    recorder = Recorder()

    async def scenario() -> TransferResponse:
        async with linked(federation, recorder) as link:
            return await link.client.transfer(REQUEST)

    response = run(scenario)
    assert recorder.calls == [("522301.minzheng", REQUEST)]
    assert [r.status for r in response.results] == [Status.TAKEN, Status.DEFERRED]
    assert response.credit == Credit(10, 1 << 20)


def test_a_sender_claiming_another_name_is_refused(federation: Federation) -> None:
    recorder = Recorder()

    async def scenario() -> LinkError:
        async with linked(federation, recorder) as link:
            with pytest.raises(LinkError) as caught:
                await link.client.transfer(REQUEST._replace(sender="522301.gongan"))
            return caught.value

    error = run(scenario)
    assert error.status == 403
    assert "the certificate says 522301.minzheng" in str(error)
    assert recorder.calls == []


def test_the_client_never_sends_to_the_wrong_neighbour(federation: Federation) -> None:
    recorder = Recorder()

    async def scenario() -> None:
        async with linked(federation, recorder, neighbour="520300") as link:
            with pytest.raises(UntrustedError, match="expected 520300"):
                await link.client.transfer(REQUEST)

    run(scenario)
    assert recorder.calls == []  # checked before a byte of the transfer was written


def test_too_large_and_malformed_transfers(federation: Federation) -> None:
    recorder = Recorder()

    async def scenario() -> list[LinkError]:
        errors = []
        async with linked(federation, recorder, max_transfer_bytes=64 * 1024) as link:
            big = REQUEST._replace(items=(Item(b"x" * 100_000, ("520100.fagai",)),))
            for request in (big,):
                with pytest.raises(LinkError) as caught:
                    await link.client.transfer(request)
                errors.append(caught.value)
            async with link.client._session.post(
                f"https://127.0.0.1:{link.port}/exchnode/v1/transfer", data=b"\xc1garbage"
            ) as response:
                errors.append(LinkError(await response.text(), response.status))
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
        errors = []
        async with linked(federation, recorder) as link:
            link.server.accepting = False
            with pytest.raises(LinkError) as caught:
                await link.client.transfer(REQUEST)
            errors.append(caught.value)
            await link.server.close()
            with pytest.raises(LinkError) as caught:
                await link.client.transfer(REQUEST)
            errors.append(caught.value)
        return errors

    paused, gone = run(scenario)
    assert paused.status == 503
    assert gone.status is None
    assert "unreachable" in str(gone)


# --- the link stream (SPEC §15.8) ------------------------------------------------------------


def test_transfers_share_one_stream_and_concurrent_answers_find_their_calls(
    federation: Federation,
) -> None:
    recorder = Recorder()

    async def scenario() -> tuple[list[TransferResponse], int]:
        async with linked(federation, recorder) as link:
            requests = [REQUEST._replace(transfer_id=bytes([i]) * 16) for i in range(20)]
            responses = await asyncio.gather(*(link.client.transfer(r) for r in requests))
            again = await link.client.transfer(REQUEST)
            assert link.server._acceptor is not None
            return [*responses, again], link.server._acceptor.open_connections()

    responses, connections = run(scenario)
    assert [r.transfer_id for r in responses[:20]] == [bytes([i]) * 16 for i in range(20)]
    assert len(recorder.calls) == 21
    assert connections == 1  # every transfer over the one stream: one TLS handshake in all


def test_a_server_without_the_stream_gets_http_transfers(federation: Federation) -> None:
    recorder = Recorder()

    async def scenario() -> TransferResponse:
        async with linked(federation, recorder, streams=False) as link:
            await link.client.transfer(REQUEST)
            return await link.client.transfer(REQUEST)

    response = run(scenario)
    assert [r.status for r in response.results] == [Status.TAKEN, Status.DEFERRED]
    assert len(recorder.calls) == 2


def test_a_streamed_transfer_is_refused_as_an_http_one_would_be(federation: Federation) -> None:
    recorder = Recorder()

    async def scenario() -> list[LinkError]:
        errors = []
        async with linked(federation, recorder, max_transfer_bytes=64 * 1024) as link:
            big = REQUEST._replace(items=(Item(b"x" * 100_000, ("520100.fagai",)),))
            liar = REQUEST._replace(sender="520100.fagai")
            for paused, request in ((True, REQUEST), (False, big), (False, liar)):
                link.server.accepting = not paused
                with pytest.raises(LinkError) as caught:
                    await link.client.transfer(request)
                errors.append(caught.value)
            assert link.server._acceptor is not None
            assert link.server._acceptor.open_connections() == 1  # refusals keep the stream
        return errors

    paused, too_large, liar = run(scenario)
    assert (paused.status, too_large.status, liar.status) == (503, 413, 403)
    assert "sender-mismatch" in str(liar)
    assert recorder.calls == []


def test_a_streamed_transfer_whose_decision_fails_is_answered_503_at_once(
    federation: Federation,
) -> None:
    # Its store failed, say: nothing was taken, and the sender hears so now (it retries after
    # a second), not when its link timeout runs out; the stream carries on.
    recorder = Recorder()
    failures = [RuntimeError("the store failed")]

    async def failing_once(neighbour: str, request: TransferRequest) -> TransferResponse:
        if failures:
            raise failures.pop()
        return await recorder(neighbour, request)

    async def scenario() -> tuple[LinkError, TransferResponse, float]:
        async with linked(federation, recorder) as link:
            link.server._custodian = failing_once
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(LinkError) as caught:
                await link.client.transfer(REQUEST)
            waited = loop.time() - started
            response = await link.client.transfer(REQUEST)
            assert link.server._acceptor is not None
            assert link.server._acceptor.open_connections() == 1
            return caught.value, response, waited

    error, response, waited = run(scenario)
    assert error.status == 503
    assert waited < 5  # the client's timeout is 10 s
    assert [r.status for r in response.results] == [Status.TAKEN, Status.DEFERRED]


def test_a_certificate_that_stops_holding_ends_the_stream(federation: Federation) -> None:
    recorder = Recorder()
    refusing = False

    def authenticate(certificate: Any) -> str:
        if refusing:
            raise CertificateRevokedError("revoked since the stream opened")
        return federation.authenticate(certificate)

    async def scenario() -> tuple[LinkError, LinkError]:
        nonlocal refusing
        server = LinkServer(
            recorder, authenticate, make_context(federation.files(federation.hub), server=True)
        )
        _, port = await server.start()
        client = client_for(federation, port)
        try:
            await client.transfer(REQUEST)  # opens the stream
            refusing = True
            with pytest.raises(LinkError) as on_the_stream:
                await client.transfer(REQUEST)
            with pytest.raises(LinkError) as afterwards:  # the upgrade refused: by HTTP
                await client.transfer(REQUEST)
            return on_the_stream.value, afterwards.value
        finally:
            await client.close()
            await server.close()

    on_the_stream, afterwards = run(scenario)
    assert (on_the_stream.status, on_the_stream.refused) == (403, "revoked")
    assert (afterwards.status, afterwards.refused) == (403, "revoked")
    assert len(recorder.calls) == 1
