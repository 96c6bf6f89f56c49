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
is too large, 503 that the node is not accepting now (the client backs off),
429 that too many bytes from this peer, or from all peers, are in flight
(``_inflight``: the size is reserved before a byte of the body is read, and a
request that does not fit is answered unread; the client raises
:class:`LinkBusy`, and its items wait as if DEFERRED). A 200 answers every
item.

Besides transfers, neighbours use two small authenticated endpoints:
``POST /exchnode/v1/hello`` (a node that starts, or that reaches a
neighbour again after failures, says so, and the neighbour serves its queue
at once instead of waiting out its backoff) and whatever the node mounts
with ``routes`` (the signed node directory).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import math
import re
import ssl
from collections.abc import Awaitable, Callable, Collection
from typing import Any, Protocol

import aiohttp
from aiohttp import web
from aiohttp.connector import Connection
from cryptography import x509

from exchnode.aio._inflight import InFlight, Reservation
from exchnode.aio._link_stream import (
    MAX_STREAMED_TRANSFER,
    STREAM_PATH,
    StreamCalls,
    StreamClosed,
    StreamServing,
)
from exchnode.aio._tls import TlsAcceptor, address_token, peer_certificate, refusal_code
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
from exchnode.pki import read_node_certificate

__all__ = [
    "HELLO_PATH",
    "STREAM_PATH",
    "TRANSFER_PATH",
    "Custodian",
    "Handler",
    "LinkBusy",
    "LinkClient",
    "LinkError",
    "LinkServer",
    "Network",
    "RefusalSink",
    "reason_code",
]

TRANSFER_PATH = "/exchnode/v1/transfer"
HELLO_PATH = "/exchnode/v1/hello"
CONTENT_TYPE = "application/vnd.exchnode.link+msgpack"

Authenticate = Callable[[x509.Certificate], str]
Admit = Callable[[str, str | None], Awaitable[str | None]]
#: the largest hello body read (SPEC §15.2: ``{"url": ...}``); a larger one is not read
MAX_HELLO_BYTES = 4096
_MAX_WHY_NOT = 1024  # strangers whose admission refusal is remembered (oldest out)


class Custodian(Protocol):
    """What the node provides to the server: the decision on every received item."""

    def __call__(self, neighbour: str, request: TransferRequest) -> Awaitable[TransferResponse]: ...


Handler = Callable[[str, web.Request], Awaitable[web.StreamResponse]]
"""An authenticated endpoint: called with the peer's verified node name and the request."""


class Network(Protocol):
    """Where a node's links run instead of TCP and TLS: the simulator's in-memory network.

    Bound to one node.  Each connection it makes or accepts presents the
    certificate of the node at the other end as TLS does after a handshake
    (``get_extra_info("ssl_object").getpeercert(binary_form=True)``), so the
    server's ``authenticate`` and the client's check of the server's name run
    unchanged.  The daemon never uses one (``exchnode.sim`` does).
    """

    def connector(self) -> aiohttp.BaseConnector:
        """A connector for one link client (it closes it with its session)."""
        ...

    def listen(
        self, address: tuple[str, int], factory: Callable[[], asyncio.BaseProtocol]
    ) -> tuple[str, int]:
        """Serve connections with protocols from ``factory``; the address served."""
        ...

    def stop_listening(self) -> None: ...


class RefusalSink(Protocol):
    """Where the link's refusals go (the node's ``Refusals``): recorded, warned, shown."""

    def refused(
        self,
        *,
        reason: str,
        kind: str,
        peer: str | None = None,
        address: str | None = None,
        by_peer: bool = False,
        text: str | None = None,
    ) -> None: ...

    def admitted(self, peer: str, *, outbound: bool = False) -> None: ...


_BRACKETED = re.compile(r"\[([a-z0-9][a-z0-9._:-]{0,63})\]\s*\Z")


def reason_code(text: str) -> str | None:
    """The error code a refusal's text ends with in brackets (``... [revoked]``), if any."""
    found = _BRACKETED.search(text)
    return None if found is None else found.group(1)


def _claimed_name(certificate: x509.Certificate) -> str | None:
    """The node name a certificate claims, read without trusting it (None if it has none)."""
    try:
        return str(read_node_certificate(certificate).name)
    except (ExchnodeError, ValueError):
        return None


