"""Bytes in flight (issue 12, item 4): the reservations, the limits that set them, node.toml."""

from __future__ import annotations

from pathlib import Path

import pytest

from exchnode.aio import NodeLimits
from exchnode.aio._inflight import InFlight
from exchnode.errors import UsageError
from exchnode.node.config import ConfigError, load_config

MIB = 1024 * 1024


def test_reservations_are_bounded_per_neighbour_and_in_total() -> None:
    refused: list[int] = []
    budget = InFlight(100, 150, on_refused=lambda: refused.append(1))
    a = budget.reserve("a", 60)
    assert a is not None
    assert budget.reserve("a", 50) is None  # 110 > 100 from one neighbour
    b = budget.reserve("b", 90)
    assert b is not None
    assert budget.reserve("c", 1) is None  # 151 > 150 in total
    assert (budget.held("a"), budget.held("b"), budget.held()) == (60, 90, 150)
    assert len(refused) == 2
    # The room a neighbour is offered once the request being answered is done.
    assert budget.room("a") == 0
    assert budget.room("a", releasing=60) == 60
    assert budget.room("c") == 0
    with a:
        pass  # leaving the with gives the bytes back, once
    a.release()
    assert budget.held() == 90
    assert budget.reserve("a", 60) is not None
    b.release()
    assert budget.peak == 150


def test_a_bodiless_request_reserves_nothing_and_sizes_are_checked() -> None:
    budget = InFlight(10, 10)
    assert budget.reserve("a", 10) is not None
    empty = budget.reserve("a", 0)
    assert empty is not None
    assert empty.size == 0
    assert not budget.fits_ever(11)
    with pytest.raises(UsageError, match="cannot reserve -1 bytes"):
        budget.reserve("a", -1)
    with pytest.raises(UsageError, match="per_neighbour <= total"):
        InFlight(20, 10)


def test_node_limits_bound_the_bytes_in_flight_by_default_and_check_them() -> None:
    limits = NodeLimits()
    assert limits.max_inflight_bytes_per_neighbour == limits.max_transfer_bytes == 64 * MIB
    assert limits.max_inflight_bytes == 128 * MIB
    with pytest.raises(UsageError, match=r"max_inflight_bytes_per_neighbour .* max_transfer_bytes"):
        NodeLimits(max_transfer_bytes=128 * MIB)  # a transfer of the largest size must fit
    with pytest.raises(UsageError, match=r"max_inflight_bytes .* cannot be less than"):
        NodeLimits(max_inflight_bytes=32 * MIB)
    with pytest.raises(UsageError, match="max_inflight_bytes must be a positive number"):
        NodeLimits(max_inflight_bytes=0)


CONFIG = """
[node]
name = "520102"
level = "county"

[[peers]]
name = "520100"
relation = "parent"
url = "https://127.0.0.1:7443"
"""


def test_node_toml_sets_the_bounds_in_limits_and_names_a_bad_one(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(
        CONFIG + "[limits]\nmax_inflight_bytes_per_neighbour = 67108864\n"
        "max_inflight_bytes = 536870912\n[timers]\nlog_repeat_interval = 5\n"
    )
    config = load_config(path).node_config
    assert config.limits.max_inflight_bytes_per_neighbour == 64 * MIB
    assert config.limits.max_inflight_bytes == 512 * MIB
    assert config.timers.log_repeat_interval == 5.0
    path.write_text(CONFIG + "[limits]\nmax_inflight_bytes = 1024\n")
    with pytest.raises(ConfigError, match=r"limits.*max_inflight_bytes"):
        load_config(path)
