"""Worker 0's unix socket and a worker's proxy of the services' endpoints (``node.worker_routes``).

In one process, over a real unix socket: the proxy learns the routes from
worker 0, passes method, path with query, body, content type and the
neighbour's name, and brings status, body, content type and Retry-After back;
a request without the neighbour's name is refused at worker 0; a worker 0
that is gone is a 503 the neighbour retries; the socket is 0600.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from exchnode.errors import UsageError
from exchnode.node.worker_routes import PEER_HEADER, RouteProxy, WorkerRoutes, fetch_routes

pytestmark = pytest.mark.timeout(30)


async def echo(neighbour: str, request: web.Request) -> web.StreamResponse:
    body = await request.read()
    document = {
        "neighbour": neighbour,
        "method": request.method,
        "query": dict(request.query),
        "content_type": request.content_type,
        "body": body.decode(),
    }
    return web.json_response(document, status=202, headers={"Retry-After": "3"})


def request_to_proxy(method: str, path: str, body: bytes = b"") -> Any:
    headers = {"Content-Type": "application/vnd.exchnode.test"} if body else {}

    class Payload:
        async def read(self) -> bytes:
            return body

    request = make_mocked_request(method, path, headers=headers)
    request.read = Payload().read  # type: ignore[method-assign]
    return request


@pytest.mark.asyncio
async def test_the_proxy_passes_requests_to_worker_0_on_behalf_of_the_neighbour(
    tmp_path: Path,
) -> None:
    path = tmp_path / "workers.sock"
    routes = WorkerRoutes(
        {("POST", "/exchnode/v1/x"): echo, ("GET", "/exchnode/v1/y"): echo},
        path,
        max_body_bytes=1024,
    )
    await routes.start()
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        keys = await fetch_routes(path, timeout=5)
        assert sorted(keys) == [("GET", "/exchnode/v1/y"), ("POST", "/exchnode/v1/x")]
        proxy = RouteProxy(path, keys, timeout=5)
        await proxy.start(None)
        try:
            handler = proxy.routes()[("POST", "/exchnode/v1/x")]
            answer: Any = await handler(
                "520102.gongan", request_to_proxy("POST", "/exchnode/v1/x?a=1&b=two", b"page")
            )
            assert answer.status == 202
            assert answer.headers["Retry-After"] == "3"
            assert answer.content_type == "application/json"
            assert json.loads(answer.body) == {
                "neighbour": "520102.gongan",
                "method": "POST",
                "query": {"a": "1", "b": "two"},
                "content_type": "application/vnd.exchnode.test",
                "body": "page",
            }
            assert proxy.forwarded == 1
        finally:
            await proxy.close()
    finally:
        await routes.close()
    assert not path.exists()


@pytest.mark.asyncio
async def test_worker_0_refuses_a_request_that_names_no_neighbour(tmp_path: Path) -> None:
    path = tmp_path / "workers.sock"
    routes = WorkerRoutes({("GET", "/exchnode/v1/y"): echo}, path, max_body_bytes=1024)
    await routes.start()
    try:
        async with (
            aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(path))) as session,
            session.get("http://worker-0/exchnode/v1/y") as answer,
        ):
            assert answer.status == 400
            assert PEER_HEADER in await answer.text()
    finally:
        await routes.close()


@pytest.mark.asyncio
async def test_a_worker_0_that_is_gone_is_a_503_and_no_routes(tmp_path: Path) -> None:
    path = tmp_path / "workers.sock"
    with pytest.raises(UsageError, match="worker 0 does not answer"):
        await fetch_routes(path, timeout=2)
    proxy = RouteProxy(path, [("GET", "/exchnode/v1/y")], timeout=2)
    await proxy.start(None)
    try:
        answer: Any = await proxy.routes()[("GET", "/exchnode/v1/y")](
            "520102.gongan", request_to_proxy("GET", "/exchnode/v1/y")
        )
        assert answer.status == 503
        assert answer.text.startswith("worker 0 did not answer")
    finally:
        await proxy.close()
