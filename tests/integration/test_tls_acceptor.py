"""The link server's TLS acceptor on each event loop a node may run on (asyncio, uvloop).

The acceptor takes a plain TCP connection and runs the server-side handshake
itself (``start_tls``), so that it can report refusals; uvloop delivers the
client's first flight before ``start_tls`` is called, which the acceptor must
hand to the TLS layer (``_Handshake.starting_tls``) or the handshake waits
forever for a hello the client already sent.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from exchnode.aio import loop_factory, make_context
from exchnode.aio._tls import TlsAcceptor, peer_certificate
from tests.integration.pki_files import NOW, Federation

LOOPS = ["asyncio", "uvloop"]


class Echo(asyncio.Protocol):
    """The application's protocol: answers each request with its bytes reversed."""

    def __init__(self, seen: dict[str, object]) -> None:
        self.seen = seen

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.seen["peer"] = peer_certificate(transport.get_extra_info("ssl_object"))

    def data_received(self, data: bytes) -> None:
        self.transport.write(data[::-1])


def run_on(choice: str, main: Callable[[], object]) -> None:
    if choice == "uvloop":
        pytest.importorskip("uvloop")
    loop = loop_factory(choice)()
    loop.set_exception_handler(lambda _loop, _context: None)  # refused handshakes log there
    try:
        loop.run_until_complete(asyncio.wait_for(main(), 20))  # type: ignore[arg-type]
    finally:
        loop.close()


def serve_and_ask(
    choice: str,
    server: ssl.SSLContext,
    client: ssl.SSLContext,
    *,
    connections: int = 1,
) -> dict[str, object]:
    seen: dict[str, object] = {"replies": [], "refused": []}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        refused: list[object] = seen["refused"]  # type: ignore[assignment]
        acceptor = TlsAcceptor(
            server, lambda address, code: refused.append(code), handshake_timeout=5
        )
        listener = await loop.create_server(acceptor.protocol(lambda: Echo(seen)), "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        replies: list[bytes] = seen["replies"]  # type: ignore[assignment]
        try:
            for number in range(connections):
                try:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection("127.0.0.1", port, ssl=client), 10
                    )
                except (ssl.SSLError, ConnectionError) as exc:
                    seen["client_error"] = exc
                    return
                request = f"request {number}".encode()
                writer.write(request)  # sent right after the client's Finished
                try:  # under TLS 1.3 a refused client learns it here, not at its handshake
                    await writer.drain()
                    replies.append(await asyncio.wait_for(reader.readexactly(len(request)), 10))
                except (ssl.SSLError, ConnectionError, asyncio.IncompleteReadError) as exc:
                    seen["client_error"] = exc
                    writer.close()
                    break
                seen["open"] = acceptor.open_connections()
                writer.close()
                await writer.wait_closed()
            await asyncio.sleep(0.05)  # the refusal callback of a failed handshake
        finally:
            listener.close()
            await acceptor.close()
            await listener.wait_closed()

    run_on(choice, main)
    return seen


@pytest.fixture
def federation(tmp_path: Path) -> Federation:
    return Federation(tmp_path)


@pytest.mark.parametrize("choice", LOOPS)
def test_the_handshake_completes_and_the_first_request_reaches_the_application(
    federation: Federation, choice: str
) -> None:
    server = make_context(federation.files(federation.hub), server=True)
    client = make_context(federation.files(federation.department), server=False)
    seen = serve_and_ask(choice, server, client, connections=3)
    assert seen.get("client_error") is None
    assert seen["replies"] == [b"0 tseuqer", b"1 tseuqer", b"2 tseuqer"]
    assert str(federation.authenticate(seen["peer"])) == "522301.minzheng"
    assert seen["open"] >= 1


@pytest.mark.parametrize("choice", LOOPS)
def test_a_revoked_client_is_refused_and_reported(federation: Federation, choice: str) -> None:
    federation.pki.revoke(
        federation.department.certificate, federation.cas[2], when=NOW - timedelta(hours=2)
    )
    server = make_context(federation.files(federation.hub), server=True)
    client = make_context(federation.files(federation.department), server=False)
    seen = serve_and_ask(choice, server, client)
    assert seen["replies"] == []
    assert "peer" not in seen  # the application never saw the connection
    assert seen["refused"] == ["revoked"]