class LinkError(ExchnodeError):
    """A transfer did not complete (connection, timeout, HTTP refusal): retry later.

    ``status`` is the HTTP status if the peer answered, else None.
    """

    code = "link"

    def __init__(
        self, message: str, status: int | None = None, *, refused: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        #: the error code of a refusal (the peer's 403, or this node's of the peer's certificate)
        self.refused = refused


class LinkBusy(LinkError):
    """The peer answered 429: too many bytes in flight there now; try again after ``retry_after``.

    Not a failure of the link (it answered): back-pressure, like a transfer
    answered all DEFERRED.
    """

    code = "link-busy"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message, 429)
        self.retry_after = retry_after


class LinkServer:
    """Accepts transfers from neighbours on one address."""

    def __init__(
        self,
        custodian: Custodian,
        authenticate: Authenticate,
        ssl_context: ssl.SSLContext | None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_transfer_bytes: int = MAX_TRANSFER_BYTES,
        on_hello: Callable[[str], None] | None = None,
        routes: dict[tuple[str, str], Handler] | None = None,
        in_flight: InFlight | None = None,
        neighbours: Collection[str] | None = None,
        refusals: RefusalSink | None = None,
        network: Network | None = None,
        streams: bool = True,
        reuse_port: bool = False,
        admit: Admit | None = None,
    ) -> None:
        """``in_flight``: the bounds on request bytes held at once (None: no bound but the size).

        ``neighbours``: who may call the ``routes`` (None: whoever authenticates); a transfer
        or hello of anyone else is left to the custodian and ``on_hello``, and noted.
        ``refusals``: where every refusal goes, the handshakes OpenSSL refuses included.
        ``network``: serve there instead of on ``host:port`` over TLS (the simulator's; then
        ``ssl_context`` is None).  ``streams``: offer the link stream (SPEC §15.8); without
        it, transfers come as HTTP requests only, as from a server of the previous version.
        ``reuse_port``: share ``host:port`` with the other workers of a hub (``SO_REUSEPORT``;
        the kernel spreads new connections over them).  ``admit``: asked about a stranger's
        hello with the link URL it names; None admits it (it is then in ``neighbours``, which
        the server reads live), else the reason it is refused (403 ``not-a-neighbour``).
        """
        if (ssl_context is None) == (network is None):
            raise UsageError("a link server takes a TLS context or a network, one of them")
        self._network = network
        self._custodian = custodian
        # Read live: the node adds and removes peers while it runs.
        self._neighbours = neighbours
        self._admit_stranger = admit
        self._why_not: dict[str, str] = {}  # a stranger's last admission refusal
        self._refusals = refusals
        self._acceptor = (
            None if ssl_context is None else TlsAcceptor(ssl_context, self._handshake_refused)
        )
        self._in_flight = in_flight
        self._on_hello = on_hello
        self._routes = dict(routes or {})
        self._authenticate = authenticate
        self._ssl = ssl_context
        self._host, self._port = host, port
        self._max = max_transfer_bytes
        self._runner: web.AppRunner | None = None
        self._streams = StreamServing(self._frame)
        self._offer_streams = streams
        self._reuse_port = reuse_port
        self.accepting = True

    async def start(self) -> tuple[str, int]:
        app = web.Application(client_max_size=self._max)
        app.router.add_post(TRANSFER_PATH, self._transfer)
        if self._offer_streams:
            app.router.add_get(STREAM_PATH, self._stream)
        app.router.add_post(HELLO_PATH, self._hello)
        for (method, path), handler in self._routes.items():
            app.router.add_route(method, path, self._authenticated(handler))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        if self._network is not None:
            assert self._runner.server is not None
            return self._network.listen((self._host, self._port), self._runner.server)
        assert self._acceptor is not None  # a TLS context was given (checked at construction)
        site = _TlsSite(
            self._runner, self._host, self._port, self._acceptor, reuse_port=self._reuse_port
        )
        await site.start()
        addresses = self._runner.addresses
        if not addresses:
            raise UsageError(f"transfer server did not bind {self._host}:{self._port}")
        host, port = addresses[0][:2]
        return str(host), int(port)

    async def close(self) -> None:
        await self._streams.close()
        if self._network is not None:
            self._network.stop_listening()
        if self._acceptor is not None:
            await self._acceptor.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def close_connections(self, refused: Callable[[x509.Certificate], bool]) -> int:
        """Cut the open connections whose peer certificate ``refused`` refuses (revoked since)."""
        if self._acceptor is None:
            return 0  # a simulated network: revocation stops new connections only
        return self._acceptor.close_where(refused)

    # --- refusals: each on the record (``refusals``) and answered 403 ending in [code] -------

    def _handshake_refused(self, address: str | None, code: str) -> None:
        if self._refusals is not None:
            self._refusals.refused(reason=code, kind="handshake", address=address)

    def _forbidden(
        self,
        remote: str | None,
        text: str,
        code: str,
        kind: str,
        peer: str | None,
        *,
        cut: bool = False,
    ) -> web.Response:
        if self._refusals is not None:
            self._refusals.refused(reason=code, kind=kind, peer=peer, address=address_token(remote))
        response = _refusal(403, f"{text} [{code}]")
        if cut:
            response.force_close()  # a peer that failed its certificate reconnects, if it can
        return response

    def _not_authenticated(self, request: web.Request, exc: RejectedError) -> web.Response:
        transport = request.transport
        claimed = None
        if transport is not None:
            with contextlib.suppress(RejectedError):
                claimed = _claimed_name(peer_certificate(transport.get_extra_info("ssl_object")))
        return self._forbidden(
            request.remote,
            f"peer not authenticated: {exc}",
            exc.code,
            "certificate",
            claimed,
            cut=True,
        )

    def _stranger(self, neighbour: str) -> bool:
        """Whether ``neighbour`` is not configured here (and so may not call the routes)."""
        return self._neighbours is not None and neighbour not in self._neighbours

    def _admitted(self, neighbour: str) -> None:
        if self._refusals is not None:
            self._refusals.admitted(neighbour)

    def _note_peer(self, neighbour: str, remote: str | None) -> None:
        """A configured neighbour is admitted; a stranger's call goes on the record as refused."""
        if not self._stranger(neighbour):
            self._admitted(neighbour)
        elif self._refusals is not None:
            self._refusals.refused(
                reason="not-a-neighbour",
                kind="neighbour",
                peer=neighbour,
                address=address_token(remote),
            )

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
                return self._not_authenticated(request, exc)
            if self._stranger(neighbour):
                return self._forbidden(
                    request.remote,
                    self._why_not.get(neighbour, f"{neighbour} is not a neighbour"),
                    "not-a-neighbour",
                    "neighbour",
                    neighbour,
                )
            self._admitted(neighbour)
            admitted = self._admit(neighbour, request)
            if isinstance(admitted, web.Response):
                return admitted
            with admitted:
                return await handler(neighbour, request)

        return serve

    def _admit(self, neighbour: str, request: web.Request) -> Reservation | web.Response:
        """Reserve the request's body before reading it, or the answer that refuses it unread."""
        if not request.body_exists:
            size = 0
        elif request.content_length is None:  # chunked: it may grow to the most we read
            size = self._max
        else:
            size = request.content_length
            if size > self._max:
                return _refusal(413, f"a request may carry at most {self._max} bytes")
        held = self._reserve(neighbour, size)
        if isinstance(held, tuple):
            # Unread: aiohttp discards the body as it arrives, nothing of it is buffered.
            status, reason = held
            return _refusal(status, reason, retry_after=1 if status == 429 else None)
        return held

    def _reserve(self, neighbour: str, size: int) -> Reservation | tuple[int, str]:
        """``size`` request bytes reserved (SPEC §15.7), or the status and reason refusing them."""
        budget = self._in_flight
        if budget is None:
            return Reservation(None, neighbour, size)
        if not budget.fits_ever(size):
            return (
                413,
                f"a request from one neighbour may carry at most {budget.per_neighbour} bytes",
            )
        reservation = budget.reserve(neighbour, size)
        if reservation is None:
            return 429, (
                f"too many bytes in flight: {budget.held(neighbour)} from {neighbour} "
                f"(at most {budget.per_neighbour}), {budget.held()} in all "
                f"(at most {budget.total}); retry later"
            )
        return reservation

    async def _hello(self, request: web.Request) -> web.Response:
        try:
            neighbour = self._peer(request)
        except RejectedError as exc:
            return self._not_authenticated(request, exc)
        if self._stranger(neighbour) and self._admit_stranger is not None:
            why = await self._admit_stranger(neighbour, await _hello_url(request))
            self._why_not.pop(neighbour, None)
            if why is not None:
                # Every later 403 to it says the same, so it reads why wherever it calls.
                if len(self._why_not) >= _MAX_WHY_NOT:
                    self._why_not.pop(next(iter(self._why_not)))
                self._why_not[neighbour] = why
                return self._forbidden(
                    request.remote, why, "not-a-neighbour", "neighbour", neighbour
                )
        self._note_peer(neighbour, request.remote)  # a stranger's hello: answered, ignored (§15.2)
        if not self._stranger(neighbour) and self._refusals is not None:
            # A neighbour's hello says it takes this node as its neighbour: a refusal of
            # this node by it has ended (it admitted this node since).
            self._refusals.admitted(neighbour, outbound=True)
        if self._on_hello is not None:
            self._on_hello(neighbour)
        return web.Response(status=204)

    async def _transfer(self, request: web.Request) -> web.Response:
        try:
            neighbour = self._peer(request)
        except RejectedError as exc:
            return self._not_authenticated(request, exc)
        if not self.accepting:
            return _refusal(503, "not accepting transfers now", retry_after=1)
        admitted = self._admit(neighbour, request)
        if isinstance(admitted, web.Response):
            return admitted
        with admitted:
            body = await _read_body(request, self._max)
            if body is None:
                return _refusal(413, f"a transfer may carry at most {self._max} bytes")
            status, answer = await self._decide(neighbour, body, request.remote)
        if status != 200:
            return web.Response(status=status, body=answer, content_type="text/plain")
        return web.Response(body=answer, content_type=CONTENT_TYPE)

    async def _decide(self, neighbour: str, body: bytes, remote: str | None) -> tuple[int, bytes]:
        """One transfer's answer, by the HTTP or the stream route: (status, body or reason)."""
        try:
            transfer = decode_request(body, self._max)
        except RejectedError as exc:
            return 400, f"{exc} [{exc.code}]".encode()
        del body  # the items hold their envelopes; the body's bytes are not needed again
        if transfer.sender != neighbour:
            refused = self._forbidden(
                remote,
                f"transfer claims sender {transfer.sender}, the certificate says {neighbour}",
                "sender-mismatch",
                "sender",
                neighbour,
            )
            return 403, refused.body if isinstance(refused.body, bytes) else b""
        # A stranger's items are refused by the custodian (routing-refused); noted here.
        self._note_peer(neighbour, remote)
        response = await self._custodian(neighbour, transfer)
        return 200, encode_response(response)

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        """The link stream (SPEC §15.8): one neighbour's transfers over one WebSocket."""
        transport = request.transport
        try:
            ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
            certificate = peer_certificate(ssl_object)
            neighbour = self._authenticate(certificate)
        except RejectedError as exc:
            return self._not_authenticated(request, exc)

        def still_valid() -> str | None:
            try:
                self._authenticate(certificate)
            except RejectedError as exc:
                if self._refusals is not None:
                    self._refusals.refused(
                        reason=exc.code,
                        kind="certificate",
                        peer=neighbour,
                        address=address_token(request.remote),
                    )
                return f"peer not authenticated: {exc} [{exc.code}]"
            return None

        return await self._streams.serve(neighbour, request, still_valid)

    async def _frame(self, neighbour: str, body: bytes, remote: str | None) -> tuple[int, bytes]:
        """A transfer from the stream: admitted as an HTTP one would be, then decided."""
        if not self.accepting:
            return 503, b"not accepting transfers now"
        if len(body) > self._max:
            return 413, f"a transfer may carry at most {self._max} bytes".encode()
        held = self._reserve(neighbour, len(body))
        if isinstance(held, tuple):
            return held[0], held[1].encode()
        with held:
            return await self._decide(neighbour, body, remote)


