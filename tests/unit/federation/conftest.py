"""The directory tests' federation, a fresh one per test."""

from __future__ import annotations

import pytest

from tests.unit.federation.directories import Federation


@pytest.fixture
def fed() -> Federation:
    return Federation()
