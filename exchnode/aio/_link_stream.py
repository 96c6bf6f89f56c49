"""The link stream (SPEC §15.8): transfers over one WebSocket per neighbour that stays open.

Why a module of its own: a transfer in its own HTTP request costs the
receiver a request to parse and a response to build, and a neighbour that
sends less often than the HTTP keep-alive also a TLS handshake per message
(issue 14: ~3.3 ms of a hub's CPU per sparse message).  A department sends
now and then, a hub has hundreds of them: so each link keeps one WebSocket
open, over the same mutual TLS (the client has checked the server's name
before the upgrade, as for any request), pinged every ``HEARTBEAT`` seconds,
and each transfer is one binary message (``exchnode.federation``'s frames),
answered with the status and body the HTTP transfer would have had.  What
a transfer means, and every check on it, is the link server's and the
custodian's, unchanged (``_transport``).

* :class:`StreamServing` is the server's side: it reads frames and answers
  each in a task of its own, so several transfers of one neighbour are
  decided at once (and committed together, the node's group commit).
* :class:`StreamCalls` is the client's side: it opens the stream on first
  use, matches answers to calls by id, and fails every call in flight when
  the stream closes (the sender resends: transfers are idempotent).  A
  neighbour that answers the upgrade 404 speaks only the HTTP transfer (the
  previous version, §13): the client uses that, and asks again later.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Awaitable, Callable

import aiohttp
import structlog
from aiohttp import web

from exchnode.errors import MalformedError
from exchnode.federation import (
    StreamAnswer,
    parse_request_frame,
    parse_response_frame,
    request_frame,
    response_frame,
)

__all__ = [
    "HEARTBEAT",
    "MAX_STREAMED_TRANSFER",
    "STREAM_PATH",
    "STREAM_PROTOCOL",
    "StreamCalls",
    "StreamClosed",
    "StreamServing",
]

_log = structlog.get_logger("exchnode.link")

STREAM_PATH = "/exchnode/v1/link"
STREAM_PROTOCOL = "exchnode.link.1"
#: Seconds between pings on a quiet stream; a peer silent for half as long again is gone.
HEARTBEAT = 30.0
#: After a neighbour answered the upgrade 404, how long to use HTTP before asking again.
REPROBE_AFTER = 600.0
#: The largest transfer a stream carries; a larger one is an HTTP transfer of its own (its
#: own request costs little beside its size), and a larger frame closes the stream.
MAX_STREAMED_TRANSFER = 1024 * 1024
#: The largest answer a client takes: a transfer's response (4,096 results with reasons).
MAX_ANSWER_BYTES = 16 * 1024 * 1024

#: How the link server decides one transfer: (neighbour, request bytes, peer address)
#: -> (status, body).
Decide = Callable[[str, bytes, str | None], Awaitable[tuple[int, bytes]]]
#: Whether the peer's certificate still holds (not expired, not revoked since the upgrade):
#: None if it does, else the 403 reason that closes the stream.
StillValid = Callable[[], str | None]


def _time_out(answered: asyncio.Future[StreamAnswer]) -> None:
    if not answered.done():
        answered.set_exception(TimeoutError("no answer on the link stream in time"))


class StreamClosed(ConnectionError):
    """The stream closed with this call in flight: no answer will come (resend)."""


class StreamServing:
    """The server's side: every open stream, each frame decided by ``decide``."""

    def __init__(self, decide: Decide) -> None:
        self._decide = decide
        self._open: set[web.WebSocketResponse] = set()

    async def serve(
        self, neighbour: str, request: web.Request, still_valid: StillValid
    ) -> web.StreamResponse:
        """Upgrade ``request`` (from ``neighbour``, authenticated) and serve its frames.

        ``still_valid`` is asked before each frame is decided: a stream outlives
        the request that opened it, so a certificate that expires or is revoked
        while it is open ends it, as it would refuse the next HTTP request.
        """
        ws = web.WebSocketResponse(
            protocols=(STREAM_PROTOCOL,),
            heartbeat=HEARTBEAT,
            max_msg_size=MAX_STREAMED_TRANSFER + 8,
            compress=False,
        )
        await ws.prepare(request)
        self._open.add(ws)
        sending = asyncio.Lock()
        remote = request.remote
        answering: set[asyncio.Task[None]] = set()
        try:
            async for message in ws:
                if message.type is aiohttp.WSMsgType.ERROR:
                    break  # aiohttp has closed it with the code that says why (1009: too large)
                if message.type is not aiohttp.WSMsgType.BINARY:
                    await ws.close(code=aiohttp.WSCloseCode.UNSUPPORTED_DATA)
                    break
                refused = still_valid()
                if refused is not None:
                    with contextlib.suppress(ConnectionError):
                        frame_id, _ = parse_request_frame(message.data)
                        async with sending:
                            await ws.send_bytes(response_frame(frame_id, 403, refused.encode()))
                    await ws.close(code=aiohttp.WSCloseCode.POLICY_VIOLATION)
                    break
                task = asyncio.create_task(
                    self._answer(ws, sending, neighbour, remote, message.data)
                )
                answering.add(task)
                task.add_done_callback(answering.discard)
        finally:
            self._open.discard(ws)
            # What is being decided is let finish: its custody is the custodian's business,
            # and an answer that cannot be sent any more is resent for by the client.
            if answering:
                await asyncio.gather(*answering, return_exceptions=True)
        return ws

    async def _answer(
        self,
        ws: web.WebSocketResponse,
        sending: asyncio.Lock,
        neighbour: str,
        remote: str | None,
        data: bytes,
    ) -> None:
        try:
            frame_id, body = parse_request_frame(data)
        except MalformedError:
            await ws.close(code=aiohttp.WSCloseCode.PROTOCOL_ERROR)
            return
        del data
        try:
            status, answer = await self._decide(neighbour, body, remote)
        except Exception:
            # Deciding failed (say the store did): nothing is answered TAKEN, and the sender
            # hears so at once (503, SPEC §15.8: it tries again after a second) instead of
            # after its timeout -- as the HTTP transfer answers 500.
            _log.exception("transfer not decided", neighbour=neighbour)
            status, answer = 503, b"the transfer could not be decided now; nothing was taken"
        async with sending:
            if not ws.closed:
                with contextlib.suppress(ConnectionError):
                    await ws.send_bytes(response_frame(frame_id, status, answer))

    async def close(self) -> None:
        """Close every open stream (going away): their clients reconnect, or use HTTP."""
        for ws in list(self._open):
            with contextlib.suppress(Exception):
                await ws.close(code=aiohttp.WSCloseCode.GOING_AWAY)