async def _hello_url(request: web.Request) -> str | None:
    """The link URL a hello names (``{"url": "https://host:port"}``), or None."""
    size = request.content_length
    if not request.body_exists or size is None or size > MAX_HELLO_BYTES:
        return None
    try:
        said = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        return None
    url = said.get("url") if isinstance(said, dict) else None
    return url if isinstance(url, str) and 0 < len(url) <= 512 else None


async def _read_body(request: web.Request, limit: int) -> bytes | None:
    """The request's body, or None if it is larger than ``limit``.

    Read chunk by chunk into one buffer of the declared size, and not kept by
    the request: ``request.read()`` keeps its copy for the request's lifetime,
    which would add a body's worth to every transfer while its items are
    decided.  A body that ends before its declared size comes back short (it
    then fails to decode).
    """
    size = request.content_length
    content = request.content
    if size is None:  # chunked
        grown = bytearray()
        while chunk := await content.readany():
            if len(grown) + len(chunk) > limit:
                return None
            grown += chunk
        return bytes(grown)
    if size > limit:
        return None
    buffer = bytearray(size)
    filled = 0
    with memoryview(buffer) as view:
        while filled < size and (chunk := await content.readany()):
            end = min(filled + len(chunk), size)
            view[filled:end] = chunk[: end - filled]
            filled = end
    del buffer[filled:]
    return bytes(buffer)


