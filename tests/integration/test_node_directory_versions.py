"""SPEC §14.17: a node on directory format 2 next to a neighbour still on format 1.

The old neighbour is a :class:`DirectoryService` that serves and pulls only
format-1 snapshots (no changes, no lookup endpoint), as a node of the
previous version does.  Both directions must keep working: the new node falls
back to pulling the old one's snapshot, and the old one gets a snapshot of
what the new one says to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from pathlib import Path

import pytest
from aiohttp import web

from exchnode.aio import DirectoryService, Node
from exchnode.aio._directory_service import (
    DIRECTORY_CHANGED_PATH,
    DIRECTORY_CONTENT_TYPE,
    DIRECTORY_PATH,
)
from exchnode.aio._transport import Handler
from tests.integration.federation import Federation, one_delivery, started

NAMES = ["520102", "520102.gongan", "520102.minzheng"]


class Format1Service(DirectoryService):
    """What a node of the previous version runs: snapshots only."""

    def routes(self) -> Mapping[tuple[str, str], Handler]:
        return {
            key: handler
            for key, handler in super().routes().items()
            if key[1] in (DIRECTORY_PATH, DIRECTORY_CHANGED_PATH)
        }

    async def _pull(self, name: str) -> bool:
        return await self._pull_snapshot(name)

    async def _changed(self, sources: list[str]) -> None:
        self._announced.clear()  # the previous version announced every change to everyone
        await super()._changed(sources)

    async def _serve_snapshot(self, neighbour: str, request: web.Request) -> web.Response:
        # The previous version served everything it knew to every neighbour.
        data = self.directory.sign(time.time(), self.lifetime)
        return web.Response(body=data, content_type=DIRECTORY_CONTENT_TYPE)


def running(
    federation: Federation, old: str
) -> contextlib.AbstractAsyncContextManager[dict[str, Node]]:
    nodes = {}
    for name in NAMES:
        if name == old:
            config = federation.config(name)
            service = Format1Service.for_node(federation.nodes[name].identity, config)
            nodes[name] = federation.node(name, directory=None, services=[service])
        else:
            nodes[name] = federation.node(name, directory=None)
    return started(nodes)


@pytest.mark.asyncio
async def test_a_format_2_hub_pulls_a_format_1_department_and_serves_it(tmp_path: Path) -> None:
    federation = Federation(tmp_path, NAMES)
    async with running(federation, old="520102.minzheng") as nodes:
        await nodes["520102.gongan"].wait_known(["520102.minzheng"], timeout=20)
        # The old department pulled a format-1 snapshot of what the hub says to a child.
        await nodes["520102.minzheng"].wait_known(["520102"], timeout=20)
        hub = nodes["520102"]._directory_service
        assert hub is not None
        assert "520102.minzheng" in hub._format1
        await nodes["520102.gongan"].send(["520102.minzheng"], b"to the old one")
        assert await asyncio.wait_for(one_delivery(nodes["520102.minzheng"]), 20) == (
            b"to the old one"
        )


@pytest.mark.asyncio
async def test_a_format_2_department_pulls_a_format_1_hub(tmp_path: Path) -> None:
    federation = Federation(tmp_path, NAMES)
    async with running(federation, old="520102") as nodes:
        # The old hub serves everything it knows; the new department takes it as before.
        await nodes["520102.gongan"].wait_known(["520102.minzheng"], timeout=20)
        directory = nodes["520102.gongan"].node_directory
        assert directory is not None
        assert set(directory.names(time.time())) == set(NAMES)
