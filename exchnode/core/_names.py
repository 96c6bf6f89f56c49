"""Node names and the administrative hierarchy they encode (SPEC §2).

A hub is named by its GB/T 2260 division code (``520100``); a department's
front-end node by ``<division>.<department>`` (``520102.gongan``).  The code is
positional: digits 1-2 the province, 3-4 the city, 5-6 the county, with ``00``
meaning "this level and everything below".  So the set of names a level may
speak for is a plain string prefix -- the *scope* -- obtained by stripping the
trailing ``00`` pairs: ``520000`` → ``52``, ``520100`` → ``5201``,
``520102`` → ``520102``.  ``000000`` is exchnode's convention for the national
level, whose scope is the empty prefix.

Certificate name constraints (a county CA cannot certify another county's
department) and routing (up to the lowest common ancestor, then down) both
reduce to prefix tests on these scopes.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass

from exchnode.errors import InvalidNameError

__all__ = [
    "NATIONAL_DIVISION",
    "Level",
    "NodeName",
    "division_level",
    "division_scope",
    "parent_division",
    "parent_hub",
]

NATIONAL_DIVISION = "000000"

_DIVISION = re.compile(r"[0-9]{6}\Z")
_DEPARTMENT = re.compile(r"[a-z][a-z0-9-]{0,31}\Z")
MAX_NAME_LENGTH = 6 + 1 + 32


class Level(enum.IntEnum):
    """Administrative levels, ordered from the top (国家 → 省 → 市 → 县)."""

    NATIONAL = 0
    PROVINCE = 1
    CITY = 2
    COUNTY = 3


def _check_division(code: str) -> None:
    if not isinstance(code, str) or not _DIVISION.match(code):
        raise InvalidNameError(f"division code must be exactly 6 digits, got {code!r}")
    province, city, county = code[0:2], code[2:4], code[4:6]
    if province == "00" and (city != "00" or county != "00"):
        raise InvalidNameError(f"division code {code!r} has a city or county under province 00")
    if city == "00" and county != "00":
        raise InvalidNameError(f"division code {code!r} has a county under city 00")


def division_level(code: str) -> Level:
    _check_division(code)
    if code == NATIONAL_DIVISION:
        return Level.NATIONAL
    if code.endswith("0000"):
        return Level.PROVINCE
    if code.endswith("00"):
        return Level.CITY
    return Level.COUNTY


def division_scope(code: str) -> str:
    """The prefix of every division code administered at or below ``code``."""
    level = division_level(code)
    return code[: 2 * level]


def parent_division(code: str) -> str | None:
    """The division one level up, or ``None`` for the national level.

    Counties directly administered by a province (省直辖县, e.g. ``429004``)
    have a parent code that names no real city; deployments route them through
    an explicitly configured parent instead (the federation's concern).
    """
    level = division_level(code)
    if level is Level.NATIONAL:
        return None
    if level is Level.PROVINCE:
        return NATIONAL_DIVISION
    return code[: 2 * (level - 1)].ljust(6, "0")


@dataclass(frozen=True, slots=True, order=True)
class NodeName:
    """A validated node name: a hub (division only) or a department node."""

    division: str
    department: str | None = None

    def __post_init__(self) -> None:
        _check_division(self.division)
        if self.department is not None and not _DEPARTMENT.match(self.department):
            raise InvalidNameError(
                f"department {self.department!r} must be 1-32 characters of a-z, 0-9 and '-', "
                "starting with a letter"
            )

    @classmethod
    def parse(cls, text: str) -> NodeName:
        if not isinstance(text, str):
            raise InvalidNameError(f"node name must be a string, got {type(text).__name__}")
        if cls is NodeName:
            # Routing parses the same few names for every envelope: remember them.
            return _parse_cached(text)
        return cls._parse(text)

    @classmethod
    def _parse(cls, text: str) -> NodeName:
        if len(text) > MAX_NAME_LENGTH:
            raise InvalidNameError(f"node name longer than {MAX_NAME_LENGTH} characters")
        division, dot, department = text.partition(".")
        if dot and not department:
            raise InvalidNameError(f"node name {text!r} ends with '.'")
        return cls(division, department if dot else None)

    def __str__(self) -> str:
        if self.department is None:
            return self.division
        return f"{self.division}.{self.department}"

    @property
    def is_hub(self) -> bool:
        return self.department is None

    @property
    def level(self) -> Level:
        return division_level(self.division)

    def within(self, scope: str) -> bool:
        """True if this node lies in the subtree whose scope prefix is ``scope``."""
        return self.division.startswith(scope)


@functools.lru_cache(maxsize=65536)
def _parse_cached(text: str) -> NodeName:
    # Errors are not cached (lru_cache does not keep exceptions): bad names cost a parse each.
    return NodeName._parse(text)


def parent_hub(name: str) -> str | None:
    """The hub a node hangs under in the plain hierarchy, or None for the national hub.

    A department's parent is the hub of its own division; a hub's, the hub of
    the division one level up (a province's is the national hub ``000000``).
    Deployments may configure otherwise (e.g. a directly administered county
    under its province); this is the default an operator starts from.
    """
    node = NodeName.parse(name)
    if not node.is_hub:
        return node.division
    return parent_division(node.division)