def _refusal(status: int, reason: str, retry_after: int | None = None) -> web.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return web.Response(status=status, text=reason, headers=headers)


class LinkClient:
    """Sends transfers to one neighbour, and only to that neighbour."""

    def __init__(
        self,
        neighbour: str,
        url: str,
        ssl_context: ssl.SSLContext | None,
        authenticate: Authenticate,
        *,
        timeout: float = 30.0,
        refusals: RefusalSink | None = None,
        connector: aiohttp.BaseConnector | None = None,
    ) -> None:
        """``refusals``: where refusals go, the peer's of this node (its 403) and this node's
        of the peer's certificate; an answer from the peer ends them.  ``connector``: instead
        of TCP with ``ssl_context`` (a ``Network``'s, for the simulator)."""
        self.neighbour = neighbour
        self._refusals = refusals
        self._base = url.rstrip("/")
        self._url = self._base + TRANSFER_PATH
        self._authenticate = authenticate
        self._session = aiohttp.ClientSession(
            connector=connector or aiohttp.TCPConnector(ssl=_required(ssl_context), limit=4),
            timeout=aiohttp.ClientTimeout(total=timeout),
            request_class=_checked_request(self._check_peer),
        )
        # aiohttp retries an idempotent request (the stream's upgrade is a GET) once when the
        # server drops the connection; a link retries on its own backoff (SPEC §15.5), and a
        # peer that refuses this node's certificate must see one handshake per attempt.
        self._session._retry_connection = False
        self._stream = StreamCalls(self._session, self._base + STREAM_PATH, timeout)

    async def transfer(self, request: TransferRequest) -> TransferResponse:
        """Send one transfer; the answer covers every item, or ``LinkError`` is raised.

        Over the link stream (SPEC §15.8) when the neighbour offers it, else
        as an HTTP request of its own (§15.1); the same answer either way.
        """
        data = encode_request(request)
        try:
            streamed = None
            if len(data) <= MAX_STREAMED_TRANSFER:
                streamed = await self._stream.call(data)
            if streamed is not None:
                _, status, body = streamed
                return self._answer(request, status, body, retry_after=1.0)
            async with self._session.post(
                # A file-like body: aiohttp writes it in chunks (and warns on large raw bytes).
                self._url,
                data=io.BytesIO(data),
                headers={"Content-Type": CONTENT_TYPE},
            ) as response:
                body = await response.read()
                retry_after = _retry_after(response)
        except (TimeoutError, aiohttp.ClientError, OSError, StreamClosed) as exc:
            raise self._unreachable(exc) from exc
        return self._answer(request, response.status, body, retry_after=retry_after)

    def _answer(
        self, request: TransferRequest, status: int, body: bytes, *, retry_after: float
    ) -> TransferResponse:
        """The transfer's response, or the ``LinkError`` (``LinkBusy``) its status means."""
        if status != 200:
            text = body.decode("utf-8", "replace").strip()
            reason = text[:300]
            if status == 429:
                raise LinkBusy(
                    f"{self.neighbour} pushed back the transfer: HTTP 429 {reason}", retry_after
                )
            raise LinkError(
                f"{self.neighbour} refused the transfer: HTTP {status} {reason}",
                status,
                refused=self._refused_by_peer(status, text),
            )
        self._answered()
        return decode_response(body, request)

    async def hello(self, url: str | None = None) -> None:
        """Tell the neighbour this node is up (it serves our queue at once).

        ``url``: where this node listens, for a hub that does not know it yet and may
        admit it as a child (SPEC §15.2).
        """
        body = None if not url else json.dumps({"url": url}).encode()
        await self.request("POST", HELLO_PATH, body)

    async def request(self, method: str, path: str, data: bytes | None = None) -> bytes:
        """Any authenticated endpoint of the neighbour; the body of a 2xx answer."""
        try:
            async with self._session.request(method, self._base + path, data=data) as response:
                body = await response.read()
                if not 200 <= response.status < 300:
                    text = body.decode("utf-8", "replace").strip()
                    reason = text[:300]
                    if response.status == 429:
                        raise LinkBusy(
                            f"{self.neighbour} pushed back {method} {path}: HTTP 429 {reason}",
                            _retry_after(response),
                        )
                    raise LinkError(
                        f"{self.neighbour} refused {method} {path}: "
                        f"HTTP {response.status} {reason}",
                        response.status,
                        refused=self._refused_by_peer(response.status, text),
                    )
                self._answered()
                return body
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise self._unreachable(exc) from exc

    def _answered(self) -> None:
        if self._refusals is not None:
            self._refusals.admitted(self.neighbour, outbound=True)

    def _refused_by_peer(self, status: int, text: str) -> str | None:
        """A 403's reason code (the peer refuses this node), noted; None for any other status."""
        if status != 403:
            return None
        code = reason_code(text) or "forbidden"
        if self._refusals is not None:
            self._refusals.refused(
                reason=code, kind="link", peer=self.neighbour, by_peer=True, text=_said(text)
            )
        return code

    def _unreachable(self, exc: BaseException) -> LinkError:
        """The LinkError for a failed connection; a certificate OpenSSL refused is noted."""
        code = None
        if isinstance(exc, aiohttp.ClientConnectorCertificateError):
            code = refusal_code(exc.certificate_error)
            if code is not None and self._refusals is not None:
                self._refusals.refused(reason=code, kind="handshake", peer=self.neighbour)
        return LinkError(f"{self.neighbour} unreachable: {type(exc).__name__}: {exc}", refused=code)

    def _check_peer(self, ssl_object: ssl.SSLObject | None) -> None:
        try:
            name = self._authenticate(peer_certificate(ssl_object))
            if name != self.neighbour:
                raise UntrustedError(
                    f"connected to {name} at {self._url}, expected {self.neighbour}"
                )
        except RejectedError as exc:
            if self._refusals is not None:
                self._refusals.refused(reason=exc.code, kind="certificate", peer=self.neighbour)
            raise

    async def close(self) -> None:
        await self._stream.close()
        await self._session.close()


