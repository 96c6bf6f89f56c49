"""Who may call what on the local API: the three roles of GB/T 39477, one table, a token each.

Theory of operation
-------------------
The daemon's local administration is split between three people, each with
their own bearer token (a 0600 file named in ``[operator]``):

* the **administrator** runs the node: configuration, keys and credentials,
  links to the neighbours (``/v1/admin``);
* the **operator** works the exchange: sending and receiving messages, the
  catalog, approving and revoking grants (``/v1/send``, ``/v1/receive``,
  ``/v1/catalog``, ``/v1/sub``, ...);
* the **auditor** reads the audit log and its proofs and reports, and
  nothing else (``/v1/audit``).

:data:`AREAS` is the one table: a path prefix, a short name for audit
records, and the single role admitted.  One role per area is the point of
the separation, so there is no "any role" but ``/health`` and the console's
page (``/console``: markup and script, no data), which need no token at all
(they carry no secret).  Two areas have ``readers``, further roles admitted
to GETs only (the API refuses at start any other method there): read-only
monitoring, ``/metrics`` (counts, states and dates; no record, message or
secret), the auditor's, read by the administrator too; and the web
console's data (``/v1/console``, ``node.console``), the administrator's,
read by the auditor too, since both watch the node.  Never the operator,
whose token can send as the department and so must not sit in a monitoring
system's configuration.  The server admits a request by it
(``node.operator``), and the client presents the credential it names
(``node.client``), so the two can never disagree.  No area writes the audit
log: the auditor's is read-only, and the store refuses changes to audit
records with triggers whatever calls it.

:class:`Credentials` maps a presented token to its role.  It compares the
token with every role's (``hmac.compare_digest``, no early exit), so the
time taken says nothing about which role nearly matched.  Two roles may
never share a token: the role would be ambiguous.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from exchnode.audit import Role
from exchnode.errors import UsageError

__all__ = [
    "AREAS",
    "MIN_TOKEN_CHARS",
    "PEOPLE",
    "Area",
    "Credentials",
    "area_of",
    "token_key",
]

MIN_TOKEN_CHARS = 16
#: The roles a person holds, in the order the guide lists them.
PEOPLE: tuple[Role, ...] = (Role.ADMINISTRATOR, Role.OPERATOR, Role.AUDITOR)


@dataclass(frozen=True, slots=True)
class Area:
    """A part of the API: paths equal to ``prefix`` or below it, and who may call them."""

    prefix: str
    name: str  # a token for audit records ("audit", "admin", ...)
    role: Role | None  # None: no credential needed (health); else the role clients present
    readers: tuple[Role, ...] = ()  # further roles admitted, to GETs only (metrics, console)

    def matches(self, path: str) -> bool:
        return path == self.prefix or path.startswith(self.prefix + "/")

    def admits(self, role: Role) -> bool:
        return role is self.role or role in self.readers

    @property
    def needs(self) -> str:
        """The roles admitted, for a refusal: ``administrator or auditor``."""
        return " or ".join(r.value for r in (self.role, *self.readers) if r is not None)


AREAS: tuple[Area, ...] = (
    Area("/health", "health", None),
    Area("/v1/admin", "admin", Role.ADMINISTRATOR),
    Area("/v1/audit", "audit", Role.AUDITOR),
    # The API's description: for the department's systems, who hold the operator's token.
    Area("/v1/openapi.json", "openapi", Role.OPERATOR),
    Area("/v1/send", "send", Role.OPERATOR),
    Area("/v1/send-many", "send", Role.OPERATOR),
    Area("/v1/receive", "receive", Role.OPERATOR),
    Area("/v1/ack", "receive", Role.OPERATOR),
    Area("/v1/status", "status", Role.OPERATOR),
    Area("/v1/catalog", "catalog", Role.OPERATOR),
    Area("/v1/sub", "sub", Role.OPERATOR),
    Area("/metrics", "metrics", Role.AUDITOR, readers=(Role.ADMINISTRATOR,)),
    Area("/console", "console", None),
    Area("/v1/console", "console", Role.ADMINISTRATOR, readers=(Role.AUDITOR,)),
)


def area_of(path: str) -> Area | None:
    """The area a path belongs to; None for a path in no area (the server answers 404)."""
    for area in AREAS:
        if area.matches(path):
            return area
    return None


def token_key(role: Role) -> str:
    """The ``[operator]`` key naming a role's token file (``token_file`` is the operator's)."""
    return "token_file" if role is Role.OPERATOR else f"{role.value}_token_file"


def _fingerprint(token: str) -> bytes:
    return hashlib.sha256(b"exchnode role token\x00" + token.encode()).digest()


class Credentials:
    """The tokens the API accepts, by role; replaced whole when the administrator reloads them."""

    def __init__(self, tokens: Mapping[Role, str]) -> None:
        self._tokens: dict[Role, bytes] = {}
        self.replace(tokens)

    @staticmethod
    def check(tokens: Mapping[Role, str]) -> None:
        """Each role's token is long enough and its own; UsageError naming the role otherwise."""
        seen: dict[str, Role] = {}
        for role, token in tokens.items():
            if role not in PEOPLE:
                raise UsageError(f"{role.value} is not a role a person holds")
            if len(token) < MIN_TOKEN_CHARS:
                raise UsageError(
                    f"the {role.value} token has fewer than {MIN_TOKEN_CHARS} characters"
                )
            if token in seen:
                raise UsageError(
                    f"the {role.value} and {seen[token].value} tokens are the same: each role "
                    "needs its own credential"
                )
            seen[token] = role

    def replace(self, tokens: Mapping[Role, str]) -> None:
        self.check(tokens)
        self._tokens = {role: tokens[role].encode() for role in PEOPLE if role in tokens}

    def role_of(self, supplied: str) -> Role | None:
        """The role whose token this is, or None; compares with every token, no early exit."""
        candidate = supplied.encode()
        found: Role | None = None
        for role, token in self._tokens.items():
            if hmac.compare_digest(candidate, token) and supplied:
                found = role
        return found

    @property
    def roles(self) -> tuple[Role, ...]:
        """The roles that hold a credential, in :data:`PEOPLE` order."""
        return tuple(role for role in PEOPLE if role in self._tokens)

    def fingerprints(self) -> dict[Role, bytes]:
        """A one-way digest of each token: to notice a rotation, never to recover a token."""
        return {role: _fingerprint(token.decode()) for role, token in self._tokens.items()}