class StreamCalls:
    """The client's side of one neighbour's stream, opened on first use."""

    def __init__(self, session: aiohttp.ClientSession, url: str, timeout: float) -> None:
        self._session = session
        self._url = url
        self._timeout = timeout
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._opening = asyncio.Lock()
        self._pending: dict[int, asyncio.Future[StreamAnswer]] = {}
        self._ids = itertools.count(1)
        self._http_until = 0.0  # monotonic: until then the neighbour is known to answer 404

    async def call(self, body: bytes) -> StreamAnswer | None:
        """Send one transfer request; its answer, or None: use the HTTP transfer this time.

        Connection failures raise as aiohttp's (the caller's link errors);
        a stream that closes with this call in flight raises :class:`StreamClosed`.
        """
        ws = await self._connected()
        if ws is None:
            return None
        frame_id = next(self._ids)
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[StreamAnswer] = loop.create_future()
        self._pending[frame_id] = answered
        # A timer on the answer itself, not ``wait_for``: no task or future more per transfer,
        # and a cancellation is never lost to an answer arriving at the same moment (gh-86296).
        timer = loop.call_later(self._timeout, _time_out, answered)
        try:
            await ws.send_bytes(request_frame(frame_id, body))
            return await answered
        finally:
            timer.cancel()
            self._pending.pop(frame_id, None)

    async def _connected(self) -> aiohttp.ClientWebSocketResponse | None:
        async with self._opening:
            if self._ws is not None and not self._ws.closed:
                return self._ws
            if time.monotonic() < self._http_until:
                return None
            try:
                ws = await self._session.ws_connect(
                    self._url,
                    protocols=(STREAM_PROTOCOL,),
                    heartbeat=HEARTBEAT,
                    max_msg_size=MAX_ANSWER_BYTES,
                    compress=0,
                )
            except aiohttp.WSServerHandshakeError as exc:
                if exc.status in (404, 405):  # the previous version: HTTP transfers only
                    self._http_until = time.monotonic() + REPROBE_AFTER
                # Any other refusal (403, 429, 503): the HTTP transfer gets it with its reason.
                return None
            self._ws = ws
            self._reader = asyncio.create_task(self._read(ws))
            return ws

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for message in ws:
                if message.type is not aiohttp.WSMsgType.BINARY:
                    break
                try:
                    answer = parse_response_frame(message.data)
                except MalformedError:
                    break
                waiting = self._pending.get(answer[0])
                if waiting is not None and not waiting.done():
                    waiting.set_result(answer)
        finally:
            with contextlib.suppress(Exception):
                await ws.close()
            for waiting in self._pending.values():
                if not waiting.done():
                    waiting.set_exception(StreamClosed("the link stream closed"))

    async def close(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