_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def _said(text: str) -> str:
    """A peer's refusal as this node shows it: one line, bounded, without the ``[code]``."""
    found = _BRACKETED.search(text)
    if found is not None:
        text = text[: found.start()]
    return _CONTROL.sub(" ", text).strip()[:300]


def _required(ssl_context: ssl.SSLContext | None) -> ssl.SSLContext:
    if ssl_context is None:
        raise UsageError("a link client needs a TLS context or a connector")
    return ssl_context


def _retry_after(response: aiohttp.ClientResponse) -> float:
    """The peer's ``Retry-After`` in seconds (default 1, at most an hour)."""
    try:
        retry_after = float(response.headers.get("Retry-After", "1"))
    except ValueError:
        retry_after = 1.0
    if not math.isfinite(retry_after):
        retry_after = 1.0
    return min(max(retry_after, 0.0), 3600.0)


class _TlsSite(web.BaseSite):
    """A TCP site whose TLS handshakes a :class:`TlsAcceptor` runs (refusals reported)."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        acceptor: TlsAcceptor,
        *,
        reuse_port: bool = False,
    ) -> None:
        super().__init__(runner)
        self._host, self._port, self._acceptor = host, port, acceptor
        self._reuse_port = reuse_port

    @property
    def name(self) -> str:
        return f"https://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self._acceptor.protocol(server),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_port=self._reuse_port or None,
        )


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
