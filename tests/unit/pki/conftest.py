"""The PKI tests' synthetic PKI, a fresh one per test."""

from __future__ import annotations

import pytest

from exchnode.testing import SyntheticPKI


@pytest.fixture
def pki() -> SyntheticPKI:
    return SyntheticPKI()
