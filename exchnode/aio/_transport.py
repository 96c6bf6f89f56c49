"""The transport: link transfers over HTTPS with mutual TLS (aiohttp; federation layer).

Theory of operation
-------------------
A thin I/O shell around the pure link protocol (``link``), in the style of
httpcore: bytes in, decisions elsewhere.

* **Server.** One endpoint, ``POST /exchnode/v1/transfer``. TLS (``tls``)
  has already verified the peer's chain and CRLs. The server then asks
  ``authenticate`` for the peer's node name from its certificate: the node
  runs ``pki_verify`` there, with the division name constraints. The
  transfer's declared ``sender`` must equal that name, so nobody can transfer
  in another neighbour's place. The decoded request goes to the
  ``Custodian``, whose response (one answer per item, plus credit) is sent
  back. The custodian decides everything: routing acceptance, signature
  checks, durable custody, back-pressure.
* **Client.** One ``LinkClient`` per neighbour. On every connection, after
  the TLS handshake and before a byte of the request is written, it checks
  that the server's verified certificate names the neighbour it meant to
  reach. A misconfigured address or a redirected connection never receives
  the transfer. This is done in ``send`` of a request class, the hook aiohttp
  offers through ``ClientSession(request_class=...)``.

HTTP status codes carry only what is not an item's business. 400 means the
transfer itself is malformed, 403 that the peer may not transfer, 413 that it
is too large, 503 that the node is not accepting now (the client backs off).
A 200 answers every item.

Besides transfers, neighbours use two small authenticated endpoints:
``POST /exchnode/v1/hello`` (a node that starts, or that reaches a
neighbour again after failures, says so, and the neighbour serves its queue
at once instead of waiting out its backoff) and whatever the node mounts
with ``routes`` (the signed node directory).
"""

from __future__ import annotations

import io
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import aiohttp
from aiohttp import web
from aiohttp.connector import Connection
from cryptography import x509

from exchnode.aio._tls import peer_certificate
from exchnode.errors import ExchnodeError, RejectedError, UntrustedError, UsageError
from exchnode.federation import (
    MAX_TRANSFER_BYTES,
    TransferRequest,
    TransferResponse,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)

__all__ = [
    "HELLO_PATH",
    "TRANSFER_PATH",
    "Custodian",
    "Handler",
    "LinkClient",
    "LinkError",
    "LinkServer",
]

TRANSFER_PATH = "/exchnode/v1/transfer"
HELLO_PATH = "/exchnode/v1/hello"
CONTENT_TYPE = "application/vnd.exchnode.link+msgpack"

Authenticate = Callable[[x509.Certificate], str]


class Custodian(Protocol):
    """What the node provides to the server: the decision on every received item."""

    def __call__(self, neighbour: str, request: TransferRequest) -> Awaitable[TransferResponse]: ...


Handler = Callable[[str, web.Request], Awaitable[web.StreamResponse]]
"""An authenticated endpoint: called with the peer's verified node name and the request."""


class LinkError(ExchnodeError):
    """A transfer did not complete (connection, timeout, HTTP refusal): retry later.

    ``status`` is the HTTP status if the peer answered, else None.
    """

    code = "link"

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class LinkServer:
    """Accepts transfers from neighbours on one address."""

    def __init__(
        self,
        custodian: Custodian,
        authenticate: Authenticate,
        ssl_context: ssl.SSLContext,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_transfer_bytes: int = MAX_TRANSFER_BYTES,
        on_hello: Callable[[str], None] | None = None,
        routes: dict[tuple[str, str], Handler] | None = None,
    ) -> None:
        self._custodian = custodian
        self._on_hello = on_hello
        self._routes = dict(routes or {})
        self._authenticate = authenticate
        self._ssl = ssl_context
        self._host, self._port = host, port
        self._max = max_transfer_bytes
        self._runner: web.AppRunner | None = None
        self.accepting = True

    async def start(self) -> tuple[str, int]:
        app = web.Application(client_max_size=self._max)
        app.router.add_post(TRANSFER_PATH, self._transfer)
        app.router.add_post(HELLO_PATH, self._hello)
        for (method, path), handler in self._routes.items():
            app.router.add_route(method, path, self._authenticated(handler))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, ssl_context=self._ssl)
        await site.start()
        addresses = self._runner.addresses
        if not addresses:
            raise UsageError(f"transfer server did not bind {self._host}:{self._port}")
        host, port = addresses[0][:2]
        return str(host), int(port)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _peer(self, request: web.Request) -> str:
        """The peer's node name from its verified certificate; RejectedError if none."""
        transport = request.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        return self._authenticate(peer_certificate(ssl_object))

    def _authenticated(self, handler: Handler) -> Callable[[web.Request], Awaitable[Any]]:
        async def serve(request: web.Request) -> web.StreamResponse:
            try:
                neighbour = self._peer(request)
            except RejectedError as exc:
                return _refusal(403, f"peer not authenticated: {exc} [{exc.code}]")
            return await handler(neighbour, request)

        return serve

    async def _hello(self, request: web.Request) -> web.Response:
        try:
            neighbour = self._peer(request)
        except RejectedError as exc:
            return _refusal(403, f"peer not authenticated: {exc} [{exc.code}]")
        if self._on_hello is not None:
            self._on_hello(neighbour)
        return web.Response(status=204)

    async def _transfer(self, request: web.Request) -> web.Response:
        try:
            neighbour = self._peer(request)
        except RejectedError as exc:
            return _refusal(403, f"peer not authenticated: {exc} [{exc.code}]")
        if not self.accepting:
            return _refusal(503, "not accepting transfers now", retry_after=1)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _refusal(413, f"a transfer may carry at most {self._max} bytes")
        try:
            transfer = decode_request(body, self._max)
        except RejectedError as exc:
            return _refusal(400, f"{exc} [{exc.code}]")
        if transfer.sender != neighbour:
            return _refusal(
                403, f"transfer claims sender {transfer.sender}, the certificate says {neighbour}"
            )
        response = await self._custodian(neighbour, transfer)
        return web.Response(body=encode_response(response), content_type=CONTENT_TYPE)


