"""Log lines for conditions that repeat: one per interval per key, with what was left out."""

from __future__ import annotations

from typing import Any

from exchnode.aio._context import RepeatedLog


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        return lambda event, **fields: self.lines.append((level, event, fields))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_repeated_condition_is_written_once_per_interval_with_the_count() -> None:
    log, clock = Log(), Clock()
    repeated = RepeatedLog(log, 60.0, clock=clock)
    assert repeated("info", "item deferred", "520100", "unknown-signer", code="unknown-signer")
    for _ in range(999):
        clock.now += 0.01
        assert not repeated("info", "item deferred", "520100", "unknown-signer")
    # Another neighbour, or another reason, is another condition.
    assert repeated("info", "item deferred", "520102", "unknown-signer")
    assert repeated("info", "item deferred", "520100", "directory-expired")
    clock.now += 60.0
    assert repeated("warning", "item deferred", "520100", "unknown-signer", code="x")
    assert [(level, fields) for level, _, fields in log.lines] == [
        ("info", {"code": "unknown-signer"}),
        ("info", {}),
        ("info", {}),
        ("warning", {"code": "x", "repeated": 999}),
    ]


def test_the_keys_held_are_bounded() -> None:
    log, clock = Log(), Clock()
    repeated = RepeatedLog(log, 60.0, clock=clock, max_keys=10)
    for i in range(100):
        repeated("info", "link failed", f"n{i}")
    assert len(repeated._last) <= 10
    assert len(log.lines) == 100  # distinct conditions are each written
