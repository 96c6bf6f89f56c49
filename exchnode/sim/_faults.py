"""Faults on a schedule: data that says what breaks when (TOML or JSON).

A schedule is a list of faults, each at a simulated time from the start::

    [[faults]]
    at = "2h"
    fault = "down"
    node = "520100"

    [[faults]]
    at = "8h"
    fault = "up"
    node = "520100"

    [[faults]]
    at = "1h"
    fault = "slow"
    link = "520102-520102.gongan"
    latency = "200ms"
    bandwidth = "1Mbit"

The faults:

* ``down`` / ``up`` (``node``): the node is closed (its store survives) / a
  new ``Node`` starts over the same store;
* ``cut`` / ``restore`` (``link``): one link stops carrying anything (its
  connections reset, new ones time out) / carries again;
* ``partition`` / ``heal`` (``links``: a list): several links cut at once /
  restored (in a tree, every partition is a set of cut links);
* ``slow`` (``link``, ``latency``, ``bandwidth``): the link's one-way latency
  and bandwidth from then on (``bandwidth = "none"``: unlimited).

Times: a number of seconds or a number with ``ms``, ``s``, ``m``, ``h``, ``d``.
Bandwidth: bytes per second, or a number with ``kbit``, ``Mbit``, ``Gbit``
(per second, decimal) or ``KiB``, ``MiB`` (per second).  A link is named by
its two ends joined with ``-`` in either order.  Every error names the fault
(by its position) and the field.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exchnode.errors import UsageError

__all__ = ["FAULT_KINDS", "Fault", "load_schedule", "parse_duration", "parse_schedule"]

FAULT_KINDS = ("down", "up", "cut", "restore", "partition", "heal", "slow")

_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d)?\s*\Z")
_SECONDS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_RATE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(kbit|Mbit|Gbit|KiB|MiB|GiB|B)?\s*\Z")
_BYTES_PER_SECOND = {
    None: 1.0,
    "B": 1.0,
    "kbit": 1e3 / 8,
    "Mbit": 1e6 / 8,
    "Gbit": 1e9 / 8,
    "KiB": 1024.0,
    "MiB": 1024.0**2,
    "GiB": 1024.0**3,
}


def parse_duration(value: object, what: str = "duration") -> float:
    """Seconds from ``90``, ``"90s"``, ``"30m"``, ``"2h"``, ``"200ms"``, ``"1d"``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (found := _DURATION.match(value)):
        seconds = float(found.group(1)) * _SECONDS[found.group(2)]
    else:
        raise UsageError(f"{what} must be seconds or a number with ms/s/m/h/d, got {value!r}")
    if seconds < 0:
        raise UsageError(f"{what} cannot be negative, got {value!r}")
    return seconds


def _parse_rate(value: object, what: str) -> float | None:
    if value is None or value == "none":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        rate = float(value)
    elif isinstance(value, str) and (found := _RATE.match(value)):
        rate = float(found.group(1)) * _BYTES_PER_SECOND[found.group(2)]
    else:
        raise UsageError(
            f"{what} must be bytes/s or a number with kbit/Mbit/Gbit/KiB/MiB, got {value!r}"
        )
    if rate <= 0:
        raise UsageError(f"{what} must be positive, got {value!r}")
    return rate


def _parse_link(value: object, what: str) -> tuple[str, str]:
    if not isinstance(value, str) or value.count("-") < 1:
        raise UsageError(f"{what} must be two node names joined with '-', got {value!r}")
    # Department names may hold '-' (bumen-017): split where both sides are names.
    for index in [i for i, c in enumerate(value) if c == "-"]:
        a, b = value[:index], value[index + 1 :]
        if a[:6].isdigit() and b[:6].isdigit():
            return a, b
    raise UsageError(f"{what} must be two node names joined with '-', got {value!r}")


@dataclass(frozen=True, slots=True)
class Fault:
    """One scheduled fault (see the module docstring)."""

    at: float
    fault: str
    node: str | None = None
    links: tuple[tuple[str, str], ...] = ()
    latency: float = 0.0
    bandwidth: float | None = None

    def describe(self) -> str:
        target = self.node or ", ".join(f"{a}-{b}" for a, b in self.links)
        return f"{self.fault} {target}"


def _fault(index: int, raw: object) -> Fault:
    where = f"fault {index + 1}"
    if not isinstance(raw, dict):
        raise UsageError(f"{where} must be a table of fields, got {type(raw).__name__}")
    kind = raw.get("fault")
    if kind not in FAULT_KINDS:
        raise UsageError(f"{where}: fault must be one of {', '.join(FAULT_KINDS)}, got {kind!r}")
    allowed = {"at", "fault"} | {
        "down": {"node"},
        "up": {"node"},
        "cut": {"link"},
        "restore": {"link"},
        "partition": {"links"},
        "heal": {"links"},
        "slow": {"link", "latency", "bandwidth"},
    }[kind]
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise UsageError(f"{where} ({kind}): unknown field(s) {', '.join(unknown)}")
    if "at" not in raw:
        raise UsageError(f"{where}: 'at' is missing")
    at = parse_duration(raw["at"], f"{where}: at")
    if kind in ("down", "up"):
        node = raw.get("node")
        if not isinstance(node, str) or not node:
            raise UsageError(f"{where} ({kind}): node must be a node name, got {node!r}")
        return Fault(at, kind, node=node)
    if kind in ("partition", "heal"):
        links = raw.get("links")
        if not isinstance(links, list) or not links:
            raise UsageError(f"{where} ({kind}): links must be a non-empty list, got {links!r}")
        parsed = tuple(_parse_link(link, f"{where}: links[{i}]") for i, link in enumerate(links))
        return Fault(at, kind, links=parsed)
    link = _parse_link(raw.get("link"), f"{where} ({kind}): link")
    if kind != "slow":
        return Fault(at, kind, links=(link,))
    latency = parse_duration(raw.get("latency", 0), f"{where}: latency")
    bandwidth = _parse_rate(raw.get("bandwidth"), f"{where}: bandwidth")
    return Fault(at, kind, links=(link,), latency=latency, bandwidth=bandwidth)


def parse_schedule(data: Any) -> list[Fault]:
    """Faults from decoded TOML/JSON: ``{"faults": [...]}`` or a bare list; sorted by time."""
    raw = data.get("faults", []) if isinstance(data, dict) else data
    if isinstance(data, dict) and set(data) - {"faults"}:
        raise UsageError(f"a schedule has only 'faults', got {', '.join(sorted(data))}")
    if not isinstance(raw, list):
        raise UsageError(f"faults must be a list, got {type(raw).__name__}")
    faults = [_fault(index, item) for index, item in enumerate(raw)]
    return sorted(faults, key=lambda fault: fault.at)  # stable: same time, file order


def load_schedule(path: Path) -> list[Fault]:
    """A schedule file: ``.json`` as JSON, anything else as TOML."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read the fault schedule {path}: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if path.suffix == ".json" else "TOML"
        raise UsageError(f"{path} is not valid {kind}: {exc}") from None
    try:
        return parse_schedule(data)
    except UsageError as exc:
        raise UsageError(f"{path}: {exc}") from None