def _refusal(status: int, reason: str, retry_after: int | None = None) -> web.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return web.Response(status=status, text=reason, headers=headers)


class LinkClient:
    """Sends transfers to one neighbour, and only to that neighbour."""

    def __init__(
        self,
        neighbour: str,
        url: str,
        ssl_context: ssl.SSLContext,
        authenticate: Authenticate,
        *,
        timeout: float = 30.0,
    ) -> None:
        self.neighbour = neighbour
        self._base = url.rstrip("/")
        self._url = self._base + TRANSFER_PATH
        self._authenticate = authenticate
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ssl_context, limit=4),
            timeout=aiohttp.ClientTimeout(total=timeout),
            request_class=_checked_request(self._check_peer),
        )

    async def transfer(self, request: TransferRequest) -> TransferResponse:
        """Send one transfer; the answer covers every item, or ``LinkError`` is raised."""
        data = encode_request(request)
        try:
            async with self._session.post(
                # A file-like body: aiohttp writes it in chunks (and warns on large raw bytes).
                self._url,
                data=io.BytesIO(data),
                headers={"Content-Type": CONTENT_TYPE},
            ) as response:
                body = await response.read()
                if response.status != 200:
                    reason = body.decode("utf-8", "replace").strip()[:300]
                    raise LinkError(
                        f"{self.neighbour} refused the transfer: HTTP {response.status} {reason}",
                        response.status,
                    )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise LinkError(f"{self.neighbour} unreachable: {type(exc).__name__}: {exc}") from exc
        return decode_response(body, request)

    async def hello(self) -> None:
        """Tell the neighbour this node is up (it serves our queue at once)."""
        await self.request("POST", HELLO_PATH)

    async def request(self, method: str, path: str, data: bytes | None = None) -> bytes:
        """Any authenticated endpoint of the neighbour; the body of a 2xx answer."""
        try:
            async with self._session.request(method, self._base + path, data=data) as response:
                body = await response.read()
                if not 200 <= response.status < 300:
                    reason = body.decode("utf-8", "replace").strip()[:300]
                    raise LinkError(
                        f"{self.neighbour} refused {method} {path}: "
                        f"HTTP {response.status} {reason}",
                        response.status,
                    )
                return body
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise LinkError(f"{self.neighbour} unreachable: {type(exc).__name__}: {exc}") from exc

    def _check_peer(self, ssl_object: ssl.SSLObject | None) -> None:
        name = self._authenticate(peer_certificate(ssl_object))
        if name != self.neighbour:
            raise UntrustedError(f"connected to {name} at {self._url}, expected {self.neighbour}")

    async def close(self) -> None:
        await self._session.close()


def _checked_request(
    check: Callable[[ssl.SSLObject | None], None],
) -> type[aiohttp.ClientRequest]:
    """A request class that runs ``check`` on the TLS connection before sending."""

    class CheckedRequest(aiohttp.ClientRequest):
        async def send(self, conn: Connection) -> aiohttp.ClientResponse:
            transport = conn.transport
            check(transport.get_extra_info("ssl_object") if transport is not None else None)
            return await super().send(conn)

    return CheckedRequest
