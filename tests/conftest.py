from __future__ import annotations

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
