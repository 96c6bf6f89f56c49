"""Admission: which unconfigured node a hub takes as a child when it first says hello (pure).

Theory of operation
-------------------
A hub knows its children from its configuration.  Adding a department used
to mean editing the hub's file and restarting it; yet the CA hierarchy
already proves who may join: a department's certificate is issued by its
division's CA and verified with the division name constraints
(``pki.verify_node_certificate``, revocation included) before this module is
asked anything.  So a hub may admit, on policy, a node it does not know
when that node's first hello arrives over mutual TLS:

* ``division`` (the default): the node hangs under this hub in the plain
  hierarchy (``core.parent_hub``): a department of the hub's own division, or
  a hub one level down;
* ``allow-list``: only names matching one of ``allow`` (exact names or
  shell patterns, ``520102.*``), and only within this hub's scope -- for an
  operator who wants to say yes to each department, or who hangs a directly
  administered county under its province;
* ``none``: nobody is admitted; children come from the configuration (and
  ``Node.add_peer``) only.

A department never admits anyone: it has no children.  A child must also
say where it listens (its hello carries its link URL, SPEC §15.2), since the
hub forwards to it by dialling that address and checks, before writing a
byte, that the server there is the child its certificate names.

``judge`` returns None to admit, or the reason the node is not admitted, a
sentence the hub sends back in its 403 so that the refused department reads
why (``not-a-neighbour``).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass

from exchnode.core import NodeName, division_scope, parent_hub
from exchnode.errors import UsageError

__all__ = ["ADMISSION_POLICIES", "Admission"]

ADMISSION_POLICIES = ("division", "allow-list", "none")
_PATTERN = re.compile(r"[0-9a-z.*?\[\]-]{1,64}\Z")


@dataclass(frozen=True, slots=True, kw_only=True)
class Admission:
    """Whom a hub admits as a child on its first hello (see the module docstring)."""

    policy: str = "division"
    #: ``allow-list``: node names or shell patterns (``*``, ``?``, ``[...]``)
    allow: Sequence[str] = ()

    def __post_init__(self) -> None:
        if self.policy not in ADMISSION_POLICIES:
            raise UsageError(
                f"admission policy must be one of {', '.join(ADMISSION_POLICIES)}, "
                f"got {self.policy!r}"
            )
        if isinstance(self.allow, str):
            raise UsageError("admission allow is a list of names or patterns, not one string")
        allow = tuple(self.allow)
        for pattern in allow:
            if not isinstance(pattern, str) or not _PATTERN.match(pattern):
                raise UsageError(
                    f"admission allow: {pattern!r} is no node name or pattern "
                    "(a-z, 0-9, '.', '-', and the wildcards * ? [...])"
                )
        if allow and self.policy != "allow-list":
            raise UsageError(
                f'admission allow is used only with policy "allow-list", not {self.policy!r}'
            )
        object.__setattr__(self, "allow", allow)

    def judge(self, me: NodeName, candidate: NodeName, url: str | None) -> str | None:
        """None to admit ``candidate`` (already authenticated) as ``me``'s child, else why not."""
        refused = f"{candidate} is not admitted by {me}: "
        if not me.is_hub:
            return refused + "a department has no children"
        if self.policy == "none":
            return refused + (
                'its admission policy is "none": its administrator adds children '
                "(exchnode node admin peers add, or [[peers]] and SIGHUP)"
            )
        if not candidate.division.startswith(division_scope(me.division)) or candidate == me:
            return refused + f"it lies outside {me}'s division"
        text = str(candidate)
        if self.policy == "division":
            parent = parent_hub(text)
            if parent != str(me):
                return refused + (
                    f"its parent in the hierarchy is {parent}, not {me} (admission policy "
                    '"division"; an allow-list can admit it)'
                )
        elif not any(fnmatch.fnmatchcase(text, pattern) for pattern in self.allow):
            return refused + (
                'admission policy "allow-list" does not list it; its administrator adds it '
                "to [admission] allow, or with exchnode node admin peers add"
            )
        if not url:
            return refused + (
                "its hello names no link URL to reach it at (set [directory] advertise, or "
                "listen on an address that is not a wildcard)"
            )
        return None
