"""THREATS.md names the tests that show each control holds; they must exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_test_named_in_the_threat_model_exists() -> None:
    text = (ROOT / "protocol" / "THREATS.md").read_text("utf-8")
    references = set(re.findall(r"(tests/[\w/]+\.py)::(\w+)", text))
    assert len(references) >= 30
    missing = []
    for path, name in sorted(references):
        source = (ROOT / path).read_text("utf-8") if (ROOT / path).exists() else ""
        if not re.search(rf"^(?:async def|def|class) {name}\b|^{name} = ", source, re.MULTILINE):
            missing.append(f"{path}::{name}")
    assert not missing, f"THREATS.md names tests that do not exist: {missing}"
