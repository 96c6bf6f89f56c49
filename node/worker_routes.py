"""The services' neighbour endpoints on a hub run as workers: answered by worker 0, for all.

Theory of operation
-------------------
With ``[store] workers = N`` every worker listens on the hub's one link
address (``SO_REUSEPORT``), and the kernel decides which worker a
neighbour's connection lands on.  Transfers are any worker's to take (the
store is shared); but the endpoints the services register
(``NodeService.routes``: the directory's feed, lookup and announcement,
the catalog's feed, lookup and format 1's four, the witness's head) are
answered from state only worker 0 holds in memory (the feeds' numbering,
the catalog, the audit log's heads).  So:

* worker 0 serves the same handlers a second time on a unix socket in its
  state directory (:class:`WorkerRoutes`, ``workers.sock``, mode 0600 in
  the 0700 state directory: only the daemon's own user can connect, who
  can read the node's keys anyway).  Each request carries the neighbour's
  name, which the worker that took the connection authenticated from its
  TLS certificate exactly as worker 0 would (``PEER_HEADER``);
* each other worker attaches a :class:`RouteProxy`, a ``NodeService``
  whose routes are the ones worker 0 lists (``ROUTES_PATH``, asked once at
  the worker's start, so the two can never disagree) and whose handler
  passes the request -- method, path and query, body, content type -- to
  worker 0 and its answer back.  The link server has already authenticated
  the neighbour, refused a stranger and reserved the request's bytes
  before the handler runs; a worker 0 that does not answer is a 503, which
  a neighbour retries like any failed pull.

Why not answer on each worker: the feeds number their changes in memory,
and two workers' numbers would differ; the catalog's and the audit log's
state would have to be kept coherent across processes.  A proxy hop costs a
local round trip on requests that come once a minute per neighbour.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

from exchnode.aio import ServiceMessage
from exchnode.errors import UsageError

if TYPE_CHECKING:
    from exchnode.aio import Node

__all__ = ["PEER_HEADER", "ROUTES_PATH", "RouteProxy", "WorkerRoutes", "fetch_routes"]

#: the authenticated neighbour's name, from the worker that holds its connection
PEER_HEADER = "X-Exchnode-Neighbour"
#: worker 0's list of the routes it answers for the others (JSON ``[[method, path], ...]``)
ROUTES_PATH = "/_workers/routes"

Handler = Callable[[str, web.Request], Awaitable[web.StreamResponse]]
RouteKey = tuple[str, str]


class WorkerRoutes:
    """Worker 0's side: the services' neighbour endpoints on a 0600 unix socket."""

    def __init__(
        self, routes: Mapping[RouteKey, Handler], path: Path, *, max_body_bytes: int
    ) -> None:
        self.routes = dict(routes)
        self.path = path
        self._max = max_body_bytes
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=self._max)
        for (method, route), handler in self.routes.items():
            app.router.add_route(method, route, self._on_behalf(handler))
        listed = sorted([method, route] for method, route in self.routes)
        body = json.dumps(listed).encode()

        async def list_routes(request: web.Request) -> web.Response:
            return web.Response(body=body, content_type="application/json")

        app.router.add_get(ROUTES_PATH, list_routes)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # left by a worker 0 that died: the state lock is ours now
        await web.UnixSite(self._runner, str(self.path)).start()
        # The state directory is 0700: the socket was never reachable by another user.
        os.chmod(self.path, 0o600)

    @staticmethod
    def _on_behalf(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def serve(request: web.Request) -> web.StreamResponse:
            neighbour = request.headers.get(PEER_HEADER)
            if not neighbour:
                return web.Response(status=400, text=f"[malformed] {PEER_HEADER} is required")
            return await handler(neighbour, request)

        return serve

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


async def fetch_routes(path: Path, *, timeout: float) -> list[RouteKey]:
    """The routes worker 0 answers for the workers, asked on its socket (bounded)."""
    connector = aiohttp.UnixConnector(path=str(path))
    try:
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.get(
                f"http://worker-0{ROUTES_PATH}", timeout=aiohttp.ClientTimeout(total=timeout)
            ) as answer,
        ):
            answer.raise_for_status()
            listed = json.loads(await answer.read())
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        reason = str(exc) or type(exc).__name__
        raise UsageError(f"worker 0 does not answer on {path}: {reason}") from None
    if not isinstance(listed, list) or not all(
        isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item)
        for item in listed
    ):
        raise UsageError(f"worker 0 answered {path} with something that is not a route list")
    return [(method, route) for method, route in listed]


class RouteProxy:
    """A worker's ``NodeService``: the services' endpoints, answered by worker 0 (module doc)."""

    kinds: frozenset[str] = frozenset()

    def __init__(self, path: Path, keys: list[RouteKey], *, timeout: float) -> None:
        self.path = path
        self.keys = list(keys)
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self.forwarded = 0  # requests passed to worker 0 (for tests and debugging)

    async def start(self, node: Node) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=str(self.path)),
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            auto_decompress=False,
        )

    def routes(self) -> Mapping[RouteKey, Handler]:
        return dict.fromkeys(self.keys, self._forward)

    async def _forward(self, neighbour: str, request: web.Request) -> web.StreamResponse:
        session = self._session
        if session is None:
            return web.Response(status=503, text="this worker is not serving")
        body = await request.read()
        headers = {PEER_HEADER: neighbour}
        if request.content_type and body:
            headers["Content-Type"] = request.headers.get("Content-Type", request.content_type)
        try:
            async with session.request(
                request.method,
                f"http://worker-0{request.path_qs}",
                data=body or None,
                headers=headers,
            ) as answer:
                data = await answer.read()
                passed = {
                    name: value
                    for name, value in answer.headers.items()
                    if name.lower() in ("content-type", "retry-after")
                }
                self.forwarded += 1
                return web.Response(status=answer.status, body=data, headers=passed)
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Worker 0 restarting or overloaded: the neighbour retries as after any failure.
            reason = str(exc) or type(exc).__name__
            return web.Response(status=503, text=f"worker 0 did not answer: {reason}")

    async def take(self, message: ServiceMessage) -> None:
        raise UsageError("the route proxy takes no messages")  # kinds is empty

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
