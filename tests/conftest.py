from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import pytest

from exchnode.core import LocalIdentity, StaticDirectory
from exchnode.testing import seeded_directory, seeded_identity
from tests.cast import HUB, OTHER, RECIPIENT, SENDER


@pytest.fixture(scope="session")
def cast() -> dict[str, LocalIdentity]:
    return {name: seeded_identity(name) for name in (SENDER, RECIPIENT, OTHER, HUB)}


@pytest.fixture
def directory(cast: dict[str, LocalIdentity]) -> StaticDirectory:
    return seeded_directory(*cast.values())



if os.environ.get("EXCHNODE_LOOP") == "uvloop":

    def pytest_asyncio_loop_factories(
        config: pytest.Config, item: pytest.Item
    ) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
        """``EXCHNODE_LOOP=uvloop``: the in-process tests run on uvloop, as the daemon does."""
        import uvloop

        return {"uvloop": uvloop.new_event_loop}
